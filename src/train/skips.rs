//! A run whose updates are all skipped learns nothing: every gradient norm at
//! or above `skip_threshold`, or NaN or infinite (a learning rate too high,
//! Adam betas of 1). The official VDVAE trains such a run to the end and exits
//! 0; here a warning comes at [`WARN_AFTER`] skipped updates in a row, and at
//! `limit` the run stops with an error that says what was seen and what to try.

use std::collections::VecDeque;

use crate::error::{Error, Result};
use crate::graph::executor::StepMetrics;

/// Skipped updates in a row that bring a warning.
pub const WARN_AFTER: u32 = 10;
/// The default limit (`--max-skips-in-a-row`).
pub const DEFAULT_LIMIT: u32 = 50;
/// Gradient norms an error or warning quotes.
const RECENT: usize = 5;

/// Counts the skipped updates in a row.
pub struct SkipGuard {
    /// Skipped updates in a row that stop the run; 0: never.
    limit: u32,
    /// The run's `skip_threshold` (<= 0: skips only on NaN or infinite norms).
    threshold: f64,
    in_a_row: u32,
    recent: VecDeque<f32>,
    warned: bool,
}

impl SkipGuard {
    pub fn new(limit: u32, threshold: f64) -> SkipGuard {
        SkipGuard {
            limit,
            threshold,
            in_a_row: 0,
            recent: VecDeque::with_capacity(RECENT),
            warned: false,
        }
    }

    /// Takes a step's metrics: an error once `limit` updates in a row were
    /// skipped, a warning (logged) at [`WARN_AFTER`].
    pub fn see(&mut self, m: &StepMetrics) -> Result<()> {
        if m.applied {
            self.in_a_row = 0;
            self.warned = false;
            self.recent.clear();
            return Ok(());
        }
        self.in_a_row += 1;
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(m.grad_norm);
        if self.limit > 0 && self.in_a_row >= self.limit {
            return Err(Error::Input(format!(
                "training stopped: the last {} updates were all skipped, so the model learned nothing \
                 from them ({}). The last checkpoint written stays as it was. Try: {}; or raise \
                 --max-skips-in-a-row (0 never stops)",
                self.in_a_row,
                self.seen(),
                self.advice()
            )));
        }
        if self.in_a_row >= WARN_AFTER && !self.warned {
            self.warned = true;
            ::log::warn!(
                "{} updates in a row were skipped ({}); the run stops at {}",
                self.in_a_row,
                self.seen(),
                self.limit
            );
        }
        Ok(())
    }

    /// The recent gradient norms against the threshold.
    fn seen(&self) -> String {
        let norms: Vec<String> = self.recent.iter().map(|g| format!("{g:.4}")).collect();
        let threshold = if self.threshold > 0.0 {
            format!("skip_threshold {}", self.threshold)
        } else {
            "no skip_threshold: only NaN or infinite norms skip".to_string()
        };
        let kind = if self.recent.iter().all(|g| g.is_finite()) {
            "all finite"
        } else if self.recent.iter().all(|g| !g.is_finite()) {
            "all NaN or infinite"
        } else {
            "some NaN or infinite"
        };
        format!("recent gradient norms {} ({kind}), {threshold}", norms.join(", "))
    }

    /// What to change, from what the norms were.
    fn advice(&self) -> &'static str {
        if self.recent.iter().any(|g| !g.is_finite()) {
            "a lower lr, Adam betas below 1, or a smaller grad_clip (NaN or infinite norms come from \
             an update that diverged)"
        } else {
            "a higher skip_threshold (or -1: never skip on the norm), a lower lr, or normalized data \
             (every norm is at or above the threshold)"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(applied: bool, grad_norm: f32) -> StepMetrics {
        StepMetrics {
            iteration: 0,
            elbo: 1.0,
            distortion: 1.0,
            rate: 0.0,
            kl_per_level: vec![],
            beta_per_level: vec![],
            grad_norm,
            applied,
            skips: 0,
        }
    }

    #[test]
    fn the_limit_stops_only_an_unbroken_run_of_skips() {
        let mut g = SkipGuard::new(3, 400.0);
        for applied in [false, false, true, false, false] {
            g.see(&step(applied, 500.0)).unwrap();
        }
        let e = g.see(&step(false, 500.0)).unwrap_err().to_string();
        assert!(e.contains("last 3 updates were all skipped"), "{e}");
        assert!(e.contains("skip_threshold 400"), "{e}");
        assert!(e.contains("500.0000"), "names the norms: {e}");
        assert!(e.contains("higher skip_threshold"), "{e}");
    }

    #[test]
    fn non_finite_norms_get_their_own_advice() {
        let mut g = SkipGuard::new(2, -1.0);
        g.see(&step(false, f32::NAN)).unwrap();
        let e = g.see(&step(false, f32::INFINITY)).unwrap_err().to_string();
        assert!(e.contains("all NaN or infinite"), "{e}");
        assert!(e.contains("a lower lr, Adam betas below 1"), "{e}");
    }

    #[test]
    fn a_limit_of_zero_never_stops() {
        let mut g = SkipGuard::new(0, 1.0);
        for _ in 0..100 {
            g.see(&step(false, 5.0)).unwrap();
        }
    }
}
