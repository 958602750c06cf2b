//! The flow family's table of checked shapes: every kernel against the CPU
//! reference on latents from one element to a VDVAE-sized level, both cells.

use super::{reference, Cell, FlowLevel, FlowLevelGrads};
use crate::check::{Checker, Tolerance};
use crate::error::Result;
use crate::kernels::testdata::TestRng;

const FAMILY: &str = "flow";
/// Elementwise with one exp or log: a few f32 roundings from the f64 reference.
const TOL: Tolerance = Tolerance::new(2e-5, 2e-5);

/// Checks every kernel on latents `[rows, zdim]` (rows = N·H·W).
pub fn check(c: &mut Checker) -> Result<()> {
    for (i, &(rows, zdim)) in [(1, 1), (35, 3), (2 * 8 * 8, 16), (16 * 32 * 32, 8)].iter().enumerate() {
        for cell in [Cell::Gated, Cell::ShiftOnly] {
            check_iaf(c, cell, rows, zdim, 10 + i as u64)?;
        }
        check_kl(c, rows, zdim, 2 * zdim, 20 + i as u64, false)?;
        check_kl(c, rows, zdim, 2 * zdim + 5, 25 + i as u64, false)?;
        check_mask(c, rows * zdim * 9, 30 + i as u64)?;
    }
    check_kl(c, 35, 3, 6, 40, true)?;
    Ok(())
}

fn check_mask(c: &mut Checker, n: usize, seed: u64) -> Result<()> {
    let ctx = c.ctx;
    let mut rng = TestRng::new(seed);
    let a = rng.vec(n, -1.0, 1.0);
    let m: Vec<f32> = (0..n).map(|i| ((i * 7) % 3 != 0) as u8 as f32).collect();
    let (ab, mb, y) = (ctx.upload(&a), ctx.upload(&m), ctx.zeros(n));
    ctx.run(&[&super::mask(ctx, ab.view(), mb.view(), y.view())?])?;
    let want = reference::mask(&a, &m);
    c.compare(
        FAMILY,
        "mask",
        &format!("{n}"),
        &ctx.read_f32(&y)?,
        &want,
        Tolerance::EXACT,
    );
    Ok(())
}

fn check_iaf(c: &mut Checker, cell: Cell, rows: usize, zdim: usize, seed: u64) -> Result<()> {
    let ctx = c.ctx;
    let mut rng = TestRng::new(seed);
    let n = rows * zdim;
    let (z, ms) = (rng.vec(n, -3.0, 3.0), rng.vec(2 * n, -6.0, 6.0));
    let shapes = format!("{rows}x{zdim} {cell:?}");
    let (zb, msb, zo, ls) = (ctx.upload(&z), ctx.upload(&ms), ctx.zeros(n), ctx.zeros(n));
    ctx.run(&[&super::iaf(
        ctx,
        cell,
        zdim,
        zb.view(),
        msb.view(),
        zo.view(),
        ls.view(),
    )?])?;
    let (want_z, want_ls) = reference::iaf(cell, zdim, &z, &ms);
    c.compare(FAMILY, "iaf z", &shapes, &ctx.read_f32(&zo)?, &want_z, TOL);
    c.compare(FAMILY, "iaf log det", &shapes, &ctx.read_f32(&ls)?, &want_ls, TOL);

    let (gz, gl) = (rng.vec(n, -1.0, 1.0), rng.vec(n, -1.0, 1.0));
    let (gzb, glb, dz, dms) = (ctx.upload(&gz), ctx.upload(&gl), ctx.zeros(n), ctx.zeros(2 * n));
    let d = super::iaf_backward(
        ctx,
        cell,
        zdim,
        gzb.view(),
        glb.view(),
        zb.view(),
        msb.view(),
        dz.view(),
        dms.view(),
    )?;
    ctx.run(&[&d])?;
    let (want_dz, want_dms) = reference::iaf_backward(cell, zdim, &gz, &gl, &z, &ms);
    c.compare(FAMILY, "iaf_backward dz", &shapes, &ctx.read_f32(&dz)?, &want_dz, TOL);
    c.compare(
        FAMILY,
        "iaf_backward dms",
        &shapes,
        &ctx.read_f32(&dms)?,
        &want_dms,
        TOL,
    );
    Ok(())
}

fn check_kl(c: &mut Checker, rows: usize, zdim: usize, p_channels: usize, seed: u64, scalar_dkl: bool) -> Result<()> {
    let ctx = c.ctx;
    let mut rng = TestRng::new(seed);
    let n = rows * zdim;
    let (z0, zk, ld) = (rng.vec(n, -3.0, 3.0), rng.vec(n, -3.0, 3.0), rng.vec(n, -2.0, 0.0));
    let (kl0, p) = (rng.vec(n, 0.0, 2.0), rng.vec(rows * p_channels, -1.5, 1.5));
    let bufs = [&z0, &p, &zk, &kl0, &ld].map(|v| ctx.upload(v));
    let level = FlowLevel {
        zdim,
        z0: bufs[0].view(),
        p: bufs[1].view(),
        p_channels,
        zk: bufs[2].view(),
    };
    let shapes = format!(
        "{rows}x{zdim}, prior {p_channels} channels{}",
        if scalar_dkl { " scalar dkl" } else { "" }
    );
    let out = ctx.zeros(n);
    ctx.run(&[&super::kl(ctx, &level, bufs[3].view(), bufs[4].view(), out.view())?])?;
    let r = reference::FlowLevelRef {
        zdim,
        z0: &z0,
        p: &p,
        p_channels,
        zk: &zk,
    };
    let want = reference::kl(&r, &kl0, &ld);
    c.compare(FAMILY, "kl", &shapes, &ctx.read_f32(&out)?, &want, TOL);

    let dkl = rng.vec(if scalar_dkl { 1 } else { n }, -1.0, 1.0);
    let dklb = ctx.upload(&dkl);
    let grads = [n, 2 * n, n, n].map(|len| ctx.zeros(len));
    let d = FlowLevelGrads {
        z0: grads[0].view(),
        p: grads[1].view(),
        zk: grads[2].view(),
        ld: grads[3].view(),
    };
    ctx.run(&[&super::kl_backward(ctx, &level, dklb.view(), &d)?])?;
    let want = reference::kl_backward(&r, &dkl);
    let pairs = [
        ("kl_backward dz0", &grads[0], &want.z0),
        ("kl_backward dp", &grads[1], &want.p),
        ("kl_backward dzk", &grads[2], &want.zk),
        ("kl_backward dld", &grads[3], &want.ld),
    ];
    for (kernel, got, want) in pairs {
        c.compare(FAMILY, kernel, &shapes, &ctx.read_f32(got)?, want, TOL);
    }
    Ok(())
}
