//! Commands that must end: a test that starts a training run (or an MPI job)
//! fails when the command outlives its time instead of blocking the suite.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `cmd` to its end: its success and its stdout then stderr; panics when
/// it is still running after `timeout` (it is killed first).
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> (bool, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    // Both pipes are read in threads so that a full pipe cannot stall the command.
    let readers: Vec<_> = [
        Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ]
    .into_iter()
    .map(|mut pipe| {
        std::thread::spawn(move || {
            let mut text = String::new();
            pipe.read_to_string(&mut text).unwrap();
            text
        })
    })
    .collect();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > timeout {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("{cmd:?} was still running after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output: String = readers.into_iter().map(|r| r.join().unwrap()).collect();
    (status.success(), output)
}
