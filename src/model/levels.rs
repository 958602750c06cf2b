//! Where each latent level's z comes from, and what a built level exposes.
//!
//! Training draws every level from its posterior; the sampler draws every
//! level from its prior. The diagnostics mix them: the first k levels from the
//! posterior and the rest from the prior (partial reconstructions, distortion
//! by depth), or some levels given by the caller (interpolation). Both model
//! builders take one [`LevelSource`] per level, top (coarsest) first.

use crate::error::{Error, Result};
use crate::graph::{Sampling, TensorId};
use crate::kernels::reparam_kl::reference::ladder_merge;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LevelSource {
    /// From the posterior q(z | x, z above): its mean, a sample, or an importance sample.
    Posterior(Sampling),
    /// From the prior p(z | z above) at a temperature (official: `logsig_p += ln t`); 0 gives its mean.
    Prior { temperature: f32 },
    /// Written by the caller to the level's `given` input.
    Given,
}

impl LevelSource {
    pub fn reads_data(self) -> bool {
        matches!(self, LevelSource::Posterior(_))
    }
}

/// The first `k` of `levels` from the posterior mean, the rest from the
/// prior at `temperatures` (one per level, top first).
pub fn posterior_then_prior(levels: usize, k: usize, temperatures: &[f32]) -> Result<Vec<LevelSource>> {
    if temperatures.len() != levels {
        return Err(Error::Input(format!(
            "{} temperatures for the model's {levels} latent levels",
            temperatures.len()
        )));
    }
    if k > levels {
        return Err(Error::Input(format!(
            "{k} levels from the posterior: the model has {levels} latent levels"
        )));
    }
    Ok((0..levels)
        .map(|l| {
            if l < k {
                LevelSource::Posterior(Sampling::PosteriorMean)
            } else {
                LevelSource::Prior {
                    temperature: temperatures[l],
                }
            }
        })
        .collect())
}

/// Checks a temperature: finite and ≥ 0.
pub fn check_temperature(t: f32) -> Result<()> {
    if t.is_finite() && t >= 0.0 {
        Ok(())
    } else {
        Err(Error::Input(format!(
            "temperature must be a finite number ≥ 0, got {t}"
        )))
    }
}

/// The graph tensors of a posterior, in the form the model computes it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PosteriorParts {
    /// `[.., 2z]`: mu in channels `0..z`, log sigma in `z..2z` (the VDVAE's posterior block output).
    Packed { q: TensorId, zdim: usize },
    /// mu and log sigma as two tensors (the MLP Ladder's top level).
    Split { mu: TensorId, logsig: TensorId },
    /// The Ladder VAE's precision-weighted merge of a bottom-up estimate and the prior.
    Merged {
        d: (TensorId, TensorId),
        p: (TensorId, TensorId),
    },
}

impl PosteriorParts {
    /// Every tensor the posterior is read from.
    pub fn tensors(&self) -> Vec<TensorId> {
        match *self {
            PosteriorParts::Packed { q, .. } => vec![q],
            PosteriorParts::Split { mu, logsig } => vec![mu, logsig],
            PosteriorParts::Merged { d, p } => vec![d.0, d.1, p.0, p.1],
        }
    }

    /// `(mu, log sigma)` of the posterior, element order of z, from the
    /// values of [`PosteriorParts::tensors`] (in that order).
    pub fn gaussian(&self, values: &[Vec<f32>]) -> (Vec<f32>, Vec<f32>) {
        match *self {
            PosteriorParts::Packed { zdim, .. } => {
                let q = &values[0];
                let (mut mu, mut logsig) = (Vec::with_capacity(q.len() / 2), Vec::with_capacity(q.len() / 2));
                for row in q.chunks_exact(2 * zdim) {
                    mu.extend_from_slice(&row[..zdim]);
                    logsig.extend_from_slice(&row[zdim..]);
                }
                (mu, logsig)
            }
            PosteriorParts::Split { .. } => (values[0].clone(), values[1].clone()),
            PosteriorParts::Merged { .. } => {
                let [md, ld, mp, lp] = [&values[0], &values[1], &values[2], &values[3]];
                (0..md.len())
                    .map(|i| {
                        let (m, l) = ladder_merge(md[i] as f64, ld[i] as f64, mp[i] as f64, lp[i] as f64);
                        (m as f32, l as f32)
                    })
                    .unzip()
            }
        }
    }
}

/// One built level.
#[derive(Clone, Debug, PartialEq)]
pub struct Level {
    /// The latent the decoder reads.
    pub z: TensorId,
    /// Per-element KL(q ‖ p) at z's shape (posterior levels).
    pub kl: Option<TensorId>,
    /// The posterior's tensors (posterior levels).
    pub posterior: Option<PosteriorParts>,
    /// The input z is written to ([`LevelSource::Given`] levels).
    pub given: Option<TensorId>,
}

impl Level {
    pub fn drawn(z: TensorId) -> Level {
        Level {
            z,
            kl: None,
            posterior: None,
            given: None,
        }
    }
}

/// The per-level sources' check: one per level, temperatures valid, data when a level reads it.
pub fn check_sources(sources: &[LevelSource], levels: usize, has_data: bool) -> Result<()> {
    if sources.len() != levels {
        return Err(Error::Input(format!(
            "the model has {levels} latent levels; {} level sources were given",
            sources.len()
        )));
    }
    for s in sources {
        match *s {
            LevelSource::Prior { temperature } => check_temperature(temperature)?,
            LevelSource::Posterior(_) if !has_data => {
                return Err(Error::Input(
                    "a level drawn from the posterior needs an image to encode".into(),
                ))
            }
            _ => {}
        }
    }
    Ok(())
}
