//! CPU reference for the DMoL likelihood: the official VDVAE formulas
//! (`discretized_mix_logistic_loss`, `sample_from_discretized_mix_logistic`)
//! transcribed in f64, with the gradient by the chain rule through the branch
//! `torch.where` selects. Comparisons with the thresholds are made in f32, as
//! PyTorch makes them on f32 tensors.

use super::{DmolSpec, DRAW_LO, DRAW_SPAN};
use crate::kernels::rng::{uniform_from_bits, RngKey};

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

fn softplus(z: f64) -> f64 {
    if z > 0.0 {
        z + (-z).exp().ln_1p()
    } else {
        z.exp().ln_1p()
    }
}

/// Which `torch.where` branch a (mixture, colour) term took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Branch {
    /// x < -0.999: log sigmoid(plus_in).
    LowEdge,
    /// x > 0.999: -softplus(min_in).
    HighEdge,
    /// cdf_delta > 1e-5: log(max(cdf_delta, 1e-12)).
    Delta,
    /// Otherwise: log_pdf_mid - ln(bins / 2).
    Density,
}

/// One term's log-probability and its derivatives w.r.t. the adjusted mean and
/// the floored log-scale.
pub struct Term {
    pub lp: f64,
    pub d_mean: f64,
    pub d_log_scale: f64,
    pub branch: Branch,
    /// cdf_delta (meaningful for the two middle branches).
    pub delta: f64,
}

pub fn term(x: f32, mean: f64, log_scale: f64, spec: &DmolSpec) -> Term {
    let half_bin = spec.bits.half_bin();
    let inv = (-log_scale).exp();
    let centered = x as f64 - mean;
    let plus_in = inv * (centered + half_bin);
    let min_in = inv * (centered - half_bin);
    let mid_in = inv * centered;
    let cdf_plus = sigmoid(plus_in);
    let cdf_min = sigmoid(min_in);
    let delta = cdf_plus - cdf_min;
    // d lp / d plus_in, d lp / d min_in, d lp / d mid_in, and d lp / d log_scale held fixed.
    let (lp, g_plus, g_min, g_mid, g_direct, branch) = if x < -0.999f32 {
        (
            plus_in - softplus(plus_in),
            1.0 - cdf_plus,
            0.0,
            0.0,
            0.0,
            Branch::LowEdge,
        )
    } else if x > 0.999f32 {
        (-softplus(min_in), 0.0, -cdf_min, 0.0, 0.0, Branch::HighEdge)
    } else if delta > 1e-5f32 as f64 {
        let lp = delta.max(1e-12).ln();
        let g_plus = cdf_plus * (1.0 - cdf_plus) / delta;
        let g_min = -cdf_min * (1.0 - cdf_min) / delta;
        (lp, g_plus, g_min, 0.0, 0.0, Branch::Delta)
    } else {
        let log_pdf_mid = mid_in - log_scale - 2.0 * softplus(mid_in);
        let lp = log_pdf_mid - spec.bits.log_half_bins();
        (lp, 0.0, 0.0, 1.0 - 2.0 * sigmoid(mid_in), -1.0, Branch::Density)
    };
    // plus_in, min_in, mid_in all have d/d mean = -inv and d/d log_scale = -(themselves).
    Term {
        lp,
        d_mean: -inv * (g_plus + g_min + g_mid),
        d_log_scale: -(g_plus * plus_in + g_min * min_in + g_mid * mid_in) + g_direct,
        branch,
        delta,
    }
}

/// `max(raw, -7)` and its PyTorch gradient (`maximum` splits a tie in half).
pub fn floored_log_scale(raw: f32) -> (f64, f64) {
    let grad = if raw > -7.0 {
        1.0
    } else if raw == -7.0 {
        0.5
    } else {
        0.0
    };
    ((raw as f64).max(-7.0), grad)
}

fn log_sum_exp(v: &[f64]) -> f64 {
    let top = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    top + v.iter().map(|&a| (a - top).exp()).sum::<f64>().ln()
}

/// Everything the reference knows about one pixel.
pub struct PixelResult {
    /// log p(x) of the pixel (the logsumexp over mixtures).
    pub log_likelihood: f64,
    /// log_softmax(logits)_k + sum over colours of the log-probabilities, per mixture k.
    pub log_probs: Vec<f64>,
    /// d log p / d params, in the pixel's out_conv layout.
    pub grad: Vec<f64>,
    pub branches: Vec<Branch>,
    pub deltas: Vec<f64>,
}

/// Log-likelihood of one pixel (`params`: its `out_channels` values, `x`: its
/// `channels` targets in [-1, 1]) and its gradient.
pub fn pixel(spec: &DmolSpec, params: &[f32], x: &[f32]) -> PixelResult {
    let m = spec.mixtures;
    let s = spec.stride();
    let logits: Vec<f64> = params[..m].iter().map(|&v| v as f64).collect();
    let log_norm = log_sum_exp(&logits);
    let mut grad = vec![0.0f64; params.len()];
    let mut branches = Vec::new();
    let mut deltas = Vec::new();
    let mut log_probs = vec![0.0f64; m];
    // d log_probs[k] / d param, accumulated in grad_k before the responsibilities are known.
    let mut grad_k = vec![vec![0.0f64; params.len()]; m];
    let at = |c: usize, j: usize| m + s * c + j;
    for k in 0..m {
        log_probs[k] = logits[k] - log_norm;
        let mut d_means = [0.0f64; 3];
        let mut tanh_coeff = [0.0f64; 3];
        if spec.channels == 3 {
            for (i, t) in tanh_coeff.iter_mut().enumerate() {
                *t = (params[at(i, 2 * m + k)] as f64).tanh();
            }
        }
        for c in 0..spec.channels {
            let mut mean = params[at(c, k)] as f64;
            if c == 1 {
                mean += tanh_coeff[0] * x[0] as f64;
            } else if c == 2 {
                mean += tanh_coeff[1] * x[0] as f64 + tanh_coeff[2] * x[1] as f64;
            }
            let (log_scale, floor_grad) = floored_log_scale(params[at(c, m + k)]);
            let t = term(x[c], mean, log_scale, spec);
            log_probs[k] += t.lp;
            d_means[c] = t.d_mean;
            grad_k[k][at(c, k)] = t.d_mean;
            grad_k[k][at(c, m + k)] = t.d_log_scale * floor_grad;
            branches.push(t.branch);
            deltas.push(t.delta);
        }
        if spec.channels == 3 {
            let dtanh = |i: usize| 1.0 - tanh_coeff[i] * tanh_coeff[i];
            grad_k[k][at(0, 2 * m + k)] = d_means[1] * x[0] as f64 * dtanh(0);
            grad_k[k][at(1, 2 * m + k)] = d_means[2] * x[0] as f64 * dtanh(1);
            grad_k[k][at(2, 2 * m + k)] = d_means[2] * x[1] as f64 * dtanh(2);
        }
    }
    let ll = log_sum_exp(&log_probs);
    for k in 0..m {
        let resp = (log_probs[k] - ll).exp();
        let softmax = (logits[k] - log_norm).exp();
        grad[k] = resp - softmax;
        for (g, gk) in grad.iter_mut().zip(&grad_k[k]).skip(m) {
            *g += resp * gk;
        }
    }
    PixelResult {
        log_likelihood: ll,
        log_probs,
        grad,
        branches,
        deltas,
    }
}

fn pixel_slices<'a>(spec: &DmolSpec, l: &'a [f32], x: &'a [f32], p: usize) -> (&'a [f32], &'a [f32]) {
    let (co, c) = (spec.out_channels(), spec.channels);
    (&l[p * co..(p + 1) * co], &x[p * c..(p + 1) * c])
}

/// Per-image NLL (sum over the image's pixels of -log p), in f64.
pub fn nll_f64(spec: &DmolSpec, l: &[f32], x: &[f32]) -> Vec<f64> {
    let per = spec.h * spec.w;
    (0..spec.n)
        .map(|n| {
            (n * per..(n + 1) * per)
                .map(|p| {
                    let (lp, xp) = pixel_slices(spec, l, x, p);
                    -pixel(spec, lp, xp).log_likelihood
                })
                .sum()
        })
        .collect()
}

pub fn nll(spec: &DmolSpec, l: &[f32], x: &[f32]) -> Vec<f32> {
    nll_f64(spec, l, x).iter().map(|&v| v as f32).collect()
}

/// d(sum_n upstream[n] * NLL[n]) / dl.
pub fn nll_grad(spec: &DmolSpec, l: &[f32], x: &[f32], upstream: &[f32]) -> Vec<f32> {
    let per = spec.h * spec.w;
    let mut dl = Vec::with_capacity(l.len());
    for p in 0..spec.n * per {
        let (lp, xp) = pixel_slices(spec, l, x, p);
        let up = upstream[p / per] as f64;
        dl.extend(pixel(spec, lp, xp).grad.iter().map(|&g| (-up * g) as f32));
    }
    dl
}

/// The uniform draw `i` of `pixel` (see `shaders/dmol_sample.wgsl`), as (u, 1 - u).
pub fn draw(spec: &DmolSpec, key: &RngKey, pixel: usize, i: usize) -> (f64, f64) {
    let element = (pixel * spec.draw_groups() + i / 4) as u32;
    let uni = uniform_from_bits(key.bits(element)[i % 4]) as f64;
    let (lo, span) = (DRAW_LO as f64, DRAW_SPAN as f64);
    (lo + span * uni, lo + span * (1.0 - uni))
}

/// The Gumbel-perturbed logits `logit_k - log(-log u_k)` of one pixel.
pub fn gumbel_scores(spec: &DmolSpec, l: &[f32], key: &RngKey, pixel: usize) -> Vec<f64> {
    let base = pixel * spec.out_channels();
    (0..spec.mixtures)
        .map(|k| {
            let (u, _) = draw(spec, key, pixel, k);
            l[base + k] as f64 - (-u.ln()).ln()
        })
        .collect()
}

/// One pixel's sample with mixture `k` (the official clamp-then-couple order).
pub fn sample_pixel_with(spec: &DmolSpec, l: &[f32], key: &RngKey, pixel: usize, k: usize) -> Vec<f32> {
    let m = spec.mixtures;
    let at = |c: usize, j: usize| pixel * spec.out_channels() + m + spec.stride() * c + j;
    let raw: Vec<f64> = (0..spec.channels)
        .map(|c| {
            let (u, v) = draw(spec, key, pixel, m + c);
            let (log_scale, _) = floored_log_scale(l[at(c, m + k)]);
            l[at(c, k)] as f64 + log_scale.exp() * (u.ln() - v.ln())
        })
        .collect();
    let clamp = |v: f64| v.clamp(-1.0, 1.0);
    let x0 = clamp(raw[0]);
    if spec.channels == 1 {
        return vec![x0 as f32];
    }
    let q = |i: usize| (l[at(i, 2 * m + k)] as f64).tanh();
    let x1 = clamp(raw[1] + q(0) * x0);
    let x2 = clamp(raw[2] + q(1) * x0 + q(2) * x1);
    vec![x0 as f32, x1 as f32, x2 as f32]
}

/// First index of the maximum, as torch.argmax.
pub fn argmax(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, &a) in v.iter().enumerate() {
        if a > v[best] {
            best = i;
        }
    }
    best
}

/// Samples in [-1, 1], NHWC.
pub fn sample(spec: &DmolSpec, l: &[f32], key: &RngKey) -> Vec<f32> {
    (0..spec.pixels())
        .flat_map(|p| {
            let k = argmax(&gumbel_scores(spec, l, key, p));
            sample_pixel_with(spec, l, key, p, k)
        })
        .collect()
}
