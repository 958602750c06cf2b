//! A latent level's draw: the fused reparameterize + KL (posterior draw and
//! its KL to the prior) with its backward, for a direct (VDVAE) or a Ladder
//! VAE posterior, and a prior draw at a temperature for unconditional
//! sampling. With [`Sampling::Importance`] the second output is the
//! single-sample log ratio log q(z|x) − log p(z) (forward only).
//! Kernels: `crate::kernels::reparam_kl`.

use super::{nhwc_of, OpRule};
use crate::error::{shape_err, Error, Result};
use crate::gpu::Dispatch;
use crate::graph::autodiff::Backward;
use crate::graph::executor::cpu::CpuCall;
use crate::graph::executor::{BindingSplit, LowerCall, Part, Unit};
use crate::graph::ir::{Graph, Node, Sampling, TensorId};
use crate::kernels::elementwise::reference as elementwise;
use crate::kernels::reparam_kl::reference::{self, LatentsRef};
use crate::kernels::reparam_kl::{self as kernels, Latents, Packed, Posterior, Reparam, ZMode};
use crate::kernels::rng::RngKey;

/// in: mu_q, logsig_q, mu_p, logsig_p → z, kl (elementwise; the log ratio
/// with [`Sampling::Importance`]); noise from `tensor` of the RNG stream.
/// With [`Posterior::Ladder`] the first two inputs are the bottom-up
/// (mu_d, logsig_d), merged with the prior into the posterior.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReparamKl {
    pub posterior: Posterior,
    pub sampling: Sampling,
    pub tensor: u32,
}

/// in: dz, dkl, mu_q (or mu_d), logsig_q (or logsig_d), mu_p, logsig_p →
/// their four gradients.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReparamKlBackward {
    pub posterior: Posterior,
    pub sampling: Sampling,
    pub tensor: u32,
}

/// in: mu_p, logsig_p → z = mu_p + exp(logsig_p + ln t) · eps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PriorSample {
    pub temperature: f32,
    pub tensor: u32,
}

impl Graph {
    /// The draw of a level with posterior q = (mu_q, logsig_q) and prior p =
    /// (mu_p, logsig_p): returns (z, per-element KL(q‖p), or with
    /// [`Sampling::Importance`] the per-element log q(z) − log p(z)).
    pub fn reparam_kl(
        &mut self,
        name: &str,
        q: (TensorId, TensorId),
        p: (TensorId, TensorId),
        sampling: Sampling,
        tensor: u32,
    ) -> Result<(TensorId, TensorId)> {
        self.latent(name, Posterior::Direct, q, p, sampling, tensor)
    }

    /// A Ladder VAE level: the bottom-up d = (mu_d, logsig_d) and the prior p
    /// merged by precision weighting into the posterior q (Sønderby et al.
    /// 2016); returns (z, per-element KL(q‖p), or with [`Sampling::Importance`]
    /// the per-element log q(z) − log p(z)). The backward reaches all four inputs.
    pub fn reparam_kl_ladder(
        &mut self,
        name: &str,
        d: (TensorId, TensorId),
        p: (TensorId, TensorId),
        sampling: Sampling,
        tensor: u32,
    ) -> Result<(TensorId, TensorId)> {
        self.latent(name, Posterior::Ladder, d, p, sampling, tensor)
    }

    fn latent(
        &mut self,
        name: &str,
        posterior: Posterior,
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
        let op = ReparamKl {
            posterior,
            sampling,
            tensor,
        };
        self.node(op, vec![q.0, q.1, p.0, p.1], vec![z, kl]);
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
        self.node(PriorSample { temperature, tensor }, vec![p.0, p.1], vec![z]);
        Ok(z)
    }
}

/// A level's reparameterization drawing from `key`.
fn config(posterior: Posterior, sampling: Sampling, key: RngKey) -> Reparam {
    let mode = match sampling {
        Sampling::Posterior => ZMode::Sample,
        Sampling::PosteriorMean => ZMode::Mean,
        Sampling::Importance => ZMode::Importance,
    };
    Reparam { posterior, mode, key }
}

/// Whether the level draws eps (every mode but the posterior mean).
fn draws(sampling: Sampling) -> bool {
    sampling != Sampling::PosteriorMean
}

/// The importance log ratio is for evaluation: autodiff through it is refused.
fn no_importance_backward(op: &str, sampling: Sampling) -> Result<()> {
    if sampling == Sampling::Importance {
        return Err(Error::Input(format!(
            "{op}: Sampling::Importance gives the log ratio log q(z|x) − log p(z) for evaluation and has no backward; \
             build the graph without autodiff"
        )));
    }
    Ok(())
}

impl OpRule for ReparamKl {
    fn name(&self) -> &'static str {
        "reparam_kl"
    }

    fn backward(&self, b: &mut Backward<'_>) -> Result<()> {
        no_importance_backward("reparam_kl", self.sampling)?;
        let (Some(dz), Some(dkl)) = (b.dy_of(0), b.dy_of(1)) else {
            return Err(Error::Shape("reparam_kl: both z and kl must reach the loss".into()));
        };
        let d: Vec<TensorId> = (0..4).map(|k| b.grad_like(k)).collect();
        let mut inputs = vec![dz, dkl];
        inputs.extend((0..4).map(|k| b.input(k)));
        let op = ReparamKlBackward {
            posterior: self.posterior,
            sampling: self.sampling,
            tensor: self.tensor,
        };
        b.node(op, inputs, d.clone());
        for (k, dk) in d.into_iter().enumerate() {
            if b.wants(k) {
                b.push(k, dk);
            }
        }
        Ok(())
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        let lat = LatentsRef {
            q_mu: c.input(0),
            q_logsig: c.input(1),
            p_mu: c.input(2),
            p_logsig: c.input(3),
        };
        let cfg = config(self.posterior, self.sampling, c.batch_key(self.tensor, c.out_shape(0)));
        let (z, kl) = reference::forward(&cfg, &lat);
        Ok(vec![z, kl])
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        let lat = Latents {
            q_mu: l.input(0),
            q_logsig: l.input(1),
            p_mu: l.input(2),
            p_logsig: l.input(3),
        };
        let key = l
            .batch_key(self.tensor, l.g.shape(l.node.outputs[0]))
            .skip(l.out_offset(0));
        let cfg = config(self.posterior, self.sampling, key);
        Ok(vec![kernels::forward(l.ctx, &cfg, &lat, l.output(0), l.output(1))?])
    }

    fn noisy(&self) -> bool {
        draws(self.sampling)
    }

    fn binding_split(&self, _: &Graph, node: &Node) -> Option<BindingSplit> {
        Some(BindingSplit::cut_all(Unit::Pixels, node))
    }
}

impl OpRule for ReparamKlBackward {
    fn name(&self) -> &'static str {
        "reparam_kl_backward"
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        no_importance_backward(self.name(), self.sampling)?;
        let lat = LatentsRef {
            q_mu: c.input(2),
            q_logsig: c.input(3),
            p_mu: c.input(4),
            p_logsig: c.input(5),
        };
        let cfg = config(self.posterior, self.sampling, c.batch_key(self.tensor, c.out_shape(0)));
        let d = reference::backward(&cfg, &lat, c.input(0), c.input(1));
        Ok(vec![d.q_mu, d.q_logsig, d.p_mu, d.p_logsig])
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        let lat = Latents {
            q_mu: l.input(2),
            q_logsig: l.input(3),
            p_mu: l.input(4),
            p_logsig: l.input(5),
        };
        let grads = Latents {
            q_mu: l.output(0),
            q_logsig: l.output(1),
            p_mu: l.output(2),
            p_logsig: l.output(3),
        };
        let key = l
            .batch_key(self.tensor, l.g.shape(l.node.outputs[0]))
            .skip(l.out_offset(0));
        let cfg = config(self.posterior, self.sampling, key);
        Ok(vec![kernels::backward(
            l.ctx,
            &cfg,
            &lat,
            l.input(0),
            l.input(1),
            &grads,
        )?])
    }

    fn noisy(&self) -> bool {
        draws(self.sampling)
    }

    /// Elementwise; a single dkl value (broadcast) is bound whole.
    fn binding_split(&self, g: &Graph, node: &Node) -> Option<BindingSplit> {
        let mut split = BindingSplit::cut_all(Unit::Pixels, node);
        if g.tensors[node.inputs[1]].numel() != g.tensors[node.inputs[0]].numel() {
            split.inputs[1] = Part::Whole;
        }
        Some(split)
    }
}

impl OpRule for PriorSample {
    fn name(&self) -> &'static str {
        "prior_sample"
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        let key = c.batch_key(self.tensor, c.out_shape(0));
        Ok(vec![reference::prior_sample(
            key,
            self.temperature,
            c.input(0),
            c.input(1),
        )])
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        let key = l
            .batch_key(self.tensor, l.g.shape(l.node.outputs[0]))
            .skip(l.out_offset(0));
        let d = kernels::prior_sample(l.ctx, key, self.temperature, l.input(0), l.input(1), l.output(0))?;
        Ok(vec![d])
    }

    fn noisy(&self) -> bool {
        true
    }

    fn binding_split(&self, _: &Graph, node: &Node) -> Option<BindingSplit> {
        Some(BindingSplit::cut_all(Unit::Pixels, node))
    }
}

/// in: q (mu_q, logsig_q along 2·zdim channels), p (mu_p, logsig_p, then more
/// channels) → z, kl, p_stash: [`ReparamKl`] reading the blocks' outputs in
/// place, no slices; `p_stash` keeps (mu_p, logsig_p) (2·zdim channels) for the
/// backward, so the prior's whole output need not live until then.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReparamKlPacked {
    pub sampling: Sampling,
    pub tensor: u32,
    pub zdim: usize,
}

/// in: dz, dkl, q, p_stash → dq (all of q's gradient) and d(mu_p, logsig_p) (2·zdim channels).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReparamKlPackedBackward {
    pub sampling: Sampling,
    pub tensor: u32,
    pub zdim: usize,
}

impl Graph {
    /// The level's draw from the posterior block's output `q` (2·zdim channels)
    /// and the prior block's output `p` (at least 2·zdim): returns (z, per-element
    /// KL, or with [`Sampling::Importance`] the per-element log q(z|x) − log p(z)).
    pub fn reparam_kl_packed(
        &mut self,
        name: &str,
        q: TensorId,
        p: TensorId,
        zdim: usize,
        sampling: Sampling,
        tensor: u32,
    ) -> Result<(TensorId, TensorId)> {
        let [n, h, w, cq] = nhwc_of(self, q, name)?;
        let [n2, h2, w2, cp] = nhwc_of(self, p, name)?;
        if zdim == 0 || cq != 2 * zdim || cp < 2 * zdim || (n, h, w) != (n2, h2, w2) {
            return shape_err(format!(
                "{name}: q {:?} must have 2·zdim = {} channels and p {:?} as many or more, over the same pixels",
                self.shape(q),
                2 * zdim,
                self.shape(p)
            ));
        }
        let z = self.activation(&format!("{name}.z"), vec![n, h, w, zdim]);
        let kl = self.activation(&format!("{name}.kl"), vec![n, h, w, zdim]);
        let stash = self.activation(&format!("{name}.p_mu_logsig"), vec![n, h, w, 2 * zdim]);
        let op = ReparamKlPacked { sampling, tensor, zdim };
        self.node(op, vec![q, p], vec![z, kl, stash]);
        Ok((z, kl))
    }
}

/// The four sliced inputs of a packed level, for the CPU reference.
fn unpack(c: &CpuCall<'_>, zdim: usize, q: usize, p: usize) -> [Vec<f32>; 4] {
    let (cq, cp) = (c.channels(q), c.channels(p));
    [
        elementwise::slice_channels(c.input(q), cq, 0, zdim),
        elementwise::slice_channels(c.input(q), cq, zdim, 2 * zdim),
        elementwise::slice_channels(c.input(p), cp, 0, zdim),
        elementwise::slice_channels(c.input(p), cp, zdim, 2 * zdim),
    ]
}

/// The GPU view of a packed level's inputs.
fn packed<'a>(l: &LowerCall<'a>, zdim: usize, q: usize, p: usize) -> Packed<'a> {
    Packed {
        zdim,
        q: l.input(q),
        p: l.input(p),
        p_channels: l.channels(p),
    }
}

impl OpRule for ReparamKlPacked {
    fn name(&self) -> &'static str {
        "reparam_kl_packed"
    }

    fn backward(&self, b: &mut Backward<'_>) -> Result<()> {
        no_importance_backward("reparam_kl_packed", self.sampling)?;
        let (Some(dz), Some(dkl)) = (b.dy_of(0), b.dy_of(1)) else {
            return Err(Error::Shape("reparam_kl: both z and kl must reach the loss".into()));
        };
        let dq = b.grad_like(0);
        let stash = b.output(2);
        let name = format!("grad.{}", b.g.tensors[stash].name);
        let dp = b.g.activation(&name, b.g.shape(stash).to_vec());
        let op = ReparamKlPackedBackward {
            sampling: self.sampling,
            tensor: self.tensor,
            zdim: self.zdim,
        };
        let inputs = vec![dz, dkl, b.input(0), stash];
        b.node(op, inputs, vec![dq, dp]);
        if b.wants(0) {
            b.push(0, dq);
        }
        if b.wants(1) {
            b.push_channels(1, (0, 2 * self.zdim), dp, 0);
        }
        Ok(())
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        let [q_mu, q_logsig, p_mu, p_logsig] = unpack(c, self.zdim, 0, 1);
        let lat = LatentsRef {
            q_mu: &q_mu,
            q_logsig: &q_logsig,
            p_mu: &p_mu,
            p_logsig: &p_logsig,
        };
        let cfg = config(
            Posterior::Direct,
            self.sampling,
            c.batch_key(self.tensor, c.out_shape(0)),
        );
        let (z, kl) = reference::forward(&cfg, &lat);
        let stash = elementwise::concat_channels(&p_mu, self.zdim, &p_logsig, self.zdim);
        Ok(vec![z, kl, stash])
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        // Element i of z draws element i of the stream.
        let key = l
            .batch_key(self.tensor, l.g.shape(l.node.outputs[0]))
            .skip(l.out_offset(0));
        let cfg = config(Posterior::Direct, self.sampling, key);
        let inputs = packed(l, self.zdim, 0, 1);
        let d = kernels::forward_packed(l.ctx, &cfg, &inputs, l.output(0), l.output(1), l.output(2))?;
        Ok(vec![d])
    }

    fn noisy(&self) -> bool {
        draws(self.sampling)
    }

    fn binding_split(&self, _: &Graph, node: &Node) -> Option<BindingSplit> {
        Some(BindingSplit::cut_all(Unit::Pixels, node))
    }
}

impl OpRule for ReparamKlPackedBackward {
    fn name(&self) -> &'static str {
        "reparam_kl_packed_backward"
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        no_importance_backward(self.name(), self.sampling)?;
        let [q_mu, q_logsig, p_mu, p_logsig] = unpack(c, self.zdim, 2, 3);
        let lat = LatentsRef {
            q_mu: &q_mu,
            q_logsig: &q_logsig,
            p_mu: &p_mu,
            p_logsig: &p_logsig,
        };
        let cfg = config(
            Posterior::Direct,
            self.sampling,
            c.batch_key(self.tensor, c.in_shape(0)),
        );
        let d = reference::backward(&cfg, &lat, c.input(0), c.input(1));
        let z = self.zdim;
        Ok(vec![
            elementwise::concat_channels(&d.q_mu, z, &d.q_logsig, z),
            elementwise::concat_channels(&d.p_mu, z, &d.p_logsig, z),
        ])
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        // dz is laid out like z, whose element i drew element i of the stream.
        let key = l
            .batch_key(self.tensor, l.g.shape(l.node.inputs[0]))
            .skip(l.in_offset(0));
        let cfg = config(Posterior::Direct, self.sampling, key);
        let inputs = packed(l, self.zdim, 2, 3);
        let (dz, dkl) = (l.input(0), l.input(1));
        Ok(vec![kernels::backward_packed(
            l.ctx,
            &cfg,
            &inputs,
            dz,
            dkl,
            l.output(0),
            l.output(1),
        )?])
    }

    fn noisy(&self) -> bool {
        draws(self.sampling)
    }

    fn binding_split(&self, _: &Graph, node: &Node) -> Option<BindingSplit> {
        Some(BindingSplit::cut_all(Unit::Pixels, node))
    }
}
