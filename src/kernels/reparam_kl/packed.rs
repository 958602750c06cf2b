//! The VDVAE level's draw read from its blocks' outputs in place: the posterior
//! block's output q holds (mu_q, logsig_q) and the prior block's output holds
//! (mu_p, logsig_p, xpp) along channels, so [`forward_packed`] reads the four
//! inputs there instead of from four sliced copies, and [`backward_packed`]
//! writes dq whole and the (mu_p, logsig_p) part of the prior's gradient.
//! WGSL: `shaders/reparam_kl_packed.wgsl`. Direct posterior only; the
//! forward also computes the importance-mode log ratio.

use super::{no_importance_backward, Params, Posterior, Reparam, COMMON, FORWARD_FLOPS_PER_ELEMENT};
use super::{BACKWARD_BYTES_PER_ELEMENT, BACKWARD_FLOPS_PER_ELEMENT, FORWARD_BYTES_PER_ELEMENT};
use crate::error::{shape_err, Result};
use crate::gpu::{Access, BufView, Dispatch, GpuContext, Grid, Kernel, KernelSpec, Work};
use crate::kernels::rng::RNG_WGSL;

const SRC: &[&str] = &[
    RNG_WGSL,
    COMMON,
    include_str!("../../../shaders/reparam_kl_packed.wgsl"),
];
use Access::{Read, ReadWrite, Uniform};
const BINDINGS: &[Access] = &[Read, Read, Read, Read, ReadWrite, ReadWrite, Uniform];
/// The forward also writes the prior's (mu, logsig) stash at binding 7.
const FORWARD_BINDINGS: &[Access] = &[Read, Read, Read, Read, ReadWrite, ReadWrite, Uniform, ReadWrite];
const FWD: Kernel<Params> = Kernel::portable(
    "reparam_kl_forward_packed",
    SRC,
    "reparam_kl_forward_packed",
    FORWARD_BINDINGS,
);
const BWD: Kernel<Params> = Kernel::portable(
    "reparam_kl_backward_packed",
    SRC,
    "reparam_kl_backward_packed",
    BINDINGS,
);

pub(super) fn kernels() -> Vec<KernelSpec> {
    vec![FWD.spec(), BWD.spec()]
}

/// A level's packed inputs: `q` with 2·zdim channels per row and `p` with
/// `p_channels` ≥ 2·zdim, over the same rows (N·H·W).
#[derive(Clone, Copy)]
pub struct Packed<'a> {
    pub zdim: usize,
    pub q: BufView<'a>,
    pub p: BufView<'a>,
    pub p_channels: usize,
}

impl Packed<'_> {
    /// Elements of z (rows · zdim), after checking the shapes.
    fn elements(&self, op: &str) -> Result<usize> {
        let z2 = 2 * self.zdim;
        if self.zdim == 0 || self.p_channels < z2 || !self.q.len.is_multiple_of(z2) {
            return shape_err(format!(
                "{op}: q must have 2·zdim = {z2} channels and p at least that many, got {} of {} elements",
                self.p_channels, self.q.len
            ));
        }
        let rows = self.q.len / z2;
        if self.p.len != rows * self.p_channels {
            return shape_err(format!(
                "{op}: p has {} elements, not {rows} rows of {} channels",
                self.p.len, self.p_channels
            ));
        }
        let n = rows * self.zdim;
        if n > u32::MAX as usize {
            return shape_err(format!("{op}: {n} elements exceed the u32 element index of the noise"));
        }
        Ok(n)
    }

    fn params(&self, cfg: &Reparam, n: usize) -> Result<Params> {
        if cfg.posterior != Posterior::Direct {
            return shape_err("reparam_kl packed: the packed kernels take a direct posterior only");
        }
        let mut params = Params::new(cfg.key, n, cfg.mode);
        params.zdim = self.zdim as u32;
        params.q_stride = (2 * self.zdim) as u32;
        params.p_stride = self.p_channels as u32;
        Ok(params)
    }
}

/// `z` and the per-element `kl` (rows · zdim each) of a level with a direct
/// posterior (in importance mode `kl` receives the log density ratio), and
/// `p_stash`: the prior's (mu, logsig) (2·zdim channels), which the backward
/// reads as its `p` so that the prior's whole output need not live on.
pub fn forward_packed(
    ctx: &GpuContext,
    cfg: &Reparam,
    inputs: &Packed<'_>,
    z: BufView<'_>,
    kl: BufView<'_>,
    p_stash: BufView<'_>,
) -> Result<Dispatch> {
    let op = "reparam_kl_forward_packed";
    let n = inputs.elements(op)?;
    z.expect_len(op, "z", n)?;
    kl.expect_len(op, "kl", n)?;
    p_stash.expect_len(op, "p_stash", 2 * n)?;
    // dz and dkl are not read: the inputs stand in for them.
    let views = [inputs.q, inputs.p, inputs.q, inputs.q, z, kl, p_stash];
    let d = ctx.dispatch(&FWD, &[], &views, &inputs.params(cfg, n)?, Grid::Invocations(n))?;
    let bytes = n as f64 * (FORWARD_BYTES_PER_ELEMENT + 8.0);
    Ok(d.with_work(Work::new(n as f64 * FORWARD_FLOPS_PER_ELEMENT, bytes)))
}

/// `dq` (2·zdim channels, all of q's gradient) and `dp_mu_logsig` (2·zdim
/// channels: the gradient of p's first 2·zdim channels), from `dz` and `dkl`
/// (one value per element or a single value); eps is redrawn from `cfg.key`.
/// Not for importance mode (an error).
pub fn backward_packed(
    ctx: &GpuContext,
    cfg: &Reparam,
    inputs: &Packed<'_>,
    dz: BufView<'_>,
    dkl: BufView<'_>,
    dq: BufView<'_>,
    dp_mu_logsig: BufView<'_>,
) -> Result<Dispatch> {
    let op = "reparam_kl_backward_packed";
    no_importance_backward(op, cfg)?;
    let n = inputs.elements(op)?;
    dz.expect_len(op, "dz", n)?;
    dq.expect_len(op, "dq", 2 * n)?;
    dp_mu_logsig.expect_len(op, "dp_mu_logsig", 2 * n)?;
    let dkl_scalar = dkl.len == 1 && n != 1;
    if dkl.len != n && !dkl_scalar {
        return shape_err(format!("{op}: dkl must have {n} values or one, got {}", dkl.len));
    }
    let mut params = inputs.params(cfg, n)?;
    params.dkl_scalar = dkl_scalar as u32;
    let views = [inputs.q, inputs.p, dz, dkl, dq, dp_mu_logsig];
    let d = ctx.dispatch(&BWD, &[], &views, &params, Grid::Invocations(n))?;
    let bytes = n as f64 * BACKWARD_BYTES_PER_ELEMENT;
    Ok(d.with_work(Work::new(n as f64 * BACKWARD_FLOPS_PER_ELEMENT, bytes)))
}
