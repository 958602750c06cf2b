//! Distortion by depth: the reconstruction with the first k levels from the
//! posterior mean and the rest from the prior, for every k. What each level
//! adds to the reconstruction, and at what rate.

use super::report::DepthPoint;
use crate::checkpoint::NamedTensors;
use crate::data::ImageSet;
use crate::error::{Error, Result};
use crate::model::conditional::Conditional;
use crate::model::evaluate::Device;
use crate::model::levels::posterior_then_prior;
use crate::model::preprocess::Normalization;
use crate::model::HParams;

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
/// prior at `temperatures` (one per level), over `images` in batches of `batch`.
/// A Bernoulli model's images should come binarized
/// ([`fixed_binary_images`](crate::model::preprocess::fixed_binary_images)).
#[allow(clippy::too_many_arguments)]
pub fn depth_point(
    device: Device<'_>,
    h: &HParams,
    weights: &NamedTensors,
    images: &ImageSet,
    norm: Normalization,
    batch: usize,
    k: usize,
    temperatures: &[f32],
    seed: u64,
) -> Result<DepthPoint> {
    if images.n == 0 {
        return Err(Error::Input("the dataset holds no images".into()));
    }
    let sources = posterior_then_prior(h.latent_levels()?, k, temperatures)?;
    let batch = batch.clamp(1, images.n);
    let mut totals = DepthTotals::default();
    let mut graph: Option<Conditional<'_>> = None;
    let mut start = 0;
    while start < images.n {
        let n = batch.min(images.n - start);
        if graph.as_ref().is_none_or(|c| c.spec.batch != n) {
            graph = Some(Conditional::new(device, h, weights, n, &sources, true, seed)?);
        }
        let c = graph.as_mut().expect("just built");
        c.set_images(&images.range(start, n), norm)?;
        c.run((start / batch) as u32)?;
        let kl = (0..k).map(|l| c.kl(l)).collect::<Result<Vec<_>>>()?;
        totals.add(&c.nll()?, &kl.into_iter().flatten().collect::<Vec<_>>());
        start += n;
    }
    totals.point(k, images.image_len())
}
