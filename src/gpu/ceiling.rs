//! The adapter's measured arithmetic ceiling: benchmarks report every kernel as
//! a fraction of it, so figures compare across machines.

use super::{Access, GpuContext, Kernel};
use crate::error::Result;

const FMA: Kernel = Kernel::portable(
    "fma_ceiling",
    &[include_str!("../../shaders/fma_ceiling.wgsl")],
    "main",
    &[Access::ReadWrite, Access::Uniform],
);

const WORKGROUPS: u32 = 256;
const WG_SIZE: u32 = 64;
/// FLOPs per loop iteration per invocation: 8 vec4 FMAs.
const FLOPS_PER_ITER: f64 = 8.0 * 4.0 * 2.0;

#[derive(Clone, Copy, Debug)]
pub struct FmaCeiling {
    pub gflops: f64,
    pub seconds: f64,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    iters: u32,
    seed: f32,
}

/// Runs the register-only FMA kernel for about `target_seconds` and returns the
/// best rate seen.
pub fn measure_fma_ceiling(ctx: &GpuContext, target_seconds: f64) -> Result<FmaCeiling> {
    let sink = ctx.zeros((WORKGROUPS * WG_SIZE) as usize);
    let run = |iters: u32| -> Result<f64> {
        let params = Params { iters, seed: 0.5 };
        let d = ctx.dispatch(
            &FMA,
            &[],
            &[sink.view()],
            bytemuck::bytes_of(&params),
            [WORKGROUPS, 1, 1],
        )?;
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
    let flops = FLOPS_PER_ITER * iters as f64 * (WORKGROUPS * WG_SIZE) as f64;
    Ok(FmaCeiling {
        gflops: flops / best / 1e9,
        seconds: total,
    })
}
