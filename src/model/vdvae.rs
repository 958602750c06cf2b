//! The VDVAE of DESIGN.md as a graph: encoder, top-down decoder with a
//! posterior, prior and residual block per level, DMoL output and the ELBO.

use std::collections::HashMap;

use super::config::HParams;
use super::layout::{to_internal, to_official};
use super::params::{param_specs, ParamSpec};
use super::preprocess::{likelihood_target, network_input, Normalization};
use crate::checkpoint::{check_against, NamedTensors, Tensor};
use crate::data::ImageSet;
use crate::error::{Error, Result};
use crate::graph::cpu::Values;
use crate::graph::{Graph, Role, Sampling, TensorId};

/// A built model: its graph and where its named parts are.
pub struct VdvaeGraph {
    pub graph: Graph,
    /// Official spec and graph tensor of each parameter, in `param_specs` order.
    pub params: Vec<(ParamSpec, TensorId)>,
    /// Network input `(x - mean) / std`, NHWC.
    pub input: TensorId,
    /// Likelihood target `x / 127.5 - 1`, NHWC.
    pub target: TensorId,
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

struct Builder {
    g: Graph,
    p: HashMap<String, TensorId>,
}

impl Builder {
    fn param(&self, name: &str) -> Result<TensorId> {
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
        let mut t = x;
        for c in ["c1", "c2", "c3"] {
            t = self.conv(&format!("{prefix}.{c}"), t, None, true)?;
        }
        self.conv(&format!("{prefix}.c4"), t, residual.then_some(x), true)
    }
}

/// Builds the forward graph for `batch` images.
pub fn build_vdvae(h: &HParams, batch: usize, sampling: Sampling) -> Result<VdvaeGraph> {
    if batch == 0 {
        return Err(Error::Input("batch must be at least 1".into()));
    }
    h.validate()?;
    let specs = param_specs(h)?;
    let mut b = Builder {
        g: Graph::default(),
        p: HashMap::new(),
    };
    let mut params = Vec::new();
    for s in &specs {
        let t = b.g.tensor(s.name.clone(), internal_shape(s), Role::Param);
        b.p.insert(s.name.clone(), t);
        params.push((s.clone(), t));
    }
    let (s, c) = (h.image_size, h.image_channels);
    let input = b.g.tensor("input", vec![batch, s, s, c], Role::Input);
    let target = b.g.tensor("target", vec![batch, s, s, c], Role::Input);

    // Encoder: the last activation at each resolution feeds the decoder.
    let mut acts: HashMap<usize, TensorId> = HashMap::new();
    let mut x = b.conv("encoder.in_conv", input, None, false)?;
    acts.insert(s, x);
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

    // Decoder.
    let mut xs: HashMap<usize, TensorId> = HashMap::new();
    for (j, res) in super::params::bias_resolutions(h)?.into_iter().enumerate() {
        let bias = b.param(&format!("decoder.bias_xs.{j}"))?;
        xs.insert(res, b.g.broadcast_batch(&format!("decoder.start.{res}"), bias, batch)?);
    }
    let z = h.zdim;
    let mut kl_per_level = Vec::new();
    for (i, l) in h.decoder_layers()?.iter().enumerate() {
        let p = format!("decoder.dec_blocks.{i}");
        let (r, w) = (l.res, h.width_at(l.res));
        let mut x = match xs.get(&r) {
            Some(&t) => t,
            None => {
                let zeros =
                    b.g.tensor(format!("decoder.zeros.{r}"), vec![batch, r, r, w], Role::Constant);
                b.g.constants.push((zeros, vec![0.0; batch * r * r * w]));
                zeros
            }
        };
        if let Some(m) = l.mixin {
            let mut from = xs[&m];
            if *b.g.shape(from).last().unwrap() != w {
                from = b.g.slice_channels(&format!("{p}.mixin_slice"), from, 0, w)?;
            }
            let up = b.g.upsample(&format!("{p}.mixin"), from, r / m)?;
            x = b.g.add(&format!("{p}.mixed"), x, up)?;
        }
        let cat = b.g.concat(&format!("{p}.cat"), x, acts[&r])?;
        let q = b.block(&format!("{p}.enc"), cat, false)?;
        let feats = b.block(&format!("{p}.prior"), x, false)?;
        let mu_q = b.g.slice_channels(&format!("{p}.mu_q"), q, 0, z)?;
        let logsig_q = b.g.slice_channels(&format!("{p}.logsig_q"), q, z, 2 * z)?;
        let mu_p = b.g.slice_channels(&format!("{p}.mu_p"), feats, 0, z)?;
        let logsig_p = b.g.slice_channels(&format!("{p}.logsig_p"), feats, z, 2 * z)?;
        let xpp = b.g.slice_channels(&format!("{p}.xpp"), feats, 2 * z, 2 * z + w)?;
        let x = b.g.add(&format!("{p}.x_xpp"), x, xpp)?;
        let (zt, kl) =
            b.g.reparam_kl(&p, (mu_q, logsig_q), (mu_p, logsig_p), sampling, i as u32)?;
        let x = b.conv(&format!("{p}.z_proj"), zt, Some(x), false)?;
        let x = b.block(&format!("{p}.resnet"), x, true)?;
        xs.insert(r, x);
        kl_per_level.push(b.g.sum_per_image(&format!("{p}.kl_sum"), kl)?);
    }
    let top = xs[&s];
    let (gain, bias) = (b.param("decoder.gain")?, b.param("decoder.bias")?);
    let y = b.g.affine("decoder.final", top, gain, bias)?;
    let logits = b.conv("decoder.out_net.out_conv", y, None, false)?;
    let nll = b.g.dmol_nll("decoder.out_net.nll", logits, target, h.low_bit)?;
    let dims = s * s * c;
    let loss = b.g.elbo("loss", nll, &kl_per_level, dims)?;
    b.g.outputs.push(("loss".into(), loss));
    b.g.outputs.push(("nll".into(), nll));
    for (i, &k) in kl_per_level.iter().enumerate() {
        b.g.outputs.push((format!("kl.{i}"), k));
    }
    Ok(VdvaeGraph {
        graph: b.g,
        params,
        input,
        target,
        nll,
        kl_per_level,
        loss,
        batch,
        dims,
    })
}

impl VdvaeGraph {
    /// Graph values holding a checkpoint's weights (official names and layouts),
    /// after checking every name and shape against the config.
    pub fn values_from_checkpoint(&self, weights: &NamedTensors, what: &str) -> Result<Values> {
        let specs: Vec<ParamSpec> = self.params.iter().map(|(s, _)| s.clone()).collect();
        check_against(&specs, weights, what)?;
        let mut values: Values = vec![None; self.graph.tensors.len()];
        for (spec, t) in &self.params {
            values[*t] = Some(to_internal(spec, &weights[&spec.name].data));
        }
        Ok(values)
    }

    /// Sets the network input and likelihood target from uint8 images.
    pub fn set_images(&self, values: &mut Values, images: &ImageSet, norm: Normalization) -> Result<()> {
        let want = self.graph.shape(self.input);
        if [images.n, images.h, images.w, images.c] != want[..] {
            return Err(Error::Input(format!(
                "the model takes images of {:?} (N, H, W, C); got {}x{}x{}x{}",
                want, images.n, images.h, images.w, images.c
            )));
        }
        values[self.input] = Some(network_input(images, norm));
        values[self.target] = Some(likelihood_target(images));
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
        let mut m = build_vdvae(&h, 2, Sampling::Posterior).unwrap();
        append_backward(&mut m.graph).unwrap();
        assert_eq!(m.graph.param_grads.len(), m.params.len());
        for &(p, d) in &m.graph.param_grads {
            assert_eq!(m.graph.shape(p), m.graph.shape(d), "{}", m.graph.tensors[p].name);
        }
    }

    #[test]
    fn internal_shapes_are_channels_last() {
        let h = preset("mnist-tiny").unwrap();
        let m = build_vdvae(&h, 1, Sampling::Posterior).unwrap();
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
