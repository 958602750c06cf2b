//! Ragged channel counts on the tiled path. The tiled kernels read channels
//! four at a time (vec4s), so an operand whose channels are no multiple of 4
//! is copied into scratch with zero channels up to the next multiple
//! ([`copy_channels`] with [`CopyMode::OverwriteZeroRest`]) and the tile runs
//! on the padded shape: a zero channel adds nothing to any sum (and gelu(0) = 0).
//!
//! - forward: x, and w viewed as `[cout·k·k, cin]` rows of channels, when Cin is
//!   ragged; x alone when it is a cat the tile cannot read in place (3x3, or
//!   halves of part vec4s: both halves are copied side by side). A ragged Cout
//!   needs nothing: the tile clamps its channels and guards its stores.
//! - dx, a forward tile over dy reduced over Cout: with a ragged Cout, dy is
//!   copied, and the flip writes the transposed weights with their Cout rows
//!   zero-padded (no copy of its own). A ragged Cin (dx's outputs) needs nothing.
//! - dw: x as for the forward, dy for a ragged Cout. The kernel stores only the
//!   true channels, in the true `[cout, k, k, cin]` layout, so its partial sums,
//!   their sum pass and its in-place write are those of whole vec4s.
//!
//! Each copy is one elementwise pass over its tensor, against the conv's
//! k·k·channels multiply-adds per element. A copy larger than
//! [`MOST_PADDED`] elements (or the adapter's binding) is not made: that conv
//! runs the simple kernels, and the scratch lengths never count more.

use super::tiled::CatPass;
use super::{Conv2dShape, InputLike};
use crate::error::Result;
use crate::gpu::{BufView, Dispatch, GpuContext};
use crate::kernels::elementwise::{copy_channels, ChannelRange, CopyMode};

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
    /// What `pass` of `s` copies.
    pub fn of(s: &Conv2dShape, pass: CatPass) -> Padding {
        let ragged_cin = !s.cin.is_multiple_of(4);
        let ragged_cout = !s.cout.is_multiple_of(4);
        let x = pass != CatPass::BackwardInput && (ragged_cin || !cat_in_place(s, pass));
        Padding {
            x,
            w: pass == CatPass::Forward && ragged_cin,
            dy: pass != CatPass::Forward && ragged_cout,
        }
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

/// Rows of `channels` channels copied into rows of `dst`'s channels (a
/// multiple of 4 at least as large), the channels past `channels` zero.
pub(super) fn pad_rows(ctx: &GpuContext, src: BufView<'_>, channels: usize, dst: BufView<'_>) -> Result<Dispatch> {
    let padded = channels.next_multiple_of(4);
    copy_channels(
        ctx,
        src,
        ChannelRange::all(channels),
        dst,
        ChannelRange::new(padded, 0, channels),
        CopyMode::OverwriteZeroRest,
    )
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
