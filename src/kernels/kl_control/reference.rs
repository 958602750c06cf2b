//! CPU reference for the KL controls: f32 data, f64 arithmetic.

use super::{TermSpec, BALANCE_EPS};

/// Fraction of a term's warm-up done at `step`: 1 past it or without one.
pub fn ramp(term: &TermSpec, step: u64) -> f64 {
    let w = term.warmup_steps as u64;
    if w == 0 || step >= w {
        1.0
    } else {
        step as f64 / w as f64
    }
}

/// β at `step`: β0 + (β1 − β0)·min(1, step / warmup), exactly β1 once warmed up.
pub fn beta(term: &TermSpec, step: u64) -> f64 {
    let f = ramp(term, step);
    if f >= 1.0 {
        term.beta1 as f64
    } else {
        term.beta0 as f64 + (term.beta1 as f64 - term.beta0 as f64) * f
    }
}

/// Whether balancing (when on) applies to the term at `step`: while it warms
/// up towards a larger β, i.e. β(step) < β1.
pub fn warming(term: &TermSpec, step: u64) -> bool {
    step < term.warmup_steps as u64 && term.beta0 < term.beta1
}

/// Each term's batch mean of `kl` (`[images, terms]`).
pub fn means(kl: &[f32], terms: usize) -> Vec<f64> {
    let images = kl.len() / terms;
    (0..terms)
        .map(|j| (0..images).map(|n| kl[n * terms + j] as f64).sum::<f64>() / images as f64)
        .collect()
}

/// What the controls do to one term at one step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Coef {
    pub beta: f64,
    /// The balancing coefficient (1 when not balanced).
    pub gamma: f64,
    /// Whether the gradient flows (free bits: the mean is at least λ).
    pub gate: bool,
}

impl Coef {
    /// β·γ: the weight of the term in the objective.
    pub fn weight(&self) -> f64 {
        self.beta * self.gamma
    }

    /// β·γ where the gradient flows, else 0.
    pub fn applied(&self) -> f64 {
        if self.gate {
            self.weight()
        } else {
            0.0
        }
    }
}

/// Every term's coefficients given their batch means, by NVAE's formula
/// written out: γ_j = (m_j + 0.01)/α_j · Σ_k (m_k + 0.01), then divided by
/// the mean of γ over the balanced terms.
pub fn coefficients(terms: &[TermSpec], means: &[f64], step: u64, balance: bool) -> Vec<Coef> {
    let balanced: Vec<usize> = (0..terms.len())
        .filter(|&j| balance && warming(&terms[j], step))
        .collect();
    let total: f64 = balanced.iter().map(|&k| means[k] + BALANCE_EPS).sum();
    let raw = |j: usize| (means[j] + BALANCE_EPS) / terms[j].balance_weight as f64 * total;
    let mean_raw = balanced.iter().map(|&k| raw(k)).sum::<f64>() / balanced.len().max(1) as f64;
    terms
        .iter()
        .zip(means)
        .enumerate()
        .map(|(j, (t, &m))| Coef {
            beta: beta(t, step),
            gamma: if balanced.contains(&j) { raw(j) / mean_raw } else { 1.0 },
            gate: t.free_nats <= 0.0 || m >= t.free_nats as f64,
        })
        .collect()
}

/// What the kernel writes: (seeds `[images, terms]`, coef `[2 · terms]`).
pub fn seeds(terms: &[TermSpec], kl: &[f32], step: u64, balance: bool, scale: f64) -> (Vec<f32>, Vec<f32>) {
    let j = terms.len();
    let coefs = coefficients(terms, &means(kl, j), step, balance);
    let mut coef: Vec<f32> = coefs.iter().map(|c| c.weight() as f32).collect();
    coef.extend(coefs.iter().map(|c| c.applied() as f32));
    let row: Vec<f32> = coefs.iter().map(|c| (c.applied() * scale) as f32).collect();
    (row.repeat(kl.len() / j), coef)
}

/// The controlled objective per dim: [mean_n nll + Σ_j β_j γ_j max(λ_j, m_j)] / dims
/// (m_j itself where λ_j = 0).
pub fn objective(terms: &[TermSpec], nll: &[f32], kl: &[f32], step: u64, balance: bool, dims: usize) -> f64 {
    let m = means(kl, terms.len());
    let coefs = coefficients(terms, &m, step, balance);
    let nll_mean = nll.iter().map(|&x| x as f64).sum::<f64>() / nll.len() as f64;
    let rate: f64 = coefs
        .iter()
        .zip(terms.iter().zip(&m))
        .map(|(c, (t, &m))| {
            let clamped = if t.free_nats > 0.0 {
                m.max(t.free_nats as f64)
            } else {
                m
            };
            c.weight() * clamped
        })
        .sum();
    (nll_mean + rate) / dims as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn term(beta0: f32, beta1: f32, warmup_steps: u32, free_nats: f32, balance_weight: f32) -> TermSpec {
        TermSpec {
            beta0,
            beta1,
            warmup_steps,
            free_nats,
            balance_weight,
        }
    }

    #[test]
    fn beta_ramps_linearly_and_holds_beta1_after_the_warm_up() {
        let t = term(0.25, 1.0, 100, 0.0, 1.0);
        let want = [(0, 0.25), (50, 0.625), (100, 1.0), (200, 1.0), (25, 0.4375)];
        for (step, b) in want {
            assert!((beta(&t, step) - b).abs() < 1e-12, "step {step}: {}", beta(&t, step));
        }
        assert_eq!(beta(&term(0.2, 0.7, 0, 0.0, 1.0), 0), 0.7_f32 as f64, "no warm-up: β1");
        assert!(warming(&t, 99) && !warming(&t, 100));
        assert!(
            !warming(&term(1.0, 0.5, 100, 0.0, 1.0), 0),
            "a falling ramp is never below β1"
        );
    }

    #[test]
    fn balancing_averages_to_one_and_follows_mean_over_alpha() {
        let terms = [
            term(0.0, 1.0, 10, 0.0, 1.0),
            term(0.0, 1.0, 10, 0.0, 4.0),
            term(0.0, 1.0, 0, 0.0, 1.0),
        ];
        let means = [3.0, 5.0, 7.0];
        let c = coefficients(&terms, &means, 5, true);
        // The third term is past its (empty) warm-up: not balanced.
        assert_eq!(c[2].gamma, 1.0);
        assert!((c[0].gamma + c[1].gamma - 2.0).abs() < 1e-12);
        let ratio = (3.01 / 1.0) / (5.01 / 4.0);
        assert!((c[0].gamma / c[1].gamma - ratio).abs() < 1e-12);
        let off = coefficients(&terms, &means, 5, false);
        assert!(off.iter().all(|c| c.gamma == 1.0));
    }

    #[test]
    fn free_bits_clamp_the_objective_and_close_the_gate() {
        let terms = [term(1.0, 1.0, 0, 2.0, 1.0)];
        let (nll, under, over) = ([4.0f32, 6.0], [1.0f32, 2.0], [3.0f32, 4.0]);
        assert_eq!(objective(&terms, &nll, &under, 0, false, 2), (5.0 + 2.0) / 2.0);
        assert_eq!(objective(&terms, &nll, &over, 0, false, 2), (5.0 + 3.5) / 2.0);
        let (seeds_under, coef) = seeds(&terms, &under, 0, false, 0.25);
        assert_eq!((seeds_under, coef), (vec![0.0, 0.0], vec![1.0, 0.0]));
        assert_eq!(seeds(&terms, &over, 0, false, 0.25).0, vec![0.25, 0.25]);
    }
}
