//! The reparam_kl family's table of checked shapes and benchmark cases.

use super::reference::{self, LatentsRef};
use super::{Latents, Posterior, Reparam, ZMode};
use crate::bench::BenchCase;
use crate::check::{Checker, Tolerance};
use crate::error::Result;
use crate::gpu::{GpuBuffer, GpuContext};
use crate::kernels::rng::RngKey;
use crate::kernels::testdata::TestRng;

const FAMILY: &str = "reparam_kl";
/// z = mu + exp(logsig) * eps: the GPU normal is within 1e-6 (+1e-6 relative) of the
/// f64 Box-Muller (rng family), scaled by sigma <= e; plus a few ulp of exp.
const Z_TOL: Tolerance = Tolerance::new(1e-5, 1e-5);
/// KL: a sum of terms up to ~|logsig| + exp(2 (lq - lp)) <= e^7, each a few f32 ulp
/// (exp on the GPU a few ulp); near-zero KLs cancel, hence the absolute part.
const KL_TOL: Tolerance = Tolerance::new(2e-5, 2e-5);
/// Gradients: products of the same exps with dz, dkl in [-1, 1] (and eps for logsig_q).
const GRAD_TOL: Tolerance = Tolerance::new(2e-5, 2e-5);
/// Log ratio -eps²/2 - lq + t²/2 + lp with t = (z - mu_p)/sig_p of order 10²:
/// the GPU's eps is within 1e-6 (+1e-6 relative) of the f64 one and enters t
/// scaled by sig_q/sig_p <= e^3.5, so t²/2 moves by up to ~1e-4 relative to
/// itself; near-zero ratios (q close to p) cancel, hence the absolute part.
const LOG_RATIO_TOL: Tolerance = Tolerance::new(1e-4, 1e-4);

/// Latent logsigmas as the networks produce them; keeps exp(2 (lq - lp)) <= e^7.
const LOGSIG_RANGE: (f32, f32) = (-2.5, 1.0);

struct Level {
    q_mu: Vec<f32>,
    q_logsig: Vec<f32>,
    p_mu: Vec<f32>,
    p_logsig: Vec<f32>,
}

impl Level {
    fn random(rng: &mut TestRng, n: usize) -> Level {
        let (lo, hi) = LOGSIG_RANGE;
        Level {
            q_mu: rng.vec(n, -2.0, 2.0),
            q_logsig: rng.vec(n, lo, hi),
            p_mu: rng.vec(n, -2.0, 2.0),
            p_logsig: rng.vec(n, lo, hi),
        }
    }

    fn slices(&self) -> LatentsRef<'_> {
        LatentsRef {
            q_mu: &self.q_mu,
            q_logsig: &self.q_logsig,
            p_mu: &self.p_mu,
            p_logsig: &self.p_logsig,
        }
    }
}

/// Four GPU buffers of one level (inputs or gradients).
struct LevelBuffers([GpuBuffer; 4]);

impl LevelBuffers {
    fn upload(ctx: &GpuContext, l: &Level) -> LevelBuffers {
        LevelBuffers([&l.q_mu, &l.q_logsig, &l.p_mu, &l.p_logsig].map(|v| ctx.upload(v)))
    }

    fn zeros(ctx: &GpuContext, n: usize) -> LevelBuffers {
        LevelBuffers([0; 4].map(|_| ctx.zeros(n)))
    }

    fn views(&self) -> Latents<'_> {
        let [a, b, c, d] = &self.0;
        Latents {
            q_mu: a.view(),
            q_logsig: b.view(),
            p_mu: c.view(),
            p_logsig: d.view(),
        }
    }
}

fn mode_name(cfg: &Reparam) -> &'static str {
    match (cfg.posterior, cfg.mode) {
        (Posterior::Direct, ZMode::Sample) => "",
        (Posterior::Direct, ZMode::Mean) => "mean",
        (Posterior::Ladder, ZMode::Sample) => "ladder",
        (Posterior::Ladder, ZMode::Mean) => "ladder mean",
        (Posterior::Direct, ZMode::Importance) => "importance",
        (Posterior::Ladder, ZMode::Importance) => "ladder importance",
    }
}

/// Forward and backward of one configuration on one shape against the reference.
fn check_level(c: &mut Checker, cfg: &Reparam, shape: [usize; 4], dkl_scalar: bool, seed: u64) -> Result<()> {
    let n: usize = shape.iter().product();
    let mut rng = TestRng::new(seed);
    let level = Level::random(&mut rng, n);
    let mut parts = vec![format!("{}x{}x{}x{}", shape[0], shape[1], shape[2], shape[3])];
    parts.extend([mode_name(cfg), if dkl_scalar { "dkl scalar" } else { "" }].map(String::from));
    parts.retain(|p| !p.is_empty());
    let shapes = &parts.join(" ");
    let ctx = c.ctx;
    let inputs = LevelBuffers::upload(ctx, &level);

    let (z, kl) = (ctx.zeros(n), ctx.zeros(n));
    ctx.run(&[&super::forward(ctx, cfg, &inputs.views(), z.view(), kl.view())?])?;
    let (z_ref, kl_ref) = reference::forward(cfg, &level.slices());
    let kernel = match cfg.posterior {
        Posterior::Direct => "reparam_kl_forward",
        Posterior::Ladder => "ladder_forward",
    };
    c.compare(
        FAMILY,
        &format!("{kernel} z"),
        shapes,
        &ctx.read_f32(&z)?,
        &z_ref,
        Z_TOL,
    );
    drop(z_ref);
    let (second, tol) = match cfg.mode {
        ZMode::Importance => ("log_ratio", LOG_RATIO_TOL),
        ZMode::Sample | ZMode::Mean => ("kl", KL_TOL),
    };
    let kernel_kl = format!("{kernel} {second}");
    c.compare(FAMILY, &kernel_kl, shapes, &ctx.read_f32(&kl)?, &kl_ref, tol);
    drop((z, kl, kl_ref));
    if cfg.mode == ZMode::Importance {
        return Ok(()); // forward only
    }

    let dz = rng.vec(n, -1.0, 1.0);
    let dkl = rng.vec(if dkl_scalar { 1 } else { n }, -1.0, 1.0);
    let (gdz, gdkl) = (ctx.upload(&dz), ctx.upload(&dkl));
    let grads = LevelBuffers::zeros(ctx, n);
    let d = super::backward(ctx, cfg, &inputs.views(), gdz.view(), gdkl.view(), &grads.views())?;
    ctx.run(&[&d])?;
    let want = reference::backward(cfg, &level.slices(), &dz, &dkl);
    let kernel = match cfg.posterior {
        Posterior::Direct => "reparam_kl_backward",
        Posterior::Ladder => "ladder_backward",
    };
    let wants = [&want.q_mu, &want.q_logsig, &want.p_mu, &want.p_logsig];
    for ((name, buf), want) in ["dq_mu", "dq_logsig", "dp_mu", "dp_logsig"]
        .iter()
        .zip(&grads.0)
        .zip(wants)
    {
        c.compare(
            FAMILY,
            &format!("{kernel} {name}"),
            shapes,
            &ctx.read_f32(buf)?,
            want,
            GRAD_TOL,
        );
    }
    Ok(())
}

fn check_prior(c: &mut Checker, shape: [usize; 4], temperature: f32, seed: u64) -> Result<()> {
    let n: usize = shape.iter().product();
    let mut rng = TestRng::new(seed);
    let (mu, logsig) = (rng.vec(n, -2.0, 2.0), rng.vec(n, LOGSIG_RANGE.0, LOGSIG_RANGE.1));
    let key = RngKey::new(seed, 11, 5);
    let (gmu, glogsig, z) = (c.ctx.upload(&mu), c.ctx.upload(&logsig), c.ctx.zeros(n));
    let d = super::prior_sample(c.ctx, key, temperature, gmu.view(), glogsig.view(), z.view())?;
    c.ctx.run(&[&d])?;
    let want = reference::prior_sample(key, temperature, &mu, &logsig);
    let shapes = format!("{}x{}x{}x{} t={temperature}", shape[0], shape[1], shape[2], shape[3]);
    c.compare(FAMILY, "prior_sample", &shapes, &c.ctx.read_f32(&z)?, &want, Z_TOL);
    Ok(())
}

pub fn check(c: &mut Checker) -> Result<()> {
    // [N, H, W, zdim]: a single element, batch 1 with one channel, odd sizes, VDVAE-like.
    let shapes = [[1, 1, 1, 1], [1, 5, 7, 1], [3, 5, 7, 3], [2, 8, 8, 16], [4, 33, 31, 16]];
    let configs = [
        (Posterior::Direct, ZMode::Sample),
        (Posterior::Direct, ZMode::Mean),
        (Posterior::Ladder, ZMode::Sample),
        (Posterior::Ladder, ZMode::Mean),
        (Posterior::Direct, ZMode::Importance),
        (Posterior::Ladder, ZMode::Importance),
    ];
    for (s, &shape) in shapes.iter().enumerate() {
        for (k, &(posterior, mode)) in configs.iter().enumerate() {
            let cfg = Reparam {
                posterior,
                mode,
                key: RngKey::new(1000 + s as u64, 3, k as u32),
            };
            check_level(c, &cfg, shape, false, (10 * s + k) as u64)?;
        }
        let cfg = Reparam::sampled(RngKey::new(7, 1 << 40, s as u32));
        check_level(c, &cfg, shape, true, 100 + s as u64)?;
    }
    for (i, t) in [1.0f32, 0.6, 0.0].into_iter().enumerate() {
        check_prior(c, [3, 5, 7, 3], t, 200 + i as u64)?;
    }
    // Packed: (rows, zdim, prior channels beyond 2·zdim).
    for (i, &(rows, zdim, extra)) in [(1, 1, 0), (35, 3, 5), (128, 16, 96)].iter().enumerate() {
        for mode in [ZMode::Sample, ZMode::Mean, ZMode::Importance] {
            let cfg = Reparam {
                posterior: Posterior::Direct,
                mode,
                key: RngKey::new(400 + i as u64, 9, 2),
            };
            check_packed(c, &cfg, rows, zdim, extra, 400 + i as u64)?;
        }
    }
    for (i, &(rows, zdim)) in [(1, 1), (35, 3), (128, 16)].iter().enumerate() {
        check_merge(c, rows, zdim, 500 + i as u64)?;
    }
    if c.full() {
        // The largest tensor that fits one storage binding.
        let n = c.ctx.limits.max_storage_buffer_binding_size as usize / 4;
        let cfg = Reparam::sampled(RngKey::new(0xDEAD_BEEF, 12345, 77));
        check_level(c, &cfg, [1, 1, 1, n], false, 300)?;
    }
    Ok(())
}

pub fn bench_cases(ctx: &GpuContext) -> Result<Vec<BenchCase>> {
    // One VDVAE level at 32x32: batch 16, zdim 16.
    let shape = "16x32x32x16";
    let n = 16 * 32 * 32 * 16;
    let level = Level::random(&mut TestRng::new(9), n);
    let cfg = Reparam::sampled(RngKey::new(1, 2, 3));
    let fwd_in = LevelBuffers::upload(ctx, &level);
    let (z, kl) = (ctx.zeros(n), ctx.zeros(n));
    let fwd = super::forward(ctx, &cfg, &fwd_in.views(), z.view(), kl.view())?;

    let bwd_in = LevelBuffers::upload(ctx, &level);
    let (dz, dkl) = (ctx.upload(&vec![1.0f32; n]), ctx.upload(&vec![0.5f32; n]));
    let grads = LevelBuffers::zeros(ctx, n);
    let bwd = super::backward(ctx, &cfg, &bwd_in.views(), dz.view(), dkl.view(), &grads.views())?;

    let mut fwd_buffers: Vec<GpuBuffer> = fwd_in.0.into();
    fwd_buffers.extend([z, kl]);
    let mut bwd_buffers: Vec<GpuBuffer> = bwd_in.0.into();
    bwd_buffers.extend([dz, dkl]);
    bwd_buffers.extend(grads.0);
    let n = n as f64;
    Ok(vec![
        BenchCase::new(
            "reparam_kl_forward",
            shape,
            super::FORWARD_FLOPS_PER_ELEMENT * n,
            super::FORWARD_BYTES_PER_ELEMENT * n,
            vec![fwd],
            fwd_buffers,
        ),
        BenchCase::new(
            "reparam_kl_backward",
            shape,
            super::BACKWARD_FLOPS_PER_ELEMENT * n,
            super::BACKWARD_BYTES_PER_ELEMENT * n,
            vec![bwd],
            bwd_buffers,
        ),
    ])
}

/// Rows of `a` (`wa` channels) and `b` (`wb` channels) side by side.
fn interleave(a: &[f32], wa: usize, b: &[f32], wb: usize) -> Vec<f32> {
    a.chunks(wa)
        .zip(b.chunks(wb))
        .flat_map(|(x, y)| x.iter().chain(y).copied())
        .collect()
}

/// The packed kernels read (mu, logsig) from the blocks' outputs in place:
/// they must give what the unpacked reference gives on the sliced inputs.
fn check_packed(c: &mut Checker, cfg: &Reparam, rows: usize, zdim: usize, extra: usize, seed: u64) -> Result<()> {
    let ctx = c.ctx;
    let mut rng = TestRng::new(seed);
    let n = rows * zdim;
    let l = Level::random(&mut rng, n);
    let xpp = rng.vec(rows * extra.max(1), -1.0, 1.0);
    let q = interleave(&l.q_mu, zdim, &l.q_logsig, zdim);
    let p_mu_logsig = interleave(&l.p_mu, zdim, &l.p_logsig, zdim);
    let p = if extra == 0 {
        p_mu_logsig
    } else {
        interleave(&p_mu_logsig, 2 * zdim, &xpp, extra)
    };
    let (qb, pb) = (ctx.upload(&q), ctx.upload(&p));
    let packed = super::Packed {
        zdim,
        q: qb.view(),
        p: pb.view(),
        p_channels: 2 * zdim + extra,
    };
    let shapes = format!("{rows} rows, zdim {zdim}, prior +{extra} channels, {:?}", cfg.mode);
    let (want_z, want_kl) = reference::forward(cfg, &l.slices());
    let (z, kl, stash) = (ctx.zeros(n), ctx.zeros(n), ctx.zeros(2 * n));
    ctx.run(&[&super::forward_packed(
        ctx,
        cfg,
        &packed,
        z.view(),
        kl.view(),
        stash.view(),
    )?])?;
    c.compare(FAMILY, "forward_packed z", &shapes, &ctx.read_f32(&z)?, &want_z, Z_TOL);
    let (second, tol) = match cfg.mode {
        ZMode::Importance => ("forward_packed log_ratio", LOG_RATIO_TOL),
        ZMode::Sample | ZMode::Mean => ("forward_packed kl", KL_TOL),
    };
    c.compare(FAMILY, second, &shapes, &ctx.read_f32(&kl)?, &want_kl, tol);
    let want_stash = interleave(&l.p_mu, zdim, &l.p_logsig, zdim);
    c.compare(
        FAMILY,
        "forward_packed p stash",
        &shapes,
        &ctx.read_f32(&stash)?,
        &want_stash,
        Tolerance::EXACT,
    );
    // The backward reads the prior's (mu, logsig) from the stash.
    let packed = super::Packed {
        p: stash.view(),
        p_channels: 2 * zdim,
        ..packed
    };
    if cfg.mode == ZMode::Importance {
        return Ok(()); // forward only
    }

    let (dz, dkl) = (rng.vec(n, -1.0, 1.0), rng.vec(n, -1.0, 1.0));
    let d = reference::backward(cfg, &l.slices(), &dz, &dkl);
    let (gdz, gdkl) = (ctx.upload(&dz), ctx.upload(&dkl));
    let (dq, dp) = (ctx.zeros(2 * n), ctx.zeros(2 * n));
    let bwd = super::backward_packed(ctx, cfg, &packed, gdz.view(), gdkl.view(), dq.view(), dp.view())?;
    ctx.run(&[&bwd])?;
    let want_dq = interleave(&d.q_mu, zdim, &d.q_logsig, zdim);
    let want_dp = interleave(&d.p_mu, zdim, &d.p_logsig, zdim);
    c.compare(
        FAMILY,
        "backward_packed dq",
        &shapes,
        &ctx.read_f32(&dq)?,
        &want_dq,
        GRAD_TOL,
    );
    c.compare(
        FAMILY,
        "backward_packed dp",
        &shapes,
        &ctx.read_f32(&dp)?,
        &want_dp,
        GRAD_TOL,
    );
    Ok(())
}

/// The Ladder merge written out packed, and its backward, against the reference.
fn check_merge(c: &mut Checker, rows: usize, zdim: usize, seed: u64) -> Result<()> {
    let ctx = c.ctx;
    let mut rng = TestRng::new(seed);
    let n = rows * zdim;
    let l = Level::random(&mut rng, n);
    let inputs = LevelBuffers::upload(ctx, &l);
    let shapes = format!("{rows} rows, zdim {zdim}");
    let q = ctx.zeros(2 * n);
    ctx.run(&[&super::merge_packed(ctx, &inputs.views(), zdim, q.view())?])?;
    let want = reference::merge_packed(&l.slices(), zdim);
    c.compare(FAMILY, "ladder_merge_packed", &shapes, &ctx.read_f32(&q)?, &want, Z_TOL);
    let dq = rng.vec(2 * n, -1.0, 1.0);
    let dqb = ctx.upload(&dq);
    let grads = LevelBuffers::zeros(ctx, n);
    ctx.run(&[&super::merge_packed_backward(
        ctx,
        &inputs.views(),
        zdim,
        dqb.view(),
        &grads.views(),
    )?])?;
    let want = reference::merge_packed_backward(&l.slices(), zdim, &dq);
    let names = ["d mu_d", "d logsig_d", "d mu_p", "d logsig_p"];
    for ((name, got), want) in names.iter().zip(&grads.0).zip(&want) {
        let kernel = format!("ladder_merge_packed_backward {name}");
        c.compare(FAMILY, &kernel, &shapes, &ctx.read_f32(got)?, want, GRAD_TOL);
    }
    Ok(())
}
