//! The clock as a value. Every "now" in Herald comes from a `Clock` handed
//! down from `run`, so retry, lease, expiry and retention stories can run on
//! tokio's paused time instead of sleeping.

use std::sync::Arc;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use tokio::time::Instant;

#[derive(Clone, Debug, Default)]
pub struct Clock(Source);

#[derive(Clone, Debug, Default)]
enum Source {
    /// The system's wall clock.
    #[default]
    System,
    /// A wall time that moves with tokio's clock from a fixed start: paused
    /// in a test, it moves only when the test (or tokio's auto-advance) does.
    Tokio(Arc<Anchor>),
}

#[derive(Debug)]
struct Anchor {
    wall: DateTime<Utc>,
    instant: Instant,
}

impl Clock {
    /// The system's wall clock; what the server runs on.
    pub fn system() -> Self {
        Self(Source::System)
    }

    /// A clock that reads `start` now and then moves with tokio's time
    /// (`tokio::time::advance`, or auto-advance under `start_paused`).
    pub fn following_tokio(start: DateTime<Utc>) -> Self {
        Self(Source::Tokio(Arc::new(Anchor {
            wall: start,
            instant: Instant::now(),
        })))
    }

    /// The current time at the precision the store keeps (milliseconds), so
    /// an object reads back exactly as it was answered when created.
    pub fn now(&self) -> DateTime<Utc> {
        let now = match &self.0 {
            Source::System => Utc::now(),
            Source::Tokio(anchor) => {
                let elapsed = TimeDelta::from_std(anchor.instant.elapsed()).unwrap_or(TimeDelta::MAX);
                anchor
                    .wall
                    .checked_add_signed(elapsed)
                    .unwrap_or(DateTime::<Utc>::MAX_UTC)
            }
        };
        now.trunc_subsecs(3)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_tokio_clock_moves_only_with_tokio_time() {
        let start = DateTime::from_timestamp(1_700_000_000, 0).expect("a valid time");
        let clock = Clock::following_tokio(start);
        assert_eq!(clock.now(), start);
        tokio::time::advance(Duration::from_secs(300)).await;
        assert_eq!(clock.now(), start + TimeDelta::seconds(300));
    }

    #[test]
    fn the_system_clock_keeps_milliseconds() {
        let now = Clock::system().now();
        assert_eq!(now.timestamp_subsec_nanos() % 1_000_000, 0);
    }
}
