//! The official VDVAE's PyTorch checkpoints (`torch.save`: zip and legacy
//! containers, DDP's `module.` prefix, weights under a key) read without
//! PyTorch: the same tensors and the same outputs as the safetensors file they
//! were written from (tests/fixtures/official-vdvae/make_th.py), and clear
//! errors for files that are not weights. Runs on the CPU reference.

use std::process::{Command, Output};

use vdvae::checkpoint::{load, load_weights, NamedTensors};

fn fixture(file: &str) -> String {
    format!("{}/tests/fixtures/official-vdvae/{file}", env!("CARGO_MANIFEST_DIR"))
}

fn tmp(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("vdvae-torch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name).to_string_lossy().into_owned()
}

fn vdvae(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vdvae")).args(args).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The PyTorch copies of tiny.safetensors, with the key each needs.
const COPIES: [(&str, Option<&str>); 4] = [
    ("tiny.th", None),
    ("tiny-legacy.th", None),
    ("tiny-ddp.th", None),
    ("tiny-nested.th", Some("model_state_dict")),
];

#[test]
fn every_container_holds_exactly_the_safetensors_tensors() {
    let expected = load(&fixture("tiny.safetensors")).unwrap();
    assert_eq!(expected.len(), 317);
    for (file, key) in COPIES {
        let got = load_weights(&fixture(file), key).unwrap_or_else(|e| panic!("{file}: {e}"));
        // Tensor's PartialEq compares f32 values, and all are finite, so equal
        // means bit-identical here.
        assert_eq!(got, expected, "{file}");
    }
    assert_eq!(load(&fixture("tiny.th")).unwrap(), expected);
}

/// 0.5 * [0, 1, ..., 11] as 3x4, the tensor make_th.py saves in every dtype and view.
fn base(i: usize) -> f32 {
    0.5 * i as f32
}

#[test]
fn every_float_dtype_and_every_view_is_read_as_f32() {
    let all: Vec<f32> = (0..12).map(base).collect();
    for file in ["dtypes-views-zip.th", "dtypes-views-legacy.th"] {
        let t: NamedTensors = load(&fixture(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        for dtype in ["f64", "f32", "f16", "bf16"] {
            assert_eq!(t[dtype].shape, [3, 4], "{file} {dtype}");
            assert_eq!(t[dtype].data, all, "{file} {dtype}");
        }
        let transposed: Vec<f32> = (0..4).flat_map(|c| (0..3).map(move |r| base(r * 4 + c))).collect();
        assert_eq!(t["transposed"].shape, [4, 3], "{file}");
        assert_eq!(t["transposed"].data, transposed, "{file}");
        assert_eq!(t["offset"].shape, [6], "{file}");
        assert_eq!(t["offset"].data, all[2..8], "{file}");
        assert_eq!(t["column"].shape, [3], "{file}");
        assert_eq!(t["column"].data, [base(1), base(5), base(9)], "{file}");
    }
}

#[test]
fn a_file_without_tensors_at_top_level_says_what_it_holds_and_which_key_to_pass() {
    let nested = fixture("tiny-nested.th");
    let err = load_weights(&nested, None).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "{nested} holds a dict with keys [epoch, model_state_dict] and no tensors \
             at top level: pass --checkpoint-key model_state_dict"
        )
    );
    let optimizer = fixture("optimizer.th");
    let err = load_weights(&optimizer, None).unwrap_err().to_string();
    assert!(
        err.contains(&format!(
            "{optimizer} holds a dict with keys [param_groups, state] and no tensors"
        )) && err.contains("no model weights (an optimizer's state_dict?)"),
        "{err}"
    );
    let err = load_weights(&nested, Some("epoch")).unwrap_err().to_string();
    assert!(
        err.contains("holds under --checkpoint-key epoch an int, not a dict of tensors"),
        "{err}"
    );
    let err = load_weights(&nested, Some("nope")).unwrap_err().to_string();
    assert!(
        err.contains("'nope' not found") && err.contains("\"model_state_dict\""),
        "{err}"
    );
    let err = load_weights(&fixture("tiny.safetensors"), Some("model_state_dict"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("this is a safetensors file"), "{err}");
}

#[test]
fn weights_with_nan_are_refused_from_a_pytorch_file_too() {
    let err = load_weights(&fixture("nan.th"), None).unwrap_err().to_string();
    assert!(err.contains("nan.th: tensor w holds NaN at element 1"), "{err}");
}

#[test]
fn a_truncated_or_random_file_is_an_error_naming_it() {
    for file in [
        "tiny.th",
        "tiny-legacy.th",
        "dtypes-views-zip.th",
        "dtypes-views-legacy.th",
    ] {
        let bytes = std::fs::read(fixture(file)).unwrap();
        let n = bytes.len();
        let mut cuts: Vec<usize> = vec![0, 1, 2, 10, 64, 100, 1000, n / 2, n - 22, n - 1];
        cuts.extend((1..40).map(|i| i * n / 40));
        for cut in cuts.into_iter().filter(|&c| c < n) {
            let path = tmp(&format!("cut-{cut}-{file}"));
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let err = load_weights(&path, None)
                .err()
                .unwrap_or_else(|| panic!("{file} cut at {cut} of {n} bytes loaded"));
            assert!(err.to_string().contains(&path), "{file} at {cut}: {err}");
            std::fs::remove_file(&path).unwrap();
        }
    }
    // Bytes that look like nothing, and bytes that start like a legacy pickle.
    for (name, bytes) in [
        ("random.th", b"\x13\x37not a checkpoint at all, just bytes".to_vec()),
        (
            "pickle-ish.pt",
            b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20garbage".to_vec(),
        ),
    ] {
        let path = tmp(name);
        std::fs::write(&path, bytes).unwrap();
        let err = load_weights(&path, None).unwrap_err().to_string();
        assert!(
            err.contains(&path) && err.contains("not a readable PyTorch file"),
            "{err}"
        );
    }
}

/// `vdvae CMD` on the fixture's config and its first 16 images with
/// `checkpoint`, on the CPU reference with z = mu_q: deterministic.
fn on_fixture(cmd: &str, checkpoint: &str, key: Option<&str>, extra: &[&str]) -> Output {
    let (config, data) = (fixture("tiny.json"), fixture("digits64.bin"));
    let mut args = vec![cmd, "--config", &config, "--checkpoint", checkpoint];
    if let Some(key) = key {
        args.extend(["--checkpoint-key", key]);
    }
    args.extend([
        "--data",
        &data,
        "--format",
        "cifar10",
        "--device",
        "cpu",
        "--posterior-mean",
        "--limit",
        "16",
    ]);
    args.extend(extra);
    vdvae(&args)
}

#[test]
fn eval_and_grad_of_every_pytorch_copy_equal_the_safetensors_file_bit_for_bit() {
    let reference = on_fixture("eval", &fixture("tiny.safetensors"), None, &["--json"]);
    assert!(reference.status.success(), "{}", stderr(&reference));
    let grad_reference = tmp("grad-safetensors.safetensors");
    let out = on_fixture("grad", &fixture("tiny.safetensors"), None, &["--out", &grad_reference]);
    assert!(out.status.success(), "{}", stderr(&out));
    for (file, key) in COPIES {
        let eval = on_fixture("eval", &fixture(file), key, &["--json"]);
        assert!(eval.status.success(), "{file}: {}", stderr(&eval));
        assert_eq!(
            String::from_utf8_lossy(&eval.stdout),
            String::from_utf8_lossy(&reference.stdout),
            "{file}"
        );
        let grad = tmp(&format!("grad-{file}.safetensors"));
        let out = on_fixture("grad", &fixture(file), key, &["--out", &grad]);
        assert!(out.status.success(), "{file}: {}", stderr(&out));
        assert!(
            std::fs::read(&grad).unwrap() == std::fs::read(&grad_reference).unwrap(),
            "{file}: gradients differ"
        );
    }
}

#[test]
fn a_pytorch_file_that_disagrees_with_the_config_lists_the_differences() {
    let config = std::fs::read_to_string(fixture("tiny.json")).unwrap();
    let wider = tmp("zdim8.json");
    std::fs::write(&wider, config.replace("\"zdim\": 4", "\"zdim\": 8")).unwrap();
    let (data, checkpoint) = (fixture("digits64.bin"), fixture("tiny-legacy.th"));
    let out = vdvae(&[
        "eval",
        "--config",
        &wider,
        "--checkpoint",
        &checkpoint,
        "--data",
        &data,
        "--format",
        "cifar10",
        "--device",
        "cpu",
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("does not match the config") && err.contains("in the file"),
        "{err}"
    );
}

#[test]
fn import_writes_the_weights_as_safetensors_and_refuses_other_files() {
    let from_safetensors = tmp("import-reference.safetensors");
    let out = vdvae(&["import", &fixture("tiny.safetensors"), "--out", &from_safetensors]);
    assert!(out.status.success(), "{}", stderr(&out));
    for (file, key) in COPIES {
        let path = tmp(&format!("import-{file}.safetensors"));
        let mut args = vec!["import", &fixture(file)]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>();
        args.extend(["--out".into(), path.clone()]);
        if let Some(key) = key {
            args.extend(["--checkpoint-key".into(), key.into()]);
        }
        let out = vdvae(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(out.status.success(), "{file}: {}", stderr(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("wrote 317 tensors"));
        assert!(
            std::fs::read(&path).unwrap() == std::fs::read(&from_safetensors).unwrap(),
            "{file}: the imported file differs"
        );
    }
    let dir = std::path::Path::new(&from_safetensors).parent().unwrap();
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
    for (file, error) in [("optimizer.th", "no model weights"), ("nan.th", "tensor w holds NaN")] {
        let path = tmp(&format!("import-{file}.safetensors"));
        let out = vdvae(&["import", &fixture(file), "--out", &path]);
        assert!(!out.status.success(), "{file}");
        assert!(stderr(&out).contains(error), "{file}: {}", stderr(&out));
        assert!(!std::path::Path::new(&path).exists(), "{file}");
    }
}
