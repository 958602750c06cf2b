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
        use vdvae::kernels::conv2d::{forward, ConvPass, Forward, Path};
        let args = Forward {
            x: x.view().into(),
            w: w.view(),
            bias: None,
            residual: None,
            scratch: scratch.view(),
            y: y.view(),
        };
        forward(&ctx, Path::best(&ctx, s, ConvPass::Forward), s, &args)
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

/// Every channel count takes the tiled forward, dx and dw where the adapter
/// has the tiled kernels as its default (ragged counts are read in place or
/// padded inside the family; tuning may only pick a faster path), and
/// the simple ones where it has not: the table `vdvae check` runs, and Cin and
/// Cout of 1, 3, 5, 30, 50, 100 and 64 crossed, 1x1 and 3x3, 1x1 to 32x32 images.
#[test]
fn ragged_channel_counts_take_the_tiled_path() {
    use vdvae::kernels::conv2d::{checked_shapes, ConvPass, Path};
    let ctx = kernels_test::context();
    let want = if Path::tiled_usable(&ctx) {
        Path::Tiled
    } else {
        Path::Simple
    };
    let counts = [1, 3, 5, 30, 50, 100, 64];
    let mut shapes = checked_shapes(true);
    for (cin, cout, k, (n, h)) in crossed(&counts, &[1, 3], &[(1, 1), (2, 7), (16, 32)]) {
        let s = Conv2dShape::new(n, h, h, cin, cout, k).with_gelu(true).with_bias(true);
        shapes.push(s);
        shapes.push(s.with_residual(true));
        // The posterior's first conv: a 1x1 over a cat of two whole-vec4 halves.
        if k == 1 {
            shapes.push(Conv2dShape::new(n, h, h, 64, cout, 1).with_gelu(true).with_cat(32));
        }
    }
    for s in &shapes {
        assert_eq!(Path::default_for(&ctx, s, ConvPass::Forward), want, "forward {s:?}");
        assert_eq!(Path::default_for(&ctx, s, ConvPass::BackwardWeight), want, "dw {s:?}");
        // dx writes a cat's two halves apart from its 1x1 tile over whole vec4s only.
        let cat_dx = s.cat.is_none_or(|c1| s.k == 1 && c1 % 4 == 0 && (s.cin - c1) % 4 == 0);
        if cat_dx {
            assert_eq!(Path::default_for(&ctx, s, ConvPass::BackwardInput), want, "dx {s:?}");
        }
    }
}

/// (cin, cout, k, (n, h)) for every cin and cout in `counts`, k in `ks`, (n, h) in `sizes`.
fn crossed(counts: &[usize], ks: &[usize], sizes: &[(usize, usize)]) -> Vec<(usize, usize, usize, (usize, usize))> {
    let mut all = Vec::new();
    for &cin in counts {
        for &cout in counts {
            for &k in ks {
                for &size in sizes {
                    all.push((cin, cout, k, size));
                }
            }
        }
    }
    all
}
