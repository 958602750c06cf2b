//! The resample family's table of checked shapes and benchmark cases.

use super::reference;
use crate::bench::BenchCase;
use crate::check::{Checker, Tolerance};
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::kernels::testdata::TestRng;

const FAMILY: &str = "resample";
/// A block sum is k² − 1 f32 adds (then one multiply by 1/k²): error ≤ k²·u·Σ|x|
/// over the block. Inputs are in [−2, 2] and k ≤ 4: about 16 · 6e-8 · 32 / 16 per
/// average, so 2e-6 absolute for sums of up to 16 terms of size ≤ 2.
const BLOCK_SUM_TOL: Tolerance = Tolerance::new(2e-6, 1e-6);
/// dy · (1/k²): exact for k a power of two, else two roundings (≤ 2 ulp).
const SCALED_COPY_TOL: Tolerance = Tolerance::new(0.0, 2.5e-7);

/// `(x shape [N, H, W, C] of the big tensor, k)`: non-tile sizes, batch 1, one
/// channel, k from 1 to 4 (4x4 → 1x1 as in VDVAE's `4d4`).
fn cases(c: &Checker) -> Vec<([usize; 4], usize)> {
    let mut v = vec![
        ([1, 1, 1, 1], 1),
        ([1, 4, 4, 1], 2),
        ([3, 6, 9, 5], 3),
        ([2, 8, 8, 7], 4),
        ([1, 4, 4, 3], 4),
        ([2, 32, 32, 17], 2),
        ([4, 16, 16, 64], 2),
    ];
    if c.full() {
        // The largest big tensor that fits one storage binding.
        let max = c.ctx.limits.max_storage_buffer_binding_size as usize / 4;
        v.push(([max / (64 * 64 * 512), 64, 64, 512], 2));
    }
    v
}

fn shape_str(s: [usize; 4]) -> String {
    format!("{}x{}x{}x{}", s[0], s[1], s[2], s[3])
}

pub fn check(c: &mut Checker) -> Result<()> {
    let mut rng = TestRng::new(21);
    let ctx = c.ctx;
    for (big, k) in cases(c) {
        let small = super::pooled_shape("resample check", big, k)?;
        let (nb, ns) = (big.iter().product::<usize>(), small.iter().product::<usize>());
        let name = format!("{} k={k}", shape_str(big));
        let x_big = rng.vec(nb, -2.0, 2.0);
        let x_small = rng.vec(ns, -2.0, 2.0);
        let (g_big, g_small) = (ctx.upload(&x_big), ctx.upload(&x_small));
        let (out_big, out_small) = (ctx.zeros(nb), ctx.zeros(ns));

        ctx.run(&[&super::avg_pool(ctx, g_big.view(), big, k, out_small.view())?])?;
        let want = reference::avg_pool(&x_big, big, k);
        c.compare(
            FAMILY,
            "avg_pool",
            &name,
            &ctx.read_f32(&out_small)?,
            &want,
            BLOCK_SUM_TOL,
        );

        ctx.run(&[&super::avg_pool_backward(ctx, g_small.view(), big, k, out_big.view())?])?;
        let want = reference::avg_pool_backward(&x_small, big, k);
        c.compare(
            FAMILY,
            "avg_pool_backward",
            &name,
            &ctx.read_f32(&out_big)?,
            &want,
            SCALED_COPY_TOL,
        );

        ctx.run(&[&super::upsample_nearest(ctx, g_small.view(), small, k, out_big.view())?])?;
        let want = reference::upsample_nearest(&x_small, small, k);
        c.compare(
            FAMILY,
            "upsample_nearest",
            &name,
            &ctx.read_f32(&out_big)?,
            &want,
            Tolerance::EXACT,
        );

        ctx.run(&[&super::upsample_nearest_backward(
            ctx,
            g_big.view(),
            small,
            k,
            out_small.view(),
        )?])?;
        let want = reference::upsample_nearest_backward(&x_big, small, k);
        let got = ctx.read_f32(&out_small)?;
        c.compare(FAMILY, "upsample_nearest_backward", &name, &got, &want, BLOCK_SUM_TOL);
    }
    Ok(())
}

pub fn bench_cases(ctx: &GpuContext) -> Result<Vec<BenchCase>> {
    let (big, k) = ([16usize, 32, 32, 384], 2);
    let small = super::pooled_shape("resample bench", big, k)?;
    let (nb, ns) = (big.iter().product::<usize>(), small.iter().product::<usize>());
    let mut rng = TestRng::new(22);
    let (xb, xs) = (ctx.upload(&rng.vec(nb, -1.0, 1.0)), ctx.upload(&rng.vec(ns, -1.0, 1.0)));
    let (yb, ys) = (ctx.zeros(nb), ctx.zeros(ns));
    let bytes = 4.0 * (nb + ns) as f64;
    let name = format!("{} k={k}", shape_str(big));
    let pool = super::avg_pool(ctx, xb.view(), big, k, ys.view())?;
    let pool_bwd = super::avg_pool_backward(ctx, xs.view(), big, k, yb.view())?;
    let up = super::upsample_nearest(ctx, xs.view(), small, k, yb.view())?;
    let up_bwd = super::upsample_nearest_backward(ctx, xb.view(), small, k, ys.view())?;
    Ok(vec![
        BenchCase::new("avg_pool", &name, nb as f64, bytes, vec![pool], vec![]),
        BenchCase::new("avg_pool_backward", &name, nb as f64, bytes, vec![pool_bwd], vec![]),
        BenchCase::new("upsample_nearest", &name, 0.0, bytes, vec![up], vec![]),
        BenchCase::new(
            "upsample_nearest_backward",
            &name,
            nb as f64,
            bytes,
            vec![up_bwd],
            vec![xb, xs, yb, ys],
        ),
    ])
}
