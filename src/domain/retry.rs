//! The retry schedule: how long to wait after each failed attempt.

use std::fmt;
use std::time::Duration;

/// Delays between attempts. `[1s, 2s]` means three attempts in all: the first
/// at once, the second 1 s after the first fails, the third 2 s after that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule(Vec<Duration>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScheduleError {
    #[error("'{0}' is not a duration (examples: 500ms, 5s, 5m, 2h)")]
    BadDuration(String),
    #[error("the schedule has more than {max} retries")]
    TooLong { max: usize },
}

/// Upper bound on retries, so a typo cannot make a delivery live for ever.
const MAX_RETRIES: usize = 100;

/// Jitter adds up to this fraction of the delay: deliveries spread out after an
/// outage, yet never happen earlier than the schedule promises.
pub const JITTER_FRACTION: f64 = 0.1;

impl RetrySchedule {
    pub fn new(delays: Vec<Duration>) -> Result<Self, ScheduleError> {
        if delays.len() > MAX_RETRIES {
            return Err(ScheduleError::TooLong { max: MAX_RETRIES });
        }
        Ok(Self(delays))
    }

    /// Parses `"5s,5m,30m"`; an empty string means "never retry".
    pub fn parse(s: &str) -> Result<Self, ScheduleError> {
        let delays = s
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(parse_duration)
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(delays)
    }

    /// Total number of attempts the schedule allows.
    pub fn max_attempts(&self) -> u32 {
        self.0.len() as u32 + 1
    }

    /// The wait before the next attempt, after `attempts_made` attempts have
    /// failed, or `None` when the delivery is exhausted. `jitter` is a sample
    /// in `[0, 1)` supplied by the caller so this stays a pure function.
    pub fn next_delay(&self, attempts_made: u32, jitter: f64) -> Option<Duration> {
        let index = usize::try_from(attempts_made.checked_sub(1)?).ok()?;
        let base = *self.0.get(index)?;
        let extra = base.mul_f64(JITTER_FRACTION * jitter.clamp(0.0, 1.0));
        Some(base + extra)
    }
}

impl Default for RetrySchedule {
    fn default() -> Self {
        let h = 3600;
        Self(
            [5, 5 * 60, 30 * 60, 2 * h, 5 * h, 10 * h, 10 * h]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
        )
    }
}

impl fmt::Display for RetrySchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|d| humantime::format_duration(*d).to_string())
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// Parses one human duration such as `500ms`, `5s`, `2h` or `1h 30m`.
pub fn parse_duration(s: &str) -> Result<Duration, ScheduleError> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(s).map_err(|_| ScheduleError::BadDuration(s.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_default() {
        let parsed = RetrySchedule::parse("5s,5m,30m,2h,5h,10h,10h").unwrap();
        assert_eq!(parsed, RetrySchedule::default());
        assert_eq!(parsed.max_attempts(), 8);
    }

    #[test]
    fn two_delays_mean_three_attempts() {
        let s = RetrySchedule::parse("1s, 2s").unwrap();
        assert_eq!(s.max_attempts(), 3);
        assert_eq!(s.next_delay(1, 0.0), Some(Duration::from_secs(1)));
        assert_eq!(s.next_delay(2, 0.0), Some(Duration::from_secs(2)));
        assert_eq!(s.next_delay(3, 0.0), None);
    }

    #[test]
    fn jitter_only_ever_delays_and_by_at_most_ten_percent() {
        let s = RetrySchedule::parse("10s").unwrap();
        assert_eq!(s.next_delay(1, 0.0), Some(Duration::from_secs(10)));
        assert_eq!(
            s.next_delay(1, 0.999_999),
            Some(Duration::from_secs(10).mul_f64(1.0 + 0.1 * 0.999_999))
        );
        assert_eq!(s.next_delay(1, 7.0), Some(Duration::from_secs(11)));
        assert_eq!(s.next_delay(1, -3.0), Some(Duration::from_secs(10)));
    }

    #[test]
    fn zero_attempts_made_has_no_retry_delay() {
        assert_eq!(RetrySchedule::default().next_delay(0, 0.5), None);
    }

    #[test]
    fn empty_schedule_means_a_single_attempt() {
        let s = RetrySchedule::parse("").unwrap();
        assert_eq!(s.max_attempts(), 1);
        assert_eq!(s.next_delay(1, 0.0), None);
    }

    #[test]
    fn bad_durations_are_named() {
        assert_eq!(
            RetrySchedule::parse("5s,soon"),
            Err(ScheduleError::BadDuration("soon".into()))
        );
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
    }

    #[test]
    fn display_round_trips() {
        let s = RetrySchedule::parse("5s,1m,2h").unwrap();
        assert_eq!(RetrySchedule::parse(&s.to_string()).unwrap(), s);
    }
}
