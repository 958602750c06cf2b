//! Graph IR, shape-inferring builder, reverse-mode autodiff and memory plan.

pub mod autodiff;
mod builder;
pub mod cpu;
pub mod gpu;
pub mod ir;
mod op_params;
pub mod plan;

pub use ir::{Graph, Node, Op, Role, Sampling, TensorId, TensorInfo};
