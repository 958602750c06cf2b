//! reparam_kl kernels against the CPU reference; every CPU backward (direct and
//! ladder posterior, sampled and mean z, per-element and broadcast dkl) against
//! f64 finite differences of its forward.

use kernels_test::assert_close_f64;
use vdvae::ops::reparam_kl::reference::{self, LatentsRef};
use vdvae::ops::reparam_kl::{Posterior, Reparam, ZMode};
use vdvae::ops::rng::RngKey;
use vdvae::ops::testdata::{finite_difference, TestRng};

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
