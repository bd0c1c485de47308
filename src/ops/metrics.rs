//! Prometheus metrics at `/metrics`: counters the hot paths bump, and
//! gauges (queue depth, lag, endpoint states) read from the store on scrape.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::store::{Store, StoreResult};

type Labels = [(&'static str, &'static str); 1];

/// How an attempt ended, as the `outcome` label says it.
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    Delivered,
    Retried,
    Exhausted,
    Dropped,
    /// Not sent yet: its endpoint was at its concurrency or rate limit.
    Deferred,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retried => "retried",
            Self::Exhausted => "exhausted",
            Self::Dropped => "dropped",
            Self::Deferred => "deferred",
        }
    }
}

pub struct Metrics {
    registry: Registry,
    published: Counter,
    attempts: Family<Labels, Counter>,
    attempt_seconds: Histogram,
    queue_depth: Gauge,
    queue_lag_seconds: Gauge<f64, AtomicU64>,
    endpoints: Family<Labels, Gauge>,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("herald");
        let published = Counter::default();
        registry.register("messages_published", "Messages accepted by the API", published.clone());
        let attempts = Family::<Labels, Counter>::default();
        registry.register(
            "attempts",
            "Delivery attempts by outcome: delivered, retried, exhausted (no retry left), dropped, deferred (endpoint at its limit)",
            attempts.clone(),
        );
        // 1 ms to about 33 s.
        let attempt_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "attempt_duration_seconds",
            "Time from sending a request to its answer",
            attempt_seconds.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Deliveries waiting or being sent (pending and sending)",
            queue_depth.clone(),
        );
        let queue_lag_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "queue_lag_seconds",
            "How long the most overdue delivery has been due (0 when none is late)",
            queue_lag_seconds.clone(),
        );
        let endpoints = Family::<Labels, Gauge>::default();
        registry.register(
            "endpoints",
            "Endpoints by state: healthy, failing, disabled",
            endpoints.clone(),
        );
        Arc::new(Self {
            registry,
            published,
            attempts,
            attempt_seconds,
            queue_depth,
            queue_lag_seconds,
            endpoints,
        })
    }

    pub fn published(&self) {
        self.published.inc();
    }

    pub fn attempt(&self, outcome: Outcome, seconds: Option<f64>) {
        self.attempts.get_or_create(&[("outcome", outcome.label())]).inc();
        if let Some(s) = seconds {
            self.attempt_seconds.observe(s);
        }
    }

    /// The text exposition, with the store's gauges read now.
    pub async fn render(&self, store: &dyn Store) -> StoreResult<String> {
        let now = crate::store::now();
        let g = store.gauges().await?;
        self.queue_depth.set(g.queued);
        let lag = g
            .most_overdue
            .map(|due| (now - due).num_milliseconds().max(0) as f64 / 1000.0)
            .unwrap_or(0.0);
        self.queue_lag_seconds.set(lag);
        for (state, n) in [
            ("healthy", g.endpoints_healthy),
            ("failing", g.endpoints_failing),
            ("disabled", g.endpoints_disabled),
        ] {
            self.endpoints.get_or_create(&[("state", state)]).set(n);
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        Ok(out)
    }
}
