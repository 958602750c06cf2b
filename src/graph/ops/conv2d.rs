//! Convolution, stride 1, same padding: `y = conv(gelu?(x), w) + bias + residual`,
//! and its backward (data, weight + bias in one pass over dy, bias alone).
//! Kernels: `crate::ops::conv2d`.

use super::{nhwc, nhwc_of, OpRule};
use crate::error::{shape_err, Result};
use crate::gpu::{BufView, Dispatch};
use crate::graph::autodiff::Backward;
use crate::graph::cpu::CpuCall;
use crate::graph::gpu::{LowerCall, Part, Split, Unit};
use crate::graph::ir::{Graph, Node, TensorId};
use crate::ops::conv2d::{self as kernels, reference, Conv2dShape};

/// in: x, w, [bias], [residual] → y.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conv2d {
    pub k: usize,
    pub gelu_input: bool,
    pub bias: bool,
    pub residual: bool,
    /// The model's input channels, before any zero padding (for model FLOPs).
    pub model_cin: usize,
}

/// in: dy, w, x, [addend] → dx (through the input GELU when `gelu_input`),
/// plus `addend` (another gradient of x, summed on the way out) when given;
/// with `act` also gelu(x), computed beside dx for the weight gradient.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conv2dBackwardData {
    pub k: usize,
    pub gelu_input: bool,
    pub act: bool,
    pub addend: bool,
    pub model_cin: usize,
}

/// in: dy, x → dw, and db too when `bias`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conv2dBackwardWeight {
    pub k: usize,
    pub gelu_input: bool,
    pub bias: bool,
    pub model_cin: usize,
}

/// in: dy → db (sum over N, H, W).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conv2dBackwardBias;

/// FLOPs of the model's conv: the shape's, without zero-padded input channels.
fn model_flops(s: Conv2dShape, model_cin: usize) -> f64 {
    Conv2dShape { cin: model_cin, ..s }.flops()
}

/// How a conv's node splits: a 1x1 conv by pixels, a 3x3 conv by whole images.
fn conv_split(k: usize, inputs: Vec<Part>, outputs: Vec<Part>) -> Split {
    if k == 1 {
        Split::new(Unit::Pixels, inputs, outputs)
    } else {
        Split::new(Unit::Images, inputs, outputs).because("a 3x3 conv's rows would need a halo of their neighbours")
    }
}

/// The conv reading `x` (NHWC) into `cout` channels through a `k`x`k` kernel.
fn conv_shape(x: &[usize], cout: usize, k: usize, gelu: bool) -> Conv2dShape {
    let [n, h, w, cin] = nhwc(x);
    Conv2dShape::new(n, h, w, cin, cout, k).with_gelu(gelu)
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
        let [n, h, wd, cin] = nhwc_of(self, x, name)?;
        let (cout, k) = match *self.shape(w) {
            [o, kh, kw, i] if kh == kw && (kh == 1 || kh == 3) && i == cin => (o, kh),
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
        let y = self.activation(name, vec![n, h, wd, cout]);
        let mut inputs = vec![x, w];
        inputs.extend(bias);
        inputs.extend(residual);
        let op = Conv2d {
            k,
            gelu_input,
            bias: bias.is_some(),
            residual: residual.is_some(),
            model_cin: cin,
        };
        self.node(op, inputs, vec![y]);
        Ok(y)
    }
}

impl Conv2d {
    fn shape(&self, x: &[usize], w: &[usize]) -> Conv2dShape {
        conv_shape(x, w[0], self.k, self.gelu_input)
            .with_bias(self.bias)
            .with_residual(self.residual)
    }

    /// Input index of the residual (after the optional bias).
    fn residual_input(&self) -> usize {
        2 + self.bias as usize
    }
}

impl OpRule for Conv2d {
    fn name(&self) -> &'static str {
        "conv2d"
    }

    fn backward(&self, b: &mut Backward<'_>) -> Result<()> {
        let (x, w) = (b.input(0), b.input(1));
        let dy = b.dy();
        let Conv2d {
            k,
            gelu_input,
            model_cin,
            ..
        } = *self;
        // With GELU on the input and both gradients wanted, the dx pass also
        // writes gelu(x), which the dw pass then reads as a plain input.
        let act = gelu_input && b.wants(0) && b.wants(1);
        let mut dw_input = (x, gelu_input);
        if b.wants(0) {
            let dx = b.grad_like(0);
            let op = Conv2dBackwardData {
                k,
                gelu_input,
                act,
                addend: false,
                model_cin,
            };
            let mut outputs = vec![dx];
            if act {
                let name = format!("{}.gelu", b.g.tensors[x].name);
                let a = b.g.activation(&name, b.g.shape(x).to_vec());
                outputs.push(a);
                dw_input = (a, false);
            }
            b.node(op, vec![dy, w, x], outputs);
            b.push(0, dx);
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
            };
            b.node(op, vec![dy, dw_input.0], outs);
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
        model_flops(
            self.shape(g.shape(node.inputs[0]), g.shape(node.inputs[1])),
            self.model_cin,
        )
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        let s = self.shape(c.in_shape(0), c.in_shape(1));
        let bias = self.bias.then(|| c.input(2));
        let residual = self.residual.then(|| c.input(self.residual_input()));
        Ok(vec![reference::forward(&s, c.input(0), c.input(1), bias, residual)])
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        let s = self.shape(l.in_shape(0), l.in_shape(1));
        let bias = self.bias.then(|| l.input(2));
        let residual = self.residual.then(|| l.input(self.residual_input()));
        let d = kernels::conv2d_forward(l.ctx, &s, l.input(0), l.input(1), bias, residual, l.output(0))?;
        Ok(vec![d])
    }

    fn split(&self, _: &Graph, _: &Node) -> Option<Split> {
        let mut inputs = vec![Part::Cut, Part::Whole];
        if self.bias {
            inputs.push(Part::Whole);
        }
        if self.residual {
            inputs.push(Part::Cut);
        }
        Some(conv_split(self.k, inputs, vec![Part::Cut]))
    }
}

impl Conv2dBackwardData {
    fn shape(&self, dy: &[usize], x: &[usize]) -> Conv2dShape {
        conv_shape(x, dy[3], self.k, self.gelu_input)
    }
}

impl OpRule for Conv2dBackwardData {
    fn name(&self) -> &'static str {
        "conv2d_backward_data"
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        let s = self.shape(c.in_shape(0), c.in_shape(2));
        let mut dx = reference::backward_input(&s, c.input(2), c.input(1), c.input(0));
        if self.addend {
            dx = crate::ops::elementwise::reference::add(&dx, c.input(3));
        }
        let mut outs = vec![dx];
        if self.act {
            outs.push(crate::ops::elementwise::reference::gelu(c.input(2)));
        }
        Ok(outs)
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        let s = self.shape(l.in_shape(0), l.in_shape(2));
        let scratch = l.scratch(s.backward_input_scratch_len());
        let args = kernels::BackwardInput {
            act: self.act.then(|| l.output(1)),
            transposed: l.transposed_weights(1),
            addend: self.addend.then(|| l.input(3)),
            ..kernels::BackwardInput::plain(l.input(2), l.input(1), l.input(0), scratch, l.output(0))
        };
        kernels::conv2d_backward_input_with(l.ctx, &s, &args)
    }

    fn split(&self, _: &Graph, node: &Node) -> Option<Split> {
        // dy, w, x, [addend] → dx, [act].
        let mut inputs = vec![Part::Cut, Part::Whole, Part::Cut];
        inputs.extend(node.inputs.get(3).map(|_| Part::Cut));
        Some(conv_split(self.k, inputs, vec![Part::Cut; node.outputs.len()]))
    }

    fn scratch_len(&self, g: &Graph, node: &Node) -> usize {
        self.shape(g.shape(node.inputs[0]), g.shape(node.inputs[2]))
            .backward_input_scratch_len()
    }

    fn model_flops(&self, g: &Graph, node: &Node) -> f64 {
        model_flops(
            self.shape(g.shape(node.inputs[0]), g.shape(node.inputs[2])),
            self.model_cin,
        )
    }
}

impl Conv2dBackwardWeight {
    fn shape(&self, dy: &[usize], x: &[usize]) -> Conv2dShape {
        conv_shape(x, dy[3], self.k, self.gelu_input)
    }
}

impl OpRule for Conv2dBackwardWeight {
    fn name(&self) -> &'static str {
        "conv2d_backward_weight"
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        let s = self.shape(c.in_shape(0), c.in_shape(1));
        let mut outs = vec![reference::backward_weight(&s, c.input(1), c.input(0))];
        if self.bias {
            outs.push(reference::backward_bias(&s, c.input(0)));
        }
        Ok(outs)
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        let s = self.shape(l.in_shape(0), l.in_shape(1));
        let db = self.bias.then(|| l.output(1));
        // The tiled path can apply GELU to x once, into the side buffer, instead of per tap.
        let side = l.side();
        let act = (self.gelu_input && s.x_len() <= side.len).then(|| BufView { len: s.x_len(), ..side });
        let scratch = l.scratch(s.backward_weight_scratch_len());
        let (x, dy, dw) = (l.input(1), l.input(0), l.output(0));
        kernels::conv2d_backward_weight(l.ctx, &s, x, dy, scratch, act, dw, db, l.accumulate())
    }

    /// Each slice's sums over its pixels are added into dw and db.
    fn split(&self, _: &Graph, node: &Node) -> Option<Split> {
        let outputs = vec![Part::Accumulate; node.outputs.len()];
        Some(conv_split(self.k, vec![Part::Cut, Part::Cut], outputs))
    }

    fn scratch_len(&self, g: &Graph, node: &Node) -> usize {
        self.shape(g.shape(node.inputs[0]), g.shape(node.inputs[1]))
            .backward_weight_scratch_len()
    }

    fn model_flops(&self, g: &Graph, node: &Node) -> f64 {
        model_flops(
            self.shape(g.shape(node.inputs[0]), g.shape(node.inputs[1])),
            self.model_cin,
        )
    }

    fn side_len(&self, g: &Graph, node: &Node) -> usize {
        if self.gelu_input {
            g.tensors[node.inputs[1]].numel()
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
        Ok(vec![kernels::conv2d_backward_bias(
            l.ctx,
            &s,
            l.input(0),
            l.output(0),
            l.accumulate(),
        )?])
    }

    fn split(&self, _: &Graph, _: &Node) -> Option<Split> {
        Some(Split::new(Unit::Pixels, vec![Part::Cut], vec![Part::Accumulate]))
    }
}

#[cfg(test)]
mod tests {
    use crate::graph::autodiff::append_backward;
    use crate::graph::{Graph, Role};

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
