//! Which matmul kernel a product runs on: the GPU-shaped one with `--kernels
//! gpu`, else the adapter's tuned choice among those that run (timed once per
//! shape class and cached, see `crate::gpu::tune`).

use std::sync::OnceLock;

use super::kernels::{
    matmul_packed, matmul_tiled, matmul_workgroup, packed_scratch_len, packed_supported, MatmulDispatch,
};
use super::MatmulShape;
use crate::bench::time_dispatches;
use crate::error::{shape_err, Result};
use crate::gpu::tune::{kernels_hash, KernelSet};
use crate::gpu::{BufView, Dispatch, GpuContext};

/// A matmul kernel (see the family's module notes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulPath {
    /// v2: 4x4 register blocks, 64 invocations, loads straight from storage.
    Tiled,
    /// GPU-shaped: 256 invocations, operands staged in workgroup memory.
    Workgroup,
    /// v3: packed operands, 8-lane subgroup broadcasts (needs a scratch).
    Packed,
}

/// Seconds each candidate is timed for when tuning.
const TIME_PER_TRY: f64 = 0.02;

impl MatmulPath {
    pub const ALL: [MatmulPath; 3] = [MatmulPath::Tiled, MatmulPath::Workgroup, MatmulPath::Packed];

    pub fn name(self) -> &'static str {
        match self {
            MatmulPath::Tiled => "tiled",
            MatmulPath::Workgroup => "workgroup",
            MatmulPath::Packed => "packed",
        }
    }

    /// Whether this adapter runs the path for `s`: the packed kernel needs
    /// 8-lane subgroups and its packed operands in one binding.
    pub fn runs(self, ctx: &GpuContext, s: &MatmulShape) -> bool {
        match self {
            MatmulPath::Tiled | MatmulPath::Workgroup => true,
            MatmulPath::Packed => {
                packed_supported(ctx) && packed_scratch_len(s) as u64 * 4 <= ctx.limits.max_storage_buffer_binding_size
            }
        }
    }

    /// The built-in default (`VDVAE_TUNE=off`): packed where it runs, else
    /// the GPU-shaped kernel.
    fn default_for(ctx: &GpuContext, s: &MatmulShape) -> MatmulPath {
        if MatmulPath::Packed.runs(ctx, s) {
            MatmulPath::Packed
        } else {
            MatmulPath::Workgroup
        }
    }

    /// The path a product of `s` runs on here: the GPU-shaped one with
    /// `--kernels gpu`, else the adapter's tuned choice.
    pub fn best(ctx: &GpuContext, s: &MatmulShape) -> MatmulPath {
        if ctx.kernels == KernelSet::Gpu {
            return MatmulPath::Workgroup;
        }
        let candidates: Vec<MatmulPath> = MatmulPath::ALL.into_iter().filter(|p| p.runs(ctx, s)).collect();
        let class = format!("matmul {}", s.label());
        let default = MatmulPath::default_for(ctx, s);
        ctx.tuner
            .choose_among(&class, sources(), &candidates, MatmulPath::name, default, |path| {
                time_path(ctx, s, path)
            })
    }

    /// The product's dispatches on this path; the packed path needs a
    /// `scratch` for its packed operands (at least [`packed_scratch_len`]
    /// elements), the others ignore it.
    #[allow(clippy::too_many_arguments)]
    pub fn dispatches(
        self,
        ctx: &GpuContext,
        s: &MatmulShape,
        alpha: f32,
        beta: f32,
        a: BufView<'_>,
        b: BufView<'_>,
        c: BufView<'_>,
        scratch: Option<BufView<'_>>,
    ) -> Result<Vec<Dispatch>> {
        Ok(match (self, scratch) {
            (MatmulPath::Tiled, _) => vec![matmul_tiled(ctx, s, alpha, beta, a, b, c)?],
            (MatmulPath::Workgroup, _) => vec![matmul_workgroup(ctx, s, alpha, beta, a, b, c)?],
            (MatmulPath::Packed, Some(scratch)) => matmul_packed(ctx, s, alpha, beta, a, b, c, scratch)?,
            (MatmulPath::Packed, None) => return shape_err("matmul: the packed path needs a scratch"),
        })
    }

    /// [`MatmulPath::dispatches`] with a scratch of their own for the packed
    /// path, held by the returned dispatch.
    #[allow(clippy::too_many_arguments)]
    pub fn with_own_scratch(
        self,
        ctx: &GpuContext,
        s: &MatmulShape,
        alpha: f32,
        beta: f32,
        a: BufView<'_>,
        b: BufView<'_>,
        c: BufView<'_>,
    ) -> Result<MatmulDispatch> {
        let scratch = (self == MatmulPath::Packed).then(|| ctx.zeros(packed_scratch_len(s)));
        let view = scratch.as_ref().map(|s| s.view());
        let dispatches = self.dispatches(ctx, s, alpha, beta, a, b, c, view)?;
        Ok(MatmulDispatch { dispatches, scratch })
    }
}

/// The hash of the family's kernel sources, which a cached choice must match.
fn sources() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| kernels_hash(&super::all_kernels()))
}

/// Seconds per run of a product of `s` on `path`, over zeroed operands.
fn time_path(ctx: &GpuContext, s: &MatmulShape, path: MatmulPath) -> Result<f64> {
    let (la, lb, lc) = s.lens();
    let (a, b, c) = (ctx.zeros(la.max(1)), ctx.zeros(lb.max(1)), ctx.zeros(lc.max(1)));
    let d = path.with_own_scratch(ctx, s, 1.0, 0.0, a.view(), b.view(), c.view())?;
    time_dispatches(ctx, &d.dispatches, TIME_PER_TRY, 2)
}
