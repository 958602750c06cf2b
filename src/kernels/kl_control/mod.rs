//! KL controls of a hierarchical VAE's loss: per-term β with a linear warm-up,
//! free bits and NVAE's KL balancing. One dispatch reads every term's
//! per-image KL `[N, J]`, draws the step from its noise key (the GPU copies the
//! iteration into it before each step) and writes each term's coefficients and
//! its gradient seeds. WGSL: `shaders/kl_control.wgsl`.
//!
//! For term j with batch mean m_j at step t:
//! - β_j(t) = β0 + (β1 − β0)·min(1, t / warmup) (β1 when warmup = 0);
//! - balanced while warming up (balance on, t < warmup, β0 < β1, i.e. β_j(t) < β1):
//!   γ_j = r_j / mean_k r_k over those terms, r_j = (m_j + 0.01) / α_j (NVAE's
//!   `kl_balancer`; its factor Σ_k (m_k + 0.01) cancels in the mean); else γ_j = 1;
//! - free bits λ_j > 0: the term enters as max(λ_j, m_j), its gradient gated by m_j ≥ λ_j.
//!
//! `coef[j] = β_j γ_j`, `coef[J + j] = β_j γ_j [gate]`, `seeds[n, j] = coef[J + j] · scale`.

mod cases;
pub mod reference;

pub use cases::check;

use crate::error::{shape_err, Result};
use crate::gpu::{Access, BufView, Dispatch, GpuContext, Grid, Kernel, KernelSpec, Work};
use crate::kernels::rng::{RngKey, RNG_WGSL};

/// f32 words per term in the spec tensor: β0, β1, warm-up steps, λ, α, then padding.
pub const SPEC_WORDS: usize = 8;
/// The largest warm-up the spec (f32 words) holds exactly: 2^24 steps.
pub const MAX_WARMUP: u32 = 1 << 24;
/// Added to each term's mean before balancing (NVAE's `kl_per_group`).
pub const BALANCE_EPS: f64 = 0.01;

const WG: u32 = 64;
const SEEDS: Kernel<SeedsParams> = Kernel::portable(
    "kl_seeds",
    &[RNG_WGSL, include_str!("../../../shaders/kl_control.wgsl")],
    "kl_seeds",
    &[
        Access::Read,
        Access::Read,
        Access::ReadWrite,
        Access::ReadWrite,
        Access::Uniform,
    ],
)
.with_workgroup_size([WG, 1, 1]);

/// Every kernel of the family, for the contract test.
pub fn all_kernels() -> Vec<KernelSpec> {
    vec![SEEDS.spec()]
}

/// One term's schedule, as a row of the spec tensor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TermSpec {
    pub beta0: f32,
    pub beta1: f32,
    pub warmup_steps: u32,
    pub free_nats: f32,
    pub balance_weight: f32,
}

impl TermSpec {
    /// Its row of the spec tensor.
    pub fn words(&self) -> [f32; SPEC_WORDS] {
        let mut w = [0.0; SPEC_WORDS];
        w[..5].copy_from_slice(&[
            self.beta0,
            self.beta1,
            self.warmup_steps as f32,
            self.free_nats,
            self.balance_weight,
        ]);
        w
    }

    /// The term a row of the spec tensor describes.
    pub fn from_words(w: &[f32]) -> TermSpec {
        TermSpec {
            beta0: w[0],
            beta1: w[1],
            warmup_steps: w[2] as u32,
            free_nats: w[3],
            balance_weight: w[4],
        }
    }

    /// An error unless the kernel can apply it (finite numbers, a warm-up the
    /// spec holds exactly, λ ≥ 0, and α > 0 when balancing).
    pub fn validate(&self, op: &str, balance: bool) -> Result<()> {
        let numbers = [self.beta0, self.beta1, self.free_nats, self.balance_weight];
        if numbers.iter().any(|x| !x.is_finite()) || self.free_nats < 0.0 {
            return shape_err(format!("{op}: {self:?} needs finite β, α and a free-bits λ ≥ 0"));
        }
        if self.warmup_steps > MAX_WARMUP {
            return shape_err(format!("{op}: a warm-up of at most {MAX_WARMUP} steps, got {self:?}"));
        }
        if balance && self.balance_weight <= 0.0 {
            return shape_err(format!("{op}: balancing divides by α, which must be > 0: {self:?}"));
        }
        Ok(())
    }
}

crate::gpu_params! {
    struct SeedsParams {
        key: RngKey,
        images: u32,
        terms: u32,
        balance: u32,
        scale: f32,
    }
}

/// The buffers of one [`seeds`] dispatch.
pub struct Seeds<'a> {
    /// Per-image KL of every term, `[images, terms]`.
    pub kl: BufView<'a>,
    /// `[terms, SPEC_WORDS]`: each term's [`TermSpec::words`].
    pub spec: BufView<'a>,
    /// `[images, terms]`: d loss / d kl.
    pub seeds: BufView<'a>,
    /// `[2 · terms]`: β·γ, then β·γ·gate.
    pub coef: BufView<'a>,
}

/// Coefficients and gradient seeds of `terms` KL terms over `images` images at
/// the step in `key` (its step word; the GPU overwrites it before each run of a
/// graph). `scale` multiplies the seeds (1 / (N · dims) for a per-dim loss). One dispatch.
pub fn seeds(
    ctx: &GpuContext,
    b: &Seeds<'_>,
    images: usize,
    terms: usize,
    balance: bool,
    scale: f32,
    key: RngKey,
) -> Result<Dispatch> {
    let op = "kl_seeds";
    if images == 0 || terms == 0 {
        return shape_err(format!(
            "{op}: needs at least one image and one term, got {images} and {terms}"
        ));
    }
    b.kl.expect_len(op, "kl", images * terms)?;
    b.spec.expect_len(op, "spec", terms * SPEC_WORDS)?;
    b.seeds.expect_len(op, "seeds", images * terms)?;
    b.coef.expect_len(op, "coef", 2 * terms)?;
    let params = SeedsParams {
        key,
        images: images as u32,
        terms: terms as u32,
        balance: balance as u32,
        scale,
    };
    let views = [b.kl, b.spec, b.seeds, b.coef];
    let d = ctx.dispatch(&SEEDS, &[], &views, &params, Grid::Workgroups([1, 1, 1]))?;
    // The means are read twice (the balance, then the coefficients).
    let elements = 3 * images * terms + terms * SPEC_WORDS + 2 * terms;
    Ok(d.with_work(Work::f32s(elements)))
}
