//! `vdvae eval --iw K`: the importance-weighted NLL is the same number on the
//! CPU and the GPU for the same K and seed, and bounds the ELBO from below
//! (as a NLL, at or under the negative ELBO), for the Ladder VAE and the VDVAE.

use vdvae::data::{bundled_mnist, ImageSet};
use vdvae::gpu::GpuContext;
use vdvae::graph::{Precision, Sampling};
use vdvae::model::evaluate::{evaluate, fit_images, Device, EvalInput};
use vdvae::model::importance::importance_weighted;
use vdvae::model::init::init_weights;
use vdvae::model::preprocess::MNIST;
use vdvae::model::{preset, HParams};

fn context() -> GpuContext {
    GpuContext::from_env().unwrap_or_else(|e| panic!("IW tests need an adapter: {e}"))
}

fn tiny_ladder() -> HParams {
    HParams {
        ladder_hidden: vec![32, 16, 8],
        ladder_latent: vec![8, 4, 2],
        ..preset("ladder-mnist").unwrap()
    }
}

fn images(h: &HParams, n: usize) -> ImageSet {
    fit_images(h, bundled_mnist().first(n)).unwrap()
}

/// (IW NLL on the CPU, on the GPU, negative ELBO on the GPU), nats per image.
fn iw_both(h: &HParams, n: usize, k: usize, rows: usize) -> (f64, f64, f64) {
    let weights = init_weights(h, 2).unwrap();
    let images = images(h, n);
    let input = EvalInput {
        h,
        weights: &weights,
        images: &images,
        norm: MNIST,
        sampling: Sampling::Posterior,
        seed: 5,
        binarize_seed: 1,
        precision: Precision::F32,
    };
    let ctx = context();
    let gpu = Device::Gpu(&ctx);
    let on_cpu = importance_weighted(Device::Cpu, &input, k, rows).unwrap();
    let on_gpu = importance_weighted(gpu, &input, k, rows).unwrap();
    let elbo = evaluate(gpu, &input, n).unwrap();
    (
        on_cpu.nll_nats_per_image,
        on_gpu.nll_nats_per_image,
        elbo.elbo_nats_per_image,
    )
}

#[test]
fn the_ladder_iw_nll_is_the_same_on_cpu_and_gpu_and_under_the_elbo() {
    // 6 samples in passes of 4 rows: one image per pass, the second pass half used.
    let (cpu, gpu, elbo) = iw_both(&tiny_ladder(), 3, 6, 4);
    println!("IW NLL (K=6): CPU {cpu:.6}, GPU {gpu:.6} nats/image; negative ELBO {elbo:.6}");
    assert!((cpu - gpu).abs() <= 1e-5 * cpu.abs(), "{cpu} vs {gpu}");
    assert!(gpu <= elbo + 1e-3 * elbo.abs(), "IW {gpu} vs ELBO {elbo}");
}

#[test]
fn more_samples_tighten_the_bound() {
    let h = tiny_ladder();
    let (_, k1, elbo) = iw_both(&h, 4, 1, 64);
    let (_, k64, _) = iw_both(&h, 4, 64, 64);
    println!("negative ELBO {elbo:.4}, IW K=1 {k1:.4}, K=64 {k64:.4} nats/image");
    assert!(k64 < k1, "K = 64 ({k64}) tighter than K = 1 ({k1})");
    assert!(k64 < elbo, "K = 64 ({k64}) under the negative ELBO ({elbo})");
}

#[test]
fn the_vdvae_iw_nll_is_the_same_on_cpu_and_gpu() {
    let h = preset("mnist-tiny").unwrap();
    let (cpu, gpu, elbo) = iw_both(&h, 2, 4, 4);
    println!("VDVAE IW NLL (K=4): CPU {cpu:.6}, GPU {gpu:.6} nats/image; negative ELBO {elbo:.6}");
    assert!((cpu - gpu).abs() <= 1e-5 * cpu.abs(), "{cpu} vs {gpu}");
}
