// Shared by the optimizer kernels: the optimizer state buffer and the AdamW
// arithmetic. Layout mirrors `StepState` in src/kernels/optimizer/state.rs (16 words).

struct OptState {
    // Sum of squared gradients over all parameters, written by the global-norm reduce.
    grad_sq: f32,
    // The rest is written by optimizer_decide:
    grad_norm: f32,
    // Gradient multiplier of this step, min(1, grad_clip / (grad_norm + 1e-6)).
    clip_scale: f32,
    // 1 when this step is applied, 0 when skipped.
    apply: u32,
    // Learning rate of this step (base lr times the warm-up factor).
    lr: f32,
    // lr / (1 - beta1^step) and sqrt(1 - beta2^step) of the last applied step.
    step_size: f32,
    bc2_sqrt: f32,
    // Applied steps (Adam's t), skipped steps, all decided steps (the warm-up clock),
    // and the skips whose gradient norm was NaN or infinite.
    step: u32,
    skips: u32,
    iteration: u32,
    nonfinite_skips: u32,
    reserved0: u32,
    reserved1: u32,
    reserved2: u32,
    reserved3: u32,
    reserved4: u32,
}

// Per-tensor hyperparameters; same layout as `UpdateParams` in src/kernels/optimizer/mod.rs.
struct UpdateParams {
    n: u32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    ema_rate: f32,
}

// One AdamW element (or a vec4 of them: `Elem`, set by the kernel's source
// list) as torch.optim.AdamW computes it, on the clipped gradient:
// p *= 1 - lr wd; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
// p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
struct Updated {
    p: Elem,
    m: Elem,
    v: Elem,
}

fn adamw_element(p: Elem, grad: Elem, m: Elem, v: Elem, s: OptState, c: UpdateParams) -> Updated {
    let g = grad * s.clip_scale;
    let m1 = c.beta1 * m + (1.0 - c.beta1) * g;
    let v1 = c.beta2 * v + (1.0 - c.beta2) * g * g;
    let denom = sqrt(v1) / s.bc2_sqrt + c.eps;
    let p1 = p * (1.0 - s.lr * c.weight_decay) - s.step_size * (m1 / denom);
    return Updated(p1, m1, v1);
}
