//! Group normalization over NHWC tensors: G groups of C/G channels, statistics
//! per (image, group) over H·W·C/G elements, biased variance, then a
//! per-channel affine gamma/beta — PyTorch's `GroupNorm`. Forward outputs the
//! per-(image, group) mean and rstd for the backward.
//!
//! Forward: (1) per-invocation mean and M2 over runs of rows of one channel,
//! (2) one invocation per (image, group) merges them (Chan's update) and writes
//! the stats and per-(image, channel) coefficients, (3) `y = (x − mean)·scale + beta`.
//! Backward: (1) per-invocation Σ dy and Σ dy·xhat, (2) dbeta and dgamma from
//! them (the reduce family's `sum_partials`) and the per-(image, channel)
//! coefficients of `dx = a·dy + b·(x − mean) + e`, (3) dx. f32 throughout.
//! WGSL: `shaders/groupnorm*.wgsl`.

mod cases;
pub mod reference;

pub use cases::{bench_cases, check};

use std::sync::OnceLock;

use crate::bench::time_dispatches;
use crate::error::{shape_err, Result};
use crate::gpu::tune::{kernels_hash, KernelSet};
use crate::gpu::{Access, BufView, Dispatch, GpuContext, Grid, Kernel, KernelSpec};
use crate::kernels::elementwise::{reciprocal, DIVIDE_WGSL, ELEM_F32, ELEM_VEC4};
use crate::kernels::reduce::sum_partials;

const COMMON: &str = include_str!("../../../shaders/groupnorm_common.wgsl");
const STATS: &str = include_str!("../../../shaders/groupnorm_stats.wgsl");
const STATS_FINISH: &str = include_str!("../../../shaders/groupnorm_stats_finish.wgsl");
const APPLY: &str = include_str!("../../../shaders/groupnorm_apply.wgsl");
const BACKWARD: &str = include_str!("../../../shaders/groupnorm_backward.wgsl");
const BACKWARD_COEFFS: &str = include_str!("../../../shaders/groupnorm_backward_coeffs.wgsl");
const BACKWARD_APPLY: &str = include_str!("../../../shaders/groupnorm_backward_apply.wgsl");

use Access::{Read as R, ReadWrite as W, Uniform as U};

/// The memory-bound kernels as (one channel, a vec4 of channels) per invocation.
const STATS_K: [Kernel<Params>; 2] = [
    Kernel::portable(
        "gn_stats_partials",
        &[ELEM_F32, COMMON, STATS],
        "gn_stats_partials",
        &[R, W, U],
    ),
    Kernel::portable(
        "gn_stats_partials_vec4",
        &[ELEM_VEC4, COMMON, STATS],
        "gn_stats_partials",
        &[R, W, U],
    ),
];
const APPLY_K: [Kernel<Params>; 2] = [
    Kernel::portable(
        "gn_apply",
        &[DIVIDE_WGSL, ELEM_F32, COMMON, APPLY],
        "gn_apply",
        &[R, R, W, U],
    ),
    Kernel::portable(
        "gn_apply_vec4",
        &[DIVIDE_WGSL, ELEM_VEC4, COMMON, APPLY],
        "gn_apply",
        &[R, R, W, U],
    ),
];
const BACKWARD_K: [Kernel<Params>; 2] = [
    Kernel::portable(
        "gn_backward_partials",
        &[ELEM_F32, COMMON, BACKWARD],
        "gn_backward_partials",
        &[R, R, R, W, U],
    ),
    Kernel::portable(
        "gn_backward_partials_vec4",
        &[ELEM_VEC4, COMMON, BACKWARD],
        "gn_backward_partials",
        &[R, R, R, W, U],
    ),
];
const BACKWARD_APPLY_K: [Kernel<Params>; 2] = [
    Kernel::portable(
        "gn_backward_apply",
        &[DIVIDE_WGSL, ELEM_F32, COMMON, BACKWARD_APPLY],
        "gn_backward_apply",
        &[R, R, R, W, U],
    ),
    Kernel::portable(
        "gn_backward_apply_vec4",
        &[DIVIDE_WGSL, ELEM_VEC4, COMMON, BACKWARD_APPLY],
        "gn_backward_apply",
        &[R, R, R, W, U],
    ),
];
/// The one-pixel path's kernels: a frame (GPU-shaped, a workgroup per group;
/// or serial, an invocation per group) around a body (forward, backward), as
/// (one channel, a vec4) per element. Each source list gives `Elem` its
/// `elem_sum`, the sum of its channels.
const PIXEL_WORKGROUP: &str = include_str!("../../../shaders/groupnorm_pixel_workgroup.wgsl");
const PIXEL_SERIAL: &str = include_str!("../../../shaders/groupnorm_pixel_serial.wgsl");
const PIXEL_FORWARD: &str = include_str!("../../../shaders/groupnorm_pixel_forward.wgsl");
const PIXEL_BACKWARD: &str = include_str!("../../../shaders/groupnorm_pixel_backward.wgsl");
const SUM_F32: &str = "fn elem_sum(v: Elem) -> f32 { return v; }\n";
const SUM_VEC4: &str = "fn elem_sum(v: Elem) -> f32 { return v.x + v.y + v.z + v.w; }\n";
const PIXEL_FORWARD_BINDINGS: &[Access] = &[R, R, R, W, W, U];
const PIXEL_BACKWARD_BINDINGS: &[Access] = &[R, R, R, R, W, W, U];

/// `[frame][elem]` kernels of one body, named `gn_pixel_{body}{_serial}{_vec4}`.
macro_rules! pixel_kernels {
    ($body:expr, $bindings:expr, $names:expr) => {
        [
            [
                Kernel::portable(
                    $names[0],
                    &[ELEM_F32, SUM_F32, COMMON, PIXEL_WORKGROUP, $body],
                    "gn_pixel",
                    $bindings,
                ),
                Kernel::portable(
                    $names[1],
                    &[ELEM_VEC4, SUM_VEC4, COMMON, PIXEL_WORKGROUP, $body],
                    "gn_pixel",
                    $bindings,
                ),
            ],
            [
                Kernel::portable(
                    $names[2],
                    &[ELEM_F32, SUM_F32, COMMON, PIXEL_SERIAL, $body],
                    "gn_pixel",
                    $bindings,
                ),
                Kernel::portable(
                    $names[3],
                    &[ELEM_VEC4, SUM_VEC4, COMMON, PIXEL_SERIAL, $body],
                    "gn_pixel",
                    $bindings,
                ),
            ],
        ]
    };
}
const PIXEL_FORWARD_K: [[Kernel<Params>; 2]; 2] = pixel_kernels!(
    PIXEL_FORWARD,
    PIXEL_FORWARD_BINDINGS,
    [
        "gn_pixel_forward",
        "gn_pixel_forward_vec4",
        "gn_pixel_forward_serial",
        "gn_pixel_forward_serial_vec4"
    ]
);
const PIXEL_BACKWARD_K: [[Kernel<Params>; 2]; 2] = pixel_kernels!(
    PIXEL_BACKWARD,
    PIXEL_BACKWARD_BINDINGS,
    [
        "gn_pixel_backward",
        "gn_pixel_backward_vec4",
        "gn_pixel_backward_serial",
        "gn_pixel_backward_serial_vec4"
    ]
);

const STATS_FINISH_K: Kernel<Params> = Kernel::portable(
    "gn_stats_finish",
    &[ELEM_F32, COMMON, STATS_FINISH],
    "gn_stats_finish",
    &[W, R, R, W, U],
);
const BACKWARD_COEFFS_K: Kernel<Params> = Kernel::portable(
    "gn_backward_coeffs",
    &[ELEM_F32, COMMON, BACKWARD_COEFFS],
    "gn_backward_coeffs",
    &[W, R, R, U],
);

/// Seconds each one-pixel frame is timed for when tuning.
const TIME_PER_TRY: f64 = 0.02;

/// The hash of the family's kernel sources, which a cached choice must match.
fn sources() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| kernels_hash(&all_kernels()))
}

/// Pass 1 aims for this many invocations (images × splits × channels).
const TARGET_INVOCATIONS: usize = 65536;
/// Pass 2 runs one invocation per (image, group) over splits × C/G partials; at most this many.
const MAX_GROUP_PARTIALS: usize = 4096;
/// Pass 1 runs at least this many rows (where the image has them): its shifted
/// sums are more accurate than pass 2's sequential pairwise merges.
const MIN_ROWS_PER_SPLIT: usize = 32;

/// Every kernel of the family, for the contract test.
pub fn all_kernels() -> Vec<KernelSpec> {
    let mut all: Vec<KernelSpec> = [STATS_K, APPLY_K, BACKWARD_K, BACKWARD_APPLY_K]
        .iter()
        .flatten()
        .map(|k| k.spec())
        .collect();
    all.extend([STATS_FINISH_K.spec(), BACKWARD_COEFFS_K.spec()]);
    all.extend(
        PIXEL_FORWARD_K
            .iter()
            .chain(&PIXEL_BACKWARD_K)
            .flatten()
            .map(|k| k.spec()),
    );
    all
}

crate::gpu_params! {
    struct Params {
        images: u32,
        hw: u32,
        channels: u32,
        channels_f32: u32,
        groups: u32,
        group_size: u32,
        splits: u32,
        rows_per_split: u32,
        second: u32,
        eps: f32,
        inv_channels: f32,
        coeffs_at: u32,
    }
}

/// A planned group norm: shape `[N, H, W, C]`, `groups` dividing C, and `eps`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GroupNorm {
    pub shape: [usize; 4],
    pub groups: usize,
    pub eps: f32,
    /// Pass 1 splits the H·W rows of each image into `splits` runs of `rows_per_split`.
    pub splits: usize,
    pub rows_per_split: usize,
    /// The one-pixel kernels' frame; None: the GPU-shaped one with `--kernels
    /// gpu`, else the adapter's tuned choice.
    pub pixel_frame: Option<PixelFrame>,
}

/// How the one-pixel kernels share out a group's channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PixelFrame {
    /// GPU-shaped: a workgroup of 64 per group, summed in workgroup memory.
    Workgroup,
    /// An invocation per group, no barriers (CPU drivers).
    Serial,
}

impl PixelFrame {
    pub const ALL: [PixelFrame; 2] = [PixelFrame::Workgroup, PixelFrame::Serial];

    pub fn name(self) -> &'static str {
        match self {
            PixelFrame::Workgroup => "workgroup",
            PixelFrame::Serial => "serial",
        }
    }

    /// The frame's grid over `groups` (image, group) pairs.
    fn grid(self, groups: usize) -> Grid {
        match self {
            PixelFrame::Workgroup => Grid::Groups(groups),
            PixelFrame::Serial => Grid::Invocations(groups),
        }
    }
}

/// Buffers of [`GroupNorm::forward`]: `x`, `y` are `[N,H,W,C]`, `gamma`, `beta`
/// `[C]`, `stats` receives `[mean (N×G), rstd (N×G)]`.
pub struct GroupNormForward<'a> {
    pub x: BufView<'a>,
    pub gamma: BufView<'a>,
    pub beta: BufView<'a>,
    pub y: BufView<'a>,
    pub stats: BufView<'a>,
    /// At least [`GroupNorm::scratch_len`] elements.
    pub scratch: BufView<'a>,
}

/// Buffers of [`GroupNorm::backward`]; `stats` as the forward wrote them.
pub struct GroupNormBackward<'a> {
    pub x: BufView<'a>,
    pub dy: BufView<'a>,
    pub gamma: BufView<'a>,
    pub stats: BufView<'a>,
    pub dx: BufView<'a>,
    pub dgamma: BufView<'a>,
    pub dbeta: BufView<'a>,
    /// At least [`GroupNorm::scratch_len`] elements.
    pub scratch: BufView<'a>,
}

/// Scratch layout: two halves of pass-1 partials and the coefficients, each at
/// an offset the adapter can bind (and a multiple of 4 for vec4 views).
struct Layout {
    half: usize,
    second: usize,
    coeffs: usize,
    coeffs_len: usize,
}

impl GroupNorm {
    pub fn new(shape: [usize; 4], groups: usize, eps: f32) -> Result<GroupNorm> {
        let [n, h, w, c] = shape;
        if shape.contains(&0) {
            return shape_err(format!("groupnorm: shape {shape:?} (NHWC) holds no elements"));
        }
        if groups == 0 || !c.is_multiple_of(groups) {
            return shape_err(format!("groupnorm: {groups} groups do not divide C = {c} channels"));
        }
        if eps.is_nan() || eps <= 0.0 {
            return shape_err(format!("groupnorm: eps must be positive, got {eps}"));
        }
        if n > 65535 {
            return shape_err(format!("groupnorm: at most 65535 images (one grid dimension), got {n}"));
        }
        let hw = h * w;
        let v = Self::width_of(c / groups);
        let per_group = TARGET_INVOCATIONS.div_ceil(n * c / v);
        let cap = (MAX_GROUP_PARTIALS / (c / groups)).max(1);
        let splits = per_group.min(cap).clamp(1, hw.div_ceil(MIN_ROWS_PER_SPLIT));
        let rows_per_split = hw.div_ceil(splits);
        Ok(GroupNorm {
            shape,
            groups,
            eps,
            splits: hw.div_ceil(rows_per_split),
            rows_per_split,
            pixel_frame: None,
        })
    }

    /// Channels per invocation: 4 when a group's channels divide by 4.
    fn width_of(group_size: usize) -> usize {
        if group_size.is_multiple_of(4) {
            4
        } else {
            1
        }
    }

    fn width(&self) -> usize {
        Self::width_of(self.shape[3] / self.groups)
    }

    /// Elements of x (N·H·W·C).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Elements of `stats`: mean then rstd for each (image, group).
    pub fn stats_len(&self) -> usize {
        2 * self.shape[0] * self.groups
    }

    fn layout(&self, ctx: &GpuContext) -> Layout {
        let align = (ctx.limits.min_storage_buffer_offset_alignment as usize / 4).max(4);
        let round = |n: usize| n.div_ceil(align) * align;
        let [n, _, _, c] = self.shape;
        let half = n * self.splits * c;
        Layout {
            half,
            second: round(half),
            coeffs: round(round(half) + half),
            coeffs_len: 4 * n * c,
        }
    }

    /// Scratch elements forward and backward need.
    pub fn scratch_len(&self, ctx: &GpuContext) -> usize {
        let l = self.layout(ctx);
        l.coeffs + l.coeffs_len
    }

    fn params(&self, v: usize, second: usize) -> Result<Params> {
        let [n, h, w, c] = self.shape;
        Ok(Params {
            images: n as u32,
            hw: (h * w) as u32,
            channels: (c / v) as u32,
            channels_f32: c as u32,
            groups: self.groups as u32,
            group_size: (c / self.groups) as u32,
            splits: self.splits as u32,
            rows_per_split: self.rows_per_split as u32,
            second: (second / v) as u32,
            eps: self.eps,
            inv_channels: reciprocal("groupnorm", c / v)?,
            coeffs_at: 0,
        })
    }

    fn check(&self, views: &[(&str, &BufView<'_>, usize)]) -> Result<()> {
        for (what, view, want) in views {
            if view.len != *want {
                return shape_err(format!(
                    "groupnorm {:?} with {} groups: {what} has {} elements, needs {want}",
                    self.shape, self.groups, view.len
                ));
            }
        }
        Ok(())
    }

    /// `(layout, pass-1 partials, coefficients, partials and coefficients together)`.
    fn scratch<'a>(
        &self,
        ctx: &GpuContext,
        scratch: BufView<'a>,
    ) -> Result<(Layout, BufView<'a>, BufView<'a>, BufView<'a>)> {
        let l = self.layout(ctx);
        if scratch.len < l.coeffs + l.coeffs_len {
            return shape_err(format!(
                "groupnorm: scratch holds {} elements, needs {}",
                scratch.len,
                l.coeffs + l.coeffs_len
            ));
        }
        let partials = BufView {
            len: l.second + l.half,
            ..scratch
        };
        let coeffs = BufView {
            offset: scratch.offset + l.coeffs,
            len: l.coeffs_len,
            ..scratch
        };
        let both = BufView {
            len: l.coeffs + l.coeffs_len,
            ..scratch
        };
        Ok((l, partials, coeffs, both))
    }

    /// The forward dispatches (three, or one for one-pixel images): `y` and
    /// `stats` from `x`, `gamma`, `beta`.
    pub fn forward(&self, ctx: &GpuContext, b: &GroupNormForward<'_>) -> Result<Vec<Dispatch>> {
        let (len, c, ng) = (self.numel(), self.shape[3], self.stats_len());
        self.check(&[
            ("x", &b.x, len),
            ("y", &b.y, len),
            ("gamma", &b.gamma, c),
            ("beta", &b.beta, c),
            ("stats", &b.stats, ng),
        ])?;
        let (l, partials, coeffs, both) = self.scratch(ctx, b.scratch)?;
        let coeffs = BufView {
            len: 3 * self.shape[0] * c,
            ..coeffs
        };
        let v = self.width();
        let vec = (v == 4) as usize;
        let p1 = self.params(v, l.second)?;
        if self.one_pixel() {
            let frame = self.frame(ctx);
            let views = [b.x, b.gamma, b.beta, b.y, b.stats];
            let kernel = &PIXEL_FORWARD_K[frame as usize][vec];
            let grid = frame.grid(self.shape[0] * self.groups);
            return Ok(vec![ctx.dispatch(kernel, &[], &views, &p1, grid)?]);
        }
        let pass1 = ctx.dispatch(&STATS_K[vec], &[], &[b.x, partials], &p1, Grid::Invocations(l.half / v))?;
        let p2 = Params {
            coeffs_at: l.coeffs as u32,
            ..self.params(1, l.second)?
        };
        let pass2 = ctx.dispatch(
            &STATS_FINISH_K,
            &[],
            &[both, b.gamma, b.beta, b.stats],
            &p2,
            Grid::Invocations(ng / 2),
        )?;
        let pass3 = ctx.dispatch(&APPLY_K[vec], &[], &[b.x, coeffs, b.y], &p1, self.image_grid(v))?;
        Ok(vec![pass1, pass2, pass3])
    }

    /// The backward dispatches (five, or three for one-pixel images): `dx`,
    /// `dgamma`, `dbeta` from `x`, `dy`, `gamma` and the forward's `stats`.
    pub fn backward(&self, ctx: &GpuContext, b: &GroupNormBackward<'_>) -> Result<Vec<Dispatch>> {
        let (len, c, ng) = (self.numel(), self.shape[3], self.stats_len());
        self.check(&[
            ("x", &b.x, len),
            ("dy", &b.dy, len),
            ("dx", &b.dx, len),
            ("gamma", &b.gamma, c),
            ("dgamma", &b.dgamma, c),
            ("dbeta", &b.dbeta, c),
            ("stats", &b.stats, ng),
        ])?;
        let (l, partials, coeffs, both) = self.scratch(ctx, b.scratch)?;
        let v = self.width();
        let vec = (v == 4) as usize;
        let p1 = self.params(v, l.second)?;
        let pass1 = if self.one_pixel() {
            let frame = self.frame(ctx);
            let views = [b.x, b.dy, b.gamma, b.stats, b.dx, partials];
            let kernel = &PIXEL_BACKWARD_K[frame as usize][vec];
            let grid = frame.grid(self.shape[0] * self.groups);
            ctx.dispatch(kernel, &[], &views, &p1, grid)?
        } else {
            ctx.dispatch(
                &BACKWARD_K[vec],
                &[],
                &[b.x, b.dy, b.stats, partials],
                &p1,
                Grid::Invocations(l.half / v),
            )?
        };
        // Partials are [N·S][C] rows: Σ dy (first half) and Σ dy·xhat (second).
        let rows = self.shape[0] * self.splits;
        let sum_dy = BufView {
            len: l.half,
            ..partials
        };
        let sum_dy_xhat = BufView {
            offset: partials.offset + l.second,
            len: l.half,
            ..partials
        };
        let dbeta = sum_partials(ctx, sum_dy, rows, b.dbeta, 1.0)?;
        let dgamma = sum_partials(ctx, sum_dy_xhat, rows, b.dgamma, 1.0)?;
        if self.one_pixel() {
            // dx is written: only the parameter gradients' sums are left.
            return Ok(vec![pass1, dbeta, dgamma]);
        }
        let p2 = Params {
            coeffs_at: l.coeffs as u32,
            ..self.params(1, l.second)?
        };
        let pass2 = ctx.dispatch(
            &BACKWARD_COEFFS_K,
            &[],
            &[both, b.gamma, b.stats],
            &p2,
            Grid::Invocations(ng / 2),
        )?;
        let pass3 = ctx.dispatch(
            &BACKWARD_APPLY_K[vec],
            &[],
            &[b.x, b.dy, coeffs, b.dx],
            &p1,
            self.image_grid(v),
        )?;
        Ok(vec![pass1, dbeta, dgamma, pass2, pass3])
    }

    /// Whether the one-pixel kernels run (H = W = 1: one pass each way, a
    /// workgroup per (image, group)); their partials are the general path's
    /// with one split.
    fn one_pixel(&self) -> bool {
        self.shape[1] * self.shape[2] == 1 && self.splits == 1
    }

    /// The one-pixel kernels' frame here: the one asked for, the GPU-shaped one
    /// with `--kernels gpu`, else the tuned choice (forward and backward timed
    /// together; by default serial on a CPU adapter, else GPU-shaped).
    fn frame(&self, ctx: &GpuContext) -> PixelFrame {
        if let Some(f) = self.pixel_frame {
            return f;
        }
        if ctx.kernels == KernelSet::Gpu {
            return PixelFrame::Workgroup;
        }
        let default = if ctx.is_cpu {
            PixelFrame::Serial
        } else {
            PixelFrame::Workgroup
        };
        let [n, _, _, c] = self.shape;
        let class = format!("groupnorm.pixel {n}x{c} G{}", self.groups);
        ctx.tuner.choose_among(
            &class,
            sources(),
            &PixelFrame::ALL,
            PixelFrame::name,
            default,
            |frame| self.time_frame(ctx, frame),
        )
    }

    /// Seconds per forward and backward on `frame`, over zeroed buffers.
    fn time_frame(&self, ctx: &GpuContext, frame: PixelFrame) -> Result<f64> {
        let gn = GroupNorm {
            pixel_frame: Some(frame),
            ..*self
        };
        let (len, c) = (self.numel(), self.shape[3]);
        let zeros = |n: usize| ctx.zeros(n);
        let [x, y, dy, dx] = [len; 4].map(zeros);
        let [gamma, beta, dgamma, dbeta] = [c; 4].map(zeros);
        let (stats, scratch) = (zeros(self.stats_len()), zeros(self.scratch_len(ctx)));
        let mut ds = gn.forward(
            ctx,
            &GroupNormForward {
                x: x.view(),
                gamma: gamma.view(),
                beta: beta.view(),
                y: y.view(),
                stats: stats.view(),
                scratch: scratch.view(),
            },
        )?;
        ds.extend(gn.backward(
            ctx,
            &GroupNormBackward {
                x: x.view(),
                dy: dy.view(),
                gamma: gamma.view(),
                stats: stats.view(),
                dx: dx.view(),
                dgamma: dgamma.view(),
                dbeta: dbeta.view(),
                scratch: scratch.view(),
            },
        )?);
        time_dispatches(ctx, &ds, TIME_PER_TRY, 2)
    }

    /// One image per grid z; x and y fold over H·W·C / v invocations.
    fn image_grid(&self, v: usize) -> Grid {
        let [n, h, w, c] = self.shape;
        Grid::InvocationLayers(h * w * c / v, n)
    }
}
