//! A latent level's draw: the fused reparameterize + KL (posterior draw and
//! its KL to the prior) with its backward, and a prior draw at a temperature
//! for unconditional sampling. Kernels: `crate::ops::reparam_kl`.

use super::OpRule;
use crate::error::{shape_err, Error, Result};
use crate::gpu::Dispatch;
use crate::graph::autodiff::Backward;
use crate::graph::cpu::CpuCall;
use crate::graph::gpu::LowerCall;
use crate::graph::ir::{Graph, Sampling, TensorId};
use crate::ops::reparam_kl::reference::{self, LatentsRef};
use crate::ops::reparam_kl::{self as kernels, Latents, Posterior, Reparam, ZMode};
use crate::ops::rng::RngKey;

/// in: mu_q, logsig_q, mu_p, logsig_p → z, kl (elementwise); noise from
/// `tensor` of the RNG stream.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReparamKl {
    pub sampling: Sampling,
    pub tensor: u32,
}

/// in: dz, dkl, mu_q, logsig_q, mu_p, logsig_p → dmu_q, dlogsig_q, dmu_p, dlogsig_p.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReparamKlBackward {
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
        self.node(ReparamKl { sampling, tensor }, vec![q.0, q.1, p.0, p.1], vec![z, kl]);
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

/// A VDVAE level's reparameterization (direct posterior) drawing from `key`.
fn config(sampling: Sampling, key: RngKey) -> Reparam {
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

impl OpRule for ReparamKl {
    fn name(&self) -> &'static str {
        "reparam_kl"
    }

    fn backward(&self, b: &mut Backward<'_>) -> Result<()> {
        let (Some(dz), Some(dkl)) = (b.dy_of(0), b.dy_of(1)) else {
            return Err(Error::Shape("reparam_kl: both z and kl must reach the loss".into()));
        };
        let d: Vec<TensorId> = (0..4).map(|k| b.grad_like(k)).collect();
        let mut inputs = vec![dz, dkl];
        inputs.extend((0..4).map(|k| b.input(k)));
        let op = ReparamKlBackward {
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
        let (z, kl) = reference::forward(&config(self.sampling, c.key(self.tensor)), &lat);
        Ok(vec![z, kl])
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        let lat = Latents {
            q_mu: l.input(0),
            q_logsig: l.input(1),
            p_mu: l.input(2),
            p_logsig: l.input(3),
        };
        let cfg = config(self.sampling, l.key(self.tensor));
        Ok(vec![kernels::forward(l.ctx, &cfg, &lat, l.output(0), l.output(1))?])
    }

    fn noisy(&self) -> bool {
        self.sampling == Sampling::Posterior
    }
}

impl OpRule for ReparamKlBackward {
    fn name(&self) -> &'static str {
        "reparam_kl_backward"
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        let lat = LatentsRef {
            q_mu: c.input(2),
            q_logsig: c.input(3),
            p_mu: c.input(4),
            p_logsig: c.input(5),
        };
        let cfg = config(self.sampling, c.key(self.tensor));
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
        let cfg = config(self.sampling, l.key(self.tensor));
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
        self.sampling == Sampling::Posterior
    }
}

impl OpRule for PriorSample {
    fn name(&self) -> &'static str {
        "prior_sample"
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        let key = c.key(self.tensor);
        Ok(vec![reference::prior_sample(
            key,
            self.temperature,
            c.input(0),
            c.input(1),
        )])
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        let key = l.key(self.tensor);
        let d = kernels::prior_sample(l.ctx, key, self.temperature, l.input(0), l.input(1), l.output(0))?;
        Ok(vec![d])
    }

    fn noisy(&self) -> bool {
        true
    }
}
