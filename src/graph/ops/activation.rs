//! Pointwise activations of the MLP models (Ladder VAE): leaky ReLU, ELU and
//! GELU, and their backward from the forward's input.
//! Kernels: `crate::kernels::elementwise` (`gelu_*`, `leaky_relu_*`, `elu_*`).

use super::{nhwc_of, OpRule};
use crate::error::Result;
use crate::gpu::Dispatch;
use crate::graph::autodiff::Backward;
use crate::graph::executor::cpu::CpuCall;
use crate::graph::executor::{BindingSplit, LowerCall, Unit};
use crate::graph::ir::{Graph, Node, TensorId};
use crate::kernels::elementwise::{self, reference};

/// Which activation: `y = f(x)` elementwise.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ActivationKind {
    /// `x if x > 0 else slope · x`.
    LeakyRelu { slope: f32 },
    /// `x if x > 0 else exp(x) − 1`.
    Elu,
    /// Exact (erf) GELU, `x · Φ(x)`.
    Gelu,
}

/// in: x → f(x).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Activation {
    pub kind: ActivationKind,
}

/// in: dy, x → dx = dy · f'(x).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ActivationBackward {
    pub kind: ActivationKind,
}

impl Graph {
    /// `kind` applied to every element of the NHWC tensor `x`.
    ///
    /// Not called `activation`: that name is the crate's helper that adds an
    /// activation tensor (`Graph::activation(name, shape)`).
    pub fn activate(&mut self, name: &str, x: TensorId, kind: ActivationKind) -> Result<TensorId> {
        nhwc_of(self, x, name)?;
        let y = self.activation(name, self.shape(x).to_vec());
        self.node(Activation { kind }, vec![x], vec![y]);
        Ok(y)
    }
}

impl OpRule for Activation {
    fn name(&self) -> &'static str {
        match self.kind {
            ActivationKind::LeakyRelu { .. } => "leaky_relu",
            ActivationKind::Elu => "elu",
            ActivationKind::Gelu => "gelu",
        }
    }

    fn backward(&self, b: &mut Backward<'_>) -> Result<()> {
        let dx = b.grad_like(0);
        let inputs = vec![b.dy(), b.input(0)];
        b.node(ActivationBackward { kind: self.kind }, inputs, vec![dx]);
        b.push(0, dx);
        Ok(())
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        let x = c.input(0);
        Ok(vec![match self.kind {
            ActivationKind::LeakyRelu { slope } => reference::leaky_relu(x, slope),
            ActivationKind::Elu => reference::elu(x),
            ActivationKind::Gelu => reference::gelu(x),
        }])
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        let (x, y) = (l.input(0), l.output(0));
        Ok(vec![match self.kind {
            ActivationKind::LeakyRelu { slope } => elementwise::leaky_relu_forward(l.ctx, x, y, slope)?,
            ActivationKind::Elu => elementwise::elu_forward(l.ctx, x, y)?,
            ActivationKind::Gelu => elementwise::gelu_forward(l.ctx, x, y)?,
        }])
    }

    fn binding_split(&self, _: &Graph, node: &Node) -> Option<BindingSplit> {
        Some(BindingSplit::cut_all(Unit::Pixels, node))
    }
}

impl OpRule for ActivationBackward {
    fn name(&self) -> &'static str {
        match self.kind {
            ActivationKind::LeakyRelu { .. } => "leaky_relu_backward",
            ActivationKind::Elu => "elu_backward",
            ActivationKind::Gelu => "gelu_backward",
        }
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        let (dy, x) = (c.input(0), c.input(1));
        Ok(vec![match self.kind {
            ActivationKind::LeakyRelu { slope } => reference::leaky_relu_backward(x, dy, slope),
            ActivationKind::Elu => reference::elu_backward(x, dy),
            ActivationKind::Gelu => reference::gelu_backward(x, dy),
        }])
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        let (dy, x, dx) = (l.input(0), l.input(1), l.output(0));
        Ok(vec![match self.kind {
            ActivationKind::LeakyRelu { slope } => elementwise::leaky_relu_backward(l.ctx, x, dy, dx, slope)?,
            ActivationKind::Elu => elementwise::elu_backward(l.ctx, x, dy, dx)?,
            ActivationKind::Gelu => elementwise::gelu_backward(l.ctx, x, dy, dx)?,
        }])
    }

    fn binding_split(&self, _: &Graph, node: &Node) -> Option<BindingSplit> {
        Some(BindingSplit::cut_all(Unit::Pixels, node))
    }
}
