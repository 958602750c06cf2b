//! The conv's shape, its validation and its FLOP/byte counts.

use super::pad::Padding;
use super::tiled::CatPass;
use super::InputLike;
use crate::error::{shape_err, Result};
use crate::gpu::{BufView, Dispatch, Work};

/// A stride-1, "same"-padded conv: x `[n,h,w,cin]`, w `[cout,k,k,cin]`, y `[n,h,w,cout]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dShape {
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub cin: usize,
    pub cout: usize,
    /// Kernel size: 1 or 3.
    pub k: usize,
    /// Apply exact GELU to x as it is loaded (and its derivative in dx).
    pub gelu_input: bool,
    /// Add `bias[cout]` in the epilogue.
    pub bias: bool,
    /// Add `residual[n,h,w,cout]` in the epilogue.
    pub residual: bool,
    /// `Some(c1)`: x is `cat[x1, x2]` along channels, read where it lies: x1
    /// `[n,h,w,c1]` holds input channels `[0, c1)` and x2 `[n,h,w,cin-c1]` the
    /// rest (dx writes the two gradients apart the same way). The weights stay
    /// one `[cout,k,k,cin]` tensor, so the conv is the one over the concatenation.
    pub cat: Option<usize>,
}

/// Which computation of the conv a list of dispatches performs, for [`Conv2dShape::state_work`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Pass {
    Forward,
    /// With `act`, gelu(x) is written beside dx.
    BackwardInput {
        act: bool,
    },
    /// `reduction_splits` partial sums per weight (1 when the kernel writes dw and db itself).
    BackwardWeight {
        accumulate: bool,
        reduction_splits: usize,
    },
    BackwardBias {
        accumulate: bool,
    },
}

/// Pixels (N·H·W) up to which a conv counts as over few pixels (see
/// [`Conv2dShape::few_pixels`]): there the tiled forward reads ragged weights
/// in place instead of copying them (a copy is one more dispatch, as costly as
/// a conv over a few hundred pixels on lavapipe), and the simple dw walks
/// every pixel per invocation instead of a workgroup per weight (so at most
/// this many loop iterations, well inside llvmpipe's 65535 per invocation).
pub const FEW_PIXELS: usize = 1024;

impl Conv2dShape {
    pub fn new(n: usize, h: usize, w: usize, cin: usize, cout: usize, k: usize) -> Conv2dShape {
        Conv2dShape {
            n,
            h,
            w,
            cin,
            cout,
            k,
            gelu_input: false,
            bias: false,
            residual: false,
            cat: None,
        }
    }

    /// The same conv over `cat[x1, x2]` read from two tensors, x1 holding the first `c1` channels.
    pub fn with_cat(mut self, c1: usize) -> Conv2dShape {
        self.cat = Some(c1);
        self
    }

    /// Input channels of each source: `[cin]`, or `[c1, cin - c1]` for a cat.
    pub fn sources(&self) -> Vec<usize> {
        match self.cat {
            None => vec![self.cin],
            Some(c1) => vec![c1, self.cin - c1],
        }
    }

    /// Channels of the first source (all of x without a cat).
    pub fn cat_split(&self) -> usize {
        self.cat.unwrap_or(self.cin)
    }

    /// Elements of the first source.
    pub fn x1_len(&self) -> usize {
        self.pixels() * self.cat_split()
    }

    /// Elements of the second source (0 without a cat).
    pub fn x2_len(&self) -> usize {
        self.x_len() - self.x1_len()
    }

    /// Where act(x2) starts in an `act` buffer of the weight gradient: after
    /// act(x1), at the next 256-byte boundary (the largest storage offset
    /// alignment an adapter may ask), so each half binds on its own.
    pub fn act2_offset(&self) -> usize {
        self.x1_len().next_multiple_of(64)
    }

    /// Elements of the `act` buffer the weight gradient takes: act(x), or for
    /// a cat act(x1) and act(x2) at [`Conv2dShape::act2_offset`].
    pub fn act_len(&self) -> usize {
        match self.cat {
            None => self.x_len(),
            Some(_) => self.act2_offset() + self.x2_len(),
        }
    }

    pub fn with_gelu(mut self, on: bool) -> Conv2dShape {
        self.gelu_input = on;
        self
    }

    pub fn with_bias(mut self, on: bool) -> Conv2dShape {
        self.bias = on;
        self
    }

    pub fn with_residual(mut self, on: bool) -> Conv2dShape {
        self.residual = on;
        self
    }

    pub fn pixels(&self) -> usize {
        self.n * self.h * self.w
    }

    /// Whether the conv is over at most [`FEW_PIXELS`] pixels, where a
    /// dispatch's fixed cost is as large as the work that grows with the pixels.
    pub fn few_pixels(&self) -> bool {
        self.pixels() <= FEW_PIXELS
    }

    pub fn x_len(&self) -> usize {
        self.pixels() * self.cin
    }

    pub fn w_len(&self) -> usize {
        self.cout * self.k * self.k * self.cin
    }

    pub fn y_len(&self) -> usize {
        self.pixels() * self.cout
    }

    /// Multiply-adds of one conv (forward, dx and dw each do this many), times 2.
    pub fn flops(&self) -> f64 {
        2.0 * self.pixels() as f64 * (self.cout * self.k * self.k * self.cin) as f64
    }

    /// Bytes a perfect forward moves: x, w, bias, residual read once, y written once.
    pub fn bytes(&self) -> f64 {
        let mut n = self.x_len() + self.w_len() + self.y_len();
        if self.bias {
            n += self.cout;
        }
        if self.residual {
            n += self.y_len();
        }
        4.0 * n as f64
    }

    /// FLOPs of dx + dw + db together.
    pub fn backward_flops(&self) -> f64 {
        2.0 * self.flops() + self.y_len() as f64
    }

    /// Bytes a perfect dx + dw + db moves: x, w, dy read, dx, dw, db written.
    pub fn backward_bytes(&self) -> f64 {
        4.0 * (2 * self.x_len() + 2 * self.w_len() + self.y_len() + self.cout) as f64
    }

    /// States the work of each dispatch of `pass` (the convention of [`Work`]):
    /// the conv's multiply-adds go to its main kernel, so the conv kernels of a
    /// step add up to the graph's model FLOPs; the helper passes (the flipped
    /// weights, the sums of per-reduction-split partials, the bias reduction) move bytes
    /// only. A dispatch whose own op stated its work (the GELU pass) keeps it.
    pub(super) fn state_work(&self, pass: Pass, ds: Vec<Dispatch>) -> Vec<Dispatch> {
        let f32s = |n: usize| 4.0 * n as f64;
        let keep = |accumulate: bool| 1 + accumulate as usize;
        let reduction_split_sums = ds
            .iter()
            .filter(|d| d.kernel.starts_with("conv2d_sum_reduction_splits"))
            .count();
        let mut sums = 0;
        ds.into_iter()
            .map(|d| {
                if d.has_stated_work() {
                    return d;
                }
                let work = match (d.kernel, pass) {
                    ("conv2d_flip_transpose", _) => Work::f32s(self.w_len() + super::tiled::flipped_len(self)),
                    (
                        "conv2d_sum_reduction_splits",
                        Pass::BackwardWeight {
                            accumulate,
                            reduction_splits,
                        },
                    ) => {
                        // dw first, then db: `reduction_splits` partial rows in, the gradient out.
                        let total = if sums == 0 { self.w_len() } else { self.cout };
                        sums += 1;
                        Work::f32s(reduction_splits * total + keep(accumulate) * total)
                    }
                    (
                        "conv2d_sum_reduction_splits_pair",
                        Pass::BackwardWeight {
                            accumulate,
                            reduction_splits,
                        },
                    ) => {
                        // dw and db together.
                        let total = self.w_len() + self.cout;
                        Work::f32s(reduction_splits * total + keep(accumulate) * total)
                    }
                    (
                        "conv2d_backward_bias",
                        Pass::BackwardWeight { accumulate, .. } | Pass::BackwardBias { accumulate },
                    ) => Work::f32s(self.y_len() + keep(accumulate) * self.cout),
                    (_, Pass::Forward) => Work::new(self.flops(), self.bytes()),
                    (_, Pass::BackwardInput { act }) => {
                        // dy, w, x (for gelu') read; dx and act = gelu(x) written.
                        let x = if self.gelu_input { self.x_len() } else { 0 };
                        let act = if act { self.x_len() } else { 0 };
                        Work::new(self.flops(), f32s(self.y_len() + self.w_len() + x + self.x_len() + act))
                    }
                    (
                        kernel,
                        Pass::BackwardWeight {
                            accumulate,
                            reduction_splits,
                        },
                    ) => {
                        // Per-split partials of dw and db when sums follow; else the tiled
                        // kernel writes dw and db in place, the simple one dw alone.
                        let out = if reduction_split_sums > 0 {
                            reduction_splits * (self.w_len() + self.cout)
                        } else if kernel.starts_with("conv2d_tiled_backward_weight") {
                            self.w_len() + self.cout
                        } else {
                            keep(accumulate) * self.w_len()
                        };
                        Work::new(self.flops(), f32s(self.x_len() + self.y_len() + out))
                    }
                    (_, Pass::BackwardBias { accumulate }) => Work::f32s(self.y_len() + keep(accumulate) * self.cout),
                };
                d.with_work(work)
            })
            .collect()
    }

    /// Elements of the scratch buffer [`super::forward`] needs: room for
    /// w and x with zero-padded input channels (a ragged Cin, or a cat the
    /// tiled forward does not read in place); 0 for most convs. Each length
    /// here counts the padded path's copies, which include the tiled path's.
    pub fn forward_scratch_len(&self) -> usize {
        Padding::of(self, CatPass::Forward, true).scratch_end(self, 0)
    }

    /// Elements of the scratch buffer [`super::backward_input`] needs:
    /// the flipped, transposed weights (Cout padded to whole vec4s), and dy with
    /// zero-padded channels for a ragged Cout.
    pub fn backward_input_scratch_len(&self) -> usize {
        let flipped = super::tiled::flipped_len(self);
        Padding::of(self, CatPass::BackwardInput, true).scratch_end(self, flipped)
    }

    /// Elements of the scratch buffer [`super::backward_weight`] needs:
    /// the per-reduction-split partial sums, and x and dy with zero-padded
    /// channels (ragged counts, a cat the tiled dw does not read in place).
    pub fn backward_weight_scratch_len(&self) -> usize {
        let partials = super::tiled::reduction_splits(self) * (self.w_len() + self.cout);
        let tiled = Padding::of(self, CatPass::BackwardWeight, true).scratch_end(self, partials);
        tiled.max(super::workgroup::scratch_len(self))
    }

    /// The rules every kernel relies on (the tiled kernels index without bounds checks).
    pub fn validate(&self) -> Result<()> {
        if self.k != 1 && self.k != 3 {
            return shape_err(format!("conv2d: kernel size must be 1 or 3, got {}", self.k));
        }
        if [self.n, self.h, self.w, self.cin, self.cout].contains(&0) {
            return shape_err(format!("conv2d: every dimension must be at least 1, got {self:?}"));
        }
        // llvmpipe ends an invocation after 65535 loop iterations; the per-element
        // kernels loop k*k*channels times.
        if self.k * self.k * self.cin.max(self.cout) > 32 * 1024 {
            return shape_err(format!(
                "conv2d: k*k*channels = {} exceeds 32768 (too many for one invocation's loop)",
                self.k * self.k * self.cin.max(self.cout)
            ));
        }
        let most_pixels = super::simple::REDUCTION_WORKGROUP * 65535;
        if self.pixels() > most_pixels {
            return shape_err(format!(
                "conv2d: {} pixels exceed the {most_pixels} a gradient reduction covers",
                self.pixels()
            ));
        }
        if let Some(c1) = self.cat {
            if c1 == 0 || c1 >= self.cin {
                return shape_err(format!(
                    "conv2d: a cat input needs channels in both sources, got {c1} of {}",
                    self.cin
                ));
            }
        }
        let largest = self.x_len().max(self.y_len()).max(self.w_len()) as u64;
        if largest >= u32::MAX as u64 / 2 {
            return shape_err(format!(
                "conv2d: a tensor of {largest} elements is too large for 32-bit indexing"
            ));
        }
        Ok(())
    }

    /// A tensor shaped like x (x itself, dx, an addend): one buffer, or two for a cat.
    pub(super) fn check_input_like(&self, name: &str, v: &InputLike<'_>) -> Result<()> {
        match (self.cat, v.second) {
            (None, None) => expect_len(name, &v.first, self.x_len()),
            (Some(_), Some(second)) => {
                expect_len(&format!("{name} (first source)"), &v.first, self.x1_len())?;
                expect_len(&format!("{name} (second source)"), &second, self.x2_len())
            }
            (None, Some(_)) => shape_err(format!("conv2d: {name} has two sources, the shape has no cat")),
            (Some(_), None) => shape_err(format!("conv2d: the shape reads a cat, {name} has one source")),
        }
    }

    pub(super) fn check_forward(
        &self,
        x: &InputLike<'_>,
        w: &BufView<'_>,
        bias: Option<&BufView<'_>>,
        residual: Option<&BufView<'_>>,
        scratch: &BufView<'_>,
        y: &BufView<'_>,
    ) -> Result<()> {
        self.validate()?;
        self.check_input_like("x", x)?;
        expect_len("w", w, self.w_len())?;
        expect_len("y", y, self.y_len())?;
        expect_optional("bias", self.bias, bias, self.cout)?;
        expect_optional("residual", self.residual, residual, self.y_len())?;
        expect_at_least("scratch", scratch, self.forward_scratch_len())
    }

    pub(super) fn check_backward_input(
        &self,
        x: &InputLike<'_>,
        w: &BufView<'_>,
        dy: &BufView<'_>,
        scratch: &BufView<'_>,
        dx: &InputLike<'_>,
    ) -> Result<()> {
        self.validate()?;
        self.check_input_like("x", x)?;
        expect_len("w", w, self.w_len())?;
        expect_len("dy", dy, self.y_len())?;
        self.check_input_like("dx", dx)?;
        expect_at_least("scratch", scratch, self.backward_input_scratch_len())
    }

    pub(super) fn check_backward_weight(
        &self,
        x: &InputLike<'_>,
        dy: &BufView<'_>,
        scratch: &BufView<'_>,
        act: Option<&BufView<'_>>,
        dw: &BufView<'_>,
        db: Option<&BufView<'_>>,
    ) -> Result<()> {
        self.validate()?;
        self.check_input_like("x", x)?;
        expect_len("dy", dy, self.y_len())?;
        expect_len("dw", dw, self.w_len())?;
        if let Some(act) = act {
            expect_len("act", act, self.act_len())?;
        }
        if let Some(db) = db {
            expect_len("db", db, self.cout)?;
        }
        expect_at_least("scratch", scratch, self.backward_weight_scratch_len())
    }

    pub(super) fn check_backward_bias(&self, dy: &BufView<'_>, db: &BufView<'_>) -> Result<()> {
        self.validate()?;
        expect_len("dy", dy, self.y_len())?;
        expect_len("db", db, self.cout)
    }
}

fn expect_len(name: &str, v: &BufView<'_>, len: usize) -> Result<()> {
    if v.len != len {
        return shape_err(format!("conv2d: {name} has {} elements, the shape needs {len}", v.len));
    }
    Ok(())
}

fn expect_at_least(name: &str, v: &BufView<'_>, len: usize) -> Result<()> {
    if v.len < len {
        return shape_err(format!("conv2d: {name} has {} elements, needs at least {len}", v.len));
    }
    Ok(())
}

fn expect_optional(name: &str, wanted: bool, v: Option<&BufView<'_>>, len: usize) -> Result<()> {
    match (wanted, v) {
        (true, Some(v)) => expect_len(name, v, len),
        (false, None) => Ok(()),
        (true, None) => shape_err(format!("conv2d: the shape says {name}, but no {name} tensor was given")),
        (false, Some(_)) => shape_err(format!(
            "conv2d: a {name} tensor was given, but the shape has {name} off"
        )),
    }
}
