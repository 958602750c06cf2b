//! A model's graph under construction, the part every model kind shares: its
//! parameters by name, the data inputs, the latent levels of the kind the
//! config names (VDVAE or Ladder VAE: `vdvae.rs` and `ladder.rs` build them),
//! and the likelihood's NLL and images. `assemble.rs` makes the training graph
//! of these pieces, `conditional.rs` the graph with each level's z from a chosen source.

use std::collections::HashMap;

use super::config::{HParams, Likelihood};
use super::layout::internal_shape;
use super::levels::{check_sources, Level, LevelSource};
use super::params::{param_specs, ParamSpec};
use super::preprocess::{bernoulli_input, likelihood_target, network_input, Binarization, Normalization};
use super::{ladder, vdvae};
use crate::data::ImageSet;
use crate::error::{Error, Result};
use crate::graph::{Graph, Role, TensorId};

/// A graph under construction and its parameters by name.
pub(crate) struct Builder {
    pub g: Graph,
    p: HashMap<String, TensorId>,
    /// Tests only: each VDVAE posterior reads `cat[x, a]` from a concatenated
    /// copy, the reference its in-place read is compared with (see `vdvae.rs`).
    #[cfg(test)]
    pub materialised_cat: bool,
}

impl Builder {
    /// A graph holding every parameter of `h` (graph layouts).
    pub(crate) fn with_params(h: &HParams) -> Result<(Builder, Vec<(ParamSpec, TensorId)>)> {
        h.validate()?;
        let mut b = Builder {
            g: Graph::default(),
            p: HashMap::new(),
            #[cfg(test)]
            materialised_cat: false,
        };
        let mut params = Vec::new();
        for s in param_specs(h)? {
            let t = b.g.tensor(s.name.clone(), internal_shape(&s), Role::Param);
            b.p.insert(s.name.clone(), t);
            params.push((s, t));
        }
        Ok((b, params))
    }

    pub(crate) fn param(&self, name: &str) -> Result<TensorId> {
        self.p
            .get(name)
            .copied()
            .ok_or_else(|| Error::Shape(format!("no parameter named {name}")))
    }

    /// The data inputs for `batch` images: the network input and target (DMoL),
    /// or the pixel probabilities and their binarization (Bernoulli).
    pub(crate) fn data_input(&mut self, h: &HParams, batch: usize) -> Result<DataInput> {
        if batch == 0 {
            return Err(Error::Input("batch must be at least 1".into()));
        }
        let (s, c) = (h.image_size, h.image_channels);
        // The MLP reads each image as one vector: the same NHWC data, viewed [N, 1, 1, D].
        let image_shape = if h.is_mlp() {
            vec![batch, 1, 1, s * s * c]
        } else {
            vec![batch, s, s, c]
        };
        let input = self.g.tensor("input", image_shape.clone(), Role::Input);
        Ok(match h.likelihood {
            Likelihood::Dmol => DataInput {
                input,
                target: self.g.tensor("target", image_shape, Role::Input),
                x: input,
            },
            Likelihood::Bernoulli => {
                let x = self.g.binarize("binarized", input, BINARIZE_STREAM)?;
                DataInput { input, target: x, x }
            }
        })
    }

    /// Every latent level from its source, top first, then the likelihood's
    /// parameters. `x` is what the encoder reads (needed when a level reads the posterior).
    pub(crate) fn levels(
        &mut self,
        h: &HParams,
        x: Option<TensorId>,
        batch: usize,
        sources: &[LevelSource],
    ) -> Result<(TensorId, Vec<Level>)> {
        check_sources(sources, h.latent_levels()?, x.is_some())?;
        super::limits::check_batch(h, batch)?;
        let x = x.filter(|_| sources.iter().any(|s| s.reads_data()));
        if h.is_mlp() {
            ladder::build_levels(self, h, x, batch, sources)
        } else {
            vdvae::build_levels(self, h, x, batch, sources)
        }
    }

    /// Per-image NLL `[N]` of `target` under the likelihood's parameters `out`.
    pub(crate) fn nll(&mut self, h: &HParams, out: TensorId, target: TensorId) -> Result<TensorId> {
        match h.likelihood {
            Likelihood::Dmol => self.g.dmol_nll("decoder.out_net.nll", out, target, h.low_bit),
            Likelihood::Bernoulli => self.g.bernoulli_nll("likelihood.nll", out, target),
        }
    }

    /// Images from the likelihood's parameters: DMoL samples in [-1, 1], or Bernoulli means.
    pub(crate) fn images(&mut self, h: &HParams, out: TensorId) -> Result<TensorId> {
        let levels = h.latent_levels()? as u32;
        match h.likelihood {
            Likelihood::Dmol => self.g.dmol_sample("samples", out, h.image_channels, h.low_bit, levels),
            Likelihood::Bernoulli => self.g.bernoulli_mean("samples", out),
        }
    }

    /// The input a [`LevelSource::Given`] level's z is written to.
    pub(crate) fn given_latent(&mut self, name: &str, shape: Vec<usize>) -> Level {
        let z = self.g.tensor(name, shape, Role::Input);
        Level {
            given: Some(z),
            ..Level::drawn(z)
        }
    }
}

/// A model's data tensors: what the data is written to, the likelihood's
/// target and what the encoder reads (see [`ModelGraph`](super::assemble::ModelGraph)).
pub(crate) struct DataInput {
    pub input: TensorId,
    pub target: TensorId,
    pub x: TensorId,
}

/// Of a model's `input` and `target`, the graph inputs the data is written to,
/// in [`encode_images`] order: a Bernoulli model's target is drawn by the graph from its input.
pub(crate) fn written_inputs(likelihood: Likelihood, input: TensorId, target: TensorId) -> Vec<TensorId> {
    match likelihood {
        Likelihood::Dmol => vec![input, target],
        Likelihood::Bernoulli => vec![input],
    }
}

/// Noise stream of the training binarization (apart from the latents' 0, 1, …).
pub const BINARIZE_STREAM: u32 = u32::MAX - 1000;

/// The values of a model's data inputs for uint8 images (see
/// [`ModelGraph::input_data`](super::assemble::ModelGraph::input_data)).
pub fn encode_images(
    likelihood: Likelihood,
    images: &ImageSet,
    norm: Normalization,
    binarization: Binarization,
) -> Vec<Vec<f32>> {
    match likelihood {
        Likelihood::Dmol => vec![network_input(images, norm), likelihood_target(images)],
        Likelihood::Bernoulli => vec![bernoulli_input(images, binarization)],
    }
}
