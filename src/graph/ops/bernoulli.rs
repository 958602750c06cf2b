//! The Bernoulli likelihood for binarized data: per-image NLL with its fused
//! gradient, the mean (sigmoid) and samples of the decoder's logits, and the
//! dynamic binarization of data (a fresh binary draw from pixel
//! probabilities each step). Kernels: `crate::kernels::bernoulli`.

use super::{nhwc, nhwc_of, OpRule};
use crate::error::{shape_err, Result};
use crate::gpu::{BufView, Dispatch};
use crate::graph::autodiff::Backward;
use crate::graph::executor::cpu::{per_image, CpuCall};
use crate::graph::executor::{BindingSplit, LowerCall, Part, Unit};
use crate::graph::ir::{Graph, Node, TensorId};
use crate::kernels::bernoulli::{self as kernels, reference, BernoulliSpec};

/// in: logits, target in {0, 1} (NHWC, same shape) → per-image NLL `[N]` in nats.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BernoulliNll;

/// in: logits, target, dnll[N] → dlogits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BernoulliNllBackward;

/// in: logits → sigmoid(logits).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BernoulliMean;

/// in: logits → 1 where u < sigmoid(logits), else 0; noise from `tensor`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BernoulliSample {
    pub tensor: u32,
}

/// in: probabilities → 1 where u < p, else 0 (dynamic binarization); noise
/// from `tensor`. Probabilities 0 and 1 give 0 and 1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Binarize {
    pub tensor: u32,
}

fn spec(shape: &[usize]) -> BernoulliSpec {
    let [n, h, w, c] = nhwc(shape);
    BernoulliSpec { n, h, w, c }
}

impl Graph {
    /// Per-image NLL `[N]` (nats, summed over pixels) of binary `target` under
    /// Bernoulli `logits` of the same NHWC shape. No gradient reaches `target`.
    pub fn bernoulli_nll(&mut self, name: &str, logits: TensorId, target: TensorId) -> Result<TensorId> {
        let [n, ..] = nhwc_of(self, logits, name)?;
        nhwc_of(self, target, name)?;
        if self.shape(logits) != self.shape(target) {
            return shape_err(format!(
                "{name}: logits {:?} and target {:?} must have the same shape",
                self.shape(logits),
                self.shape(target)
            ));
        }
        let y = self.activation(name, vec![n]);
        self.node(BernoulliNll, vec![logits, target], vec![y]);
        Ok(y)
    }

    /// sigmoid(logits): the probabilities, for pictures. Forward only.
    pub fn bernoulli_mean(&mut self, name: &str, logits: TensorId) -> Result<TensorId> {
        nhwc_of(self, logits, name)?;
        let y = self.activation(name, self.shape(logits).to_vec());
        self.node(BernoulliMean, vec![logits], vec![y]);
        Ok(y)
    }

    /// A binary sample of Bernoulli `logits`, noise from `tensor`. Forward only.
    pub fn bernoulli_sample(&mut self, name: &str, logits: TensorId, tensor: u32) -> Result<TensorId> {
        nhwc_of(self, logits, name)?;
        let y = self.activation(name, self.shape(logits).to_vec());
        self.node(BernoulliSample { tensor }, vec![logits], vec![y]);
        Ok(y)
    }

    /// Dynamic binarization: `x[i] = 1` where `u_i < probs[i]`, else 0, with
    /// u_i the uniform of flat NHWC element i of `tensor`'s noise at the run's
    /// step (`kernels::bernoulli::reference::uniform`). No gradient (data).
    pub fn binarize(&mut self, name: &str, probs: TensorId, tensor: u32) -> Result<TensorId> {
        nhwc_of(self, probs, name)?;
        let y = self.activation(name, self.shape(probs).to_vec());
        self.node(Binarize { tensor }, vec![probs], vec![y]);
        Ok(y)
    }
}

impl OpRule for BernoulliNll {
    fn name(&self) -> &'static str {
        "bernoulli_nll"
    }

    fn backward(&self, b: &mut Backward<'_>) -> Result<()> {
        if !b.wants(0) {
            return Ok(());
        }
        let dl = b.grad_like(0);
        let inputs = vec![b.input(0), b.input(1), b.dy()];
        b.node(BernoulliNllBackward, inputs, vec![dl]);
        b.push(0, dl);
        Ok(())
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        Ok(vec![reference::nll(&spec(c.in_shape(0)), c.input(0), c.input(1))])
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        let s = spec(l.in_shape(0));
        let partials = l.scratch(s.partials_len());
        kernels::nll(l.ctx, &s, l.input(0), l.input(1), partials, l.output(0))
    }

    fn scratch_len(&self, g: &Graph, node: &Node) -> usize {
        spec(g.shape(node.inputs[0])).partials_len()
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

impl OpRule for BernoulliNllBackward {
    fn name(&self) -> &'static str {
        "bernoulli_nll_backward"
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        let s = spec(c.in_shape(0));
        Ok(vec![reference::nll_grad(&s, c.input(0), c.input(1), c.input(2))])
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        let s = spec(l.in_shape(0));
        // The fused kernel also writes the NLL, into the side buffer.
        let nll = BufView { len: s.n, ..l.side() };
        let partials = l.scratch(s.partials_len());
        let (logits, target, dnll) = (l.input(0), l.input(1), l.input(2));
        kernels::nll_grad(l.ctx, &s, logits, target, dnll, l.output(0), partials, nll)
    }

    fn scratch_len(&self, g: &Graph, node: &Node) -> usize {
        spec(g.shape(node.inputs[0])).partials_len()
    }

    fn side_len(&self, g: &Graph, node: &Node) -> usize {
        g.shape(node.inputs[2])[0]
    }

    fn binding_split(&self, _: &Graph, _: &Node) -> Option<BindingSplit> {
        let inputs = vec![Part::Cut, Part::Cut, Part::PerImage];
        Some(BindingSplit::new(Unit::Pixels, inputs, vec![Part::Cut]))
    }
}

impl OpRule for BernoulliMean {
    fn name(&self) -> &'static str {
        "bernoulli_mean"
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        Ok(vec![reference::mean(c.input(0))])
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        let s = spec(l.in_shape(0));
        Ok(vec![kernels::mean(l.ctx, &s, l.input(0), l.output(0))?])
    }

    fn binding_split(&self, _: &Graph, node: &Node) -> Option<BindingSplit> {
        Some(BindingSplit::cut_all(Unit::Pixels, node))
    }
}

/// The global-batch index of the first element a lowering binds: element i
/// draws word i % 4 of Philox block i / 4, so a slice or a rank's shard passes
/// its first element, not a skipped key (it may start inside a block).
fn first_element(l: &LowerCall<'_>) -> usize {
    l.first_image() * per_image(l.g.shape(l.node.outputs[0])) + l.out_offset(0)
}

impl OpRule for BernoulliSample {
    fn name(&self) -> &'static str {
        "bernoulli_sample"
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        let s = spec(c.in_shape(0));
        let first = c.first_image() * per_image(c.out_shape(0));
        Ok(vec![reference::sample(&s, c.input(0), &c.key(self.tensor), first)])
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        // Element i draws word i % 4 of Philox block i / 4: a slice passes its
        // first element, not a skipped key (it may start inside a block).
        let (s, key, first) = (spec(l.in_shape(0)), l.key(self.tensor), first_element(l));
        Ok(vec![kernels::sample(l.ctx, &s, l.input(0), key, first, l.output(0))?])
    }

    fn noisy(&self) -> bool {
        true
    }

    fn binding_split(&self, _: &Graph, node: &Node) -> Option<BindingSplit> {
        Some(BindingSplit::cut_all(Unit::Pixels, node))
    }
}

impl OpRule for Binarize {
    fn name(&self) -> &'static str {
        "binarize"
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        let first = c.first_image() * per_image(c.out_shape(0));
        Ok(vec![reference::sample_probs(c.input(0), &c.key(self.tensor), first)])
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        // As in BernoulliSample: the slice's first element, not a skipped key.
        let (s, key, first) = (spec(l.in_shape(0)), l.key(self.tensor), first_element(l));
        Ok(vec![kernels::sample_probs(
            l.ctx,
            &s,
            l.input(0),
            key,
            first,
            l.output(0),
        )?])
    }

    fn noisy(&self) -> bool {
        true
    }

    fn binding_split(&self, _: &Graph, node: &Node) -> Option<BindingSplit> {
        Some(BindingSplit::cut_all(Unit::Pixels, node))
    }
}
