//! The tiled path: generated register-tiled kernels (see `codegen.rs`) and their dispatch.
//!
//! - forward: [`ForwardTile`] over x and w;
//! - dx: the weights flipped and transposed into scratch, then the same forward tile
//!   over dy (reduction over Cout) with a `* gelu'(x)` epilogue;
//! - dw (+ db): [`WeightTile`] writes per-split partial sums into scratch, one more
//!   pass adds the splits into dw and db (overwriting or accumulating).
//!
//! Every index the kernels compute is clamped or masked in the generated code, and the
//! shape rules (`Conv2dShape::check_*` plus the divisibility tests of `Path::best_*`)
//! guarantee the rest, so the kernels are compiled without bounds checks.

use std::collections::HashMap;
use std::sync::Mutex;

use super::codegen::{self, Epilogue, ForwardTile, WeightTile};
use super::Conv2dShape;
use crate::error::{shape_err, Result};
use crate::gpu::{grid_1d, Access, BufView, Dispatch, GpuContext, Kernel};
use crate::ops::elementwise::GELU_WGSL;

use Access::{Read, ReadWrite, Uniform};

/// The generated kernels need subgroups of at least 8 lanes (one workgroup = 8 lanes).
pub fn usable(ctx: &GpuContext) -> bool {
    ctx.has(wgpu::Features::SUBGROUP) && ctx.subgroup_min_size >= 8
}

/// Generated kernels, built once per process and variant (their WGSL is leaked so the
/// `Kernel` can hold `&'static str` like the hand-written ones).
fn generated(name: String, source: impl FnOnce() -> String, bindings: &'static [Access]) -> Kernel {
    static CACHE: Mutex<Option<HashMap<String, Kernel>>> = Mutex::new(None);
    let mut cache = CACHE.lock().unwrap();
    let map = cache.get_or_insert_with(HashMap::new);
    *map.entry(name.clone()).or_insert_with(|| {
        let source: &'static str = Box::leak(source().into_boxed_str());
        let sources: &'static [&'static str] = Box::leak(vec![GELU_WGSL, source].into_boxed_slice());
        Kernel::portable(Box::leak(name.into_boxed_str()), sources, "main", bindings)
            .requiring(wgpu::Features::SUBGROUP)
            .without_bounds_checks()
    })
}

const UTIL: &[&str] = &[include_str!("../../../shaders/conv2d_tiled_util.wgsl")];
const FLIP_TRANSPOSE: Kernel = Kernel::portable(
    "conv2d_flip_transpose",
    UTIL,
    "flip_transpose",
    &[Read, ReadWrite, Uniform],
);
const SUM_SPLITS: Kernel = Kernel::portable("conv2d_sum_splits", UTIL, "sum_splits", &[Read, ReadWrite, Uniform]);

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ForwardParams {
    n: u32,
    h: u32,
    w: u32,
    cin4: u32,
    cout: u32,
    tiles_w: u32,
    tiles_h: u32,
    tiles: u32,
}

/// The tile for a conv with `cout` outputs over `h` (possibly stacked) rows. One input
/// row segment per block, blocks stacked down the image; up to 32 output channels per
/// workgroup for 3x3 and 64 for 1x1, so each broadcast x value feeds 4 resp. 8 channels
/// per lane. All blocks' accumulators live across the channel loop (LLVM spills most of
/// them; each spilled one is reloaded once per block), so bigger tiles cost compile time:
/// lavapipe JIT of the gelu variant at 16 blocks x 4 is ~4 s, at 8 x 4 ~2 s, and the
/// 1x1 at 16 x 8 (1024 accumulators) ~10 s, hence 4 x 8 there.
/// Measured at 16x32x32, 64->64, GFLOP per CPU-second (FMA ceiling ~43; noisy, shared machine):
/// 3x3 blocks x couts/lane (rows x blocks for the first two): 4x4 x1: 19.5, 2x8 x2: 23.2,
/// 8 x4: 23.2, 16 x4: 25.9, 32 x4: 27.8, 16 x8: 27.1, 32 x8: 16.3;
/// 1x1: 4 x3: 7.7, 16 x4: 14.1, 8 x4: 13.2, 4 x8: 19.6, 16 x8: 19.1.
fn forward_tile(k: usize, h: usize, cout: usize, gelu_input: bool, epilogue: Epilogue) -> ForwardTile {
    let (max_blocks, max_couts_per_lane) = if k == 3 { (16, 4) } else { (4, 8) };
    ForwardTile {
        k: k as u32,
        rows: 1,
        blocks: h.clamp(1, max_blocks) as u32,
        couts_per_lane: cout.div_ceil(8).clamp(1, max_couts_per_lane) as u32,
        gelu_input,
        epilogue,
    }
}

/// Rows the forward tile walks down: a 1x1 conv has no halo, so its images are
/// stacked into one tall image (fewer partial tiles).
fn stacked_rows(s: &Conv2dShape) -> usize {
    if s.k == 1 {
        s.n * s.h
    } else {
        s.h
    }
}

/// Runs the forward tile over an `[n,h,w,cin]` input with `cout` outputs.
#[allow(clippy::too_many_arguments)]
fn forward_tiles(
    ctx: &GpuContext,
    t: &ForwardTile,
    s: &Conv2dShape,
    x: BufView<'_>,
    w: BufView<'_>,
    bias: BufView<'_>,
    extra: BufView<'_>,
    y: BufView<'_>,
) -> Result<Dispatch> {
    let (n, h) = if s.k == 1 { (1, stacked_rows(s)) } else { (s.n, s.h) };
    let tiles_w = s.w.div_ceil(t.cols() as usize);
    let tiles_h = h.div_ceil(t.tile_rows() as usize);
    let tiles = n * tiles_h * tiles_w;
    let p = ForwardParams {
        n: n as u32,
        h: h as u32,
        w: s.w as u32,
        cin4: (s.cin / 4) as u32,
        cout: s.cout as u32,
        tiles_w: tiles_w as u32,
        tiles_h: tiles_h as u32,
        tiles: tiles as u32,
    };
    let [gx, gy, _] = grid_1d(tiles, 1);
    let gz = s.cout.div_ceil(t.couts_per_workgroup() as usize);
    if gz > 65535 {
        return shape_err(format!("conv2d: {} output channels are too many for one grid", s.cout));
    }
    let kernel = generated(
        t.name(),
        || codegen::forward(t),
        &[Read, Read, Read, Read, ReadWrite, Uniform],
    );
    ctx.dispatch(
        &kernel,
        &[],
        &[x, w, bias, extra, y],
        bytemuck::bytes_of(&p),
        [gx, gy, gz as u32],
    )
}

pub(super) fn forward(
    ctx: &GpuContext,
    s: &Conv2dShape,
    x: BufView<'_>,
    w: BufView<'_>,
    bias: Option<BufView<'_>>,
    residual: Option<BufView<'_>>,
    y: BufView<'_>,
) -> Result<Dispatch> {
    let epilogue = Epilogue::Store {
        bias: s.bias,
        residual: s.residual,
    };
    let t = forward_tile(s.k, stacked_rows(s), s.cout, s.gelu_input, epilogue);
    // Absent optional inputs bind x in their place; the kernel never reads them.
    forward_tiles(ctx, &t, s, x, w, bias.unwrap_or(x), residual.unwrap_or(x), y)
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct UtilParams {
    cout: u32,
    kk: u32,
    cin: u32,
    total: u32,
    stride: u32,
    splits: u32,
    accumulate: u32,
    pad: u32,
}

pub(super) fn backward_input(
    ctx: &GpuContext,
    s: &Conv2dShape,
    x: BufView<'_>,
    w: BufView<'_>,
    dy: BufView<'_>,
    scratch: BufView<'_>,
    dx: BufView<'_>,
) -> Result<Vec<Dispatch>> {
    let kk = s.k * s.k;
    let flip = UtilParams {
        cout: s.cout as u32,
        kk: kk as u32,
        cin: s.cin as u32,
        total: s.w_len() as u32,
        stride: 0,
        splits: 0,
        accumulate: 0,
        pad: 0,
    };
    let wt = BufView {
        len: s.w_len(),
        ..scratch
    };
    let d1 = ctx.dispatch(
        &FLIP_TRANSPOSE,
        &[],
        &[w, wt],
        bytemuck::bytes_of(&flip),
        grid_1d(s.w_len(), 64),
    )?;
    // dx = conv(dy, flipped w): a forward conv with the channel counts swapped.
    let swapped = Conv2dShape {
        cin: s.cout,
        cout: s.cin,
        ..*s
    };
    let epilogue = if s.gelu_input {
        Epilogue::GeluGrad
    } else {
        Epilogue::Store {
            bias: false,
            residual: false,
        }
    };
    let t = forward_tile(s.k, stacked_rows(s), s.cin, false, epilogue);
    let d2 = forward_tiles(ctx, &t, &swapped, dy, wt, dy, x, dx)?;
    Ok(vec![d1, d2])
}

/// Input-channel vec4s per dw workgroup: 1 for 3x3 (9 taps already give 144
/// accumulators per lane), 8 for 1x1, or the largest count below that divides cin/4.
/// Measured (GFLOP per CPU-second): 3x3 1: 28.3, 2: 24.2; 1x1 1: 7.1, 4: 13.5, 8: 16.2, 16: 13.5.
fn ci_vecs(s: &Conv2dShape) -> u32 {
    let want = if s.k == 3 { 1 } else { 8 };
    (1..=want).rev().find(|v| (s.cin / 4).is_multiple_of(*v)).unwrap_or(1) as u32
}

/// 8-pixel row segments of the weight-gradient reduction.
fn segments(s: &Conv2dShape) -> usize {
    s.n * s.h * s.w.div_ceil(8)
}

/// How many workgroups share the pixel reduction of each dw tile (one partial sum each).
/// At least 64 segments per split, at most 64 splits, and never more than 16384 segments
/// per workgroup (llvmpipe ends an invocation after 65535 loop iterations).
pub fn weight_splits(s: &Conv2dShape) -> usize {
    segments(s)
        .div_ceil(64)
        .clamp(1, 64)
        .max(segments(s).div_ceil(16 * 1024))
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct WeightParams {
    n: u32,
    h: u32,
    w: u32,
    cin4: u32,
    cout4: u32,
    segs_w: u32,
    segments: u32,
    per_split: u32,
    stride: u32,
    w_len: u32,
    pad0: u32,
    pad1: u32,
}

#[allow(clippy::too_many_arguments)]
pub(super) fn backward_weight(
    ctx: &GpuContext,
    s: &Conv2dShape,
    x: BufView<'_>,
    dy: BufView<'_>,
    scratch: BufView<'_>,
    act: Option<BufView<'_>>,
    dw: BufView<'_>,
    db: Option<BufView<'_>>,
    accumulate: bool,
) -> Result<Vec<Dispatch>> {
    let splits = weight_splits(s);
    let stride = s.w_len() + s.cout;
    let segments = segments(s);
    let p = WeightParams {
        n: s.n as u32,
        h: s.h as u32,
        w: s.w as u32,
        cin4: (s.cin / 4) as u32,
        cout4: (s.cout / 4) as u32,
        segs_w: s.w.div_ceil(8) as u32,
        segments: segments as u32,
        per_split: segments.div_ceil(splits) as u32,
        stride: stride as u32,
        w_len: s.w_len() as u32,
        pad0: 0,
        pad1: 0,
    };
    // With room for act(x), GELU runs once in an elementwise pass instead of inside
    // every dw workgroup (each x element is loaded by 3 rows x cout/32 workgroups).
    let mut ds = Vec::new();
    let (x, gelu_in_kernel) = match act {
        Some(act) if s.gelu_input => {
            ds.push(crate::ops::elementwise::gelu_forward(ctx, x, act)?);
            (act, false)
        }
        _ => (x, s.gelu_input),
    };
    let t = WeightTile {
        k: s.k as u32,
        ci_vecs: ci_vecs(s),
        gelu_input: gelu_in_kernel,
    };
    let kernel = generated(t.name(), || codegen::weight(&t), &[Read, Read, ReadWrite, Uniform]);
    let grid = [
        (s.cin / 4 / ci_vecs(s) as usize) as u32,
        (s.cout / 4).div_ceil(8) as u32,
        splits as u32,
    ];
    if grid.iter().any(|&g| g > 65535) {
        return shape_err(format!(
            "conv2d: backward weight grid {grid:?} exceeds 65535 workgroups"
        ));
    }
    let partials = BufView {
        len: splits * stride,
        ..scratch
    };
    ds.push(ctx.dispatch(&kernel, &[], &[x, dy, partials], bytemuck::bytes_of(&p), grid)?);
    let mut sum = |dst: BufView<'_>, offset: usize, total: usize| -> Result<()> {
        let q = UtilParams {
            cout: 0,
            kk: 0,
            cin: 0,
            total: total as u32,
            stride: stride as u32,
            splits: splits as u32,
            accumulate: accumulate as u32,
            pad: offset as u32,
        };
        ds.push(ctx.dispatch(
            &SUM_SPLITS,
            &[],
            &[partials, dst],
            bytemuck::bytes_of(&q),
            grid_1d(total, 64),
        )?);
        Ok(())
    };
    sum(dw, 0, s.w_len())?;
    if let Some(db) = db {
        sum(db, s.w_len(), s.cout)?;
    }
    Ok(ds)
}
