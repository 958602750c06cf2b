//! `vdvae train` end to end on the bundled MNIST subset: the ELBO falls,
//! checkpoints load, and a resumed run continues the step count; log lines
//! carry their time, pictures and held-out evals of the EMA weights are
//! written; and the training loop's resident memory stays flat from step to step.

use std::process::Command;

use vdvae::data::{bundled_mnist, ImageSet};
use vdvae::gpu::GpuContext;
use vdvae::graph::autodiff::append_backward;
use vdvae::graph::executor::{GpuGraph, TrainConfig};
use vdvae::graph::Sampling;
use vdvae::kernels::optimizer::{AdamW, StepState};
use vdvae::model::assemble::build_model;
use vdvae::model::evaluate::fit_images;
use vdvae::model::init::init_weights;
use vdvae::model::preprocess::MNIST;
use vdvae::model::preset;
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

fn tmp_dir(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("vdvae-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.to_string_lossy().into_owned()
}

fn bundled_data() -> String {
    format!("{}/assets/mnist-1k-images-idx3-ubyte.gz", env!("CARGO_MANIFEST_DIR"))
}

/// Width and height of a PNG, decoded in full.
fn png_size(path: &str) -> (u32, u32) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut reader = png::Decoder::new(std::io::BufReader::new(file)).read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    (info.width, info.height)
}

/// Checks the pictures of a run on `size`x`size` images: 16 samples as a 4x4
/// grid, 8 images above their reconstructions, 2-pixel gutters.
fn assert_pictures(dir: &str, size: u32) {
    let cell = size + 2;
    assert_eq!(png_size(&format!("{dir}/samples.png")), (4 * cell + 2, 4 * cell + 2));
    assert_eq!(
        png_size(&format!("{dir}/reconstructions.png")),
        (8 * cell + 2, 2 * cell + 2)
    );
}

/// Fields of an RFC 3339 UTC time with milliseconds (`2026-11-29T16:04:05.123Z`).
fn parse_time(t: &str) -> Option<[u32; 7]> {
    let b = t.as_bytes();
    let seps = [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (23, b'Z'),
    ];
    if b.len() != 24 || seps.iter().any(|&(i, c)| b[i] != c) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| t[r].parse::<u32>().ok();
    let f = [
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
        num(20..23)?,
    ];
    let ok = (1..=12).contains(&f[1]) && (1..=31).contains(&f[2]) && f[3] < 24 && f[4] < 60 && f[5] < 60;
    ok.then_some(f)
}

#[test]
fn a_run_logs_times_and_draws_pictures_and_held_out_evals_of_its_ema_weights() {
    let dir = tmp_dir("look");
    let data = bundled_data();
    let out = vdvae(&[
        "train",
        "--preset",
        "mnist-tiny",
        "--batch",
        "4",
        "--steps",
        "3",
        "--image-every",
        "2",
        "--eval-data",
        &data,
        "--eval-format",
        "mnist",
        "--eval-every",
        "2",
        "--eval-limit",
        "8",
        "--out",
        &dir,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("step 2: held-out ELBO"), "{stderr}");
    // stderr is a pipe, not a terminal: the bar draws nothing, so plain lines
    // say how far the run is (the first at once, the last always).
    for line in ["train step 1/3 [", "train step 3/3 ["] {
        assert!(
            stderr.lines().any(|l| l.starts_with(line) && l.contains("elbo")),
            "{line}: {stderr}"
        );
    }
    assert_pictures(&dir, 32);

    let log = log_lines(&dir);
    let (evals, steps): (Vec<_>, Vec<_>) = log.iter().partition(|v| v.get("eval").is_some());
    assert_eq!(steps.len(), 3, "one line per step");
    let mut previous = None;
    for s in &steps {
        let time = s["time"].as_str().unwrap();
        let fields = parse_time(time).unwrap_or_else(|| panic!("time {time:?}"));
        assert!(previous <= Some(fields), "times go forward: {log:?}");
        previous = Some(fields);
        assert!(s["step_seconds"].as_f64().unwrap() > 0.0, "{s}");
        assert!(s["elbo"].as_f64().is_some(), "the step's keys stay: {s}");
    }
    let levels = preset("mnist-tiny").unwrap().latent_levels().unwrap();
    let eval_steps: Vec<u64> = evals.iter().map(|v| v["step"].as_u64().unwrap()).collect();
    assert_eq!(eval_steps, [2, 3], "after 2 steps and at the end");
    for e in &evals {
        assert!(parse_time(e["time"].as_str().unwrap()).is_some(), "{e}");
        assert_eq!(e["eval"]["images"].as_u64(), Some(8), "--eval-limit 8");
        assert_eq!(e["eval"]["kl_per_level"].as_array().unwrap().len(), levels);
    }

    // The last eval is `vdvae eval` of the final EMA checkpoint.
    let out = vdvae(&[
        "eval",
        "--preset",
        "mnist-tiny",
        "--checkpoint",
        &format!("{dir}/model-ema.safetensors"),
        "--data",
        &data,
        "--format",
        "mnist",
        "--limit",
        "8",
        "--batch",
        "4",
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let last = &evals[1]["eval"];
    for key in ["elbo_nats_per_dim", "elbo_nats_per_image", "distortion", "rate"] {
        let (logged, evaluated) = (last[key].as_f64().unwrap(), r[key].as_f64().unwrap());
        assert!(
            (logged - evaluated).abs() <= 1e-5 * evaluated.abs(),
            "{key}: logged {logged}, vdvae eval {evaluated}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_ladder_vae_run_draws_both_pictures() {
    let dir = tmp_dir("ladder-look");
    let out = vdvae(&[
        "train",
        "--preset",
        "ladder-mnist",
        "--batch",
        "8",
        "--steps",
        "2",
        "--image-every",
        "1",
        "--out",
        &dir,
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_pictures(&dir, 28);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_eval_file_fails_before_any_step() {
    let dir = tmp_dir("bad-eval");
    let corrupt = format!("{dir}-corrupt.gz");
    std::fs::write(&corrupt, b"\x1f\x8b not gzip at all").unwrap();
    for file in ["/no/such/held-out.gz", corrupt.as_str()] {
        let out = vdvae(&[
            "train",
            "--preset",
            "mnist-tiny",
            "--batch",
            "4",
            "--steps",
            "2",
            "--eval-data",
            file,
            "--eval-format",
            "mnist",
            "--out",
            &dir,
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains(file), "{stderr}");
        assert!(
            !std::path::Path::new(&format!("{dir}/log.jsonl")).exists(),
            "no step ran: {stderr}"
        );
    }
    let _ = std::fs::remove_file(&corrupt);
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

#[test]
fn a_run_whose_updates_are_all_skipped_stops_and_says_why() {
    let dir = tmp_dir("skips");
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/official-vdvae");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{fixtures}/tiny.json")).unwrap()).unwrap();
    // Far below any gradient norm: every update is skipped.
    config["skip_threshold"] = serde_json::json!(1e-9);
    std::fs::create_dir_all(&dir).unwrap();
    let config_path = format!("{dir}/skip.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let out_dir = format!("{dir}/run");
    let data = format!("{fixtures}/digits64.bin");
    let args = [
        "train",
        "--config",
        &config_path,
        "--data",
        &data,
        "--format",
        "cifar10",
        "--batch",
        "4",
        "--steps",
        "40",
        "--max-skips-in-a-row",
        "12",
        "--image-every",
        "0",
        "--out",
        &out_dir,
    ];
    let out = vdvae(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a run that learns nothing fails: {stderr}");
    assert!(stderr.contains("12 updates were all skipped"), "{stderr}");
    assert!(
        stderr.contains("skip_threshold 0.000000001"),
        "names the threshold: {stderr}"
    );
    assert!(
        stderr.contains("10 updates in a row were skipped"),
        "warned first: {stderr}"
    );
    let steps = log_lines(&out_dir).len();
    assert!(
        (12..40).contains(&steps),
        "stopped after the 12th skip, logged {steps} steps"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_new_run_into_a_directory_holding_a_run_is_refused_unless_overwrite() {
    let dir = tmp_dir("second-run");
    std::fs::create_dir_all(&dir).unwrap();
    let (log, model) = (format!("{dir}/log.jsonl"), format!("{dir}/model.safetensors"));
    std::fs::write(&log, "{\"step\":0}\n").unwrap();
    std::fs::write(&model, "weights").unwrap();
    let common = ["train", "--preset", "mnist-tiny", "--batch", "8", "--steps", "1"];
    let quiet = ["--image-every", "0", "--out", dir.as_str()];
    let out = vdvae(&[&common[..], &quiet].concat());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("holds a run") && stderr.contains("--resume") && stderr.contains("--overwrite"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "{\"step\":0}\n",
        "the log is kept"
    );
    assert_eq!(std::fs::read(&model).unwrap(), b"weights", "the checkpoint is kept");

    let out = vdvae(&[&common[..], &quiet, &["--overwrite"]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(log_lines(&dir).len(), 1, "a new log of the new run's one step");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_second_run_on_a_held_directory_fails_at_once_naming_the_holder() {
    use std::io::Write;
    let dir = tmp_dir("held");
    std::fs::create_dir_all(&dir).unwrap();
    // This test process stands in for a first run: it holds the lock and its PID is "424242".
    let mut lock = std::fs::File::create(format!("{dir}/train.lock")).unwrap();
    lock.try_lock().unwrap();
    lock.write_all(b"424242\n").unwrap();
    let out = vdvae(&[
        "train",
        "--preset",
        "mnist-tiny",
        "--batch",
        "8",
        "--steps",
        "1",
        "--out",
        &dir,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("in use by another training run") && stderr.contains("PID 424242"),
        "{stderr}"
    );
    assert!(
        !std::path::Path::new(&format!("{dir}/log.jsonl")).exists(),
        "nothing written"
    );
    drop(lock);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The names of the temporary files in `dir`.
fn tmp_files(dir: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

#[test]
fn a_save_that_fails_on_a_full_disk_leaves_no_temporary_files() {
    let dir = tmp_dir("full-disk");
    let common = [
        "--preset",
        "mnist-tiny",
        "--batch",
        "8",
        "--steps",
        "1",
        "--image-every",
        "0",
    ];
    let run = |extra: &[&str]| vdvae(&[&["train"][..], &common, &["--out", dir.as_str()], extra].concat());
    let out = run(&[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let model_bytes = std::fs::metadata(format!("{dir}/model.safetensors")).unwrap().len();
    // Leftovers of a run killed while saving, by this build and by older ones.
    std::fs::write(format!("{dir}/opt.safetensors.999999.tmp"), "stale").unwrap();
    std::fs::write(format!("{dir}/model.safetensors.tmp"), "stale").unwrap();

    // A file size limit between the weights' size and the optimizer state's
    // (twice as large) stands in for a disk that fills while the checkpoint
    // is written: the weights and EMA files are staged, opt.safetensors fails.
    let limit_kib = (model_bytes * 3 / 2).div_ceil(1024);
    let script = format!("ulimit -f {limit_kib}; trap '' XFSZ; exec \"$@\"");
    let out = Command::new("bash")
        .args(["-c", &script, "bash", env!("CARGO_BIN_EXE_vdvae"), "train"])
        .args(common)
        .args(["--out", &dir, "--resume"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("opt.safetensors"), "{stderr}");
    assert_eq!(tmp_files(&dir), Vec::<String>::new(), "{stderr}");

    // The next resume starts from the last whole checkpoint.
    let out = run(&["--resume"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let steps: Vec<u64> = log_lines(&dir).iter().map(|v| v["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [0, 1]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn resume_refuses_a_missing_directory_and_notes_another_seed() {
    let dir = tmp_dir("resume-missing");
    let common = [
        "train",
        "--preset",
        "mnist-tiny",
        "--batch",
        "8",
        "--steps",
        "1",
        "--image-every",
        "0",
    ];
    let out = vdvae(&[&common[..], &["--out", &dir, "--resume"]].concat());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("does not exist") && stderr.contains("drop --resume"),
        "{stderr}"
    );
    assert!(!std::path::Path::new(&dir).exists(), "no empty run directory is made");

    let out = vdvae(&[&common[..], &["--out", &dir, "--seed", "5"]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for (seed, noted) in [("5", false), ("6", true)] {
        let out = vdvae(&[&common[..], &["--out", &dir, "--resume", "--seed", seed]].concat());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let note = "note: --seed 6 replaces the run's seed 5";
        assert_eq!(stderr.contains(note), noted, "--seed {seed}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
