//! The global squared norm of many tensors, Σ_tensors Σ x², as one f32 on the
//! GPU (the gradient norm for clipping and skipping, read by the optimizer with
//! no CPU round trip).

use super::sum_partials;
use crate::error::{shape_err, Result};
use crate::gpu::{Access, BufView, Dispatch, GpuContext, Grid, Kernel, KernelSpec, Work};

/// Elements per pass-1 workgroup (`CHUNK` in the WGSL): 256 invocations × 64.
const CHUNK: usize = 16384;

const SQ_NORM: Kernel<Params> = Kernel::portable(
    "sq_norm_partials",
    &[include_str!("../../../shaders/reduce_sq_norm.wgsl")],
    "sq_norm_partials",
    &[Access::Read, Access::ReadWrite, Access::Uniform],
)
.with_constants(&[("CHUNK", CHUNK as i64)]);

crate::gpu_params! {
    struct Params {
        start: u32,
        len: u32,
        first_partial: u32,
    }
}

pub(super) fn kernels() -> Vec<KernelSpec> {
    vec![SQ_NORM.spec()]
}

/// One pass-1 dispatch: elements `start .. start + len` of `binding`, whose
/// workgroup sums land at `partials[first_partial ..]`.
struct Piece<'a> {
    binding: BufView<'a>,
    start: usize,
    len: usize,
    first_partial: usize,
}

/// The pass-1 pieces of a list of tensors: tensors that follow each other in
/// one buffer are merged, each range is bound from the nearest aligned offset
/// below it (so any element offset works) and split to fit one binding.
pub struct SqNormPlan<'a> {
    pieces: Vec<Piece<'a>>,
    partials: usize,
}

impl<'a> SqNormPlan<'a> {
    pub fn new(ctx: &GpuContext, tensors: &[BufView<'a>]) -> Result<SqNormPlan<'a>> {
        SqNormPlan::with_binding_limit(ctx, tensors, ctx.limits.max_storage_buffer_binding_size as usize)
    }

    /// [`SqNormPlan::new`] binding at most `binding_limit` bytes (capped to the adapter's limit).
    pub fn with_binding_limit(
        ctx: &GpuContext,
        tensors: &[BufView<'a>],
        binding_limit: usize,
    ) -> Result<SqNormPlan<'a>> {
        // Merge neighbours: (buffer, offset, len) ranges.
        let mut ranges: Vec<BufView<'a>> = Vec::new();
        for t in tensors.iter().filter(|t| t.len > 0) {
            match ranges.last_mut() {
                Some(r) if r.buffer == t.buffer && r.offset + r.len == t.offset => r.len += t.len,
                _ => ranges.push(*t),
            }
        }
        let align = (ctx.limits.min_storage_buffer_offset_alignment as usize / 4).max(1);
        let max_binding = binding_limit.min(ctx.limits.max_storage_buffer_binding_size as usize) / 4;
        // Pieces start up to align − 1 elements past their binding; keep whole
        // chunks unless a binding holds less than one.
        let room = max_binding.saturating_sub(align);
        let max_piece = if room >= CHUNK { room / CHUNK * CHUNK } else { room };
        let max_piece = max_piece.min(u32::MAX as usize / 2);
        if max_piece == 0 {
            return shape_err(format!(
                "global_sq_norm: a storage binding of {max_binding} elements is too small"
            ));
        }
        let mut pieces = Vec::new();
        let mut partials = 0;
        for r in ranges {
            let mut done = 0;
            while done < r.len {
                let len = (r.len - done).min(max_piece);
                let offset = r.offset + done;
                let aligned = offset / align * align;
                let binding = BufView {
                    offset: aligned,
                    len: offset - aligned + len,
                    ..r
                };
                pieces.push(Piece {
                    binding,
                    start: offset - aligned,
                    len,
                    first_partial: partials,
                });
                partials += len.div_ceil(CHUNK);
                done += len;
            }
        }
        Ok(SqNormPlan { pieces, partials })
    }

    /// Scratch elements the plan needs (at least 1).
    pub fn scratch_len(&self) -> usize {
        self.partials.max(1)
    }

    /// Pass-1 dispatches (one per piece) and the final sum into `out[0]`.
    pub fn dispatches(&self, ctx: &GpuContext, scratch: BufView<'_>, out: BufView<'_>) -> Result<Vec<Dispatch>> {
        if scratch.len < self.scratch_len() || out.len < 1 {
            return shape_err(format!(
                "global_sq_norm: scratch of {} elements (needs {}) and output of {} (needs 1)",
                scratch.len,
                self.scratch_len(),
                out.len
            ));
        }
        let partials = BufView {
            len: self.scratch_len(),
            ..scratch
        };
        let mut ds = Vec::with_capacity(self.pieces.len() + 1);
        for p in &self.pieces {
            let params = Params {
                start: p.start as u32,
                len: p.len as u32,
                first_partial: p.first_partial as u32,
            };
            // One row of workgroups (the shader reads only wid.x).
            let grid = Grid::Workgroups([p.len.div_ceil(CHUNK) as u32, 1, 1]);
            let d = ctx.dispatch(&SQ_NORM, &[], &[p.binding, partials], &params, grid)?;
            ds.push(d.with_work(Work::f32s(p.len + p.len.div_ceil(CHUNK))));
        }
        ds.push(sum_partials(
            ctx,
            partials,
            self.partials,
            BufView { len: 1, ..out },
            1.0,
        )?);
        Ok(ds)
    }
}

/// Scratch elements [`global_sq_norm`] needs for these tensors.
pub fn global_sq_norm_scratch_len(ctx: &GpuContext, tensors: &[BufView<'_>]) -> Result<usize> {
    Ok(SqNormPlan::new(ctx, tensors)?.scratch_len())
}

/// [`global_sq_norm_scratch_len`] of one contiguous range of `elements` (slices
/// of one buffer that follow each other, as the optimizer's gradients are),
/// known without buffers: memory budgets count it (`crate::graph::budget`).
pub fn contiguous_sq_norm_scratch_len(elements: usize) -> usize {
    elements.div_ceil(CHUNK).max(1)
}

/// `out[0] = Σ over all tensors of Σ x²` — the SQUARED global norm, not its
/// square root: the optimizer reads `out[0]` and takes the sqrt itself.
///
/// `tensors` may be separate buffers or slices of one buffer at any element
/// offset; slices that follow each other are summed as one range. One dispatch
/// per range (more for a range past one binding) writes per-workgroup partial
/// sums (64 terms per invocation, then 16 × 16) into `scratch`
/// ([`global_sq_norm_scratch_len`] elements), and one final workgroup adds them
/// in a tree. Everything stays on the GPU. An empty list gives 0.
pub fn global_sq_norm(
    ctx: &GpuContext,
    tensors: &[BufView<'_>],
    scratch: BufView<'_>,
    out: BufView<'_>,
) -> Result<Vec<Dispatch>> {
    SqNormPlan::new(ctx, tensors)?.dispatches(ctx, scratch, out)
}
