//! Batched matmul `C[b] = alpha·op(A[b])·op(B[b]) + beta·C[b]`, op = identity or
//! transpose, row-major storage. A is `[M,K]` (`[K,M]` when transposed), B is
//! `[K,N]` (`[N,K]` when transposed), C is `[M,N]`. Batch strides are in
//! elements; 0 broadcasts an operand (shared weights). `beta = 1` accumulates
//! (gradients); with `beta = 0` the old C is never read.
//!
//! Backward is the same op with other transposes: see [`reference::grad_a_shape`].
//! Kernels, slowest and simplest first (llm.c style):
//! - v1 `shaders/matmul_naive.wgsl`: one output per invocation;
//! - v2 `shaders/matmul_tiled.wgsl`: 4x4 register blocks, portable;
//! - v3 `shaders/matmul_pack*.wgsl` + `shaders/matmul_packed.wgsl`: B (and A when
//!   transposed or K % 8 != 0) packed into zero-padded panels, 32x32 blocks per
//!   8-lane subgroup with broadcasts (the fast path on lavapipe, ~55-60% of the
//!   FMA ceiling at 1024³);
//! - `shaders/matmul_workgroup.wgsl`: GPU-shaped, 256 invocations with 4x4
//!   blocks each, operands staged through workgroup memory, no subgroups.
//!
//! [`MatmulPath::best`] picks one per shape: the GPU-shaped kernel with
//! `--kernels gpu`, else the fastest for the adapter (tuned once, cached).

mod cases;
mod choose;
mod codegen;
mod kernels;
pub mod reference;

pub use cases::{bench_cases, check};
pub use choose::MatmulPath;
pub use kernels::{
    all_kernels, matmul, matmul_naive, matmul_packed, matmul_tiled, matmul_workgroup, packed_scratch_len,
    packed_supported, MatmulDispatch,
};

use crate::error::{shape_err, Result};

/// Sizes, transposes and batch strides of one batched matmul.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulShape {
    pub batch: usize,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    /// A is stored `[K,M]` and used transposed.
    pub trans_a: bool,
    /// B is stored `[N,K]` and used transposed.
    pub trans_b: bool,
    /// Elements between consecutive batches of each tensor; 0 = broadcast.
    pub batch_stride_a: usize,
    pub batch_stride_b: usize,
    pub batch_stride_c: usize,
}

impl MatmulShape {
    /// `batch` independent, contiguous `[M,K]·[K,N]` products.
    pub fn new(batch: usize, m: usize, k: usize, n: usize) -> MatmulShape {
        MatmulShape {
            batch,
            m,
            k,
            n,
            trans_a: false,
            trans_b: false,
            batch_stride_a: m * k,
            batch_stride_b: k * n,
            batch_stride_c: m * n,
        }
    }

    pub fn transposes(mut self, trans_a: bool, trans_b: bool) -> MatmulShape {
        self.trans_a = trans_a;
        self.trans_b = trans_b;
        self
    }

    pub fn batch_strides(mut self, a: usize, b: usize, c: usize) -> MatmulShape {
        self.batch_stride_a = a;
        self.batch_stride_b = b;
        self.batch_stride_c = c;
        self
    }

    /// Offset of `op(A)[i, kk]` within one batch of A.
    pub fn a_index(&self, i: usize, kk: usize) -> usize {
        if self.trans_a {
            kk * self.m + i
        } else {
            i * self.k + kk
        }
    }

    /// Offset of `op(B)[kk, j]` within one batch of B.
    pub fn b_index(&self, kk: usize, j: usize) -> usize {
        if self.trans_b {
            j * self.k + kk
        } else {
            kk * self.n + j
        }
    }

    /// Multiply-adds count as 2 FLOPs; the alpha/beta epilogue is not counted.
    pub fn flops(&self) -> f64 {
        2.0 * (self.batch * self.m * self.n * self.k) as f64
    }

    /// Bytes a perfect kernel moves: each distinct input element read once, C
    /// written once (and read once when `beta != 0`).
    pub fn bytes(&self, beta: f32) -> f64 {
        let distinct = |stride: usize, len: usize| if stride == 0 { len } else { self.batch * len };
        let a = distinct(self.batch_stride_a, self.m * self.k);
        let b = distinct(self.batch_stride_b, self.k * self.n);
        let c = self.batch * self.m * self.n * if beta == 0.0 { 1 } else { 2 };
        4.0 * (a + b + c) as f64
    }

    /// Elements each tensor's buffer must hold: (A, B, C).
    pub fn lens(&self) -> (usize, usize, usize) {
        let last = self.batch.saturating_sub(1);
        (
            last * self.batch_stride_a + self.m * self.k,
            last * self.batch_stride_b + self.k * self.n,
            last * self.batch_stride_c + self.m * self.n,
        )
    }

    /// "4x17x33x65 (AᵀB, A broadcast)"-style label for tables.
    pub fn label(&self) -> String {
        let op = match (self.trans_a, self.trans_b) {
            (false, false) => "A·B",
            (true, false) => "Aᵀ·B",
            (false, true) => "A·Bᵀ",
            (true, true) => "Aᵀ·Bᵀ",
        };
        let mut s = format!("{}x{}x{}x{} {op}", self.batch, self.m, self.k, self.n);
        if self.batch > 1 && self.batch_stride_a == 0 {
            s += " bcastA";
        }
        if self.batch > 1 && self.batch_stride_b == 0 {
            s += " bcastB";
        }
        s
    }

    /// Checks the sizes against the buffers; every index a kernel computes is in
    /// range once this passes (the unchecked kernels rely on it).
    pub fn validate(&self, a_len: usize, b_len: usize, c_len: usize) -> Result<()> {
        let MatmulShape { batch, m, k, n, .. } = *self;
        if batch == 0 || m == 0 || k == 0 || n == 0 {
            return shape_err(format!(
                "matmul: batch, M, K and N must all be at least 1, got batch={batch} M={m} K={k} N={n}"
            ));
        }
        if batch > 1 && self.batch_stride_c < m * n {
            return shape_err(format!(
                "matmul: C's batch stride {} is smaller than one [M,N] = [{m},{n}] output, so batches would overlap",
                self.batch_stride_c
            ));
        }
        let (need_a, need_b, need_c) = self.lens();
        let fits_u32 = |x: usize| x <= u32::MAX as usize;
        if ![
            need_a,
            need_b,
            need_c,
            self.batch_stride_a,
            self.batch_stride_b,
            self.batch_stride_c,
        ]
        .into_iter()
        .all(fits_u32)
        {
            return shape_err("matmul: tensor sizes must fit 32-bit indices");
        }
        for (name, need, have, dims) in [
            ("A", need_a, a_len, if self.trans_a { [k, m] } else { [m, k] }),
            ("B", need_b, b_len, if self.trans_b { [n, k] } else { [k, n] }),
            ("C", need_c, c_len, [m, n]),
        ] {
            if have < need {
                return shape_err(format!(
                    "matmul: {name} needs {need} elements ({batch} batches of {dims:?} with the given batch stride), \
                     its buffer view has {have}"
                ));
            }
        }
        Ok(())
    }
}
