//! A run directory whose checkpoint files come from different steps (a copy
//! from elsewhere, or a process killed between renames) is refused on resume
//! with a message that says what is wrong and what to do.

use std::process::{Command, Output};

fn train(dir: &str, steps: &str, resume: bool) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vdvae"));
    cmd.args([
        "train",
        "--preset",
        "mnist-tiny",
        "--batch",
        "8",
        "--steps",
        steps,
        "--out",
        dir,
    ]);
    if resume {
        cmd.arg("--resume");
    }
    cmd.output().unwrap()
}

#[test]
fn a_checkpoint_mixed_from_two_steps_is_refused() {
    let dir = std::env::temp_dir().join(format!("vdvae-mixed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dir = dir.to_string_lossy().into_owned();
    let ok = |out: Output| assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    ok(train(&dir, "2", false));
    let model = format!("{dir}/model.safetensors");
    let old = std::fs::read(&model).unwrap();
    ok(train(&dir, "1", true));
    std::fs::write(&model, old).unwrap();

    let out = train(&dir, "1", true);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("model.safetensors has step")
            && stderr.contains("but opt.safetensors has step")
            && stderr.contains("different checkpoints"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_checkpoint_whose_adam_moments_hold_nan_is_refused_on_resume() {
    let dir = std::env::temp_dir().join(format!("vdvae-nan-moments-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dir = dir.to_string_lossy().into_owned();
    let out = train(&dir, "2", false);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // One NaN in one moment, the step counters kept.
    let opt = format!("{dir}/opt.safetensors");
    let mut tensors = vdvae::checkpoint::load(&opt).unwrap();
    let meta = vdvae::checkpoint::load_metadata(&opt).unwrap();
    let (name, t) = tensors.iter_mut().next().unwrap();
    let name = name.clone();
    t.data[0] = f32::NAN;
    std::fs::write(&opt, vdvae::checkpoint::to_safetensors(&tensors, Some(&meta)).unwrap()).unwrap();

    let out = train(&dir, "1", true);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("Adam's moments") && stderr.contains(&format!("tensor {name} holds NaN")),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
