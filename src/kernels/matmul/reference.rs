//! CPU reference for the batched matmul: f32 data, f64 accumulation.
//!
//! Backward of `C = alpha·op(A)·op(B) + beta·C` with upstream gradient `dC`:
//! `d op(A) = alpha·dC·op(B)ᵀ` and `d op(B) = alpha·op(A)ᵀ·dC`, which are the
//! same op with other transposes ([`grad_a_shape`], [`grad_b_shape`]).

use super::MatmulShape;

/// `c[b] = alpha * op(a[b]) · op(b[b]) + beta * c[b]` for every batch `b`; `c` is
/// updated in place. With `beta == 0` the old `c` is not read (BLAS convention).
pub fn matmul(s: &MatmulShape, alpha: f32, beta: f32, a: &[f32], b: &[f32], c: &mut [f32]) {
    for bi in 0..s.batch {
        let (a0, b0, c0) = (bi * s.batch_stride_a, bi * s.batch_stride_b, bi * s.batch_stride_c);
        for i in 0..s.m {
            for j in 0..s.n {
                let mut acc = 0.0f64;
                for kk in 0..s.k {
                    acc += a[a0 + s.a_index(i, kk)] as f64 * b[b0 + s.b_index(kk, j)] as f64;
                }
                let out = &mut c[c0 + i * s.n + j];
                let old = if beta == 0.0 { 0.0 } else { beta as f64 * *out as f64 };
                *out = (alpha as f64 * acc + old) as f32;
            }
        }
    }
}

/// The shape of `dA += alpha·dC·op(B)ᵀ` (or `alpha·op(B)·dCᵀ` when A is transposed)
/// as a matmul of (dC, B) or (B, dC) writing a tensor laid out like A.
/// Returns the shape and whether the operands are (B, dC) instead of (dC, B).
pub fn grad_a_shape(s: &MatmulShape) -> (MatmulShape, bool) {
    if !s.trans_a {
        // dA[M,K] = dC[M,N] · op(B)ᵀ; op(B)ᵀ is B as stored with the transpose flipped.
        let g = MatmulShape::new(s.batch, s.m, s.n, s.k).transposes(false, !s.trans_b);
        (
            g.batch_strides(s.batch_stride_c, s.batch_stride_b, s.batch_stride_a),
            false,
        )
    } else {
        // dA stored [K,M] = (dC·op(B)ᵀ)ᵀ = op(B)·dCᵀ.
        let g = MatmulShape::new(s.batch, s.k, s.n, s.m).transposes(s.trans_b, true);
        (
            g.batch_strides(s.batch_stride_b, s.batch_stride_c, s.batch_stride_a),
            true,
        )
    }
}

/// The shape of `dB += alpha·op(A)ᵀ·dC` (or `alpha·dCᵀ·op(A)` when B is transposed).
/// Returns the shape and whether the operands are (dC, A) instead of (A, dC).
pub fn grad_b_shape(s: &MatmulShape) -> (MatmulShape, bool) {
    if !s.trans_b {
        // dB[K,N] = op(A)ᵀ · dC[M,N].
        let g = MatmulShape::new(s.batch, s.k, s.m, s.n).transposes(!s.trans_a, false);
        (
            g.batch_strides(s.batch_stride_a, s.batch_stride_c, s.batch_stride_b),
            false,
        )
    } else {
        // dB stored [N,K] = (op(A)ᵀ·dC)ᵀ = dCᵀ·op(A).
        let g = MatmulShape::new(s.batch, s.n, s.m, s.k).transposes(true, s.trans_a);
        (
            g.batch_strides(s.batch_stride_c, s.batch_stride_a, s.batch_stride_b),
            true,
        )
    }
}

/// Gradients of `loss(C)` w.r.t. A and B given `dc = dloss/dC` (for `beta == 0`),
/// each computed as a matmul with transposes. With broadcast (stride 0) operands
/// the per-batch gradients are summed, as `beta = 1` accumulation does.
pub fn matmul_backward(s: &MatmulShape, alpha: f32, a: &[f32], b: &[f32], dc: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let mut da = vec![0.0f32; a.len()];
    let mut db = vec![0.0f32; b.len()];
    let (ga, swap_a) = grad_a_shape(s);
    let (gb, swap_b) = grad_b_shape(s);
    // Batch by batch with beta = 1, so broadcast operands accumulate their gradient.
    for bi in 0..s.batch {
        let one = |g: &MatmulShape| MatmulShape { batch: 1, ..*g };
        let (sa, sb, sc) = (bi * s.batch_stride_a, bi * s.batch_stride_b, bi * s.batch_stride_c);
        let dci = &dc[sc..];
        if swap_a {
            matmul(&one(&ga), alpha, 1.0, &b[sb..], dci, &mut da[sa..]);
        } else {
            matmul(&one(&ga), alpha, 1.0, dci, &b[sb..], &mut da[sa..]);
        }
        if swap_b {
            matmul(&one(&gb), alpha, 1.0, dci, &a[sa..], &mut db[sb..]);
        } else {
            matmul(&one(&gb), alpha, 1.0, &a[sa..], dci, &mut db[sb..]);
        }
    }
    (da, db)
}
