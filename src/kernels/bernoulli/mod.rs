//! Bernoulli likelihood on logits, for binarized data (targets in {0, 1}, e.g.
//! binarized MNIST): per-image NLL, NLL fused with its gradient, the mean
//! (sigmoid), sampling from logits, and sampling from probabilities (dynamic
//! binarization of data). WGSL: `shaders/bernoulli_common.wgsl`,
//! `bernoulli_loss.wgsl`, `bernoulli_loss_grad.wgsl`, `bernoulli_mean.wgsl`,
//! `bernoulli_sample.wgsl`; the per-image sums of chunk partials use the reduce
//! family's `sum_partials`. [`binarize_fixed`] binarizes evaluation data on the
//! CPU, the same for an image whatever batch it is in.
//!
//! Per element: nll = -[t log sigmoid(l) + (1 - t) log(1 - sigmoid(l))], written
//! stably as softplus(l) - t l; summed over each image's H*W*C elements (NHWC).

mod cases;
mod fixed;
pub mod reference;

pub use cases::{bench_cases, check};
pub use fixed::{binarize_fixed, FIXED_BINARIZATION_TENSOR};

use crate::error::{shape_err, Result};
use crate::gpu::{Access, BufView, Dispatch, GpuContext, Grid, Kernel, KernelSpec};
use crate::kernels::rng::{RngKey, RNG_WGSL};

const COMMON: &str = include_str!("../../../shaders/bernoulli_common.wgsl");
const LOSS: Kernel<LossParams> = Kernel::portable(
    "bernoulli_loss",
    &[COMMON, include_str!("../../../shaders/bernoulli_loss.wgsl")],
    "bernoulli_loss",
    &[Access::Read, Access::Read, Access::ReadWrite, Access::Uniform],
)
.with_constants(CHUNK_CONSTANT);
const LOSS_GRAD: Kernel<LossParams> = Kernel::portable(
    "bernoulli_loss_grad",
    &[COMMON, include_str!("../../../shaders/bernoulli_loss_grad.wgsl")],
    "bernoulli_loss_grad",
    &[
        Access::Read,
        Access::Read,
        Access::Read,
        Access::ReadWrite,
        Access::ReadWrite,
        Access::Uniform,
    ],
)
.with_constants(CHUNK_CONSTANT);
const SAMPLE_SRC: &[&str] = &[RNG_WGSL, COMMON, include_str!("../../../shaders/bernoulli_sample.wgsl")];
const ELEMENTWISE: &[Access] = &[Access::Read, Access::ReadWrite, Access::Uniform];
const SAMPLE: Kernel<SampleParams> = Kernel::portable("bernoulli_sample", SAMPLE_SRC, "bernoulli_sample", ELEMENTWISE);
const SAMPLE_PROBS: Kernel<SampleParams> = Kernel::portable(
    "bernoulli_sample_probs",
    SAMPLE_SRC,
    "bernoulli_sample_probs",
    ELEMENTWISE,
);
const MEAN: Kernel<MeanParams> = Kernel::portable(
    "bernoulli_mean",
    &[COMMON, include_str!("../../../shaders/bernoulli_mean.wgsl")],
    "bernoulli_mean",
    ELEMENTWISE,
);

/// Elements per workgroup of the loss kernels (256 invocations x 4).
const CHUNK: usize = 1024;
/// The loss kernels' grids and partials are counted in chunks of `BERNOULLI_CHUNK`.
const CHUNK_CONSTANT: &[(&str, i64)] = &[("BERNOULLI_CHUNK", CHUNK as i64)];

/// Every kernel of the family, for the contract test.
pub fn all_kernels() -> Vec<KernelSpec> {
    vec![
        LOSS.spec(),
        LOSS_GRAD.spec(),
        SAMPLE.spec(),
        SAMPLE_PROBS.spec(),
        MEAN.spec(),
    ]
}

/// Shape of one Bernoulli op: logits and targets are `[N, H, W, C]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BernoulliSpec {
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
}

impl BernoulliSpec {
    /// H*W*C.
    pub fn per_image(&self) -> usize {
        self.h * self.w * self.c
    }

    pub fn len(&self) -> usize {
        self.n * self.per_image()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn chunks(&self) -> usize {
        self.per_image().div_ceil(CHUNK)
    }

    /// Length of the scratch buffer `nll` and `nll_grad` need for per-chunk sums.
    pub fn partials_len(&self) -> usize {
        self.n * self.chunks()
    }

    fn describe(&self) -> String {
        format!("N={} {}x{}x{}", self.n, self.h, self.w, self.c)
    }

    fn validate(&self, op: &str) -> Result<()> {
        if self.is_empty() {
            return shape_err(format!(
                "{op}: every dimension must be positive, got {}",
                self.describe()
            ));
        }
        if self.n > 65535 || self.chunks() > 65535 {
            return shape_err(format!(
                "{op}: at most 65535 images and 65535*{CHUNK} elements per image, got {}",
                self.describe()
            ));
        }
        if self.len() > u32::MAX as usize - 4 {
            return shape_err(format!("{op}: {} needs more than 2^32 indices", self.describe()));
        }
        Ok(())
    }
}

crate::gpu_params! {
    struct LossParams {
        per_image: u32,
        images: u32,
        chunks: u32,
    }
}

impl LossParams {
    fn new(spec: &BernoulliSpec) -> LossParams {
        LossParams {
            per_image: spec.per_image() as u32,
            images: spec.n as u32,
            chunks: spec.chunks() as u32,
        }
    }
}

/// Adds each image's per-chunk partial sums (`partials[chunk * n + image]`) into `nll`.
fn reduce(ctx: &GpuContext, spec: &BernoulliSpec, partials: BufView<'_>, nll: BufView<'_>) -> Result<Dispatch> {
    crate::kernels::reduce::sum_partials(ctx, partials, spec.chunks(), nll, 1.0)
}

fn check_loss_views(
    op: &str,
    spec: &BernoulliSpec,
    logits: &BufView,
    targets: &BufView,
    partials: &BufView,
    nll: &BufView,
) -> Result<()> {
    spec.validate(op)?;
    logits.expect_len(op, "logits", spec.len())?;
    targets.expect_len(op, "targets", spec.len())?;
    partials.expect_len(op, "partials", spec.partials_len())?;
    nll.expect_len(op, "nll", spec.n)
}

/// `nll[n] = sum over image n of softplus(l) - t l`. `partials` is scratch of
/// `spec.partials_len()` elements. Two dispatches, to be recorded in order.
pub fn nll(
    ctx: &GpuContext,
    spec: &BernoulliSpec,
    logits: BufView<'_>,
    targets: BufView<'_>,
    partials: BufView<'_>,
    nll: BufView<'_>,
) -> Result<Vec<Dispatch>> {
    check_loss_views("bernoulli nll", spec, &logits, &targets, &partials, &nll)?;
    let grid = Grid::Workgroups([spec.chunks() as u32, spec.n as u32, 1]);
    let params = LossParams::new(spec);
    let main = ctx.dispatch(&LOSS, &[], &[logits, targets, partials], &params, grid)?;
    Ok(vec![main, reduce(ctx, spec, partials, nll)?])
}

/// `nll` as in [`nll`] and, in the same pass, `dlogits = upstream[n] * (sigmoid(l) - t)`,
/// the gradient of `sum_n upstream[n] * nll[n]`. Two dispatches, to be recorded in order.
#[allow(clippy::too_many_arguments)]
pub fn nll_grad(
    ctx: &GpuContext,
    spec: &BernoulliSpec,
    logits: BufView<'_>,
    targets: BufView<'_>,
    upstream: BufView<'_>,
    dlogits: BufView<'_>,
    partials: BufView<'_>,
    nll: BufView<'_>,
) -> Result<Vec<Dispatch>> {
    let op = "bernoulli nll_grad";
    check_loss_views(op, spec, &logits, &targets, &partials, &nll)?;
    upstream.expect_len(op, "upstream", spec.n)?;
    dlogits.expect_len(op, "dlogits", spec.len())?;
    let grid = Grid::Workgroups([spec.chunks() as u32, spec.n as u32, 1]);
    let params = LossParams::new(spec);
    let views = [logits, targets, upstream, dlogits, partials];
    let main = ctx.dispatch(&LOSS_GRAD, &[], &views, &params, grid)?;
    Ok(vec![main, reduce(ctx, spec, partials, nll)?])
}

crate::gpu_params! {
    struct SampleParams {
        key: RngKey,
        n: u32,
        first: u32,
    }
}

crate::gpu_params! {
    struct MeanParams {
        n: u32,
    }
}

/// Checks a sampling or mean dispatch's views; returns the elements it covers.
fn check_elementwise(op: &str, spec: &BernoulliSpec, first: usize, x: &BufView, out: &BufView) -> Result<usize> {
    spec.validate(op)?;
    x.expect_len(op, "input", spec.len())?;
    out.expect_len(op, "out", spec.len())?;
    if first + spec.len() > u32::MAX as usize - 4 {
        return shape_err(format!(
            "{op}: elements {first}.. of {} need more than 2^32 indices",
            spec.describe()
        ));
    }
    Ok(spec.len())
}

fn sample_with(
    ctx: &GpuContext,
    kernel: &Kernel<SampleParams>,
    spec: &BernoulliSpec,
    x: BufView<'_>,
    key: RngKey,
    first: usize,
    out: BufView<'_>,
) -> Result<Dispatch> {
    let n = check_elementwise(kernel.name, spec, first, &x, &out)?;
    let params = SampleParams {
        key,
        n: n as u32,
        first: first as u32,
    };
    // One invocation per Philox block of 4 elements the dispatch touches.
    let blocks = (first + n).div_ceil(4) - first / 4;
    ctx.dispatch(kernel, &[], &[x, out], &params, Grid::Invocations(blocks))
}

/// `out[i] = 1.0` if `u < sigmoid(logits[i])` else `0.0`, where `u` is the
/// uniform of element `first + i` of `key`'s stream: word `e % 4` of Philox
/// block `e / 4` (`reference::uniform(key, e)`, e the flat NHWC index in the
/// whole tensor). `first` is 0 for a whole tensor, the slice's first element
/// for a part of one (any element, not only multiples of 4).
pub fn sample(
    ctx: &GpuContext,
    spec: &BernoulliSpec,
    logits: BufView<'_>,
    key: RngKey,
    first: usize,
    out: BufView<'_>,
) -> Result<Dispatch> {
    sample_with(ctx, &SAMPLE, spec, logits, key, first, out)
}

/// As [`sample`] from probabilities: `out[i] = 1.0` if `u < probs[i]` (in
/// f32) else `0.0`. u is never 0 or 1, so probabilities 0 and 1 give 0 and 1.
pub fn sample_probs(
    ctx: &GpuContext,
    spec: &BernoulliSpec,
    probs: BufView<'_>,
    key: RngKey,
    first: usize,
    out: BufView<'_>,
) -> Result<Dispatch> {
    sample_with(ctx, &SAMPLE_PROBS, spec, probs, key, first, out)
}

/// `out[i] = sigmoid(logits[i])`, the Bernoulli mean.
pub fn mean(ctx: &GpuContext, spec: &BernoulliSpec, logits: BufView<'_>, out: BufView<'_>) -> Result<Dispatch> {
    let n = check_elementwise("bernoulli mean", spec, 0, &logits, &out)?;
    let params = MeanParams { n: n as u32 };
    ctx.dispatch(&MEAN, &[], &[logits, out], &params, Grid::Invocations(n))
}

/// Nominal work per element counting exp and the division as one FLOP each:
/// ~20 for the NLL (softplus through a log1p series), ~8 more for the gradient.
pub fn nll_grad_flops(spec: &BernoulliSpec) -> f64 {
    28.0 * spec.len() as f64
}

/// Bytes a perfect fused kernel moves: read logits and targets, write dlogits.
pub fn nll_grad_bytes(spec: &BernoulliSpec) -> f64 {
    4.0 * (3 * spec.len() + 2 * spec.n) as f64
}
