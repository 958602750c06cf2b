//! 2-D convolution, VDVAE's building block: kernel 1x1 or 3x3, stride 1, "same"
//! padding k/2, NHWC activations `x[N,H,W,Cin]`, OHWI weights `w[Cout,K,K,Cin]`.
//!
//! Forward: `y = conv(act(x), w) + bias + residual`, where `act` is the exact
//! (erf) GELU when `gelu_input` (VDVAE applies GELU before every conv) and the
//! identity otherwise; bias `[Cout]` and residual `[N,H,W,Cout]` are optional.
//! Backward: `dx = conv_transpose(dy, w) * act'(x)`, `dw = Σ_pixels dy ⊗ act(x)`
//! (shifted by the tap), `db = Σ_pixels dy`. The residual's gradient is `dy`
//! itself, which the graph routes without a kernel.
//!
//! Every kernel comes in three paths, each checked against `reference.rs`:
//! - simple (`shaders/conv2d_*.wgsl`): one invocation per output element, any shape;
//! - tiled (`codegen.rs`): generated straight-line WGSL, used when the adapter has
//!   subgroups of at least 8 lanes, for any channel counts: an operand whose
//!   channels are no multiple of 4 is read a pair or a channel per load, or
//!   copied with padded channels (`pad.rs`). See `codegen.rs` for why the
//!   kernels look the way they do.
//! - workgroup (`workgroup.rs`): implicit-GEMM kernels shaped for GPUs (256-invocation
//!   workgroups, operand tiles in workgroup memory, 4x4 outputs per invocation, no
//!   subgroup operations), any shape on any adapter; chosen by tuning or `--kernels gpu`.
//!
//! `dw`/`db` overwrite their outputs unless `accumulate` is set, in which case the
//! new gradient is added to what is there (gradient accumulation over micro-batches).
//!
//! Two sources (`Conv2dShape::cat`): x may be `cat[x1, x2]` along channels, read
//! where the two tensors lie (an [`InputLike`] of two buffers) instead of
//! concatenated first; dx then writes its two halves apart, and the weights stay
//! one tensor over all input channels. The forward and dw kernels sum in the
//! same order as over a concatenated x, so results are bit-identical to it.

mod cases;
mod choose;
mod codegen;
mod flip_many;
mod pad;
pub mod reference;
mod shape;
mod simple;
pub mod sweep;
mod tiled;
mod workgroup;

pub use cases::{bench_cases, check, checked_shapes};
pub use choose::ConvPass;
pub use flip_many::{flip_table, flip_transpose_many, FlipJob};
use pad::Padding;
pub use shape::Conv2dShape;
use shape::Pass;

use crate::error::Result;
use crate::gpu::tune::KernelSet;
use crate::gpu::{BufView, Dispatch, GpuContext, KernelSpec};

/// Every kernel of the family, each generated tile variant included, for the contract test.
pub fn all_kernels() -> Vec<KernelSpec> {
    let mut all = simple::kernels();
    all.extend(tiled::kernels());
    all.extend(pad::kernels());
    all.extend(flip_many::kernels());
    all.extend(workgroup::kernels());
    all
}

/// A tensor laid out like the conv's input x (x itself, dx, an addend of dx):
/// one buffer, or for a conv over `cat[x1, x2]` (`Conv2dShape::cat`) the two
/// tensors, channels `[0, c1)` in `first` and the rest in `second`.
#[derive(Clone, Copy)]
pub struct InputLike<'a> {
    pub first: BufView<'a>,
    pub second: Option<BufView<'a>>,
}

impl<'a> InputLike<'a> {
    /// `cat[first, second]` along channels.
    pub fn cat(first: BufView<'a>, second: BufView<'a>) -> InputLike<'a> {
        InputLike {
            first,
            second: Some(second),
        }
    }

    /// The second source, or the first when there is one only (bound in
    /// place of an absent binding; the kernels then never touch it).
    fn second_or_first(&self) -> BufView<'a> {
        self.second.unwrap_or(self.first)
    }
}

impl<'a> From<BufView<'a>> for InputLike<'a> {
    fn from(first: BufView<'a>) -> InputLike<'a> {
        InputLike { first, second: None }
    }
}

/// Which implementation runs a pass: each pass's function takes one, usually
/// [`Path::best`]'s for the adapter and shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// One invocation per output element; any shape, any adapter.
    Simple,
    /// Register-tiled, subgroup-broadcast kernels (see `codegen.rs`), each
    /// ragged operand read in place or copied padded as `pad.rs` rules.
    Tiled,
    /// The tiled kernels over padded copies of every ragged operand (whole
    /// vec4s only, one copy dispatch per such operand); a path of its own
    /// only where it copies more than [`Path::Tiled`]. Tuning times both.
    Padded,
    /// Implicit-GEMM kernels for GPUs (see `workgroup.rs`); any shape, any adapter
    /// with 256-invocation workgroups; picked by tuning or `--kernels gpu`.
    Workgroup,
}

impl Path {
    /// Every path, for forcing each in turn (tests, benchmarks, tuning).
    pub const ALL: [Path; 4] = [Path::Simple, Path::Tiled, Path::Padded, Path::Workgroup];

    /// The name in tuning choices and check labels.
    pub fn name(self) -> &'static str {
        match self {
            Path::Simple => "simple",
            Path::Tiled => "tiled",
            Path::Padded => "padded",
            Path::Workgroup => "workgroup",
        }
    }

    /// Whether this adapter runs the tiled kernels (subgroups of at least 8 lanes).
    pub fn tiled_usable(ctx: &GpuContext) -> bool {
        tiled::usable(ctx)
    }

    /// Whether this path runs `pass` of `s` on this adapter.
    pub fn runs(self, ctx: &GpuContext, s: &Conv2dShape, pass: ConvPass) -> bool {
        match self {
            Path::Simple => true,
            // Any channel counts; the padded copies must fit a binding, and dx
            // over a cat must be one its tile writes. The padded path is one
            // of its own only where it copies more than the tiled one.
            Path::Tiled | Path::Padded => {
                let (pass, copy_ragged) = (pass.cat_pass(), self == Path::Padded);
                tiled::usable(ctx)
                    && tiled::cat_fits(ctx, s, pass)
                    && (!copy_ragged || Padding::padded_differs(s, pass))
                    && Padding::of(s, pass, copy_ragged).fits(ctx, s)
            }
            Path::Workgroup => workgroup::usable(ctx).is_ok(),
        }
    }

    /// The paths worth timing for `pass` of `s` here: every one that runs,
    /// but not the simple path where the tiled one runs, unless the conv is
    /// small: a forward or dx of at most [`FEW_FLOPS`] (there one dispatch
    /// with nothing to set up may win; on a large shape it never does), or a
    /// dw over few pixels ([`Conv2dShape::few_pixels`]: register-blocked, one
    /// dispatch) of at most [`FEW_DW_FLOPS`]. Over more pixels the simple dw
    /// runs a workgroup per weight, and timing it would take seconds.
    pub fn candidates(ctx: &GpuContext, s: &Conv2dShape, pass: ConvPass) -> Vec<Path> {
        let tiled = Path::Tiled.runs(ctx, s, pass);
        let small = match pass {
            ConvPass::Forward | ConvPass::BackwardInput => s.flops() <= FEW_FLOPS,
            ConvPass::BackwardWeight => s.few_pixels() && s.flops() <= FEW_DW_FLOPS,
        };
        Path::ALL
            .into_iter()
            .filter(|&p| p.runs(ctx, s, pass) && !(tiled && p == Path::Simple && !small))
            .collect()
    }

    /// The built-in default (`VDVAE_TUNE=off`): the tiled path where it runs.
    pub fn default_for(ctx: &GpuContext, s: &Conv2dShape, pass: ConvPass) -> Path {
        if Path::Tiled.runs(ctx, s, pass) {
            Path::Tiled
        } else {
            Path::Simple
        }
    }

    /// The path `pass` of `s` runs on here: the GPU-shaped one with
    /// `--kernels gpu` (where the adapter allows it), else the adapter's tuned choice.
    pub fn best(ctx: &GpuContext, s: &Conv2dShape, pass: ConvPass) -> Path {
        if ctx.kernels == KernelSet::Gpu && Path::Workgroup.runs(ctx, s, pass) {
            return Path::Workgroup;
        }
        choose::chosen(ctx, s, pass)
    }
}

/// FLOPs of one pass up to which tuning times the simple kernels against the
/// tiled ones: convs over a few pixels, where a dispatch costs more than its math.
pub const FEW_FLOPS: f64 = 4e6;

/// FLOPs of a dw over few pixels up to which tuning times the simple dw: on a
/// 1x1 image it beats the tiled one at every channel count, and one run of
/// this many takes it milliseconds, not seconds.
pub const FEW_DW_FLOPS: f64 = 5e7;

/// Whether dx of `s` reads [`BackwardInput::transposed`] weights on this
/// adapter when given them: the tiled path, Cout a multiple of 4 (a ragged
/// Cout flips the weights with zero-padded rows into scratch itself; the
/// padded path differs from the tiled one only for such a Cout).
pub fn reads_transposed_weights(ctx: &GpuContext, s: &Conv2dShape) -> bool {
    Path::best(ctx, s, ConvPass::BackwardInput) == Path::Tiled && s.cout.is_multiple_of(4)
}

/// Whether the weight gradient of a conv with `gelu_input`, kernel `k` and
/// `cout` output channels applies GELU to each element of x once when it runs
/// it itself: a 1x1 conv whose output channels fit one tiled dw workgroup.
/// Then `act = gelu(x)` is written by nobody, neither beside dx nor by a pass
/// of its own: its stores cost more than the one GELU per element.
pub fn dw_gelu_once(k: usize, cout: usize) -> bool {
    k == 1 && tiled::dw_cout_groups(cout) == 1
}

/// An override constant's value for a boolean option (the simple and workgroup kernels').
fn flag(on: bool) -> f64 {
    if on {
        1.0
    } else {
        0.0
    }
}

/// What a forward pass reads and writes besides the conv's shape:
/// `y = conv(act(x), w) + bias + residual`.
#[derive(Clone, Copy)]
pub struct Forward<'a> {
    /// One buffer, or two for a cat (`s.cat`).
    pub x: InputLike<'a>,
    pub w: BufView<'a>,
    /// Given exactly when `s.bias`.
    pub bias: Option<BufView<'a>>,
    /// Given exactly when `s.residual`; not `y`.
    pub residual: Option<BufView<'a>>,
    /// At least [`Conv2dShape::forward_scratch_len`] elements (0 unless Cin is
    /// ragged or x a cat the tiled path copies).
    pub scratch: BufView<'a>,
    pub y: BufView<'a>,
}

/// The forward pass of `s` on `path` (usually [`Path::best`]'s); the dispatches to run in order.
pub fn forward(ctx: &GpuContext, path: Path, s: &Conv2dShape, a: &Forward<'_>) -> Result<Vec<Dispatch>> {
    let Forward {
        x,
        w,
        bias,
        residual,
        scratch,
        y,
    } = *a;
    s.check_forward(&x, &w, bias.as_ref(), residual.as_ref(), &scratch, &y)?;
    let ds = match path {
        Path::Simple => vec![simple::forward(ctx, s, x, w, bias, residual, y)?],
        Path::Tiled | Path::Padded => {
            let copy_ragged = path == Path::Padded;
            tiled::forward(ctx, copy_ragged, s, x, w, bias, residual, scratch, y)?
        }
        Path::Workgroup => vec![workgroup::forward(ctx, s, x, w, bias, residual, y)?],
    };
    Ok(s.state_work(Pass::Forward, ds))
}

/// What a dx pass reads and writes besides the conv's shape:
/// `dx = conv_transpose(dy, w) * act'(x)` (x is read only when `s.gelu_input`).
#[derive(Clone, Copy)]
pub struct BackwardInput<'a> {
    /// The conv's input (read for `gelu'`), two buffers for a cat.
    pub x: InputLike<'a>,
    pub w: BufView<'a>,
    pub dy: BufView<'a>,
    /// At least [`Conv2dShape::backward_input_scratch_len`] elements (the
    /// flipped, transposed weights of the tiled path, and dy with zero-padded
    /// channels for a cat with a ragged Cout).
    pub scratch: BufView<'a>,
    /// dx, laid out as x: for a cat, the gradients of x1 and x2 apart.
    pub dx: InputLike<'a>,
    /// `gelu(x)` (`x_len` elements) written beside dx, for the weight gradient
    /// that follows; only for a conv with `gelu_input`. The tiled dx computes it
    /// in its epilogue from the `Phi(x)` that `gelu'(x)` needs anyway. One
    /// buffer also for a cat: `gelu(cat[x1, x2])`, which the weight gradient
    /// then reads as a plain input.
    pub act: Option<BufView<'a>>,
    /// `w` already flipped and transposed (by [`flip_transpose_many`]): the
    /// tiled path reads it instead of flipping `w` into scratch itself.
    pub transposed: Option<BufView<'a>>,
    /// Another gradient of x (of x1 for a cat; not `dx`) added to dx: the
    /// tiled dx adds it in its epilogue, so the sum needs no pass of its own.
    pub addend: Option<BufView<'a>>,
    /// For a cat, another gradient of x2 added to the second half of dx.
    pub addend2: Option<BufView<'a>>,
}

impl<'a> BackwardInput<'a> {
    /// dx alone: no `act`, the weights flipped by the pass itself, no addend.
    pub fn plain(
        x: impl Into<InputLike<'a>>,
        w: BufView<'a>,
        dy: BufView<'a>,
        scratch: BufView<'a>,
        dx: impl Into<InputLike<'a>>,
    ) -> BackwardInput<'a> {
        BackwardInput {
            x: x.into(),
            w,
            dy,
            scratch,
            dx: dx.into(),
            act: None,
            transposed: None,
            addend: None,
            addend2: None,
        }
    }
}

/// The dx pass of `s` (and `act`) on `path` (usually [`Path::best`]'s); the dispatches to run in order.
pub fn backward_input(ctx: &GpuContext, path: Path, s: &Conv2dShape, a: &BackwardInput<'_>) -> Result<Vec<Dispatch>> {
    s.check_backward_input(&a.x, &a.w, &a.dy, &a.scratch, &a.dx)?;
    if let Some(act) = a.act {
        if !s.gelu_input {
            return crate::error::shape_err("conv2d: act = gelu(x) is only written for a conv with gelu_input");
        }
        act.expect_len("conv2d backward_input", "act", s.x_len())?;
    }
    if let Some(wt) = a.transposed {
        wt.expect_len("conv2d backward_input", "transposed weights", s.w_len())?;
    }
    if let Some(addend) = a.addend {
        addend.expect_len("conv2d backward_input", "addend", s.x1_len())?;
    }
    if let Some(addend) = a.addend2 {
        if s.cat.is_none() {
            return crate::error::shape_err("conv2d: a second addend needs a cat input");
        }
        addend.expect_len("conv2d backward_input", "addend2", s.x2_len())?;
    }
    let ds = match path {
        Path::Simple => {
            let mut ds = vec![simple::backward_input(ctx, s, a.x, a.w, a.dy, a.dx, a.act)?];
            use crate::kernels::elementwise::{copy_channels, ChannelRange, CopyMode};
            let halves = [
                (a.addend, a.dx.first, s.cat_split()),
                (a.addend2, a.dx.second_or_first(), s.cin - s.cat_split()),
            ];
            for (addend, dx, channels) in halves {
                if let Some(addend) = addend {
                    let all = ChannelRange::all(channels);
                    ds.push(copy_channels(ctx, addend, all, dx, all, CopyMode::Accumulate)?);
                }
            }
            ds
        }
        Path::Tiled | Path::Padded => tiled::backward_input(ctx, path == Path::Padded, s, a)?,
        Path::Workgroup => workgroup::backward_input(ctx, s, a)?,
    };
    let pass = Pass::BackwardInput { act: a.act.is_some() };
    Ok(s.state_work(pass, ds))
}

/// What a weight-gradient pass reads and writes besides the conv's shape:
/// `dw = Σ dy ⊗ act(x)` and, when `db` is given, `db = Σ dy`.
#[derive(Clone, Copy)]
pub struct BackwardWeight<'a> {
    /// One buffer, or two for a cat.
    pub x: InputLike<'a>,
    pub dy: BufView<'a>,
    /// At least [`Conv2dShape::backward_weight_scratch_len`] elements
    /// (per-reduction-split partial sums, and x with zero-padded channels for
    /// a cat the tiled dw copies).
    pub scratch: BufView<'a>,
    /// [`Conv2dShape::act_len`] elements, a buffer other than `scratch`: lets
    /// the tiled path apply GELU once in its own pass instead of inside the dw
    /// kernel (about 1.4x faster dw at 64 channels with `gelu_input`); ignored
    /// otherwise, and where x is copied (a cat the tiled dw does not read in place).
    pub act: Option<BufView<'a>>,
    pub dw: BufView<'a>,
    pub db: Option<BufView<'a>>,
    /// Add the new gradients to what `dw` and `db` hold instead of overwriting them.
    pub accumulate: bool,
}

/// The weight-gradient pass of `s` on `path` (usually [`Path::best`]'s); the dispatches to run in order.
pub fn backward_weight(ctx: &GpuContext, path: Path, s: &Conv2dShape, a: &BackwardWeight<'_>) -> Result<Vec<Dispatch>> {
    let BackwardWeight {
        x,
        dy,
        scratch,
        act,
        dw,
        db,
        accumulate,
    } = *a;
    s.check_backward_weight(&x, &dy, &scratch, act.as_ref(), &dw, db.as_ref())?;
    let ds = match path {
        Path::Simple => simple::backward_weight(ctx, s, x, dy, dw, db, accumulate)?,
        Path::Tiled | Path::Padded => {
            let copy_ragged = path == Path::Padded;
            tiled::backward_weight(ctx, copy_ragged, s, x, dy, scratch, act, dw, db, accumulate)?
        }
        Path::Workgroup => workgroup::backward_weight(ctx, s, x, dy, scratch, dw, db, accumulate)?,
    };
    let reduction_splits = match path {
        Path::Simple => 1,
        Path::Tiled | Path::Padded => tiled::reduction_splits_on(ctx, s, path == Path::Padded),
        Path::Workgroup => workgroup::reduction_splits_on(ctx, s),
    };
    Ok(s.state_work(
        Pass::BackwardWeight {
            accumulate,
            reduction_splits,
        },
        ds,
    ))
}

/// `db = Σ_{n,h,w} dy` on its own (overwrites, or adds when `accumulate`).
pub fn backward_bias(
    ctx: &GpuContext,
    s: &Conv2dShape,
    dy: BufView<'_>,
    db: BufView<'_>,
    accumulate: bool,
) -> Result<Dispatch> {
    s.check_backward_bias(&dy, &db)?;
    let d = simple::backward_bias(ctx, s, dy, db, accumulate)?;
    Ok(s.state_work(Pass::BackwardBias { accumulate }, vec![d]).remove(0))
}
