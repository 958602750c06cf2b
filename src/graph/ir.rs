//! The graph IR: tensors with shapes and roles, and nodes applying one op.
//! A model is built once as a graph; autodiff appends its backward nodes; the
//! memory planner places every tensor; an executor (CPU reference or GPU) runs it.
//! The ops themselves live in `super::ops`, one file per family.

pub use super::ops::Op;
pub use crate::gpu::DType;

/// Index into [`Graph::tensors`].
pub type TensorId = usize;

/// Where a tensor lives and how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// A trainable weight: persistent, in the weights buffer.
    Param,
    /// Data fed each step (network input, likelihood target).
    Input,
    /// Filled once when the graph is built (loss seeds).
    Constant,
    /// Produced and consumed within one step: placed by liveness in the arena.
    Activation,
    /// The gradient of a parameter: persistent, in the gradients buffer.
    ParamGrad,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub shape: Vec<usize>,
    pub role: Role,
    /// How its elements are stored (f32 unless `graph::precision` chose f16).
    pub dtype: DType,
}

impl TensorInfo {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Bytes of its elements as stored.
    pub fn bytes(&self) -> usize {
        self.numel() * self.dtype.size()
    }
}

/// How a latent is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sampling {
    /// z = mu_q + sigma_q · eps.
    Posterior,
    /// z = mu_q (deterministic evaluation).
    PosteriorMean,
    /// z = mu_q + sigma_q · eps as in `Posterior`, and the latent op's second
    /// output is the single-sample log density ratio log q(z|x) − log p(z)
    /// instead of the analytic KL (importance-sampled likelihood bounds).
    /// Forward only: its backward is an error.
    Importance,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub op: Op,
    pub inputs: Vec<TensorId>,
    pub outputs: Vec<TensorId>,
}

/// A whole model step: forward nodes, then (after autodiff) backward nodes.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub tensors: Vec<TensorInfo>,
    pub nodes: Vec<Node>,
    /// Values of `Role::Constant` tensors.
    pub constants: Vec<(TensorId, Vec<f32>)>,
    /// Tensors read back after a run (loss, metrics, samples): kept alive to the end.
    pub outputs: Vec<TensorId>,
    /// Parameter → gradient, filled by autodiff.
    pub param_grads: Vec<(TensorId, TensorId)>,
    /// Number of forward nodes (autodiff appends after them).
    pub forward_len: usize,
}

impl Graph {
    pub fn tensor(&mut self, name: impl Into<String>, shape: Vec<usize>, role: Role) -> TensorId {
        self.tensors.push(TensorInfo {
            name: name.into(),
            shape,
            role,
            dtype: DType::F32,
        });
        self.tensors.len() - 1
    }

    pub fn shape(&self, t: TensorId) -> &[usize] {
        &self.tensors[t].shape
    }

    pub fn node(&mut self, op: impl Into<Op>, inputs: Vec<TensorId>, outputs: Vec<TensorId>) {
        self.nodes.push(Node {
            op: op.into(),
            inputs,
            outputs,
        });
    }

    /// An activation: produced and consumed within one run.
    pub(crate) fn activation(&mut self, name: &str, shape: Vec<usize>) -> TensorId {
        self.tensor(name, shape, Role::Activation)
    }

    pub fn params(&self) -> impl Iterator<Item = TensorId> + '_ {
        (0..self.tensors.len()).filter(|&t| self.tensors[t].role == Role::Param)
    }

    pub fn count(&self, role: Role) -> (usize, usize) {
        let ts = self.tensors.iter().filter(|t| t.role == role);
        ts.fold((0, 0), |(n, e), t| (n + 1, e + t.numel()))
    }
}
