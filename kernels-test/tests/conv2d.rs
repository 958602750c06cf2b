//! conv2d kernels (simple and tiled paths) against the CPU reference; the CPU
//! backward (dx, dw, db) against f64 finite differences of the CPU forward.

use kernels_test::assert_close_f64;
use vdvae::kernels::conv2d::{reference, Conv2dShape};
use vdvae::kernels::testdata::{finite_difference, weighted_sum, TestRng};

#[test]
fn conv2d_matches_reference() {
    kernels_test::assert_family_passes("conv2d");
}

/// Tiny shapes with odd sizes; every tap touches the zero padding somewhere.
fn tiny_shapes() -> Vec<Conv2dShape> {
    let mut v = Vec::new();
    for gelu in [false, true] {
        v.push(Conv2dShape::new(2, 3, 4, 3, 2, 3).with_gelu(gelu).with_bias(true));
        v.push(Conv2dShape::new(1, 2, 3, 2, 3, 1).with_gelu(gelu).with_residual(true));
    }
    v
}

struct Case {
    s: Conv2dShape,
    x: Vec<f32>,
    w: Vec<f32>,
    bias: Vec<f32>,
    residual: Vec<f32>,
    /// Loss weights: loss = Σ dy · y, so dL/dy = dy.
    dy: Vec<f32>,
}

impl Case {
    fn new(s: Conv2dShape, seed: u64) -> Case {
        let mut rng = TestRng::new(seed);
        Case {
            s,
            x: rng.vec(s.x_len(), -2.0, 2.0),
            w: rng.vec(s.w_len(), -1.0, 1.0),
            bias: rng.vec(s.cout, -1.0, 1.0),
            residual: rng.vec(s.y_len(), -1.0, 1.0),
            dy: rng.vec(s.y_len(), -1.0, 1.0),
        }
    }

    fn loss(&self, x: &[f32], w: &[f32], bias: &[f32]) -> f64 {
        let b = self.s.bias.then_some(bias);
        let r = self.s.residual.then_some(&self.residual[..]);
        weighted_sum(&reference::forward(&self.s, x, w, b, r), &self.dy)
    }
}

// Tolerances: central differences with eps 1e-3 on a loss that is smooth (GELU) or
// linear in the perturbed tensor; f32 rounding of the loss (~1e-7 relative on sums
// of ~100 terms) divided by 2·eps dominates, so atol 1e-3, rtol 1e-3.
const FD_EPS: f64 = 1e-3;
const FD_ATOL: f64 = 1e-3;
const FD_RTOL: f64 = 1e-3;

#[test]
fn conv2d_backward_input_matches_finite_differences() {
    for (i, s) in tiny_shapes().into_iter().enumerate() {
        let c = Case::new(s, 10 + i as u64);
        let fd = finite_difference(&c.x, FD_EPS, |x| c.loss(x, &c.w, &c.bias));
        let got = reference::backward_input(&s, &c.x, &c.w, &c.dy);
        assert_close_f64(&format!("dx {s:?}"), &got, &fd, FD_ATOL, FD_RTOL);
    }
}

#[test]
fn conv2d_backward_weight_matches_finite_differences() {
    for (i, s) in tiny_shapes().into_iter().enumerate() {
        let c = Case::new(s, 20 + i as u64);
        let fd = finite_difference(&c.w, FD_EPS, |w| c.loss(&c.x, w, &c.bias));
        let got = reference::backward_weight(&s, &c.x, &c.dy);
        assert_close_f64(&format!("dw {s:?}"), &got, &fd, FD_ATOL, FD_RTOL);
    }
}

#[test]
fn conv2d_backward_bias_matches_finite_differences() {
    for (i, s) in tiny_shapes().into_iter().filter(|s| s.bias).enumerate() {
        let c = Case::new(s, 30 + i as u64);
        let fd = finite_difference(&c.bias, FD_EPS, |b| c.loss(&c.x, &c.w, b));
        let got = reference::backward_bias(&s, &c.dy);
        assert_close_f64(&format!("db {s:?}"), &got, &fd, FD_ATOL, FD_RTOL);
    }
}

#[test]
fn conv2d_rejects_bad_shapes() {
    let ctx = kernels_test::context();
    let s = Conv2dShape::new(1, 4, 4, 4, 4, 5);
    let x = ctx.zeros(s.x_len());
    let w = ctx.zeros(s.w_len());
    let y = ctx.zeros(s.y_len());
    let scratch = ctx.zeros(1);
    let forward = |s: &Conv2dShape| {
        vdvae::kernels::conv2d::conv2d_forward(&ctx, s, x.view(), w.view(), None, None, scratch.view(), y.view())
    };
    let err = forward(&s);
    assert!(
        matches!(err, Err(vdvae::Error::Shape(_))),
        "kernel size 5 must be a shape error"
    );
    let s = Conv2dShape::new(1, 4, 4, 4, 4, 3).with_bias(true);
    let err = forward(&s);
    assert!(
        matches!(err, Err(vdvae::Error::Shape(_))),
        "a missing bias must be a shape error"
    );
}
