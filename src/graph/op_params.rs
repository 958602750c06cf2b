//! The kernel parameters an op's tensors imply, shared by the CPU executor and
//! the GPU lowering so both run exactly the same op.

use super::ir::{Graph, Sampling, TensorId};
use crate::ops::conv2d::Conv2dShape;
use crate::ops::dmol::{DataBits, DmolSpec};
use crate::ops::reparam_kl::{Posterior, Reparam, ZMode};
use crate::ops::rng::RngKey;

pub(crate) fn nhwc(s: &[usize]) -> [usize; 4] {
    [s[0], s[1], s[2], s[3]]
}

/// The conv reading `x` (NHWC) into `cout` channels through a `k`x`k` kernel.
pub(crate) fn conv_shape(g: &Graph, x: TensorId, cout: usize, k: usize, gelu: bool) -> Conv2dShape {
    let [n, h, w, cin] = nhwc(g.shape(x));
    Conv2dShape::new(n, h, w, cin, cout, k).with_gelu(gelu)
}

/// The mixture described by `l` over images shaped like `image` (target or sample).
pub(crate) fn dmol_spec(g: &Graph, l: TensorId, image: TensorId, low_bit: bool) -> DmolSpec {
    let [n, h, w, c] = nhwc(g.shape(image));
    let per_mixture = if c == 1 { 3 } else { 10 };
    let bits = if low_bit { DataBits::Five } else { DataBits::Eight };
    DmolSpec {
        n,
        h,
        w,
        channels: c,
        mixtures: g.shape(l)[3] / per_mixture,
        bits,
    }
}

/// `x` viewed as `[N, elements per image]`.
pub(crate) fn per_image_dims(g: &Graph, x: TensorId) -> [usize; 2] {
    let s = g.shape(x);
    [s[0], s[1..].iter().product()]
}

/// A VDVAE level's reparameterization (direct posterior) drawing from `key`.
pub(crate) fn reparam_cfg(sampling: Sampling, key: RngKey) -> Reparam {
    let mode = match sampling {
        Sampling::Posterior => ZMode::Sample,
        Sampling::PosteriorMean => ZMode::Mean,
    };
    Reparam {
        posterior: Posterior::Direct,
        mode,
        key,
    }
}
