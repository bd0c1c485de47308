//! Per-endpoint lanes: each endpoint has its own cap on requests in flight
//! and its own rate limit, so one slow or throttled receiver never takes the
//! capacity every other endpoint shares.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::domain::ids::EndpointId;
use crate::domain::rate::TokenBucket;

/// How long a delivery waits when its endpoint already has its fill of
/// requests in flight. Short enough to keep a busy endpoint busy; the
/// delivery is parked in the store meanwhile, holding nothing.
pub const BUSY_RETRY: Duration = Duration::from_millis(250);
/// How early a deferred delivery may come back and still take its slot.
const SLOT_TOLERANCE: Duration = Duration::from_millis(5);
/// Lanes kept before idle ones are forgotten.
const PRUNE_AT: usize = 4096;

pub enum Admission {
    /// Send now, holding this endpoint's slot until the request is done.
    Go(OwnedSemaphorePermit),
    /// Not now: try again after this long.
    Later(Duration),
}

pub struct Lanes {
    per_endpoint: usize,
    lanes: Mutex<HashMap<EndpointId, Lane>>,
}

struct Lane {
    in_flight: Arc<Semaphore>,
    bucket: Option<TokenBucket>,
    /// Send times already paid for by deliveries sent away to wait: the
    /// first delivery to come back after one takes it, so a deferred
    /// delivery is not charged twice.
    reserved: VecDeque<Instant>,
    /// When this lane last sent under a rate limit: a delivery that comes
    /// back late must not be sent right behind the one before it.
    last_sent: Option<Instant>,
}

impl Lanes {
    pub fn new(per_endpoint: usize) -> Self {
        Self {
            per_endpoint: per_endpoint.max(1),
            lanes: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a delivery to `endpoint` (limited to `rate_limit` per second,
    /// if set) may be sent now.
    pub fn admit(&self, endpoint: &EndpointId, rate_limit: Option<i64>, now: Instant) -> Admission {
        let mut lanes = self.lanes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if lanes.len() >= PRUNE_AT {
            let full = self.per_endpoint;
            lanes.retain(|_, lane| {
                lane.in_flight.available_permits() < full
                    || !lane.reserved.is_empty()
                    || lane.bucket.as_ref().is_some_and(|b| !b.is_idle(now))
            });
        }
        let lane = lanes.entry(endpoint.clone()).or_insert_with(|| Lane {
            in_flight: Arc::new(Semaphore::new(self.per_endpoint)),
            bucket: None,
            reserved: VecDeque::new(),
            last_sent: None,
        });
        let rate = rate_limit.and_then(|r| u32::try_from(r).ok()).filter(|r| *r > 0);
        match (rate, &lane.bucket) {
            (None, _) => {
                lane.bucket = None;
                lane.reserved.clear();
                lane.last_sent = None;
            }
            (Some(r), Some(b)) if b.rate() == r => {}
            (Some(r), _) => {
                lane.bucket = Some(TokenBucket::new(r, now));
                lane.reserved.clear();
            }
        }
        let Ok(permit) = lane.in_flight.clone().try_acquire_owned() else {
            return Admission::Later(BUSY_RETRY);
        };
        if let Some(bucket) = &mut lane.bucket {
            // The store keeps times to the millisecond: a delivery may come
            // back a hair before its slot.
            if lane.reserved.front().is_some_and(|at| *at <= now + SLOT_TOLERANCE) {
                lane.reserved.pop_front();
            } else {
                let wait = bucket.reserve(now);
                if !wait.is_zero() {
                    lane.reserved.push_back(now + wait);
                    return Admission::Later(wait);
                }
            }
            // Paid for, but too close behind the last send (it came back
            // late, or another took its slot): its slot moves to the
            // earliest time the spacing allows.
            if let Some(last) = lane.last_sent {
                let earliest = last + bucket.interval();
                if now + SLOT_TOLERANCE < earliest {
                    lane.reserved.push_front(earliest);
                    return Admission::Later(earliest - now);
                }
            }
            lane.last_sent = Some(now);
        }
        Admission::Go(permit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_at_its_cap_waits_while_others_go() {
        let lanes = Lanes::new(2);
        let (slow, other) = (EndpointId::generate(), EndpointId::generate());
        let now = Instant::now();
        let held: Vec<_> = (0..2)
            .map(|_| match lanes.admit(&slow, None, now) {
                Admission::Go(p) => p,
                Admission::Later(_) => panic!("under the cap"),
            })
            .collect();
        assert!(matches!(lanes.admit(&slow, None, now), Admission::Later(BUSY_RETRY)));
        assert!(matches!(lanes.admit(&other, None, now), Admission::Go(_)));
        drop(held);
        assert!(matches!(lanes.admit(&slow, None, now), Admission::Go(_)));
    }

    #[test]
    fn a_delivery_back_late_is_not_sent_right_behind_another() {
        let lanes = Lanes::new(100);
        let ep = EndpointId::generate();
        let t0 = Instant::now();
        assert!(matches!(lanes.admit(&ep, Some(5), t0), Admission::Go(_)));
        // Reserved at 200 ms and 400 ms.
        assert!(matches!(lanes.admit(&ep, Some(5), t0), Admission::Later(_)));
        assert!(matches!(lanes.admit(&ep, Some(5), t0), Admission::Later(_)));
        // The 400 ms one comes on time and takes the matured 200 ms slot…
        assert!(matches!(
            lanes.admit(&ep, Some(5), t0 + Duration::from_millis(400)),
            Admission::Go(_)
        ));
        // …so the 200 ms one, back late at 450 ms, waits until 600 ms.
        match lanes.admit(&ep, Some(5), t0 + Duration::from_millis(450)) {
            Admission::Later(wait) => assert_eq!(wait, Duration::from_millis(150)),
            Admission::Go(_) => panic!("sent 50 ms after the previous one"),
        }
    }

    #[test]
    fn a_rate_limit_spreads_sends_over_time() {
        let lanes = Lanes::new(100);
        let ep = EndpointId::generate();
        let now = Instant::now();
        let mut later = Vec::new();
        for _ in 0..4 {
            match lanes.admit(&ep, Some(2), now) {
                Admission::Go(_) => {}
                Admission::Later(d) => later.push(d.as_millis()),
            }
        }
        assert_eq!(later, [500, 1000, 1500]);
        // The deferred ones come back at their times and are not charged again.
        assert!(matches!(
            lanes.admit(&ep, Some(2), now + Duration::from_millis(500)),
            Admission::Go(_)
        ));
        assert!(matches!(
            lanes.admit(&ep, Some(2), now + Duration::from_millis(1000)),
            Admission::Go(_)
        ));
        // A newcomer at 1 s waits behind the slot still reserved at 1.5 s.
        assert!(matches!(
            lanes.admit(&ep, Some(2), now + Duration::from_millis(1000)),
            Admission::Later(_)
        ));
    }
}
