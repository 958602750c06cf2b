//! CPU reference for group norm: f32 data, f64 arithmetic, PyTorch's
//! `GroupNorm` (biased variance, eps inside the square root). NHWC `shape`.

/// `(y, mean, rstd)`; mean and rstd are per (image, group), image-major.
pub fn forward(
    x: &[f32],
    shape: [usize; 4],
    groups: usize,
    eps: f32,
    gamma: &[f32],
    beta: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (mean, rstd) = stats(x, shape, groups, eps);
    let [n, h, w, c] = shape;
    let cg = c / groups;
    let mut y = vec![0f32; x.len()];
    for b in 0..n {
        for p in 0..h * w {
            for ch in 0..c {
                let i = (b * h * w + p) * c + ch;
                let k = b * groups + ch / cg;
                let xhat = (x[i] as f64 - mean[k]) * rstd[k];
                y[i] = (xhat * gamma[ch] as f64 + beta[ch] as f64) as f32;
            }
        }
    }
    let f = |v: Vec<f64>| v.into_iter().map(|s| s as f32).collect();
    (y, f(mean), f(rstd))
}

/// Per-(image, group) mean and 1 / sqrt(biased variance + eps), in f64.
fn stats(x: &[f32], shape: [usize; 4], groups: usize, eps: f32) -> (Vec<f64>, Vec<f64>) {
    let [n, h, w, c] = shape;
    let cg = c / groups;
    let count = (h * w * cg) as f64;
    let mut sum = vec![0f64; n * groups];
    for (i, &v) in x.iter().enumerate() {
        sum[i / (h * w * c) * groups + i % c / cg] += v as f64;
    }
    let mean: Vec<f64> = sum.iter().map(|s| s / count).collect();
    let mut sq = vec![0f64; n * groups];
    for (i, &v) in x.iter().enumerate() {
        let k = i / (h * w * c) * groups + i % c / cg;
        sq[k] += (v as f64 - mean[k]).powi(2);
    }
    let rstd = sq.iter().map(|s| 1.0 / (s / count + eps as f64).sqrt()).collect();
    (mean, rstd)
}

/// `(dx, dgamma, dbeta)` of [`forward`] for upstream gradient `dy`.
pub fn backward(
    x: &[f32],
    dy: &[f32],
    shape: [usize; 4],
    groups: usize,
    eps: f32,
    gamma: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (mean, rstd) = stats(x, shape, groups, eps);
    let [n, h, w, c] = shape;
    let cg = c / groups;
    let count = (h * w * cg) as f64;
    let group = |i: usize| i / (h * w * c) * groups + i % c / cg;
    let xhat = |i: usize| (x[i] as f64 - mean[group(i)]) * rstd[group(i)];
    let mut dgamma = vec![0f64; c];
    let mut dbeta = vec![0f64; c];
    // Group means of dxhat and dxhat * xhat, dxhat = dy * gamma.
    let mut m1 = vec![0f64; n * groups];
    let mut m2 = vec![0f64; n * groups];
    for (i, &d) in dy.iter().enumerate() {
        let (ch, g, d) = (i % c, group(i), d as f64);
        dgamma[ch] += d * xhat(i);
        dbeta[ch] += d;
        let dxhat = d * gamma[ch] as f64;
        m1[g] += dxhat / count;
        m2[g] += dxhat * xhat(i) / count;
    }
    let dx = (0..x.len())
        .map(|i| {
            let g = group(i);
            let dxhat = dy[i] as f64 * gamma[i % c] as f64;
            (rstd[g] * (dxhat - m1[g] - xhat(i) * m2[g])) as f32
        })
        .collect();
    let f = |v: Vec<f64>| v.into_iter().map(|s| s as f32).collect();
    (dx, f(dgamma), f(dbeta))
}
