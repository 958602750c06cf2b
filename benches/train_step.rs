//! `cargo bench --bench train_step [-- PRESET [BATCH]]`: training images/s of a
//! small model on the GPU and on the CPU reference path, dispatches and submits
//! per step, and buffers created per step after warm-up; the table, then JSON.
//! `--profile` adds the GPU time of each kernel over one step.

use std::time::Instant;

use vdvae::data::{read_images, DataFormat, ImageSet};
use vdvae::gpu::GpuContext;
use vdvae::graph::autodiff::append_backward;
use vdvae::graph::cpu::{self, Noise};
use vdvae::graph::gpu::{GpuGraph, TrainConfig};
use vdvae::graph::Sampling;
use vdvae::model::evaluate::fit_images;
use vdvae::model::init::init_weights;
use vdvae::model::preprocess::MNIST;
use vdvae::model::preset;
use vdvae::model::vdvae::build_vdvae;
use vdvae::ops::optimizer::reference::{self as adam_ref, TensorRef};
use vdvae::ops::optimizer::{AdamW, StepState};
use vdvae::train::stage_batch;

const WARMUP: usize = 3;
const GPU_STEPS: usize = 10;
const CPU_STEPS: usize = 2;

fn batch_of(images: &ImageSet, step: usize, n: usize) -> ImageSet {
    let len = images.image_len();
    let start = (step * n) % (images.n - n + 1);
    ImageSet {
        n,
        pixels: images.pixels[start * len..(start + n) * len].to_vec(),
        ..*images
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let name = args.first().map_or("mnist", |s| s.as_str());
    let h = preset(name).unwrap_or_else(|e| panic!("{e}"));
    let batch: usize = args.get(1).map_or(16, |s| s.parse().expect("BATCH is a number"));
    let data = format!("{}/assets/mnist-1k-images-idx3-ubyte.gz", env!("CARGO_MANIFEST_DIR"));
    let images = fit_images(&h, read_images(&data, DataFormat::Mnist).unwrap()).unwrap();
    let mut m = build_vdvae(&h, batch, Sampling::Posterior).unwrap();
    append_backward(&mut m.graph).unwrap();
    let weights = init_weights(&h, 1).unwrap();
    let adamw = AdamW {
        lr: h.lr as f32,
        weight_decay: h.wd as f32,
        ..AdamW::default()
    };

    // GPU: build once, then a steady-state loop of stage inputs + one submit per step.
    let ctx = GpuContext::from_env().unwrap_or_else(|e| panic!("{e}"));
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
        stage_batch(&ctx, gpu, &m, &batch_of(&images, k, batch), MNIST).unwrap();
        gpu.train_step(&ctx).unwrap()
    };
    for k in 0..WARMUP {
        step(k, &mut gpu);
    }
    gpu.finish(&ctx).unwrap();
    let before = ctx.counters();
    let start = Instant::now();
    let mut last = None;
    for k in WARMUP..WARMUP + GPU_STEPS {
        last = step(k, &mut gpu).or(last);
    }
    let last = gpu.finish(&ctx).unwrap().or(last).expect("metrics");
    let gpu_s = start.elapsed().as_secs_f64() / GPU_STEPS as f64;
    let after = ctx.counters();
    let buffers_per_step = (after.buffers_created - before.buffers_created) as f64 / GPU_STEPS as f64;
    let submits_per_step = (after.submits - before.submits) as f64 / GPU_STEPS as f64;

    // CPU reference: the same step (forward, backward, AdamW) on the plain-Rust ops.
    let mut cpu_values = values.clone();
    let mut state = StepState::default();
    let start = Instant::now();
    for k in 0..CPU_STEPS {
        let b = batch_of(&images, k, batch);
        m.set_images(&mut cpu_values, &b, MNIST).unwrap();
        cpu::run(
            &m.graph,
            &mut cpu_values,
            Noise {
                seed: 1,
                step: k as u64,
            },
        )
        .unwrap();
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
        adam_ref::step(&adamw, &mut state, &mut tensors);
        for (&(p, _), t) in m.graph.param_grads.iter().zip(tensors) {
            cpu_values[p] = Some(t.param);
        }
    }
    let cpu_s = start.elapsed().as_secs_f64() / CPU_STEPS as f64;

    println!("adapter: {}", ctx.adapter.name);
    println!(
        "model: preset {name}, batch {batch}, {} latent layers",
        m.kl_per_level.len()
    );
    println!("graph build (plan, buffers, pipelines, bind groups): {build_s:.2} s");
    println!(
        "GPU: {:.3} s/step, {:.1} images/s (ELBO {:.4} nats/dim at step {})",
        gpu_s,
        batch as f64 / gpu_s,
        last.elbo,
        last.iteration
    );
    println!(
        "CPU reference: {:.3} s/step, {:.2} images/s",
        cpu_s,
        batch as f64 / cpu_s
    );
    println!("GPU/CPU speed-up: {:.1}x", cpu_s / gpu_s);
    println!("dispatches per step: {}", gpu.dispatch_count());
    println!("submits per step: {submits_per_step}");
    println!("buffers created per step after warm-up: {buffers_per_step}");
    println!("planned memory: {:.1} MiB", gpu.plan.total() as f64 / (1 << 20) as f64);
    let json = serde_json::json!({
        "adapter": ctx.adapter.name,
        "preset": name,
        "batch": batch,
        "gpu_images_per_s": batch as f64 / gpu_s,
        "cpu_images_per_s": batch as f64 / cpu_s,
        "dispatches_per_step": gpu.dispatch_count(),
        "submits_per_step": submits_per_step,
        "buffers_created_per_step": buffers_per_step,
        "planned_bytes": gpu.plan.total(),
    });
    println!("{json}");
    if std::env::args().any(|a| a == "--profile") {
        println!("GPU time per kernel (one step, each dispatch timed alone):");
        for (kernel, count, seconds) in gpu.profile(&ctx).unwrap() {
            println!("  {kernel:<34} {count:>5} dispatches {:>9.2} ms", seconds * 1e3);
        }
    }
}
