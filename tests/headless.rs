//! On a machine without a display, commands print no window-system noise
//! (libwayland's `XDG_RUNTIME_DIR is invalid or not set` line, which users
//! read as a failure).

use std::process::Command;

#[test]
fn info_without_xdg_runtime_dir_prints_no_display_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_vdvae"))
        .args(["info", "--seconds", "0.05"])
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("chosen:"), "{stdout}");
    assert!(
        !stdout.contains("XDG_RUNTIME_DIR") && !stderr.contains("XDG_RUNTIME_DIR"),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
}
