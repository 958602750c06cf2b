//! The controlled loss (`Graph::controlled_elbo`: per-term β with warm-up,
//! free bits, NVAE KL balancing) on a tiny hand-built two-level graph whose
//! KL terms are differentiable functions of parameters: the CPU backward
//! against finite differences of the CPU objective, the GPU step against the
//! CPU step at several noise steps, the coefficients against their formulas,
//! and `beta_per_level` through GPU training steps.

mod common;

use common::assert_close;

use vdvae::gpu::GpuContext;
use vdvae::graph::autodiff::append_backward;
use vdvae::graph::executor::cpu::{run, Noise, Values};
use vdvae::graph::executor::{GpuGraph, TrainConfig};
use vdvae::graph::{set_precision, DType, Graph, KlSchedule, KlTerm, Precision, Role, Sampling, TensorId};
use vdvae::kernels::optimizer::{AdamW, StepState};

fn context() -> GpuContext {
    GpuContext::from_env().unwrap_or_else(|e| panic!("KL-control GPU tests need an adapter: {e}"))
}

const N: usize = 3;
const DIMS: usize = 16;
const SEED: u64 = 17;

/// Two levels of `[N, 2, 2, 4]` latents; level 0 is one term (its level sum
/// itself), level 1 two channel groups (channels 0..2 and 2..4) apart from
/// its level sum. nll = Σ (z0 + z1) per image.
struct Tiny {
    g: Graph,
    params: Vec<TensorId>,
    nll: TensorId,
    levels: Vec<TensorId>,
    terms: Vec<TensorId>,
    loss: TensorId,
}

fn term(level: usize, beta0: f32, beta1: f32, warmup_steps: u32, free_nats: f32, balance_weight: f32) -> KlTerm {
    KlTerm {
        level,
        beta0,
        beta1,
        warmup_steps,
        free_nats,
        balance_weight,
    }
}

fn tiny(schedule: KlSchedule, sampling: Sampling) -> Tiny {
    let mut g = Graph::default();
    let shape = vec![N, 2, 2, 4];
    let mut params = Vec::new();
    let mut zs = Vec::new();
    let mut kls = Vec::new();
    for l in 0..2 {
        let p: Vec<TensorId> = ["q_mu", "q_logsig", "p_mu", "p_logsig"]
            .iter()
            .map(|n| g.tensor(format!("dec.{l}.{n}"), shape.clone(), Role::Param))
            .collect();
        let (z, kl) = g
            .reparam_kl(&format!("dec.{l}"), (p[0], p[1]), (p[2], p[3]), sampling, l as u32)
            .unwrap();
        params.extend(p);
        zs.push(z);
        kls.push(kl);
    }
    let levels: Vec<TensorId> = kls
        .iter()
        .enumerate()
        .map(|(l, &kl)| g.sum_per_image(&format!("dec.{l}.kl_sum"), kl).unwrap())
        .collect();
    let mut terms = vec![levels[0]];
    for (a, b) in [(0, 2), (2, 4)] {
        let slice = g.slice_channels(&format!("dec.1.kl_group{a}"), kls[1], a, b).unwrap();
        terms.push(g.sum_per_image(&format!("dec.1.kl_group{a}_sum"), slice).unwrap());
    }
    let x = g.add("x", zs[0], zs[1]).unwrap();
    let nll = g.sum_per_image("nll", x).unwrap();
    let loss = g.controlled_elbo("loss", nll, &levels, &terms, schedule, DIMS).unwrap();
    append_backward(&mut g).unwrap();
    Tiny {
        g,
        params,
        nll,
        levels,
        terms,
        loss,
    }
}

/// Deterministic parameter values on a 1/1024 grid (so finite-difference
/// steps of 1/64 are exact in f32): posteriors a little off their priors.
fn param_values(t: &Tiny) -> Values {
    let mut values = vec![None; t.g.tensors.len()];
    for (k, &p) in t.params.iter().enumerate() {
        let n = t.g.tensors[p].numel();
        let v = (0..n)
            .map(|i| {
                let u = ((i * 37 + k * 101) % 97) as f32 / 97.0 - 0.5;
                let x = match k % 4 {
                    1 | 3 => 0.6 * u, // log-sigmas
                    _ => 1.5 * u,     // means
                };
                (x * 1024.0).round() / 1024.0
            })
            .collect();
        values[p] = Some(v);
    }
    values
}

fn cpu_run(t: &Tiny, params: &Values, step: u64) -> Values {
    let mut values = params.clone();
    run(&t.g, &mut values, Noise::new(SEED, step)).unwrap();
    values
}

fn value(values: &Values, t: TensorId) -> &[f32] {
    values[t].as_deref().unwrap()
}

fn mean(x: &[f32]) -> f64 {
    x.iter().map(|&v| v as f64).sum::<f64>() / x.len() as f64
}

/// The graph's coefficients tensor.
fn coef_of(t: &Tiny) -> TensorId {
    t.g.loss_terms().unwrap().kl_coef.unwrap().coef
}

fn grad_of(t: &Tiny, p: TensorId) -> TensorId {
    t.g.param_grads.iter().find(|d| d.0 == p).unwrap().1
}

fn beta(k: &KlTerm, step: u64) -> f64 {
    let f = if k.warmup_steps == 0 {
        1.0
    } else {
        (step as f64 / k.warmup_steps as f64).min(1.0)
    };
    if f >= 1.0 {
        k.beta1 as f64
    } else {
        k.beta0 as f64 + (k.beta1 as f64 - k.beta0 as f64) * f
    }
}

/// Free bits: term 1 (level 1, channels 0..2) far over its mean, term 2
/// (channels 2..4) under it; term 0 has none. No balancing.
fn free_bits_schedule() -> KlSchedule {
    KlSchedule {
        terms: vec![
            term(0, 0.2, 1.0, 10, 0.0, 1.0),
            term(1, 0.0, 0.5, 20, 20.0, 2.0),
            term(1, 0.7, 0.7, 0, 0.25, 2.0),
        ],
        balance: false,
    }
}

#[test]
fn the_cpu_backward_matches_finite_differences_of_the_objective() {
    let t = tiny(free_bits_schedule(), Sampling::Posterior);
    let params = param_values(&t);
    for step in [0, 5, 40] {
        let values = cpu_run(&t, &params, step);
        // Away from the free-bits kinks: each perturbation moves a mean by < 0.02.
        let m: Vec<f64> = t.terms.iter().map(|&k| mean(value(&values, k))).collect();
        assert!(m[1] < 20.0 - 1.0 && m[2] > 0.25 + 0.2, "term means {m:?}");
        let loss_at = |p: TensorId, i: usize, x: f32| {
            let mut moved = params.clone();
            moved[p].as_mut().unwrap()[i] = x;
            value(&cpu_run(&t, &moved, step), t.loss)[0] as f64
        };
        let h = 1.0 / 64.0;
        for &p in &t.params {
            let got = value(&values, grad_of(&t, p));
            for (i, &x) in value(&params, p).iter().enumerate() {
                let f = |k: f32| loss_at(p, i, x + k * h);
                // Fourth-order central difference.
                let fd = (f(-2.0) - 8.0 * f(-1.0) + 8.0 * f(1.0) - f(2.0)) / (12.0 * h as f64);
                let err = (got[i] as f64 - fd).abs();
                assert!(
                    err <= 2e-5 + 2e-3 * fd.abs(),
                    "step {step} {}[{i}]: analytic {:e} vs finite difference {fd:e}",
                    t.g.tensors[p].name,
                    got[i]
                );
            }
        }
    }
}

#[test]
fn beta_follows_the_warm_up_and_free_bits_zero_a_gradient_exactly() {
    let schedule = free_bits_schedule();
    let mut t = tiny(schedule.clone(), Sampling::PosteriorMean);
    // Keep the terms' gradients to read them.
    let term_grads: Vec<TensorId> = t
        .terms
        .iter()
        .map(|&k| {
            let name = format!("grad.{}", t.g.tensors[k].name);
            (0..t.g.tensors.len()).rfind(|&g| t.g.tensors[g].name == name).unwrap()
        })
        .collect();
    t.g.outputs.extend(&term_grads);
    let params = param_values(&t);
    let coef = coef_of(&t);
    let scale = 1.0 / (N * DIMS) as f64;
    for step in [0, 5, 10, 20, 40] {
        let values = cpu_run(&t, &params, step);
        let c = value(&values, coef);
        for (j, k) in schedule.terms.iter().enumerate() {
            let want = beta(k, step);
            assert!(
                (c[j] as f64 - want).abs() <= 1e-6 * want.max(1.0),
                "step {step} term {j}: β {} vs {want}",
                c[j]
            );
        }
        // Term 1's mean is under λ: its gradient is exactly zero; the others flow.
        let m1 = mean(value(&values, t.terms[1]));
        assert!(m1 < 20.0);
        assert_eq!(c[4], 0.0, "gated coefficient");
        assert!(value(&values, term_grads[1]).iter().all(|&d| d == 0.0));
        for (j, &d) in term_grads.iter().enumerate().filter(|&(j, _)| j != 1) {
            let want = (beta(&schedule.terms[j], step) * scale) as f32;
            assert_close(
                &format!("step {step} d term {j}"),
                value(&values, d),
                &[want; N],
                1e-12,
                1e-6,
            );
        }
        // With posterior means, the prior's log-sigma reaches the loss through
        // the KL alone: channels 0..2 of level 1 get nothing, 2..4 do.
        let dp = value(&values, grad_of(&t, t.params[7]));
        for (i, &d) in dp.iter().enumerate() {
            assert_eq!(d == 0.0, i % 4 < 2, "level 1 d p_logsig[{i}] = {d}");
        }
    }
}

#[test]
fn balancing_matches_nvae_and_averages_to_one_over_the_balanced_terms() {
    let schedule = KlSchedule {
        terms: vec![
            term(0, 0.1, 1.0, 30, 0.0, 16.0),
            term(1, 0.2, 1.0, 30, 0.0, 8.0),
            term(1, 0.5, 1.0, 10, 0.0, 3.0),
        ],
        balance: true,
    };
    let t = tiny(schedule.clone(), Sampling::Posterior);
    let params = param_values(&t);
    for step in [0, 5, 15, 30] {
        let values = cpu_run(&t, &params, step);
        let c = value(&values, coef_of(&t));
        let m: Vec<f64> = t.terms.iter().map(|&k| mean(value(&values, k))).collect();
        let k = &schedule.terms;
        // Balanced: the terms whose β is still below β1.
        let balanced: Vec<usize> = (0..3).filter(|&j| beta(&k[j], step) < k[j].beta1 as f64).collect();
        // NVAE's kl_balancer written out in f64.
        let total: f64 = balanced.iter().map(|&j| m[j] + 0.01).sum();
        let raw: Vec<f64> = (0..3)
            .map(|j| (m[j] + 0.01) / k[j].balance_weight as f64 * total)
            .collect();
        let mean_raw = balanced.iter().map(|&j| raw[j]).sum::<f64>() / balanced.len().max(1) as f64;
        let mut gammas = Vec::new();
        for j in 0..3 {
            let gamma = c[j] as f64 / beta(&k[j], step);
            let want = if balanced.contains(&j) { raw[j] / mean_raw } else { 1.0 };
            assert!(
                (gamma - want).abs() <= 1e-5 * want,
                "step {step} term {j}: γ {gamma} vs NVAE {want}"
            );
            if balanced.contains(&j) {
                gammas.push(gamma);
            }
        }
        if !gammas.is_empty() {
            let avg = gammas.iter().sum::<f64>() / gammas.len() as f64;
            assert!(
                (avg - 1.0).abs() < 1e-5,
                "step {step}: γ averages {avg} over {balanced:?}"
            );
            assert!(
                gammas.iter().any(|&g| (g - 1.0).abs() > 0.05),
                "balancing changes something: {gammas:?}"
            );
        }
        assert_eq!(
            balanced.len(),
            [3, 3, 2, 0][[0, 5, 15, 30].iter().position(|&s| s == step).unwrap()]
        );
    }
}

/// Runs the tiny graph with `schedule` on the GPU at each of `steps` and
/// checks every per-image sum, coefficient, seed and parameter gradient
/// against the CPU run at the same noise step; returns the coefficients.
fn gpu_matches_cpu(ctx: &GpuContext, schedule: KlSchedule, steps: &[u32]) -> Vec<Vec<f32>> {
    let t = tiny(schedule, Sampling::Posterior);
    let params = param_values(&t);
    let gpu = GpuGraph::build(ctx, &t.g, SEED, None).unwrap();
    gpu.write_values(ctx, &t.g, &params).unwrap();
    let bad = gpu.invalid_dispatches(ctx);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    let coef = coef_of(&t);
    let stacked = t.g.tensors.iter().position(|x| x.name == "loss.kl_terms").unwrap();
    let seeds = t.g.tensors.iter().position(|x| x.name == "loss.kl_seeds").unwrap();
    let mut coefs = Vec::new();
    for &step in steps {
        gpu.run(ctx, step).unwrap();
        let cpu = cpu_run(&t, &params, step as u64);
        let at = format!("step {step}");
        let mut per_image = vec![t.nll, stacked];
        per_image.extend(&t.levels);
        for &x in &per_image {
            let what = format!("{at} {}", t.g.tensors[x].name);
            assert_close(&what, &gpu.read(ctx, x).unwrap(), value(&cpu, x), 1e-5, 1e-5);
        }
        let c = gpu.read(ctx, coef).unwrap();
        assert_close(&format!("{at} coef"), &c, value(&cpu, coef), 1e-7, 2e-5);
        assert_close(
            &format!("{at} seeds"),
            &gpu.read(ctx, seeds).unwrap(),
            value(&cpu, seeds),
            1e-12,
            2e-5,
        );
        for &p in &t.params {
            let d = grad_of(&t, p);
            let what = format!("{at} {}", t.g.tensors[d].name);
            assert_close(&what, &gpu.read(ctx, d).unwrap(), value(&cpu, d), 1e-8, 1e-4);
        }
        coefs.push(c);
    }
    coefs
}

#[test]
fn the_gpu_step_matches_the_cpu_step_as_beta_moves() {
    let ctx = context();
    let steps = [0u32, 2, 4, 8, 12, 16, 30];
    let mut terms = vec![
        term(0, 0.1, 1.0, 8, 0.0, 16.0),
        term(1, 0.0, 0.5, 16, 20.0, 8.0),
        term(1, 0.3, 1.2, 4, 0.25, 8.0),
    ];
    let plain = gpu_matches_cpu(
        &ctx,
        KlSchedule {
            terms: terms.clone(),
            balance: false,
        },
        &steps,
    );
    // β of term 0 rises over its 8-step warm-up, then holds at β1.
    let beta0: Vec<f32> = plain.iter().map(|c| c[0]).collect();
    assert!(beta0[..4].windows(2).all(|w| w[0] < w[1]), "{beta0:?}");
    assert_eq!(beta0[3..], [1.0; 4]);
    terms[1].free_nats = 0.0;
    let balanced = gpu_matches_cpu(&ctx, KlSchedule { terms, balance: true }, &steps);
    // Balancing moves the coefficients of the terms still warming up; past
    // every warm-up (step 16 on) nothing is balanced.
    assert!(balanced[0].iter().zip(&plain[0]).any(|(a, b)| (a - b).abs() > 1e-3));
    assert_eq!(balanced[5][..3], plain[5][..3]);
}

#[test]
fn training_steps_report_beta_per_level_as_the_schedule_says() {
    let ctx = context();
    let schedule = KlSchedule {
        terms: vec![
            term(0, 0.25, 1.0, 4, 0.0, 1.0),
            term(1, 0.0, 0.5, 8, 0.0, 1.0),
            term(1, 1.0, 1.0, 0, 0.0, 1.0),
        ],
        balance: false,
    };
    let t = tiny(schedule.clone(), Sampling::Posterior);
    let params = param_values(&t);
    let train = TrainConfig {
        adamw: AdamW {
            lr: 1e-3,
            ..AdamW::default()
        },
        resume: StepState::default(),
    };
    let mut gpu = GpuGraph::build(&ctx, &t.g, SEED, Some(train)).unwrap();
    gpu.write_values(&ctx, &t.g, &params).unwrap();
    gpu.reset_ema(&ctx).unwrap();
    let steps = 10;
    let mut metrics = Vec::new();
    for _ in 0..steps {
        metrics.extend(gpu.train_step(&ctx).unwrap());
    }
    metrics.extend(gpu.finish(&ctx).unwrap());
    assert_eq!(metrics.len(), steps);
    let k = &schedule.terms;
    for (i, m) in metrics.iter().enumerate() {
        assert_eq!(m.iteration as usize, i);
        let s = i as u64;
        let want = [beta(&k[0], s), (beta(&k[1], s) + beta(&k[2], s)) / 2.0];
        assert_eq!(m.beta_per_level.len(), 2, "step {i}");
        for (l, (&got, &w)) in m.beta_per_level.iter().zip(&want).enumerate() {
            assert!((got - w).abs() <= 1e-6, "step {i} level {l}: β {got} vs {w}");
        }
        assert!(m.applied, "step {i} was skipped");
    }
    // Step 0 ran on the initial weights: its ELBO is the true one (β = 1), not the controlled loss.
    let cpu = cpu_run(&t, &params, 0);
    let sum = |x: TensorId| value(&cpu, x).iter().map(|&v| v as f64).sum::<f64>();
    let kl: Vec<f64> = t.levels.iter().map(|&l| sum(l) / (N * DIMS) as f64).collect();
    let elbo = sum(t.nll) / (N * DIMS) as f64 + kl.iter().sum::<f64>();
    let m0 = &metrics[0];
    assert!(
        (m0.elbo - elbo).abs() <= 1e-5 * elbo.abs().max(1.0),
        "ELBO {} vs {elbo}",
        m0.elbo
    );
    for (l, (&got, &w)) in m0.kl_per_level.iter().zip(&kl).enumerate() {
        assert!(
            (got - w).abs() <= 1e-5 * w.abs().max(1e-3),
            "level {l}: KL {got} vs {w}"
        );
    }
    let controlled = value(&cpu, t.loss)[0] as f64;
    assert!(
        (controlled - elbo).abs() > 1e-2,
        "the controlled loss {controlled} differs from the ELBO {elbo}"
    );
}

#[test]
fn the_controls_stay_f32_under_f16_storage_and_bad_schedules_are_refused() {
    let mut t = tiny(free_bits_schedule(), Sampling::Posterior);
    set_precision(&mut t.g, Precision::F16);
    for name in ["loss.kl_terms", "loss.kl_seeds", "loss.kl_coef", "dec.1.kl_group0_sum"] {
        let x = t.g.tensors.iter().find(|x| x.name == name).unwrap();
        assert_eq!(x.dtype, DType::F32, "{name}");
    }
    // Every level needs a term; every term a level; one schedule entry per term.
    let mut g = Graph::default();
    let s: Vec<TensorId> = (0..3)
        .map(|i| g.tensor(format!("s{i}"), vec![N], Role::Param))
        .collect();
    let one = |level| KlSchedule {
        terms: vec![term(level, 1.0, 1.0, 0, 0.0, 1.0)],
        balance: false,
    };
    assert!(g.controlled_elbo("a", s[0], &[s[1], s[2]], &[s[1]], one(0), 4).is_err());
    assert!(g.controlled_elbo("b", s[0], &[s[1]], &[s[1]], one(1), 4).is_err());
    assert!(g.controlled_elbo("c", s[0], &[s[1]], &[s[1], s[2]], one(0), 4).is_err());
    let mut zero_alpha = one(0);
    zero_alpha.terms[0].balance_weight = 0.0;
    zero_alpha.balance = true;
    assert!(g.controlled_elbo("d", s[0], &[s[1]], &[s[1]], zero_alpha, 4).is_err());
    assert!(g.controlled_elbo("e", s[0], &[s[1]], &[s[1]], one(0), 4).is_ok());
}
