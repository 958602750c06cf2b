//! Broadcasts over the batch: the learned decoder start state `[1, H, W, C]`
//! repeated to `[N, H, W, C]`, and a per-image value `[N]` spread over each
//! image's elements (the backward of a per-image sum).
//! WGSL: `shaders/broadcast.wgsl`.

mod cases;
pub mod reference;

pub use cases::{bench_cases, check};

use crate::error::{shape_err, Result};
use crate::gpu::{Access, BufView, Dispatch, GpuContext, Grid, Kernel, KernelSpec, Work};

const SOURCES: &[&str] = &[include_str!("../../../shaders/broadcast.wgsl")];
const BINDINGS: &[Access] = &[Access::Read, Access::ReadWrite, Access::Uniform];
const BATCH: Kernel<Params> = Kernel::portable("broadcast_batch", SOURCES, "broadcast_batch", BINDINGS);
const PER_IMAGE: Kernel<Params> = Kernel::portable("broadcast_per_image", SOURCES, "broadcast_per_image", BINDINGS);

crate::gpu_params! {
    struct Params {
        n: u32,
        per: u32,
    }
}

/// Every kernel of the family, for the contract test.
pub fn all_kernels() -> Vec<KernelSpec> {
    vec![BATCH.spec(), PER_IMAGE.spec()]
}

fn whole_multiple(op: &str, x: &BufView<'_>, y: &BufView<'_>) -> Result<usize> {
    if x.len == 0 || !y.len.is_multiple_of(x.len) {
        return shape_err(format!(
            "{op}: output of {} elements is not a whole multiple of the input's {}",
            y.len, x.len
        ));
    }
    Ok(y.len / x.len)
}

/// `y[b, ...] = x[0, ...]` for every image b: `y.len` must be a multiple of `x.len`.
pub fn broadcast_batch(ctx: &GpuContext, x: BufView<'_>, y: BufView<'_>) -> Result<Dispatch> {
    whole_multiple("broadcast_batch", &x, &y)?;
    let p = Params {
        n: y.len as u32,
        per: x.len as u32,
    };
    let d = ctx.dispatch(&BATCH, &[], &[x, y], &p, Grid::Invocations(y.len))?;
    Ok(d.with_work(Work::f32s(x.len + y.len)))
}

/// `y[n, ...] = x[n]` for every element of image n.
pub fn broadcast_per_image(ctx: &GpuContext, x: BufView<'_>, y: BufView<'_>) -> Result<Dispatch> {
    let per = whole_multiple("broadcast_per_image", &x, &y)?;
    let p = Params {
        n: y.len as u32,
        per: per as u32,
    };
    let d = ctx.dispatch(&PER_IMAGE, &[], &[x, y], &p, Grid::Invocations(y.len))?;
    Ok(d.with_work(Work::f32s(x.len + y.len)))
}
