//! `log.jsonl`: one JSON object per training step (with its UTC time and wall
//! seconds), and one per held-out evaluation (`{"step": S, "time": .., "eval": {..}}`,
//! S the steps trained when it ran). Each line is appended with a single
//! write, so a killed process never leaves half a line; lines past the
//! checkpoint a run starts from (left by a run killed between two checkpoints)
//! are dropped when it starts, so the log has one line per step.

use std::io::Write;

use crate::checkpoint::write_atomically;
use crate::error::{Error, Result};
use crate::graph::executor::StepMetrics;
use crate::model::evaluate::EvalReport;

pub struct StepLog {
    file: std::fs::File,
    path: String,
}

/// Whether a line belongs to the run up to the checkpoint of iteration
/// `first_step`: a step line's `step` is the step's index, so it must be
/// below; an eval line's is the number of steps trained, so the eval of that
/// checkpoint itself stays. Torn or foreign lines do not.
fn before(line: &str, first_step: u32) -> bool {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
        return false;
    };
    match (v["step"].as_u64(), v.get("eval").is_some()) {
        (Some(step), false) => step < first_step as u64,
        (Some(step), true) => step <= first_step as u64,
        (None, _) => false,
    }
}

impl StepLog {
    /// Opens `DIR/log.jsonl` for a run whose first step is `first_step`,
    /// keeping the lines of earlier steps. Returns the log and how many lines
    /// it dropped.
    pub fn open(dir: &str, first_step: u32) -> Result<(StepLog, usize)> {
        let path = format!("{dir}/log.jsonl");
        let io = |e| Error::Io {
            path: path.clone(),
            source: e,
        };
        let dropped = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let kept: Vec<&str> = text.lines().filter(|l| before(l, first_step)).collect();
                let dropped = text.lines().count() - kept.len();
                if dropped > 0 {
                    let rest: String = kept.iter().map(|l| format!("{l}\n")).collect();
                    write_atomically(&path, rest.as_bytes())?;
                }
                dropped
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io(e)),
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        Ok((StepLog { file, path }, dropped))
    }

    /// Appends the line of one step: its metrics, when they arrived (`time`,
    /// RFC 3339 UTC) and its wall time in seconds.
    pub fn append(&mut self, s: &StepMetrics, time: &str, step_seconds: f64) -> Result<()> {
        let mut line = serde_json::json!({
            "step": s.iteration, "time": time, "step_seconds": step_seconds,
            "elbo": s.elbo, "distortion": s.distortion, "rate": s.rate,
            "grad_norm": s.grad_norm, "applied": s.applied, "skips": s.skips,
        });
        if !s.beta_per_level.is_empty() {
            line["beta_per_level"] = serde_json::json!(s.beta_per_level);
        }
        self.write_line(&line)
    }

    /// Appends the line of a held-out evaluation after `trained` steps.
    pub fn append_eval(&mut self, trained: u32, time: &str, r: &EvalReport) -> Result<()> {
        let eval = serde_json::json!({
            "images": r.images, "elbo_nats_per_dim": r.elbo_nats_per_dim,
            "elbo_nats_per_image": r.elbo_nats_per_image, "bits_per_dim": r.bits_per_dim,
            "distortion": r.distortion, "rate": r.rate, "kl_per_level": r.kl_per_level,
        });
        self.write_line(&serde_json::json!({"step": trained, "time": time, "eval": eval}))
    }

    fn write_line(&mut self, line: &serde_json::Value) -> Result<()> {
        // One buffer, one write: `writeln!` on a File may split a line
        // over several writes.
        self.file
            .write_all(format!("{line}\n").as_bytes())
            .map_err(|e| Error::Io {
                path: self.path.clone(),
                source: e,
            })
    }

    pub fn path(&self) -> &str {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_past_the_first_step_and_torn_lines_are_dropped() {
        let dir = std::env::temp_dir().join(format!("vdvae-steplog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let dir = dir.to_string_lossy().into_owned();
        let lines = "{\"step\":0}\n{\"step\":1}\n{\"step\":2}\n{\"step\":3}\n{\"ste";
        std::fs::write(format!("{dir}/log.jsonl"), lines).unwrap();
        let (_, dropped) = StepLog::open(&dir, 2).unwrap();
        assert_eq!(dropped, 3);
        let kept = std::fs::read_to_string(format!("{dir}/log.jsonl")).unwrap();
        assert_eq!(kept, "{\"step\":0}\n{\"step\":1}\n");
        let (_, dropped) = StepLog::open(&dir, 2).unwrap();
        assert_eq!(dropped, 0, "a consistent log is left as it is");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_eval_of_the_checkpoint_a_run_resumes_from_is_kept() {
        let dir = std::env::temp_dir().join(format!("vdvae-steplog-eval-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let dir = dir.to_string_lossy().into_owned();
        // Steps 0 and 1, the eval after 2 steps (the checkpoint), step 2, the eval after 3.
        let lines = "{\"step\":0}\n{\"step\":1}\n{\"step\":2,\"eval\":{}}\n{\"step\":2}\n{\"step\":3,\"eval\":{}}\n";
        std::fs::write(format!("{dir}/log.jsonl"), lines).unwrap();
        let (_, dropped) = StepLog::open(&dir, 2).unwrap();
        assert_eq!(dropped, 2);
        let kept = std::fs::read_to_string(format!("{dir}/log.jsonl")).unwrap();
        assert_eq!(kept, "{\"step\":0}\n{\"step\":1}\n{\"step\":2,\"eval\":{}}\n");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn beta_per_level_is_logged_only_under_kl_controls() {
        let dir = std::env::temp_dir().join(format!("vdvae-steplog-beta-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let dir = dir.to_string_lossy().into_owned();
        let _ = std::fs::remove_file(format!("{dir}/log.jsonl"));
        let mut s = StepMetrics {
            iteration: 0,
            elbo: 1.5,
            distortion: 1.0,
            rate: 0.5,
            kl_per_level: vec![0.25, 0.25],
            beta_per_level: Vec::new(),
            grad_norm: 2.0,
            applied: true,
            skips: 0,
        };
        let (mut log, _) = StepLog::open(&dir, 0).unwrap();
        log.append(&s, "2026-11-29T16:04:05.123Z", 0.5).unwrap();
        s.iteration = 1;
        s.beta_per_level = vec![0.5, 1.0];
        log.append(&s, "2026-11-29T16:04:05.623Z", 0.5).unwrap();
        let text = std::fs::read_to_string(log.path()).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert!(lines[0].get("beta_per_level").is_none(), "{text}");
        assert_eq!(lines[1]["beta_per_level"], serde_json::json!([0.5, 1.0]));
        for key in [
            "step",
            "time",
            "step_seconds",
            "elbo",
            "distortion",
            "rate",
            "grad_norm",
            "applied",
            "skips",
        ] {
            assert!(lines[1].get(key).is_some(), "{key} kept: {text}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
