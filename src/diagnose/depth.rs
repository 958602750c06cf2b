//! Distortion by depth: the reconstruction with the first k levels from the
//! posterior mean and the rest from the prior, for every k. What each level
//! adds to the reconstruction, and at what rate.

use super::report::DepthPoint;
use crate::error::{Error, Result};
use crate::model::conditional::{over_batches, BatchRun};
use crate::model::levels::posterior_then_prior;

/// Sums over images of the NLL and of each level's KL, turned into a [`DepthPoint`].
#[derive(Default)]
pub struct DepthTotals {
    images: usize,
    nll: f64,
    rate: f64,
}

impl DepthTotals {
    /// Adds one batch: its per-image NLL and the per-image KL of the posterior levels.
    pub fn add(&mut self, nll: &[f32], kl: &[Vec<f32>]) {
        self.images += nll.len();
        self.nll += nll.iter().map(|&v| v as f64).sum::<f64>();
        self.rate += kl.iter().flatten().map(|&v| v as f64).sum::<f64>();
    }

    pub fn point(&self, k: usize, dims: usize) -> Result<DepthPoint> {
        let per_dim = (self.images.max(1) * dims) as f64;
        let (distortion, rate) = (self.nll / per_dim, self.rate / per_dim);
        if !(distortion.is_finite() && rate.is_finite()) {
            return Err(Error::Input(format!(
                "with {k} levels from the posterior the distortion ({distortion}) or rate ({rate}) is not finite: the checkpoint's weights produce NaN or inf"
            )));
        }
        Ok(DepthPoint {
            k,
            distortion_nats_per_dim: distortion,
            rate_nats_per_dim: rate,
            elbo_nats_per_dim: distortion + rate,
        })
    }
}

/// The [`DepthPoint`] of `k` levels from the posterior mean, the rest from the
/// prior at `temperatures` (one per level), over the images of `run`.
pub fn depth_point(run: &BatchRun<'_, '_>, k: usize, temperatures: &[f32]) -> Result<DepthPoint> {
    let sources = posterior_then_prior(run.h.latent_levels()?, k, temperatures)?;
    let mut totals = DepthTotals::default();
    over_batches(run, &sources, |c, _| {
        let kl = (0..k).map(|l| c.kl(l)).collect::<Result<Vec<_>>>()?;
        totals.add(&c.nll()?, &kl.into_iter().flatten().collect::<Vec<_>>());
        Ok(())
    })?;
    totals.point(k, run.images.image_len())
}
