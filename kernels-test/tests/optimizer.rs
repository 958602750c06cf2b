//! Optimizer kernels (decide + AdamW + EMA) against the CPU reference over
//! applied, clipped, skipped (threshold, NaN, inf) and multi-step scenarios; the
//! CPU reference against hand-computed torch/official VDVAE semantics.

use vdvae::kernels::optimizer::reference::{self, TensorRef};
use vdvae::kernels::optimizer::{AdamW, StepState};

#[test]
fn optimizer_matches_reference() {
    kernels_test::assert_family_passes("optimizer");
}

fn one_param(p: f32, g: f32) -> TensorRef {
    TensorRef {
        param: vec![p],
        grad: vec![g],
        exp_avg: vec![0.0],
        exp_avg_sq: vec![0.0],
        ema: Some(vec![p]),
    }
}

#[test]
fn first_adam_step_moves_by_lr_times_sign() {
    // t = 1 from zero moments: m_hat = g, v_hat = g^2, so p -= lr * (wd p + g / (|g| + eps)).
    let cfg = AdamW {
        lr: 0.1,
        weight_decay: 0.5,
        grad_clip: 0.0,
        skip_threshold: -1.0,
        ema_rate: 0.75,
        ..AdamW::default()
    };
    let mut t = [one_param(2.0, -3.0)];
    let mut s = StepState {
        grad_sq: 9.0,
        ..StepState::default()
    };
    let d = reference::step(&cfg, &mut s, &mut t);
    assert!(d.apply);
    let want = 2.0 - 0.1 * (0.5 * 2.0 - 3.0 / (3.0 + 1e-8));
    assert!((t[0].param[0] as f64 - want).abs() < 1e-6, "{}", t[0].param[0]);
    let ema = 0.75 * 2.0 + 0.25 * t[0].param[0] as f64;
    assert!((t[0].ema.as_ref().unwrap()[0] as f64 - ema).abs() < 1e-6);
    assert_eq!((s.step, s.skips, s.iteration), (1, 0, 1));
}

#[test]
fn clip_follows_clip_grad_norm() {
    // total norm 5, max_norm 1: grads scaled by 1 / (5 + 1e-6).
    let cfg = AdamW {
        grad_clip: 1.0,
        ..AdamW::default()
    };
    let mut s = StepState {
        grad_sq: 25.0,
        ..StepState::default()
    };
    let d = reference::decide(&cfg, &mut s);
    assert!((d.clip_scale - 1.0 / (5.0 + 1e-6)).abs() < 1e-15);
    assert_eq!(s.grad_norm, 5.0);
}

#[test]
fn warmup_matches_lambda_lr_and_counts_skips() {
    // linear_warmup(4): iterations 0, 1, 2, ... get lr * 0, 1/4, 2/4, ...; skipped
    // steps advance the clock but not Adam's t.
    let cfg = AdamW {
        lr: 1.0,
        warmup_iters: 4.0,
        skip_threshold: 10.0,
        ..AdamW::default()
    };
    let mut s = StepState::default();
    let norms = [1.0f32, 20.0, f32::NAN, 1.0, 1.0, 1.0];
    let mut lrs = Vec::new();
    for n in norms {
        s.grad_sq = n * n;
        lrs.push(reference::decide(&cfg, &mut s).lr);
    }
    assert_eq!(lrs, vec![0.0, 0.25, 0.5, 0.75, 1.0, 1.0]);
    assert_eq!((s.step, s.skips, s.iteration, s.nonfinite_skips), (4, 2, 6, 1));
}

#[test]
fn skipped_step_changes_nothing() {
    let cfg = AdamW {
        skip_threshold: 1.0,
        ..AdamW::default()
    };
    let mut t = [one_param(0.5, 2.0)];
    let before = t[0].clone();
    let mut s = StepState {
        grad_sq: 4.0,
        ..StepState::default()
    };
    assert!(!reference::step(&cfg, &mut s, &mut t).apply);
    assert_eq!(t[0].param, before.param);
    assert_eq!(t[0].exp_avg, before.exp_avg);
    assert_eq!(t[0].ema, before.ema);
    assert_eq!((s.step, s.skips), (0, 1));
}
