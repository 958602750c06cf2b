//! Reverse-mode autodiff: walks the forward nodes backwards and appends each
//! op's backward nodes. A tensor read by several nodes gets the sum of their
//! gradients; Add passes its gradient through without a copy.

use std::collections::HashMap;

use super::ir::{Graph, Op, Role, TensorId};
use crate::error::{Error, Result};

/// Tensors whose value depends on a parameter (only those need gradients).
fn needs_grad(g: &Graph) -> Vec<bool> {
    let mut need: Vec<bool> = g.tensors.iter().map(|t| t.role == Role::Param).collect();
    for node in &g.nodes[..g.forward_len] {
        if node.inputs.iter().any(|&i| need[i]) {
            for &o in &node.outputs {
                need[o] = true;
            }
        }
    }
    need
}

/// The gradient of channels `[start, end)` of a tensor.
type SliceGrad = ((usize, usize), TensorId);

struct Grads {
    parts: HashMap<TensorId, Vec<TensorId>>,
    /// Gradients of channel slices of a tensor, assembled in one pass.
    slices: HashMap<TensorId, Vec<SliceGrad>>,
}

impl Grads {
    fn push(&mut self, t: TensorId, grad: TensorId) {
        self.parts.entry(t).or_default().push(grad);
    }

    fn push_slice(&mut self, t: TensorId, range: (usize, usize), grad: TensorId) {
        self.slices.entry(t).or_default().push((range, grad));
    }

    /// The total gradient of `t`: slice gradients assembled into one tensor
    /// (overlapping ones placed separately), then every part summed with Add nodes.
    fn take(&mut self, g: &mut Graph, t: TensorId) -> Option<TensorId> {
        let mut parts = self.parts.remove(&t).unwrap_or_default();
        let total_channels = g.shape(t).last().copied().unwrap_or(0);
        if let Some(mut slices) = self.slices.remove(&t) {
            slices.sort_by_key(|s| s.0);
            let mut disjoint: Vec<SliceGrad> = Vec::new();
            for (range, dy) in slices {
                if disjoint.last().is_some_and(|last| last.0 .1 > range.0) {
                    let placed = grad_tensor(g, t);
                    g.node(
                        Op::PlaceChannels {
                            start: range.0,
                            total: total_channels,
                        },
                        vec![dy],
                        vec![placed],
                    );
                    parts.push(placed);
                } else {
                    disjoint.push((range, dy));
                }
            }
            let assembled = grad_tensor(g, t);
            let (ranges, inputs): (Vec<_>, Vec<_>) = disjoint.into_iter().unzip();
            g.node(
                Op::AssembleChannels {
                    ranges,
                    total: total_channels,
                },
                inputs,
                vec![assembled],
            );
            parts.insert(0, assembled);
        }
        if parts.is_empty() {
            return None;
        }
        let name = format!("grad.{}", g.tensors[t].name);
        let mut total = parts[0];
        for &p in &parts[1..] {
            let sum = g.tensor(name.clone(), g.shape(t).to_vec(), Role::Activation);
            g.node(Op::Add, vec![total, p], vec![sum]);
            total = sum;
        }
        Some(total)
    }
}

fn grad_tensor(g: &mut Graph, of: TensorId) -> TensorId {
    let name = format!("grad.{}", g.tensors[of].name);
    g.tensor(name, g.shape(of).to_vec(), Role::Activation)
}

/// Appends the backward of every forward node; `loss` must be the output of an `Elbo` node.
pub fn append_backward(g: &mut Graph) -> Result<()> {
    g.forward_len = g.nodes.len();
    let need = needs_grad(g);
    let mut grads = Grads {
        parts: HashMap::new(),
        slices: HashMap::new(),
    };
    for idx in (0..g.forward_len).rev() {
        let node = g.nodes[idx].clone();
        let ins = &node.inputs;
        if !ins.iter().any(|&i| need[i]) {
            continue;
        }
        if let Op::Elbo { dims } = node.op {
            // d loss / d nll[n] = d loss / d kl[n] = 1 / (N · dims): one shared constant.
            let n = g.shape(ins[0])[0];
            let seed = g.tensor("grad.elbo_seed", vec![n], Role::Constant);
            g.constants.push((seed, vec![1.0 / (n * dims) as f32; n]));
            for &i in ins {
                grads.push(i, seed);
            }
            continue;
        }
        let outs: Vec<Option<TensorId>> = node.outputs.iter().map(|&o| grads.take(g, o)).collect();
        if outs.iter().all(Option::is_none) {
            continue;
        }
        let dy = outs[0];
        let want = |k: usize| need[ins[k]];
        match node.op {
            Op::Conv2d {
                k,
                gelu_input,
                bias,
                residual,
            } => {
                let dy = dy.unwrap();
                if want(0) {
                    let dx = grad_tensor(g, ins[0]);
                    g.node(
                        Op::Conv2dBackwardData { k, gelu_input },
                        vec![dy, ins[1], ins[0]],
                        vec![dx],
                    );
                    grads.push(ins[0], dx);
                }
                let want_bias = bias && want(2);
                if want(1) {
                    // dw and db come from one pass over dy.
                    let dw = grad_tensor(g, ins[1]);
                    let mut outs = vec![dw];
                    if want_bias {
                        outs.push(grad_tensor(g, ins[2]));
                        grads.push(ins[2], outs[1]);
                    }
                    let op = Op::Conv2dBackwardWeight {
                        k,
                        gelu_input,
                        bias: want_bias,
                    };
                    g.node(op, vec![dy, ins[0]], outs);
                    grads.push(ins[1], dw);
                } else if want_bias {
                    let db = grad_tensor(g, ins[2]);
                    g.node(Op::Conv2dBackwardBias, vec![dy], vec![db]);
                    grads.push(ins[2], db);
                }
                let mut next = 2;
                if bias {
                    next += 1;
                }
                if residual && want(next) {
                    grads.push(ins[next], dy);
                }
            }
            Op::Add => {
                for &input in ins {
                    if need[input] {
                        grads.push(input, dy.unwrap());
                    }
                }
            }
            Op::AvgPool { k } => unary(g, &mut grads, Op::AvgPoolBackward { k }, ins[0], dy.unwrap()),
            Op::Upsample { k } => unary(g, &mut grads, Op::UpsampleBackward { k }, ins[0], dy.unwrap()),
            Op::SliceChannels { start, end } => grads.push_slice(ins[0], (start, end), dy.unwrap()),
            Op::PlaceChannels { start, .. } => {
                let c = *g.shape(ins[0]).last().unwrap();
                unary(
                    g,
                    &mut grads,
                    Op::SliceChannels { start, end: start + c },
                    ins[0],
                    dy.unwrap(),
                )
            }
            Op::Concat => {
                let ca = *g.shape(ins[0]).last().unwrap();
                let cb = *g.shape(ins[1]).last().unwrap();
                if want(0) {
                    unary(
                        g,
                        &mut grads,
                        Op::SliceChannels { start: 0, end: ca },
                        ins[0],
                        dy.unwrap(),
                    );
                }
                if want(1) {
                    unary(
                        g,
                        &mut grads,
                        Op::SliceChannels {
                            start: ca,
                            end: ca + cb,
                        },
                        ins[1],
                        dy.unwrap(),
                    );
                }
            }
            Op::BroadcastBatch { .. } => unary(g, &mut grads, Op::SumBatch, ins[0], dy.unwrap()),
            Op::Affine => {
                let (dx, dgain, dbias) = (grad_tensor(g, ins[0]), grad_tensor(g, ins[1]), grad_tensor(g, ins[2]));
                g.node(
                    Op::AffineBackward,
                    vec![dy.unwrap(), ins[0], ins[1]],
                    vec![dx, dgain, dbias],
                );
                for (k, d) in [dx, dgain, dbias].into_iter().enumerate() {
                    if want(k) {
                        grads.push(ins[k], d);
                    }
                }
            }
            Op::ReparamKl { sampling, tensor } => {
                let (dz, dkl) = match (outs[0], outs[1]) {
                    (Some(dz), Some(dkl)) => (dz, dkl),
                    _ => return Err(Error::Shape("reparam_kl: both z and kl must reach the loss".into())),
                };
                let d: Vec<TensorId> = ins.iter().map(|&i| grad_tensor(g, i)).collect();
                let mut inputs = vec![dz, dkl];
                inputs.extend_from_slice(ins);
                g.node(Op::ReparamKlBackward { sampling, tensor }, inputs, d.clone());
                for (k, dk) in d.into_iter().enumerate() {
                    if want(k) {
                        grads.push(ins[k], dk);
                    }
                }
            }
            Op::SumPerImage => unary(g, &mut grads, Op::BroadcastPerImage, ins[0], dy.unwrap()),
            Op::DmolNll { low_bit } => {
                let dl = grad_tensor(g, ins[0]);
                g.node(
                    Op::DmolNllBackward { low_bit },
                    vec![ins[0], ins[1], dy.unwrap()],
                    vec![dl],
                );
                grads.push(ins[0], dl);
            }
            ref op => return Err(Error::Shape(format!("autodiff: {op:?} has no backward rule"))),
        }
    }
    // Each parameter's total gradient becomes a persistent ParamGrad tensor.
    let params: Vec<TensorId> = g.params().collect();
    for p in params {
        let Some(grad) = grads.take(g, p) else { continue };
        if g.tensors[grad].role != Role::Activation || g.param_grads.iter().any(|&(_, d)| d == grad) {
            return Err(Error::Shape(format!(
                "autodiff: the gradient of {} is shared",
                g.tensors[p].name
            )));
        }
        g.tensors[grad].role = Role::ParamGrad;
        g.param_grads.push((p, grad));
    }
    Ok(())
}

/// dx = op(dy), with dx shaped like x.
fn unary(g: &mut Graph, grads: &mut Grads, op: Op, x: TensorId, dy: TensorId) {
    let dx = grad_tensor(g, x);
    g.node(op, vec![dy], vec![dx]);
    grads.push(x, dx);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::cpu::{run, Noise};

    #[test]
    fn slice_gradients_are_assembled_and_overlaps_still_add_up() {
        let mut g = Graph::default();
        let x = g.tensor("x", vec![1, 2, 2, 6], Role::Param);
        let ranges = [(0, 2), (2, 6), (1, 3)];
        let sums: Vec<TensorId> = ranges
            .iter()
            .map(|&(a, b)| {
                let s = g.slice_channels("s", x, a, b).unwrap();
                g.sum_per_image("sum", s).unwrap()
            })
            .collect();
        let dims = 10;
        let loss = g.elbo("loss", sums[0], &sums[1..], dims).unwrap();
        g.outputs.push(("loss".into(), loss));
        append_backward(&mut g).unwrap();
        assert!(g.nodes.iter().any(|n| matches!(n.op, Op::AssembleChannels { .. })));
        let mut values = vec![None; g.tensors.len()];
        values[x] = Some(vec![0.5; 24]);
        run(&g, &mut values, Noise::default()).unwrap();
        let dx = values[g.param_grads[0].1].as_ref().unwrap();
        // d loss / d x[c] = (slices covering channel c) / dims.
        let covers = [1.0, 2.0, 2.0, 1.0, 1.0, 1.0];
        for (i, &d) in dx.iter().enumerate() {
            assert!((d - covers[i % 6] / dims as f32).abs() < 1e-7, "channel {}: {d}", i % 6);
        }
    }
}
