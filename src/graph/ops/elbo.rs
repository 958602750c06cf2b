//! The loss: the negative ELBO per image in nats per dim, `mean_n (nll + Σ kl) / dims`
//! (`kl_control.rs` has the loss with β, free bits and balancing).
//! [`ElboTotals`] is the one place that turns per-image NLL and per-level KL
//! sums into the ELBO and its parts: the CPU op, training metrics and
//! evaluation all go through it.

use super::{KlCoefTensor, OpRule};
use crate::error::{shape_err, Result};
use crate::gpu::Dispatch;
use crate::graph::autodiff::Backward;
use crate::graph::executor::cpu::CpuCall;
use crate::graph::executor::LowerCall;
use crate::graph::ir::{Graph, Op, TensorId};

/// in: nll[N], klsum_1[N], …, klsum_L[N] → loss [1].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Elbo {
    pub dims: usize,
}

/// The tensors the loss is made of (the inputs of the graph's `Elbo` node).
#[derive(Clone, Debug, PartialEq)]
pub struct LossTerms {
    /// Per-image NLL `[N]` in nats, summed over pixels.
    pub nll: TensorId,
    /// Per-image KL `[N]` of each level, top first.
    pub kl_per_level: Vec<TensorId>,
    /// Dimensions per image.
    pub dims: usize,
    /// The coefficients of a controlled loss (`Graph::controlled_elbo`); None for the ELBO.
    pub kl_coef: Option<KlCoefTensor>,
}

/// The ELBO and its parts, in nats per dim.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ElboParts {
    pub elbo: f64,
    pub distortion: f64,
    pub rate: f64,
    pub kl_per_level: Vec<f64>,
}

/// Running sums of per-image NLL and per-level KL over any number of batches.
#[derive(Clone, Debug, Default)]
pub struct ElboTotals {
    images: usize,
    nll: f64,
    kl: Vec<f64>,
}

impl ElboTotals {
    /// Adds one batch: per-image NLL and, for each level, its per-image KL.
    pub fn add<K: AsRef<[f32]>>(&mut self, nll: &[f32], kl_per_level: &[K]) {
        self.images += nll.len();
        self.nll += nll.iter().map(|&x| x as f64).sum::<f64>();
        self.kl.resize(self.kl.len().max(kl_per_level.len()), 0.0);
        for (acc, k) in self.kl.iter_mut().zip(kl_per_level) {
            *acc += k.as_ref().iter().map(|&x| x as f64).sum::<f64>();
        }
    }

    /// The mean over the images added, per dim.
    pub fn per_dim(&self, dims: usize) -> ElboParts {
        let scale = 1.0 / (self.images.max(1) * dims.max(1)) as f64;
        let distortion = self.nll * scale;
        let kl_per_level: Vec<f64> = self.kl.iter().map(|k| k * scale).collect();
        let rate = kl_per_level.iter().sum();
        ElboParts {
            elbo: distortion + rate,
            distortion,
            rate,
            kl_per_level,
        }
    }
}

impl Graph {
    /// loss = mean over images of (nll + Σ kl) / dims.
    pub fn elbo(&mut self, name: &str, nll: TensorId, kls: &[TensorId], dims: usize) -> Result<TensorId> {
        let n = self.shape(nll).to_vec();
        if n.len() != 1 || kls.iter().any(|&k| self.shape(k) != n.as_slice()) {
            return shape_err(format!("{name}: the NLL and every KL sum must be [N], got {n:?}"));
        }
        let y = self.activation(name, vec![1]);
        let mut inputs = vec![nll];
        inputs.extend_from_slice(kls);
        self.outputs.extend(&inputs);
        self.outputs.push(y);
        self.node(Elbo { dims }, inputs, vec![y]);
        Ok(y)
    }

    /// The terms of the graph's loss, when it has one (the ELBO's parts also
    /// for a controlled loss).
    pub fn loss_terms(&self) -> Option<LossTerms> {
        self.nodes.iter().find_map(|node| match node.op {
            Op::Elbo(Elbo { dims }) => Some(LossTerms {
                nll: node.inputs[0],
                kl_per_level: node.inputs[1..].to_vec(),
                dims,
                kl_coef: None,
            }),
            Op::ControlledElbo(ref op) => Some(op.loss_terms(node)),
            _ => None,
        })
    }
}

impl OpRule for Elbo {
    fn name(&self) -> &'static str {
        "elbo"
    }

    fn is_loss(&self) -> bool {
        true
    }

    fn backward(&self, b: &mut Backward<'_>) -> Result<()> {
        // d loss / d nll[n] = d loss / d kl[n] = 1 / (N · dims): one shared constant.
        let n = b.g.shape(b.input(0))[0];
        let seed = b.constant("grad.elbo_seed", vec![1.0 / (n * self.dims) as f32; n]);
        for k in 0..b.inputs() {
            if b.wants(k) {
                b.push(k, seed);
            }
        }
        Ok(())
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        let mut totals = ElboTotals::default();
        let kls: Vec<&[f32]> = (1..c.node.inputs.len()).map(|k| c.input(k)).collect();
        totals.add(c.input(0), &kls);
        Ok(vec![vec![totals.per_dim(self.dims).elbo as f32]])
    }

    /// The loss is a handful of numbers: the host sums NLL and KL after readback.
    fn lower(&self, _: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        Ok(Vec::new())
    }
}
