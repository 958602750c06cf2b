//! Lowering: each graph op becomes one or more kernel dispatches over the
//! planned buffers. The scratch a kernel needs comes from one shared workspace
//! (ops run one after another, so their scratch never overlaps in time).

use super::Buffers;
use crate::error::Result;
use crate::gpu::{BufView, Dispatch, GpuContext};
use crate::graph::ir::{Graph, Node, Op, Sampling, TensorId};
use crate::graph::op_params::{conv_shape, dmol_spec, nhwc, per_image_dims, reparam_cfg};
use crate::ops::conv2d::{self, Conv2dShape};
use crate::ops::dmol;
use crate::ops::elementwise::{self, AffineBackward, ChannelRange, CopyMode};
use crate::ops::reduce::{self, ReduceOp, Reduction};
use crate::ops::reparam_kl::{self, Latents};
use crate::ops::rng::RngKey;
use crate::ops::{broadcast, resample};

/// Elements of workspace the op needs.
pub(super) fn scratch_len(g: &Graph, node: &Node) -> usize {
    let ins = &node.inputs;
    let reduction = |dims: &[usize], axes: &[usize]| {
        Reduction::new(ReduceOp::Sum, dims, axes)
            .map(|r| r.scratch_len())
            .unwrap_or(0)
    };
    match node.op {
        Op::Conv2dBackwardData { k, gelu_input } => {
            conv_shape(g, ins[2], g.shape(ins[1])[0], k, gelu_input).backward_input_scratch_len()
        }
        Op::Conv2dBackwardWeight { k, gelu_input, .. } => {
            conv_shape(g, ins[1], *g.shape(ins[0]).last().unwrap(), k, gelu_input).backward_weight_scratch_len()
        }
        Op::AffineBackward => elementwise::affine_backward_scratch_len(g.tensors[ins[1]].numel(), g.shape(ins[2])[0]),
        Op::SumBatch => reduction(&per_image_dims(g, ins[0]), &[0]),
        Op::SumPerImage => reduction(&per_image_dims(g, ins[0]), &[1]),
        Op::DmolNll { low_bit } | Op::DmolNllBackward { low_bit } => {
            dmol_spec(g, ins[0], ins[1], low_bit).partials_len()
        }
        _ => 0,
    }
}

/// Elements of the second workspace, a separate buffer since WebGPU forbids
/// reading and writing one buffer in a dispatch: the NLL the fused DMoL gradient
/// kernel writes beside its output, or GELU(x) for a weight gradient.
pub(super) fn side_len(g: &Graph, node: &Node) -> usize {
    match node.op {
        Op::DmolNllBackward { .. } => g.shape(node.inputs[2])[0],
        Op::Conv2dBackwardWeight { gelu_input: true, .. } => g.tensors[node.inputs[1]].numel(),
        _ => 0,
    }
}

/// The dispatches of one node, and whether their uniforms carry a noise step.
pub(super) fn lower(
    ctx: &GpuContext,
    g: &Graph,
    node: &Node,
    b: &Buffers,
    workspace: BufView<'_>,
    side: BufView<'_>,
    seed: u64,
) -> Result<(Vec<Dispatch>, bool)> {
    let v = |t: TensorId| b.view(t);
    let (ins, outs) = (&node.inputs, &node.outputs);
    let i = |k: usize| v(ins[k]);
    let y = v(outs[0]);
    let channels = |t: TensorId| *g.shape(t).last().unwrap();
    let scratch = |len: usize| BufView { len, ..workspace };
    let one = |d: Result<Dispatch>| d.map(|d| vec![d]);
    let mut noisy = false;
    // The step word of noisy ops' keys is overwritten on the GPU before each run
    // (see `GpuGraph::record_noise_step`), so the key is built with step 0.
    let key = |tensor: u32| RngKey::new(seed, 0, tensor);
    let ds = match node.op {
        Op::Conv2d {
            k,
            gelu_input,
            bias,
            residual,
        } => {
            let s = conv_shape(g, ins[0], g.shape(ins[1])[0], k, gelu_input)
                .with_bias(bias)
                .with_residual(residual);
            let b = bias.then(|| i(2));
            let r = residual.then(|| i(if bias { 3 } else { 2 }));
            one(conv2d::conv2d_forward(ctx, &s, i(0), i(1), b, r, y))?
        }
        Op::Conv2dBackwardData { k, gelu_input } => {
            let s = conv_shape(g, ins[2], g.shape(ins[1])[0], k, gelu_input);
            conv2d::conv2d_backward_input(ctx, &s, i(2), i(1), i(0), scratch(s.backward_input_scratch_len()), y)?
        }
        Op::Conv2dBackwardWeight { k, gelu_input, bias } => {
            let s = conv_shape(g, ins[1], channels(ins[0]), k, gelu_input);
            let db = bias.then(|| v(outs[1]));
            // The tiled path can apply GELU to x once, into the side buffer, instead of per tap.
            let act = (gelu_input && s.x_len() <= side.len).then(|| BufView { len: s.x_len(), ..side });
            let len = s.backward_weight_scratch_len();
            conv2d::conv2d_backward_weight(ctx, &s, i(1), i(0), scratch(len), act, y, db, false)?
        }
        Op::Conv2dBackwardBias => {
            let [n, h, w, c] = nhwc(g.shape(ins[0]));
            let s = Conv2dShape::new(n, h, w, c, c, 1);
            one(conv2d::conv2d_backward_bias(ctx, &s, i(0), y, false))?
        }
        Op::Add => one(elementwise::add(ctx, i(0), i(1), y))?,
        Op::AvgPool { k } => one(resample::avg_pool(ctx, i(0), nhwc(g.shape(ins[0])), k, y))?,
        Op::AvgPoolBackward { k } => one(resample::avg_pool_backward(ctx, i(0), nhwc(g.shape(outs[0])), k, y))?,
        Op::Upsample { k } => one(resample::upsample_nearest(ctx, i(0), nhwc(g.shape(ins[0])), k, y))?,
        Op::UpsampleBackward { k } => one(resample::upsample_nearest_backward(
            ctx,
            i(0),
            nhwc(g.shape(outs[0])),
            k,
            y,
        ))?,
        Op::SliceChannels { start, end } => one(elementwise::slice_channels(
            ctx,
            i(0),
            ChannelRange::new(channels(ins[0]), start, end),
            y,
        ))?,
        Op::PlaceChannels { start, total } => {
            let range = ChannelRange::new(total, start, start + channels(ins[0]));
            one(elementwise::slice_channels_backward(ctx, i(0), y, range, false))?
        }
        Op::Concat => elementwise::concat_channels(ctx, i(0), channels(ins[0]), i(1), channels(ins[1]), y)?,
        Op::AssembleChannels { ref ranges, total } => {
            // Zero the uncovered channels with the first copy unless the ranges cover them all.
            let covered: usize = ranges.iter().map(|r| r.1 - r.0).sum();
            let mut ds = Vec::with_capacity(ranges.len());
            for (k, &(start, end)) in ranges.iter().enumerate() {
                let mode = if k == 0 && covered < total {
                    CopyMode::OverwriteZeroRest
                } else {
                    CopyMode::Overwrite
                };
                let src = ChannelRange::all(end - start);
                ds.push(elementwise::copy_channels(
                    ctx,
                    i(k),
                    src,
                    y,
                    ChannelRange::new(total, start, end),
                    mode,
                )?);
            }
            ds
        }
        Op::BroadcastBatch { .. } => one(broadcast::broadcast_batch(ctx, i(0), y))?,
        Op::SumBatch => {
            let dims = per_image_dims(g, ins[0]);
            let len = scratch_len(g, node);
            reduce::sum(ctx, i(0), &dims, &[0], scratch(len), y)?
        }
        Op::Affine => one(elementwise::affine(ctx, i(0), i(1), i(2), y))?,
        Op::AffineBackward => {
            let len = scratch_len(g, node);
            let args = AffineBackward {
                x: i(1),
                dy: i(0),
                gain: i(2),
                dx: y,
                dgain: v(outs[1]),
                dbias: v(outs[2]),
                scratch: scratch(len),
            };
            elementwise::affine_backward(ctx, &args)?
        }
        Op::ReparamKl { sampling, tensor } => {
            noisy = sampling == Sampling::Posterior;
            let lat = Latents {
                q_mu: i(0),
                q_logsig: i(1),
                p_mu: i(2),
                p_logsig: i(3),
            };
            one(reparam_kl::forward(
                ctx,
                &reparam_cfg(sampling, key(tensor)),
                &lat,
                y,
                v(outs[1]),
            ))?
        }
        Op::ReparamKlBackward { sampling, tensor } => {
            noisy = sampling == Sampling::Posterior;
            let lat = Latents {
                q_mu: i(2),
                q_logsig: i(3),
                p_mu: i(4),
                p_logsig: i(5),
            };
            let grads = Latents {
                q_mu: y,
                q_logsig: v(outs[1]),
                p_mu: v(outs[2]),
                p_logsig: v(outs[3]),
            };
            one(reparam_kl::backward(
                ctx,
                &reparam_cfg(sampling, key(tensor)),
                &lat,
                i(0),
                i(1),
                &grads,
            ))?
        }
        Op::SumPerImage => {
            let dims = per_image_dims(g, ins[0]);
            let len = scratch_len(g, node);
            reduce::sum(ctx, i(0), &dims, &[1], scratch(len), y)?
        }
        Op::BroadcastPerImage => one(broadcast::broadcast_per_image(ctx, i(0), y))?,
        Op::DmolNll { low_bit } => {
            let spec = dmol_spec(g, ins[0], ins[1], low_bit);
            dmol::nll(ctx, &spec, i(0), i(1), scratch(spec.partials_len()), y)?
        }
        Op::DmolNllBackward { low_bit } => {
            let spec = dmol_spec(g, ins[0], ins[1], low_bit);
            let nll = BufView { len: spec.n, ..side };
            dmol::nll_grad(ctx, &spec, i(0), i(1), i(2), y, scratch(spec.partials_len()), nll)?
        }
        Op::PriorSample { temperature, tensor } => {
            noisy = true;
            one(reparam_kl::prior_sample(ctx, key(tensor), temperature, i(0), i(1), y))?
        }
        Op::DmolSample { low_bit, tensor } => {
            noisy = true;
            let spec = dmol_spec(g, ins[0], outs[0], low_bit);
            one(dmol::sample(ctx, &spec, i(0), key(tensor), y))?
        }
        // The loss is a handful of numbers: the host sums NLL and KL after readback.
        Op::Elbo { .. } => Vec::new(),
    };
    Ok((ds, noisy))
}
