//! `vdvae interpolate`: level L's latent moves linearly from one image's
//! posterior mean to another's; the levels above keep the first image's
//! posterior means and the levels below are drawn from the prior.

use crate::checkpoint::NamedTensors;
use crate::data::ImageSet;
use crate::error::{Error, Result};
use crate::graph::Sampling;
use crate::model::conditional::Conditional;
use crate::model::evaluate::Device;
use crate::model::levels::LevelSource;
use crate::model::preprocess::Normalization;
use crate::model::HParams;

/// What to interpolate.
pub struct Interpolation {
    /// Level from the top (0 = the coarsest).
    pub level: usize,
    /// Images in the strip, both ends included (≥ 2).
    pub steps: usize,
    /// Prior temperature of the levels below (0: the prior means).
    pub temperature: f32,
    pub seed: u64,
}

/// Decodes the strip between `pair` (two images; binarized for a Bernoulli
/// model, see [`fixed_binary_images`](crate::model::preprocess::fixed_binary_images)).
/// Returns the graph after its run: read `images()` or `likelihood_params()`.
pub fn interpolate<'d>(
    device: Device<'d>,
    h: &HParams,
    weights: &NamedTensors,
    pair: &ImageSet,
    norm: Normalization,
    how: &Interpolation,
) -> Result<Conditional<'d>> {
    let levels = h.latent_levels()?;
    let l_star = how.level;
    if l_star >= levels {
        return Err(Error::Input(format!(
            "--level {l_star}: the model has levels 0..={} (0 is the top)",
            levels - 1
        )));
    }
    if how.steps < 2 {
        return Err(Error::Input("--steps must be at least 2 (the two ends)".into()));
    }
    if pair.n != 2 {
        return Err(Error::Input("an interpolation runs between two images".into()));
    }
    // The posterior means of both images, down to level L.
    let mean = vec![LevelSource::Posterior(Sampling::PosteriorMean); levels];
    let mut encoder = Conditional::new(device, h, weights, 2, &mean, true, how.seed)?;
    encoder.set_images(pair, norm)?;
    encoder.run(0)?;
    let z: Vec<Vec<f32>> = (0..=l_star).map(|l| encoder.z(l)).collect::<Result<_>>()?;
    drop(encoder);

    let sources: Vec<LevelSource> = (0..levels)
        .map(|l| {
            if l <= l_star {
                LevelSource::Given
            } else {
                LevelSource::Prior {
                    temperature: how.temperature,
                }
            }
        })
        .collect();
    let mut strip = Conditional::new(device, h, weights, how.steps, &sources, false, how.seed)?;
    for (l, z) in z.iter().enumerate() {
        let (a, b) = z.split_at(z.len() / 2);
        let rows: Vec<f32> = (0..how.steps)
            .flat_map(|i| {
                // Above L every row is the first image's; at L the weight moves from a to b.
                let t = if l == l_star {
                    i as f32 / (how.steps - 1) as f32
                } else {
                    0.0
                };
                a.iter().zip(b).map(move |(&a, &b)| (1.0 - t) * a + t * b)
            })
            .collect();
        strip.set_latent(l, rows)?;
    }
    strip.run(0)?;
    Ok(strip)
}
