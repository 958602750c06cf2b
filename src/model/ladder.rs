//! The Ladder VAE of Sønderby et al. (2016) in the paper's MLP form, as a
//! graph. Every tensor is a feature vector per image, `[N, 1, 1, F]`.
//!
//! ```text
//! bottom-up   d_0 = MLP(x), d_l = MLP(d_{l-1});  (mu_d, logsig_d)_l = heads(d_l)
//! top-down    q(z_top | x) = N(mu_d, sig_d) against the prior N(0, I);
//!             for l below: t = MLP(z_{l+1}), (mu_p, logsig_p) = heads(t),
//!             q(z_l | ·) = precision-weighted merge of (mu_d, sig_d) and (mu_p, sig_p)
//! output      logits = Linear(MLP(z_0)), x ~ Bernoulli(sigmoid(logits))
//! ```
//!
//! An MLP block is `ladder_mlp_layers` of Linear → GroupNorm (layer norm with
//! one group) → activation. Levels are indexed bottom (data) first in parameter
//! names; KL per level is reported top first like the VDVAE's.

use super::builder::Builder;
use super::config::{ActivationName, HParams};
use super::levels::{Level, LevelSource, PosteriorParts};
use super::params::{Init, ParamSpec};
use crate::error::Result;
use crate::graph::{ActivationKind, Role, TensorId};

/// Normalisation epsilon (PyTorch's default).
const NORM_EPS: f32 = 1e-5;

fn linear(out: &mut Vec<ParamSpec>, prefix: &str, cin: usize, cout: usize, bias: bool) {
    out.push(ParamSpec {
        name: format!("{prefix}.weight"),
        shape: vec![cin, cout],
        // PyTorch's Linear default: U(±1/sqrt(fan_in)).
        init: Init::ConvUniform {
            fan_in: cin,
            scale: 1.0,
        },
    });
    if bias {
        out.push(ParamSpec {
            name: format!("{prefix}.bias"),
            shape: vec![cout],
            init: Init::Zeros,
        });
    }
}

/// An MLP block's parameters: each layer a bias-free Linear (the norm's beta
/// is its bias) and the norm's gain and bias.
fn mlp(out: &mut Vec<ParamSpec>, prefix: &str, cin: usize, width: usize, layers: usize) {
    let mut c = cin;
    for k in 0..layers {
        linear(out, &format!("{prefix}.fc{k}"), c, width, false);
        for (name, init) in [("weight", Init::Ones), ("bias", Init::Zeros)] {
            out.push(ParamSpec {
                name: format!("{prefix}.norm{k}.{name}"),
                shape: vec![width],
                init,
            });
        }
        c = width;
    }
}

/// Pixels per image: the MLP reads the image as one vector.
pub fn data_dims(h: &HParams) -> usize {
    h.image_size * h.image_size * h.image_channels
}

/// Every parameter of the MLP Ladder VAE.
pub fn param_specs(h: &HParams) -> Vec<ParamSpec> {
    let (hidden, latent, layers) = (&h.ladder_hidden, &h.ladder_latent, h.ladder_mlp_layers);
    let levels = latent.len();
    let mut out = Vec::new();
    for l in 0..levels {
        let cin = if l == 0 { data_dims(h) } else { hidden[l - 1] };
        let p = format!("ladder.up.{l}");
        mlp(&mut out, &p, cin, hidden[l], layers);
        linear(&mut out, &format!("{p}.mu"), hidden[l], latent[l], true);
        linear(&mut out, &format!("{p}.logsig"), hidden[l], latent[l], true);
    }
    for l in 0..levels - 1 {
        let p = format!("ladder.down.{l}");
        mlp(&mut out, &p, latent[l + 1], hidden[l], layers);
        linear(&mut out, &format!("{p}.mu"), hidden[l], latent[l], true);
        linear(&mut out, &format!("{p}.logsig"), hidden[l], latent[l], true);
    }
    mlp(&mut out, "ladder.out", latent[0], hidden[0], layers);
    linear(&mut out, "ladder.out.logits", hidden[0], data_dims(h), true);
    out
}

fn activation(h: &HParams) -> ActivationKind {
    match h.activation {
        ActivationName::LeakyRelu => ActivationKind::LeakyRelu { slope: 0.1 },
        ActivationName::Elu => ActivationKind::Elu,
        ActivationName::Gelu => ActivationKind::Gelu,
    }
}

/// The noise stream of level l's latent (the VDVAE numbers its levels the same way).
fn latent_stream(levels: usize, l: usize) -> u32 {
    (levels - 1 - l) as u32
}

impl Builder {
    fn linear(&mut self, prefix: &str, x: TensorId, bias: bool) -> Result<TensorId> {
        let w = self.param(&format!("{prefix}.weight"))?;
        let b = if bias {
            Some(self.param(&format!("{prefix}.bias"))?)
        } else {
            None
        };
        self.g.linear(prefix, x, w, b)
    }

    fn mlp(&mut self, h: &HParams, prefix: &str, x: TensorId) -> Result<TensorId> {
        let mut t = x;
        for k in 0..h.ladder_mlp_layers {
            t = self.linear(&format!("{prefix}.fc{k}"), t, false)?;
            let norm = format!("{prefix}.norm{k}");
            let (gamma, beta) = (
                self.param(&format!("{norm}.weight"))?,
                self.param(&format!("{norm}.bias"))?,
            );
            t = self.g.group_norm(&norm, t, gamma, beta, h.norm_groups, NORM_EPS)?;
            t = self.g.activate(&format!("{prefix}.act{k}"), t, activation(h))?;
        }
        Ok(t)
    }

    /// `(mu, logsig)` of a level from a block's output.
    fn gaussian_heads(&mut self, prefix: &str, t: TensorId) -> Result<(TensorId, TensorId)> {
        Ok((
            self.linear(&format!("{prefix}.mu"), t, true)?,
            self.linear(&format!("{prefix}.logsig"), t, true)?,
        ))
    }

    /// The standard normal prior of the top level: zero means and log-scales.
    fn standard_normal(&mut self, name: &str, batch: usize, z: usize) -> (TensorId, TensorId) {
        let zeros = self.g.tensor(name, vec![batch, 1, 1, z], Role::Constant);
        self.g.constants.push((zeros, vec![0.0; batch * z]));
        (zeros, zeros)
    }

    /// Bernoulli logits of the images from the bottom latent.
    fn ladder_output(&mut self, h: &HParams, z0: TensorId) -> Result<TensorId> {
        let t = self.mlp(h, "ladder.out", z0)?;
        self.linear("ladder.out.logits", t, true)
    }
}

/// The bottom-up pass (when `x`, the binary image `[N, 1, 1, D]`, is given),
/// then the top-down pass drawing each level from its source; returns the
/// Bernoulli logits and the levels, top first.
pub(crate) fn build_levels(
    b: &mut Builder,
    h: &HParams,
    x: Option<TensorId>,
    batch: usize,
    sources: &[LevelSource],
) -> Result<(TensorId, Vec<Level>)> {
    let levels = h.ladder_latent.len();
    let mut up = Vec::with_capacity(levels);
    if let Some(mut d) = x {
        for l in 0..levels {
            let p = format!("ladder.up.{l}");
            d = b.mlp(h, &p, d)?;
            up.push(b.gaussian_heads(&p, d)?);
        }
    }
    let top = levels - 1;
    let mut out = Vec::with_capacity(levels);
    let mut z = None;
    for l in (0..levels).rev() {
        let prior = match z {
            None => b.standard_normal("ladder.top.prior", batch, h.ladder_latent[top]),
            Some(z) => {
                let p = format!("ladder.down.{l}");
                let t = b.mlp(h, &p, z)?;
                b.gaussian_heads(&p, t)?
            }
        };
        let name = format!("ladder.z.{l}");
        let stream = latent_stream(levels, l);
        let level = match sources[top - l] {
            LevelSource::Posterior(sampling) => {
                let (zl, kl, posterior) = if l == top {
                    let (zl, kl) = b.g.reparam_kl(&name, up[l], prior, sampling, stream)?;
                    let (mu, logsig) = up[l];
                    (zl, kl, PosteriorParts::Split { mu, logsig })
                } else {
                    let (zl, kl) = b.g.reparam_kl_ladder(&name, up[l], prior, sampling, stream)?;
                    (zl, kl, PosteriorParts::Merged { d: up[l], p: prior })
                };
                Level {
                    kl: Some(kl),
                    posterior: Some(posterior),
                    ..Level::drawn(zl)
                }
            }
            LevelSource::Prior { temperature } => Level::drawn(b.g.prior_sample(&name, prior, temperature, stream)?),
            LevelSource::Given => b.given_latent(&format!("{name}.given"), vec![batch, 1, 1, h.ladder_latent[l]]),
        };
        z = Some(level.z);
        out.push(level);
    }
    let logits = b.ladder_output(h, z.expect("at least one level"))?;
    Ok((logits, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::preset;

    #[test]
    fn the_paper_model_has_five_levels_and_its_layer_sizes() {
        let h = preset("ladder-mnist").unwrap();
        let specs = param_specs(&h);
        let shape = |n: &str| specs.iter().find(|s| s.name == n).unwrap().shape.clone();
        assert_eq!(shape("ladder.up.0.fc0.weight"), vec![784, 512]);
        assert_eq!(shape("ladder.up.4.mu.weight"), vec![32, 4]);
        assert_eq!(shape("ladder.down.3.fc0.weight"), vec![4, 64]);
        assert_eq!(shape("ladder.down.0.logsig.weight"), vec![512, 64]);
        assert_eq!(shape("ladder.out.logits.weight"), vec![512, 784]);
        assert!(!specs.iter().any(|s| s.name.starts_with("ladder.down.4")));
    }
}
