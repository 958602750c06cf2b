//! Bernoulli kernels against the CPU reference; the CPU gradient against f64 finite differences.

use kernels_test::assert_close_f64;
use vdvae::kernels::bernoulli::{reference, BernoulliSpec};
use vdvae::kernels::testdata::{finite_difference, TestRng};

#[test]
fn bernoulli_matches_reference() {
    kernels_test::assert_family_passes("bernoulli");
}

#[test]
fn bernoulli_gradient_matches_finite_differences() {
    let spec = BernoulliSpec { n: 3, h: 2, w: 3, c: 2 };
    let mut rng = TestRng::new(4);
    let logits = rng.vec(spec.len(), -8.0, 8.0);
    let targets: Vec<f32> = (0..spec.len()).map(|i| (i % 3 == 0) as u8 as f32).collect();
    let upstream = rng.vec(spec.n, 0.5, 2.0);
    let analytic = reference::nll_grad(&spec, &logits, &targets, &upstream);
    let fd = finite_difference(&logits, 1e-3, |l| {
        reference::nll_f64(&spec, l, &targets)
            .iter()
            .zip(&upstream)
            .map(|(nll, &u)| nll * u as f64)
            .sum()
    });
    assert_close_f64("bernoulli dlogits", &analytic, &fd, 1e-7, 1e-5);
}

#[test]
fn saturated_logits_give_exact_limits() {
    let spec = BernoulliSpec { n: 1, h: 1, w: 1, c: 4 };
    let nll = reference::nll_f64(&spec, &[100.0, -100.0, 100.0, 0.0], &[1.0, 0.0, 0.0, 1.0])[0];
    // ~0, ~0, 100 (a confident miss costs the logit), ln 2.
    assert!((nll - (100.0 + std::f64::consts::LN_2)).abs() < 1e-12, "nll {nll}");
}

#[test]
fn probabilities_zero_and_one_sample_to_themselves() {
    use vdvae::kernels::rng::RngKey;
    let key = RngKey::new(1, 2, 3);
    let probs: Vec<f32> = (0..1000).map(|i| (i % 2) as f32).collect();
    assert_eq!(reference::sample_probs(&probs, &key, 0), probs);
    // Element i's bit is decided by element i's uniform, at its flat index.
    let half = reference::sample_probs(&[0.5; 8], &key, 0);
    for (i, &x) in half.iter().enumerate() {
        assert_eq!(x == 1.0, reference::uniform(&key, i) < 0.5, "element {i}");
    }
}
