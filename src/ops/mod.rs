//! Kernel families. Each has its shape rules and GPU dispatch (`mod.rs`), a
//! plain-Rust CPU reference (`reference.rs`: f32 data, f64 accumulation) and
//! its table of checked shapes and benchmark cases (`cases.rs`).
//!
//! Tensors are NHWC (channels last); conv weights are `[out, kh, kw, in]`.

pub mod elementwise;
pub mod rng;
pub mod testdata;

use crate::bench::BenchCase;
use crate::check::Checker;
use crate::error::Result;
use crate::gpu::GpuContext;

type CheckFn = fn(&mut Checker) -> Result<()>;
type BenchFn = fn(&GpuContext) -> Result<Vec<BenchCase>>;

/// Every family `vdvae check` and kernels-test run, in dependency order.
pub const FAMILIES: &[(&str, CheckFn)] = &[("rng", rng::check), ("elementwise", elementwise::check)];

/// Every family with benchmark cases.
pub const BENCHES: &[(&str, BenchFn)] = &[("elementwise", elementwise::bench_cases)];
