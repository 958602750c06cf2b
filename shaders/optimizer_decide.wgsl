// One invocation per training step, before the update kernels: reads the squared
// gradient norm and decides on the GPU whether the step is applied (official
// VDVAE: skip when the loss has NaNs or grad_norm >= skip_threshold; here a
// non-finite norm stands for the NaNs), the clip scale (torch clip_grad_norm_),
// the warmed-up learning rate and the bias corrections; counts steps and skips.
// Included after optimizer_common.wgsl.

// Same layout as `DecideParams` in src/kernels/optimizer/mod.rs.
struct DecideParams {
    lr: f32,
    // Linear warm-up length in iterations; <= 0 means none.
    warmup_iters: f32,
    beta1: f32,
    beta2: f32,
    // <= 0 means no clipping.
    grad_clip: f32,
    // <= 0 means never skip on the norm.
    skip_threshold: f32,
}

@group(0) @binding(0) var<storage, read_write> state: OptState;
@group(0) @binding(1) var<uniform> c: DecideParams;

// NaN and +-inf have all exponent bits set (checked on the bits: comparisons with
// NaN may be optimized away by a driver).
fn is_finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

// b^t by repeated squaring: exact for t = 1, a few ulp otherwise, same on every adapter.
fn pow_u32(b: f32, t: u32) -> f32 {
    var result = 1.0;
    var base = b;
    var e = t;
    loop {
        if (e == 0u) { break; }
        if ((e & 1u) == 1u) { result *= base; }
        base *= base;
        e = e >> 1u;
    }
    return result;
}

@compute @workgroup_size(1)
fn optimizer_decide() {
    var s = state;
    let norm = sqrt(s.grad_sq);
    let finite = is_finite(norm);
    let too_big = c.skip_threshold > 0.0 && norm >= c.skip_threshold;
    let apply = finite && !too_big;

    // torch LambdaLR with official VDVAE's linear_warmup: factor = min(1, it / warmup),
    // `it` counting every earlier iteration, applied or skipped (so the first step has lr 0).
    var factor = 1.0;
    if (c.warmup_iters > 0.0) {
        factor = min(1.0, f32(s.iteration) / c.warmup_iters);
    }
    s.lr = c.lr * factor;
    s.grad_norm = norm;
    s.clip_scale = 1.0;
    if (c.grad_clip > 0.0 && finite) {
        s.clip_scale = min(1.0, c.grad_clip / (norm + 1e-6));
    }
    if (apply) {
        s.apply = 1u;
        s.step += 1u;
        s.step_size = s.lr / (1.0 - pow_u32(c.beta1, s.step));
        s.bc2_sqrt = sqrt(1.0 - pow_u32(c.beta2, s.step));
    } else {
        s.apply = 0u;
        s.skips += 1u;
        if (!finite) { s.nonfinite_skips += 1u; }
    }
    s.iteration += 1u;
    state = s;
}
