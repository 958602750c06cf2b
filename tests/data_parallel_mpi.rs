//! `mpirun -np 2 vdvae train --batch 4` trains the weights one process with
//! batch 8 trains, and a rank that fails ends the job with its message. Needs
//! Open MPI (Debian: openmpi-bin libopenmpi-dev) and the `mpi` feature:
//!
//! ```text
//! cargo test --release --features mpi --test data_parallel_mpi
//! ```
#![cfg(feature = "mpi")]

mod common;

use std::process::Command;

use common::process::run_with_timeout;
use common::runs::{assert_same_run, train_tiny, RUN_TIMEOUT};

/// mpirun and the flags a container (root, fewer cores than ranks) needs.
const MPIRUN: [&str; 3] = ["mpirun", "--allow-run-as-root", "--oversubscribe"];

#[test]
fn two_mpi_ranks_train_what_one_process_of_the_global_batch_trains() {
    let root = std::env::temp_dir().join(format!("vdvae-mpi-{}", std::process::id()));
    let (one, two) = (root.join("one"), root.join("two"));
    let _ = std::fs::remove_dir_all(&root);
    train_tiny(&one, &[], &["--steps", "5", "--batch", "8"]);
    let launcher: Vec<&str> = MPIRUN.iter().copied().chain(["-np", "2"]).collect();
    train_tiny(
        &two,
        &launcher,
        &["--steps", "5", "--batch", "4", "--bucket-mib", "0.05"],
    );
    assert_same_run(&one, &two);
    let _ = std::fs::remove_dir_all(&root);
}

/// Rank 0 and rank 1 as two app contexts of one job, rank 1 with `bad`
/// flags: the job ends (no hang) with a failure and rank 1's message.
fn job_with_failing_rank_1(bad: &[&str]) -> String {
    let dir = std::env::temp_dir().join(format!("vdvae-mpi-fail-{}", std::process::id()));
    let out = dir.to_str().unwrap();
    let bin = env!("CARGO_BIN_EXE_vdvae");
    let train = [
        "train",
        "--preset",
        "mnist-tiny",
        "--steps",
        "3",
        "--batch",
        "2",
        "--out",
        out,
    ];
    let mut cmd = Command::new(MPIRUN[0]);
    cmd.args(&MPIRUN[1..])
        .args(["-np", "1", bin])
        .args(train)
        .args([":", "-np", "1", bin])
        .args(train)
        .args(bad);
    let (ok, output) = run_with_timeout(&mut cmd, RUN_TIMEOUT);
    assert!(!ok, "the job fails when rank 1 fails:\n{output}");
    let _ = std::fs::remove_dir_all(&dir);
    output
}

#[test]
fn a_failing_rank_ends_the_job_with_its_message() {
    let output = job_with_failing_rank_1(&["--adapter", "99"]);
    assert!(output.contains("rank 1"), "the message names the rank:\n{output}");
    assert!(output.contains("99"), "and says what was wrong:\n{output}");
    let output = job_with_failing_rank_1(&["--data", "/nonexistent/images.gz", "--format", "mnist"]);
    assert!(
        output.contains("/nonexistent/images.gz"),
        "a missing file on one rank:\n{output}"
    );
}
