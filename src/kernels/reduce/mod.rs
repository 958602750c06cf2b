//! Reductions: sum and mean over chosen axes of a tensor viewed as up to 4
//! dims, and the global squared norm of many tensors (the gradient norm). Both
//! are two-pass parallel reductions: pass 1 writes partial sums of bounded runs
//! of elements, pass 2 (`reduce_finish`) adds the partials. WGSL:
//! `shaders/reduce_partials.wgsl`, `shaders/reduce_finish.wgsl`, `shaders/reduce_sq_norm.wgsl`.

mod axes;
mod cases;
pub mod reference;
mod sq_norm;

pub use axes::{mean, sum, ReduceOp, Reduction};
pub use cases::{bench_cases, check};
pub use sq_norm::{contiguous_sq_norm_scratch_len, global_sq_norm, global_sq_norm_scratch_len, SqNormPlan};

use crate::error::{shape_err, Result};
use crate::gpu::{Access, BufView, Dispatch, GpuContext, Grid, Kernel, KernelSpec, Work};

const FINISH_WGSL: &[&str] = &[include_str!("../../../shaders/reduce_finish.wgsl")];
const FINISH_BINDINGS: &[Access] = &[Access::Read, Access::ReadWrite, Access::Uniform];
const FINISH_TREE: Kernel<FinishParams> =
    Kernel::portable("reduce_finish_tree", FINISH_WGSL, "reduce_finish_tree", FINISH_BINDINGS);
const FINISH_SERIAL: Kernel<FinishParams> = Kernel::portable(
    "reduce_finish_serial",
    FINISH_WGSL,
    "reduce_finish_serial",
    FINISH_BINDINGS,
);

/// From this many outputs on, pass 2 sums each output's partials in one
/// invocation (no barriers): there are few partials per output and enough
/// outputs to fill the GPU. Below it, a workgroup tree per output.
const SERIAL_FINISH_OUTPUTS: usize = 64;

crate::gpu_params! {
    struct FinishParams {
        outputs: u32,
        splits: u32,
        scale: f32,
    }
}

/// Every kernel of the family, for the contract test.
pub fn all_kernels() -> Vec<KernelSpec> {
    let mut all = vec![FINISH_TREE.spec(), FINISH_SERIAL.spec()];
    all.extend(axes::kernels());
    all.extend(sq_norm::kernels());
    all
}

/// Pass 2 of a reduction, also used by other families: `out[m] = scale *
/// Σ_s partials[s * out.len + m]` for `splits` rows of partials (a workgroup
/// tree per output for fewer than 64 outputs, else one invocation per output).
pub fn sum_partials(
    ctx: &GpuContext,
    partials: BufView<'_>,
    splits: usize,
    out: BufView<'_>,
    scale: f32,
) -> Result<Dispatch> {
    let outputs = out.len;
    if partials.len < splits * outputs {
        return shape_err(format!(
            "sum_partials: {} partials, {splits} rows of {outputs} need {}",
            partials.len,
            splits * outputs
        ));
    }
    let params = FinishParams {
        outputs: outputs as u32,
        splits: splits as u32,
        scale,
    };
    // Serial: one invocation per output; tree: one workgroup per output.
    let (kernel, grid) = if outputs >= SERIAL_FINISH_OUTPUTS {
        (&FINISH_SERIAL, Grid::Invocations(outputs))
    } else {
        (&FINISH_TREE, Grid::Groups(outputs))
    };
    let d = ctx.dispatch(kernel, &[], &[partials, out], &params, grid)?;
    Ok(d.with_work(Work::f32s(splits * outputs + outputs)))
}
