//! Flow posteriors (`"flow_cells"`) end to end: a training step on the GPU
//! equals the CPU step, every flow parameter's gradient equals finite
//! differences of the loss, and on a trained model the importance-weighted
//! NLL is at or under the negative ELBO. The masks' autoregressive property
//! is tested in `src/model/flow.rs`; the kernels in `kernels-test/tests/flow.rs`.

mod common;

use common::{assert_step_matches, gpu_step, mnist_batch, reference_step};
use vdvae::checkpoint::{NamedTensors, Tensor};
use vdvae::gpu::GpuContext;
use vdvae::graph::autodiff::append_backward;
use vdvae::graph::executor::cpu::{run, Noise, Values};
use vdvae::graph::{Precision, Sampling};
use vdvae::kernels::optimizer::AdamW;
use vdvae::model::assemble::{build_model, ModelGraph};
use vdvae::model::config::{LadderForm, ModelKind};
use vdvae::model::evaluate::{evaluate, fit_images, Device, EvalInput};
use vdvae::model::importance::importance_weighted;
use vdvae::model::init::init_weights;
use vdvae::model::layout::to_official;
use vdvae::model::preprocess::MNIST;
use vdvae::model::{preset, HParams};

fn context() -> GpuContext {
    GpuContext::from_env().unwrap_or_else(|e| panic!("flow tests need an adapter: {e}"))
}

fn flowed(cells: usize, shift_only: bool) -> HParams {
    HParams {
        flow_cells: cells,
        flow_shift_only: shift_only,
        ..preset("mnist-tiny").unwrap()
    }
}

/// The conv Ladder VAE of the same size: its merged posterior is flowed.
fn flowed_ladder(cells: usize) -> HParams {
    HParams {
        model: ModelKind::Ladder,
        ladder_form: LadderForm::Conv,
        ..flowed(cells, false)
    }
}

fn adamw() -> AdamW {
    AdamW {
        lr: 1e-3,
        weight_decay: 0.01,
        ema_rate: 0.99,
        ..AdamW::default()
    }
}

/// Fresh weights of `h` whose cells are not the identity they start as
/// (their last conv's weights are zero): small deterministic values there.
fn weights(h: &HParams) -> NamedTensors {
    let mut w = init_weights(h, 5).unwrap();
    vdvae::model::flow::perturb_cells(&mut w);
    w
}

/// The training graph of `h` on `n` bundled MNIST images, with [`weights`].
fn training(h: &HParams, n: usize) -> (ModelGraph, Values) {
    let images = mnist_batch(n);
    let mut m = build_model(h, images.n, Sampling::Posterior).unwrap();
    append_backward(&mut m.graph).unwrap();
    let mut values = m.values_from_checkpoint(&weights(h), "init").unwrap();
    m.set_images(&mut values, &images, MNIST).unwrap();
    (m, values)
}

#[test]
fn a_flowed_training_step_on_gpu_matches_the_cpu_step() {
    let ctx = context();
    // Two cells: the second runs in the reversed order, and the log dets add.
    for h in [flowed(2, false), flowed(1, true), flowed_ladder(1)] {
        let (cells, shift_only) = (h.flow_cells, h.flow_shift_only);
        let (m, values) = training(&h, 4);
        let want = reference_step(&m, &values, &adamw(), 9);
        let mut gpu = gpu_step(&ctx, &m, &values, adamw(), 9);
        assert!(gpu.train_step(&ctx).unwrap().is_none());
        let metrics = gpu.finish(&ctx).unwrap().unwrap();
        println!(
            "{:?}, {cells} cells, shift only {shift_only}: ELBO gpu {:.7} cpu {:.7}",
            h.model, metrics.elbo, want.elbo
        );
        let worst = assert_step_matches(&ctx, &m, &gpu, &metrics, &want, 1e-4);
        println!("worst gradient relative difference GPU vs CPU: {worst:.2e}");
    }
}

#[test]
fn every_flow_parameter_gradient_matches_finite_differences() {
    for h in [flowed(2, false), flowed(1, true), flowed_ladder(1)] {
        let cells = h.flow_cells;
        let (m, values) = training(&h, 1);
        // The loss un-normalised (nats summed over the batch, in f64 from the
        // per-image f32 sums): the per-dim loss is too small for f32 differences.
        let total = |v: &Values| -> f64 {
            let sum = |t: usize| v[t].as_ref().unwrap().iter().map(|&x| x as f64).sum::<f64>();
            sum(m.nll) + m.kl_per_level.iter().map(|&k| sum(k)).sum::<f64>()
        };
        let loss_at = |values: &Values| -> f64 {
            let mut v = values.clone();
            run(&m.graph, &mut v, Noise::new(3, 0)).unwrap();
            total(&v)
        };
        let mut done = values.clone();
        run(&m.graph, &mut done, Noise::new(3, 0)).unwrap();
        // d total / d loss: the loss is the total over N images and their dims.
        let per_loss = (m.graph.shape(m.nll)[0] * m.dims) as f64;
        let eps = 1e-2f32;
        // What f32 rounding of the per-image sums can make of a difference.
        let noise = 8.0 * total(&done).abs() * f32::EPSILON as f64 / eps as f64;
        let mut checked = 0;
        for &(p, d) in &m.graph.param_grads {
            let name = m.graph.tensors[p].name.clone();
            if !name.contains(".flow.") {
                continue;
            }
            let grad: Vec<f64> = done[d].as_ref().unwrap().iter().map(|&g| g as f64 * per_loss).collect();
            let len = grad.len();
            // The largest gradient's element and one inside the tensor.
            let top = (0..len)
                .max_by(|&a, &b| grad[a].abs().total_cmp(&grad[b].abs()))
                .unwrap();
            for i in [top, len / 3] {
                let mut up = values.clone();
                up[p].as_mut().unwrap()[i] += eps;
                let mut down = values.clone();
                down[p].as_mut().unwrap()[i] -= eps;
                let fd = (loss_at(&up) - loss_at(&down)) / (2.0 * eps as f64);
                let g = grad[i];
                println!("{name}[{i}]: analytic {g:.6e} finite difference {fd:.6e} (noise {noise:.1e})");
                assert!(
                    (g - fd).abs() <= 0.03 * grad[top].abs() + noise,
                    "{name}[{i}]: analytic {g:e} vs finite difference {fd:e} (largest {:e}, noise {noise:e})",
                    grad[top]
                );
                checked += 1;
            }
        }
        // c1 weight and bias, c2 weight and bias per cell per level.
        let levels = h.latent_levels().unwrap();
        assert_eq!(checked, 2 * 4 * cells * levels, "every flow parameter was checked");
    }
}

/// The weights of `m` as the GPU holds them, official names and layouts.
fn weights_of(ctx: &GpuContext, m: &ModelGraph, gpu: &vdvae::graph::executor::GpuGraph) -> NamedTensors {
    m.params
        .iter()
        .map(|(spec, t)| {
            let data = to_official(spec, &gpu.read(ctx, *t).unwrap());
            (
                spec.name.clone(),
                Tensor {
                    shape: spec.shape.clone(),
                    data,
                },
            )
        })
        .collect()
}

#[test]
fn on_a_trained_flowed_model_the_iw_nll_is_under_the_negative_elbo() {
    let ctx = context();
    let h = flowed(1, false);
    let n = 8;
    let (m, values) = training(&h, n);
    let mut gpu = gpu_step(&ctx, &m, &values, AdamW { lr: 2e-3, ..adamw() }, 1);
    for _ in 0..150 {
        gpu.train_step(&ctx).unwrap();
    }
    let last = gpu.finish(&ctx).unwrap().unwrap();
    let weights = weights_of(&ctx, &m, &gpu);
    let images = fit_images(&h, common::mnist_batch(n)).unwrap();
    let input = EvalInput {
        h: &h,
        weights: &weights,
        images: &images,
        norm: MNIST,
        sampling: Sampling::Posterior,
        seed: 5,
        binarize_seed: 1,
        precision: Precision::F32,
    };
    let device = Device::Gpu(&ctx);
    let elbo = evaluate(device, &input, n).unwrap();
    let iw = importance_weighted(device, &input, 64, 64).unwrap();
    println!(
        "after 150 steps (last training ELBO {:.4} nats/dim): negative ELBO {:.3}, IW NLL (K=64) {:.3} nats/image",
        last.elbo, elbo.elbo_nats_per_image, iw.nll_nats_per_image
    );
    assert!(elbo.elbo_nats_per_image.is_finite() && iw.nll_nats_per_image.is_finite());
    assert!(
        iw.nll_nats_per_image <= elbo.elbo_nats_per_image,
        "IW NLL {} above the negative ELBO {}",
        iw.nll_nats_per_image,
        elbo.elbo_nats_per_image
    );
}

#[test]
fn encode_writes_z0s_posterior_and_the_flowed_z_and_the_posterior_mean_path_is_deterministic() {
    use vdvae::diagnose::encode::{encode, level_name};
    use vdvae::model::conditional::BatchRun;
    let images = fit_images(&flowed(1, false), common::mnist_batch(3)).unwrap();
    for h in [flowed(1, false), flowed(0, false)] {
        let weights = weights(&h);
        let run = BatchRun {
            device: Device::Cpu,
            h: &h,
            weights: &weights,
            images: &images,
            norm: MNIST,
            batch: 2,
            seed: 1,
        };
        let encoded = encode(&run).unwrap();
        let levels = h.latent_levels().unwrap();
        for l in 0..levels {
            let mean = &encoded[&level_name(l, "mean")];
            match encoded.get(&level_name(l, "flowed")) {
                Some(z) => {
                    assert_eq!(z.shape, mean.shape, "level {l}");
                    assert!(z.data.iter().all(|v| v.is_finite()));
                    assert_ne!(z.data, mean.data, "level {l}: the cells changed nothing");
                }
                None => assert_eq!(h.flow_cells, 0, "level {l} of a flowed model has no flowed z"),
            }
        }
        // The posterior-mean path draws nothing: the same encoding again.
        assert_eq!(encode(&run).unwrap(), encoded);
    }
}
