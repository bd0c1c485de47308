//! Prometheus metrics at `/metrics`: counters the hot paths bump, and
//! gauges (queue depth, lag, endpoint states) read from the store on scrape.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use chrono::{NaiveDate, NaiveTime};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::domain::clock::Clock;
use crate::store::{Removed, Storage, Store, StoreResult, Upkeep};

type Labels = [(&'static str, &'static str); 1];
/// A broker source's name, and for messages what became of them.
type SourceLabels = Vec<(&'static str, String)>;

/// What became of one broker message, as the `outcome` label says it.
#[derive(Debug, Clone, Copy)]
pub enum SourceOutcome {
    Accepted,
    /// Its eventId was already stored; acknowledged.
    Duplicate,
    /// Sent to the broker's dead letter.
    Rejected,
    /// Left with the broker: the store could not take it.
    Retried,
}

impl SourceOutcome {
    fn label(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Duplicate => "duplicate",
            Self::Rejected => "rejected",
            Self::Retried => "retried",
        }
    }
}

/// Where a token was presented, as the `surface` label says it.
#[derive(Debug, Clone, Copy)]
pub enum AuthSurface {
    /// A bearer token on the API.
    Api,
    /// The dashboard's sign-in form, or a page of a session.
    Dashboard,
}

impl AuthSurface {
    fn label(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Dashboard => "dashboard",
        }
    }
}

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

/// How a delivery reached the dispatcher, as the `via` label says it.
#[derive(Debug, Clone, Copy)]
pub enum Via {
    /// Leased by its publish batch and handed over directly.
    HandOff,
    /// Claimed from the store: a retry, another node's, or one left over
    /// when the dispatcher had no room.
    Claim,
}

impl Via {
    fn label(self) -> &'static str {
        match self {
            Self::HandOff => "handoff",
            Self::Claim => "claim",
        }
    }
}

pub struct Metrics {
    registry: Registry,
    published: Counter,
    dispatched: Family<Labels, Counter>,
    attempts: Family<Labels, Counter>,
    attempt_seconds: Histogram,
    queue_depth: Gauge,
    queue_lag_seconds: Gauge<f64, AtomicU64>,
    endpoints: Family<Labels, Gauge>,
    source_messages: Family<SourceLabels, Counter>,
    source_connected: Family<SourceLabels, Gauge>,
    source_reconnects: Family<SourceLabels, Counter>,
    history_removed: Family<Labels, Counter>,
    oldest_message_age_seconds: Gauge<f64, AtomicU64>,
    database_size_bytes: Gauge,
    history_partitions: Gauge,
    history_partition_oldest: Gauge,
    history_partition_newest: Gauge,
    history_partitions_dropped: Counter,
    history_partition_carried: Counter,
    auth_failures: Family<Labels, Counter>,
    auth_rate_limited: Family<Labels, Counter>,
    auth_token_lookups: Counter,
    operator_emails: Family<Labels, Gauge>,
    operator_emails_sent: Counter,
    operator_emails_failed: Counter,
    operator_email_errors: Counter,
    /// What the queue's lag is measured against.
    clock: Clock,
}

impl Metrics {
    pub fn new(clock: Clock) -> Arc<Self> {
        let mut registry = Registry::with_prefix("herald");
        let published = Counter::default();
        registry.register("messages_published", "Messages accepted by the API", published.clone());
        let dispatched = Family::<Labels, Counter>::default();
        registry.register(
            "deliveries_dispatched",
            "Deliveries taken up by this node's dispatcher: handoff (leased by the publish itself) or claim",
            dispatched.clone(),
        );
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
        let source_messages = Family::<SourceLabels, Counter>::default();
        registry.register(
            "source_messages",
            "Broker messages by source and outcome: accepted, duplicate (eventId already stored), rejected (dead letter), retried (store unavailable)",
            source_messages.clone(),
        );
        let source_connected = Family::<SourceLabels, Gauge>::default();
        registry.register(
            "source_connected",
            "1 while a broker source is connected and consuming, else 0",
            source_connected.clone(),
        );
        let source_reconnects = Family::<SourceLabels, Counter>::default();
        registry.register(
            "source_reconnects",
            "Broker connections lost and made again, by source",
            source_reconnects.clone(),
        );
        let history_removed = Family::<Labels, Counter>::default();
        registry.register(
            "history_removed_rows",
            "Rows the history sweep removed, by table: messages, deliveries, attempts",
            history_removed.clone(),
        );
        let oldest_message_age_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "oldest_message_age_seconds",
            "Age of the oldest message kept (0 when none is): stays near the history window when the sweep keeps up",
            oldest_message_age_seconds.clone(),
        );
        let database_size_bytes = Gauge::default();
        registry.register(
            "database_size_bytes",
            "Size of the database on disk (PostgreSQL: pg_database_size; SQLite: pages times page size)",
            database_size_bytes.clone(),
        );
        let history_partitions = Gauge::default();
        registry.register(
            "history_partitions",
            "Days the history is partitioned into (PostgreSQL; 0 where it is not partitioned)",
            history_partitions.clone(),
        );
        let history_partition_oldest = Gauge::default();
        registry.register(
            "history_partition_oldest_day_timestamp_seconds",
            "Start (Unix time, UTC midnight) of the oldest day partition kept; 0 when there is none",
            history_partition_oldest.clone(),
        );
        let history_partition_newest = Gauge::default();
        registry.register(
            "history_partition_newest_day_timestamp_seconds",
            "Start (Unix time, UTC midnight) of the newest day partition made ahead; 0 when there is none",
            history_partition_newest.clone(),
        );
        let history_partitions_dropped = Counter::default();
        registry.register(
            "history_partitions_dropped",
            "Day partitions past the history retention dropped by this node (messages, deliveries and attempts of the day)",
            history_partitions_dropped.clone(),
        );
        let history_partition_carried = Counter::default();
        registry.register(
            "history_partition_carried_messages",
            "Messages still being delivered when their day was dropped, kept in the default partition until they end",
            history_partition_carried.clone(),
        );
        let auth_failures = Family::<Labels, Counter>::default();
        registry.register(
            "auth_failures",
            "Tokens presented that did not authenticate, by surface: api, dashboard (sign-in)",
            auth_failures.clone(),
        );
        let auth_rate_limited = Family::<Labels, Counter>::default();
        registry.register(
            "auth_rate_limited",
            "Requests answered 429 without a lookup because their address had too many failed authentications, by surface",
            auth_rate_limited.clone(),
        );
        let auth_token_lookups = Counter::default();
        registry.register(
            "auth_token_lookups",
            "Database lookups of a presented token by its hash (the admin token and remembered unknown tokens need none)",
            auth_token_lookups.clone(),
        );
        let operator_emails = Family::<Labels, Gauge>::default();
        registry.register(
            "operator_emails",
            "Operator emails in the outbox by state: pending (waiting for a try), sent, failed (given up)",
            operator_emails.clone(),
        );
        let operator_emails_sent = Counter::default();
        registry.register(
            "operator_emails_sent",
            "Operator emails the SMTP server accepted, sent by this node",
            operator_emails_sent.clone(),
        );
        let operator_emails_failed = Counter::default();
        registry.register(
            "operator_emails_failed",
            "Operator emails given up on this node after their retry schedule ran out",
            operator_emails_failed.clone(),
        );
        let operator_email_errors = Counter::default();
        registry.register(
            "operator_email_errors",
            "Tries at sending an operator email that failed (each is retried on schedule)",
            operator_email_errors.clone(),
        );
        Arc::new(Self {
            registry,
            operator_emails,
            operator_emails_sent,
            operator_emails_failed,
            operator_email_errors,
            history_removed,
            oldest_message_age_seconds,
            database_size_bytes,
            history_partitions,
            history_partition_oldest,
            history_partition_newest,
            history_partitions_dropped,
            history_partition_carried,
            auth_failures,
            auth_rate_limited,
            auth_token_lookups,
            source_messages,
            source_connected,
            source_reconnects,
            published,
            dispatched,
            attempts,
            attempt_seconds,
            queue_depth,
            queue_lag_seconds,
            endpoints,
            clock,
        })
    }

    pub fn published(&self) {
        self.published.inc();
    }

    pub fn dispatched(&self, via: Via, deliveries: usize) {
        self.dispatched
            .get_or_create(&[("via", via.label())])
            .inc_by(deliveries as u64);
    }

    pub fn attempt(&self, outcome: Outcome, seconds: Option<f64>) {
        self.attempts.get_or_create(&[("outcome", outcome.label())]).inc();
        if let Some(s) = seconds {
            self.attempt_seconds.observe(s);
        }
    }

    pub fn auth_failed(&self, surface: AuthSurface) {
        self.auth_failures.get_or_create(&[("surface", surface.label())]).inc();
    }

    pub fn auth_rate_limited(&self, surface: AuthSurface) {
        self.auth_rate_limited
            .get_or_create(&[("surface", surface.label())])
            .inc();
    }

    pub fn auth_token_lookup(&self) {
        self.auth_token_lookups.inc();
    }

    pub fn source_message(&self, source: &str, outcome: SourceOutcome) {
        self.source_messages
            .get_or_create(&vec![
                ("source", source.to_owned()),
                ("outcome", outcome.label().to_owned()),
            ])
            .inc();
    }

    pub fn source_connected(&self, source: &str, connected: bool) {
        self.source_connected
            .get_or_create(&vec![("source", source.to_owned())])
            .set(i64::from(connected));
    }

    pub fn source_reconnect(&self, source: &str) {
        self.source_reconnects
            .get_or_create(&vec![("source", source.to_owned())])
            .inc();
    }

    /// One try at sending an operator email: sent, or failed (`gave_up`: for good).
    pub fn operator_email(&self, sent: bool, gave_up: bool) {
        if sent {
            self.operator_emails_sent.inc();
        } else {
            self.operator_email_errors.inc();
            if gave_up {
                self.operator_emails_failed.inc();
            }
        }
    }

    /// Counts what one history sweep batch removed.
    pub fn history_removed(&self, removed: Removed) {
        for (table, n) in [
            ("messages", removed.messages),
            ("deliveries", removed.deliveries),
            ("attempts", removed.attempts),
        ] {
            self.history_removed.get_or_create(&[("table", table)]).inc_by(n);
        }
    }

    /// Counts what one partition upkeep dropped.
    pub fn partitions_upkept(&self, upkeep: &Upkeep) {
        self.history_partitions_dropped.inc_by(upkeep.dropped.len() as u64);
        self.history_partition_carried.inc_by(upkeep.carried);
    }

    /// The text exposition, with the store's gauges read now.
    pub async fn render(&self, store: &dyn Store) -> StoreResult<String> {
        let now = self.clock.now();
        let g = store.gauges().await?;
        self.queue_depth.set(g.queued);
        let lag = g
            .most_overdue
            .map(|due| (now - due).num_milliseconds().max(0) as f64 / 1000.0)
            .unwrap_or(0.0);
        self.queue_lag_seconds.set(lag);
        let age = store
            .oldest_message_at()
            .await?
            .map(|oldest| (now - oldest).num_milliseconds().max(0) as f64 / 1000.0)
            .unwrap_or(0.0);
        self.oldest_message_age_seconds.set(age);
        self.set_storage(&store.storage().await?);
        for (state, n) in [
            ("healthy", g.endpoints_healthy),
            ("failing", g.endpoints_failing),
            ("disabled", g.endpoints_disabled),
        ] {
            self.endpoints.get_or_create(&[("state", state)]).set(n);
        }
        let emails = store.email_counts().await?;
        for (state, n) in [
            ("pending", emails.pending),
            ("sent", emails.sent),
            ("failed", emails.failed),
        ] {
            self.operator_emails.get_or_create(&[("state", state)]).set(n);
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        Ok(out)
    }

    fn set_storage(&self, storage: &Storage) {
        self.database_size_bytes.set(storage.bytes);
        let days = storage.partitions.clone().unwrap_or_default();
        let start = |day: Option<NaiveDate>| day.map_or(0, |d| d.and_time(NaiveTime::MIN).and_utc().timestamp());
        self.history_partitions
            .set(i64::try_from(days.count).unwrap_or(i64::MAX));
        self.history_partition_oldest.set(start(days.oldest));
        self.history_partition_newest.set(start(days.newest));
    }
}
