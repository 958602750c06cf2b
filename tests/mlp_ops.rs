//! The graph ops of the MLP models (Ladder VAE): linear, group norm, and the
//! leaky ReLU / ELU / GELU activations. A small MLP built from them
//! (`x[5,1,1,7] → linear → group norm → activation → linear → Σ → loss`)
//! is checked: the CPU backward against finite differences of the CPU
//! forward, the GPU forward and backward against the CPU, a split build
//! against the unsplit one, and f16 storage against the f16 CPU run.

mod common;

use std::collections::BTreeMap;

use common::rel_norm;
use vdvae::gpu::{DType, GpuContext};
use vdvae::graph::autodiff::append_backward;
use vdvae::graph::executor::cpu::{run, Noise, Values};
use vdvae::graph::executor::{BuildOptions, GpuGraph};
use vdvae::graph::{set_precision, ActivationKind, Graph, Precision, Role, TensorId};
use vdvae::kernels::testdata::TestRng;
use vdvae::Error;

fn context() -> GpuContext {
    GpuContext::from_env().unwrap_or_else(|e| panic!("MLP op tests need an adapter: {e}"))
}

const KINDS: [ActivationKind; 3] = [
    ActivationKind::LeakyRelu { slope: 0.1 },
    ActivationKind::Elu,
    ActivationKind::Gelu,
];

/// A two-layer MLP and the tensors the tests read.
struct Mlp {
    g: Graph,
    /// The per-image sums the loss adds up (the GPU leaves that to the host).
    sum: TensorId,
    /// The forward activations: linear, group norm, activation, linear.
    forward: Vec<TensorId>,
}

/// The sizes and choices of a test MLP (see [`mlp`]).
struct Spec {
    n: usize,
    k: usize,
    hidden: usize,
    out: usize,
    groups: usize,
    kind: ActivationKind,
    bias2: bool,
    x_learns: bool,
}

/// `x[n,1,1,k] → linear(w[k,hidden], b) → group_norm(groups) → kind →
/// linear(w2[hidden,out], b2 when `bias2`) → Σ per image → loss`, with
/// its backward. `x` is a Param when `x_learns` (its gradient runs the
/// first linear's dx too), else the Input.
fn mlp(s: &Spec) -> Mlp {
    let mut g = Graph::default();
    let x_role = if s.x_learns { Role::Param } else { Role::Input };
    let x = g.tensor("x", vec![s.n, 1, 1, s.k], x_role);
    let w = g.tensor("w", vec![s.k, s.hidden], Role::Param);
    let b = g.tensor("b", vec![s.hidden], Role::Param);
    let gamma = g.tensor("gamma", vec![s.hidden], Role::Param);
    let beta = g.tensor("beta", vec![s.hidden], Role::Param);
    let w2 = g.tensor("w2", vec![s.hidden, s.out], Role::Param);
    let b2 = s.bias2.then(|| g.tensor("b2", vec![s.out], Role::Param));
    let h = g.linear("h", x, w, Some(b)).unwrap();
    let norm = g.group_norm("norm", h, gamma, beta, s.groups, 1e-5).unwrap();
    let act = g.activate("act", norm, s.kind).unwrap();
    let y = g.linear("y", act, w2, b2).unwrap();
    let sum = g.sum_per_image("sum", y).unwrap();
    // The loss node keeps its inputs and itself as graph outputs.
    g.elbo("loss", sum, &[], 1).unwrap();
    append_backward(&mut g).unwrap();
    Mlp {
        g,
        sum,
        forward: vec![h, norm, act, y],
    }
}

/// The six configurations of the checks: one and two groups, each activation.
fn small_specs() -> Vec<Spec> {
    let mut specs = Vec::new();
    for groups in [1, 2] {
        for kind in KINDS {
            specs.push(Spec {
                n: 5,
                k: 7,
                hidden: 6,
                out: 3,
                groups,
                kind,
                bias2: groups == 1,
                x_learns: true,
            });
        }
    }
    specs
}

/// Values for every Param and Input: data and weights in [-1, 1), gamma around 1.
fn values_of(g: &Graph, seed: u64) -> Values {
    let mut rng = TestRng::new(seed);
    let mut values = vec![None; g.tensors.len()];
    for (t, info) in g.tensors.iter().enumerate() {
        if matches!(info.role, Role::Param | Role::Input) {
            let v = match info.name.as_str() {
                "gamma" => rng.vec(info.numel(), 0.5, 1.5),
                _ => rng.vec(info.numel(), -1.0, 1.0),
            };
            values[t] = Some(v);
        }
    }
    values
}

fn cpu_run(g: &Graph, values: &Values) -> Values {
    let mut v = values.clone();
    run(g, &mut v, Noise::default()).unwrap();
    v
}

#[test]
fn cpu_backward_matches_finite_differences_of_the_cpu_forward() {
    // Directional derivatives along a random direction per parameter:
    // central differences of the loss (step 1e-3) against Σ grad · dir.
    let h = 1e-3;
    let mut worst = (0.0f64, String::new());
    for (i, spec) in small_specs().iter().enumerate() {
        // The loss (mean over images of Σ y) is summed in f64 from y, kept
        // to the end: the f32 loss would quantise the differences to its ulp.
        let mut m = mlp(spec);
        let y = m.forward[3];
        m.g.outputs.push(y);
        let values = values_of(&m.g, 1 + i as u64);
        let at = cpu_run(&m.g, &values);
        let loss_at = |v: &Values| {
            cpu_run(&m.g, v)[y]
                .as_ref()
                .unwrap()
                .iter()
                .map(|&e| e as f64)
                .sum::<f64>()
                / spec.n as f64
        };
        let mut rng = TestRng::new(100 + i as u64);
        for &(p, d) in &m.g.param_grads {
            let name = format!("{:?} groups={} {}", spec.kind, spec.groups, m.g.tensors[p].name);
            let theta = values[p].clone().unwrap();
            let dir = rng.vec(theta.len(), -1.0, 1.0);
            let analytic: f64 = at[d]
                .as_ref()
                .unwrap()
                .iter()
                .zip(&dir)
                .map(|(&g, &u)| g as f64 * u as f64)
                .sum();
            let moved = |sign: f64| {
                let mut v = values.clone();
                v[p] = Some(
                    theta
                        .iter()
                        .zip(&dir)
                        .map(|(&t, &u)| (t as f64 + sign * h * u as f64) as f32)
                        .collect(),
                );
                loss_at(&v)
            };
            let numeric = (moved(1.0) - moved(-1.0)) / (2.0 * h);
            let err = (numeric - analytic).abs() / analytic.abs().max(numeric.abs()).max(1e-3);
            assert!(
                err <= 1e-2,
                "{name}: backward {analytic:.6e}, finite differences {numeric:.6e}"
            );
            if err > worst.0 {
                worst = (err, name);
            }
        }
    }
    println!(
        "worst relative error of a directional derivative: {:.2e} ({})",
        worst.0, worst.1
    );
}

/// The graph run once on the GPU: every tensor of `read`.
fn gpu_run(
    ctx: &GpuContext,
    g: &Graph,
    values: &Values,
    read: &[TensorId],
    options: BuildOptions,
) -> (GpuGraph, Vec<Vec<f32>>) {
    let gpu = GpuGraph::build_with(ctx, g, 0, None, options).unwrap();
    gpu.write_values(ctx, g, values).unwrap();
    let bad = gpu.invalid_dispatches(ctx);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    gpu.run(ctx, 0).unwrap();
    let got = read.iter().map(|&t| gpu.read(ctx, t).unwrap()).collect();
    (gpu, got)
}

/// The per-image sums of the loss, the forward activations and every parameter gradient.
fn watched(m: &Mlp) -> Vec<TensorId> {
    let mut t = vec![m.sum];
    t.extend(&m.forward);
    t.extend(m.g.param_grads.iter().map(|&(_, d)| d));
    t
}

#[test]
fn gpu_forward_and_backward_match_the_cpu() {
    let ctx = context();
    let mut worst = (0.0f64, String::new());
    for (i, spec) in small_specs().iter().enumerate() {
        let mut m = mlp(spec);
        // Kept to the end of the run, so that they can be read back.
        m.g.outputs.extend(m.forward.clone());
        let values = values_of(&m.g, 1 + i as u64);
        let want = cpu_run(&m.g, &values);
        let read = watched(&m);
        let (_, got) = gpu_run(&ctx, &m.g, &values, &read, BuildOptions::default());
        for (&t, got) in read.iter().zip(&got) {
            let name = format!("{:?} groups={} {}", spec.kind, spec.groups, m.g.tensors[t].name);
            let (d, n) = rel_norm(got, want[t].as_ref().unwrap());
            assert!(d <= 1e-5 * n + 1e-9, "{name}: GPU differs by {d:e} (norm {n:e})");
            if n > 0.0 && d / n > worst.0 {
                worst = (d / n, name);
            }
        }
    }
    println!("worst relative difference GPU vs CPU: {:.2e} ({})", worst.0, worst.1);
}

/// Dispatches per op name of a build.
fn ops(gpu: &GpuGraph) -> BTreeMap<&'static str, usize> {
    let mut count = BTreeMap::new();
    for (_, label) in gpu.labelled_dispatches() {
        *count.entry(label.op).or_default() += 1;
    }
    count
}

#[test]
fn linear_layers_and_activations_split_past_the_binding_limit_as_they_run_whole() {
    // x[40,1,1,16] → linear(16→12, b) → leaky ReLU → linear(12→12) → ELU →
    // linear(12→8, b) → GELU → Σ → loss. At a 1 KiB binding limit every node
    // over 256 floats is cut into slices of rows, the weights bound whole.
    let ctx = context();
    let mut g = Graph::default();
    let x = g.tensor("x", vec![40, 1, 1, 16], Role::Param);
    let mut h = x;
    let layers = [(16, 12, true), (12, 12, false), (12, 8, true)];
    for (i, (&(k, m, bias), kind)) in layers.iter().zip(KINDS).enumerate() {
        let w = g.tensor(format!("w{i}"), vec![k, m], Role::Param);
        let b = bias.then(|| g.tensor(format!("b{i}"), vec![m], Role::Param));
        let y = g.linear(&format!("linear{i}"), h, w, b).unwrap();
        h = g.activate(&format!("act{i}"), y, kind).unwrap();
    }
    let sum = g.sum_per_image("sum", h).unwrap();
    g.elbo("loss", sum, &[], 1).unwrap();
    append_backward(&mut g).unwrap();
    let values = values_of(&g, 3);
    // The loss's per-image terms (the host adds them up).
    let mut read = vec![sum];
    read.extend(g.param_grads.iter().map(|&(_, d)| d));
    let (whole, want) = gpu_run(&ctx, &g, &values, &read, BuildOptions::default());
    let limit = BuildOptions {
        binding_limit: Some(1 << 10),
        ..BuildOptions::default()
    };
    let (split, got) = gpu_run(&ctx, &g, &values, &read, limit);
    let (before, after) = (ops(&whole), ops(&split));
    println!("dispatches per op, whole → split: {before:?} → {after:?}");
    for op in [
        "linear",
        "linear_backward_data",
        "linear_backward_weight",
        "leaky_relu",
        "leaky_relu_backward",
        "elu",
        "elu_backward",
        "gelu",
        "gelu_backward",
    ] {
        assert!(after[op] > before[op], "{op} was not split");
    }
    // Rows are computed alike; dw and db are sums cut into slices.
    let mut worst = 0.0f64;
    for (k, &t) in read.iter().enumerate() {
        let (d, n) = rel_norm(&got[k], &want[k]);
        assert!(
            d <= 1e-6 * n,
            "{}: split differs by {d:e} (norm {n:e})",
            g.tensors[t].name
        );
        worst = worst.max(d / n);
    }
    // And both agree with the CPU.
    let cpu = cpu_run(&g, &values);
    for (k, &t) in read.iter().enumerate() {
        let (d, n) = rel_norm(&got[k], cpu[t].as_ref().unwrap());
        assert!(d <= 1e-5 * n, "{}: differs from the CPU by {d:e}", g.tensors[t].name);
    }
    println!("worst relative difference split vs whole: {worst:.2e}");
}

#[test]
fn f16_storage_rounds_each_mlp_output_once_and_keeps_group_norm_statistics_f32() {
    let ctx = context();
    assert!(
        ctx.has(wgpu::Features::SHADER_F16),
        "{} has no SHADER_F16",
        ctx.adapter.name
    );
    let mut worst = 0.0f64;
    for (i, (groups, kind)) in [(1, KINDS[0]), (2, KINDS[1]), (4, KINDS[2])].into_iter().enumerate() {
        let spec = Spec {
            n: 16,
            k: 24,
            hidden: 64,
            out: 32,
            groups,
            kind,
            bias2: i != 1,
            x_learns: false,
        };
        let mut m = mlp(&spec);
        set_precision(&mut m.g, Precision::F16);
        let stats = m.g.tensors.iter().position(|t| t.name == "norm.stats").unwrap();
        assert_eq!(m.g.tensors[stats].dtype, DType::F32, "group norm statistics");
        for &t in &m.forward {
            assert_eq!(m.g.tensors[t].dtype, DType::F16, "{}", m.g.tensors[t].name);
        }
        // Kept to the end (dtypes already chosen), to feed each node alone.
        m.g.outputs.extend(m.forward.clone());
        m.g.outputs.push(stats);
        let values = values_of(&m.g, 20 + i as u64);
        let mut read = watched(&m);
        read.push(stats);
        let (_, got) = gpu_run(&ctx, &m.g, &values, &read, BuildOptions::default());
        let mut gpu_values = values.clone();
        for (&t, v) in read.iter().zip(&got) {
            gpu_values[t] = Some(v.clone());
        }
        // Each forward node alone on the GPU's own inputs: its f16 outputs
        // equal the CPU's bit for bit but where an f32 value within a few ulps
        // of a rounding midpoint rounds the other way. A lowering rounding
        // twice (the bias stored as f16, then the product added) would differ
        // in a large share of the elements.
        for node in &m.g.nodes[..m.g.forward_len] {
            let f16: Vec<TensorId> = node
                .outputs
                .iter()
                .copied()
                .filter(|&o| m.g.tensors[o].dtype == DType::F16)
                .collect();
            if f16.is_empty() {
                continue;
            }
            let mut alone = m.g.clone();
            alone.nodes = vec![node.clone()];
            alone.outputs = node.outputs.clone();
            let mut cpu: Values = vec![None; values.len()];
            for (t, info) in m.g.tensors.iter().enumerate() {
                if matches!(info.role, Role::Param | Role::Input) || node.inputs.contains(&t) {
                    cpu[t] = gpu_values[t].clone();
                }
            }
            run(&alone, &mut cpu, Noise::default()).unwrap();
            for o in f16 {
                let (got, want) = (gpu_values[o].as_ref().unwrap(), cpu[o].as_ref().unwrap());
                let same = got.iter().zip(want).filter(|(a, b)| a == b).count();
                let name = &m.g.tensors[o].name;
                println!("{kind:?}: {name} {same} of {} elements equal", got.len());
                assert!(
                    same as f64 >= 0.99 * got.len() as f64,
                    "{name}: {same} of {} equal",
                    got.len()
                );
            }
        }
        // The whole run against the f16 CPU run: a rounding that flips
        // moves its share of a sum by 2^-11.
        let want = cpu_run(&m.g, &values);
        for (&t, got) in read.iter().zip(&got) {
            let (d, n) = rel_norm(got, want[t].as_ref().unwrap());
            let name = &m.g.tensors[t].name;
            assert!(
                d <= 1e-3 * n + 1e-9,
                "{kind:?} {name}: f16 GPU differs by {d:e} (norm {n:e})"
            );
            worst = worst.max(d / n);
        }
    }
    println!("worst relative difference f16 GPU vs f16 CPU: {worst:.2e}");
}

#[test]
fn model_flops_and_shape_errors() {
    let spec = Spec {
        x_learns: true,
        ..small_specs().remove(0)
    };
    let m = mlp(&spec);
    // Each linear: 2·N·K·M forward, and as much again for dx and for dw.
    let forward = 2.0 * 5.0 * (7.0 * 6.0 + 6.0 * 3.0);
    assert_eq!(m.g.model_flops(), 3.0 * forward);
    let mut g = Graph::default();
    let x = g.tensor("x", vec![2, 1, 1, 6], Role::Input);
    let w = g.tensor("w", vec![5, 4], Role::Param);
    let b = g.tensor("b", vec![5], Role::Param);
    let c = g.tensor("c", vec![6], Role::Param);
    let is_shape = |r: Result<TensorId, Error>| matches!(r, Err(Error::Shape(_)));
    assert!(is_shape(g.linear("l", x, w, None)), "w must be [6, M]");
    let w = g.tensor("w6", vec![6, 4], Role::Param);
    assert!(is_shape(g.linear("l", x, w, Some(b))), "b must be [4]");
    assert!(
        is_shape(g.group_norm("n", x, c, c, 4, 1e-5)),
        "4 groups do not divide 6 channels"
    );
    assert!(is_shape(g.group_norm("n", x, b, b, 2, 1e-5)), "gamma must be [6]");
    let flat = g.tensor("flat", vec![12], Role::Input);
    assert!(is_shape(g.activate("a", flat, ActivationKind::Elu)), "NHWC only");
    assert!(g.linear("l", x, w, None).is_ok());
}
