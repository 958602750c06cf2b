//! A model's training graph assembled: the data, every latent level drawn
//! from its posterior, the likelihood and the loss, for either model kind
//! ([`build_model`]); and [`ModelGraph`], which knows where the parts are and
//! moves weights, images and gradients in and out under official names.

use super::builder::{encode_images, written_inputs, Builder};
use super::config::{HParams, Likelihood};
use super::layout::{to_internal, to_official};
use super::levels::LevelSource;
use super::objective;
use super::params::{check_against, ParamSpec};
use super::preprocess::{Binarization, Normalization};
use crate::checkpoint::{NamedTensors, Tensor};
use crate::data::ImageSet;
use crate::error::{Error, Result};
use crate::graph::executor::cpu::Values;
use crate::graph::{Graph, Sampling, TensorId};

/// A built model: its graph and where its named parts are.
pub struct ModelGraph {
    pub graph: Graph,
    /// Official spec and graph tensor of each parameter, in `param_specs` order.
    pub params: Vec<(ParamSpec, TensorId)>,
    /// What the data is written to: the network input `(x - mean) / std`
    /// (DMoL), or the pixel probabilities `x / 255` that the graph binarizes (Bernoulli).
    pub input: TensorId,
    /// Likelihood target: `x / 127.5 - 1` (a graph input, DMoL), or the binarized
    /// image the graph draws from `input` (Bernoulli).
    pub target: TensorId,
    pub likelihood: Likelihood,
    /// Per-image NLL `[N]` (nats, summed over pixels).
    pub nll: TensorId,
    /// Per-image KL of each decoder level `[N]`, top (coarsest) first.
    pub kl_per_level: Vec<TensorId>,
    pub loss: TensorId,
    pub batch: usize,
    pub dims: usize,
}

/// Builds the forward graph of the model `h` describes (VDVAE or Ladder VAE) for `batch` images.
pub fn build_model(h: &HParams, batch: usize, sampling: Sampling) -> Result<ModelGraph> {
    let (b, params) = Builder::with_params(h)?;
    assemble(b, params, h, batch, sampling)
}

/// [`build_model`] with each VDVAE posterior's input `cat[x, a]` materialised
/// by a channel copy, as before its conv read x and a in place: the reference
/// the in-place graph is tested against (tests in `vdvae.rs`).
#[cfg(test)]
pub(crate) fn build_model_materialised_cat(h: &HParams, batch: usize, sampling: Sampling) -> Result<ModelGraph> {
    let (mut b, params) = Builder::with_params(h)?;
    b.materialised_cat = true;
    assemble(b, params, h, batch, sampling)
}

fn assemble(
    mut b: Builder,
    params: Vec<(ParamSpec, TensorId)>,
    h: &HParams,
    batch: usize,
    sampling: Sampling,
) -> Result<ModelGraph> {
    let data = b.data_input(h, batch)?;
    let sources = vec![LevelSource::Posterior(sampling); h.latent_levels()?];
    let (out, levels) = b.levels(h, Some(data.x), batch, &sources)?;
    let kl: Vec<TensorId> = levels
        .iter()
        .map(|l| l.kl.expect("a posterior level has a KL"))
        .collect();
    let nll = b.nll(h, out, data.target)?;
    let dims = h.image_size * h.image_size * h.image_channels;
    let (loss, kl_per_level) = objective::loss(&mut b.g, h, nll, &kl, dims)?;
    Ok(ModelGraph {
        graph: b.g,
        params,
        input: data.input,
        target: data.target,
        likelihood: h.likelihood,
        nll,
        kl_per_level,
        loss,
        batch,
        dims,
    })
}

/// Graph values holding `weights` (official names and layouts) for `params`,
/// after checking every name and shape.
pub fn param_values(
    graph: &Graph,
    params: &[(ParamSpec, TensorId)],
    weights: &NamedTensors,
    what: &str,
) -> Result<Values> {
    let specs: Vec<ParamSpec> = params.iter().map(|(s, _)| s.clone()).collect();
    check_against(&specs, weights, what)?;
    let mut values: Values = vec![None; graph.tensors.len()];
    for (spec, t) in params {
        values[*t] = Some(to_internal(spec, &weights[&spec.name].data));
    }
    Ok(values)
}

impl ModelGraph {
    /// Graph values holding a checkpoint's weights (official names and layouts),
    /// after checking every name and shape against the config.
    pub fn values_from_checkpoint(&self, weights: &NamedTensors, what: &str) -> Result<Values> {
        param_values(&self.graph, &self.params, weights, what)
    }

    /// The graph inputs that hold `images` (uint8): the network input and
    /// target (DMoL), or the pixel probabilities the graph binarizes afresh
    /// each step (Bernoulli, [`Binarization::Dynamic`]) or binary pixels drawn
    /// once from a seed ([`Binarization::Fixed`], for evaluation).
    pub fn input_data(
        &self,
        images: &ImageSet,
        norm: Normalization,
        binarization: Binarization,
    ) -> Result<Vec<(TensorId, Vec<f32>)>> {
        let want = self.graph.shape(self.input);
        let per_image: usize = want[1..].iter().product();
        if images.n != want[0] || images.image_len() != per_image {
            return Err(Error::Input(format!(
                "the model takes {} images of {per_image} values ({:?}); got {}x{}x{}x{}",
                want[0], want, images.n, images.h, images.w, images.c
            )));
        }
        Ok(self
            .data_inputs()
            .into_iter()
            .zip(encode_images(self.likelihood, images, norm, binarization))
            .collect())
    }

    /// The graph inputs the data is written to, in [`encode_images`] order.
    pub fn data_inputs(&self) -> Vec<TensorId> {
        written_inputs(self.likelihood, self.input, self.target)
    }

    /// Sets the graph inputs from uint8 images ([`ModelGraph::input_data`], binarized afresh by the graph).
    pub fn set_images(&self, values: &mut Values, images: &ImageSet, norm: Normalization) -> Result<()> {
        for (t, data) in self.input_data(images, norm, Binarization::Dynamic)? {
            values[t] = Some(data);
        }
        Ok(())
    }

    /// Every parameter gradient, under official names and layouts.
    pub fn official_grads(&self, values: &Values) -> Result<NamedTensors> {
        let mut out = NamedTensors::new();
        for (spec, p) in &self.params {
            let (_, d) = self
                .graph
                .param_grads
                .iter()
                .find(|(q, _)| q == p)
                .ok_or_else(|| Error::Shape(format!("{} has no gradient (was autodiff run?)", spec.name)))?;
            let data = values[*d]
                .as_ref()
                .ok_or_else(|| Error::Shape(format!("{} was not computed", spec.name)))?;
            out.insert(
                spec.name.clone(),
                Tensor {
                    shape: spec.shape.clone(),
                    data: to_official(spec, data),
                },
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::autodiff::append_backward;
    use crate::model::preset;

    #[test]
    fn every_parameter_gets_a_gradient() {
        let h = preset("mnist-tiny").unwrap();
        let mut m = build_model(&h, 2, Sampling::Posterior).unwrap();
        append_backward(&mut m.graph).unwrap();
        assert_eq!(m.graph.param_grads.len(), m.params.len());
        for &(p, d) in &m.graph.param_grads {
            assert_eq!(m.graph.shape(p), m.graph.shape(d), "{}", m.graph.tensors[p].name);
        }
    }

    #[test]
    fn internal_shapes_are_channels_last() {
        let h = preset("mnist-tiny").unwrap();
        let m = build_model(&h, 1, Sampling::Posterior).unwrap();
        let by_name = |n: &str| {
            m.params
                .iter()
                .find(|(s, _)| s.name == n)
                .map(|&(_, t)| m.graph.shape(t).to_vec())
        };
        assert_eq!(by_name("encoder.in_conv.weight").unwrap(), vec![16, 3, 3, 1]);
        assert_eq!(by_name("decoder.bias_xs.1").unwrap(), vec![1, 4, 4, 16]);
        assert_eq!(by_name("decoder.gain").unwrap(), vec![16]);
    }
}
