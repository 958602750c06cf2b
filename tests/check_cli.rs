//! `vdvae check` prints PASS for good kernels and exits non-zero when a result is perturbed.

use std::process::Command;

fn vdvae() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vdvae"))
}

#[test]
fn check_passes_and_prints_a_table() {
    let out = vdvae().args(["check", "--kernel", "elementwise"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "check failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("gelu_forward") && stdout.contains("PASS"), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
}

#[test]
fn check_fails_when_a_result_is_perturbed() {
    let out = vdvae()
        .args(["check", "--kernel", "elementwise", "--perturb"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "a perturbed check must fail:\n{stdout}");
    assert!(stdout.contains("FAIL") && stdout.contains("worst element"), "{stdout}");
}

#[test]
fn check_rejects_an_unknown_family() {
    let out = vdvae().args(["check", "--kernel", "no_such_kernel"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("the families are"));
}

/// Every matmul kernel is either checked or named as not checked, with why: at
/// 4-lane subgroups (lavapipe at 128 bits) the packed kernel cannot run there.
#[test]
fn a_kernel_the_adapter_cannot_run_is_named_not_silently_left_out() {
    let out = vdvae()
        .args(["check", "--kernel", "matmul"])
        .env("LP_NATIVE_VECTOR_WIDTH", "128")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let checked = stdout
        .lines()
        .any(|l| l.contains("matmul_packed") && l.ends_with("PASS"));
    let named = stdout
        .lines()
        .any(|l| l.starts_with("not checked: matmul matmul_packed: needs subgroups of exactly 8 lanes"));
    assert!(
        checked != named,
        "packed matmul neither checked nor named (or both):\n{stdout}"
    );
}
