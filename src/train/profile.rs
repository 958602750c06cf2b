//! `vdvae profile`: where the FLOPs and the time of a training step go.
//!
//! One run measures, on the same adapter and graph:
//! - the wall time of ordinary pipelined training steps (staged inputs, one
//!   submit per step, metrics read one step late), after warm-up steps;
//! - the FMA ceiling before and after those steps (the higher is taken);
//! - every dispatch of one step timed alone in its own compute pass, with the
//!   FLOPs and bytes its op stated ([`Work`]) and the graph node it serves.
//!
//! Per kernel it reports dispatches, GPU time, share, FLOPs, bytes, GFLOP/s,
//! GB/s and the fraction of the ceiling; for the step, model FLOPs (convs at 2
//! per multiply-add: forward, dx, dw), MFU = model FLOPs / wall time / ceiling,
//! dispatches per step and GPU-busy time (the timed dispatches added up)
//! against the wall time. [`ProfileReport::trace`] is the step as Chrome
//! trace events, for Perfetto or chrome://tracing.
//!
//! FLOPs follow [`Work`]'s convention: the conv kernels carry exactly their
//! multiply-adds, so the dispatches of the conv nodes add up to the model FLOPs
//! ([`StepSummary::model_op_flops`]), plus those on the zero channels a thin
//! input is padded with; the fused kernels (reparam + KL, DMoL,
//! AdamW) add their stated arithmetic on top ([`StepSummary::kernel_flops`]).

use std::fmt;
use std::time::Instant;

use serde::Serialize;
use serde_json::json;

use super::{gather, stage_batch, start};
use crate::data::{bundled_mnist, ImageSet};
use crate::error::{Error, Result};
use crate::gpu::{measure_fma_ceiling, GpuContext, Work};
use crate::graph::executor::DispatchTime;
use crate::graph::{Graph, Precision};
use crate::kernels::rng::RngKey;
use crate::model::config::HParams;
use crate::model::evaluate::fit_images;
use crate::model::preprocess::{CIFAR10, MNIST};

/// How long `vdvae profile` measures.
#[derive(Clone, Copy, Debug)]
pub struct ProfileOptions {
    pub batch: usize,
    /// Steps run before anything is timed (pipelines compile, caches fill).
    pub warmup_steps: usize,
    /// Pipelined steps whose mean wall time is reported.
    pub timed_steps: usize,
    /// Seconds of each FMA-ceiling measurement (one before, one after the steps).
    pub ceiling_seconds: f64,
    /// How activations are stored.
    pub precision: Precision,
}

impl ProfileOptions {
    pub fn new(batch: usize) -> ProfileOptions {
        ProfileOptions {
            batch,
            warmup_steps: 2,
            timed_steps: 3,
            ceiling_seconds: 1.0,
            precision: Precision::F32,
        }
    }
}

/// The dispatches of one kernel over a step.
#[derive(Clone, Debug, Serialize)]
pub struct KernelRow {
    pub kernel: String,
    /// The kernel's variant within its family (see [`variant_of`]).
    pub variant: &'static str,
    /// Invocations per workgroup (its `@workgroup_size`).
    pub workgroup_invocations: u32,
    pub dispatches: usize,
    pub gpu_ms: f64,
    /// Of the step's GPU-busy time.
    pub share: f64,
    pub flops: f64,
    pub bytes: f64,
    pub gflops_per_s: f64,
    pub gbytes_per_s: f64,
    /// GFLOP/s over the FMA ceiling.
    pub fma_fraction: f64,
}

/// The step as a whole.
#[derive(Clone, Debug, Serialize)]
pub struct StepSummary {
    pub dispatches: usize,
    pub submits_per_step: f64,
    /// Convs (forward, dx, dw) at 2 per multiply-add: `Graph::model_flops`.
    pub model_flops: f64,
    /// FLOPs the dispatches of nodes with model FLOPs state: `model_flops` plus
    /// the multiply-adds on zero-padded input channels of thin convs.
    pub model_op_flops: f64,
    /// FLOPs all dispatches state (the fused kernels' arithmetic on top).
    pub kernel_flops: f64,
    /// Bytes all dispatches state.
    pub bytes: f64,
    pub warmup_steps: usize,
    pub timed_steps: usize,
    /// Mean wall time of a pipelined step (one submit each).
    pub wall_ms: f64,
    /// The dispatches of one step timed alone, added up.
    pub gpu_busy_ms: f64,
    pub busy_fraction: f64,
    pub fma_ceiling_gflops: f64,
    pub fma_ceiling_before_gflops: f64,
    pub fma_ceiling_after_gflops: f64,
    /// Model FLOPs over the wall time.
    pub model_gflops_per_s: f64,
    /// Model FLOP utilisation: model GFLOP/s over the FMA ceiling.
    pub mfu: f64,
}

/// One dispatch of the profiled step, for the trace.
#[derive(Clone, Debug)]
pub struct DispatchRecord {
    pub time: DispatchTime,
    /// 0 forward, 1 backward, 2 optimizer.
    pub stage: usize,
    /// (name, shape) of the node's inputs and outputs; empty for the optimizer.
    pub inputs: Vec<(String, Vec<usize>)>,
    pub outputs: Vec<(String, Vec<usize>)>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProfileReport {
    pub adapter: String,
    pub batch: usize,
    pub step: StepSummary,
    /// Slowest first.
    pub kernels: Vec<KernelRow>,
    /// Every dispatch in recording order (in the trace, not the JSON report).
    #[serde(skip)]
    pub dispatches: Vec<DispatchRecord>,
}

/// Images to profile on: the bundled MNIST subset for models of one channel
/// when it holds a batch, else seeded noise of the model's size (speed does
/// not depend on pixel values).
pub(super) fn profile_images(h: &HParams, batch: usize) -> ImageSet {
    if h.image_channels == 1 {
        if let Ok(images) = fit_images(h, bundled_mnist()) {
            if images.n >= batch {
                return images;
            }
        }
    }
    let (s, c) = (h.image_size, h.image_channels);
    let key = RngKey::new(1, 0, 0);
    let pixels = (0..(batch * s * s * c) as u32)
        .map(|i| (key.uniform(i) * 256.0).min(255.0) as u8)
        .collect();
    ImageSet {
        n: batch,
        h: s,
        w: s,
        c,
        pixels,
    }
}

/// Profiles one training step of `h` (fresh weights) on the GPU: see the module docs.
pub fn profile_training(ctx: &GpuContext, h: &HParams, o: &ProfileOptions) -> Result<ProfileReport> {
    if o.timed_steps == 0 {
        return Err(Error::Input("profile: time at least one step".into()));
    }
    if !ctx.can_profile() {
        return Err(Error::Gpu(format!(
            "{} does not support timestamp queries; per-kernel profiling is unavailable",
            ctx.adapter.name
        )));
    }
    let images = profile_images(h, o.batch);
    let norm = if h.image_channels == 1 { MNIST } else { CIFAR10 };
    let (m, mut gpu, _) = start(ctx, h, &images, (o.batch, 0, 1), o.precision, None, None)?;
    let step = |k: usize, gpu: &mut crate::graph::executor::GpuGraph| -> Result<()> {
        let idx: Vec<usize> = (0..o.batch).map(|j| (k * o.batch + j) % images.n).collect();
        stage_batch(ctx, gpu, &m, &gather(&images, &idx), norm)?;
        gpu.train_step(ctx).map(|_| ())
    };
    for k in 0..o.warmup_steps {
        step(k, &mut gpu)?;
    }
    gpu.finish(ctx)?;
    let before = measure_fma_ceiling(ctx, o.ceiling_seconds)?.gflops;
    let counters = ctx.counters();
    let clock = Instant::now();
    for k in 0..o.timed_steps {
        step(o.warmup_steps + k, &mut gpu)?;
    }
    gpu.finish(ctx)?;
    let wall = clock.elapsed().as_secs_f64() / o.timed_steps as f64;
    let submits = (ctx.counters().submits - counters.submits) as f64 / o.timed_steps as f64;
    let after = measure_fma_ceiling(ctx, o.ceiling_seconds)?.gflops;
    let times = gpu.profile(ctx)?;
    let g = &m.graph;
    let dispatches: Vec<DispatchRecord> = times.into_iter().map(|t| record(g, t)).collect();
    Ok(ProfileReport::new(
        ctx.adapter.name.clone(),
        o,
        g,
        dispatches,
        Measured {
            wall,
            submits,
            ceiling: [before, after],
        },
    ))
}

fn record(g: &Graph, time: DispatchTime) -> DispatchRecord {
    let named = |ts: &[usize]| -> Vec<(String, Vec<usize>)> {
        ts.iter()
            .map(|&t| (g.tensors[t].name.clone(), g.tensors[t].shape.clone()))
            .collect()
    };
    let (stage, inputs, outputs) = match time.label.node {
        Some(n) => (
            (n >= g.forward_len) as usize,
            named(&g.nodes[n].inputs),
            named(&g.nodes[n].outputs),
        ),
        None => (2, Vec::new(), Vec::new()),
    };
    DispatchRecord {
        time,
        stage,
        inputs,
        outputs,
    }
}

/// What the pipelined steps measured.
struct Measured {
    /// Seconds per step.
    wall: f64,
    submits: f64,
    /// GFLOP/s before and after the steps.
    ceiling: [f64; 2],
}

impl ProfileReport {
    fn new(
        adapter: String,
        o: &ProfileOptions,
        g: &Graph,
        dispatches: Vec<DispatchRecord>,
        m: Measured,
    ) -> ProfileReport {
        let ceiling = m.ceiling[0].max(m.ceiling[1]);
        let busy: f64 = dispatches.iter().map(|d| d.time.seconds).sum();
        let works = || dispatches.iter().map(|d| d.time.work);
        let model_flops = g.model_flops();
        let model_op_flops = dispatches
            .iter()
            .filter(|d| {
                d.time
                    .label
                    .node
                    .is_some_and(|n| g.nodes[n].op.rule().model_flops(g, &g.nodes[n]) > 0.0)
            })
            .map(|d| d.time.work.flops)
            .sum();
        let step = StepSummary {
            dispatches: dispatches.len(),
            submits_per_step: m.submits,
            model_flops,
            model_op_flops,
            kernel_flops: works().map(|w| w.flops).sum(),
            bytes: works().map(|w| w.bytes).sum(),
            warmup_steps: o.warmup_steps,
            timed_steps: o.timed_steps,
            wall_ms: m.wall * 1e3,
            gpu_busy_ms: busy * 1e3,
            busy_fraction: busy / m.wall,
            fma_ceiling_gflops: ceiling,
            fma_ceiling_before_gflops: m.ceiling[0],
            fma_ceiling_after_gflops: m.ceiling[1],
            model_gflops_per_s: model_flops / m.wall / 1e9,
            mfu: model_flops / m.wall / 1e9 / ceiling,
        };
        ProfileReport {
            adapter,
            batch: o.batch,
            step,
            kernels: kernel_rows(&dispatches, busy, ceiling),
            dispatches,
        }
    }

    /// The step as Chrome trace events (`{"traceEvents": [...]}`): one complete
    /// event per dispatch, laid end to end in recording order with its
    /// timed-alone duration, on one track per stage (forward, backward,
    /// optimizer). Each names its kernel and carries the node it serves, the
    /// node's input and output shapes, and its FLOPs and bytes.
    pub fn trace(&self) -> serde_json::Value {
        const STAGES: [&str; 3] = ["forward", "backward", "optimizer"];
        let mut events = vec![json!({
            "name": "process_name", "ph": "M", "pid": 1, "tid": 0,
            "args": {"name": format!("vdvae training step, batch {} ({})", self.batch, self.adapter)},
        })];
        for (tid, stage) in STAGES.iter().enumerate() {
            events.push(json!({
                "name": "thread_name", "ph": "M", "pid": 1, "tid": tid,
                "args": {"name": stage},
            }));
        }
        let shapes = |v: &[(String, Vec<usize>)]| -> Vec<serde_json::Value> {
            v.iter()
                .map(|(name, shape)| json!({"name": name, "shape": shape}))
                .collect()
        };
        let mut at_us = 0.0;
        for (i, d) in self.dispatches.iter().enumerate() {
            let t = &d.time;
            let dur = t.seconds * 1e6;
            events.push(json!({
                "name": t.kernel,
                "cat": t.label.op,
                "ph": "X",
                "ts": at_us,
                "dur": dur,
                "pid": 1,
                "tid": d.stage,
                "args": {
                    "dispatch": i,
                    "kernel": t.kernel,
                    "node": t.label.name,
                    "node_index": t.label.node,
                    "op": t.label.op,
                    "inputs": shapes(&d.inputs),
                    "outputs": shapes(&d.outputs),
                    "flops": t.work.flops,
                    "bytes": t.work.bytes,
                },
            }));
            at_us += dur;
        }
        json!({
            "traceEvents": events,
            "displayTimeUnit": "ms",
            "otherData": {
                "adapter": self.adapter,
                "batch": self.batch,
                "timing": "each dispatch timed alone in its own compute pass, laid end to end",
            },
        })
    }

    /// Writes [`ProfileReport::trace`] to `path` atomically (a temporary file renamed over it).
    pub fn write_trace(&self, path: &str) -> Result<()> {
        let bytes = serde_json::to_vec(&self.trace()).map_err(|e| Error::Input(format!("{path}: {e}")))?;
        crate::checkpoint::write_atomically(path, &bytes)
    }

    /// The report as one JSON object (kernels and step; the dispatches are in the trace).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a profile report serialises")
    }
}

/// Dispatches grouped by kernel, slowest first.
fn kernel_rows(dispatches: &[DispatchRecord], busy: f64, ceiling: f64) -> Vec<KernelRow> {
    let mut rows: Vec<(&str, usize, f64, Work, u32)> = Vec::new();
    for d in dispatches {
        let t = &d.time;
        let i = match rows.iter().position(|r| r.0 == t.kernel) {
            Some(i) => i,
            None => {
                rows.push((t.kernel, 0, 0.0, Work::default(), t.workgroup_invocations));
                rows.len() - 1
            }
        };
        let r = &mut rows[i];
        r.1 += 1;
        r.2 += t.seconds;
        r.3.flops += t.work.flops;
        r.3.bytes += t.work.bytes;
    }
    rows.sort_by(|a, b| b.2.total_cmp(&a.2));
    let rate = |amount: f64, seconds: f64| if seconds > 0.0 { amount / seconds / 1e9 } else { 0.0 };
    rows.into_iter()
        .map(|(kernel, dispatches, seconds, work, workgroup_invocations)| {
            let gflops = rate(work.flops, seconds);
            KernelRow {
                kernel: kernel.to_string(),
                variant: variant_of(kernel),
                workgroup_invocations,
                dispatches,
                gpu_ms: seconds * 1e3,
                share: if busy > 0.0 { seconds / busy } else { 0.0 },
                flops: work.flops,
                bytes: work.bytes,
                gflops_per_s: gflops,
                gbytes_per_s: rate(work.bytes, seconds),
                fma_fraction: if ceiling > 0.0 { gflops / ceiling } else { 0.0 },
            }
        })
        .collect()
}

/// The variant a kernel belongs to, from the family naming convention
/// `<family>_<variant>_…` of the hot families' variants: `tiled` (register
/// tiles: conv2d's on 8-lane subgroups, matmul's portable), `packed` (the
/// packed matmul, exactly 8 lanes),
/// `workgroup` (GPU-shaped: workgroup-memory tiles, no subgroup assumption),
/// and `portable` for every other kernel.
pub fn variant_of(kernel: &str) -> &'static str {
    let mut parts = kernel.split(['_', ' ']);
    let _family = parts.next();
    match parts.next() {
        Some("tiled") => "tiled",
        Some("packed") => "packed",
        Some("workgroup") => "workgroup",
        _ => "portable",
    }
}

/// A generated kernel's name made short for a table: the parameter struct's
/// name dropped, `true` flags by name, `false` ones left out, enum payloads in
/// parentheses. `conv2d_tiled_forward_ForwardTile { k: 3, rows: 1, gelu_input:
/// false, epilogue: Store { bias: true, residual: false } }` becomes
/// `conv2d_tiled_forward k=3 rows=1 Store(bias)`. Other names are unchanged.
pub fn short_kernel_name(kernel: &str) -> String {
    let Some((head, fields)) = kernel.split_once(" { ") else {
        return kernel.to_string();
    };
    let base = match head.rsplit_once('_') {
        Some((base, ty)) if ty.starts_with(|c: char| c.is_ascii_uppercase()) => base,
        _ => head,
    };
    let fields = compact_fields(fields.strip_suffix(" }").unwrap_or(fields));
    if fields.is_empty() {
        base.to_string()
    } else {
        format!("{base} {fields}")
    }
}

/// `a: 1, b: true, c: false, e: V { x: true }` → `a=1 b V(x)`.
fn compact_fields(fields: &str) -> String {
    let mut items = Vec::new();
    let mut depth = 0;
    let mut from = 0;
    let bytes = fields.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'{' | b'(' | b'[' => depth += 1,
            b'}' | b')' | b']' => depth -= 1,
            b',' if depth == 0 => {
                items.push(&fields[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    items.push(&fields[from..]);
    let mut out = Vec::new();
    for item in items.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let Some((key, value)) = item.split_once(": ") else {
            out.push(item.to_string());
            continue;
        };
        match value {
            "true" => out.push(key.to_string()),
            "false" => {}
            v if v.starts_with(|c: char| c.is_ascii_uppercase()) => match v.split_once(" { ") {
                Some((variant, inner)) => {
                    let inner = compact_fields(inner.strip_suffix(" }").unwrap_or(inner));
                    out.push(format!("{variant}({inner})"));
                }
                None => out.push(v.to_string()),
            },
            v => out.push(format!("{key}={v}")),
        }
    }
    out.join(" ")
}

fn si(value: f64) -> String {
    match value {
        v if v >= 1e12 => format!("{:.2}T", v / 1e12),
        v if v >= 1e9 => format!("{:.2}G", v / 1e9),
        v if v >= 1e6 => format!("{:.2}M", v / 1e6),
        v if v >= 1e3 => format!("{:.2}k", v / 1e3),
        v if v > 0.0 => format!("{v:.0}"),
        _ => "-".to_string(),
    }
}

impl fmt::Display for ProfileReport {
    /// The per-kernel table (slowest first, kernel names last and shortened)
    /// and the step summary.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.step;
        writeln!(
            f,
            "adapter: {}; batch {}; one training step, each dispatch timed alone (GPU ms); FLOPs and bytes as the ops state them",
            self.adapter, self.batch
        )?;
        writeln!(
            f,
            "{:>6} {:>10} {:>6} {:>8} {:>8} {:>8} {:>7} {:>6}  kernel",
            "disp", "GPU ms", "share", "FLOP", "bytes", "GFLOP/s", "GB/s", "%FMA"
        )?;
        for r in &self.kernels {
            let (gflops, fma) = if r.flops > 0.0 {
                (
                    format!("{:.2}", r.gflops_per_s),
                    format!("{:.1}%", 100.0 * r.fma_fraction),
                )
            } else {
                ("-".into(), "-".into())
            };
            writeln!(
                f,
                "{:>6} {:>10.3} {:>5.1}% {:>8} {:>8} {:>8} {:>7.2} {:>6}  {}",
                r.dispatches,
                r.gpu_ms,
                100.0 * r.share,
                si(r.flops),
                si(r.bytes),
                gflops,
                r.gbytes_per_s,
                fma,
                short_kernel_name(&r.kernel)
            )?;
        }
        let total_rate = |amount: f64| amount / (s.gpu_busy_ms * 1e-3) / 1e9;
        writeln!(
            f,
            "{:>6} {:>10.3} {:>5.1}% {:>8} {:>8} {:>8.2} {:>7.2} {:>5.1}%  total",
            s.dispatches,
            s.gpu_busy_ms,
            100.0,
            si(s.kernel_flops),
            si(s.bytes),
            total_rate(s.kernel_flops),
            total_rate(s.bytes),
            100.0 * total_rate(s.kernel_flops) / s.fma_ceiling_gflops
        )?;
        writeln!(f)?;
        writeln!(f, "step:")?;
        writeln!(
            f,
            "  dispatches per step   {} (submits per pipelined step: {})",
            s.dispatches, s.submits_per_step
        )?;
        writeln!(
            f,
            "  model FLOPs           {:.3} GFLOP (convs forward + dx + dw, 2 per multiply-add); their kernels state {:.3} GFLOP",
            s.model_flops / 1e9,
            s.model_op_flops / 1e9
        )?;
        writeln!(
            f,
            "  kernel FLOPs          {:.3} GFLOP (model FLOPs + the fused kernels' arithmetic); bytes {:.3} GB",
            s.kernel_flops / 1e9,
            s.bytes / 1e9
        )?;
        writeln!(
            f,
            "  wall time             {:.1} ms per step (pipelined, one submit each: mean of {} after {} warm-up)",
            s.wall_ms, s.timed_steps, s.warmup_steps
        )?;
        writeln!(
            f,
            "  GPU busy              {:.1} ms (the dispatches timed alone, added up; each pass adds its own start and end) = {:.1}% of the wall time",
            s.gpu_busy_ms,
            100.0 * s.busy_fraction
        )?;
        writeln!(
            f,
            "  FMA ceiling           {:.1} GFLOP/s (before {:.1}, after {:.1}; the higher)",
            s.fma_ceiling_gflops, s.fma_ceiling_before_gflops, s.fma_ceiling_after_gflops
        )?;
        writeln!(
            f,
            "  model FLOP rate       {:.2} GFLOP/s = MFU {:.2}% (model FLOPs / wall time / ceiling)",
            s.model_gflops_per_s,
            100.0 * s.mfu
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_kernel_names_shorten() {
        let name = "conv2d_tiled_forward_ForwardTile { k: 1, rows: 1, blocks: 4, couts_per_lane: 2, \
                    gelu_input: true, epilogue: Store { bias: true, residual: false } }";
        assert_eq!(
            short_kernel_name(name),
            "conv2d_tiled_forward k=1 rows=1 blocks=4 couts_per_lane=2 gelu_input Store(bias)"
        );
        assert_eq!(
            short_kernel_name("conv2d_tiled_forward_ForwardTile { k: 3, gelu_input: false, epilogue: GeluGrad }"),
            "conv2d_tiled_forward k=3 GeluGrad"
        );
        assert_eq!(short_kernel_name("adamw_update_ema"), "adamw_update_ema");
    }
}
