//! The workflows, written once: accept a message, save an endpoint with its
//! checks and events, make a token, start a recovery, … The API, the
//! dashboard, the broker sources and the command line are thin adapters
//! over these; each workflow answers a `ServiceError`, never HTTP.

pub mod app;
pub mod attempt;
pub mod attempted;
pub mod auth;
pub mod endpoint;
pub mod error;
pub mod event_type;
pub mod input;
pub mod list;
pub mod message;
pub mod portal;
pub mod recovery;
pub mod retention;
pub mod sources;
pub mod tokens;

use std::future::Future;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::delivery::Dispatcher;
use crate::domain::clock::Clock;
use crate::store::Store;
pub use error::{ServiceError, ServiceResult};

/// What every workflow can reach; the adapters hold one each.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub config: Arc<Config>,
    /// Every "now" of a workflow is read here, so stories can move time.
    pub clock: Clock,
    pub dispatcher: Dispatcher,
    /// The guarded outbound clients, for endpoint checks.
    pub outbound: crate::delivery::client::Outbound,
    pub notifier: crate::telemetry::notify::Notifier,
    pub schemas: message::SchemaCache,
    pub metrics: Arc<crate::telemetry::metrics::Metrics>,
    pub admin_token_hash: auth::TokenHash,
    /// Signs portal links and dashboard sessions.
    pub signer: portal::Signer,
    /// Per-token API request budgets.
    pub throttle: Arc<auth::Throttle>,
    /// The broker sources' states and counts, for `/health`.
    pub sources: sources::Statuses,
    /// Where work that outlives a request runs (recoveries).
    pub background: Background,
}

/// The server's task tracker and shutdown signal: work started here is
/// waited for when the server stops, and told to stop first.
#[derive(Clone)]
pub struct Background {
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl Background {
    pub fn new(tasks: TaskTracker, shutdown: CancellationToken) -> Self {
        Self { tasks, shutdown }
    }

    pub fn spawn<F>(&self, work: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(work);
    }

    /// Cancelled when the server stops; long work checks it between steps.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }
}
