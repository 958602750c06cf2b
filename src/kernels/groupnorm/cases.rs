//! The groupnorm family's table of checked shapes and benchmark cases.

use super::{reference, GroupNorm, GroupNormBackward, GroupNormForward, PixelFrame};
use crate::bench::BenchCase;
use crate::check::{Checker, Tolerance};
use crate::error::Result;
use crate::gpu::{GpuBuffer, GpuContext};
use crate::kernels::testdata::TestRng;

const FAMILY: &str = "groupnorm";
const EPS: f32 = 1e-5;
/// Statistics: shifted f32 sums over runs of ≥ 32 rows, then two levels of
/// Chan's update (channels of a split, then splits). Measured within 4e-7 of
/// the f64 values (mean ≈ 1, rstd ≈ 0.9) over the table; allowed 1e-7 + 2e-6·|ref|.
const STATS_TOL: Tolerance = Tolerance::new(1e-7, 2e-6);
/// y = (x − mean)·scale + beta from f32 stats: the stats' error times
/// rstd·gamma ≲ 1.5 plus two roundings of O(1) outputs. Measured ≤ 1.2e-6.
const Y_TOL: Tolerance = Tolerance::new(4e-6, 1e-6);
/// dx = a·dy + b·(x − mean) + e with the group means m1, m2 from f32 sums
/// over ≤ 4096 partials per group. Measured ≤ 1.1e-6 on O(1) values.
const DX_TOL: Tolerance = Tolerance::new(4e-6, 1e-6);
/// dgamma, dbeta: per-channel f32 sums as in the elementwise affine backward,
/// allowed 2e-7·Σ|terms| plus 1e-6 relative.
const SUM_ERR_PER_ABS: f64 = 2e-7;

/// `(shape [N, H, W, C], groups)`: one channel, batch 1, one channel per group,
/// odd group sizes (one channel per invocation) and multiples of 4 (vec4);
/// one-pixel images (the MLP models' layer norm) with groups shorter and longer
/// than a workgroup's 64 invocations.
fn cases(c: &Checker) -> Vec<([usize; 4], usize)> {
    let mut v = vec![
        ([1, 1, 1, 1], 1),
        ([1, 5, 7, 1], 1),
        ([3, 7, 5, 12], 3),
        ([2, 9, 11, 24], 4),
        ([2, 9, 11, 24], 24),
        ([4, 8, 8, 96], 32),
        ([2, 16, 16, 64], 8),
        ([1, 33, 31, 16], 1),
        ([5, 1, 1, 12], 3),
        ([7, 1, 1, 6], 2),
        ([9, 1, 1, 1040], 1),
        ([3, 1, 1, 777], 1),
    ];
    if c.full() {
        // The largest tensor that fits one storage binding.
        let max = c.ctx.limits.max_storage_buffer_binding_size as usize / 4;
        v.push(([max / (64 * 64 * 512), 64, 64, 512], 32));
    }
    v
}

fn shape_str(s: [usize; 4], g: usize) -> String {
    format!("{}x{}x{}x{} G={g}", s[0], s[1], s[2], s[3])
}

fn sum_tolerance(abs_sums: &[f64]) -> Tolerance {
    Tolerance::new(SUM_ERR_PER_ABS * abs_sums.iter().fold(0.0, |m: f64, &v| m.max(v)), 1e-6)
}

pub fn check(c: &mut Checker) -> Result<()> {
    let mut rng = TestRng::new(41);
    for (shape, groups) in cases(c) {
        let gn = GroupNorm::new(shape, groups, EPS)?;
        // One-pixel images: each frame of their kernels.
        let frames: Vec<Option<PixelFrame>> = if shape[1] * shape[2] == 1 {
            PixelFrame::ALL.map(Some).to_vec()
        } else {
            vec![None]
        };
        for pixel_frame in frames {
            let gn = GroupNorm { pixel_frame, ..gn };
            let name = match pixel_frame {
                Some(f) => format!("{} {}", shape_str(shape, groups), f.name()),
                None => shape_str(shape, groups),
            };
            check_one(c, &mut rng, &gn, &name)?;
        }
    }
    Ok(())
}

/// Forward and backward of `gn` against the reference.
fn check_one(c: &mut Checker, rng: &mut TestRng, gn: &GroupNorm, name: &str) -> Result<()> {
    let ctx = c.ctx;
    let (shape, groups) = (gn.shape, gn.groups);
    let (n, ch) = (gn.numel(), shape[3]);
    let name = name.to_string();
    let x = rng.vec(n, -1.0, 3.0);
    let dy = rng.vec(n, -1.0, 1.0);
    let gamma = rng.vec(ch, 0.5, 1.5);
    let beta = rng.vec(ch, -1.0, 1.0);
    let bufs = Buffers::new(ctx, gn, &x, &dy, &gamma, &beta);

    let ds = gn.forward(ctx, &bufs.forward())?;
    ctx.run(&ds.iter().collect::<Vec<_>>())?;
    let (y, mean, rstd) = reference::forward(&x, shape, groups, EPS, &gamma, &beta);
    c.compare(FAMILY, "groupnorm_forward y", &name, &ctx.read_f32(&bufs.y)?, &y, Y_TOL);
    let stats = ctx.read_f32(&bufs.stats)?;
    let (got_mean, got_rstd) = stats.split_at(mean.len());
    c.compare(FAMILY, "groupnorm_forward mean", &name, got_mean, &mean, STATS_TOL);
    c.compare(FAMILY, "groupnorm_forward rstd", &name, got_rstd, &rstd, STATS_TOL);

    let ds = gn.backward(ctx, &bufs.backward())?;
    ctx.run(&ds.iter().collect::<Vec<_>>())?;
    let (dx, dgamma, dbeta) = reference::backward(&x, &dy, shape, groups, EPS, &gamma);
    c.compare(
        FAMILY,
        "groupnorm_backward dx",
        &name,
        &ctx.read_f32(&bufs.dx)?,
        &dx,
        DX_TOL,
    );
    // Σ|dy·xhat| ≤ Σ|dy|·max|xhat|: bound the allowance with per-channel Σ|dy| · 4.
    let mut abs_dy = vec![0f64; ch];
    for (i, &d) in dy.iter().enumerate() {
        abs_dy[i % ch] += d.abs() as f64;
    }
    let tol = sum_tolerance(&abs_dy);
    c.compare(
        FAMILY,
        "groupnorm_backward dbeta",
        &name,
        &ctx.read_f32(&bufs.dbeta)?,
        &dbeta,
        tol,
    );
    let abs_dy_xhat: Vec<f64> = abs_dy.iter().map(|s| 4.0 * s).collect();
    let tol = sum_tolerance(&abs_dy_xhat);
    let got = ctx.read_f32(&bufs.dgamma)?;
    c.compare(FAMILY, "groupnorm_backward dgamma", &name, &got, &dgamma, tol);
    Ok(())
}

/// Every buffer of one forward + backward.
struct Buffers {
    x: GpuBuffer,
    dy: GpuBuffer,
    gamma: GpuBuffer,
    beta: GpuBuffer,
    y: GpuBuffer,
    stats: GpuBuffer,
    dx: GpuBuffer,
    dgamma: GpuBuffer,
    dbeta: GpuBuffer,
    scratch: GpuBuffer,
}

impl Buffers {
    fn new(ctx: &GpuContext, gn: &GroupNorm, x: &[f32], dy: &[f32], gamma: &[f32], beta: &[f32]) -> Buffers {
        Buffers {
            x: ctx.upload(x),
            dy: ctx.upload(dy),
            gamma: ctx.upload(gamma),
            beta: ctx.upload(beta),
            y: ctx.zeros(x.len()),
            stats: ctx.zeros(gn.stats_len()),
            dx: ctx.zeros(x.len()),
            dgamma: ctx.zeros(gamma.len()),
            dbeta: ctx.zeros(gamma.len()),
            scratch: ctx.zeros(gn.scratch_len(ctx)),
        }
    }

    fn forward(&self) -> GroupNormForward<'_> {
        GroupNormForward {
            x: self.x.view(),
            gamma: self.gamma.view(),
            beta: self.beta.view(),
            y: self.y.view(),
            stats: self.stats.view(),
            scratch: self.scratch.view(),
        }
    }

    fn backward(&self) -> GroupNormBackward<'_> {
        GroupNormBackward {
            x: self.x.view(),
            dy: self.dy.view(),
            gamma: self.gamma.view(),
            stats: self.stats.view(),
            dx: self.dx.view(),
            dgamma: self.dgamma.view(),
            dbeta: self.dbeta.view(),
            scratch: self.scratch.view(),
        }
    }
}

pub fn bench_cases(ctx: &GpuContext) -> Result<Vec<BenchCase>> {
    let (shape, groups) = ([16usize, 32, 32, 384], 32);
    let gn = GroupNorm::new(shape, groups, EPS)?;
    let n = gn.numel();
    let mut rng = TestRng::new(42);
    let (x, dy) = (rng.vec(n, -1.0, 3.0), rng.vec(n, -1.0, 1.0));
    let (gamma, beta) = (rng.vec(shape[3], 0.5, 1.5), rng.vec(shape[3], -1.0, 1.0));
    let bufs = Buffers::new(ctx, &gn, &x, &dy, &gamma, &beta);
    let fwd = gn.forward(ctx, &bufs.forward())?;
    let bwd = gn.backward(ctx, &bufs.backward())?;
    let name = shape_str(shape, groups);
    let keep = vec![
        bufs.x,
        bufs.dy,
        bufs.gamma,
        bufs.beta,
        bufs.y,
        bufs.stats,
        bufs.dx,
        bufs.dgamma,
        bufs.dbeta,
        bufs.scratch,
    ];
    Ok(vec![
        // Forward: read x twice, write y.
        BenchCase::new("groupnorm_forward", &name, 8.0 * n as f64, 12.0 * n as f64, fwd, vec![]),
        // Backward: read x, dy twice, write dx.
        BenchCase::new("groupnorm_backward", &name, 12.0 * n as f64, 20.0 * n as f64, bwd, keep),
    ])
}
