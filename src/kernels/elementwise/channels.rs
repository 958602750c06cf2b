//! Channel concat, split and channel-range copies of NHWC tensors viewed as
//! `[rows, channels]` (rows = N·H·W), and an add that reads a channel window
//! of a wider tensor in place. VDVAE reads its channel windows in place where a
//! kernel can (the posterior's `cat[x, a]` in its first conv, mu / logsig in the
//! packed reparam, xpp in [`add_channels`]); the copies serve the rest: the
//! gradient of the prior block's output assembled from its parts, thin inputs
//! padded to 4 channels, custom widths' slices and pads. Concat's backward is
//! split and vice versa; a range copy's backward is [`slice_channels_backward`].

use std::fmt;

use super::{reciprocal, DIVIDE_WGSL, ELEM_F32, ELEM_VEC4};
use crate::error::{shape_err, Result};
use crate::gpu::{Access, BufView, Dispatch, GpuContext, Grid, Kernel, KernelSpec, Work};

const COPY_WGSL: &str = include_str!("../../../shaders/elementwise_channels.wgsl");
const BINDINGS: &[Access] = &[Access::Read, Access::ReadWrite, Access::Uniform];
/// One channel, or four (a vec4) per invocation.
const COPY: [Kernel<Params>; 2] = [
    Kernel::portable(
        "copy_channels",
        &[DIVIDE_WGSL, ELEM_F32, COPY_WGSL],
        "copy_channels",
        BINDINGS,
    ),
    Kernel::portable(
        "copy_channels_vec4",
        &[DIVIDE_WGSL, ELEM_VEC4, COPY_WGSL],
        "copy_channels",
        BINDINGS,
    ),
];

const ADD_WGSL: &str = include_str!("../../../shaders/elementwise_add_channels.wgsl");
const ADD_BINDINGS: &[Access] = &[Access::Read, Access::Read, Access::ReadWrite, Access::Uniform];
/// `a + b[.., window]` with one channel, or four (a vec4) per invocation.
const ADD: [Kernel<AddParams>; 2] = [
    Kernel::portable(
        "add_channels",
        &[DIVIDE_WGSL, ELEM_F32, ADD_WGSL],
        "add_channels",
        ADD_BINDINGS,
    ),
    Kernel::portable(
        "add_channels_vec4",
        &[DIVIDE_WGSL, ELEM_VEC4, ADD_WGSL],
        "add_channels",
        ADD_BINDINGS,
    ),
];

/// Channels `start..end` of an NHWC tensor that has `channels` channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelRange {
    pub channels: usize,
    pub start: usize,
    pub end: usize,
}

impl ChannelRange {
    pub fn new(channels: usize, start: usize, end: usize) -> ChannelRange {
        ChannelRange { channels, start, end }
    }

    /// Every channel of a `channels`-channel tensor.
    pub fn all(channels: usize) -> ChannelRange {
        ChannelRange::new(channels, 0, channels)
    }

    pub fn width(&self) -> usize {
        self.end.saturating_sub(self.start)
    }

    fn validate(&self, op: &str, what: &str, len: usize) -> Result<usize> {
        if self.start >= self.end || self.end > self.channels {
            return shape_err(format!("{op}: {what} channel range {self} is empty or out of bounds"));
        }
        if !len.is_multiple_of(self.channels) {
            return shape_err(format!(
                "{op}: {what} has {len} elements, not divisible by its {} channels",
                self.channels
            ));
        }
        Ok(len / self.channels)
    }
}

impl fmt::Display for ChannelRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}..{}) of {}", self.start, self.end, self.channels)
    }
}

/// How [`copy_channels`] writes the destination window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyMode {
    /// `dst[window] = src[window]`; other channels of dst untouched.
    Overwrite,
    /// `dst[window] += src[window]` (gradient accumulation).
    Accumulate,
    /// `dst[window] = src[window]` and every other channel of dst set to zero.
    OverwriteZeroRest,
}

crate::gpu_params! {
    struct Params {
        rows: u32,
        width: u32,
        src_stride: u32,
        src_start: u32,
        dst_stride: u32,
        dst_start: u32,
        accumulate: u32,
        zero_rest: u32,
        inv_cols: f32,
    }
}

crate::gpu_params! {
    struct AddParams {
        rows: u32,
        width: u32,
        b_stride: u32,
        b_start: u32,
        inv_width: f32,
    }
}

pub(super) fn kernels() -> Vec<KernelSpec> {
    let mut all: Vec<KernelSpec> = COPY.iter().map(|k| k.spec()).collect();
    all.extend(ADD.iter().map(|k| k.spec()));
    all
}

/// `y = a + b[.., b_range]`: a (and y) has `b_range.width()` channels, the
/// window of b is read where it lies instead of sliced off first. One dispatch.
pub fn add_channels(
    ctx: &GpuContext,
    a: BufView<'_>,
    b: BufView<'_>,
    b_range: ChannelRange,
    y: BufView<'_>,
) -> Result<Dispatch> {
    let op = "add_channels";
    let rows = b_range.validate(op, "b", b.len)?;
    let width = b_range.width();
    if a.len != rows * width || y.len != a.len {
        return shape_err(format!(
            "{op}: a and y must be {rows} rows (N·H·W) of {width} channels ({} elements), got {} and {}",
            rows * width,
            a.len,
            y.len
        ));
    }
    let counts = [b_range.channels, b_range.start, width];
    let v = if counts.iter().all(|c| c.is_multiple_of(4)) {
        4
    } else {
        1
    };
    let params = AddParams {
        rows: rows as u32,
        width: (width / v) as u32,
        b_stride: (b_range.channels / v) as u32,
        b_start: (b_range.start / v) as u32,
        inv_width: reciprocal(op, width / v)?,
    };
    let kernel = &ADD[(v == 4) as usize];
    let d = ctx.dispatch(kernel, &[], &[a, b, y], &params, Grid::Invocations(rows * width / v))?;
    Ok(d.with_work(Work::f32s(3 * rows * width)))
}

/// `dst[.., dst_range] (=, +=) src[.., src_range]` for every row (N·H·W position).
/// Both tensors must have the same number of rows and the ranges the same width.
pub fn copy_channels(
    ctx: &GpuContext,
    src: BufView<'_>,
    src_range: ChannelRange,
    dst: BufView<'_>,
    dst_range: ChannelRange,
    mode: CopyMode,
) -> Result<Dispatch> {
    let op = "copy_channels";
    let rows = src_range.validate(op, "source", src.len)?;
    let dst_rows = dst_range.validate(op, "destination", dst.len)?;
    if rows != dst_rows {
        return shape_err(format!(
            "{op}: source has {rows} rows (N·H·W) of {} channels, destination {dst_rows} of {}",
            src_range.channels, dst_range.channels
        ));
    }
    if src_range.width() != dst_range.width() {
        return shape_err(format!(
            "{op}: source range {src_range} and destination range {dst_range} differ in width"
        ));
    }
    let zero_rest = mode == CopyMode::OverwriteZeroRest;
    // Four channels per invocation when every channel count and offset allows.
    let counts = [
        src_range.channels,
        src_range.start,
        src_range.end,
        dst_range.channels,
        dst_range.start,
    ];
    let v = if counts.iter().all(|c| c.is_multiple_of(4)) {
        4
    } else {
        1
    };
    let cols = if zero_rest {
        dst_range.channels
    } else {
        dst_range.width()
    } / v;
    let params = Params {
        rows: rows as u32,
        width: (src_range.width() / v) as u32,
        src_stride: (src_range.channels / v) as u32,
        src_start: (src_range.start / v) as u32,
        dst_stride: (dst_range.channels / v) as u32,
        dst_start: (dst_range.start / v) as u32,
        accumulate: (mode == CopyMode::Accumulate) as u32,
        zero_rest: zero_rest as u32,
        inv_cols: reciprocal(op, cols)?,
    };
    let kernel = &COPY[(v == 4) as usize];
    let d = ctx.dispatch(kernel, &[], &[src, dst], &params, Grid::Invocations(rows * cols))?;
    // Read the source range (and the destination's when adding), write what it covers.
    let read = rows * src_range.width() * (1 + (mode == CopyMode::Accumulate) as usize);
    Ok(d.with_work(Work::f32s(read + rows * cols * v)))
}

/// `y = cat[a, b]` along channels: `[.., ca] ++ [.., cb] -> [.., ca + cb]`. Two dispatches.
/// Backward: [`split_channels`] of dy.
pub fn concat_channels(
    ctx: &GpuContext,
    a: BufView<'_>,
    ca: usize,
    b: BufView<'_>,
    cb: usize,
    y: BufView<'_>,
) -> Result<Vec<Dispatch>> {
    let c = ca + cb;
    Ok(vec![
        copy_channels(
            ctx,
            a,
            ChannelRange::all(ca),
            y,
            ChannelRange::new(c, 0, ca),
            CopyMode::Overwrite,
        )?,
        copy_channels(
            ctx,
            b,
            ChannelRange::all(cb),
            y,
            ChannelRange::new(c, ca, c),
            CopyMode::Overwrite,
        )?,
    ])
}

/// `a = y[.., 0..ca]`, `b = y[.., ca..ca + cb]`. Two dispatches.
/// Backward: [`concat_channels`] of (da, db).
pub fn split_channels(
    ctx: &GpuContext,
    y: BufView<'_>,
    a: BufView<'_>,
    ca: usize,
    b: BufView<'_>,
    cb: usize,
) -> Result<Vec<Dispatch>> {
    let c = ca + cb;
    Ok(vec![
        copy_channels(
            ctx,
            y,
            ChannelRange::new(c, 0, ca),
            a,
            ChannelRange::all(ca),
            CopyMode::Overwrite,
        )?,
        copy_channels(
            ctx,
            y,
            ChannelRange::new(c, ca, c),
            b,
            ChannelRange::all(cb),
            CopyMode::Overwrite,
        )?,
    ])
}

/// `y = x[.., range]` (y has `range.width()` channels).
pub fn slice_channels(ctx: &GpuContext, x: BufView<'_>, range: ChannelRange, y: BufView<'_>) -> Result<Dispatch> {
    copy_channels(ctx, x, range, y, ChannelRange::all(range.width()), CopyMode::Overwrite)
}

/// Backward of [`slice_channels`]: `dx[.., range] = dy` and zero elsewhere, or
/// with `accumulate`, `dx[.., range] += dy` and the rest of dx untouched.
pub fn slice_channels_backward(
    ctx: &GpuContext,
    dy: BufView<'_>,
    dx: BufView<'_>,
    range: ChannelRange,
    accumulate: bool,
) -> Result<Dispatch> {
    let mode = if accumulate {
        CopyMode::Accumulate
    } else {
        CopyMode::OverwriteZeroRest
    };
    copy_channels(ctx, dy, ChannelRange::all(range.width()), dx, range, mode)
}
