//! Batch and per-image reshapes: broadcasting a `[1, ...]` tensor over the
//! batch and its sum back, and per-image sums with their broadcast back.
//! Kernels: `crate::kernels::broadcast`, `crate::kernels::reduce`.

use super::{nhwc_of, per_image_dims, OpRule};
use crate::error::{shape_err, Result};
use crate::gpu::Dispatch;
use crate::graph::autodiff::Backward;
use crate::graph::executor::cpu::CpuCall;
use crate::graph::executor::{BindingSplit, LowerCall, Part, Unit};
use crate::graph::ir::{Graph, Node, TensorId};
use crate::kernels::broadcast::{self, reference as broadcast_ref};
use crate::kernels::reduce::{self, reference as reduce_ref, ReduceOp, Reduction};

/// `[1, H, W, C]` repeated to `[n, H, W, C]` (the learned decoder start state).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BroadcastBatch {
    pub n: usize,
}

/// `[N, H, W, C]` summed over N to `[1, H, W, C]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SumBatch;

/// `[N, ...]` → `[N]`: the sum over each image.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SumPerImage;

/// `[N]` → `[N, ...]` with the output's shape: each image's value everywhere.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BroadcastPerImage;

impl Graph {
    pub fn broadcast_batch(&mut self, name: &str, x: TensorId, n: usize) -> Result<TensorId> {
        let [one, h, w, c] = nhwc_of(self, x, name)?;
        if one != 1 {
            return shape_err(format!("{name}: broadcast needs a batch of 1, got {one}"));
        }
        let y = self.activation(name, vec![n, h, w, c]);
        self.node(BroadcastBatch { n }, vec![x], vec![y]);
        Ok(y)
    }

    pub fn sum_per_image(&mut self, name: &str, x: TensorId) -> Result<TensorId> {
        let Some(&n) = self.shape(x).first() else {
            return shape_err(format!("{name}: a per-image sum needs a batch dimension"));
        };
        let y = self.activation(name, vec![n]);
        self.node(SumPerImage, vec![x], vec![y]);
        Ok(y)
    }
}

/// Workspace of a sum of `[N, per image]` over `axis`.
fn sum_scratch(g: &Graph, node: &Node, axis: usize) -> usize {
    let dims = per_image_dims(g.shape(node.inputs[0]));
    Reduction::new(ReduceOp::Sum, &dims, &[axis]).map_or(0, |r| r.scratch_len())
}

/// A sum over `axis` of the input viewed as `[N, per image]`.
fn lower_sum(l: &LowerCall<'_>, axis: usize) -> Result<Vec<Dispatch>> {
    let dims = per_image_dims(l.in_shape(0));
    let len = Reduction::new(ReduceOp::Sum, &dims, &[axis])?.scratch_len();
    reduce::sum(l.ctx, l.input(0), &dims, &[axis], l.scratch(len), l.output(0))
}

fn eval_sum(c: &CpuCall<'_>, axis: usize) -> Vec<f32> {
    reduce_ref::reduce(ReduceOp::Sum, c.input(0), &per_image_dims(c.in_shape(0)), &[axis])
}

impl OpRule for BroadcastBatch {
    fn name(&self) -> &'static str {
        "broadcast_batch"
    }

    fn backward(&self, b: &mut Backward<'_>) -> Result<()> {
        let dy = b.dy();
        b.unary(SumBatch, 0, dy);
        Ok(())
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        Ok(vec![broadcast_ref::broadcast_batch(c.input(0), self.n)])
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        Ok(vec![broadcast::broadcast_batch(l.ctx, l.input(0), l.output(0))?])
    }

    fn binding_split(&self, _: &Graph, _: &Node) -> Option<BindingSplit> {
        Some(BindingSplit::new(Unit::Pixels, vec![Part::Image], vec![Part::Cut]))
    }
}

impl OpRule for SumBatch {
    fn name(&self) -> &'static str {
        "sum_batch"
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        Ok(vec![eval_sum(c, 0)])
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        lower_sum(l, 0)
    }

    fn scratch_len(&self, g: &Graph, node: &Node) -> usize {
        sum_scratch(g, node, 0)
    }

    fn binding_split(&self, _: &Graph, _: &Node) -> Option<BindingSplit> {
        Some(BindingSplit::new(Unit::Pixels, vec![Part::Cut], vec![Part::Image]))
    }
}

impl OpRule for SumPerImage {
    fn name(&self) -> &'static str {
        "sum_per_image"
    }

    fn backward(&self, b: &mut Backward<'_>) -> Result<()> {
        let dy = b.dy();
        b.unary(BroadcastPerImage, 0, dy);
        Ok(())
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        Ok(vec![eval_sum(c, 1)])
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        lower_sum(l, 1)
    }

    fn scratch_len(&self, g: &Graph, node: &Node) -> usize {
        sum_scratch(g, node, 1)
    }

    fn binding_split(&self, _: &Graph, _: &Node) -> Option<BindingSplit> {
        Some(BindingSplit::new(Unit::Pixels, vec![Part::Cut], vec![Part::PerImage]))
    }
}

impl OpRule for BroadcastPerImage {
    fn name(&self) -> &'static str {
        "broadcast_per_image"
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        let per_image = c.g.tensors[c.node.outputs[0]].numel() / c.input(0).len();
        Ok(vec![broadcast_ref::broadcast_per_image(c.input(0), per_image)])
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        Ok(vec![broadcast::broadcast_per_image(l.ctx, l.input(0), l.output(0))?])
    }

    fn binding_split(&self, _: &Graph, _: &Node) -> Option<BindingSplit> {
        Some(BindingSplit::new(Unit::Pixels, vec![Part::PerImage], vec![Part::Cut]))
    }
}
