//! The broadcast family's shapes and benchmark.

use super::reference;
use crate::bench::BenchCase;
use crate::check::{Checker, Tolerance};
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::kernels::testdata::TestRng;

const FAMILY: &str = "broadcast";

pub fn check(c: &mut Checker) -> Result<()> {
    let mut cases = vec![(1usize, 1usize), (7, 1), (1, 5), (13, 3 * 5 * 7), (16, 32 * 32 * 16)];
    if c.full() {
        // Largest output one binding holds.
        cases.push((64, c.ctx.limits.max_storage_buffer_binding_size as usize / 4 / 64));
    }
    let mut rng = TestRng::new(11);
    for (n, per) in cases {
        let shapes = format!("n={n} per={per}");
        let y = c.ctx.zeros(n * per);
        // Copies: exact.
        let img = rng.vec(per, -3.0, 3.0);
        let gx = c.ctx.upload(&img);
        c.ctx.run(&[&super::broadcast_batch(c.ctx, gx.view(), y.view())?])?;
        let want = reference::broadcast_batch(&img, n);
        c.compare(
            FAMILY,
            "broadcast_batch",
            &shapes,
            &c.ctx.read_f32(&y)?,
            &want,
            Tolerance::EXACT,
        );
        let per_image = rng.vec(n, -3.0, 3.0);
        let gx = c.ctx.upload(&per_image);
        c.ctx.run(&[&super::broadcast_per_image(c.ctx, gx.view(), y.view())?])?;
        let want = reference::broadcast_per_image(&per_image, per);
        c.compare(
            FAMILY,
            "broadcast_per_image",
            &shapes,
            &c.ctx.read_f32(&y)?,
            &want,
            Tolerance::EXACT,
        );
    }
    Ok(())
}

pub fn bench_cases(ctx: &GpuContext) -> Result<Vec<BenchCase>> {
    let (n, per) = (16, 32 * 32 * 384);
    let x = ctx.upload(&TestRng::new(12).vec(per, -1.0, 1.0));
    let y = ctx.zeros(n * per);
    let d = super::broadcast_batch(ctx, x.view(), y.view())?;
    let bytes = 4.0 * (per + n * per) as f64;
    Ok(vec![BenchCase::new(
        "broadcast_batch",
        format!("{n}x{per}"),
        0.0,
        bytes,
        vec![d],
        vec![x, y],
    )])
}
