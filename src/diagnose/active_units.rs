//! Active units (Burda et al. 2015): a latent unit u is active when its
//! posterior mean varies across the data, Cov_x(E_q[z_u]) > 0.01.

/// Per-unit running mean and sum of squared deviations of E_q[z_u] over
/// images (Welford's update, in f64).
pub struct ActiveUnits {
    count: usize,
    mean: Vec<f64>,
    m2: Vec<f64>,
}

impl ActiveUnits {
    /// Counts the units of one level: `units` values per image.
    pub fn new(units: usize) -> ActiveUnits {
        ActiveUnits {
            count: 0,
            mean: vec![0.0; units],
            m2: vec![0.0; units],
        }
    }

    /// Adds images' posterior means, `units` values per image.
    pub fn add(&mut self, means: &[f32]) {
        for image in means.chunks_exact(self.mean.len()) {
            self.count += 1;
            let n = self.count as f64;
            for ((m, m2), &x) in self.mean.iter_mut().zip(&mut self.m2).zip(image) {
                let d = x as f64 - *m;
                *m += d / n;
                *m2 += d * (x as f64 - *m);
            }
        }
    }

    /// Each unit's variance over the images added (the population variance, as Burda et al.).
    pub fn variances(&self) -> Vec<f64> {
        let n = self.count.max(1) as f64;
        self.m2.iter().map(|m2| m2 / n).collect()
    }

    /// Units whose variance exceeds `threshold`.
    pub fn active(&self, threshold: f64) -> usize {
        self.variances().into_iter().filter(|&v| v > threshold).count()
    }

    pub fn units(&self) -> usize {
        self.mean.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_that_vary_more_than_the_threshold_are_active() {
        // Three units over four images: variances 0.0, 0.0225 (±0.15) and 0.0025 (±0.05).
        let mut a = ActiveUnits::new(3);
        for s in [1.0f32, -1.0, 1.0, -1.0] {
            a.add(&[0.7, 0.3 + 0.15 * s, -2.0 + 0.05 * s]);
        }
        let v = a.variances();
        assert!(
            v[0].abs() < 1e-12 && (v[1] - 0.0225).abs() < 1e-7 && (v[2] - 0.0025).abs() < 1e-7,
            "{v:?}"
        );
        assert_eq!(a.active(0.01), 1);
        assert_eq!(a.active(0.001), 2);
    }

    #[test]
    fn images_may_arrive_in_batches_of_any_size() {
        let data: Vec<f32> = (0..40).map(|i| ((i * 7919) % 13) as f32 * 0.1).collect();
        let mut whole = ActiveUnits::new(4);
        whole.add(&data);
        let mut parts = ActiveUnits::new(4);
        parts.add(&data[..12]);
        parts.add(&data[12..]);
        for (a, b) in whole.variances().iter().zip(parts.variances()) {
            assert!((a - b).abs() < 1e-12);
        }
    }
}
