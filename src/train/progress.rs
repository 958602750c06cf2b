//! What a run shows while it trains: the progress bar with the last step's
//! metrics, eval lines printed above it, and log.jsonl, each step with its
//! UTC time and wall seconds.

use std::time::{Instant, SystemTime};

use super::clock::rfc3339_millis;
use super::log::StepLog;
use crate::error::Result;
use crate::graph::executor::StepMetrics;
use crate::model::evaluate::EvalReport;

pub struct Progress {
    pub bar: indicatif::ProgressBar,
    /// None on a data-parallel rank other than 0: it shows and logs nothing.
    log: Option<StepLog>,
    /// Dimensions of an image, for nats/image.
    dims: usize,
    /// When the previous step's metrics arrived, or when the last pause
    /// (checkpoint, pictures, eval) ended.
    since: Instant,
    /// The metrics of the last step reported.
    pub last: Option<StepMetrics>,
}

/// The β in force at each level, for the progress line: one value when all
/// levels share it, else the range.
fn beta_summary(betas: &[f64]) -> String {
    let Some(&first) = betas.first() else {
        return String::new();
    };
    let (lo, hi) = betas.iter().fold((first, first), |(a, b), &x| (a.min(x), b.max(x)));
    if hi - lo <= 1e-6 * hi.abs().max(1.0) {
        format!("  β {first:.3}")
    } else {
        format!("  β {lo:.3}..{hi:.3} over {} levels", betas.len())
    }
}

impl Progress {
    /// A bar of `steps` steps over `log`, for images of `dims` dimensions;
    /// without a log, a hidden bar.
    pub fn new(steps: u32, log: Option<StepLog>, dims: usize) -> Progress {
        let bar = indicatif::ProgressBar::new(steps as u64).with_style(
            indicatif::ProgressStyle::with_template(
                "train {bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
            )
            .expect("a valid progress template"),
        );
        if log.is_none() {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        Progress {
            bar,
            log,
            dims,
            since: Instant::now(),
            last: None,
        }
    }

    /// Shows and logs a step's metrics, when a step has some. Steps are
    /// pipelined (metrics arrive one step late), so a step's wall time is the
    /// time since the previous step's metrics arrived: the steady rate.
    pub fn step(&mut self, metrics: Option<StepMetrics>) -> Result<()> {
        let Some(s) = metrics else { return Ok(()) };
        let seconds = self.since.elapsed().as_secs_f64();
        self.since = Instant::now();
        self.bar.set_message(format!(
            "elbo {:.4} nats/dim ({:.2} nats/image)  grad norm {:.1}  skips {}{}",
            s.elbo,
            s.elbo * self.dims as f64,
            s.grad_norm,
            s.skips,
            beta_summary(&s.beta_per_level)
        ));
        if let Some(log) = &mut self.log {
            log.append(&s, &rfc3339_millis(SystemTime::now()), seconds)?;
        }
        self.last = Some(s);
        Ok(())
    }

    /// Starts the next step's clock now, so that the time of a pause between
    /// steps (a checkpoint, pictures, an eval) is no step's.
    pub fn resume_clock(&mut self) {
        self.since = Instant::now();
    }

    /// Prints and logs a held-out evaluation after `trained` steps.
    pub fn eval(&mut self, trained: u32, r: &EvalReport) -> Result<()> {
        let Some(log) = &mut self.log else {
            return Ok(());
        };
        // Above the bar; `bar.println` would print nothing when stderr is not a terminal.
        self.bar.suspend(|| {
            eprintln!(
                "step {trained}: held-out ELBO {:.4} nats/dim ({:.2} nats/image; distortion {:.4}, rate {:.4}) on {} images",
                r.elbo_nats_per_dim, r.elbo_nats_per_image, r.distortion, r.rate, r.images
            )
        });
        log.append_eval(trained, &rfc3339_millis(SystemTime::now()), r)
    }
}
