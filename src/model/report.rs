//! `vdvae plan`: what a model costs before anything runs.

use std::fmt;

use super::config::HParams;
use super::vdvae::build_vdvae;
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::graph::autodiff::append_backward;
use crate::graph::gpu::{GpuGraph, TrainConfig};
use crate::graph::plan::{plan, MemoryPlan};
use crate::graph::{set_precision, Precision, Role, Sampling};

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
}

/// Builds the training graph (forward + backward) with activations stored at
/// `precision` and plans its memory. With an adapter, also builds the GPU step
/// there (buffers, pipelines, bind groups; nothing runs) to count its
/// dispatches and take the plan at its alignment.
pub fn plan_training(h: &HParams, batch: usize, precision: Precision, ctx: Option<&GpuContext>) -> Result<PlanReport> {
    let mut m = build_vdvae(h, batch, Sampling::Posterior)?;
    append_backward(&mut m.graph)?;
    set_precision(&mut m.graph, precision);
    let g = &m.graph;
    let (parameter_tensors, parameters) = g.count(Role::Param);
    let latent_dims = h.decoder_layers()?.iter().map(|l| l.res * l.res * h.zdim).sum();
    let mut report = PlanReport {
        batch,
        precision,
        parameters,
        parameter_tensors,
        latent_layers: m.kl_per_level.len(),
        latent_dims,
        forward_nodes: g.forward_len,
        backward_nodes: g.nodes.len() - g.forward_len,
        model_flops: g.model_flops(),
        memory: plan(g, PLAN_ALIGN, PLAN_CHUNK, true),
        dispatches: None,
    };
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
        Ok(())
    }
}
