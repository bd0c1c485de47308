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
    #[error("'{0}' is longer than 100 years")]
    DurationTooLong(String),
}

/// Longest duration Herald reads: beyond any sane setting, yet short enough
/// that a time this far from now, jitter included, is still a date (a retry
/// of a quarter of a million years would make the dispatcher panic). A year is
/// humantime's: 365.25 days.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 31_557_600);

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
        if let Some(long) = delays.iter().find(|d| **d > MAX_DURATION) {
            return Err(ScheduleError::DurationTooLong(
                humantime::format_duration(*long).to_string(),
            ));
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

/// Longest wait a receiver's `Retry-After` can impose: a receiver may slow
/// Herald down, not park its deliveries for days.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// What becomes of a delivery after one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    RetryIn(Duration),
    /// Final failure: the schedule is used up, or the answer says not to retry.
    GiveUp,
    /// 410 Gone: final, and the endpoint is to be disabled.
    Gone,
}

impl RetrySchedule {
    /// Judges one attempt. `status` is 0 when no HTTP answer came back;
    /// `retry_after` is the answer's `Retry-After`, honoured on 429, 502, 503
    /// and 504 when it asks for more than the schedule's wait (capped at
    /// [`MAX_RETRY_AFTER`]). With `retry_on_4xx` off, a 4xx other than 408
    /// and 429 is final. `jitter` is a sample in `[0, 1)`.
    pub fn judge(
        &self,
        status: u16,
        retry_after: Option<Duration>,
        attempts_made: u32,
        retry_on_4xx: bool,
        jitter: f64,
    ) -> Verdict {
        match status {
            200..=299 => return Verdict::Delivered,
            410 => return Verdict::Gone,
            408 | 429 => {}
            400..=499 if !retry_on_4xx => return Verdict::GiveUp,
            _ => {}
        }
        let Some(delay) = self.next_delay(attempts_made, jitter) else {
            return Verdict::GiveUp;
        };
        let asked = match status {
            429 | 502..=504 => retry_after.map(|d| d.min(MAX_RETRY_AFTER)),
            _ => None,
        };
        Verdict::RetryIn(asked.map_or(delay, |asked| asked.max(delay)))
    }
}

/// Reads a `Retry-After` value: delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
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

/// Parses one human duration such as `500ms`, `5s`, `2h` or `1h 30m`, of at
/// most [`MAX_DURATION`].
pub fn parse_duration(s: &str) -> Result<Duration, ScheduleError> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let d = humantime::parse_duration(s).map_err(|_| ScheduleError::BadDuration(s.to_owned()))?;
    if d > MAX_DURATION {
        return Err(ScheduleError::DurationTooLong(s.to_owned()));
    }
    Ok(d)
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
    fn judges_answers_by_status() {
        let s = RetrySchedule::parse("1s,2s").unwrap();
        let second = Duration::from_secs(1);
        assert_eq!(s.judge(204, None, 1, true, 0.0), Verdict::Delivered);
        assert_eq!(s.judge(500, None, 1, true, 0.0), Verdict::RetryIn(second));
        assert_eq!(s.judge(0, None, 1, true, 0.0), Verdict::RetryIn(second));
        assert_eq!(s.judge(302, None, 1, false, 0.0), Verdict::RetryIn(second));
        assert_eq!(s.judge(500, None, 3, true, 0.0), Verdict::GiveUp);
        assert_eq!(s.judge(400, None, 1, true, 0.0), Verdict::RetryIn(second));
        assert_eq!(s.judge(400, None, 1, false, 0.0), Verdict::GiveUp);
        assert_eq!(s.judge(429, None, 1, false, 0.0), Verdict::RetryIn(second));
        assert_eq!(s.judge(408, None, 1, false, 0.0), Verdict::RetryIn(second));
        assert_eq!(s.judge(410, None, 1, true, 0.0), Verdict::Gone);
    }

    #[test]
    fn retry_after_slows_down_within_bounds() {
        let s = RetrySchedule::parse("1s,2s").unwrap();
        let secs = Duration::from_secs;
        assert_eq!(s.judge(429, Some(secs(30)), 1, true, 0.0), Verdict::RetryIn(secs(30)));
        assert_eq!(s.judge(503, Some(secs(30)), 1, true, 0.0), Verdict::RetryIn(secs(30)));
        // Never sooner than the schedule, never longer than the cap.
        assert_eq!(s.judge(503, Some(secs(0)), 1, true, 0.0), Verdict::RetryIn(secs(1)));
        assert_eq!(
            s.judge(429, Some(secs(86_400)), 1, true, 0.0),
            Verdict::RetryIn(MAX_RETRY_AFTER)
        );
        // Only answers that mean "slow down" are honoured, and only while retries remain.
        assert_eq!(s.judge(500, Some(secs(30)), 1, true, 0.0), Verdict::RetryIn(secs(1)));
        assert_eq!(s.judge(429, Some(secs(30)), 3, true, 0.0), Verdict::GiveUp);
    }

    #[test]
    fn reads_both_forms_of_retry_after() {
        use chrono::TimeZone;
        let now = chrono::Utc.with_ymd_and_hms(2026, 11, 23, 8, 49, 0).unwrap();
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("Mon, 23 Nov 2026 08:49:37 GMT", now),
            Some(Duration::from_secs(37))
        );
        assert_eq!(
            parse_retry_after("Mon, 23 Nov 2026 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn durations_past_any_date_are_refused() {
        // Found by `fuzz/run schedule`: with jitter, the second retry fell
        // beyond the last date a timestamp can hold.
        assert_eq!(
            RetrySchedule::parse("0,50m7777777777777s"),
            Err(ScheduleError::DurationTooLong("50m7777777777777s".into()))
        );
        assert_eq!(
            parse_duration("100years 1s"),
            Err(ScheduleError::DurationTooLong("100years 1s".into()))
        );
        assert!(RetrySchedule::new(vec![MAX_DURATION + Duration::from_secs(1)]).is_err());
        let longest = RetrySchedule::parse("36500d").unwrap();
        let delay = longest.next_delay(1, 0.999_999).unwrap();
        assert!(
            chrono::Utc::now()
                .checked_add_signed(chrono::TimeDelta::from_std(delay).unwrap())
                .is_some()
        );
    }

    #[test]
    fn display_round_trips() {
        let s = RetrySchedule::parse("5s,1m,2h").unwrap();
        assert_eq!(RetrySchedule::parse(&s.to_string()).unwrap(), s);
    }
}
