//! Graph construction with shape inference: each method checks its inputs'
//! shapes, adds one node and returns its output tensor(s).

use super::ir::{Graph, Op, Role, Sampling, TensorId};
use crate::error::{shape_err, Result};

fn nhwc(g: &Graph, t: TensorId, op: &str) -> Result<[usize; 4]> {
    match g.shape(t) {
        &[n, h, w, c] => Ok([n, h, w, c]),
        s => shape_err(format!("{op}: {} must be NHWC, has shape {s:?}", g.tensors[t].name)),
    }
}

impl Graph {
    fn activation(&mut self, name: &str, shape: Vec<usize>) -> TensorId {
        self.tensor(name, shape, Role::Activation)
    }

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
        let [n, h, wd, cin] = nhwc(self, x, name)?;
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
        let y = self.activation(name, vec![n, h, wd, cout]);
        let mut inputs = vec![x, w];
        inputs.extend(bias);
        inputs.extend(residual);
        self.node(
            Op::Conv2d {
                k,
                gelu_input,
                bias: bias.is_some(),
                residual: residual.is_some(),
            },
            inputs,
            vec![y],
        );
        Ok(y)
    }

    pub fn add(&mut self, name: &str, a: TensorId, b: TensorId) -> Result<TensorId> {
        if self.shape(a) != self.shape(b) {
            return shape_err(format!(
                "{name}: cannot add {:?} and {:?}",
                self.shape(a),
                self.shape(b)
            ));
        }
        let y = self.activation(name, self.shape(a).to_vec());
        self.node(Op::Add, vec![a, b], vec![y]);
        Ok(y)
    }

    pub fn avg_pool(&mut self, name: &str, x: TensorId, k: usize) -> Result<TensorId> {
        let [n, h, w, c] = nhwc(self, x, name)?;
        if k == 0 || h % k != 0 || w % k != 0 {
            return shape_err(format!("{name}: {h}x{w} is not divisible by the pool factor {k}"));
        }
        let y = self.activation(name, vec![n, h / k, w / k, c]);
        self.node(Op::AvgPool { k }, vec![x], vec![y]);
        Ok(y)
    }

    pub fn upsample(&mut self, name: &str, x: TensorId, k: usize) -> Result<TensorId> {
        let [n, h, w, c] = nhwc(self, x, name)?;
        let y = self.activation(name, vec![n, h * k, w * k, c]);
        self.node(Op::Upsample { k }, vec![x], vec![y]);
        Ok(y)
    }

    pub fn slice_channels(&mut self, name: &str, x: TensorId, start: usize, end: usize) -> Result<TensorId> {
        let [n, h, w, c] = nhwc(self, x, name)?;
        if start >= end || end > c {
            return shape_err(format!("{name}: channels [{start}, {end}) of a {c}-channel tensor"));
        }
        let y = self.activation(name, vec![n, h, w, end - start]);
        self.node(Op::SliceChannels { start, end }, vec![x], vec![y]);
        Ok(y)
    }

    /// x at channels `[start, start + C)` of a zero tensor with `total` channels.
    pub fn place_channels(&mut self, name: &str, x: TensorId, start: usize, total: usize) -> Result<TensorId> {
        let [n, h, w, c] = nhwc(self, x, name)?;
        if start + c > total {
            return shape_err(format!("{name}: {c} channels at {start} do not fit in {total}"));
        }
        let y = self.activation(name, vec![n, h, w, total]);
        self.node(Op::PlaceChannels { start, total }, vec![x], vec![y]);
        Ok(y)
    }

    pub fn concat(&mut self, name: &str, a: TensorId, b: TensorId) -> Result<TensorId> {
        let [n, h, w, ca] = nhwc(self, a, name)?;
        let [n2, h2, w2, cb] = nhwc(self, b, name)?;
        if (n, h, w) != (n2, h2, w2) {
            return shape_err(format!(
                "{name}: cannot concat {:?} and {:?}",
                self.shape(a),
                self.shape(b)
            ));
        }
        let y = self.activation(name, vec![n, h, w, ca + cb]);
        self.node(Op::Concat, vec![a, b], vec![y]);
        Ok(y)
    }

    pub fn broadcast_batch(&mut self, name: &str, x: TensorId, n: usize) -> Result<TensorId> {
        let [one, h, w, c] = nhwc(self, x, name)?;
        if one != 1 {
            return shape_err(format!("{name}: broadcast needs a batch of 1, got {one}"));
        }
        let y = self.activation(name, vec![n, h, w, c]);
        self.node(Op::BroadcastBatch { n }, vec![x], vec![y]);
        Ok(y)
    }

    pub fn affine(&mut self, name: &str, x: TensorId, gain: TensorId, bias: TensorId) -> Result<TensorId> {
        let [_, _, _, c] = nhwc(self, x, name)?;
        if self.shape(gain) != [c] || self.shape(bias) != [c] {
            return shape_err(format!("{name}: gain and bias must be [{c}]"));
        }
        let y = self.activation(name, self.shape(x).to_vec());
        self.node(Op::Affine, vec![x, gain, bias], vec![y]);
        Ok(y)
    }

    /// Returns (z, per-element KL).
    pub fn reparam_kl(
        &mut self,
        name: &str,
        q: (TensorId, TensorId),
        p: (TensorId, TensorId),
        sampling: Sampling,
        tensor: u32,
    ) -> Result<(TensorId, TensorId)> {
        let s = self.shape(q.0).to_vec();
        if [q.1, p.0, p.1].iter().any(|&t| self.shape(t) != s.as_slice()) {
            return shape_err(format!("{name}: posterior and prior parameters must all be {s:?}"));
        }
        let z = self.activation(&format!("{name}.z"), s.clone());
        let kl = self.activation(&format!("{name}.kl"), s);
        self.node(
            Op::ReparamKl { sampling, tensor },
            vec![q.0, q.1, p.0, p.1],
            vec![z, kl],
        );
        Ok((z, kl))
    }

    /// A prior sample at `temperature` (official: `logsig_p += ln t`).
    pub fn prior_sample(
        &mut self,
        name: &str,
        p: (TensorId, TensorId),
        temperature: f32,
        tensor: u32,
    ) -> Result<TensorId> {
        if self.shape(p.0) != self.shape(p.1) {
            return shape_err(format!("{name}: mu_p and logsig_p shapes differ"));
        }
        let z = self.activation(name, self.shape(p.0).to_vec());
        self.node(Op::PriorSample { temperature, tensor }, vec![p.0, p.1], vec![z]);
        Ok(z)
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
        let [n, h, w, cl] = nhwc(self, l, name)?;
        let per_mixture = if channels == 1 { 3 } else { 10 };
        if !matches!(channels, 1 | 3) || cl % per_mixture != 0 {
            return shape_err(format!(
                "{name}: {cl} mixture channels do not describe {channels}-channel images"
            ));
        }
        let x = self.activation(name, vec![n, h, w, channels]);
        self.node(Op::DmolSample { low_bit, tensor }, vec![l], vec![x]);
        Ok(x)
    }

    pub fn sum_per_image(&mut self, name: &str, x: TensorId) -> Result<TensorId> {
        let n = self.shape(x)[0];
        let y = self.activation(name, vec![n]);
        self.node(Op::SumPerImage, vec![x], vec![y]);
        Ok(y)
    }

    /// Per-image NLL of `target` under the mixture of logistics `l`.
    pub fn dmol_nll(&mut self, name: &str, l: TensorId, target: TensorId, low_bit: bool) -> Result<TensorId> {
        let [n, h, w, cl] = nhwc(self, l, name)?;
        let [n2, h2, w2, c] = nhwc(self, target, name)?;
        let per_mixture = match c {
            1 => 3,
            3 => 10,
            _ => return shape_err(format!("{name}: target must have 1 or 3 channels, has {c}")),
        };
        if (n, h, w) != (n2, h2, w2) || cl % per_mixture != 0 {
            return shape_err(format!(
                "{name}: mixture parameters {:?} do not fit target {:?} ({per_mixture} channels per mixture)",
                self.shape(l),
                self.shape(target)
            ));
        }
        let y = self.activation(name, vec![n]);
        self.node(Op::DmolNll { low_bit }, vec![l, target], vec![y]);
        Ok(y)
    }

    /// loss = mean over images of (nll + Σ kl) / dims.
    pub fn elbo(&mut self, name: &str, nll: TensorId, kls: &[TensorId], dims: usize) -> Result<TensorId> {
        let n = self.shape(nll).to_vec();
        if kls.iter().any(|&k| self.shape(k) != n.as_slice()) {
            return shape_err(format!("{name}: every KL sum must be {n:?}"));
        }
        let y = self.activation(name, vec![1]);
        let mut inputs = vec![nll];
        inputs.extend_from_slice(kls);
        self.node(Op::Elbo { dims }, inputs, vec![y]);
        Ok(y)
    }
}
