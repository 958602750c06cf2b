//! Sum and mean over chosen axes. The axes are canonicalised to a view
//! `[outer, reduced, inner]` (size-1 dims dropped, adjacent dims of the same
//! kind merged), which covers every set of axes that is contiguous once size-1
//! dims are ignored: all elements, the last axis (rows), all but the last axis
//! (per-channel sums in NHWC), H and W (per image and channel), and so on.

use super::sum_partials;
use crate::error::{shape_err, Result};
use crate::gpu::{Access, BufView, Dispatch, GpuContext, Grid, Kernel, KernelSpec, Work};
use crate::kernels::elementwise::{ELEM_F32, ELEM_VEC4};

const PARTIALS_WGSL: &str = include_str!("../../../shaders/reduce_partials.wgsl");
const PARTIALS_BINDINGS: &[Access] = &[Access::Read, Access::ReadWrite, Access::Uniform];
/// Pass 1 as (one element, a vec4 of `inner` elements) per invocation.
const PARTIALS: [Kernel<Params>; 2] = [
    Kernel::portable(
        "reduce_partials",
        &[ELEM_F32, PARTIALS_WGSL],
        "reduce_partials",
        PARTIALS_BINDINGS,
    ),
    Kernel::portable(
        "reduce_partials_vec4",
        &[ELEM_VEC4, PARTIALS_WGSL],
        "reduce_partials",
        PARTIALS_BINDINGS,
    ),
];

/// Pass 1 aims for this many invocations (outputs × splits): enough to fill a
/// large GPU while each still adds a run of ≈ elements / 65536 terms.
const TARGET_INVOCATIONS: usize = 65536;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    Sum,
    Mean,
}

/// A planned sum or mean: the canonical view and how pass 1 splits it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reduction {
    pub op: ReduceOp,
    pub outer: usize,
    pub reduced: usize,
    pub inner: usize,
    /// Pass 1 splits each output's `reduced` rows into `splits` runs of `rows_per_split`.
    pub splits: usize,
    pub rows_per_split: usize,
}

crate::gpu_params! {
    struct Params {
        outer: u32,
        reduced: u32,
        inner: u32,
        splits: u32,
        rows_per_split: u32,
        scale: f32,
    }
}

pub(super) fn kernels() -> Vec<KernelSpec> {
    PARTIALS.iter().map(|k| k.spec()).collect()
}

impl Reduction {
    /// Plans `op` over `axes` of a tensor of shape `dims` (1 to 4 dims, row-major).
    /// The kept dims, in order, are the output's shape. Errors when the axes
    /// are out of range or repeated, a dim is 0, or the reduced dims are not
    /// contiguous once size-1 dims are ignored (reduce in two calls then).
    pub fn new(op: ReduceOp, dims: &[usize], axes: &[usize]) -> Result<Reduction> {
        if dims.is_empty() || dims.len() > 4 {
            return shape_err(format!("reduce: a tensor of 1 to 4 dims, got {dims:?}"));
        }
        if dims.contains(&0) {
            return shape_err(format!("reduce: dims {dims:?} hold no elements"));
        }
        let mut reduced_flags = [false; 4];
        for &a in axes {
            if a >= dims.len() || reduced_flags[a] {
                return shape_err(format!(
                    "reduce: axes {axes:?} must be distinct and below {} for dims {dims:?}",
                    dims.len()
                ));
            }
            reduced_flags[a] = true;
        }
        // Blocks of (product, reduced?) after dropping size-1 dims and merging neighbours.
        let mut blocks: Vec<(usize, bool)> = Vec::new();
        for (&d, &r) in dims.iter().zip(&reduced_flags) {
            match blocks.last_mut() {
                _ if d == 1 => {}
                Some((size, kind)) if *kind == r => *size *= d,
                _ => blocks.push((d, r)),
            }
        }
        let reduced_blocks = blocks.iter().filter(|b| b.1).count();
        if reduced_blocks > 1 {
            return shape_err(format!(
                "reduce: axes {axes:?} of dims {dims:?} are not contiguous (ignoring size-1 dims); reduce in two calls"
            ));
        }
        let (mut outer, mut reduced, mut inner) = (1, 1, 1);
        let mut seen_reduced = false;
        for (size, r) in blocks {
            if r {
                reduced = size;
                seen_reduced = true;
            } else if seen_reduced {
                inner *= size;
            } else {
                outer *= size;
            }
        }
        let outputs = outer * inner / vector_width(inner);
        let splits = TARGET_INVOCATIONS.div_ceil(outputs).clamp(1, reduced);
        let rows_per_split = reduced.div_ceil(splits);
        Ok(Reduction {
            op,
            outer,
            reduced,
            inner,
            splits: reduced.div_ceil(rows_per_split),
            rows_per_split,
        })
    }

    /// Elements of the result (the kept dims' product).
    pub fn out_len(&self) -> usize {
        self.outer * self.inner
    }

    pub fn in_len(&self) -> usize {
        self.outer * self.reduced * self.inner
    }

    /// Scratch elements pass 1 needs (0 when one pass suffices).
    pub fn scratch_len(&self) -> usize {
        if self.splits > 1 {
            self.splits * self.out_len()
        } else {
            0
        }
    }

    fn scale(&self) -> f32 {
        match self.op {
            ReduceOp::Sum => 1.0,
            ReduceOp::Mean => (1.0 / self.reduced as f64) as f32,
        }
    }

    /// The dispatches computing `y` from `x` (one, or two with `scratch`).
    pub fn dispatches(
        &self,
        ctx: &GpuContext,
        x: BufView<'_>,
        scratch: BufView<'_>,
        y: BufView<'_>,
    ) -> Result<Vec<Dispatch>> {
        if x.len != self.in_len() || y.len != self.out_len() {
            return shape_err(format!(
                "reduce: input of {} and output of {} elements, the plan [{}, {}, {}] needs {} and {}",
                x.len,
                y.len,
                self.outer,
                self.reduced,
                self.inner,
                self.in_len(),
                self.out_len()
            ));
        }
        let need = self.scratch_len();
        if scratch.len < need {
            return shape_err(format!("reduce: scratch holds {} elements, needs {need}", scratch.len));
        }
        let v = vector_width(self.inner);
        let one_pass = self.splits == 1;
        let params = Params {
            outer: self.outer as u32,
            reduced: self.reduced as u32,
            inner: (self.inner / v) as u32,
            splits: self.splits as u32,
            rows_per_split: self.rows_per_split as u32,
            scale: if one_pass { self.scale() } else { 1.0 },
        };
        let out = if one_pass { y } else { BufView { len: need, ..scratch } };
        let invocations = self.splits * self.out_len() / v;
        let pass1 = ctx.dispatch(
            &PARTIALS[(v == 4) as usize],
            &[],
            &[x, out],
            &params,
            Grid::Invocations(invocations),
        )?;
        let pass1 = pass1.with_work(Work::f32s(x.len + out.len));
        if one_pass {
            return Ok(vec![pass1]);
        }
        let pass2 = sum_partials(ctx, out, self.splits, y, self.scale())?;
        Ok(vec![pass1, pass2])
    }
}

/// Elements per pass-1 invocation: a vec4 along `inner` when it divides by 4.
fn vector_width(inner: usize) -> usize {
    if inner.is_multiple_of(4) {
        4
    } else {
        1
    }
}

/// `y = Σ x` over `axes` of `x` viewed as `dims`; see [`Reduction::new`] for the
/// axes allowed and [`Reduction::scratch_len`] for `scratch`.
pub fn sum(
    ctx: &GpuContext,
    x: BufView<'_>,
    dims: &[usize],
    axes: &[usize],
    scratch: BufView<'_>,
    y: BufView<'_>,
) -> Result<Vec<Dispatch>> {
    Reduction::new(ReduceOp::Sum, dims, axes)?.dispatches(ctx, x, scratch, y)
}

/// `y = mean x` over `axes`; as [`sum`].
pub fn mean(
    ctx: &GpuContext,
    x: BufView<'_>,
    dims: &[usize],
    axes: &[usize],
    scratch: BufView<'_>,
    y: BufView<'_>,
) -> Result<Vec<Dispatch>> {
    Reduction::new(ReduceOp::Mean, dims, axes)?.dispatches(ctx, x, scratch, y)
}
