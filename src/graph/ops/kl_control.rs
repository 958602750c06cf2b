//! The controlled loss of a hierarchical β-VAE: per-term β with a linear
//! warm-up, free bits (Kingma et al. 2016) and NVAE's KL balancing (Vahdat &
//! Kautz 2020), computed on the GPU within the step. The J terms are stacked
//! into one `[N, 1, 1, J]` tensor; a noisy node (its step word is the
//! iteration) writes every term's coefficients and gradient seeds in one
//! dispatch; the loss node pushes the seeds as the stack's gradient, and the
//! stack's backward copies each column back to its term. The ELBO's own parts
//! (NLL, per-level KL sums) stay the loss terms metrics read.
//! Kernels: `crate::kernels::kl_control`, and the elementwise family's
//! `copy_channels` for the stack and its columns.

use super::{LossTerms, OpRule};
use crate::error::{shape_err, Result};
use crate::gpu::Dispatch;
use crate::graph::autodiff::Backward;
use crate::graph::executor::cpu::CpuCall;
use crate::graph::executor::LowerCall;
use crate::graph::ir::{Graph, Node, Role, TensorId};
use crate::kernels::elementwise::{self, reference as copy_ref, ChannelRange, CopyMode};
use crate::kernels::kl_control::{self as kernels, reference, Seeds, TermSpec, SPEC_WORDS};
use crate::kernels::rng::RngKey;

/// One KL term the controls act on: a whole level, or one channel group of a level.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KlTerm {
    /// Decoder level (top first) the term belongs to.
    pub level: usize,
    /// β at step 0.
    pub beta0: f32,
    /// β after warm-up (1.0 for the ELBO).
    pub beta1: f32,
    /// Linear ramp beta0 → beta1 over this many steps; 0: beta1 from the start.
    pub warmup_steps: u32,
    /// Free bits λ (nats per image for this term); 0: none.
    pub free_nats: f32,
    /// NVAE alpha_i of the term (e.g. proportional to its latent size); used only when balancing.
    pub balance_weight: f32,
}

impl KlTerm {
    /// The term as the kernel reads it.
    pub fn spec(&self) -> TermSpec {
        TermSpec {
            beta0: self.beta0,
            beta1: self.beta1,
            warmup_steps: self.warmup_steps,
            free_nats: self.free_nats,
            balance_weight: self.balance_weight,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct KlSchedule {
    pub terms: Vec<KlTerm>,
    pub balance: bool,
}

impl KlSchedule {
    fn specs(&self) -> Vec<TermSpec> {
        self.terms.iter().map(KlTerm::spec).collect()
    }
}

/// in: term_1[N], …, term_J[N] → `[N, 1, 1, J]`, term j in channel j.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KlStack;

/// in: d `[N, 1, 1, J]` → one `[N]` per entry of `columns`: channel `columns[k]` of d.
#[derive(Clone, Debug, PartialEq)]
pub struct KlColumns {
    pub columns: Vec<usize>,
}

/// in: stacked terms `[N, 1, 1, J]`, spec `[J, SPEC_WORDS]` (constant) →
/// seeds `[N, 1, 1, J]` (d loss / d term), coef `[2·J]` (β·γ, then β·γ·gate).
/// Noisy: its step is the noise step (the iteration when training).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KlSeeds {
    pub balance: bool,
    pub dims: usize,
}

/// in: nll[N], kl_1[N], …, kl_L[N], stacked terms, seeds, coef → loss [1]:
/// `[mean_n nll + Σ_j β_j γ_j max(λ_j, m_j)] / dims`.
#[derive(Clone, Debug, PartialEq)]
pub struct ControlledElbo {
    pub dims: usize,
    pub levels: usize,
    pub schedule: KlSchedule,
}

/// Where a controlled loss keeps its coefficients, for metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct KlCoefTensor {
    /// `[2·J]`: β_j γ_j, then β_j γ_j [m_j ≥ λ_j].
    pub coef: TensorId,
    /// The level of each term.
    pub term_levels: Vec<usize>,
}

impl KlCoefTensor {
    /// The β·γ in force at each of `levels` levels (the mean over its terms),
    /// from the values of `coef`.
    pub fn beta_per_level(&self, coef: &[f32], levels: usize) -> Vec<f64> {
        let mut sums = vec![(0.0, 0usize); levels];
        for (&level, &c) in self.term_levels.iter().zip(coef) {
            sums[level].0 += c as f64;
            sums[level].1 += 1;
        }
        sums.iter().map(|&(s, k)| s / k.max(1) as f64).collect()
    }
}

/// The step a key draws at.
fn step_of(key: RngKey) -> u64 {
    ((key.step_hi as u64) << 32) | key.step_lo as u64
}

impl Graph {
    /// The controlled loss (see [`ControlledElbo`]): `nll`, each of
    /// `kl_per_level` and each of `terms` are `[N]` per-image sums in nats;
    /// `schedule.terms[j]` controls `terms[j]`, which may be a level's sum
    /// itself or one channel group of it. Every level needs a term. The
    /// gradient reaches `nll` and `terms` only.
    pub fn controlled_elbo(
        &mut self,
        name: &str,
        nll: TensorId,
        kl_per_level: &[TensorId],
        terms: &[TensorId],
        schedule: KlSchedule,
        dims: usize,
    ) -> Result<TensorId> {
        let shape = self.shape(nll).to_vec();
        let all = kl_per_level.iter().chain(terms);
        if shape.len() != 1 || all.clone().any(|&t| self.shape(t) != shape.as_slice()) {
            return shape_err(format!(
                "{name}: the NLL, every KL sum and every term must be [N], got {shape:?}"
            ));
        }
        let (n, levels, j) = (shape[0], kl_per_level.len(), terms.len());
        if j == 0 || schedule.terms.len() != j || dims == 0 {
            return shape_err(format!(
                "{name}: {j} terms need as many schedule entries (got {}), at least one, and dims > 0",
                schedule.terms.len()
            ));
        }
        if let Some(t) = schedule.terms.iter().find(|t| t.level >= levels) {
            return shape_err(format!("{name}: {t:?} names a level past the {levels} KL sums"));
        }
        if let Some(l) = (0..levels).find(|&l| !schedule.terms.iter().any(|t| t.level == l)) {
            return shape_err(format!("{name}: level {l} has no term, so its KL would leave the loss"));
        }
        for t in &schedule.terms {
            t.spec().validate(name, schedule.balance)?;
        }
        let stacked = self.activation(&format!("{name}.kl_terms"), vec![n, 1, 1, j]);
        self.node(KlStack, terms.to_vec(), vec![stacked]);
        let spec = self.tensor(format!("{name}.kl_schedule"), vec![j, SPEC_WORDS], Role::Constant);
        let words = schedule.specs().iter().flat_map(TermSpec::words).collect();
        self.constants.push((spec, words));
        let seeds = self.activation(&format!("{name}.kl_seeds"), vec![n, 1, 1, j]);
        let coef = self.activation(&format!("{name}.kl_coef"), vec![2 * j]);
        let op = KlSeeds {
            balance: schedule.balance,
            dims,
        };
        self.node(op, vec![stacked, spec], vec![seeds, coef]);
        let y = self.activation(name, vec![1]);
        let mut inputs = vec![nll];
        inputs.extend_from_slice(kl_per_level);
        inputs.extend([stacked, seeds, coef]);
        // Read back or per-image sums: kept to the end, and f32 under f16 storage.
        for &t in inputs.iter().chain(terms).chain([&y]) {
            if !self.outputs.contains(&t) {
                self.outputs.push(t);
            }
        }
        let op = ControlledElbo { dims, levels, schedule };
        self.node(op, inputs, vec![y]);
        Ok(y)
    }
}

impl ControlledElbo {
    /// The ELBO's parts and the coefficients of the node `node` (this op's).
    pub(super) fn loss_terms(&self, node: &Node) -> LossTerms {
        LossTerms {
            nll: node.inputs[0],
            kl_per_level: node.inputs[1..=self.levels].to_vec(),
            dims: self.dims,
            kl_coef: Some(KlCoefTensor {
                coef: node.inputs[self.levels + 3],
                term_levels: self.schedule.terms.iter().map(|t| t.level).collect(),
            }),
        }
    }
}

impl OpRule for KlStack {
    fn name(&self) -> &'static str {
        "kl_stack"
    }

    fn backward(&self, b: &mut Backward<'_>) -> Result<()> {
        let dy = b.dy();
        let columns: Vec<usize> = (0..b.inputs()).filter(|&k| b.wants(k)).collect();
        let grads: Vec<TensorId> = columns.iter().map(|&k| b.grad_like(k)).collect();
        b.node(
            KlColumns {
                columns: columns.clone(),
            },
            vec![dy],
            grads.clone(),
        );
        for (k, d) in columns.into_iter().zip(grads) {
            b.push(k, d);
        }
        Ok(())
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        let j = c.node.inputs.len();
        let mut y = vec![0.0; c.g.tensors[c.node.outputs[0]].numel()];
        for k in 0..j {
            copy_ref::copy_channels(c.input(k), ChannelRange::all(1), &mut y, ChannelRange::new(j, k, k + 1));
        }
        Ok(vec![y])
    }

    /// One copy per term: an `[N]` tensor is N rows of one channel.
    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        let j = l.node.inputs.len();
        (0..j)
            .map(|k| {
                let dst = ChannelRange::new(j, k, k + 1);
                elementwise::copy_channels(
                    l.ctx,
                    l.input(k),
                    ChannelRange::all(1),
                    l.output(0),
                    dst,
                    CopyMode::Overwrite,
                )
            })
            .collect()
    }
}

impl OpRule for KlColumns {
    fn name(&self) -> &'static str {
        "kl_columns"
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        let j = c.channels(0);
        Ok(self
            .columns
            .iter()
            .map(|&k| copy_ref::slice_channels(c.input(0), j, k, k + 1))
            .collect())
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        let j = l.channels(0);
        self.columns
            .iter()
            .enumerate()
            .map(|(out, &k)| {
                let src = ChannelRange::new(j, k, k + 1);
                elementwise::copy_channels(
                    l.ctx,
                    l.input(0),
                    src,
                    l.output(out),
                    ChannelRange::all(1),
                    CopyMode::Overwrite,
                )
            })
            .collect()
    }
}

impl KlSeeds {
    /// d loss / d term per unit of β·γ: 1 / (N · dims).
    fn scale(&self, images: usize) -> f64 {
        1.0 / (images * self.dims) as f64
    }
}

impl OpRule for KlSeeds {
    fn name(&self) -> &'static str {
        "kl_seeds"
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        let specs: Vec<TermSpec> = c.input(1).chunks(SPEC_WORDS).map(TermSpec::from_words).collect();
        let step = step_of(c.key(0));
        let images = c.in_shape(0)[0];
        let (seeds, coef) = reference::seeds(&specs, c.input(0), step, self.balance, self.scale(images));
        Ok(vec![seeds, coef])
    }

    fn lower(&self, l: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        let (images, terms) = (l.in_shape(0)[0], l.channels(0));
        let bufs = Seeds {
            kl: l.input(0),
            spec: l.input(1),
            seeds: l.output(0),
            coef: l.output(1),
        };
        let scale = self.scale(images) as f32;
        let d = kernels::seeds(l.ctx, &bufs, images, terms, self.balance, scale, l.key(0))?;
        Ok(vec![d])
    }

    /// It draws no noise, but reads the step from its key.
    fn noisy(&self) -> bool {
        true
    }
}

impl OpRule for ControlledElbo {
    fn name(&self) -> &'static str {
        "controlled_elbo"
    }

    fn is_loss(&self) -> bool {
        true
    }

    /// d loss / d nll = 1 / (N · dims); the terms' gradient is the seeds the
    /// forward made. The per-level sums get none.
    fn backward(&self, b: &mut Backward<'_>) -> Result<()> {
        let n = b.g.shape(b.input(0))[0];
        if b.wants(0) {
            let seed = b.constant("grad.controlled_elbo_seed", vec![1.0 / (n * self.dims) as f32; n]);
            b.push(0, seed);
        }
        let stacked = self.levels + 1;
        if b.wants(stacked) {
            let seeds = b.input(stacked + 1);
            b.push(stacked, seeds);
        }
        Ok(())
    }

    fn eval(&self, c: &CpuCall<'_>) -> Result<Vec<Vec<f32>>> {
        let step = step_of(c.key(0));
        let specs = self.schedule.specs();
        let kl = c.input(self.levels + 1);
        let loss = reference::objective(&specs, c.input(0), kl, step, self.schedule.balance, self.dims);
        Ok(vec![vec![loss as f32]])
    }

    /// The coefficients and seeds are the kernel's; the value is the host's.
    fn lower(&self, _: &LowerCall<'_>) -> Result<Vec<Dispatch>> {
        Ok(Vec::new())
    }
}
