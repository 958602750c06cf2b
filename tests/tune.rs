//! Kernel tuning through the binary: `vdvae tune` fills a cache in
//! `VDVAE_CACHE`, and a corrupt cache file is ignored with a note while the
//! run's numbers stay those of the built-in defaults (`VDVAE_TUNE=off`).

use std::process::{Command, Output};

fn fixture(file: &str) -> String {
    format!("{}/tests/fixtures/official-vdvae/{file}", env!("CARGO_MANIFEST_DIR"))
}

fn vdvae(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vdvae"));
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn tmp(name: &str) -> String {
    let d = std::env::temp_dir().join(format!("vdvae-tune-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d.to_string_lossy().into_owned()
}

/// The fixture's posterior-mean ELBO as `vdvae eval --json` prints it, and stderr.
fn fixture_elbo(env: &[(&str, &str)]) -> (String, String) {
    let (config, checkpoint, data) = (
        fixture("tiny.json"),
        fixture("tiny.safetensors"),
        fixture("digits64.bin"),
    );
    let args = [
        "eval",
        "--config",
        &config,
        "--checkpoint",
        &checkpoint,
        "--data",
        &data,
        "--format",
        "cifar10",
        "--posterior-mean",
        "--json",
    ];
    let out = vdvae(&args, env);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (v["elbo_nats_per_dim"].to_string(), stderr)
}

#[test]
fn a_corrupt_cache_is_ignored_with_a_note_and_the_numbers_stay() {
    let cache = tmp("corrupt");
    let env = [("VDVAE_CACHE", cache.as_str())];
    let out = vdvae(&["tune", "--config", &fixture("tiny.json"), "--batch", "2"], &env);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // "cache: PATH" names this adapter's file.
    let file = stdout
        .split("cache: ")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .unwrap_or_else(|| panic!("no cache path in {stdout}"))
        .to_string();
    assert!(file.starts_with(&cache), "{file} is not in VDVAE_CACHE {cache}");

    let (reference, quiet) = fixture_elbo(&[("VDVAE_TUNE", "off"), ("VDVAE_CACHE", &cache)]);
    assert!(
        !quiet.contains("tuning cache"),
        "VDVAE_TUNE=off reads no cache: {quiet}"
    );
    for junk in [&b"{ not json"[..], b"", br#"{"format": 1, "key": {"adapter": "elsewhere", "backend": "Metal", "driver": "x", "wgpu": "0"}, "choices": {}}"#] {
        std::fs::create_dir_all(&cache).unwrap();
        std::fs::write(&file, junk).unwrap();
        let (elbo, stderr) = fixture_elbo(&env);
        let notes: Vec<&str> = stderr.lines().filter(|l| l.contains("ignoring the kernel-tuning cache")).collect();
        assert_eq!(notes.len(), 1, "one note: {stderr}");
        // The same ELBO as with the built-in defaults; the run re-tunes, and
        // on a busy machine may pick another kernel, which sums in another order.
        let (a, b): (f64, f64) = (elbo.parse().unwrap(), reference.parse().unwrap());
        assert!((a - b).abs() <= 1e-5 * b.abs(), "ELBO {elbo} against {reference} with the defaults");
    }
    let _ = std::fs::remove_dir_all(&cache);
}

#[test]
fn tune_off_says_there_is_nothing_to_do() {
    let out = vdvae(&["tune", "--preset", "mnist-tiny"], &[("VDVAE_TUNE", "off")]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("VDVAE_TUNE=off"));
}

#[test]
fn forced_gpu_kernels_run_every_flop_in_workgroups_of_64_or_more() {
    // A conv VDVAE and the MLP Ladder VAE (its linear layers are matmuls).
    for preset in ["mnist-tiny", "ladder-mnist"] {
        forced_gpu_kernels_on(preset);
    }
}

fn forced_gpu_kernels_on(preset: &str) {
    let cache = tmp(&format!("gpu-{preset}"));
    let args = [
        "profile",
        "--preset",
        preset,
        "--batch",
        "4",
        "--steps",
        "1",
        "--json",
        "--kernels",
        "gpu",
    ];
    let out = vdvae(&args, &[("VDVAE_CACHE", &cache)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = r["kernels"].as_array().unwrap();
    let with_flops: Vec<&serde_json::Value> = rows.iter().filter(|k| k["flops"].as_f64().unwrap() > 0.0).collect();
    assert!(
        with_flops.iter().any(|k| k["variant"] == "workgroup"),
        "{preset}: {rows:?}"
    );
    for k in with_flops {
        let n = k["workgroup_invocations"].as_u64().unwrap();
        assert!(n >= 64, "{preset}: {} runs {n} invocations per workgroup", k["kernel"]);
        assert_ne!(k["variant"], "tiled", "{preset}: {}", k["kernel"]);
    }
    // The tuned set keeps the adapter's choice: on lavapipe, the subgroup-tiled
    // convs and the packed matmul.
    let tuned = vdvae(&args[..8], &[("VDVAE_CACHE", &cache)]);
    let r: serde_json::Value = serde_json::from_slice(&tuned.stdout).unwrap();
    let variants: Vec<&str> = r["kernels"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["variant"].as_str())
        .collect();
    let lavapipe_choice = if preset == "ladder-mnist" { "packed" } else { "tiled" };
    assert!(variants.contains(&lavapipe_choice), "{preset}: {variants:?}");
    let _ = std::fs::remove_dir_all(&cache);
}
