//! Per-level mutual information between the images and a level's latent,
//! I(x; z_l), as He et al. 2019 ("Lagging inference networks", their
//! `calc_mi`) estimate it: I ≈ E[log q(z | x)] − E[log q(z)], with the
//! aggregate posterior q(z) taken over the B images of a batch.
//!
//! For image i of a batch, one z_i ~ q(z | x_i) (reparameterised,
//! z_i = μ_i + σ_i ε_i, every unit of the level at once), and
//!
//!   t_i = log q(z_i | x_i) − log( (1/B) Σ_j q(z_i | x_j) ),
//!
//! log densities summed over the level's units, in f64. The estimate is the
//! mean of t_i over the images counted. He et al. take the first term in
//! closed form (the negative entropy); the sampled term is used here instead
//! because q(z_i | x_i) is one of the B terms of the sum, so every t_i, and
//! with it the estimate, is at most ln B: the cap holds exactly, not only in
//! expectation. The draw's noise, large when a level has many units, also
//! cancels between the two terms: posteriors alike for every image give
//! exactly 0, where the closed form would leave the noise of the second.

use crate::kernels::rng::RngKey;

/// Noise streams of the ε draws: `RngKey` tensor ids far from the graph's own
/// (small, counted from 0) and from weight initialisation's (counted down from
/// `u32::MAX`), so the draws are independent of the noise the passes use.
const NOISE_TENSOR: u32 = 0x4D49_0000;

/// The most an estimate over batches of `batch` images can be: ln B nats.
pub fn cap_nats(batch: usize) -> f64 {
    (batch.max(1) as f64).ln()
}

/// One level's estimate over batches of exactly `batch` images. Batches of
/// other sizes (the last, when the images do not fill it) are not counted:
/// their cap ln B' differs, and mixing caps would leave the estimate with no
/// single bound.
pub struct MutualInfo {
    batch: usize,
    /// Sum of t_i over the images counted.
    sum: f64,
    images: usize,
}

impl MutualInfo {
    pub fn new(batch: usize) -> MutualInfo {
        MutualInfo {
            batch,
            sum: 0.0,
            images: 0,
        }
    }

    /// Adds one batch of `images` posteriors, the same number of values per
    /// image in `mu` and `log_sigma`, with `noise` the standard normal ε, one
    /// per value. Returns whether the batch was counted.
    pub fn add(&mut self, images: usize, mu: &[f32], log_sigma: &[f32], noise: &[f64]) -> bool {
        if images != self.batch || images == 0 || mu.len() < images || !mu.len().is_multiple_of(images) {
            return false;
        }
        let units = mu.len() / images;
        self.sum += image_terms(mu, log_sigma, noise, units).iter().sum::<f64>();
        self.images += self.batch;
        true
    }

    /// The estimate, nats: the mean of t_i over the images counted (each
    /// batch weighted by its images, all of which number `batch`); `None`
    /// before a batch was counted.
    pub fn nats(&self) -> Option<f64> {
        (self.images > 0).then(|| self.sum / self.images as f64)
    }

    /// Images counted: whole batches of `batch`.
    pub fn images(&self) -> usize {
        self.images
    }
}

/// The ε of one batch's draws of one level: `len` standard normal values
/// keyed by the run's seed, the batch's index and the level, so the same
/// `--seed` gives the same report.
pub fn noise(seed: u64, batch_index: usize, level: usize, len: usize) -> Vec<f64> {
    let key = RngKey::new(seed, batch_index as u64, NOISE_TENSOR + level as u32);
    (0..len as u32).map(|e| key.normal(e) as f64).collect()
}

/// t_i for every image of a batch of posteriors with `units` values per
/// image (see the module's description).
pub fn image_terms(mu: &[f32], log_sigma: &[f32], noise: &[f64], units: usize) -> Vec<f64> {
    let b = mu.len() / units;
    let mu: Vec<f64> = mu.iter().map(|&m| m as f64).collect();
    let log_sigma: Vec<f64> = log_sigma.iter().map(|&s| s as f64).collect();
    let inv_sigma: Vec<f64> = log_sigma.iter().map(|s| (-s).exp()).collect();
    // log q(z | x_j) = norm_j − ½ Σ_u ((z_u − μ_ju) / σ_ju)², norm_j = −Σ_u (log σ_ju + ½ ln 2π).
    let half_ln_tau = 0.5 * std::f64::consts::TAU.ln();
    let norm: Vec<f64> = log_sigma
        .chunks_exact(units)
        .map(|s| -s.iter().map(|s| s + half_ln_tau).sum::<f64>())
        .collect();
    let ln_b = (b as f64).ln();
    (0..b)
        .map(|i| {
            let z: Vec<f64> = (i * units..(i + 1) * units)
                .map(|k| mu[k] + log_sigma[k].exp() * noise[k])
                .collect();
            let log_q: Vec<f64> = (0..b)
                .map(|j| {
                    let (m, inv) = (&mu[j * units..][..units], &inv_sigma[j * units..][..units]);
                    let sq: f64 = z
                        .iter()
                        .zip(m)
                        .zip(inv)
                        .map(|((z, m), inv)| ((z - m) * inv).powi(2))
                        .sum();
                    norm[j] - 0.5 * sq
                })
                .collect();
            log_q[i] - log_sum_exp(&log_q) + ln_b
        })
        .collect()
}

/// ln Σ exp(v), shifted by the largest so that no term overflows.
fn log_sum_exp(v: &[f64]) -> f64 {
    let top = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !top.is_finite() {
        return top;
    }
    top + v.iter().map(|x| (x - top).exp()).sum::<f64>().ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posteriors_the_same_for_every_image_carry_nothing() {
        // Four images, three units, each image's posterior N(μ, σ) the same.
        let mu: Vec<f32> = [0.3f32, -1.0, 2.0].repeat(4);
        let log_sigma: Vec<f32> = [0.1f32, -0.4, 0.0].repeat(4);
        let mut mi = MutualInfo::new(4);
        assert!(mi.add(4, &mu, &log_sigma, &noise(1, 0, 0, 12)));
        let nats = mi.nats().unwrap();
        assert!(nats.abs() < 1e-12, "{nats}");
    }

    #[test]
    fn far_apart_narrow_posteriors_reach_the_cap() {
        // Eight images whose means lie 100 apart with σ = e^-5: each z_i is
        // explained by its own image alone, so I = ln 8.
        let b = 8;
        let mu: Vec<f32> = (0..b * 2).map(|k| 100.0 * (k / 2) as f32).collect();
        let log_sigma = vec![-5.0f32; b * 2];
        let mut mi = MutualInfo::new(b);
        mi.add(b, &mu, &log_sigma, &noise(3, 0, 0, b * 2));
        let nats = mi.nats().unwrap();
        assert!((nats - cap_nats(b)).abs() < 1e-9, "{nats} vs ln 8 = {}", cap_nats(b));
    }

    /// The normal density, directly (no logs).
    fn pdf(z: f64, mu: f64, sigma: f64) -> f64 {
        (-0.5 * ((z - mu) / sigma).powi(2)).exp() / (sigma * std::f64::consts::TAU.sqrt())
    }

    #[test]
    fn one_unit_terms_are_the_density_ratios() {
        let mu = [-1.0f32, 0.5, 2.0];
        let log_sigma = [0.0f32, -0.5, 0.3];
        let eps = [0.3, -1.2, 0.7];
        let terms = image_terms(&mu, &log_sigma, &eps, 1);
        let sigma: Vec<f64> = log_sigma.iter().map(|&s| (s as f64).exp()).collect();
        for i in 0..3 {
            let z = mu[i] as f64 + sigma[i] * eps[i];
            let aggregate = (0..3).map(|j| pdf(z, mu[j] as f64, sigma[j])).sum::<f64>() / 3.0;
            let want = (pdf(z, mu[i] as f64, sigma[i]) / aggregate).ln();
            assert!((terms[i] - want).abs() < 1e-12, "image {i}: {} vs {want}", terms[i]);
        }
    }

    #[test]
    fn the_estimate_converges_to_the_integral() {
        // Two images with posteriors N(-1, 1) and N(1, 1): over many batches the
        // estimate tends to ½ Σ_i ∫ q_i(z) ln(q_i(z) / q(z)) dz, q = ½ (q_0 + q_1),
        // which a trapezoid sum over [-12, 12] gives to far better than the tolerance.
        let (mu, log_sigma) = ([-1.0f32, 1.0], [0.0f32, 0.0]);
        let mut mi = MutualInfo::new(2);
        for batch in 0..20_000 {
            mi.add(2, &mu, &log_sigma, &noise(7, batch, 0, 2));
        }
        let steps = 24_000;
        let dz = 24.0 / steps as f64;
        let integral: f64 = (0..=steps)
            .map(|s| {
                let z = -12.0 + s as f64 * dz;
                let q = [pdf(z, -1.0, 1.0), pdf(z, 1.0, 1.0)];
                let mean = 0.5 * (q[0] + q[1]);
                let w = if s == 0 || s == steps { 0.5 } else { 1.0 };
                w * dz * 0.5 * q.iter().map(|&q| q * (q / mean).ln()).sum::<f64>()
            })
            .sum();
        let nats = mi.nats().unwrap();
        // 40,000 terms of standard deviation under 0.6: a standard error under 0.003.
        assert!((nats - integral).abs() < 0.012, "{nats} vs {integral}");
        assert!(integral > 0.1 && integral < cap_nats(2));
    }

    #[test]
    fn no_estimate_exceeds_the_cap() {
        // Random posteriors: every image's term is at most ln B, whatever the draw.
        let (b, units) = (5, 7);
        let draw = |seed| noise(seed, 0, 0, b * units);
        for seed in 0..50 {
            let mu: Vec<f32> = draw(seed).iter().map(|&v| v as f32).collect();
            let log_sigma: Vec<f32> = draw(seed + 1000).iter().map(|&v| (0.5 * v) as f32).collect();
            let terms = image_terms(&mu, &log_sigma, &draw(seed + 2000), units);
            assert!(terms.iter().all(|&t| t <= cap_nats(b) + 1e-12), "{terms:?}");
        }
    }

    #[test]
    fn other_batch_sizes_are_not_counted_and_batches_weigh_by_their_images() {
        let (mu, log_sigma) = ([0.0f32, 1.0, 3.0, 0.5], [0.0f32, -1.0, 0.2, 0.0]);
        let (first, second) = (noise(2, 0, 1, 2), noise(2, 1, 1, 2));
        let mut mi = MutualInfo::new(2);
        assert!(mi.add(2, &mu[..2], &log_sigma[..2], &first));
        assert!(mi.add(2, &mu[2..], &log_sigma[2..], &second));
        assert!(
            !mi.add(1, &mu[..1], &log_sigma[..1], &noise(2, 2, 1, 1)),
            "a batch of 1"
        );
        assert_eq!(mi.images(), 4);
        let terms: f64 = image_terms(&mu[..2], &log_sigma[..2], &first, 1)
            .into_iter()
            .chain(image_terms(&mu[2..], &log_sigma[2..], &second, 1))
            .sum();
        assert!((mi.nats().unwrap() - terms / 4.0).abs() < 1e-15);
        assert_eq!(MutualInfo::new(2).nats(), None);
    }

    #[test]
    fn noise_is_fixed_by_seed_batch_and_level() {
        assert_eq!(noise(4, 1, 2, 16), noise(4, 1, 2, 16));
        for other in [noise(5, 1, 2, 16), noise(4, 2, 2, 16), noise(4, 1, 3, 16)] {
            assert_ne!(noise(4, 1, 2, 16), other);
        }
        let draws = noise(0, 0, 0, 10_000);
        let mean = draws.iter().sum::<f64>() / 1e4;
        let var = draws.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 1e4;
        assert!(mean.abs() < 0.05 && (var - 1.0).abs() < 0.05, "{mean} {var}");
    }
}
