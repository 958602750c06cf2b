//! Short training runs of `vdvae train` compared file by file: what the
//! data-parallel tests share.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::process::run_with_timeout;
use super::rel_norm;
use vdvae::checkpoint::load;

/// A run (or an MPI job) still going after this hangs.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// `LAUNCHER... vdvae train --preset mnist-tiny` with `args` into `dir`;
/// panics with its output on failure. `launcher`: e.g. mpirun and its flags,
/// or nothing.
pub fn train_tiny(dir: &Path, launcher: &[&str], args: &[&str]) {
    let bin = env!("CARGO_BIN_EXE_vdvae");
    let mut cmd = match launcher.split_first() {
        Some((program, flags)) => {
            let mut c = Command::new(program);
            c.args(flags).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    cmd.args(["train", "--preset", "mnist-tiny", "--save-every", "0"])
        .args(["--image-every", "0", "--out", dir.to_str().unwrap()])
        .args(args);
    let (ok, output) = run_with_timeout(&mut cmd, RUN_TIMEOUT);
    assert!(ok, "{launcher:?} vdvae train {args:?} failed:\n{output}");
}

/// The largest relative difference by norm over every tensor of the three
/// checkpoint files, and the name of that tensor.
pub fn largest_difference(a: &Path, b: &Path) -> (f64, String) {
    let mut worst = (0.0, String::new());
    for file in ["model.safetensors", "model-ema.safetensors", "opt.safetensors"] {
        let want = load(a.join(file).to_str().unwrap()).unwrap();
        let got = load(b.join(file).to_str().unwrap()).unwrap();
        assert_eq!(want.len(), got.len(), "{file}: tensor count");
        for (name, w) in &want {
            let (d, n) = rel_norm(&got[name].data, &w.data);
            let rel = if n > 0.0 { d / n } else { d };
            if rel >= worst.0 {
                worst = (rel, format!("{file}: {name}"));
            }
        }
    }
    worst
}

/// Run `b` (data-parallel) trained what run `a` (one process, the global
/// batch) trained: every tensor within 1e-5 relative by norm, and the same
/// step lines in log.jsonl.
pub fn assert_same_run(a: &Path, b: &Path) {
    let (worst, name) = largest_difference(a, b);
    println!("largest relative difference after 5 steps: {worst:.3e} ({name})");
    assert!(worst <= 1e-5, "{name} differs by {worst:.3e} relative");
    // Rank 0 logs the global batch's metrics.
    let lines = |dir: &Path| std::fs::read_to_string(dir.join("log.jsonl")).unwrap();
    let (la, lb) = (lines(a), lines(b));
    assert_eq!(la.lines().count(), 5, "one log line a step");
    assert_eq!(lb.lines().count(), 5, "one log line a step, from rank 0 alone");
    for (x, y) in la.lines().zip(lb.lines()) {
        let (x, y): (serde_json::Value, serde_json::Value) =
            (serde_json::from_str(x).unwrap(), serde_json::from_str(y).unwrap());
        for key in ["step", "skips", "applied"] {
            assert_eq!(x[key], y[key], "{key}");
        }
        for key in ["elbo", "distortion", "grad_norm"] {
            let (p, q) = (x[key].as_f64().unwrap(), y[key].as_f64().unwrap());
            assert!((p - q).abs() <= 1e-5 * p.abs(), "{key}: {p} vs {q}");
        }
    }
}
