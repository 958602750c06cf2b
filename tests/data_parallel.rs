//! Data-parallel training. A rank's graph of batch b with its first image at
//! r·b draws the noise one graph of the global batch draws for those images,
//! on the CPU reference and on the GPU, so the shards' per-image losses are
//! the global batch's and the mean of their gradients is its gradient. And
//! `vdvae train --adapters 0,0` (two devices on one adapter, a thread each,
//! batch 4) trains the weights one process with batch 8 trains; a
//! data-parallel step allocates nothing; a rank that fails stops the others.

mod common;

use std::process::Command;

use common::process::run_with_timeout;
use common::rel_norm;
use common::runs::{assert_same_run, train_tiny, RUN_TIMEOUT};
use vdvae::data::{bundled_mnist, ImageSet};
use vdvae::gpu::GpuContext;
use vdvae::graph::autodiff::append_backward;
use vdvae::graph::executor::cpu::{run, Noise, Values};
use vdvae::graph::executor::{BuildOptions, GpuGraph, TrainConfig};
use vdvae::graph::Sampling;
use vdvae::kernels::optimizer::{AdamW, StepState};
use vdvae::model::assemble::{build_model, ModelGraph};
use vdvae::model::evaluate::fit_images;
use vdvae::model::init::init_weights;
use vdvae::model::preprocess::MNIST;
use vdvae::model::{preset, HParams};
use vdvae::parallel::{thread_group, Collective};
use vdvae::train::stage_batch;

const GLOBAL: usize = 8;
const RANKS: usize = 2;
const STEP: u64 = 3;
const SEED: u64 = 11;

fn context() -> GpuContext {
    GpuContext::from_env().unwrap_or_else(|e| panic!("data-parallel tests need an adapter: {e}"))
}

/// A model's training graph (forward and backward) for `batch` images with the
/// initial weights and `images` set.
fn training_graph(h: &HParams, images: &ImageSet) -> (ModelGraph, Values) {
    let mut m = build_model(h, images.n, Sampling::Posterior).unwrap();
    append_backward(&mut m.graph).unwrap();
    let mut values = m
        .values_from_checkpoint(&init_weights(h, h.seed).unwrap(), "initial weights")
        .unwrap();
    m.set_images(&mut values, images, MNIST).unwrap();
    (m, values)
}

/// Per-image NLL and KL of every level (concatenated), and every parameter's gradient.
struct Outputs {
    per_image: Vec<Vec<f32>>,
    grads: Vec<Vec<f32>>,
}

fn per_image_tensors(m: &ModelGraph) -> Vec<usize> {
    std::iter::once(m.nll).chain(m.kl_per_level.iter().copied()).collect()
}

fn on_cpu(m: &ModelGraph, values: &Values, first_image: usize) -> Outputs {
    let mut v = values.clone();
    let noise = Noise {
        first_image,
        ..Noise::new(SEED, STEP)
    };
    run(&m.graph, &mut v, noise).unwrap();
    let read = |t: usize| v[t].clone().unwrap();
    Outputs {
        per_image: per_image_tensors(m).into_iter().map(read).collect(),
        grads: m.graph.param_grads.iter().map(|&(_, d)| read(d)).collect(),
    }
}

/// `binding_limit`: split nodes into slices, each of which draws its part of
/// the shard's noise.
fn on_gpu(
    ctx: &GpuContext,
    m: &ModelGraph,
    values: &Values,
    first_image: usize,
    binding_limit: Option<usize>,
) -> Outputs {
    let options = BuildOptions {
        first_image,
        binding_limit,
    };
    let gpu = GpuGraph::build_with(ctx, &m.graph, SEED, None, options).unwrap();
    gpu.write_values(ctx, &m.graph, values).unwrap();
    gpu.run(ctx, STEP as u32).unwrap();
    let read = |t: usize| gpu.read(ctx, t).unwrap();
    Outputs {
        per_image: per_image_tensors(m).into_iter().map(read).collect(),
        grads: m.graph.param_grads.iter().map(|&(_, d)| read(d)).collect(),
    }
}

/// The shards' per-image values are the global batch's, in order, and the
/// mean of their gradients is the global gradient.
fn assert_shards_match(what: &str, global: &Outputs, shards: &[Outputs], per_image_tol: f64) {
    for (k, want) in global.per_image.iter().enumerate() {
        let got: Vec<f32> = shards.iter().flat_map(|s| s.per_image[k].clone()).collect();
        let (d, n) = rel_norm(&got, want);
        assert!(
            d <= per_image_tol * n,
            "{what}: per-image tensor {k}: shards differ from the global batch by {:.3e} relative",
            d / n
        );
    }
    for (k, want) in global.grads.iter().enumerate() {
        let mean: Vec<f32> = (0..want.len())
            .map(|i| shards.iter().map(|s| s.grads[k][i]).sum::<f32>() / shards.len() as f32)
            .collect();
        let (d, n) = rel_norm(&mean, want);
        assert!(
            d <= 1e-5 * n.max(1e-12),
            "{what}: gradient {k}: the shards' mean differs from the global gradient by {:.3e} relative",
            d / n
        );
    }
}

#[test]
fn a_shard_draws_the_noise_of_its_images_places_in_the_global_batch() {
    let mut untuned = context();
    untuned.tuner = untuned.tuner.turned_off();
    // DMoL with sampled latents, and Bernoulli with dynamic binarization: every
    // noisy op of training (reparameterization, its backward, binarization).
    // The conv VDVAE also with its nodes split by a small binding limit.
    for (name, split) in [("mnist-tiny", Some(1 << 16)), ("ladder-mnist", None)] {
        let h = preset(name).unwrap();
        let images = fit_images(&h, bundled_mnist().first(GLOBAL)).unwrap();
        let (global_m, global_v) = training_graph(&h, &images);
        let per_rank = GLOBAL / RANKS;
        let shards: Vec<(ModelGraph, Values, usize)> = (0..RANKS)
            .map(|r| {
                let first = r * per_rank;
                let part = images.select(&(first..first + per_rank).collect::<Vec<_>>()).unwrap();
                let (m, v) = training_graph(&h, &part);
                (m, v, first)
            })
            .collect();

        let global = on_cpu(&global_m, &global_v, 0);
        let parts: Vec<Outputs> = shards.iter().map(|(m, v, first)| on_cpu(m, v, *first)).collect();
        assert_shards_match(&format!("{name} on the CPU"), &global, &parts, 1e-6);
        // Without the offset, the second shard would draw the first one's noise.
        let unshifted = on_cpu(&shards[1].0, &shards[1].1, 0);
        let (d, n) = rel_norm(&unshifted.per_image[0], &parts[1].per_image[0]);
        assert!(d > 1e-4 * n, "{name}: the offset changes the second shard's draws");

        // The kernels pinned: tuning may pick another kernel for a shard's
        // batch than for the global one, and a level's KL, a small sum of
        // terms that nearly cancel at initialization, then moves by up to 1e-4
        // relative (the ranks of a real run share a batch and their choices).
        let global = on_gpu(&untuned, &global_m, &global_v, 0, None);
        for limit in [None, split] {
            let parts: Vec<Outputs> = shards
                .iter()
                .map(|(m, v, first)| on_gpu(&untuned, m, v, *first, limit))
                .collect();
            assert_shards_match(
                &format!("{name} on the GPU, binding limit {limit:?}"),
                &global,
                &parts,
                1e-5,
            );
        }
    }
}

#[test]
fn two_devices_on_one_adapter_train_what_one_process_of_the_global_batch_trains() {
    let root = std::env::temp_dir().join(format!("vdvae-data-parallel-{}", std::process::id()));
    let (one, two) = (root.join("one"), root.join("two"));
    let _ = std::fs::remove_dir_all(&root);
    train_tiny(&one, &[], &["--steps", "5", "--batch", "8"]);
    // A small bucket: the gradient crosses in several.
    let two_devices = ["--batch", "4", "--adapters", "0,0", "--bucket-mib", "0.05"];
    train_tiny(&two, &[], &[&["--steps", "5"], &two_devices[..]].concat());
    assert_same_run(&one, &two);
    // Three steps, then two more resumed on the same ranks: the same run.
    let resumed = root.join("resumed");
    train_tiny(&resumed, &[], &[&["--steps", "3"], &two_devices[..]].concat());
    train_tiny(
        &resumed,
        &[],
        &[&["--steps", "2", "--resume"], &two_devices[..]].concat(),
    );
    assert_same_run(&one, &resumed);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_failing_rank_stops_the_others_with_its_message() {
    let dir = std::env::temp_dir().join(format!("vdvae-data-parallel-fail-{}", std::process::id()));
    // Rank 1's adapter does not exist: rank 0 must not wait for it forever.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vdvae"));
    cmd.args(["train", "--preset", "mnist-tiny", "--steps", "3", "--batch", "2"])
        .args(["--adapters", "0,99", "--out", dir.to_str().unwrap()]);
    let (ok, stderr) = run_with_timeout(&mut cmd, RUN_TIMEOUT);
    assert!(!ok, "a missing adapter fails the run");
    assert!(stderr.contains("rank 1"), "the message names the rank:\n{stderr}");
    assert!(stderr.contains("99"), "and says what was wrong:\n{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// One rank's steady steps: buffers created and submits made per step after
/// the first two.
fn rank_counters(h: &HParams, images: &ImageSet, ranks: &mut dyn Collective) -> (usize, usize) {
    let ctx = context();
    let per_rank = images.n / ranks.ranks();
    let first = ranks.rank() * per_rank;
    let shard = images.select(&(first..first + per_rank).collect::<Vec<_>>()).unwrap();
    let (m, values) = training_graph(h, &shard);
    let train = TrainConfig {
        adamw: AdamW::default(),
        resume: StepState::default(),
    };
    let options = BuildOptions {
        first_image: first,
        ..BuildOptions::default()
    };
    let mut gpu = GpuGraph::build_with(&ctx, &m.graph, SEED, Some(train), options).unwrap();
    gpu.write_values(&ctx, &m.graph, &values).unwrap();
    // Small buckets: the gradient crosses in several.
    gpu.share(&ctx, ranks.ranks(), 1024).unwrap();
    let step = |gpu: &mut GpuGraph, ranks: &mut dyn Collective| {
        stage_batch(&ctx, gpu, &m, &shard, MNIST).unwrap();
        gpu.shared_train_step(&ctx, ranks, false).unwrap()
    };
    step(&mut gpu, ranks);
    step(&mut gpu, ranks);
    let before = ctx.counters();
    let steps = 3;
    for _ in 0..steps {
        assert!(
            step(&mut gpu, ranks).previous.is_some(),
            "each step reports the one before"
        );
    }
    let after = ctx.counters();
    (
        (after.buffers_created - before.buffers_created) / steps,
        (after.submits - before.submits) / steps,
    )
}

#[test]
fn a_data_parallel_step_allocates_nothing_and_submits_twice() {
    let h = preset("mnist-tiny").unwrap();
    let images = fit_images(&h, bundled_mnist().first(GLOBAL)).unwrap();
    let counts: Vec<(usize, usize)> = std::thread::scope(|s| {
        let handles: Vec<_> = thread_group(RANKS)
            .into_iter()
            .map(|mut rank| {
                let (h, images) = (&h, &images);
                s.spawn(move || rank_counters(h, images, &mut rank))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (r, &(buffers, submits)) in counts.iter().enumerate() {
        assert_eq!(buffers, 0, "rank {r}: buffers created per step");
        assert_eq!(submits, 2, "rank {r}: the gradient pass, then the update");
    }
}
