//! What each broker source is doing, for `/health` and the metrics; kept
//! here so the server's state can hold it without knowing the brokers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::clock::Clock;
use crate::telemetry::metrics::{Metrics, SourceOutcome};

/// The connection state of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionState {
    Connecting,
    Connected,
    Reconnecting,
    Stopped,
}

/// One source's state and counts, shared by its consumer and the API.
pub struct SourceStatus {
    name: String,
    /// When a last error happened is read here.
    clock: Clock,
    kind: &'static str,
    inner: Mutex<Inner>,
    accepted: AtomicU64,
    duplicates: AtomicU64,
    rejected: AtomicU64,
    retried: AtomicU64,
    reconnects: AtomicU64,
}

struct Inner {
    state: ConnectionState,
    last_error: Option<(String, DateTime<Utc>)>,
}

/// A source as `/health` shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceHealth {
    pub name: String,
    /// `rabbitmq` or `nats`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub state: ConnectionState,
    /// The last connection or store error, if any.
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    /// Broker messages stored as Herald messages.
    pub accepted: u64,
    /// Broker messages whose eventId was already stored (acknowledged).
    pub duplicates: u64,
    /// Broker messages rejected to the dead letter.
    pub rejected: u64,
    /// Broker messages left with the broker because the store failed.
    pub retried: u64,
    /// Connections lost and made again.
    pub reconnects: u64,
}

impl SourceStatus {
    fn new(name: String, kind: &'static str, clock: Clock) -> Self {
        Self {
            name,
            clock,
            kind,
            inner: Mutex::new(Inner {
                state: ConnectionState::Connecting,
                last_error: None,
            }),
            accepted: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn connected(&self, metrics: &Metrics) {
        self.lock().state = ConnectionState::Connected;
        metrics.source_connected(&self.name, true);
    }

    /// The connection is gone. Answers whether it had been up (so the
    /// next attempt starts from the shortest wait).
    pub fn lost(&self, error: &dyn std::fmt::Display, metrics: &Metrics) -> bool {
        let mut inner = self.lock();
        let was_up = inner.state == ConnectionState::Connected;
        if was_up {
            self.reconnects.fetch_add(1, Ordering::Relaxed);
            metrics.source_reconnect(&self.name);
        }
        inner.state = ConnectionState::Reconnecting;
        inner.last_error = Some((error.to_string(), self.clock.now()));
        metrics.source_connected(&self.name, false);
        was_up
    }

    pub fn stopped(&self, metrics: &Metrics) {
        self.lock().state = ConnectionState::Stopped;
        metrics.source_connected(&self.name, false);
    }

    pub fn accepted(&self, metrics: &Metrics) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        metrics.source_message(&self.name, SourceOutcome::Accepted);
    }

    pub fn duplicate(&self, metrics: &Metrics) {
        self.duplicates.fetch_add(1, Ordering::Relaxed);
        metrics.source_message(&self.name, SourceOutcome::Duplicate);
    }

    pub fn rejected(&self, metrics: &Metrics) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        metrics.source_message(&self.name, SourceOutcome::Rejected);
    }

    pub fn retried(&self, reason: &str, metrics: &Metrics) {
        self.retried.fetch_add(1, Ordering::Relaxed);
        self.lock().last_error = Some((reason.to_owned(), self.clock.now()));
        metrics.source_message(&self.name, SourceOutcome::Retried);
    }

    pub fn health(&self) -> SourceHealth {
        let inner = self.lock();
        let (last_error, last_error_at) = match &inner.last_error {
            Some((e, at)) => (Some(e.clone()), Some(*at)),
            None => (None, None),
        };
        SourceHealth {
            name: self.name.clone(),
            kind: self.kind,
            state: inner.state,
            last_error,
            last_error_at,
            accepted: self.accepted.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
        }
    }
}

/// Every configured source's status, in the file's order.
#[derive(Clone, Default)]
pub struct Statuses(Arc<[Arc<SourceStatus>]>);

impl Statuses {
    /// One status per source, from each one's name and broker kind.
    pub fn new(sources: impl IntoIterator<Item = (String, &'static str)>, clock: &Clock) -> Self {
        Self(
            sources
                .into_iter()
                .map(|(name, kind)| Arc::new(SourceStatus::new(name, kind, clock.clone())))
                .collect(),
        )
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<SourceStatus>> {
        self.0.iter()
    }

    pub fn health(&self) -> Vec<SourceHealth> {
        self.0.iter().map(|s| s.health()).collect()
    }
}
