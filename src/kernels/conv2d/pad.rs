//! Ragged channel counts (no multiple of 4) on the tiled path. The tiled
//! kernels work on vec4s of channels; an activation operand of ragged width
//! is read in place, its vec4s assembled from pairs (a count 2 mod 4) or
//! single channels (an odd count) with the channels past the count zero
//! ([`load_width`]; `codegen::ForwardTile::x_width`, `WeightTile::x_width`,
//! `dy_width`). Masking rather than copying: on lavapipe every storage access
//! costs about as much as a vec4 load, so a copy with padded channels (one
//! elementwise pass over the tensor) cost more than a 1x1 conv's own pass over
//! it (dw of 16x32x32, 64 -> 50: 4.2 ms to pad dy, 2.8 ms for the kernel),
//! while the narrower loads add a load or three per vec4 to kernels that
//! reuse each loaded value many times.
//!
//! What is still copied into scratch with zero channels up to a multiple of 4
//! ([`copy_channels`] with [`CopyMode::OverwriteZeroRest`]), the tile then
//! running on the padded shape (a zero channel adds nothing to any sum, and
//! gelu(0) = 0):
//! - the weights of a forward with a ragged Cin over more than [`super::shape::FEW_PIXELS`]
//!   pixels, `[cout·k·k, cin]` as rows of channels (small beside x; over fewer
//!   pixels they are read in place like x, `codegen::ForwardTile::w_in_place`);
//!   dx's weights are flipped with zero rows up to a multiple of 4 by the flip
//!   it makes anyway;
//! - x of the forward and dw when it is a cat the tiles cannot read in place
//!   (3x3 in the forward, or halves of part vec4s): both halves side by side;
//! - x of a 3x3 dw with a ragged Cin (it loads x once per tap row, and its
//!   9 taps' multiply-adds dwarf one pass over x);
//! - dy of dx over a cat with a ragged Cout (its tile has no narrow variants).
//!
//! A ragged Cout needs nothing else: the forward tile clamps its channels and
//! guards its stores, the dw kernel stores only the true channels in the true
//! `[cout, k, k, cin]` layout (so its partial sums, their sum pass and its
//! in-place write are those of whole vec4s). A copy larger than
//! [`MOST_PADDED`] elements (or the adapter's binding) is not made: that conv
//! runs the simple kernels, and the scratch lengths never count more.
//!
//! The padded path ([`super::Path::Padded`]) copies every ragged operand
//! instead (x and w of the forward, dy of dx, x and dy of dw), and the tiles
//! read whole vec4s only: one dispatch per copy, against narrower loads that
//! each tile repeats (a 3x3 dw loads dy once per input-channel workgroup, 96
//! times for Cin 384). Which costs less depends on the shape and the adapter,
//! so tuning times both; the rules above are the tiled path's, its default.

use super::tiled::CatPass;
use super::{Conv2dShape, InputLike};
use crate::error::{shape_err, Result};
use crate::gpu::{Access, BufView, Dispatch, GpuContext, Grid, Kernel, KernelSpec, Work};
use crate::kernels::elementwise::{copy_channels, reciprocal, ChannelRange, CopyMode, DIVIDE_WGSL};

/// Elements of the largest padded copy (128 MiB, the storage binding every
/// WebGPU adapter allows): the scratch lengths count each copy up to this.
pub const MOST_PADDED: usize = 1 << 25;

/// Elements between the starts of scratch regions: 256 bytes, the largest
/// storage offset alignment an adapter may ask.
const ALIGN: usize = 64;

/// Which operands of one pass the tiled path copies with padded channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Padding {
    /// x (or both halves of a cat) into `[pixels, cin4]`.
    pub x: bool,
    /// w into `[cout, k, k, cin4]` (forward only).
    pub w: bool,
    /// dy into `[pixels, cout4]` (dx and dw).
    pub dy: bool,
}

/// The padded copies of one pass, where they lie in scratch.
#[derive(Clone, Copy)]
pub(super) struct Copies<'a> {
    pub x: Option<BufView<'a>>,
    pub w: Option<BufView<'a>>,
    pub dy: Option<BufView<'a>>,
}

/// Whether the tiled kernels of `pass` read a cat input where its halves lie:
/// both halves of whole vec4s, and for the forward and dx a 1x1 conv (their
/// tiles over a cat are generated for 1x1 only). Otherwise the forward and dw
/// copy the halves side by side, and dx runs the simple kernels.
pub(super) fn cat_in_place(s: &Conv2dShape, pass: CatPass) -> bool {
    let Some(c1) = s.cat else { return true };
    let halves = c1.is_multiple_of(4) && (s.cin - c1).is_multiple_of(4);
    halves && (pass == CatPass::BackwardWeight || s.k == 1)
}

impl Padding {
    /// What `pass` of `s` copies on the tiled path: the ragged operands its
    /// rules below choose to copy (the rest read in place), or with
    /// `copy_ragged` (the padded path, [`super::Path::Padded`]) every ragged
    /// operand, the tiles then reading whole vec4s only. Which of the two is
    /// faster depends on the shape and adapter: tuning times both.
    pub fn of(s: &Conv2dShape, pass: CatPass, copy_ragged: bool) -> Padding {
        let ragged_cin = !s.cin.is_multiple_of(4);
        let ragged_cout = !s.cout.is_multiple_of(4);
        if copy_ragged {
            // x padded needs weights of whole vec4s too; dx's weights are
            // flipped with zero rows up to whole vec4s when dy is copied.
            let x = ragged_cin || !cat_in_place(s, pass);
            return match pass {
                CatPass::Forward => Padding {
                    x,
                    w: ragged_cin,
                    dy: false,
                },
                CatPass::BackwardInput => Padding {
                    x: false,
                    w: false,
                    dy: ragged_cout,
                },
                CatPass::BackwardWeight => Padding {
                    x,
                    w: false,
                    dy: ragged_cout,
                },
            };
        }
        match pass {
            // The weights are read in place with x over few pixels (x then
            // read in place: a ragged Cin has no cat whose halves are whole
            // vec4s): the narrower loads cost in proportion to the pixels, a
            // copy is one more dispatch.
            CatPass::Forward => Padding {
                x: !cat_in_place(s, pass),
                w: ragged_cin && !(s.few_pixels() && cat_in_place(s, pass)),
                dy: false,
            },
            // The dx tile over a cat reads dy in whole vec4s only.
            CatPass::BackwardInput => Padding {
                x: false,
                w: false,
                dy: s.cat.is_some() && ragged_cout,
            },
            // A 3x3 dw loads x 3 times per row segment (once per tap row): a
            // copy costs less than reading a ragged x in pairs or channels
            // (16x32x32, 30 -> 100: 37 ms in pairs, 24 ms for 32 -> 100).
            CatPass::BackwardWeight => Padding {
                x: !cat_in_place(s, pass) || (s.k == 3 && ragged_cin),
                w: false,
                dy: false,
            },
        }
    }

    /// Whether the padded path copies more than the tiled one: it is a path
    /// of its own only then.
    pub fn padded_differs(s: &Conv2dShape, pass: CatPass) -> bool {
        Padding::of(s, pass, true) != Padding::of(s, pass, false)
    }

    /// The copies' lengths in scratch order (x, w, dy); 0 for one not made.
    fn lens(&self, s: &Conv2dShape) -> [usize; 3] {
        let (cin4, cout4) = (s.cin.next_multiple_of(4), s.cout.next_multiple_of(4));
        [
            if self.x { s.pixels() * cin4 } else { 0 },
            if self.w { s.cout * s.k * s.k * cin4 } else { 0 },
            if self.dy { s.pixels() * cout4 } else { 0 },
        ]
    }

    /// Whether every copy fits one binding on this adapter (else the pass
    /// runs the simple kernels).
    pub fn fits(&self, ctx: &GpuContext, s: &Conv2dShape) -> bool {
        let binding = ctx.limits.max_storage_buffer_binding_size as usize / 4;
        self.lens(s).iter().all(|&n| n <= MOST_PADDED.min(binding))
    }

    /// Elements of scratch from `from` (the pass's own first region) through
    /// the copies, each copy counted up to [`MOST_PADDED`]: a shape's scratch
    /// then covers that of any smaller shape the tiled path pads (the slices
    /// of a node split over the binding limit).
    pub fn scratch_end(&self, s: &Conv2dShape, from: usize) -> usize {
        self.lens(s)
            .iter()
            .filter(|&&n| n > 0)
            .fold(from, |end, &n| end.next_multiple_of(ALIGN) + n.min(MOST_PADDED))
    }

    /// Where the copies lie in `scratch`, after its first `from` elements.
    pub fn copies<'a>(&self, s: &Conv2dShape, scratch: BufView<'a>, from: usize) -> Copies<'a> {
        let mut end = from;
        let mut at = |n: usize| {
            (n > 0).then(|| {
                let offset = end.next_multiple_of(ALIGN);
                end = offset + n;
                BufView {
                    offset: scratch.offset + offset,
                    len: n,
                    ..scratch
                }
            })
        };
        let [x, w, dy] = self.lens(s);
        Copies {
            x: at(x),
            w: at(w),
            dy: at(dy),
        }
    }
}

/// Channels per load a tiled kernel reads an operand of `channels` channels
/// with in place: whole vec4s, else pairs or single channels (their vec4s
/// assembled and masked in the kernel; see `codegen::ForwardTile::x_width`).
pub(super) fn load_width(channels: usize) -> u32 {
    match channels % 4 {
        0 => 4,
        2 => 2,
        _ => 1,
    }
}

crate::gpu_params! {
    /// `Params` of shaders/conv2d_pad_rows.wgsl.
    struct PadParams {
        /// vec4s written (rows · vecs).
        total: u32,
        /// Channels per source row.
        channels: u32,
        /// vec4s per destination row.
        vecs: u32,
        inv_vecs: f32,
    }
}

const PAD_ROWS_WGSL: &str = include_str!("../../../shaders/conv2d_pad_rows.wgsl");
const CHANNELS: &str = include_str!("../../../shaders/conv2d_pad_rows_channels.wgsl");
const PAIRS: &str = include_str!("../../../shaders/conv2d_pad_rows_pairs.wgsl");
const PAD_BINDINGS: &[Access] = &[Access::Read, Access::ReadWrite, Access::Uniform];
/// Indexed by whether the channel count is even.
const PAD_ROWS: [Kernel<PadParams>; 2] = [
    Kernel::portable(
        "conv2d_pad_rows",
        &[DIVIDE_WGSL, CHANNELS, PAD_ROWS_WGSL],
        "pad_rows",
        PAD_BINDINGS,
    ),
    Kernel::portable(
        "conv2d_pad_rows_pairs",
        &[DIVIDE_WGSL, PAIRS, PAD_ROWS_WGSL],
        "pad_rows",
        PAD_BINDINGS,
    ),
];

/// The family's own copy kernels, for the contract test.
pub(super) fn kernels() -> Vec<KernelSpec> {
    PAD_ROWS.iter().map(|k| k.spec()).collect()
}

/// Rows of `channels` channels copied into rows of `dst`'s channels (a
/// multiple of 4 at least as large), the channels past `channels` zero.
pub(super) fn pad_rows(ctx: &GpuContext, src: BufView<'_>, channels: usize, dst: BufView<'_>) -> Result<Dispatch> {
    let op = "conv2d pad_rows";
    let rows = src.len / channels.max(1);
    if channels == 0 || rows * channels != src.len {
        return shape_err(format!(
            "{op}: {} source elements are no whole rows of {channels}",
            src.len
        ));
    }
    let padded = channels.next_multiple_of(4);
    if dst.len < rows * padded {
        return shape_err(format!(
            "{op}: {rows} rows of {padded} channels do not fit {} elements",
            dst.len
        ));
    }
    let vecs = padded / 4;
    let total = rows * vecs;
    let p = PadParams {
        total: total as u32,
        channels: channels as u32,
        vecs: vecs as u32,
        inv_vecs: reciprocal(op, vecs)?,
    };
    let dst = BufView {
        len: rows * padded,
        ..dst
    };
    let kernel = &PAD_ROWS[channels.is_multiple_of(2) as usize];
    let d = ctx.dispatch(kernel, &[], &[src, dst], &p, Grid::Invocations(total))?;
    Ok(d.with_work(Work::f32s(src.len + rows * padded)))
}

/// x (one tensor, or a cat's two halves side by side) into `dst`, `[pixels, cin4]`.
pub(super) fn pad_input(
    ctx: &GpuContext,
    s: &Conv2dShape,
    x: InputLike<'_>,
    dst: BufView<'_>,
) -> Result<Vec<Dispatch>> {
    let Some(x2) = x.second else {
        return Ok(vec![pad_rows(ctx, x.first, s.cin, dst)?]);
    };
    // The first half zeroes every other channel; the second then fills its own.
    let (c1, cin4) = (s.cat_split(), s.cin.next_multiple_of(4));
    Ok(vec![
        copy_channels(
            ctx,
            x.first,
            ChannelRange::all(c1),
            dst,
            ChannelRange::new(cin4, 0, c1),
            CopyMode::OverwriteZeroRest,
        )?,
        copy_channels(
            ctx,
            x2,
            ChannelRange::all(s.cin - c1),
            dst,
            ChannelRange::new(cin4, c1, s.cin),
            CopyMode::Overwrite,
        )?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv2d::shape::FEW_PIXELS;

    /// The scratch lengths count the padded path's copies, laid out in the
    /// same order: that covers the tiled path's only if it copies no more.
    #[test]
    fn the_padded_path_copies_at_least_what_the_tiled_one_does() {
        let counts = [1, 2, 3, 4, 5, 30, 32, 50];
        for (&cin, &cout, k, h) in counts
            .iter()
            .flat_map(|c| counts.iter().map(move |o| (c, o)))
            .flat_map(|(c, o)| [(1, 2), (1, 40), (3, 2), (3, 40)].map(|(k, h)| (c, o, k, h)))
        {
            let plain = Conv2dShape::new(2, h, h, cin, cout, k);
            let cats = (1..cin).step_by(3).map(|c1| plain.with_cat(c1));
            for s in std::iter::once(plain).chain(cats) {
                for pass in [CatPass::Forward, CatPass::BackwardInput, CatPass::BackwardWeight] {
                    let (tiled, padded) = (Padding::of(&s, pass, false), Padding::of(&s, pass, true));
                    let covers = |a: bool, b: bool| !a || b;
                    assert!(
                        covers(tiled.x, padded.x) && covers(tiled.w, padded.w) && covers(tiled.dy, padded.dy),
                        "{s:?} {pass:?}: tiled {tiled:?}, padded {padded:?}"
                    );
                    assert!(tiled.scratch_end(&s, 7) <= padded.scratch_end(&s, 7));
                    // Padded copies leave no operand ragged.
                    let (ragged_cin, ragged_cout) = (!s.cin.is_multiple_of(4), !s.cout.is_multiple_of(4));
                    let ragged_x = ragged_cin || !cat_in_place(&s, pass);
                    let want = match pass {
                        CatPass::Forward => (ragged_x, ragged_cin, false),
                        CatPass::BackwardInput => (false, false, ragged_cout),
                        CatPass::BackwardWeight => (ragged_x, false, ragged_cout),
                    };
                    assert_eq!((padded.x, padded.w, padded.dy), want, "{s:?} {pass:?}");
                }
            }
        }
    }

    #[test]
    fn forward_weights_are_copied_only_over_many_pixels() {
        let few = Conv2dShape::new(16, 8, 8, 30, 50, 3);
        let many = Conv2dShape::new(16, 16, 16, 30, 50, 3);
        assert!(few.pixels() <= FEW_PIXELS && many.pixels() > FEW_PIXELS);
        assert!(!Padding::of(&few, CatPass::Forward, false).w);
        assert!(Padding::of(&many, CatPass::Forward, false).w);
        // Whole vec4s are never copied; a cat whose halves are ragged is, with its weights.
        assert!(!Padding::of(&Conv2dShape::new(16, 16, 16, 32, 50, 3), CatPass::Forward, false).w);
        let cat = Conv2dShape::new(1, 2, 2, 30, 50, 3).with_cat(15);
        assert_eq!(
            Padding::of(&cat, CatPass::Forward, false),
            Padding {
                x: true,
                w: true,
                dy: false
            }
        );
    }
}
