//! What the GPU-step tests share: the official fixture's paths, relative norms,
//! and one training step of a model on the CPU reference and on the GPU.
#![allow(dead_code)] // each test file uses its own part

pub mod process;
pub mod runs;

use vdvae::data::{bundled_mnist, ImageSet};
use vdvae::gpu::GpuContext;
use vdvae::graph::executor::cpu::{run, Noise, Values};
use vdvae::graph::executor::{GpuGraph, StepMetrics, TrainConfig};
use vdvae::graph::ElboTotals;
use vdvae::kernels::optimizer::reference::{self as adam_ref, Decision, TensorRef};
use vdvae::kernels::optimizer::{AdamW, StepState};
use vdvae::model::assemble::ModelGraph;

/// The first `n` of the 1,000 bundled MNIST images, padded to 32x32.
pub fn mnist_batch(n: usize) -> ImageSet {
    bundled_mnist().first(n).pad_to(32).unwrap()
}

pub fn fixture(file: &str) -> String {
    format!("{}/tests/fixtures/official-vdvae/{file}", env!("CARGO_MANIFEST_DIR"))
}

/// Every element within `atol + rtol·|want|`; the message names the first that is not.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], atol: f64, rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w as f64).abs();
        assert!(
            err <= atol + rtol * (w as f64).abs(),
            "{what}: element {i}: {g:e} vs {w:e} (|diff| {err:.3e})"
        );
    }
}

/// ‖got − want‖ and ‖want‖.
pub fn rel_norm(got: &[f32], want: &[f32]) -> (f64, f64) {
    let d: f64 = got
        .iter()
        .zip(want)
        .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    let n: f64 = want.iter().map(|&b| (b as f64).powi(2)).sum::<f64>().sqrt();
    (d, n)
}

/// One step on the CPU reference: every tensor's value, the ELBO, each
/// parameter's state after the reference AdamW, and its clip/skip decision.
pub struct ReferenceStep {
    pub values: Values,
    pub elbo: f64,
    /// One per `param_grads` entry, in order.
    pub tensors: Vec<TensorRef>,
    pub decision: Decision,
}

/// Forward, backward and the reference AdamW over every parameter (EMA from
/// the weights, moments from zero), with noise `seed` at step 0.
pub fn reference_step(m: &ModelGraph, values: &Values, adamw: &AdamW, seed: u64) -> ReferenceStep {
    let mut cpu = values.clone();
    run(&m.graph, &mut cpu, Noise::new(seed, 0)).unwrap();
    // The ELBO from its terms: the loss differs from it under KL controls.
    let mut totals = ElboTotals::default();
    let kls: Vec<&[f32]> = m.kl_per_level.iter().map(|&k| cpu[k].as_deref().unwrap()).collect();
    totals.add(cpu[m.nll].as_ref().unwrap(), &kls);
    let elbo = totals.per_dim(m.dims).elbo;
    let mut tensors: Vec<TensorRef> = m
        .graph
        .param_grads
        .iter()
        .map(|&(p, d)| {
            let n = m.graph.tensors[p].numel();
            TensorRef {
                param: cpu[p].clone().unwrap(),
                grad: cpu[d].clone().unwrap(),
                exp_avg: vec![0.0; n],
                exp_avg_sq: vec![0.0; n],
                ema: Some(cpu[p].clone().unwrap()),
            }
        })
        .collect();
    let decision = adam_ref::step(adamw, &mut StepState::default(), &mut tensors);
    ReferenceStep {
        values: cpu,
        elbo,
        tensors,
        decision,
    }
}

/// The same step built on the GPU, its weights, inputs and EMA set and
/// every dispatch valid; not yet run.
pub fn gpu_step(ctx: &GpuContext, m: &ModelGraph, values: &Values, adamw: AdamW, seed: u64) -> GpuGraph {
    let train = TrainConfig {
        adamw,
        resume: StepState::default(),
    };
    let gpu = GpuGraph::build(ctx, &m.graph, seed, Some(train)).unwrap();
    gpu.write_values(ctx, &m.graph, values).unwrap();
    gpu.reset_ema(ctx).unwrap();
    let bad = gpu.invalid_dispatches(ctx);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    gpu
}

/// Asserts that the GPU's training step agrees with the reference step: the
/// ELBO to 1e-5 and the gradient norm to 1e-4 relative, the same clip/skip
/// decision, every gradient within `grad_tol` of its norm (f32 sums in
/// another order; 1e-9 absolute for ~0 ones), updated weights to 1e-6 (Adam's
/// first step moves each weight by about lr·sign(g), ill-conditioned where
/// g ≈ 0, so those are left out), and EMA to 1e-5. Returns the worst relative
/// gradient difference.
pub fn assert_step_matches(
    ctx: &GpuContext,
    m: &ModelGraph,
    gpu: &GpuGraph,
    metrics: &StepMetrics,
    want: &ReferenceStep,
    grad_tol: f64,
) -> f64 {
    assert!(
        (metrics.elbo - want.elbo).abs() <= 1e-5 * want.elbo.abs(),
        "ELBO {} vs {}",
        metrics.elbo,
        want.elbo
    );
    assert_eq!(metrics.applied, want.decision.apply);
    let cpu_norm = (adam_ref::grad_sq(&want.tensors) as f64).sqrt();
    assert!(
        (metrics.grad_norm as f64 - cpu_norm).abs() <= 1e-4 * cpu_norm,
        "{} vs {cpu_norm}",
        metrics.grad_norm
    );
    let mut worst = 0.0f64;
    for (k, &(p, d)) in m.graph.param_grads.iter().enumerate() {
        let name = &m.graph.tensors[p].name;
        let want_grad = want.values[d].as_ref().unwrap();
        let (diff, norm) = rel_norm(&gpu.read(ctx, d).unwrap(), want_grad);
        assert!(
            diff <= grad_tol * norm + 1e-9,
            "{name}: gradient differs by {diff:e} (norm {norm:e})"
        );
        if norm > 0.0 {
            worst = worst.max(diff / norm);
        }
        let (w_gpu, w_cpu) = (gpu.read(ctx, p).unwrap(), &want.tensors[k].param);
        let g_max = want_grad.iter().fold(0f32, |a, &g| a.max(g.abs()));
        for (i, (&a, &b)) in w_gpu.iter().zip(w_cpu).enumerate() {
            let tiny_grad = want_grad[i].abs() <= 1e-3 * g_max;
            assert!(
                (a - b).abs() <= 1e-6 || tiny_grad,
                "{name}[{i}]: weight {a} vs {b} (grad {})",
                want_grad[i]
            );
        }
        let (ema_gpu, ema_cpu) = (gpu.read_ema(ctx, p).unwrap(), want.tensors[k].ema.as_ref().unwrap());
        let (diff, norm) = rel_norm(&ema_gpu, ema_cpu);
        assert!(diff <= 1e-5 * norm + 1e-7, "{name}: EMA differs by {diff:e}");
    }
    worst
}
