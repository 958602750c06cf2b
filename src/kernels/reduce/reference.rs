//! CPU reference for the reductions: f32 data, f64 accumulation. The axes
//! reference works on any axes of up to 4 dims directly (not through the GPU
//! plan's canonical view).

use super::ReduceOp;

/// Row-major strides of `dims`.
fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// `op` over `axes` of `x` viewed as `dims`; the result has the kept dims in order.
pub fn reduce(op: ReduceOp, x: &[f32], dims: &[usize], axes: &[usize]) -> Vec<f32> {
    let kept: Vec<usize> = (0..dims.len()).filter(|a| !axes.contains(a)).collect();
    let out_dims: Vec<usize> = kept.iter().map(|&a| dims[a]).collect();
    let out_strides = strides(&out_dims);
    let in_strides = strides(dims);
    let mut acc = vec![0f64; out_dims.iter().product()];
    for (i, &v) in x.iter().enumerate() {
        let o: usize = kept
            .iter()
            .zip(&out_strides)
            .map(|(&a, &s)| (i / in_strides[a] % dims[a]) * s)
            .sum();
        acc[o] += v as f64;
    }
    let count: usize = axes.iter().map(|&a| dims[a]).product();
    let scale = match op {
        ReduceOp::Sum => 1.0,
        ReduceOp::Mean => 1.0 / count as f64,
    };
    acc.into_iter().map(|s| (s * scale) as f32).collect()
}

/// Backward of [`reduce`]: each dx is the dy of the output it went into (÷ count for a mean).
pub fn reduce_backward(op: ReduceOp, dy: &[f32], dims: &[usize], axes: &[usize]) -> Vec<f32> {
    let kept: Vec<usize> = (0..dims.len()).filter(|a| !axes.contains(a)).collect();
    let out_dims: Vec<usize> = kept.iter().map(|&a| dims[a]).collect();
    let out_strides = strides(&out_dims);
    let in_strides = strides(dims);
    let count: usize = axes.iter().map(|&a| dims[a]).product();
    let scale = match op {
        ReduceOp::Sum => 1.0,
        ReduceOp::Mean => 1.0 / count as f64,
    };
    (0..dims.iter().product::<usize>())
        .map(|i| {
            let o: usize = kept
                .iter()
                .zip(&out_strides)
                .map(|(&a, &s)| (i / in_strides[a] % dims[a]) * s)
                .sum();
            (dy[o] as f64 * scale) as f32
        })
        .collect()
}

/// `Σ_tensors Σ x²` in f64.
pub fn global_sq_norm(tensors: &[&[f32]]) -> f64 {
    tensors
        .iter()
        .flat_map(|t| t.iter())
        .map(|&v| v as f64 * v as f64)
        .sum()
}

/// Backward of [`global_sq_norm`] for one tensor: d/dx Σ x² = 2x (times dy).
pub fn global_sq_norm_backward(x: &[f32], dy: f32) -> Vec<f32> {
    x.iter().map(|&v| (2.0 * v as f64 * dy as f64) as f32).collect()
}
