//! `vdvae train` stopped by a signal: SIGINT or SIGTERM finishes the step,
//! saves the checkpoint, prints how to resume and exits with 130; a second
//! signal exits at once and leaves the previous checkpoint whole.
#![cfg(unix)]

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(300);

fn run_dir(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("vdvae-signal-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.to_string_lossy().into_owned()
}

/// Picture and held-out eval flags of the runs, which a resume command must carry.
const LOOK_FLAGS: [[&str; 2]; 5] = [
    ["--image-every", "1000"],
    ["--image-temperature", "0.7"],
    ["--eval-format", "mnist"],
    ["--eval-every", "1000"],
    ["--eval-limit", "8"],
];

fn eval_data() -> String {
    format!("{}/assets/mnist-1k-images-idx3-ubyte.gz", env!("CARGO_MANIFEST_DIR"))
}

/// A long training run in `dir`, with a checkpoint every `save_every` steps.
fn start_training(dir: &str, save_every: u32) -> Child {
    Command::new(env!("CARGO_BIN_EXE_vdvae"))
        .args(["train", "--preset", "mnist-tiny", "--batch", "8", "--steps", "100000"])
        .args(["--save-every", &save_every.to_string(), "--out", dir])
        .args(LOOK_FLAGS.iter().flatten())
        .args(["--eval-data", &eval_data()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The `step` of each line of the log: steps, or evals with `eval`.
fn logged(dir: &str, eval: bool) -> Vec<u64> {
    std::fs::read_to_string(format!("{dir}/log.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("eval").is_some() == eval)
        .map(|v| v["step"].as_u64().unwrap())
        .collect()
}

fn log_steps(dir: &str) -> Vec<u64> {
    logged(dir, false)
}

fn wait_for_steps(child: &mut Child, dir: &str, steps: usize) {
    let start = Instant::now();
    while log_steps(dir).len() < steps {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("training ended ({status}) before {steps} steps");
        }
        assert!(start.elapsed() < DEADLINE, "no {steps} steps in {DEADLINE:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn send(child: &Child, signal: libc::c_int) {
    // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
}

/// The child's output once it exits, and how long that took.
fn finish(mut child: Child) -> (Output, Duration) {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("training did not exit within {DEADLINE:?} of the signal");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = start.elapsed();
    (child.wait_with_output().unwrap(), took)
}

fn metadata(dir: &str, file: &str) -> std::collections::BTreeMap<String, String> {
    vdvae::checkpoint::load_metadata(&format!("{dir}/{file}")).unwrap()
}

/// Every checkpoint file loads and all three hold the same step; returns it.
fn checkpoint_iteration(dir: &str) -> u64 {
    for file in ["model.safetensors", "model-ema.safetensors", "opt.safetensors"] {
        let path = format!("{dir}/{file}");
        let tensors = vdvae::checkpoint::load(&path).unwrap();
        assert!(!tensors.is_empty(), "{file} has no tensors");
        let rewritten = vdvae::checkpoint::to_safetensors(&tensors, Some(&metadata(dir, file))).unwrap();
        assert!(
            rewritten == std::fs::read(&path).unwrap(),
            "{file}: writing what it holds again gives the same bytes"
        );
    }
    let iteration = |file| metadata(dir, file)["iteration"].parse::<u64>().unwrap();
    let opt = iteration("opt.safetensors");
    assert_eq!(
        iteration("model.safetensors"),
        opt,
        "model and optimizer state from one step"
    );
    assert_eq!(
        iteration("model-ema.safetensors"),
        opt,
        "EMA and optimizer state from one step"
    );
    opt
}

/// Stops a run with `signal` and checks the checkpoint, the message and the
/// printed resume command.
fn stop_then_resume(signal: libc::c_int, name: &str) {
    let dir = run_dir(name);
    let mut child = start_training(&dir, 100_000);
    wait_for_steps(&mut child, &dir, 5);
    send(&child, signal);
    let (out, _) = finish(child);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "exit code 130 after {name}:\n{stderr}");

    let steps = log_steps(&dir);
    let iteration = checkpoint_iteration(&dir);
    assert_eq!(iteration, steps.len() as u64, "the checkpoint holds every logged step");
    assert_eq!(steps, (0..iteration).collect::<Vec<_>>(), "one log line per step");
    assert!(
        stderr.contains(&format!("the run has trained {iteration} steps in all")),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("{dir}/model.safetensors")), "{stderr}");

    // The printed command resumes; run it for two steps instead of the rest.
    let line = stderr
        .lines()
        .skip_while(|l| !l.starts_with("resume the"))
        .nth(1)
        .unwrap_or_else(|| panic!("no resume command in:\n{stderr}"));
    let mut args: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(args[0], env!("CARGO_BIN_EXE_vdvae"));
    assert!(args.contains(&"--resume") && args.contains(&dir.as_str()), "{line}");
    let data = eval_data();
    for flag in LOOK_FLAGS.iter().chain([&["--eval-data", data.as_str()]]) {
        assert!(args.windows(2).any(|w| w == flag), "{flag:?} in {line}");
    }
    let steps_at = args.iter().position(|a| *a == "--steps").unwrap() + 1;
    assert_eq!(args[steps_at], (100_000 - iteration).to_string(), "{line}");
    args[steps_at] = "2";
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(&log_steps(&dir)[iteration as usize..], &[iteration, iteration + 1]);
    assert_eq!(
        logged(&dir, true),
        [iteration + 2],
        "the resumed run evaluates at its end"
    );
    assert_eq!(checkpoint_iteration(&dir), iteration + 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigint_saves_the_step_and_prints_how_to_resume() {
    stop_then_resume(libc::SIGINT, "int");
}

#[test]
fn sigterm_stops_the_same_way() {
    stop_then_resume(libc::SIGTERM, "term");
}

#[test]
fn a_second_signal_exits_at_once_and_leaves_the_previous_checkpoint() {
    let dir = run_dir("twice");
    let mut child = start_training(&dir, 4);
    // A checkpoint is written after steps 4 and 8 before step 9 is logged.
    wait_for_steps(&mut child, &dir, 9);
    send(&child, libc::SIGINT);
    std::thread::sleep(Duration::from_millis(30));
    send(&child, libc::SIGINT);
    let (out, took) = finish(child);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(took < Duration::from_secs(20), "exit took {took:?}");

    let iteration = checkpoint_iteration(&dir);
    let graceful = stderr.contains("stopping:");
    assert!(
        graceful || (iteration >= 8 && iteration.is_multiple_of(4)),
        "killed at once, so the checkpoint is a periodic one, not step {iteration}:\n{stderr}"
    );
    // A resumed run drops the log lines past the checkpoint and goes on.
    let out = Command::new(env!("CARGO_BIN_EXE_vdvae"))
        .args(["train", "--preset", "mnist-tiny", "--batch", "8", "--steps", "1"])
        .args(["--out", &dir, "--resume"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(log_steps(&dir), (0..=iteration).collect::<Vec<_>>());
    let _ = std::fs::remove_dir_all(&dir);
}
