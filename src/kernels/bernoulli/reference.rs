//! CPU reference for the Bernoulli likelihood: f32 data, f64 arithmetic.

use super::BernoulliSpec;
use crate::kernels::rng::{uniform_from_bits, RngKey};

pub fn sigmoid(l: f64) -> f64 {
    1.0 / (1.0 + (-l).exp())
}

/// -[t log sigmoid(l) + (1 - t) log(1 - sigmoid(l))] = softplus(l) - t l.
pub fn element_nll(l: f64, t: f64) -> f64 {
    let softplus = if l > 0.0 {
        l + (-l).exp().ln_1p()
    } else {
        l.exp().ln_1p()
    };
    softplus - t * l
}

/// Per-image NLL in f64.
pub fn nll_f64(spec: &BernoulliSpec, logits: &[f32], targets: &[f32]) -> Vec<f64> {
    let per = spec.per_image();
    (0..spec.n)
        .map(|n| {
            (n * per..(n + 1) * per)
                .map(|i| element_nll(logits[i] as f64, targets[i] as f64))
                .sum()
        })
        .collect()
}

pub fn nll(spec: &BernoulliSpec, logits: &[f32], targets: &[f32]) -> Vec<f32> {
    nll_f64(spec, logits, targets).iter().map(|&v| v as f32).collect()
}

/// d(sum_n upstream[n] * nll[n]) / dlogits = upstream[n] (sigmoid(l) - t).
pub fn nll_grad(spec: &BernoulliSpec, logits: &[f32], targets: &[f32], upstream: &[f32]) -> Vec<f32> {
    let per = spec.per_image();
    (0..spec.len())
        .map(|i| (upstream[i / per] as f64 * (sigmoid(logits[i] as f64) - targets[i] as f64)) as f32)
        .collect()
}

/// Element i's sampling uniform: word i % 4 of Philox block i / 4.
pub fn uniform(key: &RngKey, i: usize) -> f64 {
    uniform_from_bits(key.bits((i / 4) as u32)[i % 4]) as f64
}

/// 1 where `uniform(key, first + i) < sigmoid(logits[i])`, else 0 (`first`:
/// the stream index of element 0, 0 for a whole tensor).
pub fn sample(spec: &BernoulliSpec, logits: &[f32], key: &RngKey, first: usize) -> Vec<f32> {
    (0..spec.len())
        .map(|i| f32::from(u8::from(uniform(key, first + i) < sigmoid(logits[i] as f64))))
        .collect()
}

/// 1 where `uniform(key, first + i) < probs[i]`, compared in f32 (the uniform is
/// exact in f32, so the GPU draws the same bits); probabilities 0 and 1 give 0 and 1.
pub fn sample_probs(probs: &[f32], key: &RngKey, first: usize) -> Vec<f32> {
    (0..probs.len())
        .map(|i| f32::from(u8::from((uniform(key, first + i) as f32) < probs[i])))
        .collect()
}

/// sigmoid(logits[i]), the Bernoulli mean.
pub fn mean(logits: &[f32]) -> Vec<f32> {
    logits.iter().map(|&l| sigmoid(l as f64) as f32).collect()
}
