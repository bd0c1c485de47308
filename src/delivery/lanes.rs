//! Per-endpoint lanes: each endpoint has its own cap on requests in flight
//! and its own rate limit, so one slow or throttled receiver never takes the
//! capacity every other endpoint shares.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::domain::ids::EndpointId;
use crate::domain::rate::TokenBucket;

/// The shortest wait of a delivery sent back to the store because its
/// endpoint already has its fill of requests in flight and of deliveries
/// queued behind them. It is parked there meanwhile, holding nothing.
pub const BUSY_RETRY: Duration = Duration::from_millis(250);
/// The longest a delivery is parked for a busy endpoint: its pace is judged
/// afresh after that, should the receiver have become faster.
const PARK_HORIZON: Duration = Duration::from_secs(60);
/// How early a deferred delivery may come back and still take its slot.
const SLOT_TOLERANCE: Duration = Duration::from_millis(5);
/// Lanes kept before idle ones are forgotten.
const PRUNE_AT: usize = 4096;

pub enum Admission {
    /// Send now, holding this endpoint's slot until the request is done.
    Go(OwnedSemaphorePermit),
    /// The endpoint has its fill in flight: queue for the next slot it
    /// frees. A receiver slower than the offered load then stays busy;
    /// parked in the store instead, it would sit idle until the parked
    /// delivery came due again.
    Queue(Waiter),
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
    /// Deliveries queued for a slot; at most the in-flight cap, so an
    /// endpoint holds at most twice its cap of claimed deliveries.
    queued: Arc<AtomicUsize>,
    /// How long a request to this endpoint takes, smoothed: the pace at
    /// which its backlog is brought back from the store.
    request_time: Duration,
    /// When the last delivery parked for this endpoint comes due. The next
    /// one is parked a slot's worth later, so a backlog comes back at the
    /// pace the receiver takes it instead of all at once, again and again.
    parked_until: Option<Instant>,
}

/// A place in an endpoint's queue for its next free slot.
pub struct Waiter {
    in_flight: Arc<Semaphore>,
    _seat: Seat,
}

/// Gives the queue place back however the wait ends.
struct Seat(Arc<AtomicUsize>);

impl Drop for Seat {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Waiter {
    /// The endpoint's next free slot, or `None` if none frees by
    /// `deadline` (the delivery must then go back to the store before its
    /// lease runs out). Slots go to the queue in order.
    pub async fn slot(self, deadline: tokio::time::Instant) -> Option<OwnedSemaphorePermit> {
        tokio::time::timeout_at(deadline, self.in_flight.clone().acquire_owned())
            .await
            .ok()?
            .ok()
    }
}

impl Lane {
    /// How long the next delivery over the endpoint's queue waits: until
    /// those in flight and queued are through (about one request time),
    /// then behind the others already parked, one slot's worth apart.
    fn park(&mut self, per_endpoint: usize, now: Instant) -> Duration {
        let slot = self.request_time / u32::try_from(per_endpoint).unwrap_or(u32::MAX);
        let earliest = now + self.request_time.max(BUSY_RETRY);
        let after = self.parked_until.filter(|t| *t > earliest).unwrap_or(earliest);
        let at = (after + slot).min(now + PARK_HORIZON);
        self.parked_until = Some(at);
        at - now
    }
}

impl Lanes {
    /// Tells the endpoint's lane how long a request to it took.
    pub fn took(&self, endpoint: &EndpointId, took: Duration) {
        let mut lanes = self.lanes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(lane) = lanes.get_mut(endpoint) {
            lane.request_time = (lane.request_time * 7 + took) / 8;
        }
    }

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
                    || lane.queued.load(Ordering::Relaxed) > 0
                    || lane.parked_until.is_some_and(|t| t > now)
                    || !lane.reserved.is_empty()
                    || lane.bucket.as_ref().is_some_and(|b| !b.is_idle(now))
            });
        }
        let lane = lanes.entry(endpoint.clone()).or_insert_with(|| Lane {
            in_flight: Arc::new(Semaphore::new(self.per_endpoint)),
            bucket: None,
            reserved: VecDeque::new(),
            last_sent: None,
            queued: Arc::new(AtomicUsize::new(0)),
            request_time: BUSY_RETRY,
            parked_until: None,
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
            // A rate-limited lane paces by its bucket; queueing there would
            // spend slots the bucket has already promised to others.
            if lane.bucket.is_none() && lane.queued.load(Ordering::Relaxed) < self.per_endpoint {
                lane.queued.fetch_add(1, Ordering::Relaxed);
                return Admission::Queue(Waiter {
                    in_flight: lane.in_flight.clone(),
                    _seat: Seat(lane.queued.clone()),
                });
            }
            if lane.bucket.is_some() {
                return Admission::Later(BUSY_RETRY);
            }
            return Admission::Later(lane.park(self.per_endpoint, now));
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
    fn an_endpoint_at_its_cap_queues_while_others_go() {
        let lanes = Lanes::new(2);
        let (slow, other) = (EndpointId::generate(), EndpointId::generate());
        let now = Instant::now();
        let held: Vec<_> = (0..2)
            .map(|_| match lanes.admit(&slow, None, now) {
                Admission::Go(p) => p,
                _ => panic!("under the cap"),
            })
            .collect();
        let queued: Vec<_> = (0..2)
            .map(|_| match lanes.admit(&slow, None, now) {
                Admission::Queue(w) => w,
                _ => panic!("room in the queue"),
            })
            .collect();
        // The queue is as long as the cap: the next one goes back to the store.
        assert!(matches!(lanes.admit(&slow, None, now), Admission::Later(_)));
        assert!(matches!(lanes.admit(&other, None, now), Admission::Go(_)));
        drop(queued);
        assert!(matches!(lanes.admit(&slow, None, now), Admission::Queue(_)));
        drop(held);
        assert!(matches!(lanes.admit(&slow, None, now), Admission::Go(_)));
    }

    #[test]
    fn a_backlog_comes_back_from_the_store_at_the_endpoints_pace() {
        let lanes = Lanes::new(2);
        let ep = EndpointId::generate();
        let now = Instant::now();
        let _busy: Vec<_> = (0..4).map(|_| lanes.admit(&ep, None, now)).collect();
        // Requests to it take a second: two slots take one each half second.
        for _ in 0..64 {
            lanes.took(&ep, Duration::from_secs(1));
        }
        let waits: Vec<u128> = (0..3)
            .map(|_| match lanes.admit(&ep, None, now) {
                Admission::Later(wait) => wait.as_millis(),
                _ => panic!("the lane and its queue are full"),
            })
            .collect();
        // After the queue ahead (about a second), then half a second apart.
        assert!((1450..=1500).contains(&waits[0]), "{waits:?}");
        assert!(
            waits.windows(2).all(|w| (495..=505).contains(&(w[1] - w[0]))),
            "{waits:?}"
        );
        // Never parked past the horizon, however long the backlog.
        let longest = (0..500)
            .map(|_| match lanes.admit(&ep, None, now) {
                Admission::Later(wait) => wait,
                _ => panic!("the lane and its queue are full"),
            })
            .max();
        assert_eq!(longest, Some(PARK_HORIZON));
    }

    fn soon(after: Duration) -> tokio::time::Instant {
        tokio::time::Instant::now() + after
    }

    #[tokio::test]
    async fn a_queued_delivery_takes_the_next_free_slot_or_gives_up_in_time() {
        let lanes = Lanes::new(1);
        let ep = EndpointId::generate();
        let now = Instant::now();
        let Admission::Go(sending) = lanes.admit(&ep, None, now) else {
            panic!("an idle lane")
        };
        let Admission::Queue(first) = lanes.admit(&ep, None, now) else {
            panic!("room in the queue")
        };
        // Nothing frees: the wait ends at its budget, and its place is free again.
        assert!(first.slot(soon(Duration::from_millis(20))).await.is_none());
        let Admission::Queue(second) = lanes.admit(&ep, None, now) else {
            panic!("the place was given back")
        };
        drop(sending);
        assert!(second.slot(soon(Duration::from_secs(5))).await.is_some());
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
            _ => panic!("sent 50 ms after the previous one"),
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
                Admission::Queue(_) => panic!("a rate-limited lane never queues"),
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
