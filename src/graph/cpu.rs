//! The CPU executor: runs a graph on the plain-Rust reference ops (f32 data,
//! f64 accumulation). It is the oracle for the GPU executor and the fallback
//! where no adapter exists (`--device cpu`).

use super::ir::{Graph, Op, Role, TensorId};
use super::op_params::{conv_shape, dmol_spec, nhwc, per_image_dims, reparam_cfg};
use super::plan::lifetimes;
use crate::error::{Error, Result};
use crate::ops::broadcast::reference as broadcast;
use crate::ops::conv2d::{reference as conv, Conv2dShape};
use crate::ops::dmol::reference as dmol;
use crate::ops::elementwise::reference as ew;
use crate::ops::reduce::{reference as reduce, ReduceOp};
use crate::ops::reparam_kl::reference::{self as reparam, LatentsRef};
use crate::ops::resample::reference as resample;
use crate::ops::rng::RngKey;

/// Where in the noise stream a run draws from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Noise {
    pub seed: u64,
    pub step: u64,
}

/// Tensor values by id; `None` until produced (or after their last use).
pub type Values = Vec<Option<Vec<f32>>>;

/// Runs every node of `g` in order. `values` must hold every Param and Input;
/// Constants are filled here. Activations are dropped after their last use
/// unless they are graph outputs.
pub fn run(g: &Graph, values: &mut Values, noise: Noise) -> Result<()> {
    values.resize(g.tensors.len(), None);
    for (t, data) in &g.constants {
        values[*t] = Some(data.clone());
    }
    for (t, info) in g.tensors.iter().enumerate() {
        if matches!(info.role, Role::Param | Role::Input) {
            match &values[t] {
                Some(v) if v.len() == info.numel() => {}
                Some(v) => {
                    return Err(Error::Shape(format!(
                        "{}: {} values given for shape {:?}",
                        info.name,
                        v.len(),
                        info.shape
                    )))
                }
                None => return Err(Error::Input(format!("{} was not given a value", info.name))),
            }
        }
    }
    let life = lifetimes(g);
    let keep: Vec<bool> = (0..g.tensors.len())
        .map(|t| g.tensors[t].role != Role::Activation || g.outputs.iter().any(|&(_, o)| o == t))
        .collect();
    for (i, node) in g.nodes.iter().enumerate() {
        let outs = eval(g, node.op.clone(), &node.inputs, &node.outputs, values, noise)?;
        for (&o, v) in node.outputs.iter().zip(outs) {
            debug_assert_eq!(v.len(), g.tensors[o].numel(), "{}", g.tensors[o].name);
            values[o] = Some(v);
        }
        for &t in &node.inputs {
            if !keep[t] && life[t].is_some_and(|l| l.1 == i) {
                values[t] = None;
            }
        }
    }
    Ok(())
}

fn eval(
    g: &Graph,
    op: Op,
    ins: &[TensorId],
    outs: &[TensorId],
    values: &Values,
    noise: Noise,
) -> Result<Vec<Vec<f32>>> {
    let v = |k: usize| -> &[f32] { values[ins[k]].as_deref().expect("inputs are computed before use") };
    let shape = |k: usize| g.shape(ins[k]);
    let channels = |k: usize| *shape(k).last().unwrap();
    // Every noisy op of tensor id `tensor` draws from the same stream position on CPU and GPU.
    let key = |tensor: u32| RngKey::new(noise.seed, noise.step, tensor);
    Ok(match op {
        Op::Conv2d {
            k,
            gelu_input,
            bias,
            residual,
        } => {
            let s = conv_shape(g, ins[0], shape(1)[0], k, gelu_input)
                .with_bias(bias)
                .with_residual(residual);
            let b = bias.then(|| v(2));
            let r = residual.then(|| v(if bias { 3 } else { 2 }));
            vec![conv::forward(&s, v(0), v(1), b, r)]
        }
        Op::Conv2dBackwardData { k, gelu_input } => {
            let s = conv_shape(g, ins[2], shape(1)[0], k, gelu_input);
            vec![conv::backward_input(&s, v(2), v(1), v(0))]
        }
        Op::Conv2dBackwardWeight { k, gelu_input, bias } => {
            let s = conv_shape(g, ins[1], channels(0), k, gelu_input);
            let mut outs = vec![conv::backward_weight(&s, v(1), v(0))];
            if bias {
                outs.push(conv::backward_bias(&s, v(0)));
            }
            outs
        }
        Op::Conv2dBackwardBias => {
            let [n, h, w, c] = nhwc(shape(0));
            vec![conv::backward_bias(&Conv2dShape::new(n, h, w, c, c, 1), v(0))]
        }
        Op::Add => vec![ew::add(v(0), v(1))],
        Op::AvgPool { k } => vec![resample::avg_pool(v(0), nhwc(shape(0)), k)],
        Op::AvgPoolBackward { k } => {
            let [n, h, w, c] = nhwc(shape(0));
            vec![resample::avg_pool_backward(v(0), [n, h * k, w * k, c], k)]
        }
        Op::Upsample { k } => vec![resample::upsample_nearest(v(0), nhwc(shape(0)), k)],
        Op::UpsampleBackward { k } => {
            let [n, h, w, c] = nhwc(shape(0));
            vec![resample::upsample_nearest_backward(v(0), [n, h / k, w / k, c], k)]
        }
        Op::SliceChannels { start, end } => vec![ew::slice_channels(v(0), channels(0), start, end)],
        Op::PlaceChannels { start, total } => {
            vec![ew::slice_channels_backward(v(0), total, start, start + channels(0))]
        }
        Op::Concat => vec![ew::concat_channels(v(0), channels(0), v(1), channels(1))],
        Op::AssembleChannels { ref ranges, total } => {
            let mut out = vec![0.0; g.tensors[outs[0]].numel()];
            for (k, &(start, end)) in ranges.iter().enumerate() {
                let placed = ew::slice_channels_backward(v(k), total, start, end);
                for (o, p) in out.iter_mut().zip(placed) {
                    *o += p;
                }
            }
            vec![out]
        }
        Op::BroadcastBatch { n } => vec![broadcast::broadcast_batch(v(0), n)],
        Op::SumBatch => vec![reduce::reduce(ReduceOp::Sum, v(0), &per_image_dims(g, ins[0]), &[0])],
        Op::Affine => vec![ew::affine(v(0), v(1), v(2))],
        Op::AffineBackward => {
            let (dx, dgain, dbias) = ew::affine_backward(v(1), v(0), v(2));
            vec![dx, dgain, dbias]
        }
        Op::ReparamKl { sampling, tensor } => {
            let lat = LatentsRef {
                q_mu: v(0),
                q_logsig: v(1),
                p_mu: v(2),
                p_logsig: v(3),
            };
            let (z, kl) = reparam::forward(&reparam_cfg(sampling, key(tensor)), &lat);
            vec![z, kl]
        }
        Op::ReparamKlBackward { sampling, tensor } => {
            let lat = LatentsRef {
                q_mu: v(2),
                q_logsig: v(3),
                p_mu: v(4),
                p_logsig: v(5),
            };
            let d = reparam::backward(&reparam_cfg(sampling, key(tensor)), &lat, v(0), v(1));
            vec![d.q_mu, d.q_logsig, d.p_mu, d.p_logsig]
        }
        Op::SumPerImage => vec![reduce::reduce(ReduceOp::Sum, v(0), &per_image_dims(g, ins[0]), &[1])],
        Op::BroadcastPerImage => {
            let per_image = g.tensors[outs[0]].numel() / v(0).len();
            vec![broadcast::broadcast_per_image(v(0), per_image)]
        }
        Op::DmolNll { low_bit } => vec![dmol::nll(&dmol_spec(g, ins[0], ins[1], low_bit), v(0), v(1))],
        Op::DmolNllBackward { low_bit } => {
            vec![dmol::nll_grad(&dmol_spec(g, ins[0], ins[1], low_bit), v(0), v(1), v(2))]
        }
        Op::PriorSample { temperature, tensor } => vec![reparam::prior_sample(key(tensor), temperature, v(0), v(1))],
        Op::DmolSample { low_bit, tensor } => {
            vec![dmol::sample(
                &dmol_spec(g, ins[0], outs[0], low_bit),
                v(0),
                &key(tensor),
            )]
        }
        Op::Elbo { dims } => {
            let n = v(0).len();
            let total: f64 = (0..ins.len()).flat_map(|k| v(k).iter()).map(|&x| x as f64).sum();
            vec![vec![(total / (n * dims) as f64) as f32]]
        }
    })
}
