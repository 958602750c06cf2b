//! `train_step --ranks N` (threads, each its own device on the adapter) or
//! `mpirun -np N … train_step` (built with `--features mpi`): whole
//! data-parallel steps, each rank BATCH images, and the share of a step spent
//! exchanging the gradient (read-back, all-reduce with the wait for the
//! slowest rank, upload).

use std::time::Instant;

use crate::common::{batch_of, ModelArg};
use vdvae::data::ImageSet;
use vdvae::gpu::GpuContext;
use vdvae::graph::autodiff::append_backward;
use vdvae::graph::executor::{BuildOptions, GpuGraph, TrainConfig};
use vdvae::graph::Sampling;
use vdvae::kernels::optimizer::{AdamW, StepState};
use vdvae::model::assemble::build_model;
use vdvae::model::init::init_weights;
use vdvae::model::preprocess::Normalization;
use vdvae::parallel::Collective;
use vdvae::train::{stage_batch, DEFAULT_BUCKET_LEN};

const WARMUP: usize = 2;
const STEPS: usize = 5;

/// One rank's timing: seconds per step and exchange seconds per step.
pub struct RankTimes {
    pub step_s: f64,
    pub exchange_s: f64,
    pub gradient_elements: usize,
}

/// Runs the steps as `ranks`' rank on `ctx`; every rank calls it together.
pub fn rank_steps(
    ctx: &GpuContext,
    model: &ModelArg,
    images: &ImageSet,
    norm: Normalization,
    ranks: &mut dyn Collective,
) -> RankTimes {
    let (h, batch) = (&model.h, model.batch);
    let mut m = build_model(h, batch, Sampling::Posterior).unwrap();
    append_backward(&mut m.graph).unwrap();
    let cfg = TrainConfig {
        adamw: AdamW {
            lr: h.lr as f32,
            weight_decay: h.wd as f32,
            ..AdamW::default()
        },
        resume: StepState::default(),
    };
    let options = BuildOptions {
        first_image: ranks.rank() * batch,
        ..BuildOptions::default()
    };
    let mut gpu = GpuGraph::build_with(ctx, &m.graph, 1, Some(cfg), options).unwrap();
    let values = m.values_from_checkpoint(&init_weights(h, 1).unwrap(), "init").unwrap();
    gpu.write_values(ctx, &m.graph, &values).unwrap();
    gpu.reset_ema(ctx).unwrap();
    gpu.share(ctx, ranks.ranks(), DEFAULT_BUCKET_LEN).unwrap();
    let step = |k: usize, gpu: &mut GpuGraph, ranks: &mut dyn Collective| {
        // Rank r's shard of global batch k: chunk k·N + r of `batch` images.
        let shard = batch_of(images, k * ranks.ranks() + ranks.rank(), batch);
        stage_batch(ctx, gpu, &m, &shard, norm).unwrap();
        gpu.shared_train_step(ctx, ranks, false).unwrap();
    };
    for k in 0..WARMUP {
        step(k, &mut gpu, ranks);
    }
    gpu.finish(ctx).unwrap();
    let exchange_before = gpu.exchange_seconds().unwrap();
    let start = Instant::now();
    for k in WARMUP..WARMUP + STEPS {
        step(k, &mut gpu, ranks);
    }
    gpu.finish(ctx).unwrap();
    RankTimes {
        step_s: start.elapsed().as_secs_f64() / STEPS as f64,
        exchange_s: (gpu.exchange_seconds().unwrap() - exchange_before) / STEPS as f64,
        gradient_elements: m
            .graph
            .param_grads
            .iter()
            .map(|&(p, _)| m.graph.tensors[p].numel())
            .sum(),
    }
}

/// Prints rank 0's figures (and every rank's exchange share).
pub fn report(model: &ModelArg, ranks: usize, times: &[RankTimes], how: &str) {
    let t0 = &times[0];
    let global = ranks * model.batch;
    println!(
        "data-parallel ({how}): {ranks} ranks x batch {} = {global} images a step, model {}",
        model.batch, model.model
    );
    println!(
        "  {:.3} s/step, {:.2} images/s; gradient {:.2} MiB",
        t0.step_s,
        global as f64 / t0.step_s,
        t0.gradient_elements as f64 * 4.0 / (1 << 20) as f64
    );
    for (r, t) in times.iter().enumerate() {
        println!(
            "  rank {r}: exchange (read-back, all-reduce incl. waiting for the slowest rank, upload) {:.4} s/step = {:.1}% of a step",
            t.exchange_s,
            100.0 * t.exchange_s / t.step_s
        );
    }
    let json = serde_json::json!({
        "ranks": ranks,
        "batch_per_rank": model.batch,
        "s_per_step": t0.step_s,
        "images_per_s": global as f64 / t0.step_s,
        "exchange_share": times.iter().map(|t| t.exchange_s / t.step_s).collect::<Vec<_>>(),
    });
    println!("{json}");
}

/// Runs the data-parallel steps: under mpirun one rank per process, else
/// `ranks` threads, each with its own device on the adapter `VDVAE_ADAPTER` picks.
pub fn run(model: &ModelArg, images: &ImageSet, norm: Normalization, ranks: usize) {
    if vdvae::parallel::launched_by_mpirun() {
        return mpi(model, images, norm);
    }
    let times: Vec<RankTimes> = std::thread::scope(|s| {
        let handles: Vec<_> = vdvae::parallel::thread_group(ranks)
            .into_iter()
            .map(|mut rank| {
                s.spawn(move || {
                    let ctx = GpuContext::from_env().unwrap_or_else(|e| panic!("{e}"));
                    rank_steps(&ctx, model, images, norm, &mut rank)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    report(model, ranks, &times, "threads of one process, a device each");
}

#[cfg(not(feature = "mpi"))]
fn mpi(_: &ModelArg, _: &ImageSet, _: Normalization) {
    panic!("started by mpirun, but this bench was built without MPI: add --features mpi");
}

/// One rank per MPI process; rank 0 gathers every rank's times and reports.
#[cfg(feature = "mpi")]
fn mpi(model: &ModelArg, images: &ImageSet, norm: Normalization) {
    let mut world = vdvae::parallel::MpiRanks::init().unwrap_or_else(|e| panic!("{e}"));
    let ctx = GpuContext::from_env().unwrap_or_else(|e| panic!("{e}"));
    let t = rank_steps(&ctx, model, images, norm, &mut world);
    let (rank, ranks) = (world.rank(), world.ranks());
    // Each rank's two figures at its place; the sum gathers them.
    let mut mine = vec![0.0f32; 2 * ranks];
    mine[2 * rank] = t.step_s as f32;
    mine[2 * rank + 1] = t.exchange_s as f32;
    let mut all = vec![0.0f32; 2 * ranks];
    world.all_reduce_sum(&mine, &mut all).unwrap();
    if rank == 0 {
        let times: Vec<RankTimes> = all
            .chunks(2)
            .map(|c| RankTimes {
                step_s: c[0] as f64,
                exchange_s: c[1] as f64,
                gradient_elements: t.gradient_elements,
            })
            .collect();
        report(model, ranks, &times, "MPI processes");
    }
}
