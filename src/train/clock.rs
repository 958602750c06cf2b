//! UTC timestamps for the log: RFC 3339 with milliseconds
//! (`2026-11-29T16:04:05.123Z`), from the system clock, without a date crate.

use std::time::{SystemTime, UNIX_EPOCH};

const MS_PER_DAY: i64 = 86_400_000;

/// The proleptic Gregorian date `(year, month, day)` of a day counted from
/// 1970-01-01 (Howard Hinnant's `civil_from_days`: 400-year eras of 146,097
/// days, years taken to start in March so the leap day ends them).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of the era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of the era, 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of the March-based year, 0..=365
    let mp = (5 * doy + 2) / 153; // month from March, 0..=11
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `t` in UTC as RFC 3339 with milliseconds.
pub fn rfc3339_millis(t: SystemTime) -> String {
    let ms = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(before) => -(before.duration().as_millis() as i64),
    };
    let (days, ms) = (ms.div_euclid(MS_PER_DAY), ms.rem_euclid(MS_PER_DAY));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at_ms(ms: i64) -> String {
        let t = if ms >= 0 {
            UNIX_EPOCH + Duration::from_millis(ms as u64)
        } else {
            UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
        };
        rfc3339_millis(t)
    }

    #[test]
    fn known_instants() {
        // Expected values from Python's datetime.fromtimestamp(ms / 1000, timezone.utc).
        assert_eq!(at_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(at_ms(1_000_000_000_123), "2001-09-09T01:46:40.123Z");
        assert_eq!(at_ms(1_795_968_245_123), "2026-11-29T16:04:05.123Z");
        assert_eq!(at_ms(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
        assert_eq!(at_ms(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn every_day_to_2400_follows_the_previous_one() {
        let leap = |y: i64| y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
        let days_in = |y: i64, m: u32| match m {
            2 if leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        let mut date = (1970, 1, 1);
        for days in 0..157_000 {
            assert_eq!(civil_from_days(days), date, "day {days}");
            let (y, m, d) = date;
            date = if d < days_in(y, m) {
                (y, m, d + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
        }
    }
}
