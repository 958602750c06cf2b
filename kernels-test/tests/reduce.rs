//! Reduce kernels against the CPU reference; CPU backward against finite differences.

use kernels_test::assert_close_f64;
use vdvae::kernels::reduce::{self, reference, ReduceOp, Reduction};
use vdvae::kernels::testdata::{finite_difference, weighted_sum, TestRng};
use vdvae::Error;

#[test]
fn reduce_matches_reference() {
    kernels_test::assert_family_passes("reduce");
}

#[test]
fn reduce_backward_matches_finite_differences() {
    let mut rng = TestRng::new(35);
    let dims = [2usize, 3, 2, 4];
    let x = rng.vec(dims.iter().product(), -2.0, 2.0);
    for axes in [vec![0, 1, 2, 3], vec![3], vec![0, 1, 2], vec![1, 2], vec![0, 2]] {
        for op in [ReduceOp::Sum, ReduceOp::Mean] {
            let out_len = reference::reduce(op, &x, &dims, &axes).len();
            let w = rng.vec(out_len, -1.0, 1.0);
            // Linear in x: a large step has no truncation error and keeps the
            // f32 rounding of the outputs small against it.
            let fd = finite_difference(&x, 0.05, |x| weighted_sum(&reference::reduce(op, x, &dims, &axes), &w));
            let dx = reference::reduce_backward(op, &w, &dims, &axes);
            assert_close_f64(&format!("{op:?} {axes:?} dx"), &dx, &fd, 1e-5, 1e-4);
        }
    }
}

#[test]
fn sq_norm_backward_matches_finite_differences() {
    let mut rng = TestRng::new(36);
    let (a, b) = (rng.vec(20, -2.0, 2.0), rng.vec(7, -2.0, 2.0));
    let fd = finite_difference(&a, 1e-3, |a| reference::global_sq_norm(&[a, &b]));
    assert_close_f64(
        "sq norm dx",
        &reference::global_sq_norm_backward(&a, 1.0),
        &fd,
        1e-4,
        1e-4,
    );
}

#[test]
fn reduction_plans_canonicalise_axes() {
    let plan = |dims: &[usize], axes: &[usize]| Reduction::new(ReduceOp::Sum, dims, axes).unwrap();
    let p = plan(&[16, 32, 32, 384], &[0, 1, 2]);
    assert_eq!((p.outer, p.reduced, p.inner), (1, 16 * 32 * 32, 384));
    // Enough outputs to fill the GPU: one pass, no partials.
    let p = plan(&[64, 32, 32, 384], &[3]);
    assert_eq!((p.outer, p.reduced, p.inner, p.splits), (64 * 32 * 32, 384, 1, 1));
    assert_eq!(p.scratch_len(), 0);
    let p = plan(&[5, 1, 1, 3], &[0]);
    assert_eq!((p.outer, p.reduced, p.inner), (1, 5, 3));
    // Size-1 dims between reduced axes do not break contiguity.
    let p = plan(&[2, 3, 1, 4], &[1, 3]);
    assert_eq!((p.outer, p.reduced, p.inner), (2, 12, 1));
    assert!(matches!(
        Reduction::new(ReduceOp::Sum, &[2, 3, 4, 5], &[0, 2]),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        Reduction::new(ReduceOp::Sum, &[2, 3], &[2]),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        Reduction::new(ReduceOp::Sum, &[2, 3], &[1, 1]),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        Reduction::new(ReduceOp::Sum, &[2, 0], &[1]),
        Err(Error::Shape(_))
    ));
}

#[test]
fn sq_norm_of_neighbouring_slices_is_one_dispatch_plus_the_final_sum() {
    let ctx = kernels_test::context();
    let buf = ctx.zeros(100_000);
    // 100 neighbouring slices at odd offsets merge into one range.
    let views: Vec<_> = (0..100).map(|i| buf.slice(3 + i * 999, 999)).collect();
    let scratch = ctx.zeros(reduce::global_sq_norm_scratch_len(&ctx, &views).unwrap());
    let out = ctx.zeros(1);
    let ds = reduce::global_sq_norm(&ctx, &views, scratch.view(), out.view()).unwrap();
    assert_eq!(ds.len(), 2);
    let too_small = ctx.zeros(1);
    let r = reduce::global_sq_norm(&ctx, &views, too_small.view(), out.view());
    assert!(matches!(r, Err(Error::Shape(_))));
}
