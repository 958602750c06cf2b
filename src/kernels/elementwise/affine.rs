//! `add` and the per-channel affine `y = x * gain[c] + bias[c]` (the VDVAE output
//! gain/bias) with its backward, whose per-channel sums are a two-pass parallel
//! reduction.

use super::{reciprocal, same_len, DIVIDE_WGSL, ELEM_F32, ELEM_VEC4};
use crate::error::{shape_err, Result};
use crate::gpu::{Access, BufView, Dispatch, GpuContext, Grid, Kernel, KernelSpec, Work};

const ADD_WGSL: &str = include_str!("../../../shaders/elementwise_add.wgsl");
const AFFINE_WGSL: &str = include_str!("../../../shaders/elementwise_affine.wgsl");
const AFFINE_BWD_WGSL: &str = include_str!("../../../shaders/elementwise_affine_backward.wgsl");
const ADD_BINDINGS: &[Access] = &[Access::Read, Access::Read, Access::ReadWrite, Access::Uniform];
const AFFINE_BINDINGS: &[Access] = &[
    Access::Read,
    Access::Read,
    Access::Read,
    Access::ReadWrite,
    Access::Uniform,
];
const AFFINE_BWD_BINDINGS: &[Access] = &[
    Access::Read,
    Access::Read,
    Access::Read,
    Access::ReadWrite,
    Access::ReadWrite,
    Access::Uniform,
];

/// Each kernel as (one f32, a vec4 of channels) per invocation.
const ADD: [Kernel<AddParams>; 2] = [
    Kernel::portable("add", &[ELEM_F32, ADD_WGSL], "add", ADD_BINDINGS),
    Kernel::portable("add_vec4", &[ELEM_VEC4, ADD_WGSL], "add", ADD_BINDINGS),
];
const AFFINE: [Kernel<LenParams>; 2] = [
    Kernel::portable(
        "affine",
        &[DIVIDE_WGSL, ELEM_F32, AFFINE_WGSL],
        "affine",
        AFFINE_BINDINGS,
    ),
    Kernel::portable(
        "affine_vec4",
        &[DIVIDE_WGSL, ELEM_VEC4, AFFINE_WGSL],
        "affine",
        AFFINE_BINDINGS,
    ),
];
const AFFINE_BWD_PARTIALS: [Kernel<PartialsParams>; 2] = [
    Kernel::portable(
        "affine_backward_partials",
        &[ELEM_F32, AFFINE_BWD_WGSL],
        "affine_backward_partials",
        AFFINE_BWD_BINDINGS,
    ),
    Kernel::portable(
        "affine_backward_partials_vec4",
        &[ELEM_VEC4, AFFINE_BWD_WGSL],
        "affine_backward_partials",
        AFFINE_BWD_BINDINGS,
    ),
];
const FINISH_WGSL: &[&str] = &[include_str!("../../../shaders/elementwise_affine_finish.wgsl")];
const FINISH_BINDINGS: &[Access] = &[Access::Read, Access::ReadWrite, Access::ReadWrite, Access::Uniform];
/// Pass 2 as (a workgroup tree per channel, one invocation per channel).
const AFFINE_BWD_FINISH: [Kernel<FinishParams>; 2] = [
    Kernel::portable(
        "affine_backward_finish",
        FINISH_WGSL,
        "affine_backward_finish",
        FINISH_BINDINGS,
    ),
    Kernel::portable(
        "affine_backward_finish_serial",
        FINISH_WGSL,
        "affine_backward_finish_serial",
        FINISH_BINDINGS,
    ),
];
/// From this many channels on, pass 2 sums each channel's partials in one
/// invocation: there are few of them per channel, and enough channels to fill the GPU.
const SERIAL_FINISH_CHANNELS: usize = 64;

/// Pass 1 of a per-channel reduction aims for this many invocations: enough to
/// fill a large GPU, while each still sums a run of rows (≈ elements / 65536).
const TARGET_INVOCATIONS: usize = 65536;

crate::gpu_params! {
    struct AddParams {
        n: u32,
    }
}

crate::gpu_params! {
    struct LenParams {
        n: u32,
        channels: u32,
        inv_channels: f32,
    }
}

crate::gpu_params! {
    struct PartialsParams {
        rows: u32,
        channels: u32,
        splits: u32,
        rows_per_split: u32,
    }
}

crate::gpu_params! {
    struct FinishParams {
        channels: u32,
        splits: u32,
    }
}

pub(super) fn kernels() -> Vec<KernelSpec> {
    let mut all: Vec<KernelSpec> = ADD.iter().map(|k| k.spec()).collect();
    all.extend(AFFINE.iter().map(|k| k.spec()));
    all.extend(AFFINE_BWD_PARTIALS.iter().map(|k| k.spec()));
    all.extend(AFFINE_BWD_FINISH.iter().map(|k| k.spec()));
    all
}

/// Elements per invocation: 4 (a vec4) when `n` divides by 4, else 1.
fn width(n: usize) -> usize {
    if n.is_multiple_of(4) {
        4
    } else {
        1
    }
}

/// `y = a + b`.
pub fn add(ctx: &GpuContext, a: BufView<'_>, b: BufView<'_>, y: BufView<'_>) -> Result<Dispatch> {
    let n = same_len("add", &[&a, &b, &y])?;
    let v = width(n);
    let params = AddParams { n: (n / v) as u32 };
    let kernel = &ADD[(v == 4) as usize];
    let d = ctx.dispatch(kernel, &[], &[a, b, y], &params, Grid::Invocations(n / v))?;
    Ok(d.with_work(Work::f32s(3 * n)))
}

fn channel_count(op: &str, len: usize, per_channel: &[&BufView<'_>]) -> Result<usize> {
    let c = per_channel[0].len;
    if c == 0 || per_channel.iter().any(|v| v.len != c) {
        let lens: Vec<_> = per_channel.iter().map(|v| v.len).collect();
        return shape_err(format!(
            "{op}: per-channel tensors must have one equal, non-zero length (C), got {lens:?}"
        ));
    }
    if !len.is_multiple_of(c) {
        return shape_err(format!(
            "{op}: a tensor of {len} elements is not NHWC with C = {c} channels (length not divisible by C)"
        ));
    }
    Ok(c)
}

/// `y = x * gain[c] + bias[c]` over an NHWC tensor with `C = gain.len` channels.
pub fn affine(
    ctx: &GpuContext,
    x: BufView<'_>,
    gain: BufView<'_>,
    bias: BufView<'_>,
    y: BufView<'_>,
) -> Result<Dispatch> {
    let n = same_len("affine", &[&x, &y])?;
    let c = channel_count("affine", n, &[&gain, &bias])?;
    let v = width(c);
    let params = LenParams {
        n: (n / v) as u32,
        channels: (c / v) as u32,
        inv_channels: reciprocal("affine", c / v)?,
    };
    let kernel = &AFFINE[(v == 4) as usize];
    let d = ctx.dispatch(kernel, &[], &[x, gain, bias, y], &params, Grid::Invocations(n / v))?;
    Ok(d.with_work(Work::f32s(2 * n + 2 * c)))
}

/// Buffers of [`affine_backward`]: `x`, `dy`, `dx` are `[N,H,W,C]`; `gain`, `dgain`,
/// `dbias` are `[C]`; `scratch` holds the partial sums between the two passes.
pub struct AffineBackward<'a> {
    pub x: BufView<'a>,
    pub dy: BufView<'a>,
    pub gain: BufView<'a>,
    pub dx: BufView<'a>,
    pub dgain: BufView<'a>,
    pub dbias: BufView<'a>,
    /// At least [`affine_backward_scratch_len`]`(x.len, C)` elements.
    pub scratch: BufView<'a>,
}

/// Pass 1 splits the rows into S runs of R rows: `(S, R)`, S · (C / width) invocations.
fn splits(rows: usize, channels: usize) -> (usize, usize) {
    let s = TARGET_INVOCATIONS
        .div_ceil(channels / width(channels))
        .clamp(1, rows.max(1));
    let r = rows.div_ceil(s).max(1);
    (rows.div_ceil(r).max(1), r)
}

/// Scratch elements [`affine_backward`] needs for a tensor of `len` elements and `channels` channels.
pub fn affine_backward_scratch_len(len: usize, channels: usize) -> usize {
    let channels = channels.max(1);
    2 * splits(len / channels, channels).0 * channels
}

/// `dx = dy * gain[c]`, `dgain[c] = Σ dy * x`, `dbias[c] = Σ dy` (sums over N, H, W).
/// Two dispatches: dx plus per-invocation partial sums over runs of rows, then
/// the partials of each channel are summed (a workgroup tree per channel for
/// fewer than 64 channels, else one invocation per channel). f32 throughout.
pub fn affine_backward(ctx: &GpuContext, b: &AffineBackward<'_>) -> Result<Vec<Dispatch>> {
    let n = same_len("affine_backward", &[&b.x, &b.dy, &b.dx])?;
    let c = channel_count("affine_backward", n, &[&b.gain, &b.dgain, &b.dbias])?;
    let rows = n / c;
    let need = affine_backward_scratch_len(n, c);
    if b.scratch.len < need {
        return shape_err(format!(
            "affine_backward: scratch holds {} elements, needs {need}",
            b.scratch.len
        ));
    }
    let ((s, r), v) = (splits(rows, c), width(c));
    let scratch = BufView { len: need, ..b.scratch };
    let p1 = PartialsParams {
        rows: rows as u32,
        channels: (c / v) as u32,
        splits: s as u32,
        rows_per_split: r as u32,
    };
    let pass1 = ctx.dispatch(
        &AFFINE_BWD_PARTIALS[(v == 4) as usize],
        &[],
        &[b.x, b.dy, b.gain, b.dx, scratch],
        &p1,
        Grid::Invocations(s * c / v),
    )?;
    let p2 = FinishParams {
        channels: c as u32,
        splits: s as u32,
    };
    let serial = c >= SERIAL_FINISH_CHANNELS;
    // Serial: one invocation per channel; tree: one workgroup per channel.
    let grid = if serial { Grid::Invocations(c) } else { Grid::Groups(c) };
    let pass2 = ctx.dispatch(
        &AFFINE_BWD_FINISH[serial as usize],
        &[],
        &[scratch, b.dgain, b.dbias],
        &p2,
        grid,
    )?;
    // Pass 1 reads x, dy, gain and writes dx and the partials; pass 2 sums the partials.
    Ok(vec![
        pass1.with_work(Work::f32s(3 * n + c + need)),
        pass2.with_work(Work::f32s(need + 2 * c)),
    ])
}
