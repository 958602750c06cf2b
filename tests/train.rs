//! `vdvae train` end to end on the bundled MNIST subset: the ELBO falls,
//! checkpoints load, and a resumed run continues the step count; and the
//! training loop's resident memory stays flat from step to step.

use std::process::Command;

use vdvae::data::{bundled_mnist, ImageSet};
use vdvae::gpu::GpuContext;
use vdvae::graph::autodiff::append_backward;
use vdvae::graph::gpu::{GpuGraph, TrainConfig};
use vdvae::graph::Sampling;
use vdvae::model::evaluate::fit_images;
use vdvae::model::init::init_weights;
use vdvae::model::preprocess::MNIST;
use vdvae::model::preset;
use vdvae::model::vdvae::build_model;
use vdvae::ops::optimizer::{AdamW, StepState};
use vdvae::train::stage_batch;

fn vdvae(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vdvae")).args(args).output().unwrap()
}

fn log_lines(dir: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(format!("{dir}/log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn training_lowers_the_elbo_and_resumes_where_it_stopped() {
    let dir = std::env::temp_dir().join(format!("vdvae-train-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dir = dir.to_string_lossy().into_owned();
    let common = ["--preset", "mnist-tiny", "--batch", "8", "--out", dir.as_str()];
    let out = vdvae(&[&["train", "--steps", "40", "--save-every", "20"][..], &common].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let log = log_lines(&dir);
    assert_eq!(log.len(), 40, "one log line per step");
    let mean = |r: &[serde_json::Value]| r.iter().map(|v| v["elbo"].as_f64().unwrap()).sum::<f64>() / r.len() as f64;
    let (first, last) = (mean(&log[..5]), mean(&log[35..]));
    assert!(last < first, "ELBO should fall: first steps {first}, last steps {last}");

    let out = vdvae(&[&["train", "--steps", "3", "--resume"][..], &common].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let steps: Vec<u64> = log_lines(&dir).iter().map(|v| v["step"].as_u64().unwrap()).collect();
    assert_eq!(&steps[40..], &[40, 41, 42], "a resumed run continues the step count");

    // The checkpoint is an official-layout state_dict that eval reads.
    let weights = vdvae::checkpoint::load(&format!("{dir}/model.safetensors")).unwrap();
    assert_eq!(weights["encoder.in_conv.weight"].shape, vec![16, 1, 3, 3]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// This process's resident memory in KiB (VmRSS of /proc/self/status).
fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap();
    line.trim().trim_end_matches("kB").trim().parse().unwrap()
}

/// The training loop (stage a batch, one submit, metrics one step late) must
/// not grow the process per step. On lavapipe (Mesa 22.3) it did: kernels
/// took their params from a uniform buffer, from which lavapipe JIT-compiled
/// and kept a new shader at every dispatch of some pipelines, 1.2 MB per step
/// here (2 shaders), 5.6 MB at the Ladder VAE's batch of 256, until a long run
/// was OOM-killed. The steps after a warm-up must stay within a bound far
/// above the noise (about 0 here) and far under that leak's 36 MB.
/// In-process: the other tests of this file run `vdvae` as child processes,
/// whose memory is not this process's.
#[cfg(target_os = "linux")]
#[test]
fn training_steps_keep_resident_memory_flat() {
    const BATCH: usize = 8;
    const WARMUP: usize = 8;
    const STEPS: usize = 30;
    const BOUND_KIB: u64 = 12 * 1024;
    let h = preset("mnist-tiny").unwrap();
    let images = fit_images(&h, bundled_mnist()).unwrap();
    let ctx = GpuContext::from_env().expect("an adapter (install mesa-vulkan-drivers)");
    let mut m = build_model(&h, BATCH, Sampling::Posterior).unwrap();
    append_backward(&mut m.graph).unwrap();
    let cfg = TrainConfig {
        adamw: AdamW::default(),
        resume: StepState::default(),
    };
    let mut gpu = GpuGraph::build(&ctx, &m.graph, h.seed, Some(cfg)).unwrap();
    let values = m
        .values_from_checkpoint(&init_weights(&h, h.seed).unwrap(), "init")
        .unwrap();
    gpu.write_values(&ctx, &m.graph, &values).unwrap();
    gpu.reset_ema(&ctx).unwrap();
    let len = images.image_len();
    let mut run = |steps: std::ops::Range<usize>| {
        for k in steps {
            let start = k * BATCH % (images.n - BATCH);
            let batch = ImageSet {
                n: BATCH,
                pixels: images.pixels[start * len..(start + BATCH) * len].to_vec(),
                ..images
            };
            stage_batch(&ctx, &mut gpu, &m, &batch, MNIST).unwrap();
            gpu.train_step(&ctx).unwrap();
        }
        gpu.finish(&ctx).unwrap();
        resident_kib()
    };
    let warm = run(0..WARMUP);
    let end = run(WARMUP..WARMUP + STEPS);
    let growth = end.saturating_sub(warm);
    eprintln!("resident memory: {warm} KiB after {WARMUP} steps, {end} KiB after {STEPS} more");
    assert!(
        growth <= BOUND_KIB,
        "{STEPS} training steps grew resident memory by {growth} KiB ({} KiB per step), over the {BOUND_KIB} KiB bound",
        growth / STEPS as u64
    );
}
