//! Reparameterized latent sample and Gaussian KL, fused: from the posterior
//! (mu_q, logsig_q) and prior (mu_p, logsig_p) of one decoder level, elementwise
//! over `[N, H, W, zdim]`,
//!
//! ```text
//! z  = mu_q + exp(logsig_q) * eps                      eps ~ N(0, 1) from an RngKey
//! kl = -1/2 + logsig_p - logsig_q + (exp(2 logsig_q) + (mu_q - mu_p)^2) / (2 exp(2 logsig_p))
//! ```
//!
//! as official VDVAE computes them (`draw_gaussian_diag_samples`,
//! `gaussian_analytical_kl`). eps is drawn at the element's flat index, so the CPU
//! reference draws the same noise ([`RngKey::normal`]) and the backward redraws it
//! instead of storing it. The Ladder VAE variant first merges a bottom-up
//! estimate (mu_d, logsig_d) with the prior by precision weighting (Sønderby et
//! al. 2016). Prior sampling at temperature t draws `mu_p + exp(logsig_p + ln t) * eps`.
//!
//! In importance mode ([`ZMode::Importance`]) z is drawn as above and the
//! second output is the single-sample log density ratio instead of the KL:
//!
//! ```text
//! log q(z) - log p(z) = -eps^2 / 2 - logsig_q + ((z - mu_p) / sig_p)^2 / 2 + logsig_p
//! ```
//!
//! (the 1/2 ln 2 pi terms cancel), with q the merged posterior for the Ladder
//! variant. Its mean over eps is the KL. It has no backward.
//!
//! WGSL: `shaders/reparam_kl_common.wgsl` (shared math), `reparam_kl.wgsl`,
//! `reparam_kl_backward.wgsl`, `reparam_kl_prior.wgsl`.

mod cases;
mod merge;
mod packed;
pub mod reference;

pub use cases::{bench_cases, check};
pub use merge::{merge_packed, merge_packed_backward};
pub use packed::{backward_packed, forward_packed, Packed};

use crate::error::{shape_err, Error, Result};
use crate::gpu::{Access, BufView, Dispatch, GpuContext, Grid, Kernel, KernelSpec, Work};
use crate::kernels::rng::{RngKey, RNG_WGSL};

const COMMON: &str = include_str!("../../../shaders/reparam_kl_common.wgsl");
const FORWARD_SRC: &[&str] = &[RNG_WGSL, COMMON, include_str!("../../../shaders/reparam_kl.wgsl")];
const BACKWARD_SRC: &[&str] = &[
    RNG_WGSL,
    COMMON,
    include_str!("../../../shaders/reparam_kl_backward.wgsl"),
];
const PRIOR_SRC: &[&str] = &[RNG_WGSL, COMMON, include_str!("../../../shaders/reparam_kl_prior.wgsl")];

const FORWARD_BINDINGS: &[Access] = &[
    Access::Read,
    Access::Read,
    Access::Read,
    Access::Read,
    Access::ReadWrite,
    Access::ReadWrite,
    Access::Uniform,
];
const BACKWARD_BINDINGS: &[Access] = &[
    Access::Read,
    Access::Read,
    Access::Read,
    Access::Read,
    Access::Read,
    Access::Read,
    Access::ReadWrite,
    Access::ReadWrite,
    Access::ReadWrite,
    Access::ReadWrite,
    Access::Uniform,
];

const FWD: Kernel<Params> = Kernel::portable(
    "reparam_kl_forward",
    FORWARD_SRC,
    "reparam_kl_forward",
    FORWARD_BINDINGS,
);
const LADDER_FWD: Kernel<Params> = Kernel::portable(
    "ladder_reparam_kl_forward",
    FORWARD_SRC,
    "ladder_reparam_kl_forward",
    FORWARD_BINDINGS,
);
const BWD: Kernel<Params> = Kernel::portable(
    "reparam_kl_backward",
    BACKWARD_SRC,
    "reparam_kl_backward",
    BACKWARD_BINDINGS,
);
const LADDER_BWD: Kernel<Params> = Kernel::portable(
    "ladder_reparam_kl_backward",
    BACKWARD_SRC,
    "ladder_reparam_kl_backward",
    BACKWARD_BINDINGS,
);
const PRIOR: Kernel<Params> = Kernel::portable(
    "prior_sample",
    PRIOR_SRC,
    "prior_sample",
    &[Access::Read, Access::Read, Access::ReadWrite, Access::Uniform],
);

/// Invocations per workgroup of every kernel of the family.
/// Every kernel of the family, for the contract test.
pub fn all_kernels() -> Vec<KernelSpec> {
    let mut all: Vec<KernelSpec> = [FWD, LADDER_FWD, BWD, LADDER_BWD, PRIOR]
        .iter()
        .map(|k| k.spec())
        .collect();
    all.extend(packed::kernels());
    all.extend(merge::kernels());
    all
}

/// How the posterior of a level is formed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Posterior {
    /// (mu_q, logsig_q) come straight from the posterior network (VDVAE).
    Direct,
    /// The inputs are a bottom-up estimate (mu_d, logsig_d), merged with the prior:
    /// `sig_q^2 = 1 / (sig_d^-2 + sig_p^-2)`, `mu_q = (mu_d sig_d^-2 + mu_p sig_p^-2) sig_q^2` (Ladder VAE).
    Ladder,
}

/// What `z` is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZMode {
    /// `z = mu_q + sig_q * eps` (training).
    Sample,
    /// `z = mu_q` (posterior mean, e.g. deterministic reconstructions); the KL is unchanged.
    Mean,
    /// `z = mu_q + sig_q * eps` as in `Sample`, and the second output is
    /// `log q(z) - log p(z)` instead of the KL (see the module docs). Forward only.
    Importance,
}

/// One call's settings: how the posterior is formed, what z is, and where its noise comes from.
#[derive(Clone, Copy, Debug)]
pub struct Reparam {
    pub posterior: Posterior,
    pub mode: ZMode,
    /// Noise stream of this latent tensor; element i uses `key.normal(i)`.
    pub key: RngKey,
}

impl Reparam {
    /// VDVAE's training setting: direct posterior, sampled z.
    pub fn sampled(key: RngKey) -> Reparam {
        Reparam {
            posterior: Posterior::Direct,
            mode: ZMode::Sample,
            key,
        }
    }
}

/// The four per-element inputs of a level (or their gradients), each its own view
/// of equal length. With [`Posterior::Ladder`], `q_mu`/`q_logsig` hold the
/// bottom-up estimate (mu_d, logsig_d).
#[derive(Clone, Copy)]
pub struct Latents<'a> {
    pub q_mu: BufView<'a>,
    pub q_logsig: BufView<'a>,
    pub p_mu: BufView<'a>,
    pub p_logsig: BufView<'a>,
}

impl<'a> Latents<'a> {
    fn views(&self) -> [BufView<'a>; 4] {
        [self.q_mu, self.q_logsig, self.p_mu, self.p_logsig]
    }
}

crate::gpu_params! {
    /// Uniform of every kernel of the family: `Params` in reparam_kl_common.wgsl.
    struct Params {
        key: RngKey,
        n: u32,
        mode: u32,
        dkl_scalar: u32,
        ln_t: f32,
        zdim: u32,
        q_stride: u32,
        p_stride: u32,
        pad0: u32,
    }
}

const MODE_SAMPLE: u32 = 0;
const MODE_MEAN: u32 = 1;
const MODE_IMPORTANCE: u32 = 2;

impl Params {
    fn new(key: RngKey, n: usize, mode: ZMode) -> Params {
        Params {
            key,
            n: n as u32,
            mode: match mode {
                ZMode::Sample => MODE_SAMPLE,
                ZMode::Mean => MODE_MEAN,
                ZMode::Importance => MODE_IMPORTANCE,
            },
            dkl_scalar: 0,
            ln_t: 0.0,
            zdim: 0,
            q_stride: 0,
            p_stride: 0,
            pad0: 0,
        }
    }
}

fn common_len(op: &str, names: &[&str], views: &[BufView<'_>]) -> Result<usize> {
    let n = views[0].len;
    if views.iter().any(|v| v.len != n) {
        let lens: Vec<String> = names
            .iter()
            .zip(views)
            .map(|(name, v)| format!("{name}={}", v.len))
            .collect();
        return shape_err(format!(
            "{op}: every tensor must have the same number of elements, got {}",
            lens.join(", ")
        ));
    }
    if n > u32::MAX as usize {
        return shape_err(format!("{op}: {n} elements exceed the u32 element index of the noise"));
    }
    Ok(n)
}

/// Float operations per element (Box-Muller + sample + KL; the integer Philox rounds not counted).
pub const FORWARD_FLOPS_PER_ELEMENT: f64 = 45.0;
pub const BACKWARD_FLOPS_PER_ELEMENT: f64 = 55.0;
/// Bytes per element a perfect kernel moves: 4 reads + 2 writes, 6 reads + 4 writes.
pub const FORWARD_BYTES_PER_ELEMENT: f64 = 24.0;
pub const BACKWARD_BYTES_PER_ELEMENT: f64 = 40.0;

/// The error of a backward asked for in importance mode.
fn no_importance_backward(op: &str, cfg: &Reparam) -> Result<()> {
    if cfg.mode == ZMode::Importance {
        return Err(Error::Input(format!(
            "{op}: the importance-sampling log ratio has no backward (evaluation only)"
        )));
    }
    Ok(())
}

/// `z` and the per-element `kl` of one level (see the module docs); in
/// importance mode `kl` receives the log density ratio.
pub fn forward(
    ctx: &GpuContext,
    cfg: &Reparam,
    inputs: &Latents<'_>,
    z: BufView<'_>,
    kl: BufView<'_>,
) -> Result<Dispatch> {
    let mut views = inputs.views().to_vec();
    views.extend([z, kl]);
    let names = ["q_mu", "q_logsig", "p_mu", "p_logsig", "z", "kl"];
    let n = common_len("reparam_kl_forward", &names, &views)?;
    let kernel = match cfg.posterior {
        Posterior::Direct => &FWD,
        Posterior::Ladder => &LADDER_FWD,
    };
    let params = Params::new(cfg.key, n, cfg.mode);
    let d = ctx.dispatch(kernel, &[], &views, &params, Grid::Invocations(n))?;
    Ok(d.with_work(Work::new(
        n as f64 * FORWARD_FLOPS_PER_ELEMENT,
        n as f64 * FORWARD_BYTES_PER_ELEMENT,
    )))
}

/// Gradients of a loss with respect to the four inputs of [`forward`], given its
/// gradients `dz` and `dkl` with respect to `z` and `kl`. `dkl` has one value per
/// element, or a single value broadcast over all of them. eps is redrawn from
/// `cfg.key`, which must be the forward's key. Not for [`ZMode::Importance`] (an error).
pub fn backward(
    ctx: &GpuContext,
    cfg: &Reparam,
    inputs: &Latents<'_>,
    dz: BufView<'_>,
    dkl: BufView<'_>,
    grads: &Latents<'_>,
) -> Result<Dispatch> {
    no_importance_backward("reparam_kl_backward", cfg)?;
    let mut views = inputs.views().to_vec();
    views.push(dz);
    views.extend(grads.views());
    let names = [
        "q_mu",
        "q_logsig",
        "p_mu",
        "p_logsig",
        "dz",
        "dq_mu",
        "dq_logsig",
        "dp_mu",
        "dp_logsig",
    ];
    let n = common_len("reparam_kl_backward", &names, &views)?;
    let dkl_scalar = dkl.len == 1 && n != 1;
    if dkl.len != n && !dkl_scalar {
        return shape_err(format!(
            "reparam_kl_backward: dkl must have one value per element ({n}) or a single value, got {}",
            dkl.len
        ));
    }
    views.insert(5, dkl);
    let kernel = match cfg.posterior {
        Posterior::Direct => &BWD,
        Posterior::Ladder => &LADDER_BWD,
    };
    let mut params = Params::new(cfg.key, n, cfg.mode);
    params.dkl_scalar = dkl_scalar as u32;
    let d = ctx.dispatch(kernel, &[], &views, &params, Grid::Invocations(n))?;
    // A scalar dkl is read once, not once per element.
    let bytes = n as f64 * BACKWARD_BYTES_PER_ELEMENT - 4.0 * (n - dkl.len) as f64;
    Ok(d.with_work(Work::new(n as f64 * BACKWARD_FLOPS_PER_ELEMENT, bytes)))
}

/// A sample of the prior at temperature `t`: `z = mu_p + exp(logsig_p + ln t) * eps`
/// (official VDVAE's `logsig_p += ln t`); `t = 0` gives `z = mu_p`.
pub fn prior_sample(
    ctx: &GpuContext,
    key: RngKey,
    temperature: f32,
    p_mu: BufView<'_>,
    p_logsig: BufView<'_>,
    z: BufView<'_>,
) -> Result<Dispatch> {
    let views = [p_mu, p_logsig, z];
    let n = common_len("prior_sample", &["p_mu", "p_logsig", "z"], &views)?;
    if !(temperature >= 0.0 && temperature.is_finite()) {
        return Err(Error::Input(format!(
            "prior_sample: temperature must be finite and >= 0, got {temperature}"
        )));
    }
    let mode = if temperature > 0.0 { ZMode::Sample } else { ZMode::Mean };
    let mut params = Params::new(key, n, mode);
    params.ln_t = (temperature as f64).ln() as f32;
    if temperature == 0.0 {
        params.ln_t = 0.0;
    }
    let d = ctx.dispatch(&PRIOR, &[], &views, &params, Grid::Invocations(n))?;
    Ok(d.with_work(Work::f32s(3 * n)))
}
