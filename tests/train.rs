//! `vdvae train` end to end on the bundled MNIST subset: the ELBO falls,
//! checkpoints load, and a resumed run continues the step count.

use std::process::Command;

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
