//! The reduce family's table of checked shapes and benchmark cases.

use super::{reference, ReduceOp, Reduction};
use crate::bench::BenchCase;
use crate::check::{Checker, Tolerance};
use crate::error::Result;
use crate::gpu::{BufView, GpuBuffer, GpuContext};
use crate::kernels::testdata::TestRng;

const FAMILY: &str = "reduce";
/// f32 sums: pass 1 adds runs of ≈ elements / 65536 terms in sequence (≤ 512
/// for the largest case), pass 2 up to ≈ 1024 partials in sequence or a tree.
/// The allowance is 2e-7·Σ|x| (≈ 3.4 f32 unit roundoffs of the sum of absolute
/// values) plus 1e-6 relative; random-signed inputs stay well inside it.
const SUM_ERR_PER_ABS: f64 = 2e-7;
/// Σ x² has no cancellation, so its error is relative: 64 terms per invocation,
/// 16 + 16 in the workgroup, then partials/256 per invocation and an 8-level
/// tree bound it by ≈ (64 + 32 + 10 + 8)·2^-24 ≈ 7e-6 for 40M elements.
const SQ_NORM_TOL: Tolerance = Tolerance::new(0.0, 1e-5);

/// `(dims, axes)`: all elements, last axis, all but last (per channel in NHWC),
/// spatial axes, rows, size-1 dims, batch 1, one channel, odd sizes.
fn cases(c: &Checker) -> Vec<(Vec<usize>, Vec<usize>)> {
    let mut v: Vec<(Vec<usize>, Vec<usize>)> = vec![
        (vec![1], vec![0]),
        (vec![7], vec![0]),
        (vec![100_003], vec![0]),
        (vec![3, 5, 7, 13], vec![0, 1, 2, 3]),
        (vec![2, 9, 11, 24], vec![3]),
        (vec![2, 9, 11, 24], vec![0, 1, 2]),
        (vec![4, 8, 8, 97], vec![0, 1, 2]),
        (vec![1, 5, 7, 1], vec![0, 1, 2]),
        (vec![1, 32, 32, 3], vec![0, 1, 2]),
        (vec![3, 7, 5, 13], vec![1, 2]),
        (vec![2, 16, 16, 8], vec![1, 2]),
        (vec![6, 100], vec![1]),
        (vec![5, 1, 1, 3], vec![0]),
        (vec![2, 3, 1, 4], vec![1, 2]),
        (vec![4, 6], vec![]),
    ];
    if c.full() {
        // The largest tensor that fits one storage binding.
        let max = c.ctx.limits.max_storage_buffer_binding_size as usize / 4;
        let big = vec![max / (64 * 64 * 512), 64, 64, 512];
        v.push((big.clone(), vec![0, 1, 2]));
        v.push((big.clone(), vec![0, 1, 2, 3]));
        v.push((big, vec![3]));
    }
    v
}

pub fn check(c: &mut Checker) -> Result<()> {
    check_axes(c)?;
    check_sq_norm(c)
}

fn check_axes(c: &mut Checker) -> Result<()> {
    let mut rng = TestRng::new(31);
    let ctx = c.ctx;
    for (dims, axes) in cases(c) {
        let n: usize = dims.iter().product();
        let x = rng.vec(n, -2.0, 2.0);
        let gx = ctx.upload(&x);
        let abs: Vec<f32> = x.iter().map(|v| v.abs()).collect();
        let abs_sum = reference::reduce(ReduceOp::Sum, &abs, &dims, &axes);
        let max_abs_sum = abs_sum.iter().fold(0f64, |m, &v| m.max(v as f64));
        let count: usize = axes.iter().map(|&a| dims[a]).product();
        for op in [ReduceOp::Sum, ReduceOp::Mean] {
            let plan = Reduction::new(op, &dims, &axes)?;
            let (scratch, y) = (ctx.zeros(plan.scratch_len().max(1)), ctx.zeros(plan.out_len()));
            let ds = plan.dispatches(ctx, gx.view(), scratch.view(), y.view())?;
            ctx.run(&ds.iter().collect::<Vec<_>>())?;
            let want = reference::reduce(op, &x, &dims, &axes);
            let per = if op == ReduceOp::Mean { count as f64 } else { 1.0 };
            let tol = Tolerance::new(SUM_ERR_PER_ABS * max_abs_sum / per, 1e-6);
            let kernel = if op == ReduceOp::Sum { "sum" } else { "mean" };
            let shapes = format!("{dims:?} axes {axes:?} ({} pass)", ds.len());
            c.compare(FAMILY, kernel, &shapes, &ctx.read_f32(&y)?, &want, tol);
        }
    }
    Ok(())
}

/// Runs the global squared norm of `views` and compares with the f64 sum over `data`.
fn compare_sq_norm(c: &mut Checker, shapes: &str, views: &[BufView<'_>], data: &[&[f32]]) -> Result<()> {
    let ctx = c.ctx;
    let scratch = ctx.zeros(super::global_sq_norm_scratch_len(ctx, views)?);
    let out = ctx.upload(&[f32::NAN]);
    let ds = super::global_sq_norm(ctx, views, scratch.view(), out.view())?;
    ctx.run(&ds.iter().collect::<Vec<_>>())?;
    let want = reference::global_sq_norm(data) as f32;
    let shapes = format!("{shapes} ({} dispatches)", ds.len());
    c.compare(
        FAMILY,
        "global_sq_norm",
        &shapes,
        &ctx.read_f32(&out)?,
        &[want],
        SQ_NORM_TOL,
    );
    Ok(())
}

/// `(offset, len)` slices: neighbours (which merge), odd offsets, a gap, one chunk ± 1.
fn slices_of(total: usize, rng: &mut TestRng, count: usize) -> Vec<(usize, usize)> {
    let mut v = vec![(0, 5), (5, 1), (6, 17), (23, 16383), (16_406, 16385)];
    let mut at = 16_406 + 16_385 + 100;
    for _ in 0..count {
        let len = 1 + (rng.next_u64() as usize % (2 * (total - at) / count.max(1)).max(1));
        if at + len > total {
            break;
        }
        v.push((at, len));
        // Occasionally skip a few elements so the next slice does not merge.
        at += len + rng.next_u64().is_multiple_of(3) as usize * 7;
    }
    v
}

fn check_sq_norm(c: &mut Checker) -> Result<()> {
    let ctx = c.ctx;
    let mut rng = TestRng::new(32);
    // Separate buffers of odd sizes.
    let data: Vec<Vec<f32>> = [1usize, 7, 1000, 16384, 16385, 100_003]
        .iter()
        .map(|&n| rng.vec(n, -3.0, 3.0))
        .collect();
    let bufs: Vec<GpuBuffer> = data.iter().map(|d| ctx.upload(d)).collect();
    let views: Vec<BufView> = bufs.iter().map(|b| b.view()).collect();
    let refs: Vec<&[f32]> = data.iter().map(|d| d.as_slice()).collect();
    compare_sq_norm(c, "6 buffers, 133777", &views, &refs)?;
    compare_sq_norm(c, "no tensors", &[], &[])?;

    // Slices of one buffer at any offset; with Full, a buffer past one binding.
    let mut totals = vec![300_001usize];
    if c.full() {
        totals.push(40_000_003);
    }
    for total in totals {
        let data = rng.vec(total, -1.0, 1.0);
        let buf = ctx.upload(&data);
        let slices = slices_of(total, &mut rng, 60);
        let views: Vec<BufView> = slices.iter().map(|&(o, l)| buf.slice(o, l)).collect();
        let refs: Vec<&[f32]> = slices.iter().map(|&(o, l)| &data[o..o + l]).collect();
        let shapes = format!("{} slices of {total}", slices.len());
        compare_sq_norm(c, &shapes, &views, &refs)?;
    }
    Ok(())
}

pub fn bench_cases(ctx: &GpuContext) -> Result<Vec<BenchCase>> {
    let dims = [16usize, 32, 32, 384];
    let n: usize = dims.iter().product();
    let x = ctx.upload(&TestRng::new(33).vec(n, -1.0, 1.0));
    let mut cases = Vec::new();
    for (name, axes) in [
        ("sum per channel", vec![0, 1, 2]),
        ("sum all", vec![0, 1, 2, 3]),
        ("sum last axis", vec![3]),
    ] {
        let plan = Reduction::new(ReduceOp::Sum, &dims, &axes)?;
        let (scratch, y) = (ctx.zeros(plan.scratch_len().max(1)), ctx.zeros(plan.out_len()));
        let ds = plan.dispatches(ctx, x.view(), scratch.view(), y.view())?;
        let bytes = 4.0 * (n + plan.out_len()) as f64;
        cases.push(BenchCase::new(
            name,
            format!("{dims:?}"),
            n as f64,
            bytes,
            ds,
            vec![scratch, y],
        ));
    }
    // A VDVAE-sized gradient: 40M parameters in one buffer as 400 tensors.
    let total = 40_000_000;
    let grads = ctx.upload(&TestRng::new(34).vec(total, -1.0, 1.0));
    let views: Vec<BufView> = (0..400).map(|i| grads.slice(i * total / 400, total / 400)).collect();
    let scratch = ctx.zeros(super::global_sq_norm_scratch_len(ctx, &views)?);
    let out = ctx.zeros(1);
    let ds = super::global_sq_norm(ctx, &views, scratch.view(), out.view())?;
    let shapes = format!("400 slices, {total} ({} dispatches)", ds.len());
    cases.push(BenchCase::new(
        "global_sq_norm",
        shapes,
        2.0 * total as f64,
        4.0 * total as f64,
        ds,
        vec![],
    ));
    // The same sizes as separate buffers: one dispatch per tensor.
    let bufs: Vec<GpuBuffer> = (0..400).map(|_| ctx.zeros(total / 400)).collect();
    let views: Vec<BufView> = bufs.iter().map(|b| b.view()).collect();
    let scratch2 = ctx.zeros(super::global_sq_norm_scratch_len(ctx, &views)?);
    let ds = super::global_sq_norm(ctx, &views, scratch2.view(), out.view())?;
    let shapes = format!("400 buffers, {total} ({} dispatches)", ds.len());
    let mut keep = bufs;
    keep.extend([x, grads, scratch, scratch2, out]);
    cases.push(BenchCase::new(
        "global_sq_norm",
        shapes,
        2.0 * total as f64,
        4.0 * total as f64,
        ds,
        keep,
    ));
    Ok(cases)
}
