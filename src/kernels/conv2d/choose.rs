//! Which path runs each pass of a conv on this adapter: among the paths the
//! adapter and shape allow, the adapter's tuned choice (see `gpu::tune`), the
//! built-in default when tuning is off. Each shape class is timed once, on
//! buffers of its own shape, and the choice is cached on disk.

use std::sync::OnceLock;

use super::{Conv2dShape, InputLike, Path};
use crate::bench::time_dispatches;
use crate::error::Result;
use crate::gpu::tune::kernels_hash;
use crate::gpu::{Dispatch, GpuBuffer, GpuContext};

/// A conv pass, for choosing its path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConvPass {
    /// y = conv(x) + bias (+ residual).
    Forward,
    /// dx from dy.
    BackwardInput,
    /// dw and db from x and dy.
    BackwardWeight,
}

impl ConvPass {
    pub const ALL: [ConvPass; 3] = [ConvPass::Forward, ConvPass::BackwardInput, ConvPass::BackwardWeight];

    /// The tiled path's name for the pass (its cat and padding rules).
    pub(super) fn cat_pass(self) -> super::tiled::CatPass {
        match self {
            ConvPass::Forward => super::tiled::CatPass::Forward,
            ConvPass::BackwardInput => super::tiled::CatPass::BackwardInput,
            ConvPass::BackwardWeight => super::tiled::CatPass::BackwardWeight,
        }
    }

    /// The name on the command line, in tables and in tuning keys.
    pub fn name(self) -> &'static str {
        match self {
            ConvPass::Forward => "forward",
            ConvPass::BackwardInput => "dx",
            ConvPass::BackwardWeight => "dw",
        }
    }
}

/// Seconds one candidate is timed for, per try (two tries, best kept).
const TIME_PER_TRY: f64 = 0.02;

/// The path for `pass` of `s`: the default when one path is a candidate or
/// tuning is off, else the tuned choice.
pub fn chosen(ctx: &GpuContext, s: &Conv2dShape, pass: ConvPass) -> Path {
    let candidates = Path::candidates(ctx, s, pass);
    let default = Path::default_for(ctx, s, pass);
    if candidates.len() < 2 {
        return default;
    }
    let class = format!("conv2d.{} {}", pass.name(), class_of(s));
    ctx.tuner
        .choose_among(&class, sources(), &candidates, Path::name, default, |path| {
            time_path(ctx, s, pass, path)
        })
}

/// The shape class a choice holds for: the whole shape (batch, size, channels,
/// kernel, epilogue flags and cat), which is what the kernels' speed depends on.
fn class_of(s: &Conv2dShape) -> String {
    let mut c = format!("k{} {}x{}x{} {}->{}", s.k, s.n, s.h, s.w, s.cin, s.cout);
    for (on, flag) in [(s.gelu_input, " gelu"), (s.bias, " bias"), (s.residual, " residual")] {
        if on {
            c.push_str(flag);
        }
    }
    if let Some(c1) = s.cat {
        c.push_str(&format!(" cat{c1}"));
    }
    c
}

/// The hash of every conv kernel's source: a cached choice made with other kernels is stale.
fn sources() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| kernels_hash(&super::all_kernels()))
}

/// Seconds per run of `pass` of `s` on `path`.
fn time_path(ctx: &GpuContext, s: &Conv2dShape, pass: ConvPass, path: Path) -> Result<f64> {
    let (ds, _buffers) = pass_dispatches(ctx, s, pass, path)?;
    time_dispatches(ctx, &ds, TIME_PER_TRY, 2)
}

/// The dispatches of `pass` of `s` on `path` over zeroed buffers of its shape
/// (speed does not depend on the values), and the buffers they bind: what
/// tuning and the shape sweep time.
pub(super) fn pass_dispatches(
    ctx: &GpuContext,
    s: &Conv2dShape,
    pass: ConvPass,
    path: Path,
) -> Result<(Vec<Dispatch>, Vec<GpuBuffer>)> {
    let zeros = |n: usize| ctx.zeros(n.max(1));
    // x (two buffers for a cat), and each other operand.
    let halves: Vec<GpuBuffer> = s.sources().iter().map(|c| zeros(s.n * s.h * s.w * c)).collect();
    let x = input_like;
    let (w, y) = (zeros(s.w_len()), zeros(s.y_len()));
    let mut buffers = Vec::new();
    let ds: Vec<Dispatch> = match pass {
        ConvPass::Forward => {
            let (bias, residual) = (zeros(s.cout), zeros(s.y_len()));
            let scratch = zeros(s.forward_scratch_len());
            let args = super::Forward {
                x: x(&halves),
                w: w.view(),
                bias: s.bias.then(|| bias.view()),
                residual: s.residual.then(|| residual.view()),
                scratch: scratch.view(),
                y: y.view(),
            };
            let ds = super::forward(ctx, path, s, &args)?;
            buffers.extend([bias, residual, scratch]);
            ds
        }
        ConvPass::BackwardInput => {
            let dx: Vec<GpuBuffer> = s.sources().iter().map(|c| zeros(s.n * s.h * s.w * c)).collect();
            let scratch = zeros(s.backward_input_scratch_len());
            let args = super::BackwardInput::plain(x(&halves), w.view(), y.view(), scratch.view(), x(&dx));
            let ds = super::backward_input(ctx, path, s, &args)?;
            buffers.extend(dx);
            buffers.push(scratch);
            ds
        }
        ConvPass::BackwardWeight => {
            let (scratch, db) = (zeros(s.backward_weight_scratch_len()), zeros(s.cout));
            let args = super::BackwardWeight {
                x: x(&halves),
                dy: y.view(),
                scratch: scratch.view(),
                act: None,
                dw: w.view(),
                db: Some(db.view()),
                accumulate: false,
            };
            let ds = super::backward_weight(ctx, path, s, &args)?;
            buffers.extend([scratch, db]);
            ds
        }
    };
    buffers.extend(halves);
    buffers.extend([w, y]);
    Ok((ds, buffers))
}

/// One buffer, or the two halves of a cat.
fn input_like(b: &[GpuBuffer]) -> InputLike<'_> {
    match b {
        [one] => InputLike::from(one.view()),
        [a, c] => InputLike::cat(a.view(), c.view()),
        _ => unreachable!("a conv has one or two inputs"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_name_every_feature_of_the_shape() {
        let s = Conv2dShape::new(16, 8, 8, 64, 50, 1).with_bias(true).with_cat(32);
        assert_eq!(class_of(&s), "k1 16x8x8 64->50 bias cat32");
        let g = Conv2dShape::new(1, 1, 1, 3, 4, 3).with_gelu(true);
        assert_eq!(class_of(&g), "k3 1x1x1 3->4 gelu");
    }
}
