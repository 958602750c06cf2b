//! CPU reference for the broadcasts.

/// `x` repeated `n` times.
pub fn broadcast_batch(x: &[f32], n: usize) -> Vec<f32> {
    x.repeat(n)
}

/// Each `x[i]` repeated `per` times in place.
pub fn broadcast_per_image(x: &[f32], per: usize) -> Vec<f32> {
    x.iter().flat_map(|&v| std::iter::repeat_n(v, per)).collect()
}
