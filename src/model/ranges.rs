//! The ranges of the optimizer's hyperparameters, checked when a config is
//! read: a value out of range (a β of 1, a negative lr, NaN) trains nothing
//! useful and fails only later, as skipped updates or NaN weights.

use super::config::HParams;
use crate::error::{Error, Result};

/// The official VDVAE's value for "off" of `grad_clip` and `skip_threshold`
/// (hps.py); the optimizer treats any value <= 0 as never clip / never skip.
const OFF: f64 = -1.0;

/// An error naming `key`, its value and the range allowed.
fn out_of_range(key: &str, value: f64, range: &str) -> Error {
    Error::Input(format!("{key} = {value} is out of range: it must be {range}"))
}

/// `key`'s value must be finite and in `[low, high)` (`high` None: no upper bound).
fn check_in(key: &str, value: f64, low: f64, high: Option<f64>, range: &str) -> Result<()> {
    let inside = value.is_finite() && value >= low && high.is_none_or(|h| value < h);
    if inside {
        Ok(())
    } else {
        Err(out_of_range(key, value, range))
    }
}

/// `grad_clip` and `skip_threshold`: a positive norm, or exactly -1 for "off".
fn check_norm(key: &str, value: f64, off_means: &str) -> Result<()> {
    if value == OFF || (value.is_finite() && value > 0.0) {
        return Ok(());
    }
    Err(out_of_range(
        key,
        value,
        &format!("a positive gradient norm, or exactly -1 to {off_means} (the official VDVAE's \"off\")"),
    ))
}

/// Checks every optimizer hyperparameter of `h`.
pub fn check_optimizer(h: &HParams) -> Result<()> {
    check_in("adam_beta1", h.adam_beta1, 0.0, Some(1.0), "in [0, 1)")?;
    check_in("adam_beta2", h.adam_beta2, 0.0, Some(1.0), "in [0, 1)")?;
    check_in("ema_rate", h.ema_rate, 0.0, Some(1.0), "in [0, 1)")?;
    check_in("wd", h.wd, 0.0, None, "a finite number >= 0")?;
    check_in(
        "warmup_iters",
        h.warmup_iters,
        0.0,
        None,
        "a finite number of steps >= 0",
    )?;
    if !(h.lr.is_finite() && h.lr > 0.0) {
        return Err(out_of_range("lr", h.lr, "a finite number > 0"));
    }
    check_norm("grad_clip", h.grad_clip, "never clip")?;
    check_norm("skip_threshold", h.skip_threshold, "never skip on the norm")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_of(edit: impl FnOnce(&mut HParams)) -> String {
        let mut h = HParams::default();
        edit(&mut h);
        check_optimizer(&h).unwrap_err().to_string()
    }

    #[test]
    fn the_defaults_and_the_off_sentinel_pass() {
        check_optimizer(&HParams::default()).unwrap();
        let h = HParams {
            grad_clip: -1.0,
            skip_threshold: -1.0,
            adam_beta1: 0.0,
            ema_rate: 0.0,
            ..HParams::default()
        };
        check_optimizer(&h).unwrap();
    }

    #[test]
    fn each_value_out_of_range_names_its_key_value_and_range() {
        type Edit = fn(&mut HParams);
        let cases: [(Edit, &str); 7] = [
            (
                |h| h.adam_beta1 = 1.0,
                "adam_beta1 = 1 is out of range: it must be in [0, 1)",
            ),
            (
                |h| h.adam_beta2 = -0.1,
                "adam_beta2 = -0.1 is out of range: it must be in [0, 1)",
            ),
            (
                |h| h.ema_rate = 1.5,
                "ema_rate = 1.5 is out of range: it must be in [0, 1)",
            ),
            (
                |h| h.wd = -0.01,
                "wd = -0.01 is out of range: it must be a finite number >= 0",
            ),
            (|h| h.lr = 0.0, "lr = 0 is out of range: it must be a finite number > 0"),
            (|h| h.lr = -1e-3, "lr = -0.001 is out of range"),
            (|h| h.warmup_iters = -5.0, "warmup_iters = -5 is out of range"),
        ];
        for (edit, want) in cases {
            let e = err_of(edit);
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn nan_is_always_an_error() {
        assert!(err_of(|h| h.lr = f64::NAN).contains("lr = NaN"));
        assert!(err_of(|h| h.adam_beta1 = f64::NAN).contains("adam_beta1 = NaN"));
        assert!(err_of(|h| h.ema_rate = f64::NAN).contains("ema_rate = NaN"));
        assert!(err_of(|h| h.wd = f64::INFINITY).contains("wd = inf"));
        assert!(err_of(|h| h.grad_clip = f64::NAN).contains("grad_clip = NaN"));
        assert!(err_of(|h| h.skip_threshold = f64::NAN).contains("skip_threshold = NaN"));
    }

    #[test]
    fn a_non_positive_norm_other_than_minus_one_points_at_the_sentinel() {
        for bad in [0.0, -2.0, -0.5] {
            let e = err_of(|h| h.grad_clip = bad);
            assert!(e.contains(&format!("grad_clip = {bad}")), "{e}");
            assert!(e.contains("exactly -1 to never clip"), "{e}");
            let e = err_of(|h| h.skip_threshold = bad);
            assert!(e.contains("exactly -1 to never skip on the norm"), "{e}");
        }
    }
}
