//! `cargo bench --bench memory -- (PRESET | --config FILE) [BATCH] [--steps N] [--memory-budget SIZE] [--precision f32|f16]`:
//! the peak resident memory of real training steps against the memory plan.
//!
//! On an adapter that keeps its buffers in host memory (lavapipe), what the
//! GPU holds is resident memory of this process. The bench makes the weights
//! on the host, resets the kernel's peak-RSS mark, then builds the graph,
//! uploads the weights and runs the steps. It prints the peak resident memory
//! above that baseline against the plan's total, the resident memory after
//! the steps, and the address space mapped since the baseline (pages never
//! written are mapped but not resident); then the same as JSON.
//!
//! No throw-away build comes first to keep the shader compiler's memory out:
//! wgpu's allocator keeps freed device memory for reuse, which would hide the
//! measured build's buffers. Mesa's shader disk cache makes a second run's
//! compiling cheap, so measure the second run.
//! `--memory-budget` recomputes blocks as `vdvae train --memory-budget` does.

mod common;

use common::{batch_of, bench_args, flag_value, model_arg, parse_size, training_images, ModelArg};
use vdvae::gpu::GpuContext;
use vdvae::graph::executor::{GpuGraph, TrainConfig};
use vdvae::graph::{Precision, Sampling};
use vdvae::kernels::optimizer::{AdamW, StepState};
use vdvae::model::assemble::build_model;
use vdvae::model::init::init_weights;
use vdvae::model::report::training_graph;
use vdvae::train::stage_batch;

const MIB: f64 = (1 << 20) as f64;

/// A `/proc/self/status` field in bytes (`VmRSS`, `VmHWM`).
fn status_bytes(field: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("this bench reads /proc/self/status (Linux)");
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    let kib: usize = line[field.len() + 1..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .expect("a size in kB");
    kib * 1024
}

/// Sets the peak-RSS mark (`VmHWM`) back to the current RSS (Linux ≥ 4.0).
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").expect("write /proc/self/clear_refs");
}

fn main() {
    vdvae::gpu::quiet_display_probe_when_headless();
    let args = bench_args();
    let ModelArg { model, h, batch } = model_arg(&args, &["--steps", "--memory-budget", "--precision"], 16);
    let steps: usize = flag_value(&args, "--steps").map_or(2, |s| s.parse().expect("--steps N"));
    let precision =
        flag_value(&args, "--precision").map_or(Precision::F32, |p| p.parse().unwrap_or_else(|e| panic!("{e}")));
    let budget = flag_value(&args, "--memory-budget").map(|s| parse_size(s));
    let (images, norm) = training_images(&h, batch);
    let ctx = GpuContext::from_env().unwrap_or_else(|e| panic!("{e}"));
    let mut m = build_model(&h, batch, Sampling::Posterior).unwrap();
    let (g, report) = training_graph(&m.graph, precision, budget, Some(&ctx)).unwrap_or_else(|e| panic!("{e}"));
    m.graph = g;
    if let Some(r) = report {
        println!("memory budget: {} of {} blocks recomputed", r.recomputed, r.candidates);
    }
    let host_memory = ctx.adapter.device_type == "Cpu";
    let cfg = || {
        Some(TrainConfig {
            adamw: AdamW {
                lr: h.lr as f32,
                weight_decay: h.wd as f32,
                ..AdamW::default()
            },
            resume: StepState::default(),
        })
    };
    let values = m.values_from_checkpoint(&init_weights(&h, 1).unwrap(), "init").unwrap();
    let baseline = status_bytes("VmRSS:");
    let baseline_virtual = status_bytes("VmSize:");
    reset_peak();
    let mut gpu = GpuGraph::build(&ctx, &m.graph, 1, cfg()).unwrap();
    gpu.write_values(&ctx, &m.graph, &values).unwrap();
    gpu.reset_ema(&ctx).unwrap();
    ctx.wait().unwrap();
    let after_build = status_bytes("VmRSS:");
    drop(values);
    for k in 0..steps {
        stage_batch(&ctx, &mut gpu, &m, &batch_of(&images, k, batch), norm).unwrap();
        gpu.train_step(&ctx).unwrap();
    }
    gpu.finish(&ctx).unwrap();
    let after_steps = status_bytes("VmRSS:");
    // Address space mapped since the baseline: the buffers as allocated,
    // touched or not (a page never written is not resident).
    let mapped = status_bytes("VmSize:").saturating_sub(baseline_virtual);
    let peak = status_bytes("VmHWM:");
    let planned = gpu.plan.total();
    let measured = peak.saturating_sub(baseline);
    let ratio = measured as f64 / planned as f64;
    println!("adapter: {} ({})", ctx.adapter.name, ctx.adapter.device_type);
    println!("model: {model}, batch {batch}, {steps} training steps, activations stored as {precision}");
    println!("planned peak:               {:>9.1} MiB", planned as f64 / MIB);
    println!("resident before the build:  {:>9.1} MiB", baseline as f64 / MIB);
    println!(
        "resident after build+upload:{:>9.1} MiB (+{:.1})",
        after_build as f64 / MIB,
        after_build.saturating_sub(baseline) as f64 / MIB
    );
    println!(
        "resident after the steps:   {:>9.1} MiB (+{:.1})",
        after_steps as f64 / MIB,
        after_steps.saturating_sub(baseline) as f64 / MIB
    );
    println!(
        "peak resident:              {:>9.1} MiB (+{:.1} over the baseline)",
        peak as f64 / MIB,
        measured as f64 / MIB
    );
    println!("measured / planned:         {:>9.3}", ratio);
    println!(
        "mapped since the baseline:  {:>9.1} MiB ({:.3} of the plan; buffers as allocated, untouched pages included)",
        mapped as f64 / MIB,
        mapped as f64 / planned as f64
    );
    if !host_memory {
        println!("note: this adapter is not a CPU adapter; its buffers are not in resident memory, so the figures above do not measure the plan");
    }
    let json = serde_json::json!({
        "adapter": ctx.adapter.name,
        "model": model,
        "batch": batch,
        "precision": precision.name(),
        "steps": steps,
        "planned_bytes": planned,
        "baseline_rss_bytes": baseline,
        "peak_rss_bytes": peak,
        "rss_after_steps_bytes": after_steps,
        "mapped_bytes": mapped,
        "measured_bytes": measured,
        "measured_over_planned": ratio,
        "host_memory_adapter": host_memory,
    });
    println!("{json}");
}
