//! Brute-force guards for authentication: a budget of failed sign-ins per
//! client address, and a short memory of tokens that were looked up and not
//! found. Both are bounded maps: when full, the entry made first is
//! forgotten, so a flood of new addresses or tokens costs fixed memory.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// A map of at most `capacity` entries; inserting a new key into a full map
/// forgets the key inserted first. Every operation is O(1).
#[derive(Debug)]
pub struct BoundedMap<K, V> {
    capacity: usize,
    entries: HashMap<K, V>,
    /// Keys in insertion order; each key of `entries` exactly once.
    order: VecDeque<K>,
}

impl<K: Hash + Eq + Clone, V> BoundedMap<K, V> {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.entries.get(key)
    }

    /// The entry for `key`, made with `make` (evicting the oldest when full).
    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        if !self.entries.contains_key(&key) {
            if self.entries.len() >= self.capacity
                && let Some(oldest) = self.order.pop_front()
            {
                self.entries.remove(&oldest);
            }
            self.order.push_back(key.clone());
        }
        self.entries.entry(key).or_insert_with(make)
    }
}

/// A budget of failures: `capacity` at once, refilled evenly over a minute.
#[derive(Debug, Clone)]
pub struct FailureBucket {
    available: f64,
    last: DateTime<Utc>,
}

impl FailureBucket {
    fn full(capacity: u32, now: DateTime<Utc>) -> Self {
        Self {
            available: f64::from(capacity),
            last: now,
        }
    }

    fn refill(&mut self, capacity: u32, now: DateTime<Utc>) {
        let elapsed = (now - self.last).num_milliseconds().max(0) as f64 / 1000.0;
        let per_second = f64::from(capacity) / 60.0;
        self.available = (self.available + elapsed * per_second).min(f64::from(capacity));
        self.last = now;
    }

    /// How long until one failure is allowed again; zero when one is now.
    fn wait(&self, capacity: u32) -> Duration {
        if self.available >= 1.0 {
            return Duration::ZERO;
        }
        let per_second = f64::from(capacity) / 60.0;
        Duration::from_secs_f64((1.0 - self.available) / per_second)
    }
}

/// How many client addresses the failure limiter remembers.
pub const LIMITER_ADDRESSES: usize = 10_000;

/// Failed authentications per client address: `per_minute` at once,
/// refilled gradually. An address with its budget spent is refused before
/// its token is even looked up, until the budget refills.
#[derive(Debug)]
pub struct FailureLimiter {
    per_minute: u32,
    buckets: BoundedMap<IpAddr, FailureBucket>,
}

impl FailureLimiter {
    pub fn new(per_minute: u32, addresses: usize) -> Self {
        Self {
            per_minute: per_minute.max(1),
            buckets: BoundedMap::new(addresses),
        }
    }

    /// `None` when `client` may try a token now; else how long it must wait.
    /// An address not seen, or forgotten, has its whole budget.
    pub fn refusal(&mut self, client: IpAddr, now: DateTime<Utc>) -> Option<Duration> {
        let key = client_key(client);
        let per_minute = self.per_minute;
        let bucket = self.buckets.get(&key)?;
        let mut bucket = bucket.clone();
        bucket.refill(per_minute, now);
        let wait = bucket.wait(per_minute);
        (!wait.is_zero()).then_some(wait)
    }

    /// Spends one failure from `client`'s budget.
    pub fn failed(&mut self, client: IpAddr, now: DateTime<Utc>) {
        let per_minute = self.per_minute;
        let bucket = self
            .buckets
            .get_or_insert_with(client_key(client), || FailureBucket::full(per_minute, now));
        bucket.refill(per_minute, now);
        bucket.available = (bucket.available - 1.0).max(0.0);
    }

    pub fn addresses(&self) -> usize {
        self.buckets.len()
    }
}

/// The address a budget belongs to. An IPv6 client usually holds a whole
/// /64, so its budget is the /64's; an IPv4-mapped address is its IPv4 one.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// A wait as `Retry-After` says it: whole seconds, rounded up, at least one,
/// so a client that waits that long gets in.
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// How many unknown tokens the negative cache remembers.
pub const NEGATIVE_CACHE_TOKENS: usize = 10_000;

/// Token hashes looked up and not found, remembered for `ttl`, so a token
/// presented again costs no lookup.
///
/// This never hides a token made later: a made token holds 256 random
/// bits, so no one can have presented it before it was made. A token made
/// on this node works at once; on every node, within `ttl` at the latest
/// for the (impossible) case of a guess that was remembered.
#[derive(Debug)]
pub struct NegativeCache {
    ttl: Duration,
    unknown: BoundedMap<[u8; 32], DateTime<Utc>>,
}

impl NegativeCache {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            unknown: BoundedMap::new(capacity),
        }
    }

    /// Whether `hash` was looked up, not found, less than `ttl` ago.
    pub fn is_unknown(&self, hash: &[u8; 32], now: DateTime<Utc>) -> bool {
        self.unknown.get(hash).is_some_and(|until| *until > now)
    }

    pub fn remember(&mut self, hash: [u8; 32], now: DateTime<Utc>) {
        let until = now + chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::MAX);
        *self.unknown.get_or_insert_with(hash, || until) = until;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn at(secs: f64) -> DateTime<Utc> {
        t0() + chrono::Duration::milliseconds((secs * 1000.0) as i64)
    }

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

    #[test]
    fn an_address_is_refused_after_its_budget_and_others_are_not() {
        let mut l = FailureLimiter::new(10, 100);
        for _ in 0..10 {
            assert_eq!(l.refusal(A, t0()), None);
            l.failed(A, t0());
        }
        assert_eq!(l.refusal(A, t0()), Some(Duration::from_secs(6)));
        assert_eq!(l.refusal(B, t0()), None);
    }

    #[test]
    fn the_budget_refills_gradually() {
        let mut l = FailureLimiter::new(10, 100);
        (0..10).for_each(|_| l.failed(A, t0()));
        assert_eq!(l.refusal(A, at(3.0)), Some(Duration::from_secs(3)));
        assert_eq!(l.refusal(A, at(6.0)), None);
        l.failed(A, at(6.0));
        assert!(l.refusal(A, at(6.0)).is_some());
        assert_eq!(l.refusal(A, at(66.0)), None);
        (0..10).for_each(|_| l.failed(A, at(66.0)));
        assert!(l.refusal(A, at(66.0)).is_some(), "refilled to ten, not more");
    }

    #[test]
    fn the_limiter_remembers_a_bounded_number_of_addresses() {
        let mut l = FailureLimiter::new(1, 3);
        for i in 1..=5u8 {
            l.failed(IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)), t0());
        }
        assert_eq!(l.addresses(), 3);
        assert_eq!(
            l.refusal(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), t0()),
            None,
            "oldest forgotten"
        );
        assert!(l.refusal(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5)), t0()).is_some());
    }

    #[test]
    fn an_ipv6_client_is_counted_by_its_64() {
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let other: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert_eq!(client_key(one), client_key(other));
        let mapped = IpAddr::V6(Ipv4Addr::new(127, 0, 0, 1).to_ipv6_mapped());
        assert_eq!(client_key(mapped), A);
        assert_ne!(client_key(IpAddr::V6(Ipv6Addr::LOCALHOST)), A);
    }

    #[test]
    fn an_unknown_token_is_remembered_for_its_ttl_within_the_bound() {
        let mut c = NegativeCache::new(Duration::from_secs(60), 2);
        c.remember([1; 32], t0());
        assert!(c.is_unknown(&[1; 32], at(59.0)));
        assert!(!c.is_unknown(&[1; 32], at(60.0)));
        assert!(!c.is_unknown(&[2; 32], t0()));
        c.remember([2; 32], t0());
        c.remember([3; 32], t0());
        assert!(!c.is_unknown(&[1; 32], t0()), "oldest forgotten");
        assert!(c.is_unknown(&[3; 32], t0()));
    }
}
