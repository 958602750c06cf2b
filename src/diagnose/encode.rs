//! `vdvae encode`: every level's posterior (mean and standard deviation) of
//! each image, along the posterior-mean path (each level's z is its posterior
//! mean, so a level's posterior is conditioned on the means above it).

use crate::checkpoint::{NamedTensors, Tensor};
use crate::error::Result;
use crate::graph::Sampling;
use crate::model::conditional::{over_batches, BatchRun};
use crate::model::levels::LevelSource;

/// One batch's pass with every level from its posterior mean: per-image NLL,
/// and per level the per-image KL and the posterior `(mu, log sigma)`, NHWC,
/// with the latent's shape per image `[H, W, C]`. With flow posteriors
/// (`flow_cells`), `(mu, log sigma)` is the Gaussian of z0 and `flowed` holds
/// each level's z after the cells (z0 = mu); without, `flowed` is empty.
pub struct PosteriorPass {
    pub shapes: Vec<Vec<usize>>,
    pub nll: Vec<f32>,
    pub kl: Vec<Vec<f32>>,
    pub posterior: Vec<(Vec<f32>, Vec<f32>)>,
    pub flowed: Vec<Vec<f32>>,
}

/// Runs the posterior-mean pass over the images of `run`, handing each batch
/// to `visit`. Returns each level's latent shape per image `[H, W, C]`.
pub fn posterior_passes(
    run: &BatchRun<'_, '_>,
    mut visit: impl FnMut(PosteriorPass) -> Result<()>,
) -> Result<Vec<Vec<usize>>> {
    let levels = run.h.latent_levels()?;
    let sources = vec![LevelSource::Posterior(Sampling::PosteriorMean); levels];
    let mut shapes = Vec::new();
    over_batches(run, &sources, |c, _| {
        shapes = (0..levels).map(|l| c.latent_shape(l)[1..].to_vec()).collect();
        let mut pass = PosteriorPass {
            shapes: shapes.clone(),
            nll: c.nll()?,
            kl: Vec::with_capacity(levels),
            posterior: Vec::with_capacity(levels),
            flowed: Vec::new(),
        };
        for l in 0..levels {
            pass.kl.push(c.kl(l)?.expect("every level reads the posterior"));
            pass.posterior
                .push(c.posterior(l)?.expect("every level reads the posterior"));
            if run.h.flow_cells > 0 {
                pass.flowed.push(c.z(l)?);
            }
        }
        visit(pass)
    })?;
    Ok(shapes)
}

/// The name of level `l`'s tensors in an encoding file: `level.00.mean`, `level.00.std`.
pub fn level_name(l: usize, what: &str) -> String {
    format!("level.{l:02}.{what}")
}

/// Every level's posterior mean and standard deviation of every image of
/// `run`, as tensors named by level ([`level_name`]), in PyTorch's layout:
/// `[N, C, H, W]` (an MLP level: `[N, C]`). With flow posteriors these are
/// z0's, and `level.LL.flowed` holds z after the cells from z0 = mean.
pub fn encode(run: &BatchRun<'_, '_>) -> Result<NamedTensors> {
    let (h, images) = (run.h, run.images);
    let levels = h.latent_levels()?;
    let mut mean = vec![Vec::new(); levels];
    let mut std = vec![Vec::new(); levels];
    let mut flowed = vec![Vec::new(); levels];
    let shapes = posterior_passes(run, |pass| {
        for (l, (mu, logsig)) in pass.posterior.into_iter().enumerate() {
            mean[l].extend(mu);
            std[l].extend(logsig.into_iter().map(f32::exp));
        }
        for (l, z) in pass.flowed.into_iter().enumerate() {
            flowed[l].extend(z);
        }
        Ok(())
    })?;
    let mut out = NamedTensors::new();
    for (l, shape) in shapes.iter().enumerate() {
        let [hh, ww, c] = shape[..] else {
            unreachable!("a latent is [N, H, W, C]")
        };
        let torch_shape = if h.is_mlp() {
            vec![images.n, c]
        } else {
            vec![images.n, c, hh, ww]
        };
        let mut parts = vec![("mean", &mean[l]), ("std", &std[l])];
        if h.flow_cells > 0 {
            parts.push(("flowed", &flowed[l]));
        }
        for (what, values) in parts {
            out.insert(
                level_name(l, what),
                Tensor {
                    shape: torch_shape.clone(),
                    data: nhwc_to_nchw(values, images.n, hh * ww, c),
                },
            );
        }
    }
    Ok(out)
}

/// `[N, HW, C]` to `[N, C, HW]`.
fn nhwc_to_nchw(x: &[f32], n: usize, hw: usize, c: usize) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    for i in 0..n {
        for p in 0..hw {
            for k in 0..c {
                out[(i * c + k) * hw + p] = x[(i * hw + p) * c + k];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_move_before_pixels() {
        // 1 image, 2 pixels, 3 channels: [p0c0, p0c1, p0c2, p1c0, ...].
        let x = [0.0, 1.0, 2.0, 10.0, 11.0, 12.0];
        assert_eq!(nhwc_to_nchw(&x, 1, 2, 3), vec![0.0, 10.0, 1.0, 11.0, 2.0, 12.0]);
    }
}
