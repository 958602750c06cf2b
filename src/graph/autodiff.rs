//! Reverse-mode autodiff: walks the forward nodes backwards and asks each op's
//! rule (`super::ops`) to append its backward nodes through [`Backward`]. A
//! tensor read by several nodes gets the sum of their gradients; gradients of
//! channel slices of one tensor are assembled by one channel copy.

use std::collections::HashMap;

use super::ir::{Graph, Op, Role, TensorId};
use super::ops::{ChannelPiece, Conv2dBackwardData};
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

/// Part of a tensor's gradient: its channels `range` are `source`'s channels
/// from `source_start` on.
#[derive(Clone, Copy)]
struct ChannelGrad {
    range: (usize, usize),
    source: TensorId,
    source_start: usize,
}

/// When the gradient parts of a tensor read by several nodes are summed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Accumulate {
    /// All at once, when the tensor's producer is differentiated: the fewest
    /// nodes, but every part lives until then (for an encoder activation read
    /// by every decoder level at its resolution, until the encoder's backward).
    #[default]
    AtProducer,
    /// Into a running sum as each part arrives (a conv dx adds it in its
    /// epilogue where it can): one partial sum lives instead of every part.
    /// The sum runs in another order, so values differ in the last bits.
    Running,
}

#[derive(Default)]
struct Grads {
    parts: HashMap<TensorId, Vec<TensorId>>,
    channels: HashMap<TensorId, Vec<ChannelGrad>>,
    accumulate: Accumulate,
}

fn grad_tensor(g: &mut Graph, of: TensorId) -> TensorId {
    let name = format!("grad.{}", g.tensors[of].name);
    g.tensor(name, g.shape(of).to_vec(), Role::Activation)
}

impl Grads {
    /// Records `grad` as part of `t`'s gradient; with [`Accumulate::Running`]
    /// adds it to the running sum at once.
    fn push(&mut self, g: &mut Graph, t: TensorId, grad: TensorId) -> Result<()> {
        let mut parts = self.parts.remove(&t).unwrap_or_default();
        parts.push(grad);
        if self.accumulate == Accumulate::Running && parts.len() > 1 {
            fold_into_conv_dx(g, self, &mut parts);
            if let [a, b] = parts[..] {
                let name = format!("grad.{}", g.tensors[t].name);
                parts = vec![g.add(&name, a, b)?];
            }
        }
        self.parts.insert(t, parts);
        Ok(())
    }

    /// Records channels `part.range` of `t`'s gradient; with
    /// [`Accumulate::Running`] the pending channel parts are first assembled
    /// and summed when the new one overlaps them.
    fn push_channels(&mut self, g: &mut Graph, t: TensorId, part: ChannelGrad) -> Result<()> {
        let pending = self.channels.entry(t).or_default();
        let overlaps = pending
            .iter()
            .any(|p| p.range.0 < part.range.1 && part.range.0 < p.range.1);
        if self.accumulate == Accumulate::Running && overlaps {
            let mut group = std::mem::take(pending);
            group.sort_by_key(|p| p.range);
            let whole = assemble(g, t, &group)?;
            self.push(g, t, whole)?;
        }
        self.channels.entry(t).or_default().push(part);
        Ok(())
    }

    /// The total gradient of `t`: channel parts copied into one tensor
    /// (overlapping ones copied separately), then every part summed with Adds.
    fn take(&mut self, g: &mut Graph, t: TensorId) -> Result<Option<TensorId>> {
        let mut parts = self.parts.remove(&t).unwrap_or_default();
        if let Some(mut pieces) = self.channels.remove(&t) {
            pieces.sort_by_key(|p| p.range);
            let mut groups: Vec<Vec<ChannelGrad>> = vec![Vec::new()];
            for p in pieces {
                let overlaps = groups[0].last().is_some_and(|last| last.range.1 > p.range.0);
                if overlaps {
                    groups.push(vec![p]);
                } else {
                    groups[0].push(p);
                }
            }
            for group in groups {
                parts.insert(0, assemble(g, t, &group)?);
            }
        }
        if parts.is_empty() {
            return Ok(None);
        }
        fold_into_conv_dx(g, self, &mut parts);
        let name = format!("grad.{}", g.tensors[t].name);
        let mut total = parts[0];
        for &p in &parts[1..] {
            total = g.add(&name, total, p)?;
        }
        Ok(Some(total))
    }
}

/// The node that produces `t`, if any.
fn producer(g: &Graph, t: TensorId) -> Option<usize> {
    g.nodes.iter().rposition(|n| n.outputs.contains(&t))
}

/// Where one part is a conv's dx (or the second gradient of a conv over a
/// cat) and another part already exists when that dx runs, the dx pass adds
/// the other part in its epilogue (`Conv2dBackwardData::addend`) instead of a
/// separate Add: the residual stream's gradient, for one. In the order the
/// parts are made, each dx that can takes the sum of the parts before it, so
/// a tensor read by many convs (an encoder activation read by every decoder
/// level's posterior) gets its gradient as one chain, with no Add at all and
/// one running sum alive instead of every part. A dx read by another node or
/// part of another tensor's gradient is never changed.
fn fold_into_conv_dx(g: &mut Graph, others: &Grads, parts: &mut Vec<TensorId>) {
    let made = |g: &Graph, t: TensorId| producer(g, t).map_or(-1, |n| n as i64);
    loop {
        let mut order: Vec<usize> = (0..parts.len()).collect();
        order.sort_by_key(|&i| made(g, parts[i]));
        let mut fold = None;
        for &i in &order {
            let Some(n) = producer(g, parts[i]) else { continue };
            if !Conv2dBackwardData::can_fold(&g.nodes[n], parts[i]) || read_elsewhere(g, others, parts[i]) {
                continue;
            }
            // The latest part made before this dx runs.
            let earlier = order
                .iter()
                .copied()
                .filter(|&j| j != i && made(g, parts[j]) < n as i64)
                .max_by_key(|&j| made(g, parts[j]));
            if let Some(j) = earlier {
                fold = Some((n, i, j));
                break;
            }
        }
        let Some((n, i, j)) = fold else { return };
        let (part, addend) = (parts[i], parts[j]);
        if !Conv2dBackwardData::fold_addend(&mut g.nodes[n], part, addend) {
            return;
        }
        parts.remove(j);
    }
}

/// Whether `t` is read by a node or is part of another tensor's gradient.
fn read_elsewhere(g: &Graph, others: &Grads, t: TensorId) -> bool {
    g.nodes.iter().any(|n| n.inputs.contains(&t))
        || others.parts.values().any(|p| p.contains(&t))
        || others.channels.values().any(|c| c.iter().any(|p| p.source == t))
}

/// One tensor shaped like `t` holding the disjoint channel parts `group`, zero
/// elsewhere; a part that is the whole of its source is used as it is.
fn assemble(g: &mut Graph, t: TensorId, group: &[ChannelGrad]) -> Result<TensorId> {
    let channels = *g.shape(t).last().unwrap_or(&0);
    if let [p] = group {
        let whole = p.range == (0, channels) && p.source_start == 0 && g.shape(p.source) == g.shape(t);
        if whole {
            return Ok(p.source);
        }
    }
    let mut sources: Vec<TensorId> = Vec::new();
    let pieces = group
        .iter()
        .map(|p| {
            let input = sources.iter().position(|&s| s == p.source).unwrap_or_else(|| {
                sources.push(p.source);
                sources.len() - 1
            });
            ChannelPiece {
                input,
                from: p.source_start,
                to: p.range.0,
                width: p.range.1 - p.range.0,
            }
        })
        .collect();
    let name = format!("grad.{}", g.tensors[t].name);
    g.copy_channels(&name, &sources, pieces, channels)
}

/// What an op's backward rule sees of one forward node, and how it records
/// the gradients of the node's inputs.
pub struct Backward<'a> {
    pub g: &'a mut Graph,
    grads: &'a mut Grads,
    need: &'a [bool],
    inputs: Vec<TensorId>,
    outputs: Vec<TensorId>,
    dys: Vec<Option<TensorId>>,
}

impl Backward<'_> {
    /// The node's input `k`.
    pub fn input(&self, k: usize) -> TensorId {
        self.inputs[k]
    }

    pub fn inputs(&self) -> usize {
        self.inputs.len()
    }

    /// Whether input `k` needs a gradient.
    pub fn wants(&self, k: usize) -> bool {
        self.need[self.inputs[k]]
    }

    /// The node's output `k` (a forward value the backward may read).
    pub fn output(&self, k: usize) -> TensorId {
        self.outputs[k]
    }

    /// The gradient of output `k`, if it reaches the loss.
    pub fn dy_of(&self, k: usize) -> Option<TensorId> {
        self.dys[k]
    }

    /// The gradient of the node's only output (rules of single-output ops run
    /// only when it reaches the loss).
    pub fn dy(&self) -> TensorId {
        self.dys[0].expect("autodiff runs a rule only when an output has a gradient")
    }

    /// A new gradient tensor shaped like input `k`.
    pub fn grad_like(&mut self, k: usize) -> TensorId {
        grad_tensor(self.g, self.inputs[k])
    }

    /// A constant tensor (filled when the graph is built).
    pub fn constant(&mut self, name: &str, data: Vec<f32>) -> TensorId {
        let t = self.g.tensor(name, vec![data.len()], Role::Constant);
        self.g.constants.push((t, data));
        t
    }

    /// Adds `grad` to the gradient of input `k`.
    pub fn push(&mut self, k: usize, grad: TensorId) {
        // Only `Accumulate::Running` adds here, and an Add of two same-shaped
        // gradients does not fail.
        self.grads
            .push(self.g, self.inputs[k], grad)
            .expect("adding two gradients of one tensor");
    }

    /// Adds `source`'s channels from `source_start` on to channels `range` of input `k`'s gradient.
    pub fn push_channels(&mut self, k: usize, range: (usize, usize), source: TensorId, source_start: usize) {
        let part = ChannelGrad {
            range,
            source,
            source_start,
        };
        self.grads
            .push_channels(self.g, self.inputs[k], part)
            .expect("assembling channel gradients of one tensor");
    }

    pub fn node(&mut self, op: impl Into<Op>, inputs: Vec<TensorId>, outputs: Vec<TensorId>) {
        self.g.node(op, inputs, outputs);
    }

    /// Input `k`'s gradient is `op(dy)`, shaped like the input.
    pub fn unary(&mut self, op: impl Into<Op>, k: usize, dy: TensorId) {
        let dx = self.grad_like(k);
        self.node(op, vec![dy], vec![dx]);
        self.push(k, dx);
    }
}

/// Appends the backward of every forward node, seeded by the loss node.
pub fn append_backward(g: &mut Graph) -> Result<()> {
    append_backward_with(g, Accumulate::AtProducer)
}

/// [`append_backward`], summing gradient parts as `accumulate` says.
pub fn append_backward_with(g: &mut Graph, accumulate: Accumulate) -> Result<()> {
    g.forward_len = g.nodes.len();
    let need = needs_grad(g);
    let mut grads = Grads {
        accumulate,
        ..Grads::default()
    };
    for idx in (0..g.forward_len).rev() {
        let node = g.nodes[idx].clone();
        if !node.inputs.iter().any(|&i| need[i]) {
            continue;
        }
        let mut dys = Vec::with_capacity(node.outputs.len());
        for &o in &node.outputs {
            dys.push(grads.take(g, o)?);
        }
        let rule = node.op.rule();
        if !rule.is_loss() && dys.iter().all(Option::is_none) {
            continue;
        }
        let mut b = Backward {
            g,
            grads: &mut grads,
            need: &need,
            inputs: node.inputs.clone(),
            outputs: node.outputs.clone(),
            dys,
        };
        rule.backward(&mut b)?;
    }
    // Each parameter's total gradient becomes a persistent ParamGrad tensor.
    let params: Vec<TensorId> = g.params().collect();
    for p in params {
        let Some(grad) = grads.take(g, p)? else { continue };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::executor::cpu::{run, Noise};

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
        g.elbo("loss", sums[0], &sums[1..], dims).unwrap();
        let forward = g.nodes.len();
        append_backward(&mut g).unwrap();
        // The two disjoint slices are assembled by one copy; the overlapping one by another.
        let copies = g.nodes[forward..]
            .iter()
            .filter(|n| matches!(n.op, Op::CopyChannels(_)))
            .count();
        assert_eq!(copies, 2);
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

    #[test]
    fn a_concat_gradient_reads_its_channels_of_dy_and_a_whole_source_is_not_copied() {
        let mut g = Graph::default();
        let a = g.tensor("a", vec![2, 1, 1, 2], Role::Param);
        let b = g.tensor("b", vec![2, 1, 1, 3], Role::Param);
        let cat = g.concat("cat", a, b).unwrap();
        let w = g.tensor("w", vec![5, 1, 1, 5], Role::Param);
        let y = g.conv2d("conv", cat, w, None, None, false).unwrap();
        let s = g.sum_per_image("sum", y).unwrap();
        g.elbo("loss", s, &[], 1).unwrap();
        append_backward(&mut g).unwrap();
        let mut values = vec![None; g.tensors.len()];
        values[a] = Some(vec![1.0, 2.0, 3.0, 4.0]);
        values[b] = Some((0..6).map(|i| i as f32).collect());
        values[w] = Some((0..25).map(|i| i as f32 / 25.0).collect());
        run(&g, &mut values, Noise::default()).unwrap();
        // d loss / d cat[c] = Σ_o w[o, c] / N, identical for both images.
        let col = |c: usize| (0..5).map(|o| (o * 5 + c) as f32 / 25.0).sum::<f32>() / 2.0;
        let grad = |p: TensorId| {
            values[g.param_grads.iter().find(|d| d.0 == p).unwrap().1]
                .clone()
                .unwrap()
        };
        let close = |got: Vec<f32>, want: &[f32]| {
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() <= 1e-6 * w.abs(), "{got:?} vs {want:?}");
            }
        };
        close(grad(a), &[col(0), col(1), col(0), col(1)]);
        close(grad(b), &[col(2), col(3), col(4), col(2), col(3), col(4)]);
    }

    #[test]
    fn the_gradient_of_a_tensor_many_convs_read_is_one_chain_of_dx_epilogues() {
        use crate::kernels::conv2d::{reference as conv_ref, Conv2dShape};
        let mut g = Graph::default();
        let x = g.tensor("x", vec![1, 2, 3, 4], Role::Param);
        let ws: Vec<TensorId> = (0..3)
            .map(|i| g.tensor(format!("w{i}"), vec![4, 1, 1, 4], Role::Param))
            .collect();
        let ys: Vec<TensorId> = ws
            .iter()
            .map(|&w| {
                let y = g.conv2d("c", x, w, None, None, true).unwrap();
                g.sum_per_image("s", y).unwrap()
            })
            .collect();
        let dims = 8;
        g.elbo("loss", ys[0], &ys[1..], dims).unwrap();
        let forward = g.nodes.len();
        append_backward(&mut g).unwrap();
        let backward = &g.nodes[forward..];
        // No Add: the second dx adds the first, the third the sum of both.
        assert!(!backward.iter().any(|n| matches!(n.op, Op::Add(_))));
        let fused = backward
            .iter()
            .filter(|n| matches!(n.op, Op::Conv2dBackwardData(op) if op.addend));
        assert_eq!(fused.count(), 2);

        let xs: Vec<f32> = (0..24).map(|i| (i as f32 - 11.0) / 7.0).collect();
        let mut values = vec![None; g.tensors.len()];
        values[x] = Some(xs.clone());
        let mut want = vec![0.0f32; 24];
        for (k, &w) in ws.iter().enumerate() {
            let wv: Vec<f32> = (0..16).map(|i| ((i * 5 + k * 3) % 11) as f32 / 11.0 - 0.5).collect();
            let shape = Conv2dShape::new(1, 2, 3, 4, 4, 1).with_gelu(true);
            let dx = conv_ref::backward_input(&shape, &xs, &wv, &[1.0 / dims as f32; 24]);
            want.iter_mut().zip(dx).for_each(|(a, b)| *a += b);
            values[w] = Some(wv);
        }
        run(&g, &mut values, Noise::default()).unwrap();
        let got = values[g.param_grads.iter().find(|d| d.0 == x).unwrap().1]
            .as_ref()
            .unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!((g - w).abs() <= 1e-6 * w.abs().max(1e-3), "{i}: {g} vs {w}");
        }
    }

    #[test]
    fn a_residual_gradient_is_added_by_the_conv_dx_not_an_add() {
        use crate::kernels::conv2d::{reference as conv_ref, Conv2dShape};
        let mut g = Graph::default();
        let x = g.tensor("x", vec![1, 3, 3, 4], Role::Param);
        let w = g.tensor("w", vec![4, 3, 3, 4], Role::Param);
        let y = g.conv2d("c", x, w, None, Some(x), true).unwrap();
        let s = g.sum_per_image("s", y).unwrap();
        let dims = 36;
        g.elbo("loss", s, &[], dims).unwrap();
        let forward = g.nodes.len();
        append_backward(&mut g).unwrap();
        let backward = &g.nodes[forward..];
        assert!(!backward.iter().any(|n| matches!(n.op, Op::Add(_))));
        let fused = backward
            .iter()
            .filter(|n| matches!(n.op, Op::Conv2dBackwardData(op) if op.addend));
        assert_eq!(fused.count(), 1);

        let xs: Vec<f32> = (0..36).map(|i| (i as f32 - 17.0) / 9.0).collect();
        let ws: Vec<f32> = (0..144).map(|i| ((i * 7) % 13) as f32 / 13.0 - 0.5).collect();
        let mut values = vec![None; g.tensors.len()];
        values[x] = Some(xs.clone());
        values[w] = Some(ws.clone());
        run(&g, &mut values, Noise::default()).unwrap();
        // d loss / d y = 1 / dims everywhere; dx = conv_transpose(dy, w) · gelu'(x) + dy.
        let shape = Conv2dShape::new(1, 3, 3, 4, 4, 3).with_gelu(true);
        let dy = vec![1.0 / dims as f32; 36];
        let want = conv_ref::backward_input(&shape, &xs, &ws, &dy);
        let got = values[g.param_grads.iter().find(|d| d.0 == x).unwrap().1]
            .as_ref()
            .unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let w = w + dy[i];
            assert!((g - w).abs() <= 1e-6 * w.abs().max(1e-3), "{i}: {g} vs {w}");
        }
    }

    #[test]
    fn running_sums_free_each_part_as_it_comes_and_agree_with_sums_at_the_producer() {
        use crate::graph::plan::lifetimes;
        // `a` is read by four levels, each through a concat (a channel part of
        // its gradient) and a conv (a whole part), like an encoder activation
        // read by every decoder level.
        let build = |accumulate| {
            let mut g = Graph::default();
            let a = g.tensor("a", vec![1, 2, 2, 4], Role::Param);
            let mut x = g.tensor("x", vec![1, 2, 2, 4], Role::Param);
            let mut sums = Vec::new();
            for i in 0..4 {
                let w = g.tensor(format!("w{i}"), vec![4, 1, 1, 8], Role::Param);
                let v = g.tensor(format!("v{i}"), vec![4, 1, 1, 4], Role::Param);
                let cat = g.concat(&format!("cat{i}"), x, a).unwrap();
                let y = g.conv2d(&format!("c{i}"), cat, w, None, None, true).unwrap();
                let u = g.conv2d(&format!("u{i}"), a, v, None, Some(y), true).unwrap();
                sums.push(g.sum_per_image(&format!("s{i}"), u).unwrap());
                x = u;
            }
            g.elbo("loss", sums[0], &sums[1..], 16).unwrap();
            append_backward_with(&mut g, accumulate).unwrap();
            (g, a)
        };
        let run_grads = |g: &Graph| {
            let mut values = vec![None; g.tensors.len()];
            for t in g.params() {
                let n = g.tensors[t].numel();
                values[t] = Some((0..n).map(|i| ((i * 5 + t) % 9) as f32 / 9.0 - 0.4).collect());
            }
            run(g, &mut values, Noise::default()).unwrap();
            g.param_grads
                .iter()
                .map(|&(_, d)| values[d].clone().unwrap())
                .collect::<Vec<_>>()
        };
        let (lazy, a) = build(Accumulate::AtProducer);
        let (eager, _) = build(Accumulate::Running);
        assert!(eager.nodes.len() <= lazy.nodes.len());
        // Gradient parts of `a` alive at once: several until the end, or a couple.
        let most_live = |g: &Graph| {
            let life = lifetimes(g);
            let parts: Vec<(usize, usize)> = (0..g.tensors.len())
                .filter(|&t| g.tensors[t].name == format!("grad.{}", g.tensors[a].name))
                .filter_map(|t| life[t])
                .collect();
            (0..g.nodes.len())
                .map(|i| parts.iter().filter(|l| l.0 <= i && i <= l.1).count())
                .max()
                .unwrap()
        };
        println!(
            "parts of grad a alive at once: {} at the producer, {} running",
            most_live(&lazy),
            most_live(&eager)
        );
        // At the producer, the channel parts (from the concats) wait for the
        // encoder's backward; the convs' parts fold into one dx chain either way.
        assert!(most_live(&lazy) >= 6, "{}", most_live(&lazy));
        assert!(most_live(&eager) <= 3, "{}", most_live(&eager));
        for (got, want) in run_grads(&eager).iter().zip(&run_grads(&lazy)) {
            for (x, y) in got.iter().zip(want) {
                assert!((x - y).abs() <= 1e-6 * y.abs().max(1.0), "{x} vs {y}");
            }
        }
    }
}
