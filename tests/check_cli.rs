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
