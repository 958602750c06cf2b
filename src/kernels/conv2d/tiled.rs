//! The tiled path: generated register-tiled kernels (see `codegen.rs`) and their dispatch.
//!
//! - forward: [`ForwardTile`] over x and w;
//! - dx: the weights flipped and transposed into scratch, then the same forward tile
//!   over dy (reduction over Cout) with a `* gelu'(x)` epilogue;
//! - dw (+ db): [`WeightTile`] writes per-reduction-split partial sums into scratch, one more
//!   pass adds the reduction splits into dw and db (overwriting or accumulating).
//!
//! Channel counts that are no multiple of 4 are read in place a pair or a
//! channel per load, or in a few cases copied into scratch with zero channels
//! up to a multiple of 4 (see `pad.rs`).
//!
//! Over a cat (`Conv2dShape::cat`, see [`cat_fits`]): the forward tile runs its
//! channel loop over each source in turn ([`Sources::CatInput`]), the dx tile
//! stores each output channel into the half it belongs to
//! ([`Sources::CatOutput`]), and each dw workgroup reads the source its
//! channels lie in.
//!
//! Every index the kernels compute is clamped or masked in the generated code, and the
//! shape rules (`Conv2dShape::check_*`, the narrow loads' masks, the padded copies'
//! whole vec4s and the cat tests of `Path::runs`) guarantee the rest, so the
//! kernels are compiled without bounds checks.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

use super::codegen::{self, Epilogue, ForwardTile, Sources, WeightTile, LANES};
use super::pad::{self, Padding};
use super::{Conv2dShape, InputLike};
use crate::error::{shape_err, Result};
use crate::gpu::{Access, BufView, Dispatch, GpuContext, Grid, Kernel, KernelSpec};
use crate::kernels::elementwise::GELU_WGSL;

use Access::{Read, ReadWrite, Uniform};

/// The generated kernels need subgroups of at least 8 lanes (one workgroup = 8 lanes).
pub fn usable(ctx: &GpuContext) -> bool {
    ctx.has(wgpu::Features::SUBGROUP) && ctx.subgroup_min_size >= LANES
}

/// One of a conv's three passes (what it pads, how it reads a cat).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CatPass {
    Forward,
    BackwardInput,
    BackwardWeight,
}

/// Whether the tiled path runs `pass` of this conv's cat input (always, without
/// one). The forward and dw read a cat where its halves lie when
/// `pad::cat_in_place`, and otherwise copy the halves side by side into
/// scratch. dx writes its two halves apart from a 1x1 tile over a cat only
/// (the posterior's first conv; the contract test checks fewer variants), with
/// halves of whole vec4s, and its second output's three bindings must fit the
/// adapter's storage buffers per stage: other cats run the simple dx.
pub fn cat_fits(ctx: &GpuContext, s: &Conv2dShape, pass: CatPass) -> bool {
    match pass {
        CatPass::Forward | CatPass::BackwardWeight => true,
        CatPass::BackwardInput => {
            pad::cat_in_place(s, pass)
                && (s.cat.is_none()
                    || ctx.limits.max_storage_buffers_per_shader_stage as usize
                        >= ctx.storage_buffers(CAT_OUTPUT_ACT_BINDINGS))
        }
    }
}

/// A generated kernel (after gelu.wgsl) with one subgroup per workgroup.
fn generated<P: crate::gpu::GpuParams>(name: String, wgsl: String, bindings: &'static [Access]) -> Kernel<P> {
    Kernel::generated(name, &[GELU_WGSL], wgsl, "main", bindings)
        .requiring(wgpu::Features::SUBGROUP)
        .without_bounds_checks()
        .with_workgroup_size([LANES, 1, 1])
}

const FORWARD_BINDINGS: &[Access] = &[Read, Read, Read, Read, ReadWrite, Uniform];
/// The dx tile that also writes GELU of the conv's input (binding 6).
const FORWARD_ACT_BINDINGS: &[Access] = &[Read, Read, Read, Read, ReadWrite, Uniform, ReadWrite];
/// The forward tile over a cat: x2 at binding 6.
const CAT_INPUT_BINDINGS: &[Access] = &[Read, Read, Read, Read, ReadWrite, Uniform, Read];
/// The dx tile of a conv over a cat: y2, extra2, bias2 after the others (and act).
const CAT_OUTPUT_BINDINGS: &[Access] = &[Read, Read, Read, Read, ReadWrite, Uniform, ReadWrite, Read, Read];
const CAT_OUTPUT_ACT_BINDINGS: &[Access] = &[
    Read, Read, Read, Read, ReadWrite, Uniform, ReadWrite, ReadWrite, Read, Read,
];
const WEIGHT_BINDINGS: &[Access] = &[Read, Read, ReadWrite, Uniform];
const WEIGHT_CAT_BINDINGS: &[Access] = &[Read, Read, ReadWrite, Uniform, Read];
/// The dw tile reading a padded copy from the scratch its partial sums go to.
const WEIGHT_SCRATCH_BINDINGS: &[Access] = &[ReadWrite, ReadWrite, ReadWrite, Uniform];
const WEIGHT_CAT_SCRATCH_BINDINGS: &[Access] = &[ReadWrite, ReadWrite, ReadWrite, Uniform, ReadWrite];

fn forward_kernel(t: &ForwardTile) -> Kernel<ForwardParams> {
    let act = matches!(t.epilogue, Epilogue::GeluGrad { act: true, .. });
    let bindings = match (t.sources, act) {
        (Sources::One, false) => FORWARD_BINDINGS,
        (Sources::One, true) => FORWARD_ACT_BINDINGS,
        (Sources::CatInput, _) => CAT_INPUT_BINDINGS,
        (Sources::CatOutput { .. }, false) => CAT_OUTPUT_BINDINGS,
        (Sources::CatOutput { .. }, true) => CAT_OUTPUT_ACT_BINDINGS,
    };
    generated(t.name(), codegen::forward(t), bindings)
}

fn weight_kernel(t: &WeightTile) -> Kernel<WeightParams> {
    let bindings = match (t.cat, t.scratch_inputs) {
        (false, false) => WEIGHT_BINDINGS,
        (true, false) => WEIGHT_CAT_BINDINGS,
        (false, true) => WEIGHT_SCRATCH_BINDINGS,
        (true, true) => WEIGHT_CAT_SCRATCH_BINDINGS,
    };
    generated(t.name(), codegen::weight(t), bindings)
}

/// Generated kernels are built once per process and variant.
fn cached<T: Hash + Eq + Copy, P>(
    cache: &Mutex<Option<HashMap<T, Kernel<P>>>>,
    variant: T,
    make: impl FnOnce(&T) -> Kernel<P>,
) -> Kernel<P> {
    let mut cache = cache.lock().unwrap();
    let map = cache.get_or_insert_with(HashMap::new);
    map.entry(variant).or_insert_with(|| make(&variant)).clone()
}

const UTIL: &[&str] = &[include_str!("../../../shaders/conv2d_tiled_util.wgsl")];
const FLIP_TRANSPOSE: Kernel<UtilParams> = Kernel::portable(
    "conv2d_flip_transpose",
    UTIL,
    "flip_transpose",
    &[Read, ReadWrite, Uniform],
);
const SUM_REDUCTION_SPLITS: Kernel<UtilParams> = Kernel::portable(
    "conv2d_sum_reduction_splits",
    UTIL,
    "sum_reduction_splits",
    &[Read, ReadWrite, Uniform],
);
const SUM_REDUCTION_SPLITS_PAIR: Kernel<UtilParams> = Kernel::portable(
    "conv2d_sum_reduction_splits_pair",
    UTIL,
    "sum_reduction_splits_pair",
    &[Read, ReadWrite, Uniform],
);

/// Every kernel of the tiled path: the two helpers and every tile variant
/// [`forward_tile`] and [`weight_tile`] can choose, for the contract test.
pub(super) fn kernels() -> Vec<KernelSpec> {
    let mut all = vec![
        FLIP_TRANSPOSE.spec(),
        SUM_REDUCTION_SPLITS.spec(),
        SUM_REDUCTION_SPLITS_PAIR.spec(),
    ];
    for k in [1, 3] {
        let (max_blocks, max_couts_per_lane) = forward_limits(k);
        // (gelu on the input, epilogue, sources): forward convs and the dx conv;
        // over a cat (1x1 only, see `cat_fits`) the forward's input or dx's output.
        let mut uses = Vec::new();
        let cat = k == 1;
        for act in [false, true] {
            for add in [false, true] {
                let epilogue = Epilogue::GeluGrad { act, add };
                uses.push((false, epilogue, Sources::One));
                if cat {
                    for add2 in [false, true] {
                        uses.push((false, epilogue, Sources::CatOutput { add2 }));
                    }
                }
            }
        }
        for gelu_input in [false, true] {
            for (bias, residual) in [(false, false), (false, true), (true, false), (true, true)] {
                let epilogue = Epilogue::Store { bias, residual };
                uses.push((gelu_input, epilogue, Sources::One));
                if cat {
                    uses.push((gelu_input, epilogue, Sources::CatInput));
                }
            }
        }
        if cat {
            // The dx of a plain (no GELU) conv over a cat, with either addend.
            for (residual, add2) in [(false, false), (false, true), (true, false), (true, true)] {
                let epilogue = Epilogue::Store { bias: false, residual };
                uses.push((false, epilogue, Sources::CatOutput { add2 }));
            }
        }
        for blocks in 1..=max_blocks {
            for couts_per_lane in 1..=max_couts_per_lane {
                for &(gelu_input, epilogue, sources) in &uses {
                    for vec in epilogue_widths(epilogue, sources, couts_per_lane) {
                        for x_width in [4, 2, 1] {
                            let t = ForwardTile {
                                k: k as u32,
                                rows: 1,
                                blocks: blocks as u32,
                                couts_per_lane: couts_per_lane as u32,
                                gelu_input,
                                epilogue,
                                vec,
                                sources,
                                x_width,
                                w_in_place: false,
                            };
                            if x_width == 4 || t.sources == Sources::One {
                                all.push(forward_kernel(&t).spec());
                            }
                            // The forward over few pixels reads ragged weights in place too.
                            let forward = matches!(epilogue, Epilogue::Store { .. });
                            if x_width < 4 && t.sources == Sources::One && forward {
                                let t = ForwardTile { w_in_place: true, ..t };
                                all.push(forward_kernel(&t).spec());
                            }
                        }
                    }
                }
            }
        }
        for ci_vecs in 1..=max_ci_vecs(k as u32) {
            for gelu_input in [false, true] {
                // x read in place (of any width), a cat's halves (whole vec4s)
                // or a padded copy in scratch; dy in place, of any width, or a
                // padded copy in scratch (the padded path; with a cat read in place too).
                for (cat, scratch_inputs) in [(false, false), (true, false), (false, true), (true, true)] {
                    for x_width in [4, 2, 1] {
                        for dy_width in [4, 2, 1] {
                            if (cat || scratch_inputs) && x_width < 4 {
                                continue;
                            }
                            let t = WeightTile {
                                k: k as u32,
                                ci_vecs,
                                gelu_input,
                                cat,
                                scratch_inputs,
                                x_width,
                                dy_width,
                            };
                            all.push(weight_kernel(&t).spec());
                        }
                    }
                }
            }
        }
    }
    all
}

crate::gpu_params! {
    struct ForwardParams {
        n: u32,
        h: u32,
        w: u32,
        cin4: u32,
        cout: u32,
        tiles_w: u32,
        tiles_h: u32,
        tiles: u32,
        cat_split: u32,
        cin: u32,
        pad1: u32,
        pad2: u32,
    }
}

/// Most blocks and output channels per lane of a forward tile with a k×k kernel.
fn forward_limits(k: usize) -> (usize, usize) {
    if k == 3 {
        (16, 4)
    } else {
        (4, 16)
    }
}

/// The tile for a conv with `cout` outputs over `h` (possibly stacked) rows. One input
/// row segment per block, blocks stacked down the image; up to 32 output channels per
/// workgroup for 3x3 and 128 for 1x1, so each broadcast x value feeds 4 resp. 16 channels
/// per lane. All blocks' accumulators live across the channel loop (LLVM spills most of
/// them; each spilled one is reloaded once per block), so bigger tiles cost compile time
/// (the 1x1 at 16 blocks x 8 channels, 1024 accumulators, takes lavapipe ~10 s to
/// compile), hence 4 blocks there. A 1x1 conv's epilogue (one load or store per output
/// element and operand), not its FMAs, bounds it: the more channels a lane owns, the
/// fewer workgroups load each x value and the wider its vector stores. Of the sizes
/// timed on lavapipe (`sweep --k 1 --pass forward` over 8 to 24 channels per lane), 16 x 4
/// (3x3) and 4 x 16 (1x1) were the fastest.
fn forward_tile(
    k: usize,
    h: usize,
    cout: usize,
    gelu_input: bool,
    epilogue: Epilogue,
    sources: Sources,
    x_width: u32,
) -> ForwardTile {
    let (max_blocks, max_couts_per_lane) = forward_limits(k);
    let cpl = couts_per_lane(cout, max_couts_per_lane);
    // The widest epilogue vector the lane's channels and the row stride allow.
    let vec = epilogue_widths(epilogue, sources, cpl)
        .into_iter()
        .filter(|&v| cout.is_multiple_of(v as usize))
        .max()
        .unwrap_or(1);
    ForwardTile {
        k: k as u32,
        rows: 1,
        blocks: h.clamp(1, max_blocks) as u32,
        couts_per_lane: cpl as u32,
        gelu_input,
        epilogue,
        vec,
        sources,
        x_width,
        w_in_place: false,
    }
}

/// Epilogue vector widths a tile with `cpl` channels per lane can use: 2 and 4
/// where they divide cpl, except for a plain store into a cat's two outputs
/// (see `ForwardTile::vec`).
fn epilogue_widths(epilogue: Epilogue, sources: Sources, cpl: usize) -> Vec<u32> {
    match (epilogue, sources) {
        (Epilogue::Store { .. }, Sources::CatOutput { .. }) => vec![1],
        _ => [1, 2, 4]
            .into_iter()
            .filter(|&v| cpl.is_multiple_of(v as usize))
            .collect(),
    }
}

/// Output channels per lane: as few channel chunks as the limit allows, the
/// channels spread evenly over them (96 channels: 2 chunks of 48, not 64 + 32,
/// whose second chunk would compute 32 clamped channels for nothing).
fn couts_per_lane(cout: usize, max: usize) -> usize {
    let per_lane = cout.div_ceil(LANES as usize).max(1);
    let chunks = per_lane.div_ceil(max);
    per_lane.div_ceil(chunks).clamp(1, max)
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

/// What a forward tile binds besides its weights: the input, the epilogue's
/// per-element arrays (`bias`, `extra`, output `y`), `act`, and for a cat the
/// second input, or the second output with its `extra2` and `bias2`.
struct TileViews<'a> {
    x: BufView<'a>,
    bias: BufView<'a>,
    extra: BufView<'a>,
    y: BufView<'a>,
    act: Option<BufView<'a>>,
    x2: Option<BufView<'a>>,
    /// (y2, extra2, bias2).
    second: Option<[BufView<'a>; 3]>,
}

/// Runs the forward tile over an `[n,h,w,cin]` input with `cout` outputs;
/// `cat_split` is where a cat's second input (or output) begins.
fn forward_tiles(
    ctx: &GpuContext,
    t: &ForwardTile,
    s: &Conv2dShape,
    w: BufView<'_>,
    v: &TileViews<'_>,
    cat_split: usize,
) -> Result<Dispatch> {
    let (n, h) = if s.k == 1 { (1, stacked_rows(s)) } else { (s.n, s.h) };
    let tiles_w = s.w.div_ceil(t.cols() as usize);
    let tiles_h = h.div_ceil(t.tile_rows() as usize);
    let tiles = n * tiles_h * tiles_w;
    let p = ForwardParams {
        n: n as u32,
        h: h as u32,
        w: s.w as u32,
        cin4: s.cin.div_ceil(4) as u32,
        cout: s.cout as u32,
        tiles_w: tiles_w as u32,
        tiles_h: tiles_h as u32,
        tiles: tiles as u32,
        cat_split: cat_split as u32,
        cin: s.cin as u32,
        pad1: 0,
        pad2: 0,
    };
    let gz = s.cout.div_ceil(t.couts_per_workgroup() as usize);
    if gz > 65535 {
        return shape_err(format!("conv2d: {} output channels are too many for one grid", s.cout));
    }
    static KERNELS: Mutex<Option<HashMap<ForwardTile, Kernel<ForwardParams>>>> = Mutex::new(None);
    let kernel = cached(&KERNELS, *t, forward_kernel);
    // One workgroup per tile (folded into x and y), one layer per output-channel chunk.
    let grid = Grid::GroupLayers(tiles, gz);
    let mut views = vec![v.x, w, v.bias, v.extra, v.y];
    views.extend(v.act);
    views.extend(v.x2);
    views.extend(v.second.iter().flatten());
    ctx.dispatch(&kernel, &[], &views, &p, grid)
}

/// The forward; x (and w) first copied into `scratch` with zero-padded input
/// channels when Cin is ragged or x a cat the tile cannot read in place (as
/// [`Padding::of`] says with `copy_ragged`).
#[allow(clippy::too_many_arguments)]
pub(super) fn forward(
    ctx: &GpuContext,
    copy_ragged: bool,
    s: &Conv2dShape,
    x: InputLike<'_>,
    w: BufView<'_>,
    bias: Option<BufView<'_>>,
    residual: Option<BufView<'_>>,
    scratch: BufView<'_>,
    y: BufView<'_>,
) -> Result<Vec<Dispatch>> {
    let copies = Padding::of(s, CatPass::Forward, copy_ragged).copies(s, scratch, 0);
    let mut ds = Vec::new();
    // The weights' rows padded to whole vec4s for a ragged Cin (x then read
    // in pairs, or copied too).
    let w = match copies.w {
        Some(wp) => {
            ds.push(pad::pad_rows(ctx, w, s.cin, wp)?);
            wp
        }
        None => w,
    };
    let (s, x) = match copies.x {
        Some(xp) => {
            ds.extend(pad::pad_input(ctx, s, x, xp)?);
            let padded = Conv2dShape {
                cin: s.cin.next_multiple_of(4),
                cat: None,
                ..*s
            };
            (padded, InputLike::from(xp))
        }
        None => (*s, x),
    };
    let s = &s;
    let epilogue = Epilogue::Store {
        bias: s.bias,
        residual: s.residual,
    };
    let sources = if x.second.is_some() {
        Sources::CatInput
    } else {
        Sources::One
    };
    // A ragged x read in place, a few channels per load (a cat's halves hold
    // whole vec4s), and the weights alike where they are not copied.
    let x_width = pad::load_width(s.cin);
    let t = ForwardTile {
        w_in_place: copies.w.is_none() && x_width < 4,
        ..forward_tile(s.k, stacked_rows(s), s.cout, s.gelu_input, epilogue, sources, x_width)
    };
    // Absent optional inputs bind x in their place; the kernel never reads them.
    let views = TileViews {
        x: x.first,
        bias: bias.unwrap_or(x.first),
        extra: residual.unwrap_or(x.first),
        y,
        act: None,
        x2: x.second,
        second: None,
    };
    ds.push(forward_tiles(ctx, &t, s, w, &views, s.cat_split())?);
    Ok(ds)
}

crate::gpu_params! {
    /// The helpers' uniform (`Params` in conv2d_tiled_util.wgsl); each dispatch
    /// sets the fields its kernel reads and leaves the others 0.
    #[derive(Default)]
    struct UtilParams {
        /// Elements written.
        total: u32,
        /// flip_transpose: the weights' shape `[cout, kk, cin]`, and the
        /// channels of each row of the copy (`cout4 >= cout`, those past cout zero).
        cout: u32,
        kk: u32,
        cin: u32,
        cout4: u32,
        /// The sums: elements of one reduction split's partial sums.
        stride: u32,
        reduction_splits: u32,
        accumulate: u32,
        /// Where the summed elements start in each reduction split's partial sums.
        offset: u32,
        /// The pair sum: sums below `dw_len` go to dw, the rest to db, `db_gap`
        /// elements past dw's end.
        dw_len: u32,
        db_gap: u32,
    }
}

/// Elements of dx's flipped, transposed weights `[cin, k, k, cout4]` (Cout
/// padded to whole vec4s), at the start of its scratch.
pub(super) fn flipped_len(s: &Conv2dShape) -> usize {
    s.cin * s.k * s.k * s.cout.next_multiple_of(4)
}

/// dx, and with `a.act` also `act = gelu(x)` from the same epilogue; the weights
/// flipped into scratch first unless `a.transposed` holds them so. A ragged
/// Cout reduces over dy copied with zero-padded channels, and over weights
/// flipped with zero rows alike (not `a.transposed`).
pub(super) fn backward_input(
    ctx: &GpuContext,
    copy_ragged: bool,
    s: &Conv2dShape,
    a: &super::BackwardInput<'_>,
) -> Result<Vec<Dispatch>> {
    let mut ds = Vec::with_capacity(3);
    let padding = Padding::of(s, CatPass::BackwardInput, copy_ragged);
    let cout4 = s.cout.next_multiple_of(4);
    let wt = match a.transposed.filter(|_| !padding.dy) {
        Some(wt) => wt,
        None => {
            let flip = UtilParams {
                total: flipped_len(s) as u32,
                cout: s.cout as u32,
                kk: (s.k * s.k) as u32,
                cin: s.cin as u32,
                cout4: cout4 as u32,
                ..UtilParams::default()
            };
            let wt = BufView {
                len: flipped_len(s),
                ..a.scratch
            };
            let grid = Grid::Invocations(flipped_len(s));
            ds.push(ctx.dispatch(&FLIP_TRANSPOSE, &[], &[a.w, wt], &flip, grid)?);
            wt
        }
    };
    let dy = match padding.copies(s, a.scratch, flipped_len(s)).dy {
        Some(dyp) => {
            ds.push(pad::pad_rows(ctx, a.dy, s.cout, dyp)?);
            dyp
        }
        None => a.dy,
    };
    // dx = conv(dy, flipped w): a forward conv with the channel counts swapped,
    // over a ragged dy read in place a few channels per load (unless copied).
    let swapped = Conv2dShape {
        cin: if padding.dy { cout4 } else { s.cout },
        cout: s.cin,
        cat: None,
        ..*s
    };
    let act = a.act.filter(|_| s.gelu_input);
    // Another gradient of x added on the way out: where the forward binds the
    // bias (GELU epilogue) or the residual (plain store).
    let epilogue = if s.gelu_input {
        Epilogue::GeluGrad {
            act: act.is_some(),
            add: a.addend.is_some(),
        }
    } else {
        Epilogue::Store {
            bias: false,
            residual: a.addend.is_some(),
        }
    };
    // For a cat, the same arrays of the second half.
    let (sources, second) = match a.dx.second {
        Some(dx2) => {
            let x2 = a.x.second_or_first();
            let (extra2, bias2) = match (s.gelu_input, a.addend2) {
                (true, addend2) => (x2, addend2.unwrap_or(a.dy)),
                (false, Some(addend2)) => (addend2, a.dy),
                (false, None) => (a.dy, a.dy),
            };
            let add2 = a.addend2.is_some();
            (Sources::CatOutput { add2 }, Some([dx2, extra2, bias2]))
        }
        None => (Sources::One, None),
    };
    let x_width = pad::load_width(swapped.cin);
    let t = forward_tile(s.k, stacked_rows(s), s.cin, false, epilogue, sources, x_width);
    let (bias, extra) = match (s.gelu_input, a.addend) {
        (true, addend) => (addend.unwrap_or(a.dy), a.x.first),
        (false, Some(addend)) => (a.dy, addend),
        (false, None) => (a.dy, a.dy),
    };
    let views = TileViews {
        x: dy,
        bias,
        extra,
        y: a.dx.first,
        act,
        x2: None,
        second,
    };
    ds.push(forward_tiles(ctx, &t, &swapped, wt, &views, s.cat_split())?);
    Ok(ds)
}

/// Input-channel vec4s per dw workgroup: 1 for 3x3 (9 taps already give 144
/// accumulators per lane), 8 for 1x1, or the largest count below that divides
/// the vec4s of cin (rounded up); where that count is small for want of
/// divisors (13 vec4s: 1), as few workgroups as 8 allow, the vec4s spread
/// evenly, the last workgroup's extra vec4s masked (13: 7 + 6).
/// (On lavapipe 1 was the fastest count for 3x3 and 8 for 1x1 of those timed.)
/// Over a cat, the count divides both halves' vec4s, so no workgroup straddles them.
fn ci_vecs(s: &Conv2dShape) -> u32 {
    let max = max_ci_vecs(s.k as u32) as usize;
    let halves: Vec<usize> = s.sources().iter().map(|c| c.div_ceil(4)).collect();
    let divisor = (1..=max)
        .rev()
        .find(|&v| halves.iter().all(|c| c.is_multiple_of(v)))
        .unwrap_or(1);
    let c4 = s.cin.div_ceil(4);
    let balanced = c4.div_ceil(c4.div_ceil(max));
    let v = if s.cat.is_some() || divisor + 1 >= balanced {
        divisor
    } else {
        balanced
    };
    v as u32
}

/// dw workgroups along the input channels.
fn ci_groups(s: &Conv2dShape) -> usize {
    s.cin.div_ceil(4).div_ceil(ci_vecs(s) as usize)
}

fn max_ci_vecs(k: u32) -> u32 {
    if k == 3 {
        1
    } else {
        8
    }
}

/// 8-pixel row segments of the weight-gradient reduction.
fn segments(s: &Conv2dShape) -> usize {
    s.n * s.h * s.w.div_ceil(8)
}

/// The conv whose x the dw kernel reads: `s` (Cin in vec4s rounded up: the
/// last one's upper pair zero, read in pairs), or with x copied into scratch
/// (`pad.rs`), Cin padded to whole vec4s and no cat.
fn weight_input_shape(s: &Conv2dShape, copy_ragged: bool) -> Conv2dShape {
    if Padding::of(s, CatPass::BackwardWeight, copy_ragged).x {
        Conv2dShape {
            cin: s.cin.next_multiple_of(4),
            cat: None,
            ..*s
        }
    } else {
        *s
    }
}

/// Weight-gradient workgroups along the output channels: each owns 4 per lane.
pub(super) fn dw_cout_groups(cout: usize) -> usize {
    cout.div_ceil(4 * LANES as usize)
}

/// The reduction splits on this adapter: enough workgroups to keep it busy (a CPU adapter
/// runs a workgroup per thread at a time, a GPU wants hundreds in flight), never
/// more than [`reduction_splits`] (what the scratch is sized for) nor fewer than
/// llvmpipe's loop limit allows. One reduction split lets the kernel write dw and db itself.
pub fn reduction_splits_on(ctx: &GpuContext, s: &Conv2dShape, copy_ragged: bool) -> usize {
    let r = weight_input_shape(s, copy_ragged);
    let tiles = ci_groups(&r) * dw_cout_groups(s.cout);
    let fill = ctx.busy_workgroups().div_ceil(tiles.max(1));
    fill.clamp(segments(s).div_ceil(16 * 1024).max(1), reduction_splits(s))
}

/// How many workgroups share the pixel reduction of each dw tile (one partial sum each).
/// At least 64 segments per reduction split, at most 64 of them, and never more than 16384 segments
/// per workgroup (llvmpipe ends an invocation after 65535 loop iterations).
pub fn reduction_splits(s: &Conv2dShape) -> usize {
    segments(s)
        .div_ceil(64)
        .clamp(1, 64)
        .max(segments(s).div_ceil(16 * 1024))
}

crate::gpu_params! {
    struct WeightParams {
        n: u32,
        h: u32,
        w: u32,
        cin4: u32,
        cout4: u32,
        segs_w: u32,
        segments: u32,
        per_reduction_split: u32,
        stride: u32,
        w_len: u32,
        db_gap: u32,
        cat_split4: u32,
        cin: u32,
        cout: u32,
    }
}

/// One view from dw through db when db follows dw closely in the same buffer
/// (within one binding), for [`SUM_REDUCTION_SPLITS_PAIR`].
fn pair_view<'a>(ctx: &GpuContext, dw: BufView<'a>, db: BufView<'a>) -> Option<BufView<'a>> {
    const MAX_GAP: usize = 1024;
    let end = db.offset + db.len;
    let close = db.offset >= dw.offset + dw.len && db.offset - (dw.offset + dw.len) <= MAX_GAP;
    let fits = (end - dw.offset) * 4 <= ctx.limits.max_storage_buffer_binding_size as usize;
    (dw.buffer == db.buffer && close && fits).then_some(BufView {
        len: end - dw.offset,
        ..dw
    })
}

#[allow(clippy::too_many_arguments)]
pub(super) fn backward_weight(
    ctx: &GpuContext,
    copy_ragged: bool,
    s: &Conv2dShape,
    x: InputLike<'_>,
    dy: BufView<'_>,
    scratch: BufView<'_>,
    act: Option<BufView<'_>>,
    dw: BufView<'_>,
    db: Option<BufView<'_>>,
    accumulate: bool,
) -> Result<Vec<Dispatch>> {
    let reduction_splits = reduction_splits_on(ctx, s, copy_ragged);
    let stride = s.w_len() + s.cout;
    // Padded copies of x and dy (`pad.rs`) after the most partial sums the scratch holds.
    let padding = Padding::of(s, CatPass::BackwardWeight, copy_ragged);
    let copies = padding.copies(s, scratch, self::reduction_splits(s) * stride);
    // One reduction split and dw, db side by side: the kernel writes them in place, no sum pass.
    let in_place = (reduction_splits == 1 && !accumulate)
        .then(|| db.and_then(|db| pair_view(ctx, dw, db).map(|both| (both, db.offset - dw.offset - s.w_len()))))
        .flatten();
    let segments = segments(s);
    let r = weight_input_shape(s, copy_ragged);
    let p = WeightParams {
        n: s.n as u32,
        h: s.h as u32,
        w: s.w as u32,
        cin4: r.cin.div_ceil(4) as u32,
        cout4: s.cout.div_ceil(4) as u32,
        segs_w: s.w.div_ceil(8) as u32,
        segments: segments as u32,
        per_reduction_split: segments.div_ceil(reduction_splits) as u32,
        stride: stride as u32,
        w_len: s.w_len() as u32,
        db_gap: in_place.map_or(0, |(_, gap)| gap as u32),
        cat_split4: (r.cat_split() / 4) as u32,
        cin: s.cin as u32,
        cout: s.cout as u32,
    };
    // With room for act(x), GELU runs once in an elementwise pass instead of inside
    // every dw workgroup (each x element is loaded by 3 rows x cout/32 workgroups);
    // over a cat, act(x1) and act(x2) lie apart in `act` (see `Conv2dShape::act_len`).
    // It is written before any padded copy, which then copies act(x).
    let mut ds = Vec::new();
    let (x, gelu_in_kernel) = match act {
        Some(act) if s.gelu_input => {
            let act1 = BufView { len: s.x1_len(), ..act };
            ds.push(crate::kernels::elementwise::gelu_forward(ctx, x.first, act1)?);
            let act = match x.second {
                Some(x2) => {
                    let act2 = BufView {
                        offset: act.offset + s.act2_offset(),
                        len: s.x2_len(),
                        ..act
                    };
                    ds.push(crate::kernels::elementwise::gelu_forward(ctx, x2, act2)?);
                    InputLike::cat(act1, act2)
                }
                None => act1.into(),
            };
            (act, false)
        }
        _ => (x, s.gelu_input),
    };
    // x (or act(x)) copied with padded channels (gelu(0) = 0 keeps them zero
    // where GELU runs in the kernel).
    let x = match copies.x {
        Some(xp) => {
            ds.extend(pad::pad_input(ctx, s, x, xp)?);
            xp.into()
        }
        None => x,
    };
    let dy = match copies.dy {
        Some(dyp) => {
            ds.push(pad::pad_rows(ctx, dy, s.cout, dyp)?);
            dyp
        }
        None => dy,
    };
    let t = WeightTile {
        k: s.k as u32,
        ci_vecs: ci_vecs(&r),
        gelu_input: gelu_in_kernel,
        cat: x.second.is_some(),
        scratch_inputs: padding.x || padding.dy,
        x_width: pad::load_width(r.cin),
        dy_width: if padding.dy { 4 } else { pad::load_width(s.cout) },
    };
    static KERNELS: Mutex<Option<HashMap<WeightTile, Kernel<WeightParams>>>> = Mutex::new(None);
    let kernel = cached(&KERNELS, t, weight_kernel);
    // Workgroups own (input-channel vec4s, LANES output vec4s, one reduction split).
    let grid = [
        ci_groups(&r) as u32,
        dw_cout_groups(s.cout) as u32,
        reduction_splits as u32,
    ];
    if grid.iter().any(|&g| g > 65535) {
        return shape_err(format!(
            "conv2d: backward weight grid {grid:?} exceeds 65535 workgroups"
        ));
    }
    let grid = Grid::Workgroups(grid);
    let partials = match in_place {
        Some((both, _)) => both,
        None => BufView {
            len: reduction_splits * stride,
            ..scratch
        },
    };
    let mut views = vec![x.first, dy, partials];
    views.extend(x.second);
    ds.push(ctx.dispatch(&kernel, &[], &views, &p, grid)?);
    if in_place.is_some() {
        return Ok(ds);
    }
    let mut sum = |dst: BufView<'_>, offset: usize, total: usize| -> Result<()> {
        let q = UtilParams {
            total: total as u32,
            stride: stride as u32,
            reduction_splits: reduction_splits as u32,
            accumulate: accumulate as u32,
            offset: offset as u32,
            ..UtilParams::default()
        };
        ds.push(ctx.dispatch(
            &SUM_REDUCTION_SPLITS,
            &[],
            &[partials, dst],
            &q,
            Grid::Invocations(total),
        )?);
        Ok(())
    };
    match db.map(|db| (db, pair_view(ctx, dw, db))) {
        // dw and db side by side in one buffer (as parameter gradients are): one pass.
        Some((db, Some(both))) => {
            let q = UtilParams {
                total: stride as u32,
                stride: stride as u32,
                reduction_splits: reduction_splits as u32,
                accumulate: accumulate as u32,
                offset: 0,
                dw_len: s.w_len() as u32,
                db_gap: (db.offset - dw.offset - s.w_len()) as u32,
                ..UtilParams::default()
            };
            let grid = Grid::Invocations(stride);
            ds.push(ctx.dispatch(&SUM_REDUCTION_SPLITS_PAIR, &[], &[partials, both], &q, grid)?);
        }
        Some((db, None)) => {
            sum(dw, 0, s.w_len())?;
            sum(db, s.w_len(), s.cout)?;
        }
        None => sum(dw, 0, s.w_len())?,
    }
    Ok(ds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_channels_are_spread_evenly_over_the_fewest_chunks() {
        let lanes = LANES as usize;
        for max in [4, 8] {
            for cout in 1..600 {
                let cpl = couts_per_lane(cout, max);
                let chunks = cout.div_ceil(lanes * cpl);
                assert!((1..=max).contains(&cpl));
                assert_eq!(
                    chunks,
                    cout.div_ceil(lanes * max),
                    "cout {cout}: no more chunks than needed"
                );
                assert!(
                    chunks * lanes * cpl < cout + lanes * chunks,
                    "cout {cout}: under a lane's worth of waste per chunk"
                );
            }
        }
        assert_eq!(couts_per_lane(96, 8), 6);
    }
}
