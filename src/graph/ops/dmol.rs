//! The discretized mixture of logistics: per-image NLL, its fused gradient,
//! and pixel sampling. Kernels: `crate::kernels::dmol`.

use super::{nhwc, nhwc_of, OpRule};
use crate::error::{shape_err, Result};
use crate::gpu::{BufView, Dispatch};
use crate::graph::autodiff::Backward;
use crate::graph::executor::cpu::{per_image, CpuCall};
use crate::graph::executor::{BindingSplit, LowerCall, Part, Unit};
use crate::graph::ir::{Graph, Node, TensorId};
use crate::kernels::dmol::{self as kernels, reference, DataBits, DmolSpec};

/// in: l (out_conv output, NHWC), target in [-1, 1] → per-image NLL `[N]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DmolNll {
    pub low_bit: bool,
}

/// in: l, target, dnll[N] → dl.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DmolNllBackward {
    pub low_bit: bool,
}

/// in: l → an image sample in [-1, 1] with the output's channels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DmolSample {
    pub low_bit: bool,
    pub tensor: u32,
}

/// Mixture channels per mixture for 1- or 3-channel images.
fn per_mixture(channels: usize) -> usize {
    if channels == 1 {
        3
    } else {
        10
    }
}

/// The mixture of `l`'s shape over images shaped like `image` (target or sample).
fn spec(l: &[usize], image: &[usize], low_bit: bool) -> DmolSpec {
    let [n, h, w, c] = nhwc(image);
    DmolSpec {
        n,
        h,
        w,
        channels: c,
        mixtures: l[3] / per_mixture(c),
        bits: if low_bit { DataBits::Five } else { DataBits::Eight },
    }
}

impl Graph {
    /// Per-image NLL of `target` under the mixture of logistics `l`.
    pub fn dmol_nll(&mut self, name: &str, l: TensorId, target: TensorId, low_bit: bool) -> Result<TensorId> {
        let [n, h, w, cl] = nhwc_of(self, l, name)?;
        let [n2, h2, w2, c] = nhwc_of(self, target, name)?;
        if !matches!(c, 1 | 3) {
            return shape_err(format!("{name}: target must have 1 or 3 channels, has {c}"));
        }
        if (n, h, w) != (n2, h2, w2) || cl % per_mixture(c) != 0 {
            return shape_err(format!(
                "{name}: mixture parameters {:?} do not fit target {:?} ({} channels per mixture)",
                self.shape(l),
                self.shape(target),
                per_mixture(c)
            ));
        }
        let y = self.activation(name, vec![n]);
        self.node(DmolNll { low_bit }, vec![l, target], vec![y]);
        Ok(y)
    }

    /// Images of `channels` channels sampled from the mixture of logistics `l`.
    pub fn dmol_sample(
        &mut self,
        name: &str,
        l: TensorId,
        channels: usize,
        low_bit: bool,
        tensor: u32,
    ) -> Result<TensorId> {
        let [n, h, w, cl] = nhwc_of(self, l, name)?;
        if !matches!(channels, 1 | 3) || cl % per_mixture(channels) != 0 {
            return shape_err(format!(
                "{name}: {cl} mixture channels do not describe {channels}-channel images"
            ));
        }
        let x = self.activation(name, vec![n, h, w, channels]);
        self.node(DmolSample { low_bit, tensor }, vec![l], vec![x]);
        Ok(x)
    }
}

impl OpRule for DmolNll {
    fn name(&self) -> &'static str {
        "dmol_nll"
    }

    fn backward(&self, b: &mut Backward<'_>) -> Result<()> {
        let dl = b.grad_like(0);
        let inputs = vec![b.input(0), b.input(1), b.dy()];
        b.node(DmolNllBackward { low_bit: self.low_bit }, inputs, vec![dl]);
        b.push(0, dl);
        Ok(())
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        let s = spec(c.in_shape(0), c.in_shape(1), self.low_bit);
        Ok(vec![reference::nll(&s, c.input(0), c.input(1))])
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        let s = spec(l.in_shape(0), l.in_shape(1), self.low_bit);
        kernels::nll(
            l.ctx,
            &s,
            l.input(0),
            l.input(1),
            l.scratch(s.partials_len()),
            l.output(0),
        )
    }

    fn scratch_len(&self, g: &Graph, node: &Node) -> usize {
        spec(g.shape(node.inputs[0]), g.shape(node.inputs[1]), self.low_bit).partials_len()
    }

    /// Each image's NLL from its own pixels: a slice inside an image adds its part.
    fn binding_split(&self, _: &Graph, _: &Node) -> Option<BindingSplit> {
        Some(BindingSplit::new(
            Unit::Pixels,
            vec![Part::Cut, Part::Cut],
            vec![Part::PerImage],
        ))
    }
}

impl OpRule for DmolNllBackward {
    fn name(&self) -> &'static str {
        "dmol_nll_backward"
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        let s = spec(c.in_shape(0), c.in_shape(1), self.low_bit);
        Ok(vec![reference::nll_grad(&s, c.input(0), c.input(1), c.input(2))])
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        let s = spec(l.in_shape(0), l.in_shape(1), self.low_bit);
        // The fused kernel also writes the NLL, into the side buffer.
        let nll = BufView { len: s.n, ..l.side() };
        let scratch = l.scratch(s.partials_len());
        kernels::nll_grad(l.ctx, &s, l.input(0), l.input(1), l.input(2), l.output(0), scratch, nll)
    }

    fn scratch_len(&self, g: &Graph, node: &Node) -> usize {
        spec(g.shape(node.inputs[0]), g.shape(node.inputs[1]), self.low_bit).partials_len()
    }

    fn side_len(&self, g: &Graph, node: &Node) -> usize {
        g.shape(node.inputs[2])[0]
    }

    fn binding_split(&self, _: &Graph, _: &Node) -> Option<BindingSplit> {
        let inputs = vec![Part::Cut, Part::Cut, Part::PerImage];
        Some(BindingSplit::new(Unit::Pixels, inputs, vec![Part::Cut]))
    }
}

impl OpRule for DmolSample {
    fn name(&self) -> &'static str {
        "dmol_sample"
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        let s = spec(c.in_shape(0), c.out_shape(0), self.low_bit);
        let first_pixel = c.first_image() * per_image(c.out_shape(0)) / s.channels;
        let key = c.key(self.tensor).skip(first_pixel * s.draw_groups());
        Ok(vec![reference::sample(&s, c.input(0), &key)])
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        let s = spec(l.in_shape(0), l.out_shape(0), self.low_bit);
        // Pixel p of the global batch draws from element p · groups of the stream.
        let whole = per_image(l.g.shape(l.node.outputs[0]));
        let first_pixel = (l.first_image() * whole + l.out_offset(0)) / s.channels;
        let key = l.key(self.tensor).skip(first_pixel * s.draw_groups());
        Ok(vec![kernels::sample(l.ctx, &s, l.input(0), key, l.output(0))?])
    }

    fn noisy(&self) -> bool {
        true
    }

    fn binding_split(&self, _: &Graph, node: &Node) -> Option<BindingSplit> {
        Some(BindingSplit::cut_all(Unit::Pixels, node))
    }
}
