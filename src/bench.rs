//! Kernel benchmarks: each family offers cases; the runner times them and
//! reports GFLOP/s, GB/s and the ratio to the FMA ceiling measured in the same run.

use crate::error::Result;
use crate::gpu::{measure_fma_ceiling, Dispatch, GpuBuffer, GpuContext};

/// One benchmarked unit of work: the dispatches of one kernel call (or of a
/// group, e.g. conv forward + both backward kernels) with its FLOPs and bytes.
pub struct BenchCase {
    pub name: String,
    pub shapes: String,
    pub flops: f64,
    /// Bytes a perfect kernel must move (each input read once, output written once).
    pub bytes: f64,
    pub dispatches: Vec<Dispatch>,
    /// Buffers the dispatches bind; kept alive for the run.
    pub buffers: Vec<GpuBuffer>,
}

impl BenchCase {
    pub fn new(
        name: impl Into<String>,
        shapes: impl Into<String>,
        flops: f64,
        bytes: f64,
        dispatches: Vec<Dispatch>,
        buffers: Vec<GpuBuffer>,
    ) -> BenchCase {
        BenchCase {
            name: name.into(),
            shapes: shapes.into(),
            flops,
            bytes,
            dispatches,
            buffers,
        }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchResult {
    pub name: String,
    pub shapes: String,
    pub seconds: f64,
    pub gflops: f64,
    pub gbytes_per_s: f64,
    /// The FMA ceiling (GFLOP/s) the ratio divides by.
    pub ceiling_gflops: f64,
    /// GFLOP/s as a fraction of that ceiling.
    pub ceiling_ratio: f64,
}

/// Times a case: warm-up, then enough repetitions (one submit) for ~`budget`/3
/// seconds; best of 3. The FMA ceiling is measured right before and right after
/// the case; the result carries the higher of the two (callers comparing many
/// cases divide by the highest ceiling of the whole run).
pub fn run_case(ctx: &GpuContext, case: &BenchCase, budget: f64) -> Result<BenchResult> {
    let before = measure_fma_ceiling(ctx, budget / 4.0)?.gflops;
    let best = time_dispatches(ctx, &case.dispatches, budget / 3.0, 3)?;
    let after = measure_fma_ceiling(ctx, budget / 4.0)?.gflops;
    let ceiling_gflops = before.max(after);
    let gflops = case.flops / best / 1e9;
    Ok(BenchResult {
        name: case.name.clone(),
        shapes: case.shapes.clone(),
        seconds: best,
        gflops,
        gbytes_per_s: case.bytes / best / 1e9,
        ceiling_gflops,
        ceiling_ratio: gflops / ceiling_gflops,
    })
}

/// Seconds per run of `dispatches`: one run to warm up (pipelines compile,
/// caches fill), then the best of `tries` submits of as many runs as fill
/// about `per_try` seconds (at least one, at most 1000). The runs per submit
/// come from a second, warm run: counted from the first, a compile there left
/// a small kernel one run per submit, and the submit's own cost (several times
/// the kernel's) was timed as the kernel's.
pub fn time_dispatches(ctx: &GpuContext, dispatches: &[Dispatch], per_try: f64, tries: usize) -> Result<f64> {
    let ds: Vec<&Dispatch> = dispatches.iter().collect();
    ctx.time(&ds, 1)?;
    let once = ctx.time(&ds, 1)?;
    let reps = ((per_try / once.max(1e-6)) as usize).clamp(1, 1000);
    let mut best = f64::INFINITY;
    for _ in 0..tries.max(1) {
        best = best.min(ctx.time(&ds, reps)?);
    }
    Ok(best)
}
