//! The Ladder VAE (MLP and conv forms) and the hierarchical β-VAE controls:
//! gradients against finite differences of the CPU reference, the GPU training
//! step against the CPU step, and short GPU training runs showing what free
//! bits and a per-level β do.

mod common;

use common::{assert_step_matches, gpu_step, reference_step};
use vdvae::data::{bundled_mnist, ImageSet};
use vdvae::gpu::GpuContext;
use vdvae::graph::autodiff::append_backward;
use vdvae::graph::executor::cpu::{run, Noise, Values};
use vdvae::graph::executor::{GpuGraph, StepMetrics, TrainConfig};
use vdvae::graph::Sampling;
use vdvae::kernels::optimizer::{AdamW, StepState};
use vdvae::kernels::rng::RngKey;
use vdvae::model::assemble::{build_model, ModelGraph};
use vdvae::model::config::ActivationName;
use vdvae::model::init::init_weights;
use vdvae::model::preprocess::MNIST;
use vdvae::model::{preset, HParams};
use vdvae::train::stage_batch;

fn context() -> GpuContext {
    GpuContext::from_env().unwrap_or_else(|e| panic!("Ladder VAE GPU tests need an adapter: {e}"))
}

/// The paper's model shrunk: three levels, 32-16-8 deterministic, 8-4-2 latent.
fn tiny_mlp() -> HParams {
    HParams {
        // Smooth, so that finite differences do not straddle kinks (the leaky
        // ReLU's own gradient is checked op by op in tests/mlp_ops.rs).
        activation: ActivationName::Gelu,
        ladder_hidden: vec![32, 16, 8],
        ladder_latent: vec![8, 4, 2],
        kl_warmup_steps: 0,
        n_batch: 8,
        ..preset("ladder-mnist").unwrap()
    }
}

/// The conv form on the `mnist-tiny` blocks, Bernoulli likelihood, no warm-up.
fn tiny_conv() -> HParams {
    let tiny = preset("mnist-tiny").unwrap();
    HParams {
        kl_warmup_steps: 0,
        width: tiny.width,
        zdim: tiny.zdim,
        enc_blocks: tiny.enc_blocks,
        dec_blocks: tiny.dec_blocks,
        n_batch: tiny.n_batch,
        ..preset("vdvae-ladder-mnist").unwrap()
    }
}

/// The first `n` bundled MNIST images, at the model's size.
fn mnist(h: &HParams, n: usize) -> ImageSet {
    vdvae::model::evaluate::fit_images(h, bundled_mnist().first(n)).unwrap()
}

fn loss_of(m: &ModelGraph, values: &Values, seed: u64) -> f64 {
    let mut v = values.clone();
    run(&m.graph, &mut v, Noise::new(seed, 0)).unwrap();
    v[m.loss].as_ref().unwrap()[0] as f64
}

/// For every parameter tensor: the gradient along a random direction against
/// the central difference of the loss (same noise: the binarization and every
/// latent draw are fixed by the seed). Returns the worst relative error.
fn check_gradient(h: &HParams, batch: usize) -> f64 {
    let images = mnist(h, batch);
    let forward = build_model(h, batch, Sampling::Posterior).unwrap();
    let mut full = build_model(h, batch, Sampling::Posterior).unwrap();
    append_backward(&mut full.graph).unwrap();
    let mut values = full
        .values_from_checkpoint(&init_weights(h, 3).unwrap(), "init")
        .unwrap();
    full.set_images(&mut values, &images, MNIST).unwrap();
    let seed = 11;
    let mut grads = values.clone();
    run(&full.graph, &mut grads, Noise::new(seed, 0)).unwrap();
    let mut worst = 0.0f64;
    for (k, &(p, d)) in full.graph.param_grads.iter().enumerate() {
        let g = grads[d].as_ref().unwrap();
        let w = values[p].as_ref().unwrap();
        let key = RngKey::new(77, 0, k as u32);
        let dir: Vec<f32> = (0..w.len()).map(|i| key.normal(i as u32)).collect();
        let analytic: f64 = g.iter().zip(&dir).map(|(&a, &b)| a as f64 * b as f64).sum();
        // A step of about 1e-3 of the weights' scale (1e-3 for zero-initialised ones).
        let scale = (w.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / w.len() as f64).sqrt();
        let eps = 1e-3 * scale.max(1.0) / 4.0;
        let shifted = |sign: f64| {
            let mut v = values.clone();
            v[p] = Some(
                w.iter()
                    .zip(&dir)
                    .map(|(&a, &b)| (a as f64 + sign * eps * b as f64) as f32)
                    .collect(),
            );
            loss_of(&forward, &v, seed)
        };
        let (plus, minus) = (shifted(1.0), shifted(-1.0));
        let numeric = (plus - minus) / (2.0 * eps);
        // The difference cannot resolve less than a few f32 ulps of the loss.
        let floor = 64.0 * f32::EPSILON as f64 * plus.abs() / (2.0 * eps);
        let err = (numeric - analytic).abs() / analytic.abs().max(floor);
        let name = &full.graph.tensors[p].name;
        assert!(
            err < 2e-2,
            "{name}: gradient along a direction {analytic:e}, finite difference {numeric:e}"
        );
        worst = worst.max(err);
    }
    worst
}

#[test]
fn the_mlp_ladder_gradient_matches_finite_differences() {
    let worst = check_gradient(&tiny_mlp(), 4);
    println!("MLP Ladder VAE: worst relative error of a directional derivative {worst:.2e}");
}

#[test]
fn the_conv_ladder_gradient_matches_finite_differences() {
    let worst = check_gradient(&tiny_conv(), 2);
    println!("conv Ladder VAE: worst relative error of a directional derivative {worst:.2e}");
}

#[test]
fn the_controlled_objective_gradient_matches_finite_differences() {
    // Step 0 of a warm-up from β0 = 0.2, and a per-level β: the objective, not the ELBO.
    let h = HParams {
        kl_beta0: 0.2,
        kl_warmup_steps: 100,
        kl_beta_per_level: vec![1.0, 0.5, 2.0],
        ..tiny_mlp()
    };
    let worst = check_gradient(&h, 4);
    println!("MLP Ladder VAE with β controls: worst relative error {worst:.2e}");
}

fn one_step_matches(h: &HParams, batch: usize) {
    let ctx = context();
    let images = mnist(h, batch);
    let mut m = build_model(h, batch, Sampling::Posterior).unwrap();
    append_backward(&mut m.graph).unwrap();
    let mut values = m.values_from_checkpoint(&init_weights(h, 5).unwrap(), "init").unwrap();
    m.set_images(&mut values, &images, MNIST).unwrap();
    let adamw = AdamW {
        lr: 1e-3,
        ema_rate: 0.99,
        ..AdamW::default()
    };
    let want = reference_step(&m, &values, &adamw, 9);
    let mut gpu = gpu_step(&ctx, &m, &values, adamw, 9);
    assert!(gpu.train_step(&ctx).unwrap().is_none());
    let metrics = gpu.finish(&ctx).unwrap().unwrap();
    let worst = assert_step_matches(&ctx, &m, &gpu, &metrics, &want, 1e-4);
    println!(
        "ELBO {:.6}; worst gradient relative difference GPU vs CPU {worst:.2e}",
        metrics.elbo
    );
}

#[test]
fn an_mlp_ladder_training_step_on_gpu_matches_the_cpu_step() {
    one_step_matches(&tiny_mlp(), 8);
}

#[test]
fn a_conv_ladder_training_step_on_gpu_matches_the_cpu_step() {
    one_step_matches(&tiny_conv(), 4);
}

/// Trains `h` on the bundled MNIST on the GPU for `steps` steps and returns
/// each level's KL in nats per image, averaged over the last `tail` steps.
fn train_kl(ctx: &GpuContext, h: &HParams, steps: u32, tail: usize) -> Vec<f64> {
    let all = mnist(h, 1000);
    let batch = h.n_batch;
    let mut m = build_model(h, batch, Sampling::Posterior).unwrap();
    append_backward(&mut m.graph).unwrap();
    let adamw = AdamW {
        lr: h.lr as f32,
        beta2: h.adam_beta2 as f32,
        grad_clip: h.grad_clip as f32,
        skip_threshold: h.skip_threshold as f32,
        ..AdamW::default()
    };
    let train = TrainConfig {
        adamw,
        resume: StepState::default(),
    };
    let mut gpu = GpuGraph::build(ctx, &m.graph, h.seed, Some(train)).unwrap();
    let values = m
        .values_from_checkpoint(&init_weights(h, h.seed).unwrap(), "init")
        .unwrap();
    gpu.write_values(ctx, &m.graph, &values).unwrap();
    gpu.reset_ema(ctx).unwrap();
    let mut seen: Vec<StepMetrics> = Vec::new();
    for step in 0..steps as usize {
        let start = (step * batch) % (all.n - batch);
        stage_batch(ctx, &mut gpu, &m, &all.range(start, batch), MNIST).unwrap();
        seen.extend(gpu.train_step(ctx).unwrap());
    }
    seen.extend(gpu.finish(ctx).unwrap());
    let last = &seen[seen.len() - tail..];
    let dims = m.dims as f64;
    (0..m.kl_per_level.len())
        .map(|l| last.iter().map(|s| s.kl_per_level[l]).sum::<f64>() / tail as f64 * dims)
        .collect()
}

#[test]
fn free_bits_keep_every_level_at_its_floor_where_it_would_collapse() {
    let ctx = context();
    let floor = 1.0;
    let base = HParams {
        lr: 3e-3,
        n_batch: 32,
        ..tiny_mlp()
    };
    let without = train_kl(&ctx, &base, 300, 30);
    let with = train_kl(
        &ctx,
        &HParams {
            free_bits: floor,
            ..base.clone()
        },
        300,
        30,
    );
    println!(
        "KL per level (nats/image, top first): without free bits {without:.3?}, with {floor} free nats {with:.3?}"
    );
    assert!(
        without.iter().any(|&k| k < 0.05 * floor),
        "some level collapses without free bits: {without:?}"
    );
    // Above the floor the KL is penalised, under it not: each level's batch
    // mean hovers at the floor, a step's draw on either side of it.
    for (l, &k) in with.iter().enumerate() {
        assert!(k >= 0.6 * floor, "level {l}: KL {k} well under its floor {floor}");
    }
}

#[test]
fn beta_zero_on_a_level_lets_its_kl_grow_unpenalised() {
    let ctx = context();
    let base = HParams {
        lr: 3e-3,
        n_batch: 32,
        ..tiny_mlp()
    };
    let free = HParams {
        kl_beta_per_level: vec![1.0, 0.0, 1.0],
        ..base.clone()
    };
    let penalised = train_kl(&ctx, &base, 300, 30);
    let unpenalised = train_kl(&ctx, &free, 300, 30);
    println!("KL per level (nats/image, top first): β = 1 {penalised:.3?}; β = 0 on level 1 {unpenalised:.3?}");
    assert!(
        unpenalised[1] > 1.0 && unpenalised[1] > 100.0 * penalised[1],
        "level 1's KL grows without its penalty: {} nats vs {} with it",
        unpenalised[1],
        penalised[1]
    );
}
