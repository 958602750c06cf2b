//! The per-channel affine `y = x · gain + bias` (the decoder's output gain and
//! bias) and its backward. Kernels: `crate::kernels::elementwise::affine`.

use super::{nhwc_of, OpRule};
use crate::error::{shape_err, Result};
use crate::gpu::Dispatch;
use crate::graph::autodiff::Backward;
use crate::graph::executor::cpu::CpuCall;
use crate::graph::executor::{BindingSplit, LowerCall, Part, Unit};
use crate::graph::ir::{Graph, Node, TensorId};
use crate::kernels::elementwise::{self, reference};

/// in: x, gain[C], bias[C] → x · gain + bias.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Affine;

/// in: dy, x, gain → dx, dgain, dbias.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AffineBackward;

impl Graph {
    pub fn affine(&mut self, name: &str, x: TensorId, gain: TensorId, bias: TensorId) -> Result<TensorId> {
        let [_, _, _, c] = nhwc_of(self, x, name)?;
        if self.shape(gain) != [c] || self.shape(bias) != [c] {
            return shape_err(format!("{name}: gain and bias must be [{c}]"));
        }
        let y = self.activation(name, self.shape(x).to_vec());
        self.node(Affine, vec![x, gain, bias], vec![y]);
        Ok(y)
    }
}

impl OpRule for Affine {
    fn name(&self) -> &'static str {
        "affine"
    }

    fn backward(&self, b: &mut Backward<'_>) -> Result<()> {
        let d = [b.grad_like(0), b.grad_like(1), b.grad_like(2)];
        let inputs = vec![b.dy(), b.input(0), b.input(1)];
        b.node(AffineBackward, inputs, d.to_vec());
        for (k, dk) in d.into_iter().enumerate() {
            if b.wants(k) {
                b.push(k, dk);
            }
        }
        Ok(())
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        Ok(vec![reference::affine(c.input(0), c.input(1), c.input(2))])
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        let d = elementwise::affine(l.ctx, l.input(0), l.input(1), l.input(2), l.output(0))?;
        Ok(vec![d])
    }

    fn binding_split(&self, _: &Graph, _: &Node) -> Option<BindingSplit> {
        let inputs = vec![Part::Cut, Part::Whole, Part::Whole];
        Some(BindingSplit::new(Unit::Pixels, inputs, vec![Part::Cut]))
    }
}

impl OpRule for AffineBackward {
    fn name(&self) -> &'static str {
        "affine_backward"
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        let (dx, dgain, dbias) = reference::affine_backward(c.input(1), c.input(0), c.input(2));
        Ok(vec![dx, dgain, dbias])
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        let len = elementwise::affine_backward_scratch_len(l.input(1).len, l.in_shape(2)[0]);
        let args = elementwise::AffineBackward {
            x: l.input(1),
            dy: l.input(0),
            gain: l.input(2),
            dx: l.output(0),
            dgain: l.output(1),
            dbias: l.output(2),
            scratch: l.scratch(len),
        };
        elementwise::affine_backward(l.ctx, &args)
    }

    /// dx per pixel; dgain and dbias summed over the slices.
    fn binding_split(&self, _: &Graph, _: &Node) -> Option<BindingSplit> {
        let inputs = vec![Part::Cut, Part::Cut, Part::Whole];
        Some(BindingSplit::new(
            Unit::Pixels,
            inputs,
            vec![Part::Cut, Part::Sum, Part::Sum],
        ))
    }

    fn scratch_len(&self, g: &Graph, node: &Node) -> usize {
        elementwise::affine_backward_scratch_len(g.tensors[node.inputs[1]].numel(), g.shape(node.inputs[2])[0])
    }
}
