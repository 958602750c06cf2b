//! Graph IR, shape-inferring builder, reverse-mode autodiff and memory plan.

pub mod autodiff;
pub mod cpu;
pub mod gpu;
mod builder;
pub mod ir;
pub mod plan;

pub use ir::{Graph, Node, Op, Role, Sampling, TensorId, TensorInfo};
