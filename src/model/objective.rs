//! The training objective from the config: the ELBO, or the hierarchical
//! β-VAE objective (per-level β with KL warm-up, free bits per level or per
//! channel group, NVAE's KL balancing) computed on the GPU by
//! `Graph::controlled_elbo`. The reported ELBO is the true one either way.

use super::config::HParams;
use crate::error::Result;
use crate::graph::{Graph, KlSchedule, KlTerm, TensorId};

/// The loss over `nll` (`[N]`) and each level's per-element KL (top first),
/// and each level's per-image KL sum `[N]`.
pub fn loss(
    g: &mut Graph,
    h: &HParams,
    nll: TensorId,
    kl: &[TensorId],
    dims: usize,
) -> Result<(TensorId, Vec<TensorId>)> {
    let mut per_level = Vec::with_capacity(kl.len());
    for &k in kl {
        let name = format!("{}_sum", g.tensors[k].name);
        per_level.push(g.sum_per_image(&name, k)?);
    }
    if !h.has_kl_controls() {
        return Ok((g.elbo("loss", nll, &per_level, dims)?, per_level));
    }
    let groups = h.free_bits_groups;
    let mut terms = Vec::new();
    let mut schedule = KlSchedule {
        terms: Vec::new(),
        balance: h.kl_balance,
    };
    for (level, &k) in kl.iter().enumerate() {
        let channels = *g.shape(k).last().expect("a latent has channels");
        let size = g.tensors[k].numel() / g.shape(k)[0];
        let term = KlTerm {
            level,
            beta0: h.kl_beta0 as f32,
            beta1: per_level_or(&h.kl_beta_per_level, level, h.kl_beta) as f32,
            warmup_steps: per_level_or(&h.kl_warmup_steps_per_level, level, h.kl_warmup_steps),
            free_nats: per_level_or(&h.free_bits_per_level, level, h.free_bits) as f32,
            // NVAE weighs a group by its size: larger groups are balanced towards more KL.
            balance_weight: (size / groups) as f32,
        };
        if groups == 1 {
            terms.push(per_level[level]);
            schedule.terms.push(term);
            continue;
        }
        let width = channels / groups;
        for j in 0..groups {
            let name = format!("{}.group{j}", g.tensors[k].name);
            let part = g.slice_channels(&name, k, j * width, (j + 1) * width)?;
            terms.push(g.sum_per_image(&format!("{name}_sum"), part)?);
            schedule.terms.push(term);
        }
    }
    let loss = g.controlled_elbo("loss", nll, &per_level, &terms, schedule, dims)?;
    Ok((loss, per_level))
}

/// The level's value from a per-level list, or the shared one when the list is empty.
fn per_level_or<T: Copy>(list: &[T], level: usize, shared: T) -> T {
    list.get(level).copied().unwrap_or(shared)
}
