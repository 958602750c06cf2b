//! Resample kernels against the CPU reference; CPU backward against finite differences.

use kernels_test::assert_close_f64;
use vdvae::kernels::resample::{self, reference};
use vdvae::kernels::testdata::{finite_difference, weighted_sum, TestRng};
use vdvae::Error;

#[test]
fn resample_matches_reference() {
    kernels_test::assert_family_passes("resample");
}

#[test]
fn avg_pool_backward_matches_finite_differences() {
    let mut rng = TestRng::new(23);
    for (shape, k) in [([2, 4, 6, 3], 2), ([1, 3, 3, 2], 3)] {
        let x = rng.vec(shape.iter().product(), -2.0, 2.0);
        let w = rng.vec(x.len() / (k * k), -1.0, 1.0);
        let fd = finite_difference(&x, 1e-3, |x| weighted_sum(&reference::avg_pool(x, shape, k), &w));
        let dx = reference::avg_pool_backward(&w, shape, k);
        assert_close_f64("avg_pool dx", &dx, &fd, 1e-5, 1e-4);
    }
}

#[test]
fn upsample_backward_matches_finite_differences() {
    let mut rng = TestRng::new(24);
    for (shape, k) in [([2, 2, 3, 3], 2), ([1, 1, 2, 2], 3)] {
        let x = rng.vec(shape.iter().product(), -2.0, 2.0);
        let w = rng.vec(x.len() * k * k, -1.0, 1.0);
        let fd = finite_difference(&x, 1e-3, |x| {
            weighted_sum(&reference::upsample_nearest(x, shape, k), &w)
        });
        let dx = reference::upsample_nearest_backward(&w, shape, k);
        assert_close_f64("upsample dx", &dx, &fd, 1e-5, 1e-4);
    }
}

#[test]
fn bad_shapes_are_shape_errors() {
    let ctx = kernels_test::context();
    let (x, y) = (ctx.zeros(2 * 6 * 6 * 3), ctx.zeros(2 * 3 * 3 * 3));
    let is_shape = |r: Result<_, Error>| matches!(r, Err(Error::Shape(_)));
    // 6 is not divisible by 4, k = 0 is no factor, and the output has the wrong length.
    assert!(is_shape(
        resample::avg_pool(&ctx, x.view(), [2, 6, 6, 3], 4, y.view()).map(|_| ())
    ));
    assert!(is_shape(
        resample::avg_pool(&ctx, x.view(), [2, 6, 6, 3], 0, y.view()).map(|_| ())
    ));
    assert!(is_shape(
        resample::upsample_nearest(&ctx, y.view(), [2, 3, 3, 3], 3, x.view()).map(|_| ())
    ));
    assert!(resample::avg_pool(&ctx, x.view(), [2, 6, 6, 3], 2, y.view()).is_ok());
    assert!(resample::upsample_nearest(&ctx, y.view(), [2, 3, 3, 3], 2, x.view()).is_ok());
}
