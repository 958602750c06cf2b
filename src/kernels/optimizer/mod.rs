//! AdamW with gradient clipping, update skipping and a weight EMA, decided and
//! applied on the GPU: a training step records
//!
//! 1. the global-norm reduce (another family) writing sum g^2 into word 0 of the
//!    [state buffer](state),
//! 2. [`decide`]: one invocation reads the norm and writes the decision, clip
//!    scale, learning rate and bias corrections, and counts steps and skips,
//! 3. [`update`] per parameter tensor (or per arena of tensors): reads the decision
//!    from the state buffer and, when applied, does the AdamW step and the EMA.
//!
//! No CPU round trip. The math is official VDVAE's (apex FusedAdam in AdamW mode,
//! identical to torch.optim.AdamW):
//!
//! ```text
//! norm  = sqrt(sum g^2)                        (torch clip_grad_norm_, pre-clip)
//! apply = norm finite and (skip_threshold <= 0 or norm < skip_threshold)
//! lr    = base_lr * min(1, iteration / warmup_iters)   (LambdaLR(linear_warmup); iteration
//!         counts every earlier step, applied or skipped, so the first step has lr 0)
//! g     = g * min(1, grad_clip / (norm + 1e-6))
//! t += 1; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2
//! p     = p (1 - lr wd) - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
//! ema   = ema * rate + p * (1 - rate)          (only on applied steps)
//! ```
//!
//! A skipped step changes no parameter, moment or EMA and leaves t alone. The
//! learning rate is computed on the GPU from the base lr, the warm-up length and
//! the iteration counter in the state buffer; a custom schedule can set
//! `warmup_iters = 0` and rebuild the `decide` dispatch with a new `lr`.
//!
//! WGSL: `shaders/optimizer_common.wgsl` (state layout, AdamW element),
//! `optimizer_decide.wgsl`, `optimizer_adamw.wgsl`, `optimizer_adamw_ema.wgsl`.

mod cases;
pub mod reference;
pub mod state;

pub use cases::{bench_cases, check};
pub use state::{read_state, upload_state, write_grad_sq, OptState, StepState, GRAD_SQ, ITERATION, STATE_WORDS};

use crate::error::{shape_err, Result};
use crate::gpu::{Access, BufView, Dispatch, GpuContext, Grid, Kernel, KernelSpec, Work};
use crate::kernels::elementwise::{ELEM_F32, ELEM_VEC4};

const COMMON: &str = include_str!("../../../shaders/optimizer_common.wgsl");
const ADAMW_WGSL: &str = include_str!("../../../shaders/optimizer_adamw.wgsl");
const ADAMW_EMA_WGSL: &str = include_str!("../../../shaders/optimizer_adamw_ema.wgsl");

const DECIDE: Kernel<DecideParams> = Kernel::portable(
    "optimizer_decide",
    &[ELEM_F32, COMMON, include_str!("../../../shaders/optimizer_decide.wgsl")],
    "optimizer_decide",
    &[Access::ReadWrite, Access::Uniform],
);
const ADAMW_BINDINGS: &[Access] = &[
    Access::ReadWrite,
    Access::Read,
    Access::ReadWrite,
    Access::ReadWrite,
    Access::Read,
    Access::Uniform,
];
const ADAMW_EMA_BINDINGS: &[Access] = &[
    Access::ReadWrite,
    Access::Read,
    Access::ReadWrite,
    Access::ReadWrite,
    Access::ReadWrite,
    Access::Read,
    Access::Uniform,
];
/// Each update as (one f32, a vec4) per invocation: on lavapipe every storage
/// access is a loop over the lanes, and a vec4 costs far less than 4 scalars.
const ADAMW: [Kernel<UpdateParams>; 2] = [
    Kernel::portable(
        "adamw_update",
        &[ELEM_F32, COMMON, ADAMW_WGSL],
        "adamw_update",
        ADAMW_BINDINGS,
    ),
    Kernel::portable(
        "adamw_update_vec4",
        &[ELEM_VEC4, COMMON, ADAMW_WGSL],
        "adamw_update",
        ADAMW_BINDINGS,
    ),
];
const ADAMW_EMA: [Kernel<UpdateParams>; 2] = [
    Kernel::portable(
        "adamw_update_ema",
        &[ELEM_F32, COMMON, ADAMW_EMA_WGSL],
        "adamw_update_ema",
        ADAMW_EMA_BINDINGS,
    ),
    Kernel::portable(
        "adamw_update_ema_vec4",
        &[ELEM_VEC4, COMMON, ADAMW_EMA_WGSL],
        "adamw_update_ema",
        ADAMW_EMA_BINDINGS,
    ),
];

/// Every kernel of the family, for the contract test.
pub fn all_kernels() -> Vec<KernelSpec> {
    let mut all = vec![DECIDE.spec()];
    all.extend(ADAMW.iter().chain(&ADAMW_EMA).map(|k| k.spec()));
    all
}

/// Optimizer hyperparameters. `Default` is official VDVAE's command-line
/// defaults (hps.py) with apex FusedAdam's eps; presets override lr, wd,
/// warm-up, clip, skip threshold and EMA rate (CIFAR-10: lr 2e-4, wd 0.01,
/// warm-up 100, EMA 0.9999).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamW {
    /// Base learning rate, reached after the warm-up.
    pub lr: f32,
    /// Linear warm-up length in iterations; <= 0 means none.
    pub warmup_iters: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// Decoupled weight decay: p -= lr * wd * p.
    pub weight_decay: f32,
    /// Max global gradient norm (torch clip_grad_norm_); <= 0 means no clipping.
    pub grad_clip: f32,
    /// Skip the update when the norm is >= this; <= 0 (official: -1) means never
    /// skip on the norm. A NaN or infinite norm always skips.
    pub skip_threshold: f32,
    /// EMA of the weights: ema = ema * rate + p * (1 - rate).
    pub ema_rate: f32,
}

impl Default for AdamW {
    fn default() -> AdamW {
        AdamW {
            lr: 1.5e-4,
            warmup_iters: 0.0,
            beta1: 0.9,
            beta2: 0.9,
            eps: 1e-8,
            weight_decay: 0.0,
            grad_clip: 200.0,
            skip_threshold: 400.0,
            ema_rate: 0.999,
        }
    }
}

/// One parameter tensor and its optimizer buffers, all of the same length; any
/// of them may be a slice of a larger buffer (offsets aligned as wgpu requires).
#[derive(Clone, Copy)]
pub struct ParamTensor<'a> {
    pub param: BufView<'a>,
    pub grad: BufView<'a>,
    /// Adam's first and second moments.
    pub exp_avg: BufView<'a>,
    pub exp_avg_sq: BufView<'a>,
    /// The EMA copy of the weights, when this tensor has one.
    pub ema: Option<BufView<'a>>,
}

crate::gpu_params! {
    /// Uniform of `optimizer_decide`; same layout as `DecideParams` in optimizer_decide.wgsl.
    struct DecideParams {
        lr: f32,
        warmup_iters: f32,
        beta1: f32,
        beta2: f32,
        grad_clip: f32,
        skip_threshold: f32,
    }
}

crate::gpu_params! {
    /// Uniform of the update kernels; same layout as `UpdateParams` in optimizer_common.wgsl.
    struct UpdateParams {
        /// Invocations: elements, or vec4s in the vec4 kernels.
        n: u32,
        beta1: f32,
        beta2: f32,
        eps: f32,
        weight_decay: f32,
        ema_rate: f32,
    }
}

/// Float operations per parameter of an update (clip, moments, sqrt, divides, decay, EMA).
pub const UPDATE_FLOPS_PER_PARAM: f64 = 20.0;
/// Bytes per parameter a perfect update with EMA moves: reads p, g, m, v, ema; writes p, m, v, ema.
pub const UPDATE_EMA_BYTES_PER_PARAM: f64 = 36.0;
/// The same without EMA: reads p, g, m, v; writes p, m, v.
pub const UPDATE_BYTES_PER_PARAM: f64 = 28.0;

/// The per-step decision (one invocation): reads `state.grad_sq`, writes the rest of the state.
pub fn decide(ctx: &GpuContext, cfg: &AdamW, state: BufView<'_>) -> Result<Dispatch> {
    state::check_state_view("optimizer_decide", &state)?;
    let params = DecideParams {
        lr: cfg.lr,
        warmup_iters: cfg.warmup_iters,
        beta1: cfg.beta1,
        beta2: cfg.beta2,
        grad_clip: cfg.grad_clip,
        skip_threshold: cfg.skip_threshold,
    };
    let d = ctx.dispatch(&DECIDE, &[], &[state], &params, Grid::Workgroups([1, 1, 1]))?;
    Ok(d.with_work(Work::f32s(2 * STATE_WORDS)))
}

/// The AdamW (+ EMA) update of one tensor, applied only when the state says so.
/// A tensor longer than one storage binding is split into several dispatches.
/// `cfg` supplies beta1, beta2, eps, weight_decay and ema_rate (so a tensor may
/// have its own weight decay); its betas must be the ones given to [`decide`],
/// which computed the bias corrections. Record after `decide`, in the same pass.
pub fn update(ctx: &GpuContext, cfg: &AdamW, state: BufView<'_>, t: &ParamTensor<'_>) -> Result<Vec<Dispatch>> {
    // Chunks a multiple of 64 elements (256 bytes) keep every chunk's offset aligned.
    let max_chunk = (ctx.limits.max_storage_buffer_binding_size as usize / 4) / 64 * 64;
    update_in_chunks(ctx, cfg, state, t, max_chunk)
}

fn sub_view<'a>(v: BufView<'a>, start: usize, len: usize) -> BufView<'a> {
    BufView {
        offset: v.offset + start,
        len,
        ..v
    }
}

/// [`update`] with chunks of at most `max_chunk` elements (tests use small chunks).
pub(crate) fn update_in_chunks(
    ctx: &GpuContext,
    cfg: &AdamW,
    state: BufView<'_>,
    t: &ParamTensor<'_>,
    max_chunk: usize,
) -> Result<Vec<Dispatch>> {
    state::check_state_view("adamw_update", &state)?;
    let n = t.param.len;
    let mut lens = vec![
        ("param", t.param.len),
        ("grad", t.grad.len),
        ("exp_avg", t.exp_avg.len),
        ("exp_avg_sq", t.exp_avg_sq.len),
    ];
    if let Some(e) = t.ema {
        lens.push(("ema", e.len));
    }
    if lens.iter().any(|(_, l)| *l != n) {
        let lens: Vec<String> = lens.iter().map(|(name, l)| format!("{name}={l}")).collect();
        return shape_err(format!(
            "adamw_update: a tensor's buffers must have equal lengths, got {}",
            lens.join(", ")
        ));
    }
    if max_chunk == 0 || !max_chunk.is_multiple_of(64) {
        return shape_err(format!(
            "adamw_update: chunk of {max_chunk} elements is not a positive multiple of 64"
        ));
    }
    let mut dispatches = Vec::new();
    // An empty tensor needs no dispatch.
    for start in (0..n).step_by(max_chunk) {
        let len = max_chunk.min(n - start);
        // Chunks start at multiples of 64, so a chunk of whole vec4s is aligned.
        let v = if len.is_multiple_of(4) { 4 } else { 1 };
        let params = UpdateParams {
            n: (len / v) as u32,
            beta1: cfg.beta1,
            beta2: cfg.beta2,
            eps: cfg.eps,
            weight_decay: cfg.weight_decay,
            ema_rate: cfg.ema_rate,
        };
        let mut views = vec![
            sub_view(t.param, start, len),
            sub_view(t.grad, start, len),
            sub_view(t.exp_avg, start, len),
            sub_view(t.exp_avg_sq, start, len),
        ];
        let (kernel, bytes_per_param) = match t.ema {
            Some(e) => {
                views.push(sub_view(e, start, len));
                (&ADAMW_EMA[(v == 4) as usize], UPDATE_EMA_BYTES_PER_PARAM)
            }
            None => (&ADAMW[(v == 4) as usize], UPDATE_BYTES_PER_PARAM),
        };
        views.push(state);
        let work = Work::new(
            len as f64 * UPDATE_FLOPS_PER_PARAM,
            len as f64 * bytes_per_param + 4.0 * STATE_WORDS as f64,
        );
        dispatches.push(
            ctx.dispatch(kernel, &[], &views, &params, Grid::Invocations(len / v))?
                .with_work(work),
        );
    }
    Ok(dispatches)
}

#[cfg(test)]
mod tests {
    #[test]
    fn state_words_round_trip() {
        let s = super::StepState {
            grad_sq: 4.0,
            grad_norm: 2.0,
            clip_scale: 0.5,
            applied: true,
            lr: 1e-3,
            step_size: 1e-2,
            bc2_sqrt: 0.3,
            step: 3,
            skips: 1,
            iteration: 4,
            nonfinite_skips: 1,
        };
        assert_eq!(super::StepState::from_words(&s.to_words()).unwrap(), s);
    }
}
