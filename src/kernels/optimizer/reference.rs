//! CPU reference of the optimizer step: f32 storage, f64 arithmetic, written as
//! official VDVAE / torch compute it (clip_grad_norm_, AdamW with bias
//! correction, update_ema), in the plainest form.

use super::state::StepState;
use super::AdamW;

/// One parameter tensor with its optimizer buffers.
#[derive(Clone, Debug, Default)]
pub struct TensorRef {
    pub param: Vec<f32>,
    pub grad: Vec<f32>,
    pub exp_avg: Vec<f32>,
    pub exp_avg_sq: Vec<f32>,
    pub ema: Option<Vec<f32>>,
}

/// The squared global gradient norm, sum of g^2 over every tensor (what the
/// global-norm reduce writes into the state).
pub fn grad_sq(tensors: &[TensorRef]) -> f32 {
    tensors
        .iter()
        .flat_map(|t| &t.grad)
        .map(|&g| g as f64 * g as f64)
        .sum::<f64>() as f32
}

/// What one step does, in f64.
#[derive(Clone, Copy, Debug)]
pub struct Decision {
    pub apply: bool,
    pub clip_scale: f64,
    pub lr: f64,
    /// 1 - beta1^t and 1 - beta2^t of this step (t after the increment).
    pub bias_correction1: f64,
    pub bias_correction2: f64,
}

/// The decision from `state.grad_sq`; advances the counters in `state` and fills
/// its float fields (rounded to f32) as the GPU does.
pub fn decide(cfg: &AdamW, state: &mut StepState) -> Decision {
    let norm = (state.grad_sq as f64).sqrt();
    let finite = norm.is_finite();
    let threshold = cfg.skip_threshold as f64;
    let apply = finite && (threshold <= 0.0 || norm < threshold);
    // LambdaLR(linear_warmup): 1 if it > warmup else it / warmup.
    let (it, warmup) = (state.iteration as f64, cfg.warmup_iters as f64);
    let factor = if warmup <= 0.0 || it > warmup { 1.0 } else { it / warmup };
    let lr = cfg.lr as f64 * factor;
    let clip = cfg.grad_clip as f64;
    let clip_scale = if clip > 0.0 && finite {
        (clip / (norm + 1e-6)).min(1.0)
    } else {
        1.0
    };
    state.grad_norm = norm as f32;
    state.clip_scale = clip_scale as f32;
    state.lr = lr as f32;
    state.applied = apply;
    state.iteration += 1;
    if apply {
        state.step += 1;
    } else {
        state.skips += 1;
        if !finite {
            state.nonfinite_skips += 1;
        }
    }
    let t = state.step as i32;
    let bias_correction1 = 1.0 - (cfg.beta1 as f64).powi(t);
    let bias_correction2 = 1.0 - (cfg.beta2 as f64).powi(t);
    if apply {
        state.step_size = (lr / bias_correction1) as f32;
        state.bc2_sqrt = bias_correction2.sqrt() as f32;
    }
    Decision {
        apply,
        clip_scale,
        lr,
        bias_correction1,
        bias_correction2,
    }
}

/// The AdamW (+ EMA) update of one tensor under decision `d`.
pub fn update(cfg: &AdamW, d: &Decision, t: &mut TensorRef) {
    if !d.apply {
        return;
    }
    let (b1, b2, eps) = (cfg.beta1 as f64, cfg.beta2 as f64, cfg.eps as f64);
    let (wd, rate) = (cfg.weight_decay as f64, cfg.ema_rate as f64);
    for i in 0..t.param.len() {
        // clip_grad_norm_ scales the stored f32 gradient.
        let g = (t.grad[i] as f64 * d.clip_scale) as f32 as f64;
        let m = b1 * t.exp_avg[i] as f64 + (1.0 - b1) * g;
        let v = b2 * t.exp_avg_sq[i] as f64 + (1.0 - b2) * g * g;
        let m_hat = m / d.bias_correction1;
        let v_hat = v / d.bias_correction2;
        let p = t.param[i] as f64;
        let p = p - d.lr * wd * p - d.lr * m_hat / (v_hat.sqrt() + eps);
        t.param[i] = p as f32;
        t.exp_avg[i] = m as f32;
        t.exp_avg_sq[i] = v as f32;
        if let Some(ema) = &mut t.ema {
            ema[i] = (ema[i] as f64 * rate + t.param[i] as f64 * (1.0 - rate)) as f32;
        }
    }
}

/// A whole step: decide from `state.grad_sq`, then update every tensor.
pub fn step(cfg: &AdamW, state: &mut StepState, tensors: &mut [TensorRef]) -> Decision {
    let d = decide(cfg, state);
    for t in tensors {
        update(cfg, &d, t);
    }
    d
}
