//! The adapter's measured arithmetic ceiling: benchmarks report every kernel as
//! a fraction of it, so figures compare across machines.

use super::{Access, BufView, Dispatch, GpuContext, Grid, Kernel, KernelSpec};
use crate::error::Result;

/// Workgroups of the ceiling run; each of `WG_SIZE` invocations writes one sink element.
const WORKGROUPS: u32 = 256;
const WG_SIZE: u32 = 64;

const FMA: Kernel<Params> = Kernel::portable(
    "fma_ceiling",
    &[include_str!("../../shaders/fma_ceiling.wgsl")],
    "main",
    &[Access::ReadWrite, Access::Uniform],
)
.with_workgroup_size([WG_SIZE, 1, 1]);
/// Inner-loop trips per runtime-loop iteration (`UNROLL` in fma_ceiling.wgsl).
const UNROLL: f64 = 4.0;
/// FLOPs per runtime-loop iteration per invocation: `UNROLL` blocks of 8 vec4 FMAs.
const FLOPS_PER_ITER: f64 = UNROLL * 8.0 * 4.0 * 2.0;

#[derive(Clone, Copy, Debug)]
pub struct FmaCeiling {
    pub gflops: f64,
    pub seconds: f64,
}

crate::gpu_params! {
    struct Params {
        iters: u32,
        seed: f32,
    }
}

/// The ceiling kernel, for the contract test.
pub fn ceiling_kernels() -> Vec<KernelSpec> {
    vec![FMA.spec()]
}

/// Elements the sink of [`fma_ceiling_dispatch`] needs.
pub const FMA_SINK_LEN: usize = (WORKGROUPS * WG_SIZE) as usize;

/// One run of the register-only FMA kernel: `iters` loop iterations of
/// `FLOPS_PER_ITER` FLOPs per invocation, over [`FMA_SINK_LEN`] invocations.
pub fn fma_ceiling_dispatch(ctx: &GpuContext, sink: BufView<'_>, iters: u32) -> Result<Dispatch> {
    sink.expect_len("fma_ceiling", "sink", FMA_SINK_LEN)?;
    let params = Params { iters, seed: 0.5 };
    ctx.dispatch(&FMA, &[], &[sink], &params, Grid::Workgroups([WORKGROUPS, 1, 1]))
}

/// Runs the register-only FMA kernel for about `target_seconds` and returns the
/// best rate seen.
pub fn measure_fma_ceiling(ctx: &GpuContext, target_seconds: f64) -> Result<FmaCeiling> {
    let sink = ctx.zeros(FMA_SINK_LEN);
    let run = |iters: u32| -> Result<f64> {
        let d = fma_ceiling_dispatch(ctx, sink.view(), iters)?;
        ctx.time(&[&d], 1)
    };
    // Calibrate: grow the loop until one dispatch takes ~1/8 of the budget.
    let mut iters = 256u32;
    let mut t = run(iters)?;
    while t < target_seconds / 8.0 && iters < (1 << 26) {
        iters *= 2;
        t = run(iters)?;
    }
    let mut best = t;
    let mut total = t;
    while total < target_seconds {
        let s = run(iters)?;
        best = best.min(s);
        total += s;
    }
    let flops = FLOPS_PER_ITER * iters as f64 * FMA_SINK_LEN as f64;
    Ok(FmaCeiling {
        gflops: flops / best / 1e9,
        seconds: total,
    })
}
