//! `vdvae reconstruct`: the first k levels from the posterior mean, the rest
//! from the prior at a temperature, decoded; one row of images per k.

use crate::checkpoint::NamedTensors;
use crate::data::ImageSet;
use crate::error::Result;
use crate::model::conditional::Conditional;
use crate::model::evaluate::Device;
use crate::model::levels::posterior_then_prior;
use crate::model::preprocess::Normalization;
use crate::model::HParams;

/// The images decoded with their first `k` levels from the posterior mean and
/// the rest from the prior at `temperatures` (one per level, top first), for
/// each k in `ks`. A Bernoulli model's images should come binarized
/// ([`fixed_binary_images`](crate::model::preprocess::fixed_binary_images)).
#[allow(clippy::too_many_arguments)]
pub fn reconstruct(
    device: Device<'_>,
    h: &HParams,
    weights: &NamedTensors,
    images: &ImageSet,
    norm: Normalization,
    ks: &[usize],
    temperatures: &[f32],
    seed: u64,
) -> Result<Vec<ImageSet>> {
    let levels = h.latent_levels()?;
    let mut rows = Vec::with_capacity(ks.len());
    for &k in ks {
        let sources = posterior_then_prior(levels, k, temperatures)?;
        let mut c = Conditional::new(device, h, weights, images.n, &sources, false, seed)?;
        if k > 0 {
            c.set_images(images, norm)?;
        }
        c.run(0)?;
        rows.push(c.images()?);
    }
    Ok(rows)
}
