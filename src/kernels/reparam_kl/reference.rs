//! CPU reference of the reparam_kl family: f32 data, f64 arithmetic, the
//! formulas exactly as written in the module docs (no rearrangement), with the
//! noise of [`RngKey::normal`] at each element's flat index.

use super::{Posterior, Reparam, ZMode};
use crate::kernels::rng::RngKey;

/// The four inputs (or their gradients) of a level as slices of equal length.
#[derive(Clone, Copy)]
pub struct LatentsRef<'a> {
    pub q_mu: &'a [f32],
    pub q_logsig: &'a [f32],
    pub p_mu: &'a [f32],
    pub p_logsig: &'a [f32],
}

/// Gradients with respect to the four inputs.
#[derive(Clone, Debug, Default)]
pub struct LatentGrads {
    pub q_mu: Vec<f32>,
    pub q_logsig: Vec<f32>,
    pub p_mu: Vec<f32>,
    pub p_logsig: Vec<f32>,
}

pub fn gaussian_kl(mq: f64, lq: f64, mp: f64, lp: f64) -> f64 {
    -0.5 + lp - lq + 0.5 * ((2.0 * lq).exp() + (mq - mp).powi(2)) / (2.0 * lp).exp()
}

/// Ladder VAE merge: precisions add, means are precision weighted. Returns (mu_q, logsig_q).
pub fn ladder_merge(md: f64, ld: f64, mp: f64, lp: f64) -> (f64, f64) {
    let prec_d = (-2.0 * ld).exp();
    let prec_p = (-2.0 * lp).exp();
    let var_q = 1.0 / (prec_d + prec_p);
    ((md * prec_d + mp * prec_p) * var_q, 0.5 * var_q.ln())
}

/// Single-sample `log N(z; mq, e^lq) - log N(z; mp, e^lp)` for `z = mq + e^lq eps`.
pub fn log_ratio(eps: f64, z: f64, lq: f64, mp: f64, lp: f64) -> f64 {
    -0.5 * eps * eps - lq + 0.5 * ((z - mp) * (-lp).exp()).powi(2) + lp
}

fn eps(cfg: &Reparam, i: usize) -> f64 {
    match cfg.mode {
        ZMode::Sample | ZMode::Importance => cfg.key.normal(i as u32) as f64,
        ZMode::Mean => 0.0,
    }
}

/// The posterior (mu_q, logsig_q) of element i.
fn posterior(cfg: &Reparam, x: &LatentsRef<'_>, i: usize) -> (f64, f64) {
    let (a, b, mp, lp) = (
        x.q_mu[i] as f64,
        x.q_logsig[i] as f64,
        x.p_mu[i] as f64,
        x.p_logsig[i] as f64,
    );
    match cfg.posterior {
        Posterior::Direct => (a, b),
        Posterior::Ladder => ladder_merge(a, b, mp, lp),
    }
}

/// `(z, kl)` of one level, unrounded (finite-difference tests differentiate
/// this); in importance mode the second output is the log density ratio.
pub fn forward_f64(cfg: &Reparam, x: &LatentsRef<'_>) -> (Vec<f64>, Vec<f64>) {
    (0..x.q_mu.len())
        .map(|i| {
            let (mq, lq) = posterior(cfg, x, i);
            let (mp, lp) = (x.p_mu[i] as f64, x.p_logsig[i] as f64);
            let e = eps(cfg, i);
            let z = mq + lq.exp() * e;
            let second = match cfg.mode {
                ZMode::Importance => log_ratio(e, z, lq, mp, lp),
                ZMode::Sample | ZMode::Mean => gaussian_kl(mq, lq, mp, lp),
            };
            (z, second)
        })
        .unzip()
}

/// `(z, kl)` of one level.
pub fn forward(cfg: &Reparam, x: &LatentsRef<'_>) -> (Vec<f32>, Vec<f32>) {
    let (z, kl) = forward_f64(cfg, x);
    let round = |v: Vec<f64>| v.into_iter().map(|a| a as f32).collect();
    (round(z), round(kl))
}

/// Gradients of `sum dz*z + sum dkl*kl` with respect to (mu_q, logsig_q, mu_p,
/// logsig_p) of a direct posterior, at one element.
fn direct_grads(dz: f64, dkl: f64, eps: f64, mq: f64, lq: f64, mp: f64, lp: f64) -> [f64; 4] {
    let var_p = (2.0 * lp).exp();
    let var_q = (2.0 * lq).exp();
    let d = mq - mp;
    [
        dz + dkl * d / var_p,
        dz * lq.exp() * eps + dkl * (-1.0 + var_q / var_p),
        -dkl * d / var_p,
        dkl * (1.0 - (var_q + d * d) / var_p),
    ]
}

/// Backward of [`forward`]: `dkl` has one value per element or a single broadcast value.
/// Importance mode has none (panics: the graph and the kernels refuse it first).
pub fn backward(cfg: &Reparam, x: &LatentsRef<'_>, dz: &[f32], dkl: &[f32]) -> LatentGrads {
    assert!(
        cfg.mode != ZMode::Importance,
        "reparam_kl reference: the importance log ratio has no backward"
    );
    let n = x.q_mu.len();
    let mut g = LatentGrads {
        q_mu: Vec::with_capacity(n),
        q_logsig: Vec::with_capacity(n),
        p_mu: Vec::with_capacity(n),
        p_logsig: Vec::with_capacity(n),
    };
    for i in 0..n {
        let k = if dkl.len() == 1 { dkl[0] } else { dkl[i] } as f64;
        let (mq, lq) = posterior(cfg, x, i);
        let (mp, lp) = (x.p_mu[i] as f64, x.p_logsig[i] as f64);
        let [gmq, glq, gmp, glp] = direct_grads(dz[i] as f64, k, eps(cfg, i), mq, lq, mp, lp);
        let out = match cfg.posterior {
            Posterior::Direct => [gmq, glq, gmp, glp],
            Posterior::Ladder => {
                // Through the merge: with precisions a = exp(-2 ld), b = exp(-2 lp),
                // wd = a / (a + b), wp = b / (a + b):
                // d mu_q/d md = wd, d mu_q/d mp = wp, d logsig_q/d ld = wd, d logsig_q/d lp = wp,
                // d mu_q/d ld = -2 wd wp (md - mp) = -d mu_q/d lp.
                let (md, ld) = (x.q_mu[i] as f64, x.q_logsig[i] as f64);
                let (a, b) = ((-2.0 * ld).exp(), (-2.0 * lp).exp());
                let (wd, wp) = (a / (a + b), b / (a + b));
                let cross = gmq * 2.0 * wd * wp * (md - mp);
                [gmq * wd, glq * wd - cross, gmp + gmq * wp, glp + glq * wp + cross]
            }
        };
        g.q_mu.push(out[0] as f32);
        g.q_logsig.push(out[1] as f32);
        g.p_mu.push(out[2] as f32);
        g.p_logsig.push(out[3] as f32);
    }
    g
}

/// Prior sample at temperature t: `mu_p + exp(logsig_p + ln t) * eps`; `t = 0` gives `mu_p`.
pub fn prior_sample(key: RngKey, temperature: f32, p_mu: &[f32], p_logsig: &[f32]) -> Vec<f32> {
    let t = temperature as f64;
    (0..p_mu.len())
        .map(|i| {
            let (mp, lp) = (p_mu[i] as f64, p_logsig[i] as f64);
            let z = if t > 0.0 {
                mp + (lp + t.ln()).exp() * key.normal(i as u32) as f64
            } else {
                mp
            };
            z as f32
        })
        .collect()
}

/// Where element `i` of a `zdim`-channel latent lies in a tensor holding a
/// pair packed along `2 * zdim` channels per pixel (its first half; the second
/// is `zdim` further), as `packed_pair_index` in reparam_kl_common.wgsl.
pub fn packed_pair_index(i: usize, zdim: usize) -> usize {
    (i / zdim) * 2 * zdim + i % zdim
}

/// The Ladder VAE's merged posterior, packed `[mu_q, logsig_q]` (see `merge.rs`).
pub fn merge_packed(x: &LatentsRef<'_>, zdim: usize) -> Vec<f32> {
    let n = x.q_mu.len();
    let mut q = vec![0.0; 2 * n];
    for i in 0..n {
        let (mu, ls) = ladder_merge(
            x.q_mu[i] as f64,
            x.q_logsig[i] as f64,
            x.p_mu[i] as f64,
            x.p_logsig[i] as f64,
        );
        let j = packed_pair_index(i, zdim);
        q[j] = mu as f32;
        q[j + zdim] = ls as f32;
    }
    q
}

/// The gradients of [`merge_packed`]'s inputs: (d mu_d, d logsig_d, d mu_p, d logsig_p).
pub fn merge_packed_backward(x: &LatentsRef<'_>, zdim: usize, dq: &[f32]) -> [Vec<f32>; 4] {
    let grads = (0..x.q_mu.len()).map(|i| {
        let (md, ld, mp, lp) = (
            x.q_mu[i] as f64,
            x.q_logsig[i] as f64,
            x.p_mu[i] as f64,
            x.p_logsig[i] as f64,
        );
        let (mu, _) = ladder_merge(md, ld, mp, lp);
        let (pd, pp) = ((-2.0 * ld).exp(), (-2.0 * lp).exp());
        let (wd, wp) = (pd / (pd + pp), pp / (pd + pp));
        let j = packed_pair_index(i, zdim);
        let (g_mu, g_ls) = (dq[j] as f64, dq[j + zdim] as f64);
        [
            g_mu * wd,
            wd * (g_ls - 2.0 * g_mu * (md - mu)),
            g_mu * wp,
            wp * (g_ls - 2.0 * g_mu * (mp - mu)),
        ]
    });
    let mut out: [Vec<f32>; 4] = Default::default();
    for g in grads {
        for (o, v) in out.iter_mut().zip(g) {
            o.push(v as f32);
        }
    }
    out
}
