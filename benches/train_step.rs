//! `cargo bench --bench train_step -- (PRESET | --config FILE) [BATCH] [--precision f32|f16] [--cpu] [--profile] [--memory-budget SIZE] [--ranks N]`:
//! whole training steps of a real model on the GPU (activations stored at `--precision`). Prints, from one run, the
//! model GFLOP per step, s/step, images/s, model FLOP utilisation (MFU) against
//! the FMA ceiling measured in the same run (before and after the steps, the
//! higher taken), dispatches and submits per step, and buffers created per
//! step after warm-up; then the same as JSON. `--cpu` adds the CPU reference's
//! speed on the same step; `--profile` the GPU time of each kernel (`vdvae profile` reports more);
//! `--memory-budget` (e.g. 6GiB) recomputes blocks as `vdvae train --memory-budget` does
//! (model FLOPs and MFU leave the recompute out).
//!
//! `--ranks N` (or started by `mpirun -np N`, built with `--features mpi`) runs
//! data-parallel steps instead, BATCH images per rank, and reports the share of
//! a step spent exchanging the gradient (`data_parallel/`).
//!
//! Models with one channel train on the bundled MNIST images; others on seeded
//! random images of their size (speed does not depend on pixel values).

mod common;
mod data_parallel;

use std::time::Instant;

use common::{batch_of, bench_args, flag_value, model_arg, training_images, ModelArg};
use vdvae::data::ImageSet;
use vdvae::gpu::{measure_fma_ceiling, GpuContext};
use vdvae::graph::executor::cpu::{self, Noise};
use vdvae::graph::executor::{GpuGraph, TrainConfig};
use vdvae::graph::{Precision, Sampling};
use vdvae::kernels::optimizer::reference::{self as adam_ref, TensorRef};
use vdvae::kernels::optimizer::{AdamW, StepState};
use vdvae::model::assemble::build_model;
use vdvae::model::init::init_weights;
use vdvae::model::preprocess::Normalization;
use vdvae::model::report::training_graph;
use vdvae::train::stage_batch;

const WARMUP: usize = 2;
const GPU_STEPS: usize = 5;
const CPU_STEPS: usize = 1;
const CEILING_SECONDS: f64 = 1.0;

struct Args {
    model: ModelArg,
    cpu: bool,
    profile: bool,
    memory_budget: Option<usize>,
    precision: Precision,
    /// Data-parallel ranks (threads of this process), or the MPI world's.
    ranks: usize,
}

fn parse_args() -> Args {
    let args = bench_args();
    let flag = |f: &str| args.iter().any(|a| a == f);
    let memory_budget = flag_value(&args, "--memory-budget").map(|s| common::parse_size(s));
    let precision =
        flag_value(&args, "--precision").map_or(Precision::F32, |p| p.parse().unwrap_or_else(|e| panic!("{e}")));
    Args {
        model: model_arg(&args, &["--memory-budget", "--precision", "--ranks"], 16),
        ranks: flag_value(&args, "--ranks").map_or(1, |r| r.parse().unwrap_or_else(|e| panic!("--ranks: {e}"))),
        cpu: flag("--cpu"),
        profile: flag("--profile"),
        memory_budget,
        precision,
    }
}

fn main() {
    vdvae::gpu::quiet_display_probe_when_headless();
    let Args {
        model,
        cpu,
        profile,
        memory_budget,
        precision,
        ranks,
    } = parse_args();
    if ranks > 1 || vdvae::parallel::launched_by_mpirun() {
        // Enough images for every rank's shard of each step.
        let (images, norm) = training_images(&model.h, model.batch * ranks.max(2));
        return data_parallel::run(&model, &images, norm, ranks);
    }
    let ModelArg { model, h, batch } = model;
    let (images, norm) = training_images(&h, batch);
    let ctx = GpuContext::from_env().unwrap_or_else(|e| panic!("{e}"));
    let mut m = build_model(&h, batch, Sampling::Posterior).unwrap();
    let (g, budget) = training_graph(&m.graph, precision, memory_budget, Some(&ctx)).unwrap_or_else(|e| panic!("{e}"));
    m.graph = g;
    let recompute_flops = budget.as_ref().map_or(0.0, |r| r.recompute_flops);
    if let Some(r) = &budget {
        println!(
            "memory budget {} bytes: {} of {} blocks recomputed, {:.2} GFLOP per step",
            r.budget,
            r.recomputed,
            r.candidates,
            recompute_flops / 1e9
        );
    }
    let model_flops = m.graph.model_flops() - recompute_flops;
    let weights = init_weights(&h, 1).unwrap();
    let adamw = AdamW {
        lr: h.lr as f32,
        weight_decay: h.wd as f32,
        ..AdamW::default()
    };

    // GPU: build once, then a steady-state loop of stage inputs + one submit per step.
    let build = Instant::now();
    let cfg = TrainConfig {
        adamw,
        resume: StepState::default(),
    };
    let mut gpu = GpuGraph::build(&ctx, &m.graph, 1, Some(cfg)).unwrap();
    let build_s = build.elapsed().as_secs_f64();
    let values = m.values_from_checkpoint(&weights, "init").unwrap();
    gpu.write_values(&ctx, &m.graph, &values).unwrap();
    gpu.reset_ema(&ctx).unwrap();
    let step = |k: usize, gpu: &mut GpuGraph| {
        stage_batch(&ctx, gpu, &m, &batch_of(&images, k, batch), norm).unwrap();
        gpu.train_step(&ctx).unwrap()
    };
    for k in 0..WARMUP {
        step(k, &mut gpu);
    }
    gpu.finish(&ctx).unwrap();
    let ceiling_before = measure_fma_ceiling(&ctx, CEILING_SECONDS).unwrap().gflops;
    let before = ctx.counters();
    let start = Instant::now();
    let mut last = None;
    for k in WARMUP..WARMUP + GPU_STEPS {
        last = step(k, &mut gpu).or(last);
    }
    let last = gpu.finish(&ctx).unwrap().or(last).expect("metrics");
    let gpu_s = start.elapsed().as_secs_f64() / GPU_STEPS as f64;
    let after = ctx.counters();
    let ceiling_after = measure_fma_ceiling(&ctx, CEILING_SECONDS).unwrap().gflops;
    let ceiling = ceiling_before.max(ceiling_after);
    let buffers_per_step = (after.buffers_created - before.buffers_created) as f64 / GPU_STEPS as f64;
    let submits_per_step = (after.submits - before.submits) as f64 / GPU_STEPS as f64;
    let achieved = model_flops / gpu_s / 1e9;
    let mfu = achieved / ceiling;

    println!("adapter: {}", ctx.adapter.name);
    println!(
        "model: {model}, batch {batch}, activations {precision}, {} latent layers, {:.2} GFLOP per step (forward + backward, 2 per multiply-add)",
        m.kl_per_level.len(),
        model_flops / 1e9
    );
    println!("graph build (plan, buffers, pipelines, bind groups): {build_s:.2} s");
    println!(
        "GPU: {:.3} s/step, {:.2} images/s, {:.2} GFLOP/s (ELBO {:.4} nats/dim at step {})",
        gpu_s,
        batch as f64 / gpu_s,
        achieved,
        last.elbo,
        last.iteration
    );
    println!(
        "FMA ceiling: {ceiling:.1} GFLOP/s (before {ceiling_before:.1}, after {ceiling_after:.1}); MFU {:.1}%",
        100.0 * mfu
    );
    println!("dispatches per step: {}", gpu.dispatch_count());
    println!("submits per step: {submits_per_step}");
    println!("buffers created per step after warm-up: {buffers_per_step}");
    println!("planned memory: {:.1} MiB", gpu.plan.total() as f64 / (1 << 20) as f64);
    let mut json = serde_json::json!({
        "adapter": ctx.adapter.name,
        "model": model,
        "batch": batch,
        "precision": precision.name(),
        "model_gflop_per_step": model_flops / 1e9,
        "s_per_step": gpu_s,
        "images_per_s": batch as f64 / gpu_s,
        "fma_ceiling_gflops": ceiling,
        "mfu": mfu,
        "dispatches_per_step": gpu.dispatch_count(),
        "submits_per_step": submits_per_step,
        "buffers_created_per_step": buffers_per_step,
        "planned_bytes": gpu.plan.total(),
        "recompute_gflop_per_step": recompute_flops / 1e9,
    });
    if cpu {
        let cpu_s = cpu_reference_seconds(&m, &values, &images, batch, norm, &adamw);
        println!(
            "CPU reference: {:.3} s/step, {:.2} images/s (GPU/CPU {:.1}x)",
            cpu_s,
            batch as f64 / cpu_s,
            cpu_s / gpu_s
        );
        json["cpu_images_per_s"] = (batch as f64 / cpu_s).into();
    }
    println!("{json}");
    if profile {
        println!("GPU time per kernel (one step, each dispatch timed alone):");
        let mut by_kernel: Vec<(&str, usize, f64)> = Vec::new();
        for t in gpu.profile(&ctx).unwrap() {
            match by_kernel.iter_mut().find(|(k, ..)| *k == t.kernel) {
                Some(entry) => {
                    entry.1 += 1;
                    entry.2 += t.seconds;
                }
                None => by_kernel.push((t.kernel, 1, t.seconds)),
            }
        }
        by_kernel.sort_by(|a, b| b.2.total_cmp(&a.2));
        for (kernel, count, seconds) in by_kernel {
            let kernel = vdvae::train::short_kernel_name(kernel);
            println!("  {kernel:<34} {count:>5} dispatches {:>9.2} ms", seconds * 1e3);
        }
    }
}

/// Seconds per step of the same step (forward, backward, AdamW) on the plain-Rust ops.
fn cpu_reference_seconds(
    m: &vdvae::model::assemble::ModelGraph,
    values: &vdvae::graph::executor::cpu::Values,
    images: &ImageSet,
    batch: usize,
    norm: Normalization,
    adamw: &AdamW,
) -> f64 {
    let mut cpu_values = values.clone();
    let mut state = StepState::default();
    let start = Instant::now();
    for k in 0..CPU_STEPS {
        m.set_images(&mut cpu_values, &batch_of(images, k, batch), norm)
            .unwrap();
        let noise = Noise::new(1, k as u64);
        cpu::run(&m.graph, &mut cpu_values, noise).unwrap();
        let mut tensors: Vec<TensorRef> = m
            .graph
            .param_grads
            .iter()
            .map(|&(p, d)| TensorRef {
                param: cpu_values[p].take().unwrap(),
                grad: cpu_values[d].take().unwrap(),
                exp_avg: vec![0.0; m.graph.tensors[p].numel()],
                exp_avg_sq: vec![0.0; m.graph.tensors[p].numel()],
                ema: None,
            })
            .collect();
        adam_ref::step(adamw, &mut state, &mut tensors);
        for (&(p, _), t) in m.graph.param_grads.iter().zip(tensors) {
            cpu_values[p] = Some(t.param);
        }
    }
    start.elapsed().as_secs_f64() / CPU_STEPS as f64
}
