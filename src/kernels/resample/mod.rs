//! Resampling of NHWC tensors by an integer factor k: average pooling (the
//! encoder's `RdK` blocks) and nearest-neighbour upsampling (the decoder's `RmS`
//! mixins), each with its backward. All four are one of two kernels: a k×k
//! block sum and a block broadcast, each with a scale. WGSL: `shaders/resample.wgsl`.

mod cases;
pub mod reference;

pub use cases::{bench_cases, check};

use crate::error::{shape_err, Result};
use crate::gpu::{Access, BufView, Dispatch, GpuContext, Grid, Kernel, KernelSpec, Work};
use crate::kernels::elementwise::{reciprocal, DIVIDE_WGSL, ELEM_F32, ELEM_VEC4};

const WGSL: &str = include_str!("../../../shaders/resample.wgsl");
const SCALAR: &[&str] = &[DIVIDE_WGSL, ELEM_F32, WGSL];
const VEC4: &[&str] = &[DIVIDE_WGSL, ELEM_VEC4, WGSL];
const BINDINGS: &[Access] = &[Access::Read, Access::ReadWrite, Access::Uniform];
/// Each kernel as (one channel, a vec4 of channels) per invocation.
const BLOCK_SUM: [Kernel<Params>; 2] = [
    Kernel::portable("resample_block_sum", SCALAR, "block_sum", BINDINGS),
    Kernel::portable("resample_block_sum_vec4", VEC4, "block_sum", BINDINGS),
];
const BLOCK_BROADCAST: [Kernel<Params>; 2] = [
    Kernel::portable("resample_block_broadcast", SCALAR, "block_broadcast", BINDINGS),
    Kernel::portable("resample_block_broadcast_vec4", VEC4, "block_broadcast", BINDINGS),
];

crate::gpu_params! {
    struct Params {
        n: u32,
        channels: u32,
        small_w: u32,
        k: u32,
        scale: f32,
        inv_channels: f32,
        inv_small_w: f32,
        inv_big_w: f32,
        inv_k: f32,
    }
}

/// Every kernel of the family, for the contract test.
pub fn all_kernels() -> Vec<KernelSpec> {
    BLOCK_SUM.iter().chain(&BLOCK_BROADCAST).map(|k| k.spec()).collect()
}

/// The shape `[N, H/k, W/k, C]` that pooling `[N, H, W, C]` by `k` gives.
pub fn pooled_shape(op: &str, big: [usize; 4], k: usize) -> Result<[usize; 4]> {
    let [n, h, w, c] = big;
    if k == 0 {
        return shape_err(format!("{op}: the factor k must be at least 1"));
    }
    if !h.is_multiple_of(k) || !w.is_multiple_of(k) {
        return shape_err(format!("{op}: H×W = {h}×{w} is not divisible by the factor k = {k}"));
    }
    Ok([n, h / k, w / k, c])
}

fn check_len(op: &str, what: &str, view: &BufView<'_>, shape: [usize; 4]) -> Result<()> {
    let want: usize = shape.iter().product();
    if view.len != want {
        return shape_err(format!(
            "{op}: {what} has {} elements, shape {shape:?} (NHWC) needs {want}",
            view.len
        ));
    }
    Ok(())
}

/// One resampling dispatch between a big tensor of `big_shape` and its pooled shape.
struct Resample<'a> {
    op: &'a str,
    big_shape: [usize; 4],
    k: usize,
    scale: f32,
    /// Block sum (big to small) rather than block broadcast (small to big).
    sum: bool,
}

impl Resample<'_> {
    fn dispatch(&self, ctx: &GpuContext, src: BufView<'_>, dst: BufView<'_>) -> Result<Dispatch> {
        let small_shape = pooled_shape(self.op, self.big_shape, self.k)?;
        let (src_shape, dst_shape) = if self.sum {
            (self.big_shape, small_shape)
        } else {
            (small_shape, self.big_shape)
        };
        check_len(self.op, "the input", &src, src_shape)?;
        check_len(self.op, "the output", &dst, dst_shape)?;
        if dst.len == 0 {
            return shape_err(format!("{}: empty tensor of shape {dst_shape:?}", self.op));
        }
        let (c, small_w, big_w) = (self.big_shape[3], small_shape[2], self.big_shape[2]);
        // Four channels per invocation when C allows.
        let v = if c.is_multiple_of(4) { 4 } else { 1 };
        let c = c / v;
        let params = Params {
            n: (dst.len / v) as u32,
            channels: c as u32,
            small_w: small_w as u32,
            k: self.k as u32,
            scale: self.scale,
            inv_channels: reciprocal(self.op, c)?,
            inv_small_w: reciprocal(self.op, small_w)?,
            inv_big_w: reciprocal(self.op, big_w)?,
            inv_k: reciprocal(self.op, self.k)?,
        };
        let kernel = if self.sum { &BLOCK_SUM } else { &BLOCK_BROADCAST };
        let kernel = &kernel[(v == 4) as usize];
        let d = ctx.dispatch(kernel, &[], &[src, dst], &params, Grid::Invocations(dst.len / v))?;
        Ok(d.with_work(Work::f32s(src.len + dst.len)))
    }
}

fn inverse_area(k: usize) -> f32 {
    1.0 / (k * k).max(1) as f32
}

/// `y = avg_pool(x, k)`: `x` is `[N, H, W, C]` (`shape`), `y` is `[N, H/k, W/k, C]`.
/// H and W must be divisible by k.
pub fn avg_pool(ctx: &GpuContext, x: BufView<'_>, shape: [usize; 4], k: usize, y: BufView<'_>) -> Result<Dispatch> {
    let op = "avg_pool";
    let (big_shape, scale) = (shape, inverse_area(k));
    Resample {
        op,
        big_shape,
        k,
        scale,
        sum: true,
    }
    .dispatch(ctx, x, y)
}

/// Backward of [`avg_pool`]: `dx[n, h, w, c] = dy[n, h/k, w/k, c] / k²`; `shape` is x's.
pub fn avg_pool_backward(
    ctx: &GpuContext,
    dy: BufView<'_>,
    shape: [usize; 4],
    k: usize,
    dx: BufView<'_>,
) -> Result<Dispatch> {
    let op = "avg_pool_backward";
    let (big_shape, scale) = (shape, inverse_area(k));
    Resample {
        op,
        big_shape,
        k,
        scale,
        sum: false,
    }
    .dispatch(ctx, dy, dx)
}

/// `y = upsample_nearest(x, k)`: `x` is `[N, H, W, C]` (`shape`), `y` is `[N, H·k, W·k, C]`.
pub fn upsample_nearest(
    ctx: &GpuContext,
    x: BufView<'_>,
    shape: [usize; 4],
    k: usize,
    y: BufView<'_>,
) -> Result<Dispatch> {
    let [n, h, w, c] = shape;
    let (op, big_shape) = ("upsample_nearest", [n, h * k, w * k, c]);
    Resample {
        op,
        big_shape,
        k,
        scale: 1.0,
        sum: false,
    }
    .dispatch(ctx, x, y)
}

/// Backward of [`upsample_nearest`]: `dx[n, h, w, c]` = sum of dy over the k×k
/// block that (h, w) was copied to; `shape` is x's (the small tensor).
pub fn upsample_nearest_backward(
    ctx: &GpuContext,
    dy: BufView<'_>,
    shape: [usize; 4],
    k: usize,
    dx: BufView<'_>,
) -> Result<Dispatch> {
    let [n, h, w, c] = shape;
    let (op, big_shape) = ("upsample_nearest_backward", [n, h * k, w * k, c]);
    Resample {
        op,
        big_shape,
        k,
        scale: 1.0,
        sum: true,
    }
    .dispatch(ctx, dy, dx)
}
