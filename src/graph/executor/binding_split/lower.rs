//! A split node lowered slice by slice (the slices come from `plan.rs`):
//! each slice is one call of the op's own `lower`, which sees sub-views of the
//! tensors and their shapes as if they were the node's. Ranges that cannot be
//! bound in place (an unaligned start, or an output the slice adds to) go
//! through staging areas, with one copy in before or one copy (or add) out
//! after the op's dispatches.

use super::plan::{Bind, NodeBindingSplit, Range};
use crate::error::Result;
use crate::gpu::{BufView, Dispatch, GpuContext};
use crate::graph::executor::lower::{LowerCall, Slice, SliceView};
use crate::kernels::elementwise::{copy_channels, ChannelRange, CopyMode};

/// Elements `[start, start + len)` of `v`.
fn sub(v: BufView<'_>, start: usize, len: usize) -> BufView<'_> {
    BufView {
        offset: v.offset + start,
        len,
        ..v
    }
}

/// Elements `[start, start + len)` of `v` bound from the aligned offset at or
/// below the start, and the start's place in that binding.
fn window(v: BufView<'_>, start: usize, len: usize, align: usize) -> (BufView<'_>, usize) {
    let at = v.offset + start;
    let from = at / align * align;
    let view = BufView {
        offset: from,
        len: at + len - from,
        ..v
    };
    (view, at - from)
}

/// `dst[dst_start..][..len] = src[src_start..][..len]` (or `+=`), the ranges
/// at any element offsets: each side is bound from the aligned offset at or
/// below its start, and long unaligned ranges are copied in pieces.
fn copy_range(
    ctx: &GpuContext,
    (src, src_start): (BufView<'_>, usize),
    (dst, dst_start): (BufView<'_>, usize),
    len: usize,
    mode: CopyMode,
) -> Result<Vec<Dispatch>> {
    let align_bytes = ctx.limits.min_storage_buffer_offset_alignment as usize;
    // The alignment in elements of each view's own dtype.
    fn window_of(v: BufView<'_>, start: usize, len: usize, align_bytes: usize) -> (BufView<'_>, usize) {
        window(v, start, len, (align_bytes / v.dtype.size()).max(1))
    }
    let window = |v, start, len| window_of(v, start, len, align_bytes);
    let (s, so) = window(src, src_start, len);
    let (d, dof) = window(dst, dst_start, len);
    if so == 0 && dof == 0 {
        // Rows of 4 (or 1): no index divisor, any length.
        let c = if len.is_multiple_of(4) { 4 } else { 1 };
        let all = ChannelRange::all(c);
        return Ok(vec![copy_channels(ctx, s, all, d, all, mode)?]);
    }
    // One row per piece, its length an exact index divisor.
    const PIECE: usize = 1 << 22;
    let mut ds = Vec::new();
    for done in (0..len).step_by(PIECE) {
        let n = PIECE.min(len - done);
        let (s, so) = window(src, src_start + done, n);
        let (d, dof) = window(dst, dst_start + done, n);
        let (sr, dr) = (
            ChannelRange::new(s.len, so, so + n),
            ChannelRange::new(d.len, dof, dof + n),
        );
        ds.push(copy_channels(ctx, s, sr, d, dr, mode)?);
    }
    Ok(ds)
}

fn view<'a>(v: BufView<'a>, r: Range) -> SliceView<'a> {
    SliceView {
        view: v,
        shape: r.shape,
        start: r.start,
    }
}

/// Every slice's dispatches in order, each with whether its uniform carries a
/// noise step (the op's own dispatches of a noisy op; never the copies).
pub(in crate::graph::executor) fn lower(
    call: &LowerCall<'_>,
    split: &NodeBindingSplit,
    [stage_in, stage_out]: [BufView<'_>; 2],
) -> Result<Vec<(Dispatch, bool)>> {
    let (ctx, node) = (call.ctx, call.node);
    let rule = node.op.rule();
    let mut all = Vec::new();
    for s in 0..split.slices.len() {
        let (mut before, mut after) = (Vec::new(), Vec::new());
        let (mut at_in, mut at_out) = (0, 0);
        let mut inputs = Vec::with_capacity(node.inputs.len());
        for (k, &t) in node.inputs.iter().enumerate() {
            let whole = call.bufs.view(t);
            inputs.push(match split.input(k, s) {
                Bind::Whole => None,
                Bind::InPlace(r) => Some(view(sub(whole, r.start, r.len), r)),
                Bind::Staged(r) => {
                    let slot = sub(stage_in, at_in, r.len);
                    at_in += split.aligned(r.len);
                    before.extend(copy_range(
                        ctx,
                        (whole, r.start),
                        (slot, 0),
                        r.len,
                        CopyMode::Overwrite,
                    )?);
                    Some(view(slot, r))
                }
            });
        }
        let mut outputs = Vec::with_capacity(node.outputs.len());
        for (k, &t) in node.outputs.iter().enumerate() {
            let whole = call.bufs.view(t);
            outputs.push(match split.output(k, s) {
                Bind::Whole => None,
                Bind::InPlace(r) => Some(view(sub(whole, r.start, r.len), r)),
                Bind::Staged(r) => {
                    let slot = sub(stage_out, at_out, r.len);
                    at_out += split.aligned(r.len);
                    let mode = if r.first {
                        CopyMode::Overwrite
                    } else {
                        CopyMode::Accumulate
                    };
                    after.extend(copy_range(ctx, (slot, 0), (whole, r.start), r.len, mode)?);
                    Some(view(slot, r))
                }
            });
        }
        let slice = Slice {
            inputs,
            outputs,
            accumulate: split.accumulates(s),
        };
        let part = LowerCall {
            slice: Some(&slice),
            ..*call
        };
        all.extend(before.into_iter().map(|d| (d, false)));
        all.extend(rule.lower(&part)?.into_iter().map(|d| (d, rule.noisy())));
        all.extend(after.into_iter().map(|d| (d, false)));
    }
    Ok(all)
}
