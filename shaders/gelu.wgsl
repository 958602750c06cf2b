// Exact (erf) GELU shared by the elementwise and conv kernels, as PyTorch's
// F.gelu computes it: x * Phi(x).

// erfc after Numerical Recipes (fractional error < 1.2e-7 everywhere).
fn erfc_approx(x: f32) -> f32 {
    let z = abs(x);
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806
        + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    let r = t * exp(-z * z + poly);
    return select(2.0 - r, r, x >= 0.0);
}

// Phi(x) = 0.5 * erfc(-x / sqrt(2)); erfc keeps precision for negative x.
fn normal_cdf(x: f32) -> f32 {
    return 0.5 * erfc_approx(-x * 0.7071067811865476);
}

fn gelu(x: f32) -> f32 {
    return x * normal_cdf(x);
}

// d gelu / dx = Phi(x) + x * phi(x).
fn gelu_grad(x: f32) -> f32 {
    return normal_cdf(x) + x * 0.3989422804014327 * exp(-0.5 * x * x);
}
