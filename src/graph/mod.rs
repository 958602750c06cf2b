//! Graph IR, its ops (one file per family: shape rule, backward rule, CPU
//! evaluation, GPU lowering), reverse-mode autodiff, memory plan and executors.

pub mod autodiff;
pub mod budget;
pub mod executor;
pub mod ir;
pub mod ops;
pub mod plan;
pub mod precision;
pub mod recompute;

pub use ir::{DType, Graph, Node, Op, Role, Sampling, TensorId, TensorInfo};
pub use ops::{ActivationKind, ElboParts, ElboTotals, KlCoefTensor, KlSchedule, KlTerm, LossTerms, OpRule};
pub use precision::{set_precision, Precision};
