// Shared math of the reparam_kl family: the reparameterized sample, the
// Gaussian KL and the Ladder VAE precision-weighted merge. Included after
// rng.wgsl and before the family's kernel files.

// Same layout as `Params` in src/kernels/reparam_kl/mod.rs.
struct Params {
    key: RngKey,
    n: u32,
    // 0: z = mu_q + sigma_q * eps, 1: z = mu_q (posterior mean), 2: sampled z
    // and the log density ratio log q(z) - log p(z) in place of the KL (forward only).
    mode: u32,
    // 1 when dkl is one value broadcast over every element.
    dkl_scalar: u32,
    // ln(temperature) for prior sampling.
    ln_t: f32,
    // Packed kernels: latent channels, and the channels of the posterior and
    // prior tensors whose first 2 * zdim channels are (mu, logsig).
    zdim: u32,
    q_stride: u32,
    p_stride: u32,
    pad0: u32,
}

// Where element i of a zdim-channel latent lies in a tensor of 2 * zdim
// channels per pixel that holds a pair (mu, logsig) packed: its first half;
// the second half is zdim further.
fn packed_pair_index(i: u32, zdim: u32) -> u32 {
    return (i / zdim) * 2u * zdim + i % zdim;
}

const MODE_SAMPLE: u32 = 0u;
const MODE_MEAN: u32 = 1u;
const MODE_IMPORTANCE: u32 = 2u;

fn standard_normal(key: RngKey, i: u32) -> f32 {
    return rng_normal_from_bits(rng_bits(key, i));
}

// KL(q || p) = -1/2 + lp - lq + (sigma_q^2 + (mu_q - mu_p)^2) / (2 sigma_p^2), written
// with exp(2 (lq - lp)) and exp(-2 lp) so neither variance overflows on its own.
fn gaussian_kl(mq: f32, lq: f32, mp: f32, lp: f32) -> f32 {
    let d = mq - mp;
    return -0.5 + lp - lq + 0.5 * (exp(2.0 * (lq - lp)) + d * d * exp(-2.0 * lp));
}

// log q(z) - log p(z) for z = mq + exp(lq) eps: -eps^2 / 2 - lq + t^2 / 2 + lp with
// t = (z - mp) / sigma_p = (mq - mp) exp(-lp) + exp(lq - lp) eps, formed without z
// (no cancellation in z - mp) and without either variance on its own.
fn gaussian_log_ratio(eps: f32, mq: f32, lq: f32, mp: f32, lp: f32) -> f32 {
    let t = (mq - mp) * exp(-lp) + exp(lq - lp) * eps;
    return -0.5 * eps * eps - lq + 0.5 * t * t + lp;
}

// (z, second output) of element i: the second output is the KL, or in
// MODE_IMPORTANCE the log density ratio of the drawn z. Reads p.mode and p.key.
fn latent_draw(i: u32, mq: f32, lq: f32, mp: f32, lp: f32) -> vec2<f32> {
    if (p.mode == MODE_MEAN) {
        return vec2<f32>(mq, gaussian_kl(mq, lq, mp, lp));
    }
    let eps = standard_normal(p.key, i);
    let z = mq + exp(lq) * eps;
    if (p.mode == MODE_IMPORTANCE) {
        return vec2<f32>(z, gaussian_log_ratio(eps, mq, lq, mp, lp));
    }
    return vec2<f32>(z, gaussian_kl(mq, lq, mp, lp));
}

// Gradients of (z, kl) with respect to (mu_q, logsig_q, mu_p, logsig_p) as a vec4,
// given d loss / d z = g and d loss / d kl = k at element i (eps redrawn from p.key).
fn gaussian_sample_kl_grads(i: u32, g: f32, k: f32, mq: f32, lq: f32, mp: f32, lp: f32) -> vec4<f32> {
    let d = mq - mp;
    let inv_var_p = exp(-2.0 * lp);
    let ratio = exp(2.0 * (lq - lp));
    var dlq = k * (ratio - 1.0);
    if (p.mode == MODE_SAMPLE) {
        dlq += g * exp(lq) * standard_normal(p.key, i);
    }
    let dmq = g + k * d * inv_var_p;
    let dmp = -k * d * inv_var_p;
    let dlp = k * (1.0 - ratio - d * d * inv_var_p);
    return vec4<f32>(dmq, dlq, dmp, dlp);
}

// The Ladder VAE posterior from the bottom-up (md, ld) and the prior (mp, lp):
// precisions add, means are precision weighted.
struct Merged {
    mu: f32,
    logsig: f32,
    // Weights of the bottom-up and prior means: wd = prec_d / (prec_d + prec_p), wp = 1 - wd.
    wd: f32,
    wp: f32,
}

fn ladder_merge(md: f32, ld: f32, mp: f32, lp: f32) -> Merged {
    // prec_d / prec_p = exp(s); e = exp(-|s|) never overflows.
    let s = 2.0 * (lp - ld);
    let e = exp(-abs(s));
    let big = 1.0 / (1.0 + e);
    let small = e / (1.0 + e);
    var m: Merged;
    m.wd = select(small, big, s >= 0.0);
    m.wp = select(big, small, s >= 0.0);
    m.mu = mp + m.wd * (md - mp);
    // -1/2 ln(prec_d + prec_p) = min(ld, lp) - 1/2 ln(1 + exp(-|s|)).
    m.logsig = min(ld, lp) - 0.5 * log(1.0 + e);
    return m;
}
