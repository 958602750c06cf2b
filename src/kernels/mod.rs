//! Kernel families. Each has its shape rules and GPU dispatch (`mod.rs`), a
//! plain-Rust CPU reference (`reference.rs`: f32 data, f64 accumulation) and
//! its table of checked shapes and benchmark cases (`cases.rs`).
//!
//! Tensors are NHWC (channels last); conv weights are `[out, kh, kw, in]`.

pub mod bernoulli;
pub mod broadcast;
pub mod conv2d;
pub mod dmol;
pub mod elementwise;
pub mod groupnorm;
pub mod kl_control;
pub mod matmul;
pub mod optimizer;
pub mod reduce;
pub mod reparam_kl;
pub mod resample;
pub mod rng;
pub mod testdata;

use crate::bench::BenchCase;
use crate::check::Checker;
use crate::error::Result;
use crate::gpu::{GpuContext, KernelSpec};

type CheckFn = fn(&mut Checker) -> Result<()>;
type BenchFn = fn(&GpuContext) -> Result<Vec<BenchCase>>;

/// Every family `vdvae check` and kernels-test run, in dependency order.
pub const FAMILIES: &[(&str, CheckFn)] = &[
    ("rng", rng::check),
    ("elementwise", elementwise::check),
    ("resample", resample::check),
    ("broadcast", broadcast::check),
    ("reduce", reduce::check),
    ("matmul", matmul::check),
    ("conv2d", conv2d::check),
    ("groupnorm", groupnorm::check),
    ("reparam_kl", reparam_kl::check),
    ("dmol", dmol::check),
    ("bernoulli", bernoulli::check),
    ("optimizer", optimizer::check),
    ("kl_control", kl_control::check),
];

/// Every family with benchmark cases.
pub const BENCHES: &[(&str, BenchFn)] = &[
    ("matmul", matmul::bench_cases),
    ("conv2d", conv2d::bench_cases),
    ("elementwise", elementwise::bench_cases),
    ("resample", resample::bench_cases),
    ("broadcast", broadcast::bench_cases),
    ("reduce", reduce::bench_cases),
    ("groupnorm", groupnorm::bench_cases),
    ("reparam_kl", reparam_kl::bench_cases),
    ("dmol", dmol::bench_cases),
    ("bernoulli", bernoulli::bench_cases),
    ("optimizer", optimizer::bench_cases),
];

/// Runs the families whose name matches `only` (all when `None`).
pub fn run_checks(checker: &mut Checker, only: Option<&str>) -> Result<()> {
    if let Some(name) = only {
        if !FAMILIES.iter().any(|(n, _)| *n == name) {
            let names: Vec<_> = FAMILIES.iter().map(|(n, _)| *n).collect();
            return Err(crate::Error::Input(format!(
                "no kernel family named {name:?}; the families are: {}",
                names.join(", ")
            )));
        }
    }
    for (name, check) in FAMILIES {
        if only.is_none_or(|o| o == *name) {
            check(checker)?;
        }
    }
    Ok(())
}

/// Every kernel the crate can build, each generated variant included, by
/// family (the FMA ceiling kernel as `gpu`): what `tests/shader_contract.rs`
/// checks against naga's reading of the WGSL.
pub fn all_kernels() -> Vec<(&'static str, Vec<KernelSpec>)> {
    vec![
        ("gpu", crate::gpu::ceiling_kernels()),
        ("rng", rng::all_kernels()),
        ("elementwise", elementwise::all_kernels()),
        ("resample", resample::all_kernels()),
        ("broadcast", broadcast::all_kernels()),
        ("reduce", reduce::all_kernels()),
        ("matmul", matmul::all_kernels()),
        ("conv2d", conv2d::all_kernels()),
        ("groupnorm", groupnorm::all_kernels()),
        ("reparam_kl", reparam_kl::all_kernels()),
        ("dmol", dmol::all_kernels()),
        ("bernoulli", bernoulli::all_kernels()),
        ("optimizer", optimizer::all_kernels()),
        ("kl_control", kl_control::all_kernels()),
    ]
}
