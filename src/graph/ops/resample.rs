//! Average pooling and nearest upsampling by an integer factor, and their
//! backwards (spread dy / k², sum k×k blocks). Kernels: `crate::kernels::resample`.

use super::{nhwc, nhwc_of, OpRule};
use crate::error::{shape_err, Result};
use crate::gpu::Dispatch;
use crate::graph::autodiff::Backward;
use crate::graph::executor::cpu::CpuCall;
use crate::graph::executor::{BindingSplit, LowerCall, Unit};
use crate::graph::ir::{Graph, Node, TensorId};
use crate::kernels::resample::{self as kernels, reference};

/// `[N, H, W, C]` → `[N, H/k, W/k, C]`, the mean of each k×k block.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AvgPool {
    pub k: usize,
}

/// in: dy (pooled shape) → dx, each block's dy / k².
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AvgPoolBackward {
    pub k: usize,
}

/// `[N, H, W, C]` → `[N, H·k, W·k, C]`, each pixel repeated k×k times.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Upsample {
    pub k: usize,
}

/// in: dy (upsampled shape) → dx, the sum of each k×k block.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UpsampleBackward {
    pub k: usize,
}

impl Graph {
    pub fn avg_pool(&mut self, name: &str, x: TensorId, k: usize) -> Result<TensorId> {
        let [n, h, w, c] = nhwc_of(self, x, name)?;
        if k == 0 || h % k != 0 || w % k != 0 {
            return shape_err(format!("{name}: {h}x{w} is not divisible by the pool factor {k}"));
        }
        let y = self.activation(name, vec![n, h / k, w / k, c]);
        self.node(AvgPool { k }, vec![x], vec![y]);
        Ok(y)
    }

    pub fn upsample(&mut self, name: &str, x: TensorId, k: usize) -> Result<TensorId> {
        let [n, h, w, c] = nhwc_of(self, x, name)?;
        if k == 0 {
            return shape_err(format!("{name}: the upsampling factor must be at least 1"));
        }
        let y = self.activation(name, vec![n, h * k, w * k, c]);
        self.node(Upsample { k }, vec![x], vec![y]);
        Ok(y)
    }
}

impl OpRule for AvgPool {
    fn name(&self) -> &'static str {
        "avg_pool"
    }

    fn backward(&self, b: &mut Backward<'_>) -> Result<()> {
        let dy = b.dy();
        b.unary(AvgPoolBackward { k: self.k }, 0, dy);
        Ok(())
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        Ok(vec![reference::avg_pool(c.input(0), nhwc(c.in_shape(0)), self.k)])
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        let x = nhwc(l.in_shape(0));
        Ok(vec![kernels::avg_pool(l.ctx, l.input(0), x, self.k, l.output(0))?])
    }

    /// Images stacked into one tall image: rows cut at matching places.
    fn binding_split(&self, _: &Graph, node: &Node) -> Option<BindingSplit> {
        Some(BindingSplit::cut_all(Unit::Rows, node))
    }
}

impl OpRule for AvgPoolBackward {
    fn name(&self) -> &'static str {
        "avg_pool_backward"
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        Ok(vec![reference::avg_pool_backward(
            c.input(0),
            nhwc(c.out_shape(0)),
            self.k,
        )])
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        let dx = nhwc(l.out_shape(0));
        Ok(vec![kernels::avg_pool_backward(
            l.ctx,
            l.input(0),
            dx,
            self.k,
            l.output(0),
        )?])
    }

    /// Images stacked into one tall image: rows cut at matching places.
    fn binding_split(&self, _: &Graph, node: &Node) -> Option<BindingSplit> {
        Some(BindingSplit::cut_all(Unit::Rows, node))
    }
}

impl OpRule for Upsample {
    fn name(&self) -> &'static str {
        "upsample"
    }

    fn backward(&self, b: &mut Backward<'_>) -> Result<()> {
        let dy = b.dy();
        b.unary(UpsampleBackward { k: self.k }, 0, dy);
        Ok(())
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        Ok(vec![reference::upsample_nearest(
            c.input(0),
            nhwc(c.in_shape(0)),
            self.k,
        )])
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        let x = nhwc(l.in_shape(0));
        Ok(vec![kernels::upsample_nearest(
            l.ctx,
            l.input(0),
            x,
            self.k,
            l.output(0),
        )?])
    }

    /// Images stacked into one tall image: rows cut at matching places.
    fn binding_split(&self, _: &Graph, node: &Node) -> Option<BindingSplit> {
        Some(BindingSplit::cut_all(Unit::Rows, node))
    }
}

impl OpRule for UpsampleBackward {
    fn name(&self) -> &'static str {
        "upsample_backward"
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        let dx = nhwc(c.out_shape(0));
        Ok(vec![reference::upsample_nearest_backward(c.input(0), dx, self.k)])
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        let dx = nhwc(l.out_shape(0));
        Ok(vec![kernels::upsample_nearest_backward(
            l.ctx,
            l.input(0),
            dx,
            self.k,
            l.output(0),
        )?])
    }

    /// Images stacked into one tall image: rows cut at matching places.
    fn binding_split(&self, _: &Graph, node: &Node) -> Option<BindingSplit> {
        Some(BindingSplit::cut_all(Unit::Rows, node))
    }
}
