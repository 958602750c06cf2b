//! Normalizing-flow posteriors: the pieces of an inverse-autoregressive flow
//! (IAF) cell that no other family computes, elementwise over a level's
//! `[N, H, W, zdim]` latent:
//!
//! - [`mask`]: `y = a * mask`, the masked convs' weights and their gradient;
//! - [`iaf`] / [`iaf_backward`]: a cell's update from its network's output
//!   `ms = [m, s]` (packed, `2 * zdim` channels), `z' = σ z + (1 − σ) m` with
//!   `σ = sigmoid(s)` and per-element log |det| `log σ` (Kingma et al. 2016),
//!   or NVAE's volume-preserving `z' = z − m` (log det 0);
//! - [`kl`] / [`kl_backward`]: the level's KL term from the Gaussian draw's
//!   `kl0` (its analytic KL in training, its log ratio `log q(z0) − log
//!   p(z0)` for importance sampling), `z0`, the flowed `zk`, the prior
//!   `[mu_p, logsig_p]` and the cells' summed log |det| `ld`:
//!   `kl0 + log p(z0) − log p(zk) − ld`. In training that is an unbiased
//!   one-sample estimate of the flowed level's KL (`E[log q(z0) − log p(z0)]
//!   = kl0`) that is exactly kl0 where the cells are the identity; for
//!   importance sampling it is exactly `log q(zk) − log p(zk)`.
//!
//! The autoregressive networks themselves are graph convs (`model::flow`).
//! WGSL: `shaders/flow_common.wgsl`, `flow_mask.wgsl`, `flow_iaf.wgsl`,
//! `flow_iaf_backward.wgsl`, `flow_kl.wgsl`, `flow_kl_backward.wgsl`.

mod cases;
pub mod reference;

pub use cases::check;

use crate::error::{shape_err, Result};
use crate::gpu::{Access, BufView, Dispatch, GpuContext, Grid, Kernel, KernelSpec, Work};

const COMMON: &str = include_str!("../../../shaders/flow_common.wgsl");
const R: Access = Access::Read;
const W: Access = Access::ReadWrite;
const U: Access = Access::Uniform;

const MASK: Kernel<Params> = Kernel::portable(
    "flow_mask",
    &[COMMON, include_str!("../../../shaders/flow_mask.wgsl")],
    "flow_mask",
    &[R, R, W, U],
);
const IAF: Kernel<Params> = Kernel::portable(
    "flow_iaf",
    &[COMMON, include_str!("../../../shaders/flow_iaf.wgsl")],
    "flow_iaf",
    &[R, R, W, W, U],
);
const IAF_BACKWARD: Kernel<Params> = Kernel::portable(
    "flow_iaf_backward",
    &[COMMON, include_str!("../../../shaders/flow_iaf_backward.wgsl")],
    "flow_iaf_backward",
    &[R, R, R, R, W, W, U],
);
const KL: Kernel<Params> = Kernel::portable(
    "flow_kl",
    &[COMMON, include_str!("../../../shaders/flow_kl.wgsl")],
    "flow_kl",
    &[R, R, R, R, R, W, U],
);
const KL_BACKWARD: Kernel<Params> = Kernel::portable(
    "flow_kl_backward",
    &[COMMON, include_str!("../../../shaders/flow_kl_backward.wgsl")],
    "flow_kl_backward",
    &[R, R, R, R, W, W, W, W, U],
);

/// Every kernel of the family, for the contract test.
pub fn all_kernels() -> Vec<KernelSpec> {
    vec![
        MASK.spec(),
        IAF.spec(),
        IAF_BACKWARD.spec(),
        KL.spec(),
        KL_BACKWARD.spec(),
    ]
}

crate::gpu_params! {
    /// Uniform of every kernel of the family: `Params` in flow_common.wgsl.
    struct Params {
        n: u32,
        zdim: u32,
        shift_only: u32,
        dkl_scalar: u32,
        p_stride: u32,
        pad0: u32,
        pad1: u32,
        pad2: u32,
    }
}

/// Which update a cell makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cell {
    /// `z' = σ z + (1 − σ) m`, `σ = sigmoid(s)`: log |det| = Σ log σ.
    Gated,
    /// `z' = z − m` (NVAE): volume-preserving, log |det| = 0.
    ShiftOnly,
}

/// Views of a level's latent-sized tensors: `n` elements, `zdim` channels.
fn latent_len(op: &str, zdim: usize, plain: &[(&str, BufView<'_>)], packed: &[(&str, BufView<'_>)]) -> Result<usize> {
    let n = plain[0].1.len;
    let bad = plain.iter().any(|(_, v)| v.len != n) || packed.iter().any(|(_, v)| v.len != 2 * n);
    if zdim == 0 || n == 0 || !n.is_multiple_of(zdim) || bad {
        let lens: Vec<String> = plain
            .iter()
            .chain(packed)
            .map(|(name, v)| format!("{name}={}", v.len))
            .collect();
        return shape_err(format!(
            "{op}: the latents need one length n (a positive multiple of zdim = {zdim}) and the packed \
             tensors 2n, got {}",
            lens.join(", ")
        ));
    }
    if 2 * n > u32::MAX as usize {
        return shape_err(format!("{op}: {n} elements need more than 2^32 indices"));
    }
    Ok(n)
}

fn params(n: usize, zdim: usize, cell: Cell) -> Params {
    Params {
        n: n as u32,
        zdim: zdim as u32,
        shift_only: (cell == Cell::ShiftOnly) as u32,
        dkl_scalar: 0,
        p_stride: 0,
        pad0: 0,
        pad1: 0,
        pad2: 0,
    }
}

/// `y = a * mask`, elementwise (every view of one length).
pub fn mask(ctx: &GpuContext, a: BufView<'_>, mask: BufView<'_>, y: BufView<'_>) -> Result<Dispatch> {
    let n = a.len;
    if mask.len != n || y.len != n || n == 0 || n > u32::MAX as usize {
        return shape_err(format!(
            "flow_mask: a, mask and y need one positive length, got {}, {}, {}",
            a.len, mask.len, y.len
        ));
    }
    let p = params(n, 1, Cell::Gated);
    let d = ctx.dispatch(&MASK, &[], &[a, mask, y], &p, Grid::Invocations(n))?;
    Ok(d.with_work(Work::new(n as f64, 12.0 * n as f64)))
}

/// One cell's update: `z_out` and per-element log |det| `ls` from `z` and the
/// network's packed `ms = [m, s]`.
pub fn iaf(
    ctx: &GpuContext,
    cell: Cell,
    zdim: usize,
    z: BufView<'_>,
    ms: BufView<'_>,
    z_out: BufView<'_>,
    ls: BufView<'_>,
) -> Result<Dispatch> {
    let n = latent_len(
        "flow_iaf",
        zdim,
        &[("z", z), ("z_out", z_out), ("ls", ls)],
        &[("ms", ms)],
    )?;
    let p = params(n, zdim, cell);
    let d = ctx.dispatch(&IAF, &[], &[z, ms, z_out, ls], &p, Grid::Invocations(n))?;
    Ok(d.with_work(Work::new(12.0 * n as f64, 20.0 * n as f64)))
}

/// The gradients of [`iaf`]'s inputs from those of its outputs.
#[allow(clippy::too_many_arguments)]
pub fn iaf_backward(
    ctx: &GpuContext,
    cell: Cell,
    zdim: usize,
    dz_out: BufView<'_>,
    dls: BufView<'_>,
    z: BufView<'_>,
    ms: BufView<'_>,
    dz: BufView<'_>,
    dms: BufView<'_>,
) -> Result<Dispatch> {
    let plain = [("dz_out", dz_out), ("dls", dls), ("z", z), ("dz", dz)];
    let n = latent_len("flow_iaf_backward", zdim, &plain, &[("ms", ms), ("dms", dms)])?;
    let p = params(n, zdim, cell);
    let views = [dz_out, dls, z, ms, dz, dms];
    let d = ctx.dispatch(&IAF_BACKWARD, &[], &views, &p, Grid::Invocations(n))?;
    Ok(d.with_work(Work::new(12.0 * n as f64, 32.0 * n as f64)))
}

/// A flowed level's latents: the Gaussian draw `z0`, the prior `p` whose
/// first `2 * zdim` of `p_channels` are `[mu_p, logsig_p]` (the prior block's
/// output, read in place), and the flowed `zk`.
#[derive(Clone, Copy)]
pub struct FlowLevel<'a> {
    pub zdim: usize,
    pub z0: BufView<'a>,
    pub p: BufView<'a>,
    pub p_channels: usize,
    pub zk: BufView<'a>,
}

impl FlowLevel<'_> {
    fn len(&self, op: &str, plain: &[(&str, BufView<'_>)], packed: &[(&str, BufView<'_>)]) -> Result<usize> {
        let mut all_plain = vec![("z0", self.z0), ("zk", self.zk)];
        all_plain.extend_from_slice(plain);
        let n = latent_len(op, self.zdim, &all_plain, packed)?;
        if self.p_channels < 2 * self.zdim || self.p.len != n / self.zdim * self.p_channels {
            return shape_err(format!(
                "{op}: the prior needs {} pixels of at least 2·zdim = {} channels, got {} elements of {} channels",
                n / self.zdim,
                2 * self.zdim,
                self.p.len,
                self.p_channels
            ));
        }
        Ok(n)
    }

    fn params(&self, n: usize) -> Params {
        Params {
            p_stride: self.p_channels as u32,
            ..params(n, self.zdim, Cell::Gated)
        }
    }
}

/// The per-element KL term `kl0 + log p(z0) − log p(zk) − ld` (see the module docs).
pub fn kl(ctx: &GpuContext, l: &FlowLevel<'_>, kl0: BufView<'_>, ld: BufView<'_>, kl: BufView<'_>) -> Result<Dispatch> {
    let n = l.len("flow_kl", &[("kl0", kl0), ("ld", ld), ("kl", kl)], &[])?;
    let p = l.params(n);
    let views = [kl0, l.z0, l.p, l.zk, ld, kl];
    let d = ctx.dispatch(&KL, &[], &views, &p, Grid::Invocations(n))?;
    Ok(d.with_work(Work::new(16.0 * n as f64, 32.0 * n as f64)))
}

/// Where [`kl_backward`] writes: the gradients of `z0`, the prior's
/// `[mu_p, logsig_p]` (packed, `2 * zdim` channels), `zk` and `ld` (kl0's is
/// dkl itself).
#[derive(Clone, Copy)]
pub struct FlowLevelGrads<'a> {
    pub z0: BufView<'a>,
    pub p: BufView<'a>,
    pub zk: BufView<'a>,
    pub ld: BufView<'a>,
}

/// The gradients of [`kl`]'s inputs from `dkl` (one per element, or one value broadcast).
pub fn kl_backward(ctx: &GpuContext, l: &FlowLevel<'_>, dkl: BufView<'_>, d: &FlowLevelGrads<'_>) -> Result<Dispatch> {
    let plain = [("dz0", d.z0), ("dzk", d.zk), ("dld", d.ld)];
    let n = l.len("flow_kl_backward", &plain, &[("dp", d.p)])?;
    let dkl_scalar = dkl.len == 1 && n != 1;
    if dkl.len != n && !dkl_scalar {
        return shape_err(format!(
            "flow_kl_backward: dkl must have one value per element ({n}) or a single value, got {}",
            dkl.len
        ));
    }
    let mut p = l.params(n);
    p.dkl_scalar = dkl_scalar as u32;
    let views = [dkl, l.z0, l.p, l.zk, d.z0, d.p, d.zk, d.ld];
    let d = ctx.dispatch(&KL_BACKWARD, &[], &views, &p, Grid::Invocations(n))?;
    Ok(d.with_work(Work::new(24.0 * n as f64, 56.0 * n as f64)))
}
