//! reparam_kl kernels against the CPU reference; every CPU backward (direct and
//! ladder posterior, sampled and mean z, per-element and broadcast dkl) against
//! f64 finite differences of its forward.

use kernels_test::assert_close_f64;
use vdvae::kernels::reparam_kl::reference::{self, LatentsRef};
use vdvae::kernels::reparam_kl::{Posterior, Reparam, ZMode};
use vdvae::kernels::rng::RngKey;
use vdvae::kernels::testdata::{finite_difference, weighted_sum, TestRng};

#[test]
fn reparam_kl_matches_reference() {
    kernels_test::assert_family_passes("reparam_kl");
}

/// The loss `sum wz*z + sum wk*kl` and its analytic gradient, checked input by input.
fn check_backward(cfg: Reparam, n: usize, dkl_scalar: bool, seed: u64) {
    let mut rng = TestRng::new(seed);
    let inputs: Vec<Vec<f32>> = vec![
        rng.vec(n, -2.0, 2.0),
        rng.vec(n, -2.0, 1.0),
        rng.vec(n, -2.0, 2.0),
        rng.vec(n, -2.0, 1.0),
    ];
    let wz = rng.vec(n, -1.0, 1.0);
    let wk = rng.vec(if dkl_scalar { 1 } else { n }, -1.0, 1.0);
    let wk_full: Vec<f32> = (0..n).map(|i| wk[if dkl_scalar { 0 } else { i }]).collect();
    let latents = |x: &[Vec<f32>; 4]| -> f64 {
        let l = LatentsRef {
            q_mu: &x[0],
            q_logsig: &x[1],
            p_mu: &x[2],
            p_logsig: &x[3],
        };
        // Unrounded outputs: f32 rounding of a KL of ~100 would swamp the difference quotient.
        let (z, kl) = reference::forward_f64(&cfg, &l);
        let dot = |y: &[f64], w: &[f32]| y.iter().zip(w).map(|(a, b)| a * *b as f64).sum::<f64>();
        dot(&z, &wz) + dot(&kl, &wk_full)
    };
    let x: [Vec<f32>; 4] = inputs.try_into().unwrap();
    let l = LatentsRef {
        q_mu: &x[0],
        q_logsig: &x[1],
        p_mu: &x[2],
        p_logsig: &x[3],
    };
    let g = reference::backward(&cfg, &l, &wz, &wk);
    let analytic = [&g.q_mu, &g.q_logsig, &g.p_mu, &g.p_logsig];
    let names = ["q_mu", "q_logsig", "p_mu", "p_logsig"];
    for k in 0..4 {
        let fd = finite_difference(&x[k], 1e-3, |v| {
            let mut y = x.clone();
            y[k] = v.to_vec();
            latents(&y)
        });
        let what = format!(
            "{:?} {:?} d{} (dkl scalar {dkl_scalar})",
            cfg.posterior, cfg.mode, names[k]
        );
        assert_close_f64(&what, analytic[k], &fd, 1e-4, 1e-3);
    }
}

fn cfg(posterior: Posterior, mode: ZMode) -> Reparam {
    Reparam {
        posterior,
        mode,
        key: RngKey::new(99, 4, 2),
    }
}

#[test]
fn direct_backward_matches_finite_differences() {
    check_backward(cfg(Posterior::Direct, ZMode::Sample), 30, false, 1);
    check_backward(cfg(Posterior::Direct, ZMode::Sample), 30, true, 2);
    check_backward(cfg(Posterior::Direct, ZMode::Mean), 30, false, 3);
}

#[test]
fn ladder_backward_matches_finite_differences() {
    check_backward(cfg(Posterior::Ladder, ZMode::Sample), 30, false, 4);
    check_backward(cfg(Posterior::Ladder, ZMode::Sample), 30, true, 5);
    check_backward(cfg(Posterior::Ladder, ZMode::Mean), 30, false, 6);
}

#[test]
fn ladder_merge_is_precision_weighting() {
    // Equal precisions average the means and halve the variance.
    let (mu, logsig) = reference::ladder_merge(1.0, 0.3, 3.0, 0.3);
    assert!((mu - 2.0).abs() < 1e-12);
    assert!((logsig - (0.3 - 0.5 * 2f64.ln())).abs() < 1e-12);
    // A much sharper prior dominates.
    let (mu, _) = reference::ladder_merge(1.0, 2.0, 3.0, -3.0);
    assert!((mu - 3.0).abs() < 1e-3);
}

#[test]
fn kl_of_identical_gaussians_is_zero_and_prior_sample_is_scaled() {
    assert!(reference::gaussian_kl(0.7, -0.4, 0.7, -0.4).abs() < 1e-15);
    let key = RngKey::new(5, 6, 7);
    let z = reference::prior_sample(key, 0.5, &[1.0, 1.0], &[0.0, 2.0f32.ln()]);
    for (i, (zi, sigma)) in z.iter().zip([0.5f64, 1.0]).enumerate() {
        let want = 1.0 + sigma * key.normal(i as u32) as f64;
        assert!((*zi as f64 - want).abs() < 1e-6, "{zi} vs {want}");
    }
    assert_eq!(reference::prior_sample(key, 0.0, &[1.5], &[3.0]), vec![1.5]);
}

#[test]
fn importance_log_ratio_is_log_q_minus_log_p_and_averages_to_the_kl() {
    let ln_2pi = (2.0 * std::f64::consts::PI).ln();
    let log_normal = |z: f64, mu: f64, logsig: f64| {
        let t = (z - mu) / logsig.exp();
        -0.5 * t * t - logsig - 0.5 * ln_2pi
    };
    let n = 40_000;
    let (md, ld, mp, lp) = (0.4f32, -0.9f32, -0.2f32, 0.3f32);
    let x = [vec![md; n], vec![ld; n], vec![mp; n], vec![lp; n]];
    let [md, ld, mp, lp] = [md, ld, mp, lp].map(f64::from);
    let l = LatentsRef {
        q_mu: &x[0],
        q_logsig: &x[1],
        p_mu: &x[2],
        p_logsig: &x[3],
    };
    for posterior in [Posterior::Direct, Posterior::Ladder] {
        let (z, ratio) = reference::forward_f64(&cfg(posterior, ZMode::Importance), &l);
        // The draw is the sampled mode's.
        let (z_sample, kl) = reference::forward_f64(&cfg(posterior, ZMode::Sample), &l);
        assert_eq!(z, z_sample);
        let (mq, lq) = match posterior {
            Posterior::Direct => (md, ld),
            Posterior::Ladder => reference::ladder_merge(md, ld, mp, lp),
        };
        for i in 0..100 {
            let want = log_normal(z[i], mq, lq) - log_normal(z[i], mp, lp);
            assert!(
                (ratio[i] - want).abs() < 1e-9,
                "{posterior:?} {i}: {} vs {want}",
                ratio[i]
            );
        }
        let mean = ratio.iter().sum::<f64>() / n as f64;
        let var = ratio.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / n as f64;
        let se = (var / n as f64).sqrt();
        assert!(
            (mean - kl[0]).abs() < 5.0 * se,
            "{posterior:?}: mean {mean} vs KL {} (se {se})",
            kl[0]
        );
    }
}

#[test]
fn importance_mode_backward_is_refused() {
    use vdvae::kernels::reparam_kl::{backward, backward_packed, Latents, Packed};
    let ctx = kernels_test::context();
    let buf = ctx.zeros(4);
    let v = buf.view();
    let lat = Latents {
        q_mu: v,
        q_logsig: v,
        p_mu: v,
        p_logsig: v,
    };
    let cfg = cfg(Posterior::Ladder, ZMode::Importance);
    let err = backward(&ctx, &cfg, &lat, v, v, &lat)
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("no backward"), "{err}");
    let packed = Packed {
        zdim: 2,
        q: v,
        p: v,
        p_channels: 4,
    };
    let cfg = self::cfg(Posterior::Direct, ZMode::Importance);
    let err = backward_packed(&ctx, &cfg, &packed, v, v, v, v)
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("no backward"), "{err}");
}

#[test]
fn the_packed_ladder_merge_backward_matches_finite_differences() {
    use vdvae::kernels::reparam_kl::reference::{merge_packed, merge_packed_backward};
    let (n, zdim) = (6, 3);
    let mut rng = TestRng::new(31);
    let x: Vec<Vec<f32>> = (0..4).map(|_| rng.vec(n, -1.5, 1.5)).collect();
    let dq = rng.vec(2 * n, -1.0, 1.0);
    let loss = |x: &[Vec<f32>]| {
        let l = LatentsRef {
            q_mu: &x[0],
            q_logsig: &x[1],
            p_mu: &x[2],
            p_logsig: &x[3],
        };
        weighted_sum(&merge_packed(&l, zdim), &dq)
    };
    let l = LatentsRef {
        q_mu: &x[0],
        q_logsig: &x[1],
        p_mu: &x[2],
        p_logsig: &x[3],
    };
    let analytic = merge_packed_backward(&l, zdim, &dq);
    for k in 0..4 {
        let fd = finite_difference(&x[k], 1e-3, |v| {
            let mut y = x.clone();
            y[k] = v.to_vec();
            loss(&y)
        });
        assert_close_f64(&format!("input {k}"), &analytic[k], &fd, 1e-3, 1e-3);
    }
}
