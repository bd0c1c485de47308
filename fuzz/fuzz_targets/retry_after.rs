//! A receiver's `Retry-After` header: delay-seconds or an HTTP date, any
//! bytes at all. Reading it never panics, and the verdict it feeds into never
//! waits longer than the cap or sooner than the schedule.
#![no_main]

use std::time::Duration;

use chrono::{TimeZone, Utc};
use herald_fuzz::domain::retry::{MAX_RETRY_AFTER, RetrySchedule, Verdict, parse_retry_after};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|value: &str| {
    let now = Utc.with_ymd_and_hms(2026, 11, 23, 8, 49, 0).unwrap();
    let asked = parse_retry_after(value, now);
    if let Ok(seconds) = value.trim().parse::<u64>() {
        assert_eq!(asked, Some(Duration::from_secs(seconds)));
    }
    let schedule = RetrySchedule::parse("1s,2s").unwrap();
    for status in [429, 503, 500] {
        match schedule.judge(status, asked, 1, true, 0.5) {
            Verdict::RetryIn(delay) => {
                let scheduled = schedule.next_delay(1, 0.5).unwrap();
                assert!(delay >= scheduled, "{value:?}: {delay:?} is sooner than the schedule");
                assert!(
                    delay <= MAX_RETRY_AFTER.max(scheduled),
                    "{value:?}: {delay:?} is past the cap"
                );
            }
            other => panic!("{value:?}: status {status} with retries left gave {other:?}"),
        }
    }
});
