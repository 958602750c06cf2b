//! `y = a + b`, and `y = a + b[.., window]` with the window of a wider b read
//! where it lies. Their backward passes dy to both inputs without a copy (to a
//! channel range of b's gradient for the window).
//! Kernels: `crate::kernels::elementwise::{add, add_channels}`.

use super::{nhwc_of, OpRule};
use crate::error::{shape_err, Result};
use crate::gpu::Dispatch;
use crate::graph::autodiff::Backward;
use crate::graph::executor::cpu::CpuCall;
use crate::graph::executor::{BindingSplit, LowerCall, Unit};
use crate::graph::ir::{Graph, Node, TensorId};
use crate::kernels::elementwise::{self, reference, ChannelRange};

/// in: a, b → a + b.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Add;

/// in: a (C channels), b (more) → a + b[.., start..start + C], without a
/// slice of b first.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AddChannels {
    pub start: usize,
}

impl Graph {
    pub fn add(&mut self, name: &str, a: TensorId, b: TensorId) -> Result<TensorId> {
        if self.shape(a) != self.shape(b) {
            return shape_err(format!(
                "{name}: cannot add {:?} and {:?}",
                self.shape(a),
                self.shape(b)
            ));
        }
        let y = self.activation(name, self.shape(a).to_vec());
        self.node(Add, vec![a, b], vec![y]);
        Ok(y)
    }

    /// `a + b[.., start..start + C]` for a of C channels: b's window read in place.
    pub fn add_channels(&mut self, name: &str, a: TensorId, b: TensorId, start: usize) -> Result<TensorId> {
        let [n, h, w, c] = nhwc_of(self, a, name)?;
        let [n2, h2, w2, cb] = nhwc_of(self, b, name)?;
        if (n, h, w) != (n2, h2, w2) || start + c > cb {
            return shape_err(format!(
                "{name}: cannot add channels [{start}, {}) of {:?} to {:?}",
                start + c,
                self.shape(b),
                self.shape(a)
            ));
        }
        let y = self.activation(name, self.shape(a).to_vec());
        self.node(AddChannels { start }, vec![a, b], vec![y]);
        Ok(y)
    }
}

impl OpRule for Add {
    fn name(&self) -> &'static str {
        "add"
    }

    fn backward(&self, b: &mut Backward<'_>) -> Result<()> {
        let dy = b.dy();
        for k in 0..2 {
            if b.wants(k) {
                b.push(k, dy);
            }
        }
        Ok(())
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        Ok(vec![reference::add(c.input(0), c.input(1))])
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        Ok(vec![elementwise::add(l.ctx, l.input(0), l.input(1), l.output(0))?])
    }

    fn binding_split(&self, _: &Graph, node: &Node) -> Option<BindingSplit> {
        Some(BindingSplit::cut_all(Unit::Pixels, node))
    }
}

impl AddChannels {
    fn window(&self, a_channels: usize, b_channels: usize) -> ChannelRange {
        ChannelRange::new(b_channels, self.start, self.start + a_channels)
    }
}

impl OpRule for AddChannels {
    fn name(&self) -> &'static str {
        "add_channels"
    }

    fn backward(&self, b: &mut Backward<'_>) -> Result<()> {
        let dy = b.dy();
        if b.wants(0) {
            b.push(0, dy);
        }
        if b.wants(1) {
            let c = b.g.shape(b.input(0))[3];
            b.push_channels(1, (self.start, self.start + c), dy, 0);
        }
        Ok(())
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        Ok(vec![reference::add_channels(
            c.input(0),
            c.input(1),
            c.channels(1),
            self.start,
        )])
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        let window = self.window(l.channels(0), l.channels(1));
        Ok(vec![elementwise::add_channels(
            l.ctx,
            l.input(0),
            l.input(1),
            window,
            l.output(0),
        )?])
    }

    /// Pixels are independent: each slice cuts a, b and the sum alike.
    fn binding_split(&self, _: &Graph, node: &Node) -> Option<BindingSplit> {
        Some(BindingSplit::cut_all(Unit::Pixels, node))
    }
}
