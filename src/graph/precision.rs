//! Storage precision of a graph's tensors (`--precision f32|f16`).
//!
//! With [`Precision::F16`] the forward activations computed from the data are
//! stored as f16: they are what a training step keeps alive from the forward
//! pass to the backward pass, so they set the peak memory. Kernels still
//! compute in f32 (their f16 bindings widen on load and round on store, see
//! `gpu::f16_storage`), and the CPU executor rounds the same tensors to f16
//! when it stores them, so the GPU f16 step can be checked against the CPU.
//!
//! What stays f32, and why:
//! - weights, parameter gradients, AdamW moments and EMA (master copies);
//! - inputs and constants (uploaded as f32), and the graph's outputs (loss
//!   terms, samples: read back, and summed over a whole image);
//! - activations computed from the weights alone (e.g. a conv's weights
//!   padded to 4 input channels, the decoder's broadcast `bias_xs`): they are
//!   weights in another layout, and rounding them would round the model;
//! - the backward pass's activation gradients: the loss is per dimension
//!   (divided by the 3,072 dims of a CIFAR-10 image) and by the batch, so
//!   they sit around 1e-5 to 1e-7, where f16 is subnormal or zero
//!   (its smallest normal is 6.1e-5); without loss scaling f16 would lose
//!   them (measured in `tests/f16_storage.rs`); they are also short-lived,
//!   so f16 would save little peak memory;
//! - kernel scratch and workspace;
//! - outputs an op keeps f32 (`OpRule::keeps_f32`: group norm's statistics,
//!   which its backward reads where the CPU backward recomputes them exactly).

use std::fmt;
use std::str::FromStr;

use super::ir::{DType, Graph, Role, TensorId};
use crate::error::{Error, Result};
use crate::gpu::GpuContext;

/// How a graph stores its activations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    /// Every tensor f32.
    #[default]
    F32,
    /// The forward activations computed from the data as f16 (see the module doc).
    F16,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Precision> {
        match s {
            "f32" => Ok(Precision::F32),
            "f16" => Ok(Precision::F16),
            other => Err(Error::Input(format!("precision `{other}`: expected f32 or f16"))),
        }
    }
}

/// Whether each tensor is computed from the data (an Input), through any node.
fn from_data(g: &Graph) -> Vec<bool> {
    let mut data: Vec<bool> = g.tensors.iter().map(|t| t.role == Role::Input).collect();
    for node in &g.nodes {
        if node.inputs.iter().any(|&t| data[t]) {
            for &o in &node.outputs {
                data[o] = true;
            }
        }
    }
    data
}

/// Nodes of the forward pass: those before autodiff's, or all of a graph without a backward.
fn forward_nodes(g: &Graph) -> usize {
    if g.forward_len > 0 {
        g.forward_len
    } else {
        g.nodes.len()
    }
}

/// The tensors [`Precision::F16`] stores as f16: activations produced by a
/// forward node from the data, except the graph's outputs and the outputs
/// their op keeps f32.
pub fn f16_activations(g: &Graph) -> Vec<TensorId> {
    let data = from_data(g);
    let mut out = Vec::new();
    for node in &g.nodes[..forward_nodes(g)] {
        for (k, &t) in node.outputs.iter().enumerate() {
            if node.op.rule().keeps_f32(k) {
                continue;
            }
            if g.tensors[t].role == Role::Activation && data[t] && !g.outputs.contains(&t) && !out.contains(&t) {
                out.push(t);
            }
        }
    }
    out
}

/// The activation gradients of the backward pass (activations produced by
/// backward nodes, except outputs): f32 under every [`Precision`]. Public for
/// the measurement that keeps them so (`tests/f16_storage.rs`).
pub fn backward_activations(g: &Graph) -> Vec<TensorId> {
    let mut out = Vec::new();
    for node in &g.nodes[forward_nodes(g)..] {
        for &t in &node.outputs {
            if g.tensors[t].role == Role::Activation && !g.outputs.contains(&t) && !out.contains(&t) {
                out.push(t);
            }
        }
    }
    out
}

/// Sets every tensor's dtype for `precision`. Call after autodiff (the
/// forward/backward split decides) and before planning or building.
pub fn set_precision(g: &mut Graph, precision: Precision) {
    for t in &mut g.tensors {
        t.dtype = DType::F32;
    }
    if precision == Precision::F16 {
        for t in f16_activations(g) {
            g.tensors[t].dtype = DType::F16;
        }
    }
}

/// An error unless `ctx` can run a graph with `g`'s dtypes.
pub fn check_adapter(ctx: &GpuContext, g: &Graph) -> Result<()> {
    let f16 = g.tensors.iter().any(|t| t.dtype == DType::F16);
    if f16 && !ctx.has(wgpu::Features::SHADER_F16) {
        return Err(Error::Gpu(format!(
            "f16 precision stores activations as f16, which needs the adapter feature SHADER_F16; \
             {} does not have it (use --precision f32)",
            ctx.adapter.name
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::autodiff::append_backward;

    #[test]
    fn forward_activations_from_the_data_go_f16_and_the_rest_stays_f32() {
        let mut g = Graph::default();
        let x = g.tensor("x", vec![1, 2, 2, 3], Role::Input);
        let w = g.tensor("w", vec![4, 1, 1, 3], Role::Param);
        // A 3-channel input pads both x and w: the padded w is weights, not data.
        let y = g.conv2d("c", x, w, None, None, true).unwrap();
        let w2 = g.tensor("w2", vec![4, 1, 1, 4], Role::Param);
        let z = g.conv2d("d", y, w2, None, None, true).unwrap();
        let s = g.sum_per_image("s", z).unwrap();
        g.elbo("loss", s, &[], 1).unwrap();
        append_backward(&mut g).unwrap();
        set_precision(&mut g, Precision::F16);
        let dtype = |name: &str| g.tensors.iter().find(|t| t.name == name).unwrap().dtype;
        assert_eq!(dtype("c.x_pad"), DType::F16);
        assert_eq!(dtype("c"), DType::F16);
        assert_eq!(dtype("d"), DType::F16);
        assert_eq!(dtype("c.w_pad"), DType::F32, "weights padded stay f32");
        assert_eq!(dtype("s"), DType::F32, "graph outputs stay f32");
        for t in backward_activations(&g) {
            assert_eq!(g.tensors[t].dtype, DType::F32, "{}", g.tensors[t].name);
        }
        for &(p, d) in &g.param_grads {
            assert_eq!((g.tensors[p].dtype, g.tensors[d].dtype), (DType::F32, DType::F32));
        }
        set_precision(&mut g, Precision::F32);
        assert!(g.tensors.iter().all(|t| t.dtype == DType::F32));
        assert_eq!("f16".parse::<Precision>().unwrap(), Precision::F16);
        assert!("bf16".parse::<Precision>().is_err());
    }
}
