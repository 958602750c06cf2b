//! Memory budgets: which blocks to recompute (`super::recompute`) so that a
//! step's planned memory fits a byte budget, at the least recomputed FLOPs.
//!
//! The total compared with the budget is the one `GpuGraph::build` prints:
//! the memory plan plus the kernels' workspace (and the optimizer's) and the
//! flipped conv weights. None of those changes when blocks are recomputed (clones are forward
//! ops like the originals, and the backward convs are the same), so they are
//! counted once: exactly for an adapter, and as an upper bound (every conv dx
//! flipped) without one.
//!
//! Selection ([`fit_step`]): a step that fits as autodiff builds it is left
//! as it is. Otherwise its backward is built again with running gradient sums
//! (`Accumulate::Running`: the gradient of an encoder activation read by every
//! decoder level at its resolution no longer keeps one part per level alive
//! until the encoder's backward, which is most of what recomputed blocks
//! leave behind), and blocks are recomputed: candidates ordered by bytes
//! freed per recomputed FLOP, without the block whose backward runs first (the
//! last of the forward pass: its recompute would run right after the
//! original). Every prefix of that order is a graph; the shortest prefix whose
//! plan fits is found by bisection, each step planning the whole graph (tens
//! of milliseconds for a 6,000-node graph).

use super::autodiff::{append_backward, append_backward_with, Accumulate};
use super::ir::{Graph, Op, Role};
use super::plan::{plan, MemoryPlan};
use super::precision::{set_precision, Precision};
use super::recompute::{apply, block_segments, candidates, Recompute};
use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::kernels::reduce::contiguous_sq_norm_scratch_len;

/// How a graph's memory is planned, and what the GPU executor adds to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanTarget {
    /// Binding offset alignment in bytes.
    pub align: usize,
    /// Largest buffer in bytes.
    pub chunk: usize,
    /// Optimizer state and EMA are planned too.
    pub train: bool,
    /// Bytes of the flipped conv weights (see `graph::executor::flips`).
    pub flipped_weights: usize,
}

impl PlanTarget {
    /// The plan `GpuGraph::build` makes for `g` on `ctx`: its alignment,
    /// buffer size and flipped weights.
    pub fn for_adapter(ctx: &GpuContext, g: &Graph, train: bool) -> PlanTarget {
        let align = ctx.limits.min_storage_buffer_offset_alignment.max(4) as usize;
        let chunk = (ctx.limits.max_buffer_size as usize).min(1 << 30) / align * align;
        PlanTarget {
            align,
            chunk,
            train,
            flipped_weights: super::executor::flipped_bytes(ctx, g),
        }
    }

    /// A plan at `align` and `chunk` without an adapter: the flipped weights
    /// are counted as if every conv dx read a flipped copy (an upper bound).
    pub fn without_adapter(g: &Graph, align: usize, chunk: usize, train: bool) -> PlanTarget {
        let mut seen = std::collections::HashSet::new();
        let flipped_weights = g
            .nodes
            .iter()
            .filter(|n| matches!(n.op, Op::Conv2dBackwardData(_)))
            .map(|n| n.inputs[1])
            .filter(|&w| g.tensors[w].role == Role::Param && seen.insert(w))
            .map(|w| (g.tensors[w].numel() * 4).next_multiple_of(align))
            .sum();
        PlanTarget {
            align,
            chunk,
            train,
            flipped_weights,
        }
    }

    /// The memory plan of `g` with the workspace (the optimizer's gradient
    /// norm scratch too, when training) and flipped weights counted.
    pub fn plan(&self, g: &Graph) -> MemoryPlan {
        let mut p = plan(g, self.align, self.chunk, self.train);
        p.workspace = workspace_bytes(g);
        if self.train {
            let grads = p.grads.div_ceil(4).max(1);
            p.workspace += contiguous_sq_norm_scratch_len(grads) * 4;
        }
        p.flipped_weights = self.flipped_weights;
        p
    }
}

/// Bytes of the two workspaces `GpuGraph::build` allocates: the largest
/// `scratch_len` and the largest `side_len` of any node (at least one element each).
pub fn workspace_bytes(g: &Graph) -> usize {
    let most = |f: &dyn Fn(&super::ir::Node) -> usize| g.nodes.iter().map(f).max().unwrap_or(0).max(1);
    let scratch = most(&|n| n.op.rule().scratch_len(g, n));
    let side = most(&|n| n.op.rule().side_len(g, n));
    (scratch + side) * 4
}

/// The blocks recomputed to fit a budget, and the graph that does it.
#[derive(Clone, Debug)]
pub struct Selection {
    /// The graph with the recompute plans applied (the input graph when none is needed).
    pub graph: Graph,
    /// Its plan, workspace and flipped weights counted.
    pub plan: MemoryPlan,
    /// Names of the recomputed blocks, in forward order.
    pub recomputed: Vec<String>,
    /// Blocks that could be recomputed.
    pub candidates: usize,
    /// Model FLOPs recomputed per step, and the nodes that recompute them.
    pub recompute_flops: f64,
    pub recompute_nodes: usize,
    /// How the backward sums gradient parts.
    pub accumulate: Accumulate,
    /// The planned total with every candidate recomputed (and running sums):
    /// the smallest this reaches.
    pub smallest: usize,
}

/// Candidates in the order they are tried: most bytes per recomputed FLOP
/// first, without the one whose backward comes first.
fn ordered(g: &Graph) -> Vec<Recompute> {
    let mut all = candidates(g, &block_segments(g));
    if let Some(first) = (0..all.len()).min_by_key(|&k| all[k].first_use) {
        all.remove(first);
    }
    let ratio = |c: &Recompute| c.bytes as f64 / c.flops.max(1.0);
    all.sort_by(|a, b| ratio(b).total_cmp(&ratio(a)).then(a.first_use.cmp(&b.first_use)));
    all
}

fn select(g: &Graph, order: &[Recompute], k: usize, target: &PlanTarget) -> Selection {
    let chosen: Vec<&Recompute> = order[..k].iter().collect();
    let graph = if k == 0 { g.clone() } else { apply(g, &chosen) };
    let plan = target.plan(&graph);
    let mut picked: Vec<&Recompute> = chosen.clone();
    picked.sort_by_key(|c| c.clones.first().copied());
    Selection {
        smallest: plan.total(),
        plan,
        recomputed: picked.iter().map(|c| c.name.clone()).collect(),
        candidates: order.len(),
        recompute_flops: chosen.iter().fold(0.0, |sum, c| sum + c.flops),
        recompute_nodes: chosen.iter().map(|c| c.clones.len()).sum(),
        accumulate: Accumulate::AtProducer,
        graph,
    }
}

/// Every candidate block of `g` recomputed.
pub fn recompute_all(g: &Graph, target: &PlanTarget) -> Selection {
    let order = ordered(g);
    select(g, &order, order.len(), target)
}

/// The training step of `forward` (a forward graph with its loss) whose
/// planned total is at most `budget` bytes, at the least recompute: as
/// `append_backward` builds it when that fits, else with running gradient
/// sums and the fewest blocks recomputed ([`fit`]). `target` says how a
/// step is planned (it is asked once, with the first step built).
pub fn fit_step(
    forward: &Graph,
    precision: Precision,
    budget: usize,
    target: &dyn Fn(&Graph) -> PlanTarget,
) -> Result<Selection> {
    // Precision is set before any block is cloned: clones keep their originals' dtypes.
    let mut plain = forward.clone();
    append_backward(&mut plain)?;
    set_precision(&mut plain, precision);
    let target = target(&plain);
    let mut running = forward.clone();
    append_backward_with(&mut running, Accumulate::Running)?;
    set_precision(&mut running, precision);
    let plan = target.plan(&plain);
    if plan.total() <= budget {
        return Ok(Selection {
            smallest: recompute_all(&running, &target).plan.total(),
            plan,
            recomputed: Vec::new(),
            candidates: ordered(&plain).len(),
            recompute_flops: 0.0,
            recompute_nodes: 0,
            accumulate: Accumulate::AtProducer,
            graph: plain,
        });
    }
    let mut s = fit(&running, budget, &target)?;
    s.accumulate = Accumulate::Running;
    Ok(s)
}

/// The fewest blocks of `g` (after autodiff) to recompute, in order of bytes
/// freed per recomputed FLOP, for its planned total to be at most `budget`
/// bytes; an error saying the smallest reachable total when none is enough.
pub fn fit(g: &Graph, budget: usize, target: &PlanTarget) -> Result<Selection> {
    let order = ordered(g);
    let none = select(g, &order, 0, target);
    if none.plan.total() <= budget {
        let all = select(g, &order, order.len(), target);
        return Ok(Selection {
            smallest: all.plan.total(),
            ..none
        });
    }
    let all = select(g, &order, order.len(), target);
    let smallest = all.plan.total();
    if smallest > budget {
        let m = &all.plan;
        let persistent = m.weights + m.grads + m.optimizer + m.ema;
        // Sizes that round alike are told apart by their bytes.
        let (want, least) = match (format_size(budget), format_size(m.total())) {
            (a, b) if a == b => (format!("{budget} bytes"), format!("{} bytes", m.total())),
            pair => pair,
        };
        return Err(Error::Input(format!(
            "a memory budget of {want} is out of reach: with every block recomputed ({} blocks) \
             the smallest planned peak is {least} ({} of it weights, gradients, optimizer state and EMA); \
             use a smaller batch or a larger budget",
            order.len(),
            format_size(persistent),
        )));
    }
    // fits(hi) holds, fits(lo) does not.
    let (mut lo, mut hi, mut best) = (0, order.len(), all);
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        let s = select(g, &order, mid, target);
        if s.plan.total() <= budget {
            (hi, best) = (mid, s);
        } else {
            lo = mid;
        }
    }
    Ok(Selection { smallest, ..best })
}

/// `bytes` in GiB with two decimals, or MiB below 1 GiB.
pub fn format_size(bytes: usize) -> String {
    let gib = bytes as f64 / (1u64 << 30) as f64;
    if gib >= 1.0 {
        format!("{gib:.2} GiB")
    } else {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_format_in_gib_or_mib() {
        assert_eq!(format_size(6 << 30), "6.00 GiB");
        assert_eq!(format_size(512 << 20), "512.0 MiB");
    }
}
