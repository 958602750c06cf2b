//! `vdvae plan`: what a model costs before anything runs.

use std::fmt;

use super::assemble::build_model;
use super::config::HParams;
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::graph::autodiff::{append_backward, Accumulate};
use crate::graph::budget::{fit_step, format_size, PlanTarget};
use crate::graph::executor::{GpuGraph, TrainConfig};
use crate::graph::plan::{plan, MemoryPlan};
use crate::graph::{set_precision, Graph, Precision, Role, Sampling, TensorId};

/// Binding offset alignment the plan assumes: the largest any adapter requires.
pub const PLAN_ALIGN: usize = 256;
/// Largest buffer the plan assumes without an adapter: 1 GiB.
pub const PLAN_CHUNK: usize = 1 << 30;

pub struct PlanReport {
    pub batch: usize,
    /// How activations are stored.
    pub precision: Precision,
    pub parameters: usize,
    pub parameter_tensors: usize,
    pub latent_layers: usize,
    pub latent_dims: usize,
    pub forward_nodes: usize,
    pub backward_nodes: usize,
    /// Model FLOPs of one training step (convs at 2 per multiply-add).
    pub model_flops: f64,
    pub memory: MemoryPlan,
    /// Dispatches of one training step and the adapter they were counted on
    /// (the graph is built there, never run); None without an adapter.
    pub dispatches: Option<(usize, String)>,
    /// What fitting a memory budget did, when one was given.
    pub budget: Option<BudgetReport>,
}

/// Blocks recomputed to fit `vdvae plan --memory-budget`.
#[derive(Clone, Debug)]
pub struct BudgetReport {
    pub budget: usize,
    /// Recomputed blocks, and how many could be.
    pub recomputed: usize,
    pub candidates: usize,
    /// Model FLOPs recomputed per step (on top of `model_flops`), and the nodes that do it.
    pub recompute_flops: f64,
    pub recompute_nodes: usize,
    /// The backward sums gradient parts as they come (`Accumulate::Running`).
    pub running_sums: bool,
    /// The planned total with every candidate block recomputed.
    pub smallest_peak: usize,
    /// Without an adapter the flipped conv weights are an upper bound.
    pub estimated: bool,
}

/// The training step of `forward` (a forward graph with its loss) fitted to
/// `budget` bytes as `GpuGraph::build` plans it on `ctx` (or without an
/// adapter), activations stored at `precision`: see `graph::budget::fit_step`.
pub fn fit_training_graph(
    forward: &Graph,
    precision: Precision,
    budget: usize,
    ctx: Option<&GpuContext>,
) -> Result<(Graph, BudgetReport)> {
    let target = |g: &Graph| match ctx {
        Some(ctx) => PlanTarget::for_adapter(ctx, g, true),
        None => PlanTarget::without_adapter(g, PLAN_ALIGN, PLAN_CHUNK, true),
    };
    let s = fit_step(forward, precision, budget, &target)?;
    let report = BudgetReport {
        budget,
        recomputed: s.recomputed.len(),
        candidates: s.candidates,
        recompute_flops: s.recompute_flops,
        recompute_nodes: s.recompute_nodes,
        running_sums: s.accumulate == Accumulate::Running,
        smallest_peak: s.smallest,
        estimated: ctx.is_none(),
    };
    Ok((s.graph, report))
}

/// The training step of `forward` (a forward graph with its loss): autodiff,
/// activations stored at `precision`, and with `budget` (bytes) blocks
/// recomputed until the plan fits it (on `ctx`, or planned without an adapter).
pub fn training_graph(
    forward: &Graph,
    precision: Precision,
    budget: Option<usize>,
    ctx: Option<&GpuContext>,
) -> Result<(Graph, Option<BudgetReport>)> {
    match budget {
        Some(bytes) => {
            let (g, r) = fit_training_graph(forward, precision, bytes, ctx)?;
            Ok((g, Some(r)))
        }
        None => {
            let mut g = forward.clone();
            append_backward(&mut g)?;
            set_precision(&mut g, precision);
            Ok((g, None))
        }
    }
}

/// Builds the training graph (forward + backward) with activations stored at
/// `precision` and plans its memory. With an adapter, also builds the GPU step
/// there (buffers, pipelines, bind groups; nothing runs) to count its
/// dispatches and take the plan at its alignment. With `budget` (bytes),
/// checkpoints blocks until the plan fits it.
pub fn plan_training(
    h: &HParams,
    batch: usize,
    precision: Precision,
    ctx: Option<&GpuContext>,
    budget: Option<usize>,
) -> Result<PlanReport> {
    let mut m = build_model(h, batch, Sampling::Posterior)?;
    let (g, budget_report) = training_graph(&m.graph, precision, budget, ctx)?;
    m.graph = g;
    let g = &m.graph;
    let (parameter_tensors, parameters) = g.count(Role::Param);
    // Latent elements per image: each level's per-element KL tensor.
    let kl_of = |level: TensorId| g.nodes.iter().find(|n| n.outputs.contains(&level)).map(|n| n.inputs[0]);
    let latent_dims = m
        .kl_per_level
        .iter()
        .filter_map(|&sum| kl_of(sum))
        .map(|kl| g.tensors[kl].numel() / batch)
        .sum();
    let mut report = PlanReport {
        batch,
        precision,
        parameters,
        parameter_tensors,
        latent_layers: m.kl_per_level.len(),
        latent_dims,
        forward_nodes: g.forward_len,
        backward_nodes: g.nodes.len() - g.forward_len,
        model_flops: g.model_flops() - budget_report.as_ref().map_or(0.0, |r| r.recompute_flops),
        memory: plan(g, PLAN_ALIGN, PLAN_CHUNK, true),
        dispatches: None,
        budget: budget_report,
    };
    if report.budget.is_some() && ctx.is_none() {
        // The total the budget was fitted to: workspace and flipped weights (estimated) counted.
        report.memory = PlanTarget::without_adapter(g, PLAN_ALIGN, PLAN_CHUNK, true).plan(g);
    }
    if let Some(ctx) = ctx {
        let train = TrainConfig {
            adamw: Default::default(),
            resume: Default::default(),
        };
        let gpu = GpuGraph::build(ctx, g, h.seed, Some(train))?;
        report.dispatches = Some((gpu.dispatch_count(), ctx.adapter.name.clone()));
        report.memory = gpu.plan.clone();
    }
    Ok(report)
}

fn mib(bytes: usize) -> String {
    format!("{:>10.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

impl fmt::Display for PlanReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.memory;
        writeln!(f, "batch:                  {}", self.batch)?;
        writeln!(f, "activations stored as:  {}", self.precision)?;
        writeln!(
            f,
            "parameters:             {} in {} tensors",
            self.parameters, self.parameter_tensors
        )?;
        writeln!(f, "latent layers:          {}", self.latent_layers)?;
        writeln!(f, "latent dims per image:  {}", self.latent_dims)?;
        writeln!(
            f,
            "graph nodes:            {} forward, {} backward",
            self.forward_nodes, self.backward_nodes
        )?;
        writeln!(
            f,
            "model FLOPs per step:   {:.2} GFLOP (forward + backward, 2 per multiply-add)",
            self.model_flops / 1e9
        )?;
        writeln!(f, "activation buffers:     {}", m.arenas.len())?;
        match &self.dispatches {
            Some((n, adapter)) => {
                writeln!(f, "dispatches per step:    {n} (built on {adapter}, not run)")?;
                writeln!(f, "submits per step:       1")?;
            }
            None => writeln!(
                f,
                "dispatches per step:    unknown (no GPU adapter to build the step on)"
            )?,
        }
        writeln!(
            f,
            "planned peak memory:    {} ({:.2} GiB)",
            mib(m.total()),
            m.total() as f64 / (1u64 << 30) as f64
        )?;
        for (what, bytes) in [
            ("weights", m.weights),
            ("gradients", m.grads),
            ("optimizer state", m.optimizer),
            ("EMA weights", m.ema),
            ("inputs", m.inputs),
            ("constants", m.constants),
            ("activations", m.activations),
            ("workspace", m.workspace),
            ("flipped conv weights", m.flipped_weights),
        ] {
            writeln!(f, "  {what:<20} {}", mib(bytes))?;
        }
        if let Some(b) = &self.budget {
            let estimated = if b.estimated {
                " (flipped conv weights estimated: every conv dx counted)"
            } else {
                ""
            };
            writeln!(
                f,
                "memory budget:          {} ({} planned){estimated}",
                format_size(b.budget),
                format_size(m.total())
            )?;
            writeln!(
                f,
                "recomputed blocks:      {} of {} (rerun in the backward pass, {} nodes)",
                b.recomputed, b.candidates, b.recompute_nodes
            )?;
            if b.running_sums {
                writeln!(f, "gradient sums:          running (each part added as it comes)")?;
            }
            writeln!(
                f,
                "recompute FLOPs:        {:.2} GFLOP per step ({:.1}% of the model FLOPs)",
                b.recompute_flops / 1e9,
                100.0 * b.recompute_flops / self.model_flops
            )?;
            writeln!(
                f,
                "smallest reachable:     {} (every block recomputed)",
                format_size(b.smallest_peak)
            )?;
        }
        Ok(())
    }
}
