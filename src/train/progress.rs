//! What a run shows while it trains: the progress bar with the last step's
//! metrics, eval lines printed above it, and log.jsonl, each step with its
//! UTC time and wall seconds. Where stderr is not a terminal (a log file,
//! nohup, CI) the bar draws nothing, so a plain line goes to the log every
//! [`PLAIN_EVERY`] instead.

use std::io::IsTerminal;
use std::time::{Duration, Instant, SystemTime};

use super::log::StepLog;
use crate::error::Result;
use crate::graph::executor::StepMetrics;
use crate::model::evaluate::EvalReport;

/// The UTC time now as RFC 3339 with milliseconds (`2026-11-29T16:04:05.123Z`).
fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// How often a run whose stderr is not a terminal logs a progress line.
pub const PLAIN_EVERY: Duration = Duration::from_secs(30);

pub struct Progress {
    pub bar: indicatif::ProgressBar,
    /// Whether plain progress lines take the bar's place: stderr is not a
    /// terminal on the rank that shows progress.
    plain: bool,
    /// When the last plain progress line was logged.
    last_plain: Option<Instant>,
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
        let plain = log.is_some() && !std::io::stderr().is_terminal();
        Progress {
            bar,
            plain,
            last_plain: None,
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
        let metrics = format!(
            "elbo {:.4} nats/dim ({:.2} nats/image)  grad norm {:.1}  skips {}{}",
            s.elbo,
            s.elbo * self.dims as f64,
            s.grad_norm,
            s.skips,
            beta_summary(&s.beta_per_level)
        );
        self.plain_line(&metrics);
        self.bar.set_message(metrics);
        if let Some(log) = &mut self.log {
            log.append(&s, &now_rfc3339(), seconds)?;
        }
        self.last = Some(s);
        Ok(())
    }

    /// Logs `metrics` as a plain line when stderr is not a terminal and the
    /// last line is [`PLAIN_EVERY`] old (the first one at once, the last step
    /// always). Metrics arrive one step late, after the bar counted their step,
    /// so the bar's position is the number of steps they complete.
    fn plain_line(&mut self, metrics: &str) {
        if !self.plain {
            return;
        }
        let (done, total) = (self.bar.position(), self.bar.length().unwrap_or(0));
        if self.last_plain.is_some_and(|t| t.elapsed() < PLAIN_EVERY) && done < total {
            return;
        }
        self.last_plain = Some(Instant::now());
        let elapsed = self.bar.elapsed().as_secs();
        let eta = if done >= total { 0 } else { self.bar.eta().as_secs() };
        ::log::info!(
            "train step {done}/{total} [{} elapsed, {} left]  {metrics}",
            humantime::format_duration(Duration::from_secs(elapsed)),
            humantime::format_duration(Duration::from_secs(eta))
        );
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
            ::log::info!(
                "step {trained}: held-out ELBO {:.4} nats/dim ({:.2} nats/image; distortion {:.4}, rate {:.4}) on {} images",
                r.elbo_nats_per_dim, r.elbo_nats_per_image, r.distortion, r.rate, r.images
            )
        });
        log.append_eval(trained, &now_rfc3339(), r)
    }
}
