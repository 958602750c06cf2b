//! `y = a + b`. Its backward passes dy to both inputs without a copy.
//! Kernel: `crate::ops::elementwise::add`.

use super::OpRule;
use crate::error::{shape_err, Result};
use crate::gpu::Dispatch;
use crate::graph::autodiff::Backward;
use crate::graph::cpu::CpuCall;
use crate::graph::gpu::{LowerCall, Split, Unit};
use crate::graph::ir::{Graph, Node, TensorId};
use crate::ops::elementwise::{self, reference};

/// in: a, b → a + b.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Add;

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

    fn split(&self, _: &Graph, node: &Node) -> Option<Split> {
        Some(Split::cut_all(Unit::Pixels, node))
    }
}
