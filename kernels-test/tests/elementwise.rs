//! Elementwise kernels against the CPU reference; CPU backward against finite differences.

use kernels_test::assert_close_f64;
use vdvae::kernels::elementwise::{self, reference, AffineBackward, ChannelRange};
use vdvae::kernels::testdata::{finite_difference, weighted_sum, TestRng};
use vdvae::Error;

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

#[test]
fn leaky_relu_and_elu_backward_match_finite_differences() {
    let mut rng = TestRng::new(8);
    // Away from the kink at 0, where the central difference straddles two slopes.
    let x: Vec<f32> = rng
        .vec(40, -4.0, 4.0)
        .into_iter()
        .map(|v| if v.abs() < 0.01 { v + 0.02 } else { v })
        .collect();
    let w = rng.vec(40, -1.0, 1.0);
    let slope = 0.2;
    let fd = finite_difference(&x, 1e-3, |x| weighted_sum(&reference::leaky_relu(x, slope), &w));
    assert_close_f64(
        "leaky_relu dx",
        &reference::leaky_relu_backward(&x, &w, slope),
        &fd,
        1e-5,
        1e-4,
    );
    let fd = finite_difference(&x, 1e-3, |x| weighted_sum(&reference::elu(x), &w));
    assert_close_f64("elu dx", &reference::elu_backward(&x, &w), &fd, 1e-4, 1e-3);
    // Both are the identity for x > 0 and continuous at 0.
    assert_eq!(reference::leaky_relu(&[2.5, 0.0, -2.0], slope), [2.5, 0.0, -0.4]);
    assert_eq!(reference::elu(&[2.5, 0.0]), [2.5, 0.0]);
    assert!((reference::elu(&[-1.0])[0] - (-1f32).exp_m1()).abs() < 1e-7);
}

#[test]
fn add_backward_matches_finite_differences() {
    let mut rng = TestRng::new(4);
    let (a, b, w) = (rng.vec(30, -2.0, 2.0), rng.vec(30, -2.0, 2.0), rng.vec(30, -1.0, 1.0));
    let (da, db) = reference::add_backward(&w);
    let fd_a = finite_difference(&a, 1e-3, |a| weighted_sum(&reference::add(a, &b), &w));
    let fd_b = finite_difference(&b, 1e-3, |b| weighted_sum(&reference::add(&a, b), &w));
    assert_close_f64("add da", &da, &fd_a, 1e-4, 1e-3);
    assert_close_f64("add db", &db, &fd_b, 1e-4, 1e-3);
}

#[test]
fn affine_backward_matches_finite_differences() {
    let mut rng = TestRng::new(5);
    let c = 3;
    let n = 2 * 2 * 3 * c;
    let (x, w) = (rng.vec(n, -2.0, 2.0), rng.vec(n, -1.0, 1.0));
    let (gain, bias) = (rng.vec(c, -2.0, 2.0), rng.vec(c, -1.0, 1.0));
    let (dx, dgain, dbias) = reference::affine_backward(&x, &w, &gain);
    let fd_x = finite_difference(&x, 1e-3, |x| weighted_sum(&reference::affine(x, &gain, &bias), &w));
    let fd_g = finite_difference(&gain, 1e-3, |g| weighted_sum(&reference::affine(&x, g, &bias), &w));
    let fd_b = finite_difference(&bias, 1e-3, |b| weighted_sum(&reference::affine(&x, &gain, b), &w));
    assert_close_f64("affine dx", &dx, &fd_x, 1e-4, 1e-3);
    assert_close_f64("affine dgain", &dgain, &fd_g, 1e-4, 1e-3);
    assert_close_f64("affine dbias", &dbias, &fd_b, 1e-4, 1e-3);
}

#[test]
fn concat_and_split_backward_match_finite_differences() {
    let mut rng = TestRng::new(6);
    let (rows, ca, cb) = (5, 2, 3);
    let (a, b) = (rng.vec(rows * ca, -1.0, 1.0), rng.vec(rows * cb, -1.0, 1.0));
    let w = rng.vec(rows * (ca + cb), -1.0, 1.0);
    // Concat's backward is split of dy.
    let (da, db) = reference::split_channels(&w, ca, cb);
    let fd_a = finite_difference(&a, 1e-3, |a| {
        weighted_sum(&reference::concat_channels(a, ca, &b, cb), &w)
    });
    let fd_b = finite_difference(&b, 1e-3, |b| {
        weighted_sum(&reference::concat_channels(&a, ca, b, cb), &w)
    });
    assert_close_f64("concat da", &da, &fd_a, 1e-5, 1e-4);
    assert_close_f64("concat db", &db, &fd_b, 1e-5, 1e-4);
    // Split's backward is concat of (da, db).
    let y = reference::concat_channels(&a, ca, &b, cb);
    let (wa, wb) = (rng.vec(rows * ca, -1.0, 1.0), rng.vec(rows * cb, -1.0, 1.0));
    let loss = |y: &[f32]| {
        let (ya, yb) = reference::split_channels(y, ca, cb);
        weighted_sum(&ya, &wa) + weighted_sum(&yb, &wb)
    };
    let fd_y = finite_difference(&y, 1e-3, loss);
    let dy = reference::concat_channels(&wa, ca, &wb, cb);
    assert_close_f64("split dy", &dy, &fd_y, 1e-5, 1e-4);
}

#[test]
fn slice_backward_matches_finite_differences() {
    let mut rng = TestRng::new(7);
    let (rows, c, start, end) = (4, 7, 2, 5);
    let x = rng.vec(rows * c, -1.0, 1.0);
    let w = rng.vec(rows * (end - start), -1.0, 1.0);
    let fd = finite_difference(&x, 1e-3, |x| {
        weighted_sum(&reference::slice_channels(x, c, start, end), &w)
    });
    let dx = reference::slice_channels_backward(&w, c, start, end);
    assert_close_f64("slice dx", &dx, &fd, 1e-5, 1e-4);
}

#[test]
fn bad_shapes_are_shape_errors() {
    let ctx = kernels_test::context();
    let (x, y, g) = (ctx.zeros(12), ctx.zeros(10), ctx.zeros(5));
    let is_shape = |r: Result<_, Error>| matches!(r, Err(Error::Shape(_)));
    assert!(is_shape(
        elementwise::add(&ctx, x.view(), x.view(), y.view()).map(|_| ())
    ));
    // 12 elements are not NHWC with 5 channels.
    assert!(is_shape(
        elementwise::affine(&ctx, x.view(), g.view(), g.view(), x.view()).map(|_| ())
    ));
    let b = AffineBackward {
        x: x.view(),
        dy: x.view(),
        gain: x.slice(0, 4),
        dx: x.view(),
        dgain: g.slice(0, 4),
        dbias: g.slice(0, 4),
        scratch: g.slice(0, 1),
    };
    assert!(
        is_shape(elementwise::affine_backward(&ctx, &b).map(|_| ())),
        "too small a scratch"
    );
    // A channel range past the end, and row counts that differ.
    let r = elementwise::slice_channels(&ctx, x.view(), ChannelRange::new(4, 2, 5), y.view());
    assert!(is_shape(r.map(|_| ())));
    let r = elementwise::slice_channels(&ctx, x.view(), ChannelRange::new(4, 1, 3), y.view());
    assert!(is_shape(r.map(|_| ())));
}
