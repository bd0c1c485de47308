//! Per-endpoint rate limits: evenly spaced send times.
//!
//! A bucket of one token: at `rate` per second, sends are at least
//! 1/rate apart, so no one-second window ever sees more than `rate` of them
//! (a receiver that says "5 per second" means it for every second). Instead
//! of refusing a delivery over the limit, the bucket says when it may go
//! and reserves that slot, so waiting deliveries are spread out, not
//! retried in a burst.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct TokenBucket {
    per_second: f64,
    /// Tokens available now; negative when future slots are reserved.
    tokens: f64,
    /// Tokens never accumulate beyond one.
    burst: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(per_second: u32, now: Instant) -> Self {
        let per_second = f64::from(per_second.max(1));
        Self {
            per_second,
            tokens: 1.0,
            burst: 1.0,
            last: now,
        }
    }

    pub fn rate(&self) -> u32 {
        self.per_second as u32
    }

    /// The least time between two sends.
    pub fn interval(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.per_second)
    }

    /// Takes the next slot: zero when a token is free now, else how long
    /// until the slot reserved for this call.
    pub fn reserve(&mut self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.last = now;
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.per_second)
        }
    }

    /// Whether nothing is reserved ahead: the bucket can be forgotten.
    pub fn is_idle(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * self.per_second >= self.burst
    }
}

/// A request budget for API callers: up to one second's worth at once,
/// refilled continuously. Unlike `TokenBucket`, a request over budget is
/// refused, not scheduled, and told when to come back.
#[derive(Debug, Clone)]
pub struct RequestBudget {
    per_second: f64,
    available: f64,
    last: Instant,
}

impl RequestBudget {
    pub fn new(per_second: u32, now: Instant) -> Self {
        let per_second = f64::from(per_second.max(1));
        Self {
            per_second,
            available: per_second,
            last: now,
        }
    }

    pub fn rate(&self) -> u32 {
        self.per_second as u32
    }

    /// Spends one request, or says how long until one is available.
    pub fn spend(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.available = (self.available + elapsed * self.per_second).min(self.per_second);
        self.last = now;
        if self.available >= 1.0 {
            self.available -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.available) / self.per_second))
        }
    }

    /// Whether the budget is full again, so it can be forgotten.
    pub fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.available + elapsed * self.per_second >= self.per_second
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_are_spaced_one_rate_interval_apart() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(5, t0);
        let waits: Vec<u128> = (0..4).map(|_| b.reserve(t0).as_millis()).collect();
        assert_eq!(waits, [0, 200, 400, 600]);
    }

    #[test]
    fn no_one_second_window_holds_more_than_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, t0);
        let times: Vec<Duration> = (0..40).map(|_| b.reserve(t0)).collect();
        for start in &times {
            let within = times
                .iter()
                .filter(|t| *t >= start && **t < *start + Duration::from_secs(1))
                .count();
            assert!(within <= 10, "{within}");
        }
    }

    #[test]
    fn an_idle_bucket_sends_at_once_but_saves_up_nothing_more() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(2, t0);
        b.reserve(t0);
        b.reserve(t0);
        assert!(!b.is_idle(t0));
        let later = t0 + Duration::from_secs(10);
        assert!(b.is_idle(later));
        assert_eq!(b.reserve(later), Duration::ZERO);
        assert_eq!(b.reserve(later), Duration::from_millis(500));
    }

    #[test]
    fn a_budget_allows_one_seconds_worth_at_once_then_says_when_to_return() {
        let t0 = Instant::now();
        let mut b = RequestBudget::new(4, t0);
        assert!((0..4).all(|_| b.spend(t0).is_ok()));
        assert_eq!(b.spend(t0), Err(Duration::from_millis(250)));
        assert!(b.spend(t0 + Duration::from_millis(250)).is_ok());
        assert!(b.spend(t0 + Duration::from_millis(250)).is_err());
        assert!(!b.is_full(t0 + Duration::from_millis(500)));
        assert!(b.is_full(t0 + Duration::from_millis(1250)));
    }
}
