//! MPI ranks through `mpirun`: two processes of `examples/mpi_allreduce.rs` sum
//! vectors (whole and bucketed) and both print the right sums; a rank that
//! aborts ends the job with a nonzero status and its message. Needs Open MPI's
//! `mpirun` (Debian: openmpi-bin libopenmpi-dev):
//!
//! ```text
//! cargo test --release --features mpi --test parallel_mpi
//! ```
#![cfg(feature = "mpi")]

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::process::run_with_timeout;

const RANKS: usize = 2;
/// A job that has not ended by then hangs: it is killed and the test fails.
const TIMEOUT: Duration = Duration::from_secs(120);

/// Builds the example (the test harness builds tests, not examples) with this
/// test's profile and returns its path beside this test's executable, which is
/// target/<profile dir>/deps/parallel_mpi-HASH.
fn example() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|d| d.parent()).unwrap().to_path_buf();
    let profile = match profile_dir.file_name().unwrap().to_str().unwrap() {
        "debug" => "dev",
        other => other,
    };
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--features=mpi",
            "--example=mpi_allreduce",
            &format!("--profile={profile}"),
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo");
    assert!(status.success(), "building the mpi_allreduce example failed");
    let path = profile_dir.join("examples").join("mpi_allreduce");
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// `mpirun -np 2 EXAMPLE ARGS`: its success and its stdout and stderr together,
/// or a panic when it outlives the timeout.
fn mpirun(args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new("mpirun");
    cmd.args(["--allow-run-as-root", "--oversubscribe", "-np", &RANKS.to_string()])
        .arg(example())
        .args(args);
    run_with_timeout(&mut cmd, TIMEOUT)
}

fn contribution(rank: usize, step: usize, i: usize) -> f32 {
    (rank + 1) as f32 * 0.5 + (i + step) as f32
}

/// The values printed after `rank R step S WHAT ` in `output`.
fn printed(output: &str, rank: usize, step: usize, what: &str) -> Vec<f32> {
    let prefix = format!("rank {rank} step {step} {what} ");
    let line = output
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no line `{prefix}…` in:\n{output}"));
    line.split(' ').map(|v| v.parse().unwrap()).collect()
}

#[test]
fn two_ranks_sum_whole_and_bucketed() {
    let (ok, output) = mpirun(&[]);
    assert!(ok, "mpirun failed:\n{output}");
    for rank in 0..RANKS {
        assert!(
            output.contains(&format!("rank {rank} of {RANKS} local {rank}")),
            "{output}"
        );
        for step in 0..3 {
            let want = |len: usize| -> Vec<f32> {
                (0..len)
                    .map(|i| (0..RANKS).map(|r| contribution(r, step, i)).sum())
                    .collect()
            };
            assert_eq!(printed(&output, rank, step, "sum"), want(10), "rank {rank} step {step}");
            assert_eq!(
                printed(&output, rank, step, "buckets"),
                want(23),
                "rank {rank} step {step}"
            );
        }
    }
}

#[test]
fn an_aborting_rank_ends_every_process() {
    let (ok, output) = mpirun(&["abort"]);
    assert!(!ok, "mpirun succeeded though rank 1 aborted:\n{output}");
    assert!(output.contains("rank 1: deliberate failure"), "{output}");
    assert!(!output.contains("was not stopped"), "{output}");
}
