//! Group norm kernels against the CPU reference; CPU backward against finite differences.

use kernels_test::assert_close_f64;
use vdvae::kernels::groupnorm::{reference, GroupNorm};
use vdvae::kernels::testdata::{finite_difference, weighted_sum, TestRng};
use vdvae::Error;

#[test]
fn groupnorm_matches_reference() {
    kernels_test::assert_family_passes("groupnorm");
}

#[test]
fn groupnorm_backward_matches_finite_differences() {
    let mut rng = TestRng::new(43);
    for (shape, groups) in [([2, 2, 3, 4], 2), ([1, 3, 2, 3], 1), ([2, 1, 2, 6], 6)] {
        let n: usize = shape.iter().product();
        let c = shape[3];
        let eps = 1e-3;
        let (x, w) = (rng.vec(n, -1.0, 3.0), rng.vec(n, -1.0, 1.0));
        let (gamma, beta) = (rng.vec(c, 0.5, 1.5), rng.vec(c, -1.0, 1.0));
        let loss =
            |x: &[f32], g: &[f32], b: &[f32]| weighted_sum(&reference::forward(x, shape, groups, eps, g, b).0, &w);
        let (dx, dgamma, dbeta) = reference::backward(&x, &w, shape, groups, eps, &gamma);
        let fd_x = finite_difference(&x, 1e-3, |x| loss(x, &gamma, &beta));
        let fd_g = finite_difference(&gamma, 1e-3, |g| loss(&x, g, &beta));
        let fd_b = finite_difference(&beta, 1e-3, |b| loss(&x, &gamma, b));
        assert_close_f64("groupnorm dx", &dx, &fd_x, 2e-3, 2e-3);
        assert_close_f64("groupnorm dgamma", &dgamma, &fd_g, 2e-3, 2e-3);
        assert_close_f64("groupnorm dbeta", &dbeta, &fd_b, 2e-3, 2e-3);
    }
}

#[test]
fn bad_shapes_are_shape_errors() {
    assert!(matches!(GroupNorm::new([2, 4, 4, 6], 4, 1e-5), Err(Error::Shape(_))));
    assert!(matches!(GroupNorm::new([2, 4, 4, 6], 0, 1e-5), Err(Error::Shape(_))));
    assert!(matches!(GroupNorm::new([2, 0, 4, 6], 3, 1e-5), Err(Error::Shape(_))));
    assert!(matches!(GroupNorm::new([2, 4, 4, 6], 3, 0.0), Err(Error::Shape(_))));
    assert!(GroupNorm::new([2, 4, 4, 6], 3, 1e-5).is_ok());
}
