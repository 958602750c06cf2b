//! Stopping a training run early (Ctrl-C, SIGTERM): the first request lets the
//! current step finish and the checkpoint be written; a second one may end the
//! process at once, except while a checkpoint's files are being renamed into
//! place, so the model, EMA and optimizer files always come from the same step.
//!
//! The binary installs the signal handlers (they call [`StopSignal::request`]);
//! the library only reads the flag, so tests can stop a run without signals.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

/// The exit status of a run stopped by a signal (the shell's 128 + SIGINT).
pub const INTERRUPTED_EXIT_CODE: i32 = 130;

/// Stop requests shared by signal handlers and the training loop. Clones share
/// one state.
#[derive(Clone, Debug, Default)]
pub struct StopSignal {
    requests: Arc<AtomicUsize>,
    renaming: Arc<AtomicBool>,
}

impl StopSignal {
    pub fn new() -> StopSignal {
        StopSignal::default()
    }

    /// Records a request to stop. Returns true when the caller may end the
    /// process now: this is a second request and no checkpoint is being
    /// renamed into place. Async-signal-safe (atomics only).
    pub fn request(&self) -> bool {
        let n = self.requests.fetch_add(1, SeqCst) + 1;
        n >= 2 && !self.renaming.load(SeqCst)
    }

    /// Whether a stop was requested.
    pub fn requested(&self) -> bool {
        self.requests.load(SeqCst) > 0
    }

    /// Runs `renames` (microseconds of work) with an immediate exit held
    /// back; when a second request came meanwhile, the returned flag is true
    /// and the caller should return at once.
    pub(crate) fn while_renaming<T>(&self, renames: impl FnOnce() -> T) -> (T, bool) {
        self.renaming.store(true, SeqCst);
        let out = renames();
        self.renaming.store(false, SeqCst);
        // With SeqCst, a handler that saw `renaming` true incremented the
        // counter before this load, so no second request is lost.
        (out, self.requests.load(SeqCst) >= 2)
    }
}

/// `args` as one line a POSIX shell runs as the same command: words with
/// anything but safe characters are single-quoted.
pub fn shell_command(args: &[String]) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_-./:=@%+,".contains(c);
    args.iter()
        .map(|a| {
            if !a.is_empty() && a.chars().all(safe) {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_request_may_exit_except_while_renaming() {
        let stop = StopSignal::new();
        assert!(!stop.requested());
        assert!(!stop.request(), "the first request only asks");
        assert!(stop.requested());
        let (_, second_came) = stop.while_renaming(|| {
            assert!(!stop.request(), "no exit in the middle of the renames");
        });
        assert!(second_came, "the loop learns of the held-back request");
        assert!(stop.clone().request(), "clones share the count");
    }

    #[test]
    fn shell_command_quotes_what_a_shell_would_split() {
        let args = ["vdvae", "--out", "runs/my run", "--config", "it's.json", "--seed", ""];
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            shell_command(&args),
            r"vdvae --out 'runs/my run' --config 'it'\''s.json' --seed ''"
        );
    }
}
