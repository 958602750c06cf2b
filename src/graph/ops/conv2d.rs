//! Convolution, stride 1, same padding: `y = conv(gelu?(x), w) + bias + residual`,
//! and its backward (data, weight + bias in one pass over dy, bias alone).
//! x may be `cat[x1, x2]` along channels read from the two tensors where they
//! lie (`Graph::conv2d_cat`): no concatenated copy in the forward, dx written
//! as two gradients, dw reading both. Kernels: `crate::kernels::conv2d`.

use super::{nhwc, nhwc_of, OpRule};
use crate::error::{shape_err, Result};
use crate::gpu::{BufView, Dispatch};
use crate::graph::autodiff::Backward;
use crate::graph::executor::cpu::CpuCall;
use crate::graph::executor::{BindingSplit, LowerCall, Part, Unit};
use crate::graph::ir::{Graph, Node, Op, TensorId};
use crate::kernels::conv2d::{self as kernels, reference, Conv2dShape, ConvPass, InputLike, Path};
use crate::kernels::elementwise::reference::{concat_channels, split_channels};

/// in: x, w, [bias], [residual], [x2] → y. With `cat`, the conv's input is
/// `cat[x, x2]` along channels, read from both where they lie.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conv2d {
    pub k: usize,
    pub gelu_input: bool,
    pub bias: bool,
    pub residual: bool,
    /// The model's input channels, before any zero padding (for model FLOPs).
    pub model_cin: usize,
    pub cat: bool,
}

/// in: dy, w, x, [x2], [addend], [addend2] → dx, [act], [dx2]: dx (through
/// the input GELU when `gelu_input`), plus `addend` (another gradient of x,
/// summed on the way out) when given; with `act` also gelu(x), computed beside
/// dx for the weight gradient. With `cat` (x is `cat[x, x2]`), dx2 is the
/// gradient of x2, plus `addend2` when given, and act is gelu(cat[x, x2]),
/// one tensor that the weight gradient reads as a plain input.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conv2dBackwardData {
    pub k: usize,
    pub gelu_input: bool,
    pub act: bool,
    pub addend: bool,
    pub model_cin: usize,
    pub cat: bool,
    pub addend2: bool,
}

/// in: dy, x, [x2] → dw, and db too when `bias`; with `cat`, x is `cat[x, x2]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conv2dBackwardWeight {
    pub k: usize,
    pub gelu_input: bool,
    pub bias: bool,
    pub model_cin: usize,
    pub cat: bool,
}

/// in: dy → db (sum over N, H, W).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conv2dBackwardBias;

/// FLOPs of the model's conv: the shape's, without zero-padded input channels.
fn model_flops(s: Conv2dShape, model_cin: usize) -> f64 {
    Conv2dShape { cin: model_cin, ..s }.flops()
}

/// The shapes of a node's inputs.
fn graph_shapes(g: &Graph, node: &Node) -> Vec<Vec<usize>> {
    node.inputs.iter().map(|&t| g.shape(t).to_vec()).collect()
}

/// The shapes of the inputs a lowering binds: the node's, or one slice's when
/// the node is split over the storage-binding limit.
fn lowered_shapes(l: &LowerCall<'_>) -> Vec<Vec<usize>> {
    (0..l.node.inputs.len()).map(|k| l.in_shape(k).to_vec()).collect()
}

/// The path `pass` of the node runs on, slice by slice: the one chosen for
/// the whole node (`whole`), where it runs on the slice `s`. A split then
/// changes only what each dispatch binds, never the kernel, so per-pixel
/// results stay bit-identical to the unsplit node's, and no slice shape is
/// tuned on its own.
fn node_path(l: &LowerCall<'_>, whole: &Conv2dShape, s: &Conv2dShape, pass: ConvPass) -> Path {
    let path = Path::best(l.ctx, whole, pass);
    if path.runs(l.ctx, s, pass) {
        path
    } else {
        Path::best(l.ctx, s, pass)
    }
}

/// How a conv's node splits: a 1x1 conv by pixels, a 3x3 conv by whole images.
fn conv_binding_split(k: usize, inputs: Vec<Part>, outputs: Vec<Part>) -> BindingSplit {
    if k == 1 {
        BindingSplit::new(Unit::Pixels, inputs, outputs)
    } else {
        BindingSplit::new(Unit::Images, inputs, outputs)
            .because("a 3x3 conv's rows would need a halo of their neighbours")
    }
}

/// The conv reading `x` (NHWC) into `cout` channels through a `k`x`k` kernel;
/// with `x2`, over `cat[x, x2]`.
fn conv_shape(x: &[usize], x2: Option<&[usize]>, cout: usize, k: usize, gelu: bool) -> Conv2dShape {
    let [n, h, w, c1] = nhwc(x);
    match x2 {
        None => Conv2dShape::new(n, h, w, c1, cout, k).with_gelu(gelu),
        Some(x2) => Conv2dShape::new(n, h, w, c1 + x2[3], cout, k)
            .with_gelu(gelu)
            .with_cat(c1),
    }
}

/// Whether the kernels read `cat[x1, x2]` with these channels in place at full
/// speed: the tiled kernels need each half in whole vec4s.
fn cat_in_place(c1: usize, c2: usize) -> bool {
    c1.is_multiple_of(4) && c2.is_multiple_of(4)
}

impl Graph {
    /// `conv(gelu?(x), w) + bias + residual`, stride 1, same padding.
    pub fn conv2d(
        &mut self,
        name: &str,
        x: TensorId,
        w: TensorId,
        bias: Option<TensorId>,
        residual: Option<TensorId>,
        gelu_input: bool,
    ) -> Result<TensorId> {
        let [_, _, _, cin] = nhwc_of(self, x, name)?;
        self.check_conv(name, x, cin, w, bias, residual)?;
        // The fast kernels read input channels four at a time: a thin input
        // (an RGB or greyscale image) and its weights get zero channels up to
        // a multiple of 4, which change no output and get no gradient.
        let (x, w) = if cin % 4 == 0 {
            (x, w)
        } else {
            let padded = cin.next_multiple_of(4);
            (
                self.place_channels(&format!("{name}.x_pad"), x, 0, padded)?,
                self.place_channels(&format!("{name}.w_pad"), w, 0, padded)?,
            )
        };
        self.conv_node(name, &[x], w, bias, residual, gelu_input, cin)
    }

    /// `conv(gelu?(cat[x1, x2]), w) + bias + residual` over the channel
    /// concatenation of x1 and x2, read where they lie: no concatenated copy in
    /// the forward, and dx writes the gradients of x1 and x2 apart. The weights
    /// are one `[out, k, k, c1 + c2]` tensor, as over the concatenation. Where
    /// a half's channels are no multiple of 4 (the fast kernels' vec4s), the
    /// concatenation is materialised instead, as `concat` then `conv2d`.
    #[allow(clippy::too_many_arguments)]
    pub fn conv2d_cat(
        &mut self,
        name: &str,
        x1: TensorId,
        x2: TensorId,
        w: TensorId,
        bias: Option<TensorId>,
        residual: Option<TensorId>,
        gelu_input: bool,
    ) -> Result<TensorId> {
        let [n, h, wd, c1] = nhwc_of(self, x1, name)?;
        let [n2, h2, wd2, c2] = nhwc_of(self, x2, name)?;
        if (n, h, wd) != (n2, h2, wd2) {
            return shape_err(format!(
                "{name}: cannot concatenate {:?} and {:?} along channels",
                self.shape(x1),
                self.shape(x2)
            ));
        }
        if !cat_in_place(c1, c2) {
            let cat = self.concat(&format!("{name}.cat"), x1, x2)?;
            return self.conv2d(name, cat, w, bias, residual, gelu_input);
        }
        self.check_conv(name, x1, c1 + c2, w, bias, residual)?;
        self.conv_node(name, &[x1, x2], w, bias, residual, gelu_input, c1 + c2)
    }

    /// The weight, bias and residual shapes of a conv over `cin` channels of x's pixels.
    fn check_conv(
        &self,
        name: &str,
        x: TensorId,
        cin: usize,
        w: TensorId,
        bias: Option<TensorId>,
        residual: Option<TensorId>,
    ) -> Result<()> {
        let [n, h, wd, _] = nhwc_of(self, x, name)?;
        let cout = match *self.shape(w) {
            [o, kh, kw, i] if kh == kw && (kh == 1 || kh == 3) && i == cin => o,
            ref s => {
                return shape_err(format!(
                    "{name}: weight {s:?} does not fit input channels {cin} (want [out, k, k, {cin}], k 1 or 3)"
                ))
            }
        };
        if let Some(b) = bias {
            if self.shape(b) != [cout] {
                return shape_err(format!("{name}: bias {:?} is not [{cout}]", self.shape(b)));
            }
        }
        if let Some(r) = residual {
            if self.shape(r) != [n, h, wd, cout] {
                return shape_err(format!(
                    "{name}: residual {:?} is not [{n}, {h}, {wd}, {cout}]",
                    self.shape(r)
                ));
            }
        }
        Ok(())
    }

    /// The conv node over `xs` (one input, or the two halves of a cat).
    #[allow(clippy::too_many_arguments)]
    fn conv_node(
        &mut self,
        name: &str,
        xs: &[TensorId],
        w: TensorId,
        bias: Option<TensorId>,
        residual: Option<TensorId>,
        gelu_input: bool,
        model_cin: usize,
    ) -> Result<TensorId> {
        let [n, h, wd, _] = nhwc_of(self, xs[0], name)?;
        let [cout, k, ..] = *self.shape(w) else {
            return shape_err(format!("{name}: weight {:?} is not [out, k, k, in]", self.shape(w)));
        };
        let y = self.activation(name, vec![n, h, wd, cout]);
        let mut inputs = vec![xs[0], w];
        inputs.extend(bias);
        inputs.extend(residual);
        inputs.extend(xs.get(1));
        let op = Conv2d {
            k,
            gelu_input,
            bias: bias.is_some(),
            residual: residual.is_some(),
            model_cin,
            cat: xs.len() == 2,
        };
        self.node(op, inputs, vec![y]);
        Ok(y)
    }
}

impl Conv2d {
    fn shape(&self, x: &[usize], w: &[usize], x2: Option<&[usize]>) -> Conv2dShape {
        conv_shape(x, x2, w[0], self.k, self.gelu_input)
            .with_bias(self.bias)
            .with_residual(self.residual)
    }

    /// Input index of the residual (after the optional bias).
    fn residual_input(&self) -> usize {
        2 + self.bias as usize
    }

    /// Input index of x2 (after the optional bias and residual).
    fn x2_input(&self) -> usize {
        2 + self.bias as usize + self.residual as usize
    }

    fn node_shape(&self, g: &Graph, node: &Node) -> Conv2dShape {
        self.shape_of(&graph_shapes(g, node))
    }

    fn shape_of(&self, ins: &[Vec<usize>]) -> Conv2dShape {
        let x2 = self.cat.then(|| &ins[self.x2_input()][..]);
        self.shape(&ins[0], &ins[1], x2)
    }
}

impl OpRule for Conv2d {
    fn name(&self) -> &'static str {
        "conv2d"
    }

    fn backward(&self, b: &mut Backward<'_>) -> Result<()> {
        let (x, w) = (b.input(0), b.input(1));
        let x2 = self.cat.then(|| b.input(self.x2_input()));
        let dy = b.dy();
        let Conv2d {
            k,
            gelu_input,
            model_cin,
            cat,
            ..
        } = *self;
        let wants_dx = b.wants(0) || (cat && b.wants(self.x2_input()));
        // With GELU on the input and both gradients wanted, the dx pass also
        // writes gelu(x), which the dw pass then reads as a plain input; over
        // a cat, gelu(cat[x, x2]) as one tensor (it lives from dx to dw only).
        // Not where the dw applies GELU once per element itself.
        let act = gelu_input && wants_dx && b.wants(1) && !kernels::dw_gelu_once(k, b.g.shape(w)[0]);
        let mut dw_input = (vec![x], gelu_input);
        dw_input.0.extend(x2);
        if wants_dx {
            let dx = b.grad_like(0);
            let op = Conv2dBackwardData {
                k,
                gelu_input,
                act,
                addend: false,
                model_cin,
                cat,
                addend2: false,
            };
            let mut outputs = vec![dx];
            if act {
                let mut shape = b.g.shape(x).to_vec();
                shape[3] += x2.map_or(0, |x2| b.g.shape(x2)[3]);
                let name = match x2 {
                    Some(x2) => format!("{}.gelu_cat", b.g.tensors[x2].name),
                    None => format!("{}.gelu", b.g.tensors[x].name),
                };
                let a = b.g.activation(&name, shape);
                outputs.push(a);
                dw_input = (vec![a], false);
            }
            let mut inputs = vec![dy, w, x];
            inputs.extend(x2);
            let dx2 = cat.then(|| b.grad_like(self.x2_input()));
            outputs.extend(dx2);
            b.node(op, inputs, outputs);
            if b.wants(0) {
                b.push(0, dx);
            }
            if let Some(dx2) = dx2.filter(|_| b.wants(self.x2_input())) {
                b.push(self.x2_input(), dx2);
            }
        }
        let want_bias = self.bias && b.wants(2);
        if b.wants(1) {
            // dw and db come from one pass over dy.
            let dw = b.grad_like(1);
            let mut outs = vec![dw];
            if want_bias {
                outs.push(b.grad_like(2));
                b.push(2, outs[1]);
            }
            let op = Conv2dBackwardWeight {
                k,
                gelu_input: dw_input.1,
                bias: want_bias,
                model_cin,
                cat: dw_input.0.len() == 2,
            };
            let mut inputs = vec![dy];
            inputs.extend(dw_input.0);
            b.node(op, inputs, outs);
            b.push(1, dw);
        } else if want_bias {
            let db = b.grad_like(2);
            b.node(Conv2dBackwardBias, vec![dy], vec![db]);
            b.push(2, db);
        }
        let r = self.residual_input();
        if self.residual && b.wants(r) {
            b.push(r, dy);
        }
        Ok(())
    }

    fn model_flops(&self, g: &Graph, node: &Node) -> f64 {
        model_flops(self.node_shape(g, node), self.model_cin)
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        let s = self.node_shape(c.g, c.node);
        let bias = self.bias.then(|| c.input(2));
        let residual = self.residual.then(|| c.input(self.residual_input()));
        // The reference over the concatenated input.
        let x = match self.cat {
            true => concat_channels(
                c.input(0),
                s.cat_split(),
                c.input(self.x2_input()),
                s.cin - s.cat_split(),
            ),
            false => c.input(0).to_vec(),
        };
        Ok(vec![reference::forward(&s, &x, c.input(1), bias, residual)])
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        let s = self.shape_of(&lowered_shapes(l));
        let bias = self.bias.then(|| l.input(2));
        let residual = self.residual.then(|| l.input(self.residual_input()));
        let x = InputLike {
            first: l.input(0),
            second: self.cat.then(|| l.input(self.x2_input())),
        };
        let args = kernels::Forward {
            x,
            w: l.input(1),
            bias,
            residual,
            scratch: l.scratch(s.forward_scratch_len()),
            y: l.output(0),
        };
        let path = node_path(l, &self.node_shape(l.g, l.node), &s, ConvPass::Forward);
        kernels::forward(l.ctx, path, &s, &args)
    }

    /// Room for x (and w) with zero-padded input channels where the tiled
    /// forward needs it (a cat it does not read in place; a ragged Cin, which
    /// `Graph::conv2d` pads itself); 0 for most convs.
    fn scratch_len(&self, g: &Graph, node: &Node) -> usize {
        self.node_shape(g, node).forward_scratch_len()
    }

    fn binding_split(&self, _: &Graph, _: &Node) -> Option<BindingSplit> {
        let mut inputs = vec![Part::Cut, Part::Whole];
        if self.bias {
            inputs.push(Part::Whole);
        }
        if self.residual {
            inputs.push(Part::Cut);
        }
        if self.cat {
            inputs.push(Part::Cut);
        }
        Some(conv_binding_split(self.k, inputs, vec![Part::Cut]))
    }
}

impl Conv2dBackwardData {
    fn shape(&self, g: &Graph, node: &Node) -> Conv2dShape {
        self.shape_of(&graph_shapes(g, node))
    }

    fn shape_of(&self, ins: &[Vec<usize>]) -> Conv2dShape {
        let x2 = self.cat.then(|| &ins[3][..]);
        conv_shape(&ins[2], x2, ins[0][3], self.k, self.gelu_input)
    }

    /// Input index of the addend of dx (after x and x2).
    fn addend_input(&self) -> usize {
        3 + self.cat as usize
    }

    /// Input index of the addend of dx2.
    fn addend2_input(&self) -> usize {
        self.addend_input() + self.addend as usize
    }

    /// Output index of dx2 (after act).
    fn dx2_output(&self) -> usize {
        1 + self.act as usize
    }

    /// Lets the dx pass of `node` add `addend` to its output `part` in its
    /// epilogue, when `part` is a gradient it writes (dx, or dx2 of a cat) that
    /// has no addend yet; false (and `node` unchanged) otherwise.
    pub(crate) fn fold_addend(node: &mut Node, part: TensorId, addend: TensorId) -> bool {
        let Op::Conv2dBackwardData(op) = &mut node.op else {
            return false;
        };
        if node.outputs[0] == part && !op.addend {
            op.addend = true;
            node.inputs.insert(op.addend_input(), addend);
            return true;
        }
        if op.cat && node.outputs[op.dx2_output()] == part && !op.addend2 {
            op.addend2 = true;
            node.inputs.insert(op.addend2_input(), addend);
            return true;
        }
        false
    }

    /// Whether [`Conv2dBackwardData::fold_addend`] would take an addend for `part`.
    pub(crate) fn can_fold(node: &Node, part: TensorId) -> bool {
        let Op::Conv2dBackwardData(op) = &node.op else {
            return false;
        };
        (node.outputs[0] == part && !op.addend) || (op.cat && node.outputs[op.dx2_output()] == part && !op.addend2)
    }
}

impl OpRule for Conv2dBackwardData {
    fn name(&self) -> &'static str {
        "conv2d_backward_data"
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        use crate::kernels::elementwise::reference::{add, gelu};
        let s = self.shape(c.g, c.node);
        let (c1, c2) = (s.cat_split(), s.cin - s.cat_split());
        // The reference over the concatenated input, its gradient split again.
        let x = match self.cat {
            true => concat_channels(c.input(2), c1, c.input(3), c2),
            false => c.input(2).to_vec(),
        };
        let dx = reference::backward_input(&s, &x, c.input(1), c.input(0));
        let (mut dx, mut dx2) = match self.cat {
            true => split_channels(&dx, c1, c2),
            false => (dx, Vec::new()),
        };
        if self.addend {
            dx = add(&dx, c.input(self.addend_input()));
        }
        if self.addend2 {
            dx2 = add(&dx2, c.input(self.addend2_input()));
        }
        let mut outs = vec![dx];
        if self.act {
            outs.push(gelu(&x));
        }
        if self.cat {
            outs.push(dx2);
        }
        Ok(outs)
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        let s = self.shape_of(&lowered_shapes(l));
        let scratch = l.scratch(s.backward_input_scratch_len());
        let x = InputLike {
            first: l.input(2),
            second: self.cat.then(|| l.input(3)),
        };
        let dx = InputLike {
            first: l.output(0),
            second: self.cat.then(|| l.output(self.dx2_output())),
        };
        let args = kernels::BackwardInput {
            act: self.act.then(|| l.output(1)),
            transposed: l.transposed_weights(1),
            addend: self.addend.then(|| l.input(self.addend_input())),
            addend2: self.addend2.then(|| l.input(self.addend2_input())),
            ..kernels::BackwardInput::plain(x, l.input(1), l.input(0), scratch, dx)
        };
        let path = node_path(l, &self.shape(l.g, l.node), &s, ConvPass::BackwardInput);
        kernels::backward_input(l.ctx, path, &s, &args)
    }

    fn binding_split(&self, _: &Graph, node: &Node) -> Option<BindingSplit> {
        // dy, w, x, [x2], [addend], [addend2] → dx, [act], [dx2]: all cut but w.
        let mut inputs = vec![Part::Cut; node.inputs.len()];
        inputs[1] = Part::Whole;
        Some(conv_binding_split(self.k, inputs, vec![Part::Cut; node.outputs.len()]))
    }

    fn scratch_len(&self, g: &Graph, node: &Node) -> usize {
        self.shape(g, node).backward_input_scratch_len()
    }

    fn model_flops(&self, g: &Graph, node: &Node) -> f64 {
        model_flops(self.shape(g, node), self.model_cin)
    }
}

impl Conv2dBackwardWeight {
    fn shape(&self, g: &Graph, node: &Node) -> Conv2dShape {
        self.shape_of(&graph_shapes(g, node))
    }

    fn shape_of(&self, ins: &[Vec<usize>]) -> Conv2dShape {
        let x2 = self.cat.then(|| &ins[2][..]);
        conv_shape(&ins[1], x2, ins[0][3], self.k, self.gelu_input)
    }
}

impl OpRule for Conv2dBackwardWeight {
    fn name(&self) -> &'static str {
        "conv2d_backward_weight"
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        let s = self.shape(c.g, c.node);
        let x = match self.cat {
            true => concat_channels(c.input(1), s.cat_split(), c.input(2), s.cin - s.cat_split()),
            false => c.input(1).to_vec(),
        };
        let mut outs = vec![reference::backward_weight(&s, &x, c.input(0))];
        if self.bias {
            outs.push(reference::backward_bias(&s, c.input(0)));
        }
        Ok(outs)
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        let s = self.shape_of(&lowered_shapes(l));
        let db = self.bias.then(|| l.output(1));
        // The tiled path can apply GELU to x once, into the side buffer, instead of per tap.
        let side = l.side();
        let act = (self.side_len(l.g, l.node) > 0 && s.act_len() <= side.len).then(|| BufView {
            len: s.act_len(),
            ..side
        });
        let scratch = l.scratch(s.backward_weight_scratch_len());
        let x = InputLike {
            first: l.input(1),
            second: self.cat.then(|| l.input(2)),
        };
        let path = node_path(l, &self.shape(l.g, l.node), &s, ConvPass::BackwardWeight);
        let args = kernels::BackwardWeight {
            x,
            dy: l.input(0),
            scratch,
            act,
            dw: l.output(0),
            db,
            accumulate: l.accumulate(),
        };
        kernels::backward_weight(l.ctx, path, &s, &args)
    }

    /// Each slice's sums over its pixels are added into dw and db.
    fn binding_split(&self, _: &Graph, node: &Node) -> Option<BindingSplit> {
        let outputs = vec![Part::Accumulate; node.outputs.len()];
        Some(conv_binding_split(self.k, vec![Part::Cut; node.inputs.len()], outputs))
    }

    fn scratch_len(&self, g: &Graph, node: &Node) -> usize {
        self.shape(g, node).backward_weight_scratch_len()
    }

    fn model_flops(&self, g: &Graph, node: &Node) -> f64 {
        model_flops(self.shape(g, node), self.model_cin)
    }

    fn side_len(&self, g: &Graph, node: &Node) -> usize {
        let s = self.shape(g, node);
        if self.gelu_input && !kernels::dw_gelu_once(s.k, s.cout) {
            s.act_len()
        } else {
            0
        }
    }
}

/// dy viewed as a 1x1 conv's output, for the bias reduction.
fn bias_shape(dy: &[usize]) -> Conv2dShape {
    let [n, h, w, c] = nhwc(dy);
    Conv2dShape::new(n, h, w, c, c, 1)
}

impl OpRule for Conv2dBackwardBias {
    fn name(&self) -> &'static str {
        "conv2d_backward_bias"
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        Ok(vec![reference::backward_bias(&bias_shape(c.in_shape(0)), c.input(0))])
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        let s = bias_shape(l.in_shape(0));
        Ok(vec![kernels::backward_bias(
            l.ctx,
            &s,
            l.input(0),
            l.output(0),
            l.accumulate(),
        )?])
    }

    fn binding_split(&self, _: &Graph, _: &Node) -> Option<BindingSplit> {
        Some(BindingSplit::new(Unit::Pixels, vec![Part::Cut], vec![Part::Accumulate]))
    }
}

#[cfg(test)]
mod tests {
    use crate::graph::autodiff::append_backward;
    use crate::graph::executor::cpu::{run, Noise};
    use crate::graph::{Graph, Op, Role, TensorId};
    use crate::kernels::testdata::TestRng;

    /// Two convs over `cat[x1, x2]` (as decoder levels read an encoder
    /// activation), x1 also read by a residual conv, then a 3x3 and the loss:
    /// in place (`conv2d_cat`) or over a materialised concat. Returns the graph,
    /// its params and the loss.
    fn two_cats(in_place: bool, c1: usize, c2: usize) -> (Graph, Vec<TensorId>, TensorId) {
        let mut g = Graph::default();
        let param = |g: &mut Graph, name: &str, shape: Vec<usize>| g.tensor(name, shape, Role::Param);
        let x1 = param(&mut g, "x1", vec![2, 3, 3, c1]);
        let x2 = param(&mut g, "x2", vec![2, 3, 3, c2]);
        let w = param(&mut g, "w", vec![8, 1, 1, c1 + c2]);
        let b = param(&mut g, "b", vec![8]);
        let wb = param(&mut g, "wb", vec![8, 1, 1, c1 + c2]);
        let w3 = param(&mut g, "w3", vec![c1, 3, 3, c1]);
        let w2 = param(&mut g, "w2", vec![5, 3, 3, 8]);
        let params = vec![x1, x2, w, b, wb, w3, w2];
        let cat_conv = |g: &mut Graph, name: &str, a: TensorId, w: TensorId, bias: Option<TensorId>| {
            if in_place {
                g.conv2d_cat(name, a, x2, w, bias, None, true).unwrap()
            } else {
                let cat = g.concat(&format!("{name}.cat"), a, x2).unwrap();
                g.conv2d(name, cat, w, bias, None, true).unwrap()
            }
        };
        let y1 = cat_conv(&mut g, "y1", x1, w, Some(b));
        let x1b = g.conv2d("x1b", x1, w3, None, Some(x1), true).unwrap();
        let y2 = cat_conv(&mut g, "y2", x1b, wb, None);
        let y = g.add("y", y1, y2).unwrap();
        let z = g.conv2d("z", y, w2, None, None, true).unwrap();
        let s = g.sum_per_image("s", z).unwrap();
        let loss = g.elbo("loss", s, &[], 1).unwrap();
        append_backward(&mut g).unwrap();
        (g, params, loss)
    }

    #[test]
    fn a_conv_over_a_cat_read_in_place_equals_the_conv_over_the_concatenation() {
        for (c1, c2, in_place) in [(4, 8, true), (3, 5, false)] {
            let (g, params, loss) = two_cats(true, c1, c2);
            let (h, _, loss_h) = two_cats(false, c1, c2);
            let copies = |g: &Graph| g.nodes.iter().filter(|n| matches!(n.op, Op::CopyChannels(_))).count();
            let cat_convs = g
                .nodes
                .iter()
                .filter(|n| matches!(n.op, Op::Conv2d(op) if op.cat))
                .count();
            if in_place {
                // Both concats and the four slices of their gradients are gone.
                assert_eq!((copies(&g), copies(&h)), (0, 6));
                assert_eq!(cat_convs, 2);
            } else {
                // Halves of odd widths: the concatenation is materialised (and padded).
                assert_eq!(cat_convs, 0);
                assert!(copies(&g) >= 2);
            }
            let mut rng = TestRng::new(5);
            let mut values = vec![None; g.tensors.len()];
            let mut other = vec![None; h.tensors.len()];
            for &p in &params {
                let v = rng.vec(g.tensors[p].numel(), -1.0, 1.0);
                values[p] = Some(v.clone());
                other[p] = Some(v);
            }
            run(&g, &mut values, Noise::default()).unwrap();
            run(&h, &mut other, Noise::default()).unwrap();
            assert_eq!(values[loss], other[loss_h], "the forward is bit-identical");
            for ((p, d), (_, d2)) in g.param_grads.iter().zip(&h.param_grads) {
                let (got, want) = (values[*d].as_ref().unwrap(), other[*d2].as_ref().unwrap());
                for (i, (a, b)) in got.iter().zip(want).enumerate() {
                    let name = &g.tensors[*p].name;
                    assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0), "{name}[{i}]: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn model_flops_count_forward_dx_and_dw_at_two_per_multiply_add() {
        let mut g = Graph::default();
        // Three input channels: padded to four for the kernels, counted as three.
        let x = g.tensor("x", vec![2, 4, 4, 3], Role::Param);
        let w = g.tensor("w", vec![5, 3, 3, 3], Role::Param);
        let y = g.conv2d("c", x, w, None, None, true).unwrap();
        let s = g.sum_per_image("s", y).unwrap();
        g.elbo("loss", s, &[], 1).unwrap();
        let forward = 2.0 * (2 * 4 * 4) as f64 * (5 * 3 * 3 * 3) as f64;
        assert_eq!(g.model_flops(), forward);
        append_backward(&mut g).unwrap();
        assert_eq!(g.model_flops(), 3.0 * forward);
    }
}
