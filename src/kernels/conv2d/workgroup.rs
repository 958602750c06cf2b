//! The workgroup path: implicit-GEMM kernels shaped for GPUs, where an 8-lane
//! workgroup (the tiled path's) fills a quarter of a warp.
//!
//! Each pass is a GEMM read straight from the NHWC tensors (see
//! `shaders/conv2d_workgroup_common.wgsl`): forward M = pixels, N = Cout,
//! K = taps·Cin; dx M = pixels, N = Cin, K = taps·Cout (the weights read in
//! place, no flipped copy, no scratch); dw M = Cout, N = taps·Cin, K = pixels,
//! split over workgroups along z whose partial sums one more pass adds up
//! ([`reduction_splits_on`]). A workgroup of 256 invocations owns a 64 x 64
//! tile of the result, each invocation a 4 x 4 micro-tile in registers; K steps
//! of 16 are staged in workgroup memory (8 KiB). No subgroup operations, so
//! any subgroup width runs it, and no divisibility rule: edges are masked in
//! the kernels. With every channel count a multiple of 4 the tensors bind as
//! arrays of vec4 and each staged piece is one vec4 load ([`Variant::vec4`]).
//!
//! The storage bindings and their accessors (`x_at`, `x_quad`, `y_set`, ...)
//! are generated here ([`declarations`]), the rest is hand-written WGSL; the
//! options (GELU, bias, residual, accumulate, ...) are override constants.
//!
//! Tuning times this path with the others, and `--kernels gpu` forces it
//! (`Path::best`); every case of the check table runs it.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Mutex;

use super::{flag, BackwardInput, Conv2dShape, InputLike};
use crate::error::{Error, Result};
use crate::gpu::{Access, BufView, Dispatch, GpuContext, Grid, Kernel, KernelSpec, Work};
use crate::kernels::elementwise::GELU_WGSL;

use Access::{Read, ReadWrite, Uniform};

/// Invocations per workgroup (16 x 16).
pub const WORKGROUP: u32 = 256;
/// Rows and columns of the result per workgroup.
const TILE: usize = 64;
/// Reduction elements staged per step.
const TILE_K: usize = 16;
/// Workgroup memory the kernels declare: a 16 x 64 tile of each operand.
const WORKGROUP_BYTES: u32 = 2 * (TILE_K * TILE * 4) as u32;

const COMMON: &str = include_str!("../../../shaders/conv2d_workgroup_common.wgsl");
const FORWARD: &[&str] = &[
    GELU_WGSL,
    COMMON,
    include_str!("../../../shaders/conv2d_workgroup_forward.wgsl"),
];
const BACKWARD_INPUT: &[&str] = &[
    GELU_WGSL,
    COMMON,
    include_str!("../../../shaders/conv2d_workgroup_backward_input.wgsl"),
];
const BACKWARD_WEIGHT: &[&str] = &[
    GELU_WGSL,
    COMMON,
    include_str!("../../../shaders/conv2d_workgroup_backward_weight.wgsl"),
];

/// The WGSL constants the grids below rely on.
const CONSTANTS: &[(&str, i64)] = &[("TILE", TILE as i64), ("TILE_K", TILE_K as i64)];

/// A kernel's bindings in order, by WGSL name; the uniform is `p`.
type Bindings = &'static [(&'static str, Access)];

const FORWARD_BINDINGS: Bindings = &[
    ("x", Read),
    ("w", Read),
    ("bias", Read),
    ("residual", Read),
    ("y", ReadWrite),
    ("p", Uniform),
    ("x2", Read),
];
/// dx; the last two (the addends) only where the adapter has the storage buffers.
const BACKWARD_INPUT_BINDINGS: Bindings = &[
    ("dy", Read),
    ("w", Read),
    ("x", Read),
    ("x2", Read),
    ("dx", ReadWrite),
    ("dx2", ReadWrite),
    ("act_out", ReadWrite),
    ("p", Uniform),
    ("addend", Read),
    ("addend2", Read),
];
const ADDENDS: usize = 2;
const BACKWARD_WEIGHT_BINDINGS: Bindings = &[
    ("x", Read),
    ("x2", Read),
    ("dy", Read),
    ("gw", ReadWrite),
    ("gb", ReadWrite),
    ("p", Uniform),
];

const SUM: Kernel<SumParams> = Kernel::portable(
    "conv2d_workgroup_sum_reduction_splits",
    &[include_str!("../../../shaders/conv2d_workgroup_sum.wgsl")],
    "main",
    &[Read, ReadWrite, ReadWrite, Uniform],
);

/// Which GEMM a kernel computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Gemm {
    Forward,
    /// `addends`: with the two addend bindings (else dx's addends are added by copies after it).
    BackwardInput {
        addends: bool,
    },
    BackwardWeight,
}

/// One generated kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Variant {
    gemm: Gemm,
    /// Tensors as arrays of vec4 (every channel count, the cat split included, a
    /// multiple of 4): each 4-element piece staged or stored is one access.
    vec4: bool,
}

impl Variant {
    fn for_shape(gemm: Gemm, s: &Conv2dShape) -> Variant {
        Variant {
            gemm,
            vec4: [s.cin, s.cout, s.cat_split()].iter().all(|c| c.is_multiple_of(4)),
        }
    }

    fn all() -> Vec<Variant> {
        let gemms = [
            Gemm::Forward,
            Gemm::BackwardInput { addends: true },
            Gemm::BackwardInput { addends: false },
            Gemm::BackwardWeight,
        ];
        gemms
            .into_iter()
            .flat_map(|gemm| [false, true].map(|vec4| Variant { gemm, vec4 }))
            .collect()
    }

    /// The bindings the kernel declares, and those whose accessors it gets as stubs.
    fn bindings(&self) -> (Bindings, Bindings) {
        match self.gemm {
            Gemm::Forward => (FORWARD_BINDINGS, &[]),
            Gemm::BackwardInput { addends: true } => (BACKWARD_INPUT_BINDINGS, &[]),
            Gemm::BackwardInput { addends: false } => {
                BACKWARD_INPUT_BINDINGS.split_at(BACKWARD_INPUT_BINDINGS.len() - ADDENDS)
            }
            Gemm::BackwardWeight => (BACKWARD_WEIGHT_BINDINGS, &[]),
        }
    }

    fn name(&self) -> String {
        let gemm = match self.gemm {
            Gemm::Forward => "forward",
            Gemm::BackwardInput { addends: true } => "backward_input",
            Gemm::BackwardInput { addends: false } => "backward_input_no_addends",
            Gemm::BackwardWeight => "backward_weight",
        };
        let width = if self.vec4 { "vec4" } else { "f32" };
        format!("conv2d_workgroup_{gemm}_{width}")
    }

    fn kernel(&self) -> Kernel<Params> {
        let files = match self.gemm {
            Gemm::Forward => FORWARD,
            Gemm::BackwardInput { .. } => BACKWARD_INPUT,
            Gemm::BackwardWeight => BACKWARD_WEIGHT,
        };
        let (declared, stubs) = self.bindings();
        // A binding list per variant, made once per process (the kernels are cached).
        let access: &'static [Access] = Box::leak(declared.iter().map(|&(_, a)| a).collect());
        let wgsl = declarations(declared, stubs, self.vec4);
        Kernel::generated(self.name(), files, wgsl, "main", access)
            .with_workgroup_size([WORKGROUP, 1, 1])
            .with_constants(CONSTANTS)
    }
}

/// The kernel of `v`, built once per process.
fn kernel(v: Variant) -> Kernel<Params> {
    static KERNELS: Mutex<Option<HashMap<Variant, Kernel<Params>>>> = Mutex::new(None);
    let mut cache = KERNELS.lock().unwrap();
    let map = cache.get_or_insert_with(HashMap::new);
    map.entry(v).or_insert_with(|| v.kernel()).clone()
}

/// The WGSL of the storage bindings `declared` (in binding order; the uniform
/// is `p: Params`) and their accessors, each element an `f32` or, with `vec4`,
/// a `vec4<f32>`: `NAME_at(i)` and `NAME_quad(i)` read element i and elements
/// i..i+3 (i a multiple of 4), `NAME_set(i, v)` and `NAME_set_quad(i, v)` write
/// them. `stubs` get readers that return 0 and no binding. The indices are
/// always of f32 elements; the kernels call the one-element accessors only
/// without vec4 and the 4-element ones in the vec4 variant (where they are
/// single accesses).
fn declarations(declared: &[(&str, Access)], stubs: &[(&str, Access)], vec4: bool) -> String {
    let mut s = format!("\n// Generated by src/kernels/conv2d/workgroup.rs.\nconst VEC4: bool = {vec4};\n");
    let element = if vec4 { "vec4<f32>" } else { "f32" };
    for (binding, &(name, access)) in declared.iter().enumerate() {
        let space = match access {
            Uniform => {
                writeln!(s, "@group(0) @binding({binding}) var<uniform> {name}: Params;").unwrap();
                continue;
            }
            Read => "storage, read",
            ReadWrite => "storage, read_write",
        };
        writeln!(
            s,
            "@group(0) @binding({binding}) var<{space}> {name}: array<{element}>;"
        )
        .unwrap();
        if vec4 {
            writeln!(
                s,
                "fn {name}_at(i: u32) -> f32 {{ let q = {name}[i / 4u]; return q[i % 4u]; }}\n\
                 fn {name}_quad(i: u32) -> vec4<f32> {{ return {name}[i / 4u]; }}"
            )
            .unwrap();
        } else {
            writeln!(
                s,
                "fn {name}_at(i: u32) -> f32 {{ return {name}[i]; }}\n\
                 fn {name}_quad(i: u32) -> vec4<f32> {{ \
                 return vec4<f32>({name}[i], {name}[i + 1u], {name}[i + 2u], {name}[i + 3u]); }}"
            )
            .unwrap();
        }
        if access == ReadWrite {
            if vec4 {
                writeln!(
                    s,
                    "fn {name}_set(i: u32, v: f32) {{ var q = {name}[i / 4u]; q[i % 4u] = v; {name}[i / 4u] = q; }}\n\
                     fn {name}_set_quad(i: u32, v: vec4<f32>) {{ {name}[i / 4u] = v; }}"
                )
                .unwrap();
            } else {
                writeln!(
                    s,
                    "fn {name}_set(i: u32, v: f32) {{ {name}[i] = v; }}\n\
                     fn {name}_set_quad(i: u32, v: vec4<f32>) {{ \
                     {name}[i] = v.x; {name}[i + 1u] = v.y; {name}[i + 2u] = v.z; {name}[i + 3u] = v.w; }}"
                )
                .unwrap();
            }
        }
    }
    for &(name, _) in stubs {
        writeln!(
            s,
            "fn {name}_at(i: u32) -> f32 {{ return 0.0; }}\n\
             fn {name}_quad(i: u32) -> vec4<f32> {{ return vec4<f32>(0.0); }}"
        )
        .unwrap();
    }
    s
}

/// Every kernel of the workgroup path, for the contract test.
pub(super) fn kernels() -> Vec<KernelSpec> {
    let mut all: Vec<KernelSpec> = Variant::all().into_iter().map(|v| kernel(v).spec()).collect();
    all.push(SUM.spec());
    all
}

crate::gpu_params! {
    struct Params {
        n: u32,
        h: u32,
        w: u32,
        cin: u32,
        cout: u32,
        k: u32,
        pad: u32,
        cat_split: u32,
        /// The GEMM's rows, columns and reduction length.
        m: u32,
        ncols: u32,
        kdim: u32,
        /// dw: pixels per reduction split.
        per_reduction_split: u32,
        /// dw: elements between reduction splits' partial rows (0: in place).
        stride: u32,
        /// dw: where db's partials start in a row.
        db_offset: u32,
        pad0: u32,
        pad1: u32,
    }
}

crate::gpu_params! {
    struct SumParams {
        total: u32,
        w_len: u32,
        stride: u32,
        reduction_splits: u32,
        accumulate: u32,
        pad0: u32,
        pad1: u32,
        pad2: u32,
    }
}

fn params(s: &Conv2dShape, [m, ncols, kdim]: [usize; 3]) -> Params {
    Params {
        n: s.n as u32,
        h: s.h as u32,
        w: s.w as u32,
        cin: s.cin as u32,
        cout: s.cout as u32,
        k: s.k as u32,
        pad: (s.k / 2) as u32,
        cat_split: s.cat_split() as u32,
        m: m as u32,
        ncols: ncols as u32,
        kdim: kdim as u32,
        per_reduction_split: 0,
        stride: 0,
        db_offset: 0,
        pad0: 0,
        pad1: 0,
    }
}

/// Whether the adapter runs the path's workgroups: 256 invocations, 8 KiB of
/// workgroup memory and the storage buffers of the forward, dw and addend-less
/// dx kernels (WebGPU's minimum limits allow all of them); an error saying
/// which limit falls short otherwise.
pub fn usable(ctx: &GpuContext) -> Result<()> {
    let l = &ctx.limits;
    let storage = [
        FORWARD_BINDINGS,
        BACKWARD_WEIGHT_BINDINGS,
        Variant {
            gemm: Gemm::BackwardInput { addends: false },
            vec4: false,
        }
        .bindings()
        .0,
    ]
    .iter()
    .map(|b| ctx.storage_buffers(&b.iter().map(|&(_, a)| a).collect::<Vec<_>>()))
    .max()
    .unwrap_or(0);
    let short = if l.max_compute_invocations_per_workgroup < WORKGROUP || l.max_compute_workgroup_size_x < WORKGROUP {
        Some(format!(
            "workgroups of {WORKGROUP} invocations (the adapter allows {})",
            l.max_compute_invocations_per_workgroup
                .min(l.max_compute_workgroup_size_x)
        ))
    } else if l.max_compute_workgroup_storage_size < WORKGROUP_BYTES {
        Some(format!(
            "{WORKGROUP_BYTES} bytes of workgroup memory (the adapter allows {})",
            l.max_compute_workgroup_storage_size
        ))
    } else if (l.max_storage_buffers_per_shader_stage as usize) < storage {
        Some(format!(
            "{storage} storage buffers per stage (the adapter allows {})",
            l.max_storage_buffers_per_shader_stage
        ))
    } else {
        None
    };
    match short {
        None => Ok(()),
        Some(need) => Err(Error::Gpu(format!("conv2d workgroup path: needs {need}"))),
    }
}

/// One workgroup per 64 x 64 tile of an `m` x `n` result: row tiles folded into x and y, column tiles along z.
fn tile_grid(m: usize, n: usize) -> Result<Grid> {
    let layers = n.div_ceil(TILE);
    if layers > 65535 {
        return crate::error::shape_err(format!("conv2d: {n} GEMM columns are too many for one grid"));
    }
    Ok(Grid::GroupLayers(m.div_ceil(TILE), layers))
}

pub(super) fn forward(
    ctx: &GpuContext,
    s: &Conv2dShape,
    x: InputLike<'_>,
    w: BufView<'_>,
    bias: Option<BufView<'_>>,
    residual: Option<BufView<'_>>,
    y: BufView<'_>,
) -> Result<Dispatch> {
    usable(ctx)?;
    let v = Variant::for_shape(Gemm::Forward, s);
    let constants = [
        ("GELU_INPUT", flag(s.gelu_input)),
        ("HAS_BIAS", flag(s.bias)),
        ("HAS_RESIDUAL", flag(s.residual)),
    ];
    // Absent optional inputs bind x in their place; the kernel never reads them.
    let views = [
        x.first,
        w,
        bias.unwrap_or(x.first),
        residual.unwrap_or(x.first),
        y,
        x.second_or_first(),
    ];
    let p = params(s, [s.pixels(), s.cout, s.k * s.k * s.cin]);
    ctx.dispatch(&kernel(v), &constants, &views, &p, tile_grid(s.pixels(), s.cout)?)
}

/// dx, `act = gelu(x)` and the addends in one pass (the addends in copies after
/// it where the adapter lacks the storage buffers for their bindings).
pub(super) fn backward_input(ctx: &GpuContext, s: &Conv2dShape, a: &BackwardInput<'_>) -> Result<Vec<Dispatch>> {
    usable(ctx)?;
    let with_addends = Variant {
        gemm: Gemm::BackwardInput { addends: true },
        vec4: false,
    };
    let all_bindings: Vec<Access> = with_addends.bindings().0.iter().map(|&(_, a)| a).collect();
    let fused = ctx.limits.max_storage_buffers_per_shader_stage as usize >= ctx.storage_buffers(&all_bindings);
    let v = Variant::for_shape(Gemm::BackwardInput { addends: fused }, s);
    let act = a.act.filter(|_| s.gelu_input);
    let constants = [
        ("GELU_INPUT", flag(s.gelu_input)),
        ("WRITE_ACT", flag(act.is_some())),
        ("HAS_ADDEND", flag(fused && a.addend.is_some())),
        ("HAS_ADDEND2", flag(fused && a.addend2.is_some())),
    ];
    // Absent bindings take dy's (read) and dx's (written) place; the kernel never touches them.
    let mut views = vec![
        a.dy,
        a.w,
        a.x.first,
        a.x.second_or_first(),
        a.dx.first,
        a.dx.second_or_first(),
        act.unwrap_or(a.dx.first),
    ];
    if fused {
        views.extend([a.addend.unwrap_or(a.dy), a.addend2.unwrap_or(a.dy)]);
    }
    let p = params(s, [s.pixels(), s.cin, s.k * s.k * s.cout]);
    let mut ds = vec![ctx.dispatch(&kernel(v), &constants, &views, &p, tile_grid(s.pixels(), s.cin)?)?];
    if !fused {
        use crate::kernels::elementwise::{copy_channels, ChannelRange, CopyMode};
        let halves = [
            (a.addend, a.dx.first, s.cat_split()),
            (a.addend2, a.dx.second_or_first(), s.cin - s.cat_split()),
        ];
        for (addend, dx, channels) in halves {
            if let Some(addend) = addend {
                let all = ChannelRange::all(channels);
                ds.push(copy_channels(ctx, addend, all, dx, all, CopyMode::Accumulate)?);
            }
        }
    }
    Ok(ds)
}

/// Most reduction splits of dw, what [`scratch_len`] makes room for: one per
/// 512 pixels, at most 64, but enough that none sums more than 16384 pixels
/// (llvmpipe ends an invocation after 65535 loop iterations).
pub fn max_reduction_splits(s: &Conv2dShape) -> usize {
    s.pixels()
        .div_ceil(512)
        .clamp(1, 64)
        .max(s.pixels().div_ceil(16 * 1024))
}

/// The reduction splits on this adapter: enough workgroups to keep it busy
/// (hundreds on a GPU, two per thread on a CPU adapter), within
/// [`max_reduction_splits`]. One split writes dw and db in place, with no sum pass.
pub fn reduction_splits_on(ctx: &GpuContext, s: &Conv2dShape) -> usize {
    let tiles = s.cout.div_ceil(TILE) * (s.k * s.k * s.cin).div_ceil(TILE);
    let least = s.pixels().div_ceil(16 * 1024);
    let splits = ctx
        .busy_workgroups()
        .div_ceil(tiles)
        .clamp(least, max_reduction_splits(s));
    // No split without pixels.
    s.pixels().div_ceil(s.pixels().div_ceil(splits))
}

/// Scratch elements dw needs: a row of dw and db partial sums per reduction split (none for one).
pub fn scratch_len(s: &Conv2dShape) -> usize {
    match max_reduction_splits(s) {
        1 => 0,
        splits => splits * (s.w_len() + s.cout),
    }
}

/// dw and, when `db` is given, db: summed per reduction split into scratch and
/// then added up, or with one split written (or accumulated) in place.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward_weight(
    ctx: &GpuContext,
    s: &Conv2dShape,
    x: InputLike<'_>,
    dy: BufView<'_>,
    scratch: BufView<'_>,
    dw: BufView<'_>,
    db: Option<BufView<'_>>,
    accumulate: bool,
) -> Result<Vec<Dispatch>> {
    usable(ctx)?;
    let splits = reduction_splits_on(ctx, s);
    let per_reduction_split = s.pixels().div_ceil(splits);
    let stride = s.w_len() + s.cout;
    let in_place = splits == 1;
    let (gw, gb) = if in_place {
        (dw, db.unwrap_or(dw))
    } else {
        let partials = BufView {
            len: splits * stride,
            ..scratch
        };
        (partials, partials)
    };
    let ncols = s.k * s.k * s.cin;
    let mut p = params(s, [s.cout, ncols, s.pixels()]);
    p.per_reduction_split = per_reduction_split as u32;
    if !in_place {
        p.stride = stride as u32;
        p.db_offset = s.w_len() as u32;
    }
    let constants = [
        ("GELU_INPUT", flag(s.gelu_input)),
        ("ACCUMULATE", flag(in_place && accumulate)),
        ("HAS_DB", flag(db.is_some())),
    ];
    let grid = [ncols.div_ceil(TILE), s.cout.div_ceil(TILE), splits];
    if grid.iter().any(|&g| g > 65535) {
        return crate::error::shape_err(format!(
            "conv2d: backward weight grid {grid:?} exceeds 65535 workgroups"
        ));
    }
    let grid = Grid::Workgroups(grid.map(|g| g as u32));
    let views = [x.first, x.second_or_first(), dy, gw, gb];
    let keep = 1 + accumulate as usize;
    let written = if in_place { keep * stride } else { splits * stride };
    let f32s = |n: usize| 4.0 * n as f64;
    let work = Work::new(s.flops(), f32s(s.x_len() + s.y_len() + written));
    let v = Variant::for_shape(Gemm::BackwardWeight, s);
    let mut ds = vec![ctx.dispatch(&kernel(v), &constants, &views, &p, grid)?.with_work(work)];
    if !in_place {
        let total = s.w_len() + if db.is_some() { s.cout } else { 0 };
        let q = SumParams {
            total: total as u32,
            w_len: s.w_len() as u32,
            stride: stride as u32,
            reduction_splits: splits as u32,
            accumulate: accumulate as u32,
            pad0: 0,
            pad1: 0,
            pad2: 0,
        };
        let views = [gw, dw, db.unwrap_or(dw)];
        let sum = ctx.dispatch(&SUM, &[], &views, &q, Grid::Invocations(total))?;
        ds.push(sum.with_work(Work::f32s(splits * total + keep * total)));
    }
    Ok(ds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reduction_splits_stay_within_the_scratch_and_the_loop_limit() {
        for pixels in [1, 7, 511, 512, 513, 16384, 71680, 1 << 20, 16 << 20] {
            let s = Conv2dShape::new(1, 1, pixels, 4, 4, 1);
            let most = max_reduction_splits(&s);
            assert!(most >= 1 && pixels.div_ceil(most) <= 16 * 1024, "{pixels}");
            assert!(scratch_len(&s) == 0 || scratch_len(&s) == most * (s.w_len() + s.cout));
        }
    }

    #[test]
    fn every_variant_declares_the_bindings_it_states() {
        for v in Variant::all() {
            let (declared, stubs) = v.bindings();
            let wgsl = declarations(declared, stubs, v.vec4);
            for (i, (name, _)) in declared.iter().enumerate() {
                assert!(wgsl.contains(&format!("@binding({i}) var<")), "{v:?} {name}");
            }
            for (name, _) in stubs {
                assert!(!wgsl.contains(&format!("> {name}:")), "{v:?} {name}");
                assert!(wgsl.contains(&format!("fn {name}_at(")), "{v:?} {name}");
            }
        }
    }
}
