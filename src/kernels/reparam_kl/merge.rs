//! The Ladder VAE's merged posterior as a tensor, packed `[mu_q, logsig_q]`
//! (`zdim` channels each): what a flowed Ladder level reads (its draw, cells
//! and KL estimate take the posterior packed, as the VDVAE's block writes it).
//! WGSL: `shaders/reparam_kl_merge.wgsl`, `reparam_kl_merge_backward.wgsl`.

use super::{common_len, Latents, Params, ZMode, COMMON};
use crate::error::{shape_err, Result};
use crate::gpu::{Access, BufView, Dispatch, GpuContext, Grid, Kernel, KernelSpec, Work};
use crate::kernels::rng::{RngKey, RNG_WGSL};
use Access::{Read, ReadWrite, Uniform};

const FWD: Kernel<Params> = Kernel::portable(
    "ladder_merge_packed",
    &[RNG_WGSL, COMMON, include_str!("../../../shaders/reparam_kl_merge.wgsl")],
    "ladder_merge_packed",
    &[Read, Read, Read, Read, ReadWrite, Uniform],
);
const BWD: Kernel<Params> = Kernel::portable(
    "ladder_merge_packed_backward",
    &[
        RNG_WGSL,
        COMMON,
        include_str!("../../../shaders/reparam_kl_merge_backward.wgsl"),
    ],
    "ladder_merge_packed_backward",
    &[
        Read, Read, Read, Read, Read, ReadWrite, ReadWrite, ReadWrite, ReadWrite, Uniform,
    ],
);

pub(super) fn kernels() -> Vec<KernelSpec> {
    vec![FWD.spec(), BWD.spec()]
}

fn params(op: &str, x: &Latents<'_>, q: BufView<'_>, zdim: usize) -> Result<Params> {
    let names = ["mu_d", "logsig_d", "mu_p", "logsig_p"];
    let n = common_len(op, &names, &x.views())?;
    if zdim == 0 || !n.is_multiple_of(zdim) || q.len != 2 * n {
        return shape_err(format!(
            "{op}: q must hold 2·{n} values (the merged mu and logsig, zdim = {zdim} channels each), got {}",
            q.len
        ));
    }
    let mut p = Params::new(RngKey::new(0, 0, 0), n, ZMode::Mean);
    p.zdim = zdim as u32;
    Ok(p)
}

/// `q = [mu_q, logsig_q]` packed, from the bottom-up `x.q_*` and the prior `x.p_*`.
pub fn merge_packed(ctx: &GpuContext, x: &Latents<'_>, zdim: usize, q: BufView<'_>) -> Result<Dispatch> {
    let p = params("ladder_merge_packed", x, q, zdim)?;
    let n = p.n as usize;
    let mut views = x.views().to_vec();
    views.push(q);
    let d = ctx.dispatch(&FWD, &[], &views, &p, Grid::Invocations(n))?;
    Ok(d.with_work(Work::new(12.0 * n as f64, 24.0 * n as f64)))
}

/// The four inputs' gradients (`grads`) from `dq`'s.
pub fn merge_packed_backward(
    ctx: &GpuContext,
    x: &Latents<'_>,
    zdim: usize,
    dq: BufView<'_>,
    grads: &Latents<'_>,
) -> Result<Dispatch> {
    let p = params("ladder_merge_packed_backward", x, dq, zdim)?;
    let n = p.n as usize;
    common_len(
        "ladder_merge_packed_backward",
        &["d mu_d", "d logsig_d", "d mu_p", "d logsig_p"],
        &grads.views(),
    )?;
    if grads.q_mu.len != n {
        return shape_err(format!(
            "ladder_merge_packed_backward: gradients of {} values for {n}",
            grads.q_mu.len
        ));
    }
    let mut views = vec![dq];
    views.extend(x.views());
    views.extend(grads.views());
    let d = ctx.dispatch(&BWD, &[], &views, &p, Grid::Invocations(n))?;
    Ok(d.with_work(Work::new(24.0 * n as f64, 40.0 * n as f64)))
}
