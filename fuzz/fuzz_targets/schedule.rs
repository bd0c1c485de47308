//! Retry schedules and durations as written in the configuration file and
//! in `HERALD_*` variables: parsing never panics, what parses prints and
//! parses back to the same value, and every duration, and every delay a
//! schedule hands out, can be added to or taken from the current time, as
//! the dispatcher ("retry at") and retention ("older than") do.
#![no_main]

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use herald_fuzz::domain::profile::{MAX_TIMEOUT, parse_timeout};
use herald_fuzz::domain::retry::{JITTER_FRACTION, RetrySchedule, parse_duration};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(d) = parse_duration(text) {
        let printed = humantime::format_duration(d).to_string();
        assert_eq!(parse_duration(&printed), Ok(d), "{text:?} printed as {printed:?}");
        assert!(from_now(d).is_some(), "{text:?} is {d:?}, past any date");
    }
    if let Ok(d) = parse_timeout(text) {
        assert!(!d.is_zero() && d <= MAX_TIMEOUT, "{text:?} gave timeout {d:?}");
    }
    if let Ok(schedule) = RetrySchedule::parse(text) {
        check_schedule(text, &schedule);
    }
});

fn check_schedule(text: &str, schedule: &RetrySchedule) {
    let printed = schedule.to_string();
    assert_eq!(
        RetrySchedule::parse(&printed).as_ref(),
        Ok(schedule),
        "{text:?} printed as {printed:?}"
    );
    let retries = schedule.max_attempts() - 1;
    for attempt in 1..=retries {
        let base = schedule.next_delay(attempt, 0.0).expect("a retry within the schedule");
        for jitter in [0.0, 0.5, 0.999_999_999] {
            let delay = schedule
                .next_delay(attempt, jitter)
                .expect("a retry within the schedule");
            assert!(delay >= base && delay <= base.mul_f64(1.0 + JITTER_FRACTION) + base.mul_f64(1e-9));
            assert!(
                from_now(delay).is_some(),
                "{text:?}: retry {attempt} waits {delay:?}, past any date"
            );
        }
    }
    assert_eq!(schedule.next_delay(retries + 1, 0.5), None);
    assert_eq!(schedule.next_delay(0, 0.5), None);
}

/// The times `d` before and after now, when a date can hold both.
fn from_now(d: Duration) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let d = TimeDelta::from_std(d).ok()?;
    let now = Utc::now();
    Some((now.checked_sub_signed(d)?, now.checked_add_signed(d)?))
}
