//! Kernel families. Each has its shape rules and GPU dispatch (`mod.rs`), a
//! plain-Rust CPU reference (`reference.rs`: f32 data, f64 accumulation) and
//! its table of checked shapes and benchmark cases (`cases.rs`), and is
//! registered once, in [`FAMILIES`].
//!
//! Tensors are NHWC (channels last); conv weights are `[out, kh, kw, in]`.

pub mod bernoulli;
pub mod broadcast;
pub mod conv2d;
pub mod dmol;
pub mod elementwise;
pub mod flow;
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

/// Runs a family's checks (see [`Family::check`]).
pub type CheckFn = fn(&mut Checker) -> Result<()>;
/// Builds a family's benchmark cases (see [`Family::bench`]).
pub type BenchFn = fn(&GpuContext) -> Result<Vec<BenchCase>>;

/// One kernel family as the rest of the crate sees it: `vdvae check` and
/// kernels-test run its checks, `benches/kernels.rs` its bench cases, and
/// `tests/shader_contract.rs` checks its kernels against their WGSL.
pub struct Family {
    pub name: &'static str,
    /// Every kernel of the family on its table of shapes (`cases.rs`) against
    /// the CPU reference.
    pub check: CheckFn,
    /// Its benchmark cases (`cases.rs`), if it has any.
    pub bench: Option<BenchFn>,
    /// Every kernel it can build, each generated variant included.
    pub kernels: fn() -> Vec<KernelSpec>,
}

/// Every family, in dependency order (checks and benchmarks run in this order).
pub const FAMILIES: &[Family] = &[
    Family {
        name: "rng",
        check: rng::check,
        bench: None,
        kernels: rng::all_kernels,
    },
    Family {
        name: "elementwise",
        check: elementwise::check,
        bench: Some(elementwise::bench_cases),
        kernels: elementwise::all_kernels,
    },
    Family {
        name: "resample",
        check: resample::check,
        bench: Some(resample::bench_cases),
        kernels: resample::all_kernels,
    },
    Family {
        name: "broadcast",
        check: broadcast::check,
        bench: Some(broadcast::bench_cases),
        kernels: broadcast::all_kernels,
    },
    Family {
        name: "reduce",
        check: reduce::check,
        bench: Some(reduce::bench_cases),
        kernels: reduce::all_kernels,
    },
    Family {
        name: "matmul",
        check: matmul::check,
        bench: Some(matmul::bench_cases),
        kernels: matmul::all_kernels,
    },
    Family {
        name: "conv2d",
        check: conv2d::check,
        bench: Some(conv2d::bench_cases),
        kernels: conv2d::all_kernels,
    },
    Family {
        name: "groupnorm",
        check: groupnorm::check,
        bench: Some(groupnorm::bench_cases),
        kernels: groupnorm::all_kernels,
    },
    Family {
        name: "reparam_kl",
        check: reparam_kl::check,
        bench: Some(reparam_kl::bench_cases),
        kernels: reparam_kl::all_kernels,
    },
    Family {
        name: "flow",
        check: flow::check,
        bench: None,
        kernels: flow::all_kernels,
    },
    Family {
        name: "dmol",
        check: dmol::check,
        bench: Some(dmol::bench_cases),
        kernels: dmol::all_kernels,
    },
    Family {
        name: "bernoulli",
        check: bernoulli::check,
        bench: Some(bernoulli::bench_cases),
        kernels: bernoulli::all_kernels,
    },
    Family {
        name: "optimizer",
        check: optimizer::check,
        bench: Some(optimizer::bench_cases),
        kernels: optimizer::all_kernels,
    },
    Family {
        name: "kl_control",
        check: kl_control::check,
        bench: None,
        kernels: kl_control::all_kernels,
    },
];

/// Runs the checks of the family named `only` (every family when `None`).
pub fn run_checks(checker: &mut Checker, only: Option<&str>) -> Result<()> {
    if let Some(name) = only {
        if !FAMILIES.iter().any(|f| f.name == name) {
            let names: Vec<_> = FAMILIES.iter().map(|f| f.name).collect();
            return Err(crate::Error::Input(format!(
                "no kernel family named {name:?}; the families are: {}",
                names.join(", ")
            )));
        }
    }
    for family in FAMILIES {
        if only.is_none_or(|o| o == family.name) {
            (family.check)(checker)?;
        }
    }
    Ok(())
}

/// Every kernel the crate can build, each generated variant included, by
/// family, with the FMA ceiling kernel (not a family) first as `gpu`: what
/// `tests/shader_contract.rs` checks against naga's reading of the WGSL.
pub fn all_kernels() -> Vec<(&'static str, Vec<KernelSpec>)> {
    std::iter::once(("gpu", crate::gpu::ceiling_kernels()))
        .chain(FAMILIES.iter().map(|f| (f.name, (f.kernels)())))
        .collect()
}
