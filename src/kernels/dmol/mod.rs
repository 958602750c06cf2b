//! Discretized mixture of logistics (DMoL), the VDVAE image likelihood: per-image
//! NLL, NLL fused with its gradient, and sampling, exactly as the official
//! `vae_helpers.py` computes them (docs/design-notes.md#dmol-likelihood and docs/design-notes.md#dmol-layout).
//! WGSL: `shaders/dmol_common.wgsl`, `dmol_logits.wgsl`, `dmol_loss.wgsl`, `dmol_loss_grad.wgsl`,
//! `dmol_sample.wgsl`; the per-image sums of tile partials use the reduce
//! family's `sum_partials`.
//!
//! Tensors are NHWC: `l` is the out_conv output `[N, H, W, M + C*S]` (S = 3M for
//! RGB, 2M for greyscale), `x` the target `[N, H, W, C]` in [-1, 1].

mod cases;
mod conditioning;
pub mod inputs;
pub mod reference;

pub use cases::{bench_cases, check};

use crate::error::{shape_err, Result};
use crate::gpu::{Access, BufView, Dispatch, GpuContext, Grid, Kernel, KernelSpec, Work};
use crate::kernels::rng::{RngKey, RNG_WGSL};

const COMMON: &str = include_str!("../../../shaders/dmol_common.wgsl");
/// The log_softmax normaliser both loss kernels use.
const LOGITS: &str = include_str!("../../../shaders/dmol_logits.wgsl");
const LOSS: Kernel<LossParams> = Kernel::portable(
    "dmol_loss",
    &[COMMON, LOGITS, include_str!("../../../shaders/dmol_loss.wgsl")],
    "dmol_loss",
    &[Access::Read, Access::Read, Access::ReadWrite, Access::Uniform],
)
.with_workgroup_size([TILE as u32, 1, 1]);
const LOSS_GRAD: Kernel<LossParams> = Kernel::portable(
    "dmol_loss_grad",
    &[COMMON, LOGITS, include_str!("../../../shaders/dmol_loss_grad.wgsl")],
    "dmol_loss_grad",
    &[
        Access::Read,
        Access::Read,
        Access::Read,
        Access::ReadWrite,
        Access::ReadWrite,
        Access::Uniform,
    ],
)
.with_workgroup_size([TILE as u32, 1, 1]);
const SAMPLE: Kernel<SampleParams> = Kernel::portable(
    "dmol_sample",
    &[RNG_WGSL, COMMON, include_str!("../../../shaders/dmol_sample.wgsl")],
    "dmol_sample",
    &[Access::Read, Access::ReadWrite, Access::Uniform],
);

/// Pixels per workgroup of the loss kernels (one tile of one image).
const TILE: usize = 64;

/// Every kernel of the family, for the contract test.
pub fn all_kernels() -> Vec<KernelSpec> {
    vec![LOSS.spec(), LOSS_GRAD.spec(), SAMPLE.spec()]
}

/// A sampling uniform U in (0, 1) becomes u = DRAW_LO + DRAW_SPAN * U, i.e.
/// torch's `uniform_(1e-5, 1 - 1e-5)`; 1 - u is DRAW_LO + DRAW_SPAN * (1 - U).
pub const DRAW_LO: f32 = 1e-5;
pub const DRAW_SPAN: f32 = 0.99998;

/// Bit depth of the data the likelihood discretizes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataBits {
    /// 256 levels: bin half-width 1/255, density fallback - ln 127.5.
    Eight,
    /// 32 levels (official `low_bit`, FFHQ-256): half-width 1/31, - ln 15.5.
    Five,
}

impl DataBits {
    pub fn half_bin(self) -> f64 {
        match self {
            DataBits::Eight => 1.0 / 255.0,
            DataBits::Five => 1.0 / 31.0,
        }
    }

    pub fn log_half_bins(self) -> f64 {
        match self {
            DataBits::Eight => 127.5f64.ln(),
            DataBits::Five => 15.5f64.ln(),
        }
    }
}

/// Shape of one DMoL op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmolSpec {
    pub n: usize,
    pub h: usize,
    pub w: usize,
    /// 3 (RGB, with coefficients) or 1 (greyscale).
    pub channels: usize,
    pub mixtures: usize,
    pub bits: DataBits,
}

impl DmolSpec {
    /// Width of one colour's block of out_conv channels.
    pub fn stride(&self) -> usize {
        if self.channels == 3 {
            3 * self.mixtures
        } else {
            2 * self.mixtures
        }
    }

    /// out_conv channels: 10M for RGB, 3M for greyscale.
    pub fn out_channels(&self) -> usize {
        self.mixtures + self.channels * self.stride()
    }

    /// N*H*W.
    pub fn pixels(&self) -> usize {
        self.n * self.h * self.w
    }

    pub fn l_len(&self) -> usize {
        self.pixels() * self.out_channels()
    }

    pub fn x_len(&self) -> usize {
        self.pixels() * self.channels
    }

    fn tiles(&self) -> usize {
        (self.h * self.w).div_ceil(TILE)
    }

    /// Length of the scratch buffer `nll` and `nll_grad` need for per-tile sums.
    pub fn partials_len(&self) -> usize {
        self.n * self.tiles()
    }

    /// Philox calls per pixel when sampling: ceil((M + C) / 4).
    pub fn draw_groups(&self) -> usize {
        (self.mixtures + self.channels).div_ceil(4)
    }

    fn describe(&self) -> String {
        format!(
            "N={} {}x{} C={} M={} {}-bit",
            self.n,
            self.h,
            self.w,
            self.channels,
            self.mixtures,
            match self.bits {
                DataBits::Eight => 8,
                DataBits::Five => 5,
            }
        )
    }

    fn validate(&self, op: &str) -> Result<()> {
        if self.channels != 1 && self.channels != 3 {
            return shape_err(format!(
                "{op}: DMoL supports 3 (RGB) or 1 (greyscale) channels, got {}",
                self.channels
            ));
        }
        if self.n == 0 || self.h == 0 || self.w == 0 || self.mixtures == 0 {
            return shape_err(format!(
                "{op}: every dimension must be positive, got {}",
                self.describe()
            ));
        }
        if self.n > 65535 || self.tiles() > 65535 {
            return shape_err(format!(
                "{op}: at most 65535 images and 65535*{TILE} pixels per image, got {}",
                self.describe()
            ));
        }
        if self.l_len() > u32::MAX as usize || self.pixels() * self.draw_groups() > u32::MAX as usize {
            return shape_err(format!("{op}: {} needs more than 2^32 indices", self.describe()));
        }
        Ok(())
    }
}

crate::gpu_params! {
    struct LossParams {
        pixels: u32,
        images: u32,
        channels: u32,
        mixtures: u32,
        out_channels: u32,
        stride: u32,
        tiles: u32,
        half_bin: f32,
        log_half_bins: f32,
    }
}

impl LossParams {
    fn new(spec: &DmolSpec) -> LossParams {
        LossParams {
            pixels: (spec.h * spec.w) as u32,
            images: spec.n as u32,
            channels: spec.channels as u32,
            mixtures: spec.mixtures as u32,
            out_channels: spec.out_channels() as u32,
            stride: spec.stride() as u32,
            tiles: spec.tiles() as u32,
            half_bin: spec.bits.half_bin() as f32,
            log_half_bins: spec.bits.log_half_bins() as f32,
        }
    }
}

/// Adds each image's per-tile partial sums (`partials[tile * n + image]`) into `nll`.
fn reduce(ctx: &GpuContext, spec: &DmolSpec, partials: BufView<'_>, nll: BufView<'_>) -> Result<Dispatch> {
    crate::kernels::reduce::sum_partials(ctx, partials, spec.tiles(), nll, 1.0)
}

fn check_loss_views(
    op: &str,
    spec: &DmolSpec,
    l: &BufView,
    x: &BufView,
    partials: &BufView,
    nll: &BufView,
) -> Result<()> {
    spec.validate(op)?;
    l.expect_len(op, "l", spec.l_len())?;
    x.expect_len(op, "x", spec.x_len())?;
    partials.expect_len(op, "partials", spec.partials_len())?;
    nll.expect_len(op, "nll", spec.n)
}

/// `nll[n] = -sum over image n's pixels of log p(x | l)`. `partials` is scratch
/// of `spec.partials_len()` elements. Two dispatches, to be recorded in order.
pub fn nll(
    ctx: &GpuContext,
    spec: &DmolSpec,
    l: BufView<'_>,
    x: BufView<'_>,
    partials: BufView<'_>,
    nll: BufView<'_>,
) -> Result<Vec<Dispatch>> {
    check_loss_views("dmol nll", spec, &l, &x, &partials, &nll)?;
    let params = LossParams::new(spec);
    let grid = Grid::Workgroups([spec.tiles() as u32, spec.n as u32, 1]);
    let main = ctx
        .dispatch(&LOSS, &[], &[l, x, partials], &params, grid)?
        .with_work(Work::new(nll_flops(spec), 4.0 * (l.len + x.len + partials.len) as f64));
    Ok(vec![main, reduce(ctx, spec, partials, nll)?])
}

/// `nll` as in [`nll`] and, in the same pass, `dl = d(sum_n upstream[n] * nll[n]) / dl`.
/// Two dispatches, to be recorded in order.
#[allow(clippy::too_many_arguments)]
pub fn nll_grad(
    ctx: &GpuContext,
    spec: &DmolSpec,
    l: BufView<'_>,
    x: BufView<'_>,
    upstream: BufView<'_>,
    dl: BufView<'_>,
    partials: BufView<'_>,
    nll: BufView<'_>,
) -> Result<Vec<Dispatch>> {
    let op = "dmol nll_grad";
    check_loss_views(op, spec, &l, &x, &partials, &nll)?;
    upstream.expect_len(op, "upstream", spec.n)?;
    dl.expect_len(op, "dl", spec.l_len())?;
    let params = LossParams::new(spec);
    let grid = Grid::Workgroups([spec.tiles() as u32, spec.n as u32, 1]);
    let main = ctx
        .dispatch(&LOSS_GRAD, &[], &[l, x, upstream, dl, partials], &params, grid)?
        .with_work(Work::new(
            nll_grad_flops(spec),
            4.0 * (2 * l.len + x.len + upstream.len + partials.len) as f64,
        ));
    Ok(vec![main, reduce(ctx, spec, partials, nll)?])
}

crate::gpu_params! {
    struct SampleParams {
        key: RngKey,
        pixels: u32,
        channels: u32,
        mixtures: u32,
        out_channels: u32,
        stride: u32,
        groups: u32,
    }
}

/// Draws `out` (`[N, H, W, C]`, values in [-1, 1]) from the mixture `l` with the
/// noise of `key`. Pixel p (flat NHW index) uses uniform draws i = 0..M+C, draw i
/// being word i % 4 of `key.bits(p * spec.draw_groups() + i / 4)`: draws 0..M are
/// the Gumbel-max uniforms of the mixtures, draw M + c the logistic uniform of colour c.
pub fn sample(ctx: &GpuContext, spec: &DmolSpec, l: BufView<'_>, key: RngKey, out: BufView<'_>) -> Result<Dispatch> {
    let op = "dmol sample";
    spec.validate(op)?;
    l.expect_len(op, "l", spec.l_len())?;
    out.expect_len(op, "out", spec.x_len())?;
    let params = SampleParams {
        key,
        pixels: spec.pixels() as u32,
        channels: spec.channels as u32,
        mixtures: spec.mixtures as u32,
        out_channels: spec.out_channels() as u32,
        stride: spec.stride() as u32,
        groups: spec.draw_groups() as u32,
    };
    let d = ctx.dispatch(&SAMPLE, &[], &[l, out], &params, Grid::Invocations(spec.pixels()))?;
    Ok(d.with_work(Work::f32s(l.len + out.len)))
}

/// Samples in [-1, 1] to 8-bit pixels as the official `DmolNet.sample` does:
/// `(x + 1) * 127.5` clipped to [0, 255] and truncated (no rounding).
pub fn samples_to_u8(x: &[f32]) -> Vec<u8> {
    x.iter().map(|&v| ((v + 1.0) * 127.5).clamp(0.0, 255.0) as u8).collect()
}

/// Nominal work per (pixel, mixture, colour) term, counting each exp/log/tanh as
/// one FLOP: ~40 for the likelihood, ~25 more for its derivatives and their scaling.
const FLOPS_PER_TERM_NLL: f64 = 40.0;
const FLOPS_PER_TERM_GRAD: f64 = 65.0;

pub fn nll_flops(spec: &DmolSpec) -> f64 {
    (spec.pixels() * spec.mixtures * spec.channels) as f64 * FLOPS_PER_TERM_NLL
}

pub fn nll_grad_flops(spec: &DmolSpec) -> f64 {
    (spec.pixels() * spec.mixtures * spec.channels) as f64 * FLOPS_PER_TERM_GRAD
}

/// Bytes a perfect fused kernel moves: read l, x, upstream; write dl and nll.
pub fn nll_grad_bytes(spec: &DmolSpec) -> f64 {
    4.0 * (2 * spec.l_len() + spec.x_len() + 2 * spec.n) as f64
}
