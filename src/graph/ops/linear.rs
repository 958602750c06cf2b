//! The fully connected layer of the MLP models: `y = x · w + b` per pixel
//! (the Ladder VAE's tensors are `[N, 1, 1, F]`, one feature vector per image),
//! and its backward: dx = dy · wᵀ, dw = xᵀ · dy, db = Σ dy over the rows.
//! Kernels: `crate::kernels::matmul` (packed where the adapter has 8-lane
//! subgroups, else register-tiled), `crate::kernels::broadcast` for the bias,
//! `crate::kernels::reduce::sum_partials` for db.

use super::{nhwc_of, OpRule};
use crate::error::{shape_err, Result};
use crate::gpu::{BufView, DType, Dispatch};
use crate::graph::autodiff::Backward;
use crate::graph::executor::cpu::CpuCall;
use crate::graph::executor::{BindingSplit, LowerCall, Part, Unit};
use crate::graph::ir::{Graph, Node, TensorId};
use crate::graph::ops::Conv2dBackwardBias;
use crate::kernels::broadcast::broadcast_batch;
use crate::kernels::elementwise::{copy_channels, ChannelRange, CopyMode};
use crate::kernels::matmul::{self, reference, MatmulPath, MatmulShape};
use crate::kernels::reduce::sum_partials;

/// in: x `[N, H, W, K]`, w `[K, M]`, [b `[M]`] → y `[N, H, W, M]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Linear {
    pub bias: bool,
}

/// in: dy `[.., M]`, w `[K, M]` → dx `[.., K]` = dy · wᵀ.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinearBackwardData;

/// in: dy `[.., M]`, x `[.., K]` → dw `[K, M]` = xᵀ · dy, and db `[M]` = Σ dy
/// over the rows when `bias`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinearBackwardWeight {
    pub bias: bool,
}

/// Rows (N·H·W) and channels of an NHWC shape.
fn rows_cols(s: &[usize]) -> (usize, usize) {
    let c = *s.last().unwrap_or(&1);
    (s.iter().product::<usize>() / c.max(1), c)
}

/// `c = op(a) · op(b) + beta · c` on the kernel `MatmulPath::best` picks, the
/// packed one with its operands packed into the node's workspace.
fn gemm(
    l: &LowerCall<'_>,
    s: &MatmulShape,
    beta: f32,
    a: BufView<'_>,
    b: BufView<'_>,
    c: BufView<'_>,
) -> Result<Vec<Dispatch>> {
    let path = MatmulPath::best(l.ctx, s);
    let scratch = (path == MatmulPath::Packed).then(|| l.scratch(matmul::packed_scratch_len(s)));
    path.dispatches(l.ctx, s, 1.0, beta, a, b, c, scratch)
}

impl Graph {
    /// `y = x · w + b` for each pixel of `x` (`[N, 1, 1, K]` in the MLP
    /// models); `w` is `[K, M]` (row-major, in × out), `b` is `[M]`.
    pub fn linear(&mut self, name: &str, x: TensorId, w: TensorId, b: Option<TensorId>) -> Result<TensorId> {
        let [n, h, wd, k] = nhwc_of(self, x, name)?;
        let m = match *self.shape(w) {
            [wk, m] if wk == k && m > 0 => m,
            ref s => {
                return shape_err(format!(
                    "{name}: weight {s:?} does not fit {k} input features (want [{k}, out])"
                ))
            }
        };
        if let Some(b) = b {
            if self.shape(b) != [m] {
                return shape_err(format!("{name}: bias {:?} is not [{m}]", self.shape(b)));
            }
        }
        let y = self.activation(name, vec![n, h, wd, m]);
        let mut inputs = vec![x, w];
        inputs.extend(b);
        self.node(Linear { bias: b.is_some() }, inputs, vec![y]);
        Ok(y)
    }
}

impl Linear {
    /// `y[rows, M] = x[rows, K] · w[K, M]`.
    fn shape(x: &[usize], w: &[usize]) -> MatmulShape {
        MatmulShape::new(1, rows_cols(x).0, w[0], w[1])
    }
}

impl OpRule for Linear {
    fn name(&self) -> &'static str {
        "linear"
    }

    fn backward(&self, b: &mut Backward<'_>) -> Result<()> {
        let (x, w, dy) = (b.input(0), b.input(1), b.dy());
        if b.wants(0) {
            let dx = b.grad_like(0);
            b.node(LinearBackwardData, vec![dy, w], vec![dx]);
            b.push(0, dx);
        }
        let want_bias = self.bias && b.wants(2);
        if b.wants(1) {
            // dw and db from one node (db is a sum of dy's rows beside dw's product).
            let dw = b.grad_like(1);
            let mut outs = vec![dw];
            if want_bias {
                outs.push(b.grad_like(2));
                b.push(2, outs[1]);
            }
            b.node(LinearBackwardWeight { bias: want_bias }, vec![dy, x], outs);
            b.push(1, dw);
        } else if want_bias {
            // Only the bias learns: db is the sum of dy over N, H, W, as a conv bias's is.
            let db = b.grad_like(2);
            b.node(Conv2dBackwardBias, vec![dy], vec![db]);
            b.push(2, db);
        }
        Ok(())
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        let s = Linear::shape(c.in_shape(0), c.in_shape(1));
        // y = 1 · x·w + 1 · b in f64, rounded once (as the GPU's fma epilogue).
        let (mut y, beta) = match self.bias {
            true => (c.input(2).repeat(s.m), 1.0),
            false => (vec![0.0; s.m * s.n], 0.0),
        };
        reference::matmul(&s, 1.0, beta, c.input(0), c.input(1), &mut y);
        Ok(vec![y])
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        let s = Linear::shape(l.in_shape(0), l.in_shape(1));
        let (x, w, y) = (l.input(0), l.input(1), l.output(0));
        if !self.bias {
            return gemm(l, &s, 0.0, x, w, y);
        }
        // The bias is broadcast into the output and the product added to it.
        // An f16 y would be rounded twice that way (the CPU rounds once), so
        // the sum is made in f32 in the side workspace (not the workspace the
        // packed operands are read from) and copied into y.
        let f16 = y.dtype != DType::F32;
        let acc = match f16 {
            true => BufView { len: y.len, ..l.side() },
            false => y,
        };
        let mut ds = vec![broadcast_batch(l.ctx, l.input(2), acc)?];
        ds.extend(gemm(l, &s, 1.0, x, w, acc)?);
        if f16 {
            let all = ChannelRange::all(s.n);
            ds.push(copy_channels(l.ctx, acc, all, y, all, CopyMode::Overwrite)?);
        }
        Ok(ds)
    }

    fn scratch_len(&self, g: &Graph, node: &Node) -> usize {
        matmul::packed_scratch_len(&Linear::shape(g.shape(node.inputs[0]), g.shape(node.inputs[1])))
    }

    fn side_len(&self, g: &Graph, node: &Node) -> usize {
        let y = &g.tensors[node.outputs[0]];
        if self.bias && y.dtype != DType::F32 {
            y.numel()
        } else {
            0
        }
    }

    /// Rows are independent; the weights and bias are bound whole.
    fn binding_split(&self, _: &Graph, node: &Node) -> Option<BindingSplit> {
        let mut inputs = vec![Part::Whole; node.inputs.len()];
        inputs[0] = Part::Cut;
        Some(BindingSplit::new(Unit::Pixels, inputs, vec![Part::Cut]))
    }

    fn model_flops(&self, g: &Graph, node: &Node) -> f64 {
        Linear::shape(g.shape(node.inputs[0]), g.shape(node.inputs[1])).flops()
    }
}

impl LinearBackwardData {
    /// `dx[rows, K] = dy[rows, M] · wᵀ`, w stored `[K, M]`.
    fn shape(dy: &[usize], w: &[usize]) -> MatmulShape {
        MatmulShape::new(1, rows_cols(dy).0, w[1], w[0]).transposes(false, true)
    }
}

impl OpRule for LinearBackwardData {
    fn name(&self) -> &'static str {
        "linear_backward_data"
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        let s = LinearBackwardData::shape(c.in_shape(0), c.in_shape(1));
        let mut dx = vec![0.0; s.m * s.n];
        reference::matmul(&s, 1.0, 0.0, c.input(0), c.input(1), &mut dx);
        Ok(vec![dx])
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        let s = LinearBackwardData::shape(l.in_shape(0), l.in_shape(1));
        gemm(l, &s, 0.0, l.input(0), l.input(1), l.output(0))
    }

    fn scratch_len(&self, g: &Graph, node: &Node) -> usize {
        matmul::packed_scratch_len(&LinearBackwardData::shape(
            g.shape(node.inputs[0]),
            g.shape(node.inputs[1]),
        ))
    }

    fn binding_split(&self, _: &Graph, _: &Node) -> Option<BindingSplit> {
        Some(BindingSplit::new(
            Unit::Pixels,
            vec![Part::Cut, Part::Whole],
            vec![Part::Cut],
        ))
    }

    fn model_flops(&self, g: &Graph, node: &Node) -> f64 {
        LinearBackwardData::shape(g.shape(node.inputs[0]), g.shape(node.inputs[1])).flops()
    }
}

impl LinearBackwardWeight {
    /// `dw[K, M] = xᵀ · dy`, x stored `[rows, K]`.
    fn shape(dy: &[usize], x: &[usize]) -> MatmulShape {
        let (rows, k) = rows_cols(x);
        MatmulShape::new(1, k, rows, rows_cols(dy).1).transposes(true, false)
    }
}

impl OpRule for LinearBackwardWeight {
    fn name(&self) -> &'static str {
        "linear_backward_weight"
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        let s = LinearBackwardWeight::shape(c.in_shape(0), c.in_shape(1));
        let dy = c.input(0);
        let mut dw = vec![0.0; s.m * s.n];
        reference::matmul(&s, 1.0, 0.0, c.input(1), dy, &mut dw);
        let mut outs = vec![dw];
        if self.bias {
            let mut db = vec![0f64; s.n];
            for (i, &g) in dy.iter().enumerate() {
                db[i % s.n] += g as f64;
            }
            outs.push(db.into_iter().map(|v| v as f32).collect());
        }
        Ok(outs)
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        let s = LinearBackwardWeight::shape(l.in_shape(0), l.in_shape(1));
        // A later slice of a split node adds its rows' product to dw.
        let beta = if l.accumulate() { 1.0 } else { 0.0 };
        let mut ds = gemm(l, &s, beta, l.input(1), l.input(0), l.output(0))?;
        if self.bias {
            // dy's rows are the partials of db: one sum per output channel.
            ds.push(sum_partials(l.ctx, l.input(0), s.k, l.output(1), 1.0)?);
        }
        Ok(ds)
    }

    fn scratch_len(&self, g: &Graph, node: &Node) -> usize {
        matmul::packed_scratch_len(&LinearBackwardWeight::shape(
            g.shape(node.inputs[0]),
            g.shape(node.inputs[1]),
        ))
    }

    /// dw adds each slice's product itself; db is summed over the slices.
    fn binding_split(&self, _: &Graph, _: &Node) -> Option<BindingSplit> {
        let mut outputs = vec![Part::Accumulate];
        if self.bias {
            outputs.push(Part::Sum);
        }
        Some(BindingSplit::new(Unit::Pixels, vec![Part::Cut, Part::Cut], outputs))
    }

    fn model_flops(&self, g: &Graph, node: &Node) -> f64 {
        LinearBackwardWeight::shape(g.shape(node.inputs[0]), g.shape(node.inputs[1])).flops()
    }
}
