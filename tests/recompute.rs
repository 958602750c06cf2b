//! Rematerialization (recomputing blocks) (`graph::recompute`) and memory budgets
//! (`graph::budget`): a recomputed step computes bit-identical gradients on
//! the CPU and GPU executors, recomputing lowers a real preset's planned
//! activations, and a budget is met when it can be and refused when not.

mod common;

use common::mnist_batch;

use vdvae::gpu::GpuContext;
use vdvae::graph::autodiff::{append_backward, append_backward_with, Accumulate};
use vdvae::graph::budget::{fit_step, recompute_all, PlanTarget};
use vdvae::graph::executor::cpu::{run, Noise, Values};
use vdvae::graph::executor::{GpuGraph, TrainConfig};
use vdvae::graph::recompute::{apply, block_segments, candidates, Recompute};
use vdvae::graph::{set_precision, DType, Graph, Op, Precision, Sampling};
use vdvae::model::assemble::{build_model, ModelGraph};
use vdvae::model::init::init_weights;
use vdvae::model::preprocess::MNIST;
use vdvae::model::preset;
use vdvae::model::report::{PLAN_ALIGN, PLAN_CHUNK};

const GIB: usize = 1 << 30;

/// mnist-tiny's training step for 3 images, its input values, and the same
/// step with every block that has internals recomputed (the last one too).
fn tiny_step(accumulate: Accumulate) -> (ModelGraph, Graph, Values) {
    let h = preset("mnist-tiny").unwrap();
    let images = mnist_batch(3);
    let mut m = build_model(&h, images.n, Sampling::Posterior).unwrap();
    append_backward_with(&mut m.graph, accumulate).unwrap();
    let mut values = m.values_from_checkpoint(&init_weights(&h, 7).unwrap(), "init").unwrap();
    m.set_images(&mut values, &images, MNIST).unwrap();
    let all = candidates(&m.graph, &block_segments(&m.graph));
    let encoder = all.iter().filter(|c| c.name.starts_with("encoder.")).count();
    let decoder = all.iter().filter(|c| c.name.starts_with("decoder.")).count();
    assert!(
        encoder >= 2 && decoder >= 4,
        "{encoder} encoder, {decoder} decoder blocks"
    );
    let recomputed = apply(&m.graph, &all.iter().collect::<Vec<&Recompute>>());
    (m, recomputed, values)
}

fn same_bits(name: &str, a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "{name}");
    let differ = a.iter().zip(b).filter(|(x, y)| x.to_bits() != y.to_bits()).count();
    assert_eq!(differ, 0, "{name}: {differ} of {} values differ", a.len());
}

#[test]
fn a_recomputed_step_gives_bit_identical_gradients_on_the_cpu() {
    for accumulate in [Accumulate::AtProducer, Accumulate::Running] {
        let (m, mut recomputed, values) = tiny_step(accumulate);
        let g = &m.graph;
        // The noisy draws are recomputed too: every level's reparameterization
        // runs twice, and the clone draws the noise of the original.
        let reparams = |g: &Graph| {
            g.nodes
                .iter()
                .filter(|n| matches!(n.op, Op::ReparamKlPacked(_)))
                .map(|n| n.outputs[0])
                .collect::<Vec<_>>()
        };
        let (before, after) = (reparams(g), reparams(&recomputed));
        assert_eq!(after.len(), 2 * before.len(), "every level's z is recomputed");
        recomputed.outputs.extend(&after);
        let name = |t: usize| recomputed.tensors[t].name.clone();
        let pairs: Vec<(usize, usize)> = before
            .iter()
            .map(|&z| {
                let again = after.iter().find(|&&c| name(c) == format!("{}.recomputed", name(z)));
                (z, *again.unwrap_or_else(|| panic!("{} is not recomputed", name(z))))
            })
            .collect();
        let seed = 3;
        let noise = Noise::new(seed, 2);
        let mut plain = values.clone();
        run(g, &mut plain, noise).unwrap();
        let mut rerun = values;
        run(&recomputed, &mut rerun, noise).unwrap();
        for (z, again) in pairs {
            same_bits(&name(again), rerun[again].as_ref().unwrap(), rerun[z].as_ref().unwrap());
        }
        same_bits("loss", rerun[m.loss].as_ref().unwrap(), plain[m.loss].as_ref().unwrap());
        for &(p, d) in &g.param_grads {
            same_bits(
                &g.tensors[p].name,
                rerun[d].as_ref().unwrap(),
                plain[d].as_ref().unwrap(),
            );
        }
    }
}

fn context() -> GpuContext {
    GpuContext::from_env().unwrap_or_else(|e| panic!("recompute GPU tests need an adapter: {e}"))
}

#[test]
fn a_recomputed_step_gives_bit_identical_gradients_on_the_gpu() {
    let ctx = context();
    let (m, recomputed, values) = tiny_step(Accumulate::Running);
    let (seed, step) = (5, 4);
    let grads = |g: &Graph| {
        let gpu = GpuGraph::build(&ctx, g, seed, None).unwrap();
        gpu.write_values(&ctx, g, &values).unwrap();
        gpu.run(&ctx, step).unwrap();
        // The ELBO node itself runs in the optimizer's metrics, not here: its NLL input.
        let loss = gpu.read(&ctx, m.nll).unwrap();
        let grads: Vec<Vec<f32>> = g.param_grads.iter().map(|&(_, d)| gpu.read(&ctx, d).unwrap()).collect();
        (loss, grads, gpu.plan.activations)
    };
    let (loss, plain, plain_bytes) = grads(&m.graph);
    let (loss2, rerun, rerun_bytes) = grads(&recomputed);
    same_bits("nll", &loss2, &loss);
    for (k, &(p, _)) in m.graph.param_grads.iter().enumerate() {
        same_bits(&m.graph.tensors[p].name, &rerun[k], &plain[k]);
    }
    // And the GPU step agrees with the CPU one (same tolerance as tests/gpu_executor.rs).
    let mut cpu = values.clone();
    run(&recomputed, &mut cpu, Noise::new(seed, step as u64)).unwrap();
    let want = cpu[m.nll].as_ref().unwrap();
    for (got, want) in loss2.iter().zip(want) {
        assert!((got - want).abs() <= 1e-5 * want.abs(), "NLL {got} vs {want}");
    }
    println!("activations planned: {plain_bytes} bytes, recomputed {rerun_bytes}");
}

#[test]
fn the_budget_total_is_the_one_the_gpu_build_plans_at_either_precision() {
    let ctx = context();
    let h = preset("mnist-tiny").unwrap();
    let m = build_model(&h, 4, Sampling::Posterior).unwrap();
    let target = |g: &Graph| PlanTarget::for_adapter(&ctx, g, true);
    for precision in [Precision::F32, Precision::F16] {
        let mut plain = m.graph.clone();
        append_backward(&mut plain).unwrap();
        set_precision(&mut plain, precision);
        let full = target(&plain).plan(&plain).total();
        // Between the smallest peak and the full plan: some blocks recomputed.
        let smallest = fit_step(&m.graph, precision, full, &target).unwrap().smallest;
        let s = fit_step(&m.graph, precision, (smallest + full) / 2, &target).unwrap();
        assert!(!s.recomputed.is_empty() && s.recomputed.len() < s.candidates);
        // A recomputed activation is stored as its original is.
        let mut f16_clones = 0;
        for t in &s.graph.tensors {
            if let Some(original) = t.name.strip_suffix(".recomputed") {
                let o = s.graph.tensors.iter().find(|o| o.name == original).unwrap();
                assert_eq!(t.dtype, o.dtype, "{}", t.name);
                f16_clones += (t.dtype == DType::F16) as usize;
            }
        }
        assert_eq!(
            f16_clones > 0,
            precision == Precision::F16,
            "{precision}: {f16_clones} f16 clones"
        );
        let train = TrainConfig {
            adamw: Default::default(),
            resume: Default::default(),
        };
        let built = GpuGraph::build(&ctx, &s.graph, 0, Some(train)).unwrap();
        assert_eq!(built.plan.total(), s.plan.total(), "{precision}");
        assert_eq!(built.plan.workspace, s.plan.workspace);
        assert_eq!(built.plan.flipped_weights, s.plan.flipped_weights);
    }
}

/// cifar10's training step at its official batch (16), planned without an adapter.
fn cifar10(accumulate: Accumulate) -> (Graph, PlanTarget) {
    let h = preset("cifar10").unwrap();
    let mut m = build_model(&h, h.n_batch, Sampling::Posterior).unwrap();
    append_backward_with(&mut m.graph, accumulate).unwrap();
    let target = PlanTarget::without_adapter(&m.graph, PLAN_ALIGN, PLAN_CHUNK, true);
    (m.graph, target)
}

#[test]
fn checkpointing_lowers_the_planned_activations_of_cifar10() {
    for accumulate in [Accumulate::AtProducer, Accumulate::Running] {
        let (g, target) = cifar10(accumulate);
        let plain = target.plan(&g);
        let all = recompute_all(&g, &target);
        let gib = |b: usize| b as f64 / GIB as f64;
        println!(
            "{accumulate:?}: activations {:.2} GiB, every block recomputed {:.2} GiB ({} blocks, {:.1}% more FLOPs)",
            gib(plain.activations),
            gib(all.plan.activations),
            all.recomputed.len(),
            100.0 * all.recompute_flops / g.model_flops()
        );
        assert!(all.recomputed.len() > 60, "{} blocks", all.recomputed.len());
        assert!(all.plan.activations < plain.activations * 6 / 10);
        assert!(all.recompute_flops < 0.35 * g.model_flops());
        // The persistent parts do not change.
        assert_eq!(
            (all.plan.weights, all.plan.workspace, all.plan.flipped_weights),
            (plain.weights, plain.workspace, plain.flipped_weights)
        );
    }
    // Running gradient sums let recomputing go at least as far (the conv
    // parts of a gradient already fold into one dx chain at the producer).
    let (a, b) = (cifar10(Accumulate::AtProducer), cifar10(Accumulate::Running));
    let (at_producer, running) = (
        recompute_all(&a.0, &a.1).plan.total(),
        recompute_all(&b.0, &b.1).plan.total(),
    );
    println!("every block recomputed: {at_producer} bytes at the producer, {running} running");
    assert!(running <= at_producer, "{running} > {at_producer}");
}

#[test]
fn a_budget_is_met_when_it_can_be_and_refused_when_not() {
    let h = preset("cifar10").unwrap();
    let m = build_model(&h, h.n_batch, Sampling::Posterior).unwrap();
    let target = |g: &Graph| PlanTarget::without_adapter(g, PLAN_ALIGN, PLAN_CHUNK, true);
    let flops = {
        let mut g = m.graph.clone();
        append_backward(&mut g).unwrap();
        g.model_flops()
    };

    // A budget the step already meets changes nothing.
    let roomy = fit_step(&m.graph, Precision::F32, 16 * GIB, &target).unwrap();
    assert!(roomy.recomputed.is_empty());
    assert_eq!(roomy.accumulate, Accumulate::AtProducer);
    let mut plain = m.graph.clone();
    append_backward(&mut plain).unwrap();
    assert_eq!(roomy.graph.nodes, plain.nodes);

    let s = fit_step(&m.graph, Precision::F32, 4 * GIB, &target).unwrap();
    assert!(s.plan.total() <= 4 * GIB, "{}", s.plan.total());
    assert_eq!(target(&s.graph).plan(&s.graph).total(), s.plan.total());
    assert!(!s.recomputed.is_empty());
    assert!(s.recompute_flops > 0.0 && s.recompute_flops < 0.35 * flops);
    // The recompute FLOPs are the clones' model FLOPs.
    assert!((s.graph.model_flops() - flops - s.recompute_flops).abs() < 1e-6 * flops);
    assert!(s.smallest < s.plan.total());

    let e = fit_step(&m.graph, Precision::F32, GIB, &target)
        .unwrap_err()
        .to_string();
    assert!(e.contains("out of reach") && e.contains("smallest planned peak"), "{e}");
    let smallest = format!("{:.2} GiB", s.smallest as f64 / GIB as f64);
    assert!(e.contains(&smallest), "{e} (smallest {smallest})");
}

fn vdvae(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_vdvae"))
        .args(args)
        .output()
        .unwrap()
}

/// The number after `label` in `vdvae plan`'s output (e.g. its GiB in parentheses).
fn figure(stdout: &str, label: &str, after: &str) -> f64 {
    stdout
        .lines()
        .find(|l| l.starts_with(label))
        .and_then(|l| l.split(after).nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.trim_end_matches('%').parse().ok())
        .unwrap_or_else(|| panic!("no {label:?} in:\n{stdout}"))
}

#[test]
fn plan_with_a_memory_budget_fits_it_and_says_what_it_costs() {
    let out = vdvae(&["plan", "--preset", "cifar10", "--memory-budget", "4GiB"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(figure(&stdout, "planned peak memory", "(") <= 4.0, "{stdout}");
    let blocks = figure(&stdout, "recomputed blocks", ":");
    assert!(blocks > 0.0, "{stdout}");
    let share = figure(&stdout, "recompute FLOPs", "(");
    assert!(share > 0.0 && share <= 35.0, "{stdout}");
    assert!(figure(&stdout, "smallest reachable", ":") < 4.0, "{stdout}");

    let out = vdvae(&["plan", "--preset", "cifar10", "--memory-budget", "six GiB"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("invalid size") && stderr.contains("6GiB, 512MiB"),
        "{stderr}"
    );

    let out = vdvae(&["plan", "--preset", "cifar10", "--memory-budget", "1GiB"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("out of reach") && stderr.contains("smallest planned peak"),
        "{stderr}"
    );
}

#[test]
fn training_under_a_memory_budget_recomputes_blocks_and_learns_the_same() {
    let base = std::env::temp_dir().join(format!("vdvae-budget-{}", std::process::id()));
    let run = |name: &str, budget: Option<&str>| {
        let dir = base.join(name).to_string_lossy().into_owned();
        let _ = std::fs::remove_dir_all(&dir);
        let mut args = vec![
            "train",
            "--preset",
            "mnist-tiny",
            "--batch",
            "8",
            "--steps",
            "4",
            "--out",
            &dir,
        ];
        if let Some(b) = budget {
            args.extend(["--memory-budget", b]);
        }
        let out = vdvae(&args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        let elbos: Vec<f64> = std::fs::read_to_string(format!("{dir}/log.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["elbo"]
                    .as_f64()
                    .unwrap()
            })
            .collect();
        (elbos, stderr)
    };
    // mnist-tiny at batch 8 plans about 18 MiB as built and 12 MiB with every block recomputed.
    let (budgeted, stderr) = run("budget", Some("15MiB"));
    assert!(stderr.contains("blocks recomputed"), "{stderr}");
    let (plain, _) = run("plain", None);
    // The first step's forward pass is the same; later steps differ only by
    // gradients summed in another order.
    assert_eq!(budgeted[0], plain[0]);
    for (a, b) in budgeted.iter().zip(&plain) {
        assert!((a - b).abs() <= 1e-4 * b.abs(), "ELBO {a} vs {b}");
    }
    let _ = std::fs::remove_dir_all(&base);
}
