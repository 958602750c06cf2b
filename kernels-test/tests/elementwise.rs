//! Elementwise kernels against the CPU reference; CPU backward against finite differences.

use kernels_test::assert_close_f64;
use vdvae::ops::elementwise::reference;
use vdvae::ops::testdata::{finite_difference, weighted_sum, TestRng};

#[test]
fn elementwise_matches_reference() {
    kernels_test::assert_family_passes("elementwise");
}

#[test]
fn gelu_backward_matches_finite_differences() {
    let mut rng = TestRng::new(3);
    let x = rng.vec(40, -4.0, 4.0);
    let w = rng.vec(40, -1.0, 1.0);
    let fd = finite_difference(&x, 1e-3, |x| weighted_sum(&reference::gelu(x), &w));
    assert_close_f64("gelu dx", &reference::gelu_backward(&x, &w), &fd, 1e-4, 1e-3);
}
