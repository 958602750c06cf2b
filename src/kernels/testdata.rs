//! Deterministic inputs for kernel checks and benchmarks (SplitMix64): the same
//! tensors on every machine, no RNG crate needed.

pub struct TestRng(u64);

impl TestRng {
    pub fn new(seed: u64) -> TestRng {
        TestRng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }

    pub fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }

    /// Approximately standard normal (sum of uniforms), for realistic activations.
    pub fn normal_vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| (0..4).map(|_| self.uniform(-1.0, 1.0)).sum::<f32>() * 0.866 * scale)
            .collect()
    }
}

/// Central finite-difference gradient in f64 of `loss` at `x`, for checking CPU
/// backward passes. `loss` should accumulate in f64.
pub fn finite_difference(x: &[f32], eps: f64, loss: impl Fn(&[f32]) -> f64) -> Vec<f64> {
    let mut xp = x.to_vec();
    (0..x.len())
        .map(|i| {
            let orig = x[i];
            xp[i] = (orig as f64 + eps) as f32;
            let up = loss(&xp);
            let h_up = xp[i] as f64 - orig as f64;
            xp[i] = (orig as f64 - eps) as f32;
            let down = loss(&xp);
            let h_down = orig as f64 - xp[i] as f64;
            xp[i] = orig;
            (up - down) / (h_up + h_down)
        })
        .collect()
}

/// `sum_i w_i * y_i` in f64: a scalar loss whose gradient w.r.t. y is `w`.
pub fn weighted_sum(y: &[f32], w: &[f32]) -> f64 {
    y.iter().zip(w).map(|(&a, &b)| a as f64 * b as f64).sum()
}
