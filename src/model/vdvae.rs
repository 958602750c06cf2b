//! The VDVAE of docs/design-notes.md#the-vdvae-computation as a graph: encoder, top-down decoder with a
//! posterior, prior and residual block per level, DMoL output and the ELBO.

use std::collections::HashMap;

use super::blocks::LayerSpec;
use super::config::{HParams, Likelihood, ModelKind};
use super::layout::{to_internal, to_official};
use super::levels::{check_sources, Level, LevelSource, PosteriorParts};
use super::params::check_against;
use super::params::{param_specs, ParamSpec};
use super::preprocess::{bernoulli_input, likelihood_target, network_input, Binarization, Normalization};
use super::{ladder, objective};
use crate::checkpoint::{NamedTensors, Tensor};
use crate::data::ImageSet;
use crate::error::{Error, Result};
use crate::graph::executor::cpu::Values;
use crate::graph::{Graph, Role, Sampling, TensorId};

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

/// The graph shape of a parameter: conv weights `[out, kh, kw, in]`,
/// `bias_xs` `[1, H, W, C]`, gain/bias `[C]`, biases `[C]`.
pub fn internal_shape(spec: &ParamSpec) -> Vec<usize> {
    match spec.shape[..] {
        [1, c, 1, 1] if spec.name.starts_with("decoder.gain") || spec.name == "decoder.bias" => vec![c],
        [1, c, h, w] if spec.name.starts_with("decoder.bias_xs") => vec![1, h, w, c],
        [o, i, kh, kw] => vec![o, kh, kw, i],
        ref s => s.to_vec(),
    }
}

/// A graph under construction and its parameters by name.
pub(crate) struct Builder {
    pub g: Graph,
    p: HashMap<String, TensorId>,
}

impl Builder {
    pub(crate) fn param(&self, name: &str) -> Result<TensorId> {
        self.p
            .get(name)
            .copied()
            .ok_or_else(|| Error::Shape(format!("no parameter named {name}")))
    }

    fn conv(&mut self, prefix: &str, x: TensorId, residual: Option<TensorId>, gelu: bool) -> Result<TensorId> {
        let (w, b) = (
            self.param(&format!("{prefix}.weight"))?,
            self.param(&format!("{prefix}.bias"))?,
        );
        self.g.conv2d(prefix, x, w, Some(b), residual, gelu)
    }

    /// Block: c1..c4 with GELU before each conv; `x + f(x)` when residual.
    fn block(&mut self, prefix: &str, x: TensorId, residual: bool) -> Result<TensorId> {
        let c1 = self.conv(&format!("{prefix}.c1"), x, None, true)?;
        self.block_after_c1(prefix, c1, residual.then_some(x))
    }

    /// A non-residual Block over `cat[x, a]` along channels: its c1 reads x
    /// and a where they lie (`Graph::conv2d_cat`), no concatenated copy.
    fn block_cat(&mut self, prefix: &str, x: TensorId, a: TensorId) -> Result<TensorId> {
        let c1 = format!("{prefix}.c1");
        let (w, b) = (self.param(&format!("{c1}.weight"))?, self.param(&format!("{c1}.bias"))?);
        let t = self.g.conv2d_cat(&c1, x, a, w, Some(b), None, true)?;
        self.block_after_c1(prefix, t, None)
    }

    /// c2..c4 of a Block from c1's output, plus `residual` at the end.
    fn block_after_c1(&mut self, prefix: &str, c1: TensorId, residual: Option<TensorId>) -> Result<TensorId> {
        let mut t = c1;
        for c in ["c2", "c3"] {
            t = self.conv(&format!("{prefix}.{c}"), t, None, true)?;
        }
        self.conv(&format!("{prefix}.c4"), t, residual, true)
    }
}

impl Builder {
    /// A graph holding every parameter of `h` (graph layouts).
    pub(crate) fn with_params(h: &HParams) -> Result<(Builder, Vec<(ParamSpec, TensorId)>)> {
        h.validate()?;
        let mut b = Builder {
            g: Graph::default(),
            p: HashMap::new(),
        };
        let mut params = Vec::new();
        for s in param_specs(h)? {
            let t = b.g.tensor(s.name.clone(), internal_shape(&s), Role::Param);
            b.p.insert(s.name.clone(), t);
            params.push((s, t));
        }
        Ok((b, params))
    }

    /// The decoder's learned start states, repeated over the batch.
    fn decoder_start(&mut self, h: &HParams, batch: usize) -> Result<HashMap<usize, TensorId>> {
        let mut xs = HashMap::new();
        for (j, res) in super::params::bias_resolutions(h)?.into_iter().enumerate() {
            let bias = self.param(&format!("decoder.bias_xs.{j}"))?;
            xs.insert(
                res,
                self.g.broadcast_batch(&format!("decoder.start.{res}"), bias, batch)?,
            );
        }
        Ok(xs)
    }

    /// A level's input state: the resolution's state (zeros before any block
    /// there without a learned start), plus the upsampled mixin state.
    fn level_input(
        &mut self,
        p: &str,
        l: &LayerSpec,
        w: usize,
        xs: &HashMap<usize, TensorId>,
        batch: usize,
    ) -> Result<TensorId> {
        let r = l.res;
        let mut x = match xs.get(&r) {
            Some(&t) => t,
            None => {
                let zeros = self
                    .g
                    .tensor(format!("{p}.zeros"), vec![batch, r, r, w], Role::Constant);
                self.g.constants.push((zeros, vec![0.0; batch * r * r * w]));
                zeros
            }
        };
        if let Some(m) = l.mixin {
            let mut from = xs[&m];
            if *self.g.shape(from).last().unwrap() != w {
                from = self.g.slice_channels(&format!("{p}.mixin_slice"), from, 0, w)?;
            }
            let up = self.g.upsample(&format!("{p}.mixin"), from, r / m)?;
            x = self.g.add(&format!("{p}.mixed"), x, up)?;
        }
        Ok(x)
    }

    /// The prior block's output (mu_p, logsig_p, xpp along channels) and
    /// `x + xpp`, xpp read from the output in place (no slice).
    fn prior_features(&mut self, p: &str, x: TensorId, z: usize) -> Result<(TensorId, TensorId)> {
        let feats = self.block(&format!("{p}.prior"), x, false)?;
        let x = self.g.add_channels(&format!("{p}.x_xpp"), x, feats, 2 * z)?;
        Ok((feats, x))
    }

    /// `resnet(x + z_proj(z))`: the level's output state.
    fn level_output(&mut self, p: &str, zt: TensorId, x: TensorId) -> Result<TensorId> {
        let x = self.conv(&format!("{p}.z_proj"), zt, Some(x), false)?;
        self.block(&format!("{p}.resnet"), x, true)
    }

    /// `out_conv(x · gain + bias)`: the mixture-of-logistics parameters.
    fn output_head(&mut self, top: TensorId) -> Result<TensorId> {
        let (gain, bias) = (self.param("decoder.gain")?, self.param("decoder.bias")?);
        let y = self.g.affine("decoder.final", top, gain, bias)?;
        self.conv("decoder.out_net.out_conv", y, None, false)
    }
}

/// Builds the forward graph of the model `h` describes (VDVAE or Ladder VAE) for `batch` images.
pub fn build_model(h: &HParams, batch: usize, sampling: Sampling) -> Result<ModelGraph> {
    build(h, batch, sampling, false)
}

/// [`build_model`] with each posterior's input `cat[x, a]` materialised by a
/// channel copy, as before the conv read it in place: the reference the
/// in-place graph is tested against.
pub fn build_vdvae_materialised_cat(h: &HParams, batch: usize, sampling: Sampling) -> Result<ModelGraph> {
    build(h, batch, sampling, true)
}

fn build(h: &HParams, batch: usize, sampling: Sampling, materialised_cat: bool) -> Result<ModelGraph> {
    let (mut b, params) = Builder::with_params(h)?;
    let data = b.data_input(h, batch)?;
    let sources = vec![LevelSource::Posterior(sampling); h.latent_levels()?];
    let (out, levels) = b.levels(h, Some(data.x), batch, &sources, materialised_cat)?;
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

/// A model's data tensors: what the data is written to, the likelihood's
/// target and what the encoder reads (see [`ModelGraph`]).
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

impl Builder {
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
        materialised_cat: bool,
    ) -> Result<(TensorId, Vec<Level>)> {
        check_sources(sources, h.latent_levels()?, x.is_some())?;
        let x = x.filter(|_| sources.iter().any(|s| s.reads_data()));
        if h.is_mlp() {
            ladder::build_levels(self, h, x, batch, sources)
        } else {
            vdvae_levels(self, h, x, batch, sources, materialised_cat)
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

/// Noise stream of the training binarization (apart from the latents' 0, 1, …).
pub const BINARIZE_STREAM: u32 = u32::MAX - 1000;

/// The encoder's last activation at each resolution.
fn encoder(b: &mut Builder, h: &HParams, x: TensorId) -> Result<HashMap<usize, TensorId>> {
    let mut acts: HashMap<usize, TensorId> = HashMap::new();
    let mut x = b.conv("encoder.in_conv", x, None, false)?;
    acts.insert(h.image_size, x);
    for (i, l) in h.encoder_layers()?.iter().enumerate() {
        x = b.block(&format!("encoder.enc_blocks.{i}"), x, true)?;
        let mut res = l.res;
        if let Some(d) = l.down {
            x = b.g.avg_pool(&format!("encoder.enc_blocks.{i}.pool"), x, d)?;
            res /= d;
        }
        let w = h.width_at(res);
        if *b.g.shape(x).last().unwrap() != w {
            x = b.g.place_channels(&format!("encoder.pad.{i}"), x, 0, w)?;
        }
        acts.insert(res, x);
    }
    Ok(acts)
}

/// The VDVAE's encoder (when `x` is given) and top-down decoder, each level's
/// z from its source: returns the likelihood's parameters and the levels, top first.
fn vdvae_levels(
    b: &mut Builder,
    h: &HParams,
    x: Option<TensorId>,
    batch: usize,
    sources: &[LevelSource],
    materialised_cat: bool,
) -> Result<(TensorId, Vec<Level>)> {
    let acts = match x {
        Some(x) => encoder(b, h, x)?,
        None => HashMap::new(),
    };
    // The official posterior from cat[x, activation] (read in place), or the
    // Ladder VAE's merge of a bottom-up estimate from the activation alone
    // with the prior; prior from x; KL between them.
    let mut xs = b.decoder_start(h, batch)?;
    let z = h.zdim;
    let merge = h.model == ModelKind::Ladder;
    let mut levels = Vec::new();
    for (i, (l, &source)) in h.decoder_layers()?.iter().zip(sources).enumerate() {
        let p = format!("decoder.dec_blocks.{i}");
        let w = h.width_at(l.res);
        let x = b.level_input(&p, l, w, &xs, batch)?;
        let q = match source {
            LevelSource::Posterior(_) if merge => Some(b.block(&format!("{p}.enc"), acts[&l.res], false)?),
            LevelSource::Posterior(_) if materialised_cat => {
                let cat = b.g.concat(&format!("{p}.cat"), x, acts[&l.res])?;
                Some(b.block(&format!("{p}.enc"), cat, false)?)
            }
            LevelSource::Posterior(_) => Some(b.block_cat(&format!("{p}.enc"), x, acts[&l.res])?),
            _ => None,
        };
        let (feats, x) = b.prior_features(&p, x, z)?;
        let slice =
            |b: &mut Builder, t, part: &str, from| b.g.slice_channels(&format!("{p}.{part}"), t, from, from + z);
        let level = match (source, q) {
            (LevelSource::Posterior(sampling), Some(q)) if merge => {
                let d = (slice(b, q, "mu_d", 0)?, slice(b, q, "logsig_d", z)?);
                let prior = (slice(b, feats, "mu_p", 0)?, slice(b, feats, "logsig_p", z)?);
                let (zt, kl) = b.g.reparam_kl_ladder(&p, d, prior, sampling, i as u32)?;
                Level {
                    kl: Some(kl),
                    posterior: Some(PosteriorParts::Merged { d, p: prior }),
                    ..Level::drawn(zt)
                }
            }
            (LevelSource::Posterior(sampling), Some(q)) => {
                // mu and logsig are read from the two blocks' outputs in place.
                let (zt, kl) = b.g.reparam_kl_packed(&p, q, feats, z, sampling, i as u32)?;
                Level {
                    kl: Some(kl),
                    posterior: Some(PosteriorParts::Packed { q, zdim: z }),
                    ..Level::drawn(zt)
                }
            }
            (LevelSource::Prior { temperature }, _) => {
                let prior = (slice(b, feats, "mu_p", 0)?, slice(b, feats, "logsig_p", z)?);
                Level::drawn(b.g.prior_sample(&format!("{p}.z"), prior, temperature, i as u32)?)
            }
            _ => b.given_latent(&format!("{p}.z_given"), vec![batch, l.res, l.res, z]),
        };
        xs.insert(l.res, b.level_output(&p, level.z, x)?);
        levels.push(level);
    }
    Ok((b.output_head(xs[&h.image_size])?, levels))
}

/// The values of a model's data inputs for uint8 images (see [`ModelGraph::input_data`]).
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
    fn the_posterior_reads_its_cat_in_place_with_the_values_of_the_copied_cat() {
        use crate::graph::executor::cpu::{run, Noise};
        use crate::model::init::init_weights;
        let h = preset("mnist-tiny").unwrap();
        let weights = init_weights(&h, 2).unwrap();
        let step = |materialised: bool| {
            let build = if materialised {
                build_vdvae_materialised_cat
            } else {
                build_model
            };
            let mut m = build(&h, 1, Sampling::Posterior).unwrap();
            append_backward(&mut m.graph).unwrap();
            let mut values = m.values_from_checkpoint(&weights, "init").unwrap();
            let images = ImageSet {
                n: 1,
                h: 32,
                w: 32,
                c: 1,
                pixels: (0..1024).map(|i| (i * 37 % 256) as u8).collect(),
            };
            m.set_images(&mut values, &images, crate::model::preprocess::MNIST)
                .unwrap();
            run(&m.graph, &mut values, Noise::new(1, 0)).unwrap();
            let grads: Vec<Vec<f32>> = m
                .graph
                .param_grads
                .iter()
                .map(|&(_, d)| values[d].clone().unwrap())
                .collect();
            (values[m.loss].clone().unwrap(), grads, m.graph.nodes.len())
        };
        let ((loss, grads, nodes), (loss2, grads2, nodes2)) = (step(false), step(true));
        assert_eq!(loss, loss2, "the forward is bit-identical");
        assert!(nodes < nodes2, "{nodes} nodes in place, {nodes2} with the copies");
        for (g, w) in grads.iter().zip(&grads2) {
            for (a, b) in g.iter().zip(w) {
                assert!((a - b).abs() <= 1e-6 * b.abs().max(1e-3), "{a} vs {b}");
            }
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
