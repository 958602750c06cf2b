//! Group normalization of NHWC tensors (PyTorch's `GroupNorm`: statistics per
//! image and group of C/G channels, biased variance, per-channel gamma and
//! beta); with one group over `[N, 1, 1, F]` it is the layer norm of the MLP
//! models. The forward's per-(image, group) mean and rstd are its second
//! output, read by the backward. Kernels: `crate::kernels::groupnorm`.

use super::{nhwc, nhwc_of, OpRule};
use crate::error::{shape_err, Error, Result};
use crate::gpu::Dispatch;
use crate::graph::autodiff::Backward;
use crate::graph::executor::cpu::CpuCall;
use crate::graph::executor::LowerCall;
use crate::graph::ir::{Graph, Node, TensorId};
use crate::kernels::groupnorm::{self as kernels, reference};

/// in: x `[N, H, W, C]`, gamma `[C]`, beta `[C]` → y, stats `[2·N·G]`
/// (mean of every (image, group), then rstd).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GroupNorm {
    pub groups: usize,
    pub eps: f32,
}

/// in: dy, x, gamma, stats → dx, dgamma, dbeta.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GroupNormBackward {
    pub groups: usize,
    pub eps: f32,
}

impl Graph {
    /// `(x − mean) · rstd · gamma + beta` with mean and rstd over each image's
    /// `groups` groups of channels; `gamma` and `beta` are `[C]`.
    pub fn group_norm(
        &mut self,
        name: &str,
        x: TensorId,
        gamma: TensorId,
        beta: TensorId,
        groups: usize,
        eps: f32,
    ) -> Result<TensorId> {
        let shape = nhwc_of(self, x, name)?;
        let plan = kernels::GroupNorm::new(shape, groups, eps).map_err(|e| match e {
            Error::Shape(m) => Error::Shape(format!("{name}: {m}")),
            other => other,
        })?;
        let c = shape[3];
        if self.shape(gamma) != [c] || self.shape(beta) != [c] {
            return shape_err(format!("{name}: gamma and beta must be [{c}]"));
        }
        let y = self.activation(name, shape.to_vec());
        let stats = self.activation(&format!("{name}.stats"), vec![plan.stats_len()]);
        self.node(GroupNorm { groups, eps }, vec![x, gamma, beta], vec![y, stats]);
        Ok(y)
    }
}

/// The kernels' plan for `x`'s shape.
fn plan(x: &[usize], groups: usize, eps: f32) -> Result<kernels::GroupNorm> {
    kernels::GroupNorm::new(nhwc(x), groups, eps)
}

/// Workspace the kernels need on any adapter: `GroupNorm::scratch_len(ctx)`'s
/// layout at the largest storage offset alignment an adapter may require
/// (256 bytes), which bounds it for every adapter (alignments are powers of two).
fn scratch_bound(p: &kernels::GroupNorm) -> usize {
    let round = |v: usize| v.next_multiple_of(64);
    let [n, _, _, c] = p.shape;
    let half = n * p.splits * c;
    round(round(half) + half) + 4 * n * c
}

/// The first `scratch_len(ctx)` elements of the workspace (sized by [`scratch_bound`]).
fn scratch<'a>(l: &LowerCall<'a>, p: &kernels::GroupNorm) -> Result<crate::gpu::BufView<'a>> {
    let need = p.scratch_len(l.ctx);
    if need > scratch_bound(p) {
        return shape_err(format!(
            "group norm {:?}: the kernels need {need} workspace elements, over the {} planned",
            p.shape,
            scratch_bound(p)
        ));
    }
    Ok(l.scratch(need))
}

impl OpRule for GroupNorm {
    fn name(&self) -> &'static str {
        "group_norm"
    }

    fn backward(&self, b: &mut Backward<'_>) -> Result<()> {
        // stats feed only the backward: y's gradient is the one that matters.
        let Some(dy) = b.dy_of(0) else { return Ok(()) };
        let d = [b.grad_like(0), b.grad_like(1), b.grad_like(2)];
        let op = GroupNormBackward {
            groups: self.groups,
            eps: self.eps,
        };
        let inputs = vec![dy, b.input(0), b.input(1), b.output(1)];
        b.node(op, inputs, d.to_vec());
        for (k, dk) in d.into_iter().enumerate() {
            if b.wants(k) {
                b.push(k, dk);
            }
        }
        Ok(())
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        let shape = nhwc(c.in_shape(0));
        let (y, mean, rstd) = reference::forward(c.input(0), shape, self.groups, self.eps, c.input(1), c.input(2));
        Ok(vec![y, [mean, rstd].concat()])
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        let p = plan(l.in_shape(0), self.groups, self.eps)?;
        let args = kernels::GroupNormForward {
            x: l.input(0),
            gamma: l.input(1),
            beta: l.input(2),
            y: l.output(0),
            stats: l.output(1),
            scratch: scratch(l, &p)?,
        };
        p.forward(l.ctx, &args)
    }

    fn scratch_len(&self, g: &Graph, node: &Node) -> usize {
        plan(g.shape(node.inputs[0]), self.groups, self.eps).map_or(0, |p| scratch_bound(&p))
    }

    /// The statistics stay f32 under f16 storage: the backward reads them
    /// where the CPU backward recomputes them exactly from x.
    fn keeps_f32(&self, output: usize) -> bool {
        output == 1
    }

    // No `split`: the kernels lay the statistics out as [mean (N×G), rstd
    // (N×G)], not per image, so a slice of images has no contiguous range of
    // them. A node over the binding limit is refused.
}

impl OpRule for GroupNormBackward {
    fn name(&self) -> &'static str {
        "group_norm_backward"
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        let shape = nhwc(c.in_shape(1));
        let (dx, dgamma, dbeta) = reference::backward(c.input(1), c.input(0), shape, self.groups, self.eps, c.input(2));
        Ok(vec![dx, dgamma, dbeta])
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        let p = plan(l.in_shape(1), self.groups, self.eps)?;
        let args = kernels::GroupNormBackward {
            x: l.input(1),
            dy: l.input(0),
            gamma: l.input(2),
            stats: l.input(3),
            dx: l.output(0),
            dgamma: l.output(1),
            dbeta: l.output(2),
            scratch: scratch(l, &p)?,
        };
        p.backward(l.ctx, &args)
    }

    fn scratch_len(&self, g: &Graph, node: &Node) -> usize {
        plan(g.shape(node.inputs[1]), self.groups, self.eps).map_or(0, |p| scratch_bound(&p))
    }
}
