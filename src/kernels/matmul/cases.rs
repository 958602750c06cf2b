//! The matmul family's table of checked shapes and benchmark cases.

use super::{reference, MatmulDispatch, MatmulPath, MatmulShape};
use crate::bench::BenchCase;
use crate::check::{Checker, Tolerance};
use crate::error::Result;
use crate::gpu::{BufView, Dispatch, GpuContext};
use crate::kernels::testdata::TestRng;

const FAMILY: &str = "matmul";

/// Inputs are uniform in [-1, 1]. f32 accumulation of K products errs by at most
/// ~K·2⁻²⁴·Σ|terms| in any summation order, typically ~sqrt(K)·2⁻²⁴·Σ|terms|,
/// and Σ|terms| ≈ K/4 here. An absolute allowance of 2e-6·K (≈ 34 ulp of the
/// sum of |terms|, far above the typical sqrt(K) error) plus a relative 1e-5
/// covers every order with margin and still catches a missing or doubled term
/// (an error of ~0.25).
fn tolerance(k: usize) -> Tolerance {
    Tolerance::new(2e-6 * k as f64 + 1e-6, 1e-5)
}

type MatmulFn =
    fn(&GpuContext, &MatmulShape, f32, f32, BufView<'_>, BufView<'_>, BufView<'_>) -> Result<MatmulDispatch>;

fn single(d: Dispatch) -> MatmulDispatch {
    MatmulDispatch {
        dispatches: vec![d],
        scratch: None,
    }
}

/// A kernel of one dispatch as a [`MatmulFn`].
macro_rules! one_dispatch {
    ($kernel:path) => {
        |ctx: &GpuContext, s: &MatmulShape, al: f32, be: f32, a: BufView<'_>, b: BufView<'_>, c: BufView<'_>| {
            $kernel(ctx, s, al, be, a, b, c).map(single)
        }
    };
}

const NAIVE: MatmulFn = one_dispatch!(super::matmul_naive);
const TILED: MatmulFn = one_dispatch!(super::matmul_tiled);
const WORKGROUP: MatmulFn = one_dispatch!(super::matmul_workgroup);

/// v3 with its own scratch (fails where the adapter lacks 8-lane subgroups).
const PACKED: MatmulFn =
    |ctx: &GpuContext, s: &MatmulShape, al: f32, be: f32, a: BufView<'_>, b: BufView<'_>, c: BufView<'_>| {
        MatmulPath::Packed.with_own_scratch(ctx, s, al, be, a, b, c)
    };

/// (batch, M, K, N, A broadcast, B broadcast): sizes that are not multiples of
/// any tile, batch 1, single rows/columns, broadcast (shared) operands.
const SHAPES: &[(usize, usize, usize, usize, bool, bool)] = &[
    (1, 1, 1, 1, false, false),
    (1, 3, 17, 33, false, false),
    (1, 65, 127, 1, false, false),
    (1, 1, 33, 127, false, false),
    (3, 17, 65, 33, false, false),
    (2, 33, 40, 65, true, false),
    (2, 127, 33, 17, false, true),
    (1, 64, 64, 64, false, false),
    (2, 128, 96, 64, false, true),
];

#[allow(clippy::too_many_arguments)]
fn case(
    c: &mut Checker,
    rng: &mut TestRng,
    name: &str,
    f: MatmulFn,
    shape: MatmulShape,
    alpha: f32,
    beta: f32,
) -> Result<()> {
    let (la, lb, lc) = shape.lens();
    let a = rng.vec(la, -1.0, 1.0);
    let b = rng.vec(lb, -1.0, 1.0);
    // With beta == 0 the old C must be ignored, even NaN.
    let c0 = if beta == 0.0 {
        vec![f32::NAN; lc]
    } else {
        rng.vec(lc, -1.0, 1.0)
    };
    let (ga, gb, gc) = (c.ctx.upload(&a), c.ctx.upload(&b), c.ctx.upload(&c0));
    let d = f(c.ctx, &shape, alpha, beta, ga.view(), gb.view(), gc.view())?;
    c.ctx.run(&d.refs())?;
    let mut want = c0;
    reference::matmul(&shape, alpha, beta, &a, &b, &mut want);
    let label = format!("{} α={alpha} β={beta}", shape.label());
    c.compare(FAMILY, name, &label, &c.ctx.read_f32(&gc)?, &want, tolerance(shape.k));
    Ok(())
}

pub fn check(c: &mut Checker) -> Result<()> {
    let mut kernels: Vec<(&str, MatmulFn)> = vec![
        ("matmul_naive", NAIVE),
        ("matmul_tiled", TILED),
        ("matmul_workgroup", WORKGROUP),
    ];
    if super::packed_supported(c.ctx) {
        kernels.push(("matmul_packed", PACKED));
    } else {
        let why = format!(
            "needs subgroups of exactly 8 lanes; this adapter's are {}",
            c.subgroups()
        );
        c.skip(FAMILY, "matmul_packed", why);
    }
    let mut rng = TestRng::new(7);
    for &(batch, m, k, n, bcast_a, bcast_b) in SHAPES {
        let s = MatmulShape::new(batch, m, k, n);
        let s = s.batch_strides(
            if bcast_a { 0 } else { s.batch_stride_a },
            if bcast_b { 0 } else { s.batch_stride_b },
            s.batch_stride_c,
        );
        for &(name, f) in &kernels {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                case(c, &mut rng, name, f, s.transposes(ta, tb), 1.0, 0.0)?;
            }
            // alpha/beta other than the defaults (accumulating into C, as gradients do).
            case(c, &mut rng, name, f, s, -0.75, 1.0)?;
            case(c, &mut rng, name, f, s.transposes(true, true), 1.5, 0.5)?;
        }
    }
    if c.full() {
        // One large case per kernel family member that is quick at this size.
        let big = MatmulShape::new(1, 512, 512, 512);
        case(c, &mut rng, "matmul", super::matmul, big, 1.0, 0.0)?;
        case(
            c,
            &mut rng,
            "matmul",
            super::matmul,
            big.transposes(true, true),
            0.5,
            1.0,
        )?;
        case(
            c,
            &mut rng,
            "matmul_tiled",
            TILED,
            big.transposes(false, true),
            1.0,
            0.0,
        )?;
    }
    Ok(())
}

fn bench_case(ctx: &GpuContext, name: &str, shape: MatmulShape, f: MatmulFn) -> Result<BenchCase> {
    let (la, lb, lc) = shape.lens();
    let mut rng = TestRng::new(11);
    let a = ctx.upload(&rng.vec(la, -1.0, 1.0));
    let b = ctx.upload(&rng.vec(lb, -1.0, 1.0));
    let c = ctx.zeros(lc);
    let d = f(ctx, &shape, 1.0, 0.0, a.view(), b.view(), c.view())?;
    let mut buffers = vec![a, b, c];
    buffers.extend(d.scratch);
    Ok(BenchCase::new(
        name,
        shape.label(),
        shape.flops(),
        shape.bytes(0.0),
        d.dispatches,
        buffers,
    ))
}

pub fn bench_cases(ctx: &GpuContext) -> Result<Vec<BenchCase>> {
    let n = 1024;
    let mut cases = Vec::new();
    for (ta, tb, op) in [
        (false, false, ""),
        (true, false, " AᵀB"),
        (false, true, " ABᵀ"),
        (true, true, " AᵀBᵀ"),
    ] {
        let s = MatmulShape::new(1, n, n, n).transposes(ta, tb);
        cases.push(bench_case(ctx, &format!("matmul {n}x{n}x{n}{op}"), s, super::matmul)?);
    }
    let s = MatmulShape::new(1, n, n, n);
    cases.push(bench_case(ctx, &format!("matmul_tiled {n}x{n}x{n}"), s, TILED)?);
    cases.push(bench_case(ctx, &format!("matmul_workgroup {n}x{n}x{n}"), s, WORKGROUP)?);
    let s = MatmulShape::new(1, 256, 256, 256);
    cases.push(bench_case(ctx, "matmul_naive 256x256x256", s, NAIVE)?);
    // A VDVAE-shaped product: a 1x1 conv of 16x32x32 pixels, 384 -> 96 channels.
    let s = MatmulShape::new(1, 16 * 32 * 32, 384, 96);
    cases.push(bench_case(ctx, "matmul 16384x384x96", s, super::matmul)?);
    Ok(cases)
}
