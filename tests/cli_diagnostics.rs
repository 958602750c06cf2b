//! The diagnostic commands end to end on a small model: what they write, and
//! clear errors for requests the model cannot serve.

use std::process::{Command, Output};

fn vdvae(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vdvae")).args(args).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn tmp(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("vdvae-cli-diagnostics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name).to_string_lossy().into_owned()
}

/// `mnist-tiny` initial weights for one command (tests run in parallel, each writes its own).
fn weights(command: &str) -> String {
    let weights = tmp(&format!("{command}-init.safetensors"));
    let h = vdvae::model::preset("mnist-tiny").unwrap();
    vdvae::checkpoint::save(&weights, &vdvae::model::init::init_weights(&h, 2).unwrap(), None).unwrap();
    weights
}

/// The model on the bundled MNIST images: the flags every command takes.
fn model_flags(command: &str) -> Vec<String> {
    let weights = weights(command);
    let data = format!("{}/assets/mnist-1k-images-idx3-ubyte.gz", env!("CARGO_MANIFEST_DIR"));
    [
        "--preset",
        "mnist-tiny",
        "--checkpoint",
        &weights,
        "--data",
        &data,
        "--format",
        "mnist",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn run(command: &str, extra: &[&str]) -> Output {
    let flags = model_flags(command);
    let mut args: Vec<&str> = vec![command];
    args.extend(flags.iter().map(String::as_str));
    args.extend(extra);
    vdvae(&args)
}

/// A PNG's width and height.
fn png_size(path: &str) -> (u32, u32) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let info = decoder.read_info().unwrap();
    (info.info().width, info.info().height)
}

/// The size of a grid of 32x32 images with 2-pixel gutters.
fn grid(cols: u32, rows: u32) -> (u32, u32) {
    (cols * 34 + 2, rows * 34 + 2)
}

#[test]
fn reconstruct_writes_the_inputs_and_a_row_per_k() {
    let out_png = tmp("rec.png");
    let out = run(
        "reconstruct",
        &[
            "--images",
            "0,1,2",
            "--levels",
            "0,3,9",
            "--temperature",
            "0.5",
            "--out",
            &out_png,
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(png_size(&out_png), grid(3, 4));
    let out = run("reconstruct", &["--levels", "10", "--out", &out_png]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("9 latent levels"), "{}", stderr(&out));
}

#[test]
fn interpolate_writes_one_strip_per_pair() {
    let dir = tmp("interp");
    let out = run(
        "interpolate",
        &[
            "--level", "2", "--steps", "5", "--pair", "0,1", "--pair", "2,3", "--out", &dir,
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    for name in ["level2-0-1.png", "level2-2-3.png"] {
        assert_eq!(png_size(&format!("{dir}/{name}")), grid(5, 1));
    }
    for (bad, says) in [
        (vec!["--level", "9"], "0..=8"),
        (vec!["--level", "1", "--pair", "0,1,2"], "two image indices"),
        (vec!["--level", "1", "--pair", "0,5000"], "past the end"),
        (vec!["--level", "1", "--steps", "1"], "at least 2"),
    ] {
        let mut args = bad.clone();
        args.extend(["--out", &dir]);
        let out = run("interpolate", &args);
        assert!(!out.status.success(), "{bad:?}");
        assert!(stderr(&out).contains(says), "{bad:?}: {}", stderr(&out));
    }
}

#[test]
fn encode_writes_every_levels_mean_and_std() {
    let path = tmp("enc.safetensors");
    let out = run("encode", &["--limit", "5", "--batch", "2", "--out", &path]);
    assert!(out.status.success(), "{}", stderr(&out));
    let tensors = vdvae::checkpoint::load(&path).unwrap();
    assert_eq!(tensors.len(), 2 * 9);
    // Level 0 is the 1x1 top; level 1 the first at 4x4 (mnist-tiny: zdim 4).
    assert_eq!(tensors["level.00.mean"].shape, vec![5, 4, 1, 1]);
    assert_eq!(tensors["level.01.std"].shape, vec![5, 4, 4, 4]);
    assert!(tensors["level.01.std"].data.iter().all(|&s| s > 0.0));
}

#[test]
fn diagnose_writes_a_report_and_four_plots() {
    let dir = tmp("diag");
    let out = run(
        "diagnose",
        &["--limit", "6", "--batch", "4", "--temperature", "0.5", "--out", &dir],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let json = std::fs::read_to_string(format!("{dir}/report.json")).unwrap();
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["images"], 6);
    // Batches of 4: the mutual information counts the first 4 images, not the last 2.
    assert_eq!(report["mutual_info_batch"], 4);
    assert_eq!(report["mutual_info_images"], 4);
    let cap = report["mutual_info_cap_nats"].as_f64().unwrap();
    assert_eq!(cap, 4f64.ln());
    assert_eq!(report["levels"].as_array().unwrap().len(), 9);
    assert_eq!(report["depth"].as_array().unwrap().len(), 10);
    for key in [
        "kl_nats_per_image",
        "kl_bits_per_dim",
        "rate_share",
        "active_units",
        "active_fraction",
        "resolution",
        "units",
        "mutual_info_nats",
    ] {
        assert!(
            report["levels"][0].get(key).is_some(),
            "no {key} in {}",
            report["levels"][0]
        );
    }
    // The table prints each level's estimate beside its KL, under a line naming B and the cap.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("B = 4 images (4 of them), at most ln B = {cap:.4} nats")),
        "{stdout}"
    );
    assert!(stdout.contains("KL nats/image   MI nats"), "{stdout}");
    let levels = report["levels"].as_array().unwrap();
    let rows: Vec<&str> = stdout.lines().filter(|l| l.trim_end().ends_with("%)")).collect();
    assert_eq!(rows.len(), levels.len(), "{stdout}");
    for (row, level) in rows.iter().zip(levels) {
        let mi = level["mutual_info_nats"].as_f64().unwrap();
        assert!(mi <= cap, "{level}");
        let printed: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(printed[4], format!("{mi:.4}"), "{row}");
    }
    for plot in [
        "kl_per_level.png",
        "active_units.png",
        "distortion_by_depth.png",
        "mutual_info.png",
    ] {
        assert!(png_size(&format!("{dir}/{plot}")).0 > 100, "{plot}");
    }
    // A report.json written before the mutual information existed is refused, naming the field.
    let parsed: vdvae::diagnose::report::DiagnoseReport = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed.levels.len(), 9);
    let mut old = report.clone();
    for level in old["levels"].as_array_mut().unwrap() {
        level.as_object_mut().unwrap().remove("mutual_info_nats");
    }
    for key in ["mutual_info_batch", "mutual_info_images", "mutual_info_cap_nats"] {
        old.as_object_mut().unwrap().remove(key);
    }
    let err = serde_json::from_str::<vdvae::diagnose::report::DiagnoseReport>(&old.to_string())
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing field `mutual_info_"), "{err}");
}

#[test]
fn sample_fixes_the_top_levels_to_a_reference_image() {
    let weights = weights("sample");
    let data = format!("{}/assets/mnist-1k-images-idx3-ubyte.gz", env!("CARGO_MANIFEST_DIR"));
    let png = tmp("fixed.png");
    let base = [
        "sample",
        "--preset",
        "mnist-tiny",
        "--checkpoint",
        &weights,
        "--n",
        "4",
        "--out",
        &png,
    ];
    let with = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend(extra);
        vdvae(&args)
    };
    let out = with(&[
        "--fix-levels",
        "3",
        "--reference",
        "7",
        "--data",
        &data,
        "--format",
        "mnist",
        "--temperature",
        "1.0:2,0.7",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(png_size(&png), grid(2, 2));
    let out = with(&["--fix-levels", "3"]);
    assert!(!out.status.success(), "--fix-levels without --reference");
    let out = with(&["--temperature", "1.0:20"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("names 20 levels"), "{}", stderr(&out));
}

#[test]
fn disentangle_scores_every_level_and_all_of_them_on_generated_dsprites() {
    let dir = tmp("dsprites");
    let out = vdvae(&[
        "data", "dsprites", "--out", &dir, "--size", "32", "--n", "60", "--seed", "3",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let images = vdvae::data::read_images(&format!("{dir}/images.npy"), vdvae::data::DataFormat::Npy).unwrap();
    assert_eq!((images.n, images.h, images.w, images.c), (60, 32, 32, 1));
    let factors = vdvae::data::read_npy_index_table(&std::fs::read(format!("{dir}/factors.npy")).unwrap()).unwrap();
    assert_eq!((factors.rows, factors.cols), (60, 5));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/factors.json")).unwrap()).unwrap();
    let sizes: Vec<u64> = json["factors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["size"].as_u64().unwrap())
        .collect();
    assert_eq!(sizes, vec![3, 6, 40, 32, 32]);

    let (data, factors_path) = (format!("{dir}/images.npy"), format!("{dir}/factors.npy"));
    let weights = weights("disentangle");
    let model = [
        "--preset",
        "mnist-tiny",
        "--checkpoint",
        &weights,
        "--data",
        &data,
        "--format",
        "npy",
    ];
    let mut args = vec!["disentangle"];
    args.extend(model);
    args.extend(["--factors", &factors_path, "--limit", "50", "--trees", "3", "--json"]);
    let out = vdvae(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let levels = report["levels"].as_array().unwrap();
    // mnist-tiny: 9 levels of 4 channels, top first.
    assert_eq!(levels.len(), 9);
    let in_unit_range = |s: &serde_json::Value| {
        let dci = &s["dci"];
        [
            &s["mig"],
            &s["sap"],
            &dci["disentanglement"],
            &dci["completeness"],
            &dci["informativeness"],
        ]
        .iter()
        .all(|v| (-1e-9..=1.0 + 1e-9).contains(&v.as_f64().unwrap()))
    };
    for (l, level) in levels.iter().enumerate() {
        assert_eq!(level["level"], l);
        assert_eq!(level["units"], 4);
        assert!(in_unit_range(level), "{level}");
    }
    assert_eq!(report["all"]["units"], 36);
    assert!(in_unit_range(&report["all"]), "{}", report["all"]);

    // Factors of fewer images than asked for: an error naming both counts.
    let few = tmp("dsprites-few");
    assert!(vdvae(&["data", "dsprites", "--out", &few, "--size", "32", "--n", "20"])
        .status
        .success());
    let few_factors = format!("{few}/factors.npy");
    let mut args = vec!["disentangle"];
    args.extend(model);
    args.extend(["--factors", &few_factors, "--limit", "50"]);
    let out = vdvae(&args);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("20 rows of factors for 50 images"),
        "{}",
        stderr(&out)
    );
}
