//! CPU reference for the elementwise ops: f32 data, f64 arithmetic.

use std::f64::consts::{FRAC_1_SQRT_2, PI};

pub fn gelu_f64(x: f64) -> f64 {
    0.5 * x * (1.0 + libm::erf(x * FRAC_1_SQRT_2))
}

pub fn gelu_grad_f64(x: f64) -> f64 {
    0.5 * (1.0 + libm::erf(x * FRAC_1_SQRT_2)) + x * (-0.5 * x * x).exp() / (2.0 * PI).sqrt()
}

pub fn gelu(x: &[f32]) -> Vec<f32> {
    x.iter().map(|&v| gelu_f64(v as f64) as f32).collect()
}

pub fn gelu_backward(x: &[f32], dy: &[f32]) -> Vec<f32> {
    x.iter()
        .zip(dy)
        .map(|(&v, &g)| (g as f64 * gelu_grad_f64(v as f64)) as f32)
        .collect()
}
