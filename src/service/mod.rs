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
pub mod keys;
pub mod list;
pub mod message;
pub mod operational;
pub mod overview;
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
use crate::delivery::client::Outbound;
use crate::domain::clock::Clock;
use crate::store::{Store, StoreError};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::notify::{Notifier, NotifyError};
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
    /// Failed-authentication budgets per address, and unknown tokens.
    pub guard: Arc<auth::Guard>,
    /// The broker sources' states and counts, for `/health`.
    pub sources: sources::Statuses,
    /// Where work that outlives a request runs (recoveries).
    pub background: Background,
}

/// Why the workflows' state could not be put together.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error(transparent)]
    Notify(#[from] NotifyError),
}

impl AppState {
    /// The workflows' state over an open store. The server builds its own
    /// here and so does a command-line run (`herald import svix`), so both
    /// save through the same checks, secret sealing and operator notices.
    /// Starts no task: the server runs the dispatcher and the rest itself.
    pub async fn assemble(
        store: Arc<dyn Store>,
        config: Arc<Config>,
        clock: Clock,
        background: Background,
    ) -> Result<Self, StartError> {
        let admin_token_hash = auth::admin_token_hash(store.as_ref(), &config).await?;
        let signer = portal::Signer::load(store.as_ref(), &admin_token_hash).await?;
        let outbound = Outbound::new(&config)?;
        let notifier = Notifier::start(store.clone(), &config, clock.clone()).await?;
        let metrics = Metrics::new(clock.clone());
        let dispatcher = Dispatcher::new(
            store.clone(),
            config.clone(),
            outbound.clone(),
            notifier.clone(),
            metrics.clone(),
            clock.clone(),
        );
        let sources = sources::Statuses::new(config.sources.iter().map(|s| (s.name.clone(), s.broker.kind())), &clock);
        let guard = Arc::new(auth::Guard::new(config.auth_failure_limit));
        Ok(Self {
            store,
            config,
            clock,
            dispatcher,
            outbound,
            notifier,
            metrics,
            schemas: Default::default(),
            admin_token_hash,
            signer,
            throttle: Default::default(),
            guard,
            sources,
            background,
        })
    }
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
