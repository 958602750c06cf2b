//! The elementwise family's table of checked shapes and benchmark cases.

use super::reference;
use crate::bench::BenchCase;
use crate::check::{Checker, Tolerance};
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::ops::testdata::TestRng;

const FAMILY: &str = "elementwise";
/// The WGSL erfc approximation has fractional error < 1.2e-7, exp a few ulp.
const GELU_TOL: Tolerance = Tolerance::new(1e-6, 1e-5);

pub fn check(c: &mut Checker) -> Result<()> {
    let mut sizes = vec![1usize, 255, 4099];
    if c.full() {
        // The largest tensor that fits one storage binding.
        sizes.push(c.ctx.limits.max_storage_buffer_binding_size as usize / 4);
    }
    let mut rng = TestRng::new(1);
    for n in sizes {
        let shapes = format!("n={n}");
        let x = rng.vec(n, -6.0, 6.0);
        let dy = rng.vec(n, -1.0, 1.0);
        let (gx, gdy, gy) = (c.ctx.upload(&x), c.ctx.upload(&dy), c.ctx.zeros(n));
        let d = super::gelu_forward(c.ctx, gx.view(), gy.view())?;
        c.ctx.run(&[&d])?;
        c.compare(
            FAMILY,
            "gelu_forward",
            &shapes,
            &c.ctx.read_f32(&gy)?,
            &reference::gelu(&x),
            GELU_TOL,
        );
        let d = super::gelu_backward(c.ctx, gx.view(), gdy.view(), gy.view())?;
        c.ctx.run(&[&d])?;
        let want = reference::gelu_backward(&x, &dy);
        c.compare(FAMILY, "gelu_backward", &shapes, &c.ctx.read_f32(&gy)?, &want, GELU_TOL);
    }
    Ok(())
}

pub fn bench_cases(ctx: &GpuContext) -> Result<Vec<BenchCase>> {
    let n = 16 * 64 * 32 * 32;
    let x = ctx.upload(&TestRng::new(2).vec(n, -3.0, 3.0));
    let y = ctx.zeros(n);
    let d = super::gelu_forward(ctx, x.view(), y.view())?;
    Ok(vec![BenchCase::new(
        "gelu_forward",
        format!("n={n}"),
        20.0 * n as f64,
        8.0 * n as f64,
        vec![d],
        vec![x, y],
    )])
}
