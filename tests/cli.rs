//! The command line end to end: plan, eval and grad on the official fixture,
//! and clear errors for bad input.

use std::process::{Command, Output};

fn fixture(file: &str) -> String {
    format!("{}/tests/fixtures/official-vdvae/{file}", env!("CARGO_MANIFEST_DIR"))
}

fn vdvae(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vdvae")).args(args).output().unwrap()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn tmp(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("vdvae-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name).to_string_lossy().into_owned()
}

#[test]
fn plan_fits_cifar10_batch_16_in_8_gib() {
    let out = vdvae(&["plan", "--preset", "cifar10", "--batch", "16"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let gib: f64 = stdout
        .lines()
        .find(|l| l.starts_with("planned peak memory"))
        .and_then(|l| l.split('(').nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no peak memory in:\n{stdout}"));
    assert!(gib <= 8.0, "cifar10 batch 16 plans {gib} GiB:\n{stdout}");
    assert!(stdout.contains("latent layers:          43"), "{stdout}");
}

#[test]
fn plan_at_f16_halves_the_kept_activations() {
    let activations = |precision: &str| -> f64 {
        let out = vdvae(&["plan", "--preset", "cifar10", "--batch", "16", "--precision", precision]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stderr}");
        assert!(
            stdout.contains(&format!("activations stored as:  {precision}")),
            "{stdout}"
        );
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with("activations ") && l.ends_with("MiB"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no activations line in:\n{stdout}"))
    };
    let (f32_mib, f16_mib) = (activations("f32"), activations("f16"));
    assert!(f16_mib < 0.65 * f32_mib, "f16 {f16_mib} MiB vs f32 {f32_mib} MiB");
}

fn fixture_args(cmd: &str) -> Vec<String> {
    [
        cmd,
        "--config",
        &fixture("tiny.json"),
        "--checkpoint",
        &fixture("tiny.safetensors"),
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(
        [
            "--data",
            &fixture("digits64.bin"),
            "--format",
            "cifar10",
            "--posterior-mean",
        ]
        .iter()
        .map(|s| s.to_string()),
    )
    .collect()
}

#[test]
fn eval_at_f16_stays_within_1e_3_of_the_official_elbo() {
    let mut args = fixture_args("eval");
    args.extend(["--json", "--precision", "f16"].map(String::from));
    let out = vdvae(&args.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let elbo = v["elbo_nats_per_dim"].as_f64().unwrap();
    assert!((elbo - 5.771368026733398).abs() / 5.771368026733398 <= 1e-3, "{elbo}");
}

#[test]
fn eval_json_matches_the_official_posterior_mean_elbo() {
    let mut args = fixture_args("eval");
    args.extend(["--json", "--batch", "32"].map(String::from));
    let out = vdvae(&args.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let elbo = v["elbo_nats_per_dim"].as_f64().unwrap();
    assert!((elbo - 5.771368026733398).abs() / 5.771368026733398 <= 1e-4, "{elbo}");
    assert!((v["bits_per_dim"].as_f64().unwrap() - elbo / std::f64::consts::LN_2).abs() < 1e-9);
    assert!((v["distortion"].as_f64().unwrap() - 5.76950740814209).abs() < 1e-3);
    assert_eq!(v["kl_per_level"].as_array().unwrap().len(), 9);
    assert!(v["rate"].as_f64().unwrap() > 0.0);
}

#[test]
fn grad_writes_the_official_gradients() {
    let out_path = tmp("grad.safetensors");
    let mut args = fixture_args("grad");
    args.extend(["--out".to_string(), out_path.clone()]);
    let out = vdvae(&args.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    assert!(out.status.success(), "{}", text(&out).1);
    let ours = vdvae::checkpoint::load(&out_path).unwrap();
    let theirs = vdvae::checkpoint::load(&fixture("grad-posterior-mean.safetensors")).unwrap();
    assert_eq!(ours.len(), theirs.len());
    for (name, t) in &theirs {
        let g = &ours[name];
        assert_eq!(g.shape, t.shape, "{name}");
        let d: f64 = g
            .data
            .iter()
            .zip(&t.data)
            .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        let n: f64 = t.data.iter().map(|&b| (b as f64).powi(2)).sum::<f64>().sqrt();
        assert!(
            if n == 0.0 { d <= 1e-7 } else { d / n <= 1e-3 },
            "{name}: {d:e} vs norm {n:e}"
        );
    }
}

#[test]
fn bad_input_gets_a_clear_error() {
    let mut args = fixture_args("eval");
    args[6] = "/no/such/images.bin".into();
    let out = vdvae(&args.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    assert!(!out.status.success());
    assert!(text(&out).1.contains("/no/such/images.bin"), "{}", text(&out).1);

    let corrupt = tmp("corrupt.safetensors");
    std::fs::write(&corrupt, b"not a checkpoint at all").unwrap();
    let mut args = fixture_args("eval");
    args[4] = corrupt;
    let out = vdvae(&args.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("not a valid safetensors file"),
        "{}",
        text(&out).1
    );

    // Weights of another config: every mismatch is named.
    let out = vdvae(&[
        "eval",
        "--preset",
        "mnist-tiny",
        "--checkpoint",
        &fixture("tiny.safetensors"),
        "--data",
        &fixture("digits64.bin"),
        "--format",
        "cifar10",
    ]);
    assert!(!out.status.success());
    let stderr = text(&out).1;
    assert!(
        stderr.contains("channel") || stderr.contains("does not match"),
        "{stderr}"
    );

    // --iw with --posterior-mean, and --limit 0, are refused before any work.
    for extra in [&["--iw", "4", "--posterior-mean"][..], &["--limit", "0"][..]] {
        let mut args = fixture_args("eval");
        args.retain(|a| a != "--posterior-mean");
        args.extend(extra.iter().map(|s| s.to_string()));
        let out = vdvae(&args.iter().map(|s| s.as_str()).collect::<Vec<_>>());
        assert!(!out.status.success());
        let stderr = text(&out).1;
        assert!(stderr.contains(extra[0]), "{extra:?}: {stderr}");
    }
}

#[test]
fn profile_times_every_kernel_of_a_step() {
    let out = vdvae(&["profile", "--preset", "mnist-tiny", "--batch", "4", "--steps", "1"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("conv2d") && stdout.contains("adamw_update_ema"),
        "{stdout}"
    );
    let total = stdout.lines().find(|l| l.ends_with(" total")).expect("a total line");
    let dispatches: usize = total.split_whitespace().next().unwrap().parse().unwrap();
    assert!(dispatches > 100, "{total}");
    assert!(stdout.contains("MFU"), "{stdout}");
}

#[test]
fn profile_json_and_trace() {
    let trace = tmp("t.json");
    let out = vdvae(&[
        "profile",
        "--preset",
        "mnist-tiny",
        "--batch",
        "2",
        "--json",
        "--trace",
        &trace,
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let dispatches = report["step"]["dispatches"].as_u64().unwrap();
    let per_kernel: u64 = report["kernels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["dispatches"].as_u64().unwrap())
        .sum();
    assert_eq!(per_kernel, dispatches);
    assert!(report["step"]["model_flops"].as_f64().unwrap() > 0.0);
    assert!(report["step"]["mfu"].as_f64().unwrap() > 0.0);
    let trace: serde_json::Value = serde_json::from_slice(&std::fs::read(&trace).unwrap()).unwrap();
    let events: Vec<&serde_json::Value> = trace["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ph"] == "X")
        .collect();
    assert_eq!(events.len() as u64, dispatches);
    assert!(events
        .iter()
        .all(|e| e["args"]["node"].as_str().is_some_and(|n| !n.is_empty())));
}

#[test]
fn sample_writes_a_png_grid() {
    let weights = tmp("init.safetensors");
    let h = vdvae::model::preset("mnist-tiny").unwrap();
    vdvae::checkpoint::save(&weights, &vdvae::model::init::init_weights(&h, 2).unwrap(), None).unwrap();
    let png = tmp("samples.png");
    let out = vdvae(&[
        "sample",
        "--preset",
        "mnist-tiny",
        "--checkpoint",
        &weights,
        "--n",
        "5",
        "--out",
        &png,
    ]);
    assert!(out.status.success(), "{}", text(&out).1);
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
    // 3 columns x 2 rows of 32x32 images with 2-pixel gutters.
    let (w, h) = (
        u32::from_be_bytes(bytes[16..20].try_into().unwrap()),
        u32::from_be_bytes(bytes[20..24].try_into().unwrap()),
    );
    assert_eq!((w, h), (3 * 34 + 2, 2 * 34 + 2));
    let out = vdvae(&[
        "sample",
        "--preset",
        "mnist-tiny",
        "--checkpoint",
        &weights,
        "--temperature",
        "-1",
        "--out",
        &png,
    ]);
    assert!(!out.status.success());
    assert!(text(&out).1.contains("temperature"), "{}", text(&out).1);
}

#[test]
fn a_ladder_vae_trains_and_reports_its_iw_nll_in_json() {
    let run = tmp("ladder-run");
    let data = format!("{}/assets/mnist-1k-images-idx3-ubyte.gz", env!("CARGO_MANIFEST_DIR"));
    let out = vdvae(&[
        "train",
        "--preset",
        "ladder-mnist",
        "--steps",
        "4",
        "--batch",
        "16",
        "--out",
        &run,
        "--save-every",
        "0",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("nats/image"), "{stdout}");
    let log = std::fs::read_to_string(format!("{run}/log.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    let betas = first["beta_per_level"]
        .as_array()
        .expect("warm-up logs the β of each level");
    assert_eq!(betas.len(), 5);
    assert_eq!(betas[0].as_f64(), Some(0.0), "the warm-up starts at β0 = 0");
    let checkpoint = format!("{run}/model-ema.safetensors");
    let out = vdvae(&[
        "eval",
        "--preset",
        "ladder-mnist",
        "--checkpoint",
        &checkpoint,
        "--data",
        &data,
        "--format",
        "mnist",
        "--iw",
        "4",
        "--iw-rows",
        "256",
        "--batch",
        "100",
        "--limit",
        "300",
        "--json",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let r: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(r["images"].as_u64(), Some(300), "--limit 300");
    assert_eq!(r["iw_k"].as_u64(), Some(4));
    let (iw, elbo) = (
        r["iw_nll_nats_per_image"].as_f64().unwrap(),
        r["elbo_nats_per_image"].as_f64().unwrap(),
    );
    assert!(iw > 0.0 && elbo > 0.0, "{stdout}");
    assert!(iw <= elbo, "the IW NLL {iw} is at most the negative ELBO {elbo}");
    assert!((elbo - r["elbo_nats_per_dim"].as_f64().unwrap() * 784.0).abs() < 1e-6 * elbo);
}

#[test]
fn an_empty_out_path_is_refused_by_every_command_that_writes() {
    // `--out ""` once wrote `/model.safetensors` and the like.
    for command in [
        "train",
        "sample",
        "reconstruct",
        "interpolate",
        "encode",
        "diagnose",
        "grad",
        "import",
    ] {
        let out = vdvae(&[command, "--out", ""]);
        let stderr = text(&out).1;
        assert!(!out.status.success(), "{command}: {stderr}");
        assert!(
            stderr.contains("--out") && stderr.contains("an empty path"),
            "{command}: {stderr}"
        );
    }
}

#[test]
fn zero_images_or_rows_per_pass_are_refused() {
    let cases: [(&str, &[&str], &str); 4] = [
        ("eval", &["--batch", "0"], "--batch"),
        ("eval", &["--iw", "4", "--iw-rows", "0"], "--iw-rows"),
        ("eval", &["--iw", "0"], "--iw"),
        ("encode", &["--batch", "0"], "--batch"),
    ];
    for (command, extra, flag) in cases {
        let mut args = fixture_args(command);
        args.retain(|a| a != "--posterior-mean");
        args.extend(extra.iter().map(|s| s.to_string()));
        let out = vdvae(&args.iter().map(|s| s.as_str()).collect::<Vec<_>>());
        let stderr = text(&out).1;
        assert!(!out.status.success(), "{command} {extra:?}: {stderr}");
        assert!(
            stderr.contains(&format!("'{flag} <")) && stderr.contains("must be at least 1"),
            "{command} {extra:?}: {stderr}"
        );
    }
}

/// The fixture config with `from` replaced by `to`, written to a file.
fn fixture_config_with(name: &str, from: &str, to: &str) -> String {
    let text = std::fs::read_to_string(fixture("tiny.json")).unwrap();
    assert!(text.contains(from), "{from} is not in tiny.json");
    let path = tmp(name);
    std::fs::write(&path, text.replace(from, to)).unwrap();
    path
}

#[test]
fn a_hyperparameter_out_of_range_is_refused_naming_key_value_and_range() {
    let cases = [
        (
            "\"lr\": 0.001",
            "\"lr\": -0.001",
            "lr = -0.001 is out of range: it must be a finite number > 0",
        ),
        (
            "\"grad_clip\": 200.0",
            "\"grad_clip\": 0",
            "grad_clip = 0 is out of range",
        ),
        (
            "\"lr\": 0.001",
            "\"lr\": 0.001, \"adam_beta1\": 1.0",
            "adam_beta1 = 1 is out of range: it must be in [0, 1)",
        ),
    ];
    for (i, (from, to, want)) in cases.into_iter().enumerate() {
        let config = fixture_config_with(&format!("range-{i}.json"), from, to);
        let out = vdvae(&["plan", "--config", &config]);
        let stderr = text(&out).1;
        assert!(!out.status.success(), "{to}: {stderr}");
        assert!(stderr.contains(want), "{to}: {stderr}");
    }
    let config = fixture_config_with("range-off.json", "\"grad_clip\": 200.0", "\"grad_clip\": -1");
    let out = vdvae(&["plan", "--config", &config]);
    assert!(out.status.success(), "{}", text(&out).1);
}

#[test]
fn a_checkpoint_with_nan_weights_is_refused_by_every_command_that_reads_one() {
    let h = vdvae::model::preset("mnist-tiny").unwrap();
    let mut weights = vdvae::model::init::init_weights(&h, 2).unwrap();
    let (name, tensor) = weights.iter_mut().find(|(_, t)| t.data.len() >= 2).unwrap();
    let name = name.clone();
    tensor.data[1] = f32::NAN;
    let checkpoint = tmp("nan-weights.safetensors");
    vdvae::checkpoint::save(&checkpoint, &weights, None).unwrap();
    let data = format!("{}/assets/mnist-1k-images-idx3-ubyte.gz", env!("CARGO_MANIFEST_DIR"));
    let on_data = ["--data", data.as_str(), "--format", "mnist"];
    let factors = ["--factors", "never-read-factors.npy"];
    let cases: [(&str, &[&str], &str); 8] = [
        ("sample", &[], "nan-sample.png"),
        ("reconstruct", &on_data, "nan-reconstruct.png"),
        (
            "interpolate",
            &[&on_data[..], &["--level", "1"][..]].concat(),
            "nan-interpolate",
        ),
        ("encode", &on_data, "nan-encode.safetensors"),
        ("grad", &on_data, "nan-grad.safetensors"),
        ("diagnose", &on_data, "nan-diagnose"),
        ("eval", &on_data, ""),
        ("disentangle", &[&on_data[..], &factors[..]].concat(), ""),
    ];
    for (command, extra, out_name) in cases {
        let mut args = vec![command, "--preset", "mnist-tiny", "--checkpoint", &checkpoint];
        args.extend(extra);
        let out_path = tmp(out_name);
        if !out_name.is_empty() {
            args.extend(["--out", out_path.as_str()]);
        }
        let out = vdvae(&args);
        let stderr = text(&out).1;
        assert!(!out.status.success(), "{command}: {stderr}");
        assert!(
            stderr.contains(&format!("tensor {name} holds NaN at element 1")),
            "{command}: {stderr}"
        );
        assert!(
            out_name.is_empty() || !std::path::Path::new(&out_path).exists(),
            "{command} wrote {out_path}"
        );
    }
}

#[test]
fn a_config_asking_for_too_much_fails_at_once_naming_the_limit() {
    let cases = [
        ("\"32x1,32d2", "\"32x99999999999,32d2", "the limit is 1000 blocks"),
        ("\"32x1,32d2", "\"32x100000,32d2", "the limit is 1000 blocks"),
        (
            "\"image_size\": 32",
            "\"image_size\": 65536",
            "image_size = 65536 is too large: the limit is 4096",
        ),
    ];
    for (i, (from, to, want)) in cases.into_iter().enumerate() {
        let config = fixture_config_with(&format!("limit-{i}.json"), from, to);
        let started = std::time::Instant::now();
        let out = vdvae(&["plan", "--config", &config]);
        let stderr = text(&out).1;
        assert!(!out.status.success(), "{to}: {stderr}");
        assert!(stderr.contains(want), "{to}: {stderr}");
        assert!(started.elapsed().as_secs() < 30, "{to}: {:?}", started.elapsed());
    }
}

#[test]
fn a_batch_over_the_limit_is_refused_as_n_batch_is() {
    for args in [
        &["plan", "--preset", "mnist-tiny", "--batch", "100000000"][..],
        &[
            "train",
            "--preset",
            "mnist-tiny",
            "--batch",
            "65537",
            "--out",
            &tmp("huge-batch"),
        ][..],
    ] {
        let started = std::time::Instant::now();
        let out = vdvae(args);
        let stderr = text(&out).1;
        assert!(!out.status.success(), "{args:?}: {stderr}");
        assert!(
            stderr.contains("'--batch <") && stderr.contains("the limit is 65536"),
            "{args:?}: {stderr}"
        );
        assert!(started.elapsed().as_secs() < 30, "{args:?}: {:?}", started.elapsed());
    }
    let mut args = fixture_args("eval");
    args.retain(|a| a != "--posterior-mean");
    args.extend(["--iw", "2", "--iw-rows", "100000"].map(String::from));
    let out = vdvae(&args.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    let stderr = text(&out).1;
    assert!(!out.status.success() && stderr.contains("'--iw-rows <"), "{stderr}");
}

#[test]
fn normalisation_flags_are_checked_before_the_checkpoint_is_blamed() {
    for (flag, value, want) in [
        ("--data-std", "0", "above 0"),
        ("--data-std", "-64", "above 0"),
        ("--data-mean", "NaN", "not a finite number"),
    ] {
        let mut args = fixture_args("eval");
        // `--flag=value`: clap would read a separate "-64" as a flag.
        args.push(format!("{flag}={value}"));
        let out = vdvae(&args.iter().map(|s| s.as_str()).collect::<Vec<_>>());
        let stderr = text(&out).1;
        assert!(!out.status.success(), "{flag} {value}: {stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains(want),
            "{flag} {value}: {stderr}"
        );
        assert!(!stderr.contains("weights"), "{flag} {value}: {stderr}");
    }
}
