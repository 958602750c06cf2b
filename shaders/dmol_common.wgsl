// Discretized mixture of logistics (official VDVAE vae_helpers.py): shared
// layout, parameters and numerically stable f32 helpers for the loss,
// loss+gradient and sampling kernels. src/kernels/dmol/reference.rs is the f64 oracle.
//
// One pixel's out_conv channels (M mixtures, colour block stride S = 3M for RGB,
// 2M for greyscale): [0, M) mixture logits; colour c at M + S*c + j holds the
// means (j < M), raw log-scales (M <= j < 2M) and, for RGB, raw coefficients
// (2M <= j < 3M; tanh applied here).

struct DmolParams {
    pixels: u32,        // H*W of one image
    images: u32,
    channels: u32,      // 1 or 3
    mixtures: u32,
    out_channels: u32,  // M + channels * stride
    stride: u32,        // 3M (RGB) or 2M (greyscale)
    tiles: u32,         // workgroups per image = ceil(pixels / 64)
    half_bin: f32,      // 1/255 (8-bit) or 1/31 (5-bit)
    log_half_bins: f32, // ln 127.5 or ln 15.5
}

const DMOL_LOG_SCALE_MIN: f32 = -7.0;
const DMOL_EDGE: f32 = 0.999;
// ln(1e-5): the cdf_delta > 1e-5 test made on log(cdf_delta).
const DMOL_LOG_MIN_DELTA: f32 = -11.512925;
const DMOL_LN2: f32 = 0.6931472;

// log(1 + t) for t in [-1/2, 1]: 2 atanh(s), s = t / (2 + t), |s| <= 1/3, so
// the series below is accurate to ~1e-10 relative without the built-in log
// (whose precision near 1 is only 2^-21 absolute by the Vulkan spec).
fn dmol_log1p(t: f32) -> f32 {
    let s = t / (2.0 + t);
    let s2 = s * s;
    let series = 1.0 + s2 * (0.33333333 + s2 * (0.2 + s2 * (0.14285714 + s2 * (0.11111111 + s2 * (0.09090909
        + s2 * (0.07692308 + s2 * (0.06666667 + s2 * 0.05882353)))))));
    return 2.0 * s * series;
}

// log(1 + t) for any t >= 0 (the tail of a logsumexp after its largest term).
fn dmol_log1p_nonneg(t: f32) -> f32 {
    return select(log(1.0 + t), dmol_log1p(t), t <= 1.0);
}

// expm1(x) / x for |x| <= ln 2 (Taylor to x^12: ~3e-11 relative).
fn dmol_expm1_over_x_small(x: f32) -> f32 {
    return 1.0 + x / 2.0 * (1.0 + x / 3.0 * (1.0 + x / 4.0 * (1.0 + x / 5.0 * (1.0 + x / 6.0 * (1.0 + x / 7.0
        * (1.0 + x / 8.0 * (1.0 + x / 9.0 * (1.0 + x / 10.0 * (1.0 + x / 11.0 * (1.0 + x / 12.0))))))))));
}

// 1 - e for e = exp(-d), d >= 0, relative-accurate also for small d.
fn dmol_one_minus(e: f32, d: f32) -> f32 {
    return select(1.0 - e, d * dmol_expm1_over_x_small(-d), d <= DMOL_LN2);
}

// tanh(r) = (1 - e) / (1 + e), e = exp(-2|r|), with 1 - e accurate for small |r|
// (lavapipe's built-in tanh loses most digits near 0: 2.6% off at 1.8e-6).
fn dmol_tanh(r: f32) -> f32 {
    let d = 2.0 * abs(r);
    let e = exp(-d);
    return sign(r) * dmol_one_minus(e, d) / (1.0 + e);
}

// d tanh / dr = 1 - tanh^2 = 4 e / (1 + e)^2: no cancellation as |tanh| -> 1.
fn dmol_tanh_grad(r: f32) -> f32 {
    let e = exp(-2.0 * abs(r));
    return 4.0 * e / ((1.0 + e) * (1.0 + e));
}

// d max(raw, -7) / d raw as PyTorch's maximum backward gives it (a tie splits the gradient).
fn dmol_floor_grad(raw: f32) -> f32 {
    return select(select(0.0, 0.5, raw == DMOL_LOG_SCALE_MIN), 1.0, raw > DMOL_LOG_SCALE_MIN);
}

// The logistic function's pieces at z from one e = exp(-|z|), all relative-accurate.
struct DmolLogistic {
    e: f32,
    log1p_e: f32,      // log(1 + e)
    softplus: f32,     // softplus(z) = -log sigmoid(-z)
    softplus_neg: f32, // softplus(-z) = -log sigmoid(z)
    sigmoid: f32,
    sigmoid_neg: f32,  // sigmoid(-z)
}

fn dmol_logistic(z: f32) -> DmolLogistic {
    var o: DmolLogistic;
    o.e = exp(-abs(z));
    o.log1p_e = dmol_log1p(o.e);
    o.softplus = max(z, 0.0) + o.log1p_e;
    o.softplus_neg = max(-z, 0.0) + o.log1p_e;
    let r = 1.0 / (1.0 + o.e);
    o.sigmoid = select(o.e * r, r, z >= 0.0);
    o.sigmoid_neg = select(r, o.e * r, z >= 0.0);
    return o;
}

// One (mixture, colour) term: the log-probability of target x under a discretized
// logistic with the already coefficient-adjusted mean and the floored log-scale,
// with its derivatives w.r.t. that mean and log-scale (the branch selected by
// torch.where gets the whole gradient). Branch-free until the final selection:
// SIMD lanes of one batch take different branches, so every branch is paid for
// anyway; the branches share their three exponentials.
struct DmolTerm {
    lp: f32,
    d_mean: f32,
    d_log_scale: f32,
}

fn dmol_term(x: f32, mean: f32, log_scale: f32, half_bin: f32, log_half_bins: f32) -> DmolTerm {
    let inv = exp(-log_scale);
    let centered = x - mean;
    let a = inv * (centered + half_bin); // plus_in
    let b = inv * (centered - half_bin); // min_in
    let mid = inv * centered;
    let la = dmol_logistic(a);
    let lb = dmol_logistic(b);
    let lm = dmol_logistic(mid);

    // Density fallback: log_pdf_mid - ln(bins / 2), with
    // mid - 2 softplus(mid) = -|mid| - 2 log(1 + exp(-|mid|)) free of cancellation.
    var t: DmolTerm;
    let abs_mid = abs(mid);
    let tanh_half = sign(mid) * dmol_one_minus(lm.e, abs_mid) / (1.0 + lm.e); // 2 sigmoid(mid) - 1
    t.lp = -abs_mid - 2.0 * lm.log1p_e - log_scale - log_half_bins;
    t.d_mean = inv * tanh_half;
    t.d_log_scale = mid * tanh_half - 1.0;

    // cdf_delta = sigmoid(a) - sigmoid(b) = sigmoid(a) sigmoid(-b) (1 - exp(-d)), d = a - b = 2 h inv:
    // a product of accurate factors instead of a difference of nearly equal ones. The last
    // factor depends on the log-scale only: d/dlog_scale log(1 - exp(-d)) = -d / expm1(d).
    let d = 2.0 * half_bin * inv;
    let ed = exp(-d);
    let om = dmol_one_minus(ed, d);
    let log_om = select(dmol_log1p(-ed), log(om), d <= DMOL_LN2);
    let log_delta = -la.softplus_neg - lb.softplus + log_om;
    if (log_delta > DMOL_LOG_MIN_DELTA) {
        t.lp = log_delta;
        t.d_mean = inv * (lb.sigmoid - la.sigmoid_neg);
        t.d_log_scale = b * lb.sigmoid - a * la.sigmoid_neg - d * ed / om;
    }
    if (x > DMOL_EDGE) {
        // log(1 - cdf_min) = -softplus(b)
        t.lp = -lb.softplus;
        t.d_mean = inv * lb.sigmoid;
        t.d_log_scale = b * lb.sigmoid;
    }
    if (x < -DMOL_EDGE) {
        // log cdf_plus = log sigmoid(a)
        t.lp = -la.softplus_neg;
        t.d_mean = -inv * la.sigmoid_neg;
        t.d_log_scale = -a * la.sigmoid_neg;
    }
    return t;
}
