//! The GPU executor against the CPU reference executor: the official fixture's
//! posterior-mean ELBO on the GPU, and one whole training step (loss, every
//! gradient, updated weights and EMA) on GPU and CPU with the same seed.

mod common;

use common::{assert_step_matches, fixture, gpu_step, mnist_batch, reference_step, rel_norm};
use vdvae::checkpoint::load;
use vdvae::data::{read_images, DataFormat};
use vdvae::gpu::GpuContext;
use vdvae::graph::autodiff::append_backward;
use vdvae::graph::executor::cpu::{run, Noise, Values};
use vdvae::graph::executor::GpuGraph;
use vdvae::graph::Sampling;
use vdvae::kernels::optimizer::AdamW;
use vdvae::model::assemble::build_model;
use vdvae::model::init::init_weights;
use vdvae::model::preprocess::{CIFAR10, MNIST};
use vdvae::model::{preset, HParams};

fn context() -> GpuContext {
    GpuContext::from_env().unwrap_or_else(|e| panic!("GPU executor tests need an adapter: {e}"))
}

#[test]
fn gpu_posterior_mean_elbo_matches_the_official_model() {
    let ctx = context();
    let h = HParams::from_json_file(&fixture("tiny.json")).unwrap();
    let images = read_images(&fixture("digits64.bin"), DataFormat::Cifar10).unwrap();
    let m = build_model(&h, images.n, Sampling::PosteriorMean).unwrap();
    let mut values = m
        .values_from_checkpoint(&load(&fixture("tiny.safetensors")).unwrap(), "tiny")
        .unwrap();
    m.set_images(&mut values, &images, CIFAR10).unwrap();
    let gpu = GpuGraph::build(&ctx, &m.graph, 0, None).unwrap();
    gpu.write_values(&ctx, &m.graph, &values).unwrap();
    gpu.run(&ctx, 0).unwrap();
    let nll: f64 = gpu.read(&ctx, m.nll).unwrap().iter().map(|&x| x as f64).sum();
    let kl: f64 = m
        .kl_per_level
        .iter()
        .map(|&k| gpu.read(&ctx, k).unwrap().iter().map(|&x| x as f64).sum::<f64>())
        .sum();
    let elbo = (nll + kl) / (images.n * m.dims) as f64;
    let official = 5.771368026733398;
    println!("GPU posterior-mean ELBO {elbo:.9} official {official:.9}");
    assert!(
        (elbo - official).abs() / official <= 1e-4,
        "GPU ELBO {elbo} vs official {official}"
    );
}

#[test]
fn one_training_step_on_gpu_matches_the_cpu_step() {
    let ctx = context();
    let h = preset("mnist-tiny").unwrap();
    let images = mnist_batch(4);
    let mut m = build_model(&h, images.n, Sampling::Posterior).unwrap();
    append_backward(&mut m.graph).unwrap();
    let mut values: Values = m.values_from_checkpoint(&init_weights(&h, 5).unwrap(), "init").unwrap();
    m.set_images(&mut values, &images, MNIST).unwrap();
    let adamw = AdamW {
        lr: 1e-3,
        weight_decay: 0.01,
        ema_rate: 0.99,
        ..AdamW::default()
    };
    let seed = 9;

    // CPU: forward, backward, then the reference optimizer over every parameter.
    let want = reference_step(&m, &values, &adamw, seed);
    // GPU: the same step in one submit.
    let mut gpu = gpu_step(&ctx, &m, &values, adamw, seed);
    assert!(gpu.train_step(&ctx).unwrap().is_none(), "metrics arrive one step late");
    let metrics = gpu.finish(&ctx).unwrap().unwrap();
    println!(
        "ELBO gpu {:.7} cpu {:.7}; grad norm {} applied {}",
        metrics.elbo, want.elbo, metrics.grad_norm, metrics.applied
    );
    let worst = assert_step_matches(&ctx, &m, &gpu, &metrics, &want, 1e-4);
    println!("worst gradient relative difference GPU vs CPU: {worst:.2e}");
}

#[test]
fn sampled_forward_draws_the_cpu_noise_at_any_step() {
    // The noise step reaches each reparam kernel by a GPU-side copy into its
    // uniform; at step 5 a wrong offset would draw other noise than the CPU.
    let ctx = context();
    let h = preset("mnist-tiny").unwrap();
    let images = mnist_batch(2);
    let m = build_model(&h, images.n, Sampling::Posterior).unwrap();
    let mut values = m.values_from_checkpoint(&init_weights(&h, 3).unwrap(), "init").unwrap();
    m.set_images(&mut values, &images, MNIST).unwrap();
    let (seed, step) = (11, 5);
    let gpu = GpuGraph::build(&ctx, &m.graph, seed, None).unwrap();
    gpu.write_values(&ctx, &m.graph, &values).unwrap();
    gpu.run(&ctx, step as u32).unwrap();
    run(&m.graph, &mut values, Noise::new(seed, step)).unwrap();
    let mut other = values.clone();
    run(&m.graph, &mut other, Noise::new(seed, 0)).unwrap();
    let layers = h.decoder_layers().unwrap();
    for (&k, layer) in m.kl_per_level.iter().zip(&layers) {
        let (got, want) = (gpu.read(&ctx, k).unwrap(), values[k].clone().unwrap());
        let (d, n) = rel_norm(&got, &want);
        // KL near 0 cancels in f32 (-1/2 + 1/2·e^0 …): up to ~1e-7 per summed element.
        let summed = (images.n * layer.res * layer.res * h.zdim) as f64;
        let atol = 1e-7 * summed;
        let name = &m.graph.tensors[k].name;
        assert!(d <= 1e-4 * n + atol, "{name}: KL differs by {d:e} (norm {n:e})");
    }
    let nll_at = |v: &Values| v[m.nll].clone().unwrap();
    let (d, n) = rel_norm(&gpu.read(&ctx, m.nll).unwrap(), &nll_at(&values));
    assert!(d <= 1e-5 * n, "NLL at step {step} differs by {d:e}");
    // And the step matters: step 0 draws different noise.
    let (d0, _) = rel_norm(&nll_at(&other), &nll_at(&values));
    assert!(d0 > 1e-4 * n, "steps 0 and {step} drew the same noise");
}

#[test]
fn gpu_samples_match_the_cpu_sampler() {
    use vdvae::model::evaluate::Device;
    use vdvae::model::sample::sample_images;
    let h = preset("mnist-tiny").unwrap();
    let weights = init_weights(&h, 4).unwrap();
    let ctx = context();
    let t = vec![0.8; h.latent_levels().unwrap()];
    let gpu = sample_images(Device::Gpu(&ctx), &h, &weights, 3, &t, 21, None).unwrap();
    let cpu = sample_images(Device::Cpu, &h, &weights, 3, &t, 21, None).unwrap();
    assert_eq!((gpu.n, gpu.h, gpu.w, gpu.c), (3, 32, 32, 1));
    // uint8 truncation can flip a value that sits on a bin edge; nothing else may differ.
    let off = gpu.pixels.iter().zip(&cpu.pixels).filter(|(a, b)| a != b).count();
    let far = gpu
        .pixels
        .iter()
        .zip(&cpu.pixels)
        .filter(|(&a, &b)| (a as i32 - b as i32).abs() > 1)
        .count();
    assert!(
        far == 0 && off * 1000 <= gpu.pixels.len(),
        "{off} pixels differ, {far} by more than 1"
    );
}
