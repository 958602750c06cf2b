//! The dx weights of many convs flipped and transposed in one pass (one
//! dispatch per binding-sized span of weights), so that a training step does
//! not spend a dispatch per conv on it: the tiled dx then reads them as they are.

use super::Conv2dShape;
use crate::error::{shape_err, Result};
use crate::gpu::{Access, BufView, Dispatch, GpuContext, Grid, Kernel, KernelSpec};

/// u32 words per table entry (`ENTRY_WORDS` in the shader).
const ENTRY_WORDS: usize = 6;

crate::gpu_params! {
    struct FlipManyParams {
        total: u32,
        entries: u32,
        pad0: u32,
        pad1: u32,
    }
}

const FLIP_MANY: Kernel<FlipManyParams> = Kernel::portable(
    "conv2d_flip_transpose_many",
    &[include_str!("../../../shaders/conv2d_flip_many.wgsl")],
    "flip_transpose_many",
    &[Access::Read, Access::ReadWrite, Access::Read, Access::Uniform],
)
.with_constants(&[("ENTRY_WORDS", ENTRY_WORDS as i64)]);

pub(super) fn kernels() -> Vec<KernelSpec> {
    vec![FLIP_MANY.spec()]
}

/// One conv's weights: `w` (`[cout, k, k, cin]`) and where its flipped,
/// transposed copy goes (`[cin, k, k, cout]`, taps reversed).
#[derive(Clone, Copy)]
pub struct FlipJob<'a> {
    pub shape: Conv2dShape,
    pub w: BufView<'a>,
    pub wt: BufView<'a>,
}

/// The flipped, transposed weights of every job. Jobs must share one source
/// buffer and one destination buffer, each span of jobs bound at once must fit
/// one binding, and their table (a u32 storage buffer the caller keeps alive,
/// from [`flip_table`]) must be `table`.
pub fn flip_transpose_many(ctx: &GpuContext, jobs: &[FlipJob<'_>], table: BufView<'_>) -> Result<Dispatch> {
    let (Some(first), Some(last)) = (jobs.first(), jobs.last()) else {
        return shape_err("conv2d flip: no weights to flip");
    };
    let (src, dst) = (span(first.w, last.w), span(first.wt, last.wt));
    let total: usize = jobs.iter().map(|j| j.shape.w_len()).sum();
    table.expect_len("conv2d flip", "table", jobs.len() * ENTRY_WORDS)?;
    let p = FlipManyParams {
        total: total as u32,
        entries: jobs.len() as u32,
        pad0: 0,
        pad1: 0,
    };
    let d = ctx.dispatch(&FLIP_MANY, &[], &[src, dst, table], &p, Grid::Invocations(total))?;
    // Moves bytes only: every weight read once and written once.
    Ok(d.with_work(crate::gpu::Work::f32s(2 * total)))
}

/// The view from the start of `a` to the end of `b` (same buffer).
fn span<'a>(a: BufView<'a>, b: BufView<'_>) -> BufView<'a> {
    BufView {
        len: b.offset + b.len - a.offset,
        ..a
    }
}

/// The table [`flip_transpose_many`] reads: per job, its weights' and copy's
/// offsets within the bound spans, cout, k², cin and its first element.
pub fn flip_table(jobs: &[FlipJob<'_>]) -> Result<Vec<u32>> {
    let (Some(first), Some(_)) = (jobs.first(), jobs.last()) else {
        return shape_err("conv2d flip: no weights to flip");
    };
    let mut table = Vec::with_capacity(jobs.len() * ENTRY_WORDS);
    let mut start = 0usize;
    for (i, j) in jobs.iter().enumerate() {
        let s = &j.shape;
        j.w.expect_len("conv2d flip", "w", s.w_len())?;
        j.wt.expect_len("conv2d flip", "wt", s.w_len())?;
        let ordered = i == 0 || (j.w.offset > jobs[i - 1].w.offset && j.wt.offset > jobs[i - 1].wt.offset);
        if !ordered || j.w.buffer != first.w.buffer || j.wt.buffer != first.wt.buffer {
            return shape_err(
                "conv2d flip: jobs must lie in increasing order in one source and one destination buffer",
            );
        }
        let words = [
            j.w.offset - first.w.offset,
            j.wt.offset - first.wt.offset,
            s.cout,
            s.k * s.k,
            s.cin,
            start,
        ];
        table.extend(words.iter().map(|&w| w as u32));
        start += s.w_len();
    }
    Ok(table)
}
