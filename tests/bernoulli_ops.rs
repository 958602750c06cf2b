//! The Bernoulli graph ops on the GPU executor against the CPU executor:
//! the NLL and its fused backward (and the CPU backward against finite
//! differences), dynamic binarization bit for bit (at two steps, split across
//! dispatches, 0/1 probabilities unchanged, the fraction of ones), the mean
//! and samples of logits.

mod common;

use common::assert_close;

use vdvae::gpu::GpuContext;
use vdvae::graph::autodiff::append_backward;
use vdvae::graph::executor::cpu::{run, Noise, Values};
use vdvae::graph::executor::{BuildOptions, GpuGraph};
use vdvae::graph::{Graph, Role, TensorId};
use vdvae::kernels::bernoulli::reference;
use vdvae::kernels::rng::RngKey;
use vdvae::kernels::testdata::{finite_difference, TestRng};

const SEED: u64 = 17;

fn context() -> GpuContext {
    GpuContext::from_env().unwrap_or_else(|e| panic!("Bernoulli op tests need an adapter: {e}"))
}

fn values_for(g: &Graph, given: &[(TensorId, Vec<f32>)]) -> Values {
    let mut values: Values = vec![None; g.tensors.len()];
    for (t, v) in given {
        values[*t] = Some(v.clone());
    }
    values
}

/// Runs `g` on the CPU at noise step `step`; returns the values of `read`.
fn cpu(g: &Graph, values: &Values, step: u64, read: &[TensorId]) -> Vec<Vec<f32>> {
    let mut v = values.clone();
    run(g, &mut v, Noise::new(SEED, step)).unwrap();
    read.iter().map(|&t| v[t].clone().unwrap()).collect()
}

/// Builds `g` on the GPU (with `options`) and runs it at each of `steps`;
/// returns the values of `read` per step and the dispatch count per op name.
fn gpu(
    ctx: &GpuContext,
    g: &Graph,
    values: &Values,
    steps: &[u32],
    read: &[TensorId],
    options: BuildOptions,
) -> (Vec<Vec<Vec<f32>>>, Vec<&'static str>) {
    let gg = GpuGraph::build_with(ctx, g, SEED, None, options).unwrap();
    gg.write_values(ctx, g, values).unwrap();
    let out = steps
        .iter()
        .map(|&step| {
            gg.run(ctx, step).unwrap();
            read.iter().map(|&t| gg.read(ctx, t).unwrap()).collect()
        })
        .collect();
    (out, gg.labelled_dispatches().map(|(_, l)| l.op).collect())
}

/// logits (a parameter) and a binary target → per-image NLL → loss, with backward.
fn nll_graph(shape: [usize; 4]) -> (Graph, TensorId, TensorId, TensorId, TensorId) {
    let mut g = Graph::default();
    let logits = g.tensor("logits", shape.to_vec(), Role::Param);
    let target = g.tensor("target", shape.to_vec(), Role::Input);
    let nll = g.bernoulli_nll("nll", logits, target).unwrap();
    let loss = g.elbo("loss", nll, &[], 1).unwrap();
    append_backward(&mut g).unwrap();
    let dlogits = g.param_grads.iter().find(|&&(p, _)| p == logits).unwrap().1;
    (g, logits, target, loss, dlogits)
}

fn logits_and_targets(n: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut rng = TestRng::new(seed);
    let logits = rng.vec(n, -6.0, 6.0);
    let targets = (0..n)
        .map(|_| f32::from(u8::from(rng.uniform(0.0, 1.0) < 0.4)))
        .collect();
    (logits, targets)
}

#[test]
fn bernoulli_nll_and_backward_match_on_gpu_and_cpu() {
    let ctx = context();
    let shape = [3, 28, 28, 1];
    let (g, logits, target, _, dlogits) = nll_graph(shape);
    let nll = g.outputs[0];
    let (l, t) = logits_and_targets(shape.iter().product(), 1);
    let values = values_for(&g, &[(logits, l.clone()), (target, t.clone())]);
    // (The GPU leaves the loss itself to the host: it sums the NLL read back.)
    let read = [nll, dlogits];
    let want = cpu(&g, &values, 0, &read);
    let (got, _) = gpu(&ctx, &g, &values, &[0], &read, BuildOptions::default());
    // Per-image sums of 784 terms in f32 on the GPU, f64 on the CPU.
    assert_close("nll", &got[0][0], &want[0], 1e-4, 1e-5);
    assert_close("dlogits", &got[0][1], &want[1], 1e-9, 2e-6);
    // The CPU values are the reference's: d loss / dl = (sigmoid(l) - t) / N.
    let spec = vdvae::kernels::bernoulli::BernoulliSpec {
        n: 3,
        h: 28,
        w: 28,
        c: 1,
    };
    assert_eq!(want[0], reference::nll(&spec, &l, &t));
    assert_eq!(want[1], reference::nll_grad(&spec, &l, &t, &[1.0 / 3.0; 3]));
}

#[test]
fn bernoulli_nll_cpu_backward_matches_finite_differences() {
    let shape = [2, 3, 4, 2];
    let (g, logits, target, _, dlogits) = nll_graph(shape);
    let (l, t) = logits_and_targets(shape.iter().product(), 2);
    let values = values_for(&g, &[(logits, l.clone()), (target, t.clone())]);
    let analytic = &cpu(&g, &values, 0, &[dlogits])[0];
    // The loss as the graph computes it, in f64 from its per-image NLLs.
    let nll = g.outputs[0];
    let fd = finite_difference(&l, 1e-2, |x| {
        let v = values_for(&g, &[(logits, x.to_vec()), (target, t.clone())]);
        let per_image = &cpu(&g, &v, 0, &[nll])[0];
        per_image.iter().map(|&a| a as f64).sum::<f64>() / shape[0] as f64
    });
    for (i, (&a, &f)) in analytic.iter().zip(&fd).enumerate() {
        assert!(
            (a as f64 - f).abs() <= 2e-4,
            "dlogits[{i}]: analytic {a} vs finite difference {f}"
        );
    }
    // The target is data: no gradient is made for it.
    assert!(g.param_grads.iter().all(|&(p, _)| p != target));
}

/// Probabilities (an input) → binarized.
fn binarize_graph(shape: [usize; 4]) -> (Graph, TensorId, TensorId) {
    let mut g = Graph::default();
    let probs = g.tensor("probs", shape.to_vec(), Role::Input);
    let x = g.binarize("x", probs, 5).unwrap();
    g.outputs.push(x);
    (g, probs, x)
}

fn grey_levels(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = TestRng::new(seed);
    (0..n).map(|_| (rng.uniform(0.0, 256.0) as u8) as f32 / 255.0).collect()
}

#[test]
fn binarize_matches_the_cpu_bit_for_bit_at_two_steps() {
    let ctx = context();
    let shape = [3, 28, 28, 1];
    let (g, probs, x) = binarize_graph(shape);
    let p = grey_levels(shape.iter().product(), 3);
    let values = values_for(&g, &[(probs, p.clone())]);
    let (got, _) = gpu(&ctx, &g, &values, &[0, 7], &[x], BuildOptions::default());
    for (k, step) in [0u64, 7].into_iter().enumerate() {
        let want = &cpu(&g, &values, step, &[x])[0];
        assert_eq!(&got[k][0], want, "step {step}");
        // Element i is decided by the uniform at flat index i of the node's key.
        let key = RngKey::new(SEED, step, 5);
        assert_eq!(want, &reference::sample_probs(&p, &key, 0));
    }
    assert_ne!(got[0][0], got[1][0], "each step draws anew");
}

#[test]
fn binarize_passes_zero_and_one_unchanged() {
    let ctx = context();
    let shape = [2, 16, 16, 1];
    let (g, probs, x) = binarize_graph(shape);
    let p: Vec<f32> = (0..shape.iter().product())
        .map(|i: usize| f32::from(u8::from(i % 3 == 1)))
        .collect();
    let values = values_for(&g, &[(probs, p.clone())]);
    let (got, _) = gpu(&ctx, &g, &values, &[0, 1], &[x], BuildOptions::default());
    assert_eq!(got[0][0], p);
    assert_eq!(got[1][0], p);
    assert_eq!(cpu(&g, &values, 3, &[x])[0], p);
}

#[test]
fn binarize_draws_ones_at_the_given_probability() {
    let ctx = context();
    let shape = [8, 64, 64, 1];
    let n: usize = shape.iter().product();
    let (g, probs, x) = binarize_graph(shape);
    let values = values_for(&g, &[(probs, vec![0.3; n])]);
    let (got, _) = gpu(&ctx, &g, &values, &[2], &[x], BuildOptions::default());
    let ones = got[0][0].iter().filter(|&&v| v == 1.0).count();
    assert_eq!(
        ones + got[0][0].iter().filter(|&&v| v == 0.0).count(),
        n,
        "binary values"
    );
    let fraction = ones as f64 / n as f64;
    let se = (0.3f64 * 0.7 / n as f64).sqrt();
    assert!(
        (fraction - 0.3).abs() < 5.0 * se,
        "fraction of ones {fraction} (p 0.3, standard error {se:.4})"
    );
}

#[test]
fn a_split_binarize_and_nll_draw_the_same_bits_and_sums() {
    // [4, 20, 20, 3] f32 is 19.2 KiB: at a 1 KiB binding every node splits by
    // pixels (inside images for the per-image NLL and its gradient).
    let ctx = context();
    let shape = [4, 20, 20, 3];
    let n: usize = shape.iter().product();
    let mut g = Graph::default();
    let probs = g.tensor("probs", shape.to_vec(), Role::Input);
    let logits = g.tensor("logits", shape.to_vec(), Role::Param);
    let x = g.binarize("x", probs, 9).unwrap();
    let nll = g.bernoulli_nll("nll", logits, x).unwrap();
    g.elbo("loss", nll, &[], n / 4).unwrap();
    g.outputs.push(x);
    append_backward(&mut g).unwrap();
    let dlogits = g.param_grads[0].1;
    let (l, _) = logits_and_targets(n, 4);
    let values = values_for(&g, &[(probs, grey_levels(n, 5)), (logits, l)]);
    let read = [x, nll, dlogits];
    let (whole, whole_ops) = gpu(&ctx, &g, &values, &[3], &read, BuildOptions::default());
    let limit = BuildOptions {
        binding_limit: Some(1 << 10),
        ..BuildOptions::default()
    };
    let (split, split_ops) = gpu(&ctx, &g, &values, &[3], &read, limit);
    for op in ["binarize", "bernoulli_nll", "bernoulli_nll_backward"] {
        let count = |ops: &[&str]| ops.iter().filter(|&&o| o == op).count();
        assert!(count(&split_ops) > count(&whole_ops), "{op} was not split");
    }
    let (whole, split) = (&whole[0], &split[0]);
    assert_eq!(split[0], whole[0], "binarized bits");
    assert_eq!(whole[0], cpu(&g, &values, 3, &[x])[0], "GPU bits vs CPU");
    // The NLL's slices add partial sums; the gradient is per element.
    assert_close("nll", &split[1], &whole[1], 0.0, 1e-6);
    assert_eq!(split[2], whole[2], "dlogits");
}

#[test]
fn bernoulli_mean_and_sample_match_on_gpu_and_cpu() {
    let ctx = context();
    let shape = [2, 17, 19, 3];
    let n: usize = shape.iter().product();
    let mut g = Graph::default();
    let logits = g.tensor("logits", shape.to_vec(), Role::Input);
    let mean = g.bernoulli_mean("mean", logits).unwrap();
    let sample = g.bernoulli_sample("sample", logits, 2).unwrap();
    g.outputs.extend([mean, sample]);
    let l = TestRng::new(6).vec(n, -8.0, 8.0);
    let values = values_for(&g, &[(logits, l.clone())]);
    let (got, _) = gpu(&ctx, &g, &values, &[4], &[mean, sample], BuildOptions::default());
    let want = cpu(&g, &values, 4, &[mean, sample]);
    assert_close("mean", &got[0][0], &want[0], 1e-12, 2e-6);
    // The sample compares u with sigmoid(l) (f32 on the GPU, f64 on the CPU):
    // where the two are within 1e-6 either bit is right; elsewhere they agree.
    let key = RngKey::new(SEED, 4, 2);
    let mut ties = 0;
    for (i, (&a, &b)) in got[0][1].iter().zip(&want[1]).enumerate() {
        let margin = (reference::uniform(&key, i) - reference::sigmoid(l[i] as f64)).abs();
        if margin < 1e-6 {
            ties += 1;
        } else {
            assert_eq!(a, b, "sample element {i}");
        }
    }
    assert!(ties < 5, "{ties} ties");
    assert!(got[0][1].iter().all(|&v| v == 0.0 || v == 1.0));
}
