//! `vdvae train`: the training loop on the GPU. Shuffled batches are staged
//! each step, the step runs in one submit, metrics arrive one step late and go
//! to a progress bar and a JSON-lines log; checkpoints are written atomically.
//! Every so many steps and at the end, the EMA weights are drawn as pictures
//! and evaluated on held-out images (`monitor.rs`).
//! A [`StopSignal`] ends a run early, after a step, with its checkpoint saved.

mod checkpoint;
mod held_out;
mod log;
mod monitor;
mod pictures;
mod profile;
mod progress;
mod ranks;
mod run_dir;
mod skips;
mod stop;
mod tune;

pub use checkpoint::{load_run, read_ema_weights, save_run, stage_run, RunState, StagedRun};
pub use log::StepLog;
pub use profile::{
    profile_training, short_kernel_name, DispatchRecord, KernelRow, ProfileOptions, ProfileReport, StepSummary,
};
#[cfg(feature = "mpi")]
pub use ranks::train_mpi;
pub use ranks::train_threads;
pub use skips::DEFAULT_LIMIT as DEFAULT_MAX_SKIPS_IN_A_ROW;
pub use stop::{shell_command, StopSignal, INTERRUPTED_EXIT_CODE};
pub use tune::tune_training;

use held_out::HeldOut;
use monitor::Monitor;
use pictures::Pictures;
use progress::Progress;
use skips::SkipGuard;

use crate::data::ImageSet;
use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::graph::autodiff::append_backward;
use crate::graph::budget::format_size;
use crate::graph::executor::{BuildOptions, GpuGraph, StepMetrics, TrainConfig};
use crate::graph::TensorId;
use crate::graph::{set_precision, Precision, Sampling};
use crate::kernels::optimizer::{AdamW, StepState};
use crate::kernels::rng::RngKey;
use crate::model::assemble::{build_model, ModelGraph};
use crate::model::config::HParams;
use crate::model::init::init_weights;
use crate::model::preprocess::{Binarization, Normalization};
use crate::model::report::fit_training_graph;
use crate::model::temperature::Temperatures;
use crate::parallel::{Collective, Single};

pub struct TrainOptions {
    pub steps: u32,
    pub batch: usize,
    pub out_dir: String,
    pub save_every: u32,
    pub norm: Normalization,
    /// Continue from the checkpoint in `out_dir` (weights, EMA, optimizer state).
    pub resume: bool,
    /// Start a new run in `out_dir` even when it holds one (whose files are
    /// deleted first); without it or `resume`, such a directory is refused.
    pub overwrite: bool,
    /// Bytes the step's planned memory must fit: blocks are recomputed in the
    /// backward pass until it does (see `graph::budget`). None: nothing recomputed.
    pub memory_budget: Option<usize>,
    /// How activations are stored (checkpoints are f32 either way, so a run
    /// may resume at another precision).
    pub precision: Precision,
    /// Write samples.png and reconstructions.png every this many steps of the
    /// run and at its end; 0: never.
    pub image_every: u32,
    /// Prior temperatures of the samples in samples.png.
    pub image_temperature: Temperatures,
    /// Held-out images (fitted to the model) whose ELBO is logged every
    /// `eval_every` steps of the run (0: only at the end) and at its end.
    pub eval_images: Option<ImageSet>,
    pub eval_every: u32,
    /// Data-parallel runs: gradient elements summed among the ranks per
    /// bucket (see `graph::executor::exchange`).
    pub bucket_len: usize,
    /// Skipped updates in a row that stop the run with an error; 0: never
    /// (see `skips`).
    pub max_skips_in_a_row: u32,
}

/// The all-reduce bucket when none is asked for: 16 MiB of f32.
pub const DEFAULT_BUCKET_LEN: usize = 4 << 20;

fn adamw(h: &HParams) -> AdamW {
    AdamW {
        lr: h.lr as f32,
        warmup_iters: h.warmup_iters as f32,
        beta1: h.adam_beta1 as f32,
        beta2: h.adam_beta2 as f32,
        weight_decay: h.wd as f32,
        grad_clip: h.grad_clip as f32,
        skip_threshold: h.skip_threshold as f32,
        ema_rate: h.ema_rate as f32,
        ..AdamW::default()
    }
}

/// The images of one step: a permutation of the dataset per epoch, drawn from the seed.
fn batch_indices(n: usize, batch: usize, seed: u64, step: u64) -> Vec<usize> {
    let per_epoch = (n / batch).max(1) as u64;
    let (epoch, k) = (step / per_epoch, (step % per_epoch) as usize);
    let key = RngKey::new(seed, epoch, u32::MAX - 1_000_000);
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, key.bits(i as u32)[0] as usize % (i + 1));
    }
    (0..batch).map(|j| order[(k * batch + j) % n]).collect()
}

/// Rank `rank`'s images of one step: its shard of the global batch of
/// `ranks` × `batch` images one process would take at that step.
fn shard_indices(n: usize, batch: usize, ranks: usize, rank: usize, seed: u64, step: u64) -> Vec<usize> {
    let global = batch_indices(n, batch * ranks, seed, step);
    global[rank * batch..(rank + 1) * batch].to_vec()
}

fn gather(images: &ImageSet, idx: &[usize]) -> ImageSet {
    let mut pixels = Vec::with_capacity(idx.len() * images.image_len());
    for &i in idx {
        pixels.extend_from_slice(images.image(i));
    }
    ImageSet {
        n: idx.len(),
        pixels,
        ..*images
    }
}

/// The training graph of `h` for rank `rank` of `ranks`, `batch` images each,
/// built on the GPU with fresh weights (official init) or with the run saved
/// in `resume_from`. Returns the iteration it starts at.
fn start(
    ctx: &GpuContext,
    h: &HParams,
    images: &ImageSet,
    (batch, rank, ranks): (usize, usize, usize),
    precision: Precision,
    resume_from: Option<&str>,
    memory_budget: Option<usize>,
) -> Result<(ModelGraph, GpuGraph, u32)> {
    let leader = rank == 0;
    if images.n < batch * ranks {
        let of = if ranks > 1 {
            format!("a global batch of {} ({ranks} ranks × {batch})", batch * ranks)
        } else {
            format!("a batch of {batch}")
        };
        return Err(Error::Input(format!(
            "the dataset has {} images, fewer than {of}",
            images.n
        )));
    }
    let mut m = build_model(h, batch, Sampling::Posterior)?;
    match memory_budget {
        Some(budget) => {
            let (g, r) = fit_training_graph(&m.graph, precision, budget, Some(ctx))?;
            m.graph = g;
            if leader {
                ::log::info!(
                    "memory budget {}: {} of {} blocks recomputed in the backward pass ({:.1}% more FLOPs per step)",
                    format_size(budget),
                    r.recomputed,
                    r.candidates,
                    100.0 * r.recompute_flops / (m.graph.model_flops() - r.recompute_flops)
                );
            }
        }
        None => {
            append_backward(&mut m.graph)?;
            set_precision(&mut m.graph, precision);
        }
    }
    let run = resume_from.map(|dir| load_run(dir, &m)).transpose()?;
    if let (Some(run), true) = (&run, leader) {
        run.note_other_layout(ranks, batch);
    }
    let resume = run.as_ref().map_or(StepState::default(), |r| r.state);
    let train = TrainConfig {
        adamw: adamw(h),
        resume,
    };
    // A rank draws the noise of its images' places in the global batch.
    let options = BuildOptions {
        first_image: rank * batch,
        ..BuildOptions::default()
    };
    let gpu = GpuGraph::build_with(ctx, &m.graph, h.seed, Some(train), options)?;
    match &run {
        Some(r) => r.upload(ctx, &m, &gpu)?,
        None => {
            let values = m.values_from_checkpoint(&init_weights(h, h.seed)?, "initial weights")?;
            gpu.write_values(ctx, &m.graph, &values)?;
            gpu.reset_ema(ctx)?;
        }
    }
    Ok((m, gpu, resume.iteration))
}

/// Stages a batch of uint8 images as the next step's inputs (network input and
/// target, or the pixel probabilities the step binarizes).
pub fn stage_batch(
    ctx: &GpuContext,
    gpu: &mut GpuGraph,
    m: &ModelGraph,
    batch: &ImageSet,
    norm: Normalization,
) -> Result<()> {
    let data = m.input_data(batch, norm, Binarization::Dynamic)?;
    let inputs: Vec<(TensorId, &[f32])> = data.iter().map(|(t, d)| (*t, d.as_slice())).collect();
    gpu.stage_inputs(ctx, &m.graph, &inputs)
}

/// The pictures and held-out eval `o` asks for, checked before any step.
fn monitor(h: &HParams, images: &ImageSet, o: &TrainOptions) -> Result<Monitor> {
    let pictures = if o.image_every > 0 {
        let temperatures = o.image_temperature.per_level(h.latent_levels()?)?;
        Some(Pictures::new(h, images, o.norm, temperatures))
    } else {
        None
    };
    let held_out = o.eval_images.as_ref().map(|images| HeldOut {
        images: images.clone(),
        norm: o.norm,
        batch: o.batch,
        precision: o.precision,
    });
    Ok(Monitor {
        pictures,
        image_every: o.image_every,
        held_out,
        eval_every: o.eval_every,
    })
}

/// How a call to [`train`] ended.
#[derive(Clone, Debug)]
pub struct TrainOutcome {
    /// The last step's metrics (none when no step ran).
    pub last: Option<StepMetrics>,
    /// Steps this call ran.
    pub steps_run: u32,
    /// Steps of the run in all, resumed ones included: the checkpoint's
    /// `iteration` and the number of step lines in log.jsonl.
    pub iteration: u32,
    /// True when a stop request ended the run before `steps`.
    pub stopped: bool,
}

/// Trains `h` on `images` for `o.steps` steps, or until `stop` is requested:
/// then the current step finishes and the checkpoint is written before it
/// returns. Either way the checkpoint in `o.out_dir` holds the last step.
pub fn train(
    ctx: &GpuContext,
    h: &HParams,
    images: &ImageSet,
    o: &TrainOptions,
    stop: &StopSignal,
) -> Result<TrainOutcome> {
    train_rank(ctx, h, images, o, stop, &mut Single)
}

/// [`train`] as one rank of a data-parallel run: every rank calls it with the
/// same arguments (its own adapter), and each step takes its shard of a
/// global batch of `ranks` × `o.batch` images. Rank 0 shows progress and
/// writes the log, the checkpoints and the pictures. The ranks stop together
/// when any of them is asked to. On an error the caller stops the other ranks
/// ([`Collective::abort`]).
pub fn train_rank(
    ctx: &GpuContext,
    h: &HParams,
    images: &ImageSet,
    o: &TrainOptions,
    stop: &StopSignal,
    ranks: &mut dyn Collective,
) -> Result<TrainOutcome> {
    let (rank, count) = (ranks.rank(), ranks.ranks());
    let leader = rank == 0;
    let monitor = monitor(h, images, o)?;
    // Rank 0 holds the directory until the run returns.
    let _run_dir = leader
        .then(|| run_dir::prepare(&o.out_dir, o.resume, o.overwrite))
        .transpose()?;
    let resume_from = o.resume.then_some(o.out_dir.as_str());
    let layout = (o.batch, rank, count);
    let (m, mut gpu, start) = start(ctx, h, images, layout, o.precision, resume_from, o.memory_budget)?;
    if count > 1 {
        gpu.share(ctx, count, o.bucket_len)?;
        let batch_statistics = h.free_bits > 0.0 || h.free_bits_per_level.iter().any(|&f| f > 0.0) || h.kl_balance;
        if leader && batch_statistics {
            ::log::info!(
                "note: free bits and KL balancing gate on the batch mean of each level's KL; data-parallel ranks \
                 take it over their own {} images, not the global batch's {}",
                o.batch,
                o.batch * count
            );
        }
    }
    let log = if leader {
        let (log, dropped) = StepLog::open(&o.out_dir, start)?;
        if dropped > 0 {
            ::log::info!(
                "note: dropped {dropped} lines of steps from {start} on from {} (they are not in the checkpoint this run starts from)",
                log.path()
            );
        }
        Some(log)
    } else {
        None
    };
    let mut progress = Progress::new(o.steps, log, m.dims);
    let mut skips = SkipGuard::new(o.max_skips_in_a_row, h.skip_threshold);
    // Shows and logs a step's metrics; an error once too many updates in a
    // row were skipped (the checkpoint on disk stays the last one written).
    let mut report = |progress: &mut Progress, metrics: Option<StepMetrics>| -> Result<()> {
        let verdict = metrics.as_ref().map_or(Ok(()), |m| skips.see(m));
        progress.step(metrics)?;
        verdict
    };
    // Writes the checkpoint (rank 0); true when a second stop request came
    // while its files were being renamed, and a lone process should return at once.
    let save = |gpu: &GpuGraph| -> Result<bool> {
        if !leader {
            return Ok(false);
        }
        let staged = stage_run(ctx, &o.out_dir, h, &m, gpu, count)?;
        let (committed, second_request) = stop.while_renaming(|| staged.commit());
        committed.map(|()| second_request && count == 1)
    };
    let mut steps_run = 0;
    let mut saved_at = None;
    for k in 0..o.steps {
        // One process stops before a step; data-parallel ranks agree on it
        // during the step and stop after it.
        let asked = stop.requested();
        if asked && count == 1 {
            break;
        }
        let step = start + k;
        let shard = shard_indices(images.n, o.batch, count, rank, h.seed, step as u64);
        stage_batch(ctx, &mut gpu, &m, &gather(images, &shard), o.norm)?;
        let (metrics, agreed_stop) = if count == 1 {
            (gpu.train_step(ctx)?, false)
        } else {
            let s = gpu.shared_train_step(ctx, ranks, asked)?;
            (s.previous, s.stop)
        };
        report(&mut progress, metrics)?;
        progress.bar.inc(1);
        steps_run = k + 1;
        if k + 1 == o.steps || agreed_stop {
            break; // the end saves and looks
        }
        let trained = step + 1;
        let save_due = o.save_every > 0 && (k + 1) % o.save_every == 0;
        let look = monitor.due(trained);
        if !save_due && !look.any() {
            continue;
        }
        report(&mut progress, gpu.finish(ctx)?)?;
        if save_due {
            saved_at = Some(trained);
            if save(&gpu)? {
                break;
            }
        }
        if leader {
            monitor.run(look, ctx, h, &m, &gpu, &o.out_dir, trained, &mut progress)?;
        }
        progress.resume_clock();
    }
    let iteration = start + steps_run;
    let stopped = steps_run < o.steps;
    if stopped && saved_at != Some(iteration) && leader {
        progress.bar.suspend(|| {
            ::log::info!(
                "stopping: saving the checkpoint ({iteration} steps trained) to {}; \
                 a second Ctrl-C or SIGTERM quits at once and keeps the previous checkpoint",
                o.out_dir
            )
        });
    }
    report(&mut progress, gpu.finish(ctx)?)?;
    if saved_at != Some(iteration) {
        save(&gpu)?;
    }
    if stopped {
        // No final look: the run was asked to end.
        progress.bar.abandon();
    } else {
        if leader {
            monitor.run(monitor.at_end(), ctx, h, &m, &gpu, &o.out_dir, iteration, &mut progress)?;
        }
        progress.bar.finish();
    }
    Ok(TrainOutcome {
        last: progress.last,
        steps_run,
        iteration,
        stopped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_global_batch() {
        for step in 0..7 {
            let global = batch_indices(20, 6, 9, step);
            let shards: Vec<usize> = (0..3).flat_map(|r| shard_indices(20, 2, 3, r, 9, step)).collect();
            assert_eq!(
                shards, global,
                "step {step}: the shards, in rank order, are the global batch"
            );
        }
    }

    #[test]
    fn batches_walk_a_seeded_permutation() {
        let a: Vec<usize> = (0..5).flat_map(|s| batch_indices(10, 2, 3, s)).collect();
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>(), "one epoch visits every image once");
        assert_eq!(batch_indices(10, 2, 3, 1), batch_indices(10, 2, 3, 1));
        assert_ne!(
            batch_indices(10, 2, 3, 0),
            batch_indices(10, 2, 3, 5),
            "epochs reshuffle"
        );
    }
}
