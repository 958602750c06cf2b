//! What the GPU-step tests share: the official fixture's paths, relative norms,
//! and one training step of a model on the CPU reference and on the GPU.
#![allow(dead_code)] // each test file uses its own part

use vdvae::gpu::GpuContext;
use vdvae::graph::cpu::{run, Noise, Values};
use vdvae::graph::gpu::{GpuGraph, TrainConfig};
use vdvae::model::vdvae::VdvaeGraph;
use vdvae::ops::optimizer::reference::{self as adam_ref, Decision, TensorRef};
use vdvae::ops::optimizer::{AdamW, StepState};

pub fn fixture(file: &str) -> String {
    format!("{}/tests/fixtures/official-vdvae/{file}", env!("CARGO_MANIFEST_DIR"))
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
pub fn reference_step(m: &VdvaeGraph, values: &Values, adamw: &AdamW, seed: u64) -> ReferenceStep {
    let mut cpu = values.clone();
    run(&m.graph, &mut cpu, Noise { seed, step: 0 }).unwrap();
    let elbo = cpu[m.loss].as_ref().unwrap()[0] as f64;
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
pub fn gpu_step(ctx: &GpuContext, m: &VdvaeGraph, values: &Values, adamw: AdamW, seed: u64) -> GpuGraph {
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
