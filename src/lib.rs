//! Herald: a self-hosted webhook delivery server.
//!
//! `run` is what the binary and the tests both start: the API and the
//! delivery workers, on a listener the caller binds, until `shutdown`.

pub mod api;
pub mod bench;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod domain;
pub mod service;
pub mod sources;
pub mod store;
pub mod telemetry;
pub mod ui;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::Config;

use crate::domain::clock::Clock;
use crate::service::{AppState, Background};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Start(#[from] service::StartError),
    #[error("the HTTP server failed: {0}")]
    Serve(#[from] std::io::Error),
}

/// How long a stopping server waits for its database connections to close.
const STORE_CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Resolves when the process is asked to stop with SIGTERM (never where
/// there is no such signal), so `herald serve` and `herald soak` end the same way.
pub async fn terminated() {
    #[cfg(unix)]
    if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        term.recv().await;
        return;
    }
    std::future::pending::<()>().await
}

/// Serves the API on `listener` and delivers messages until `shutdown` is
/// cancelled; then stops accepting requests and gives in-flight deliveries
/// `config.shutdown_grace` to finish. Anything unfinished is delivered after
/// the next start.
pub async fn run(listener: TcpListener, config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    run_with_clock(listener, config, Clock::system(), shutdown).await
}

/// `run` on the given clock: stories on tokio's paused time pass
/// `Clock::following_tokio`, so retries and leases come due as time is
/// advanced instead of slept through.
pub async fn run_with_clock(
    listener: TcpListener,
    config: Config,
    clock: Clock,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let config = Arc::new(config);
    let Some(store) = store::open_when_reachable(&config, &clock, &shutdown).await? else {
        return Ok(());
    };
    let released = store.release_orphaned_leases(clock.now()).await?;
    if released > 0 {
        tracing::info!(released, "deliveries in flight at the last stop will be sent again");
    }
    let attempts = TaskTracker::new();
    let background = TaskTracker::new();
    let tasks = Background::new(background.clone(), shutdown.clone());
    let state = AppState::assemble(store.clone(), config.clone(), clock.clone(), tasks.clone()).await?;
    if let Some(proxy) = &config.outbound_proxy {
        tracing::info!(%proxy, "deliveries and endpoint checks go through the outbound proxy");
    }
    let (dispatcher, outbound) = (state.dispatcher.clone(), state.outbound.clone());

    warn_about_unknown_profiles(store.as_ref(), &config).await;
    if config.role.delivers() {
        background.spawn(dispatcher.clone().run(shutdown.clone(), attempts.clone()));
        background.spawn(delivery::verify::run_reverifier(
            store.clone(),
            state.notifier.clone(),
            dispatcher.wake_handle(),
            config.clone(),
            outbound.clone(),
            clock.clone(),
            shutdown.clone(),
        ));
        background.spawn(service::retention::run_cleaner(
            store.clone(),
            config.clone(),
            clock.clone(),
            state.metrics.clone(),
            shutdown.clone(),
        ));
        background.spawn(service::recovery::take_over_orphans(service::recovery::Worker {
            store: store.clone(),
            dispatcher: dispatcher.clone(),
            clock: clock.clone(),
            background: tasks.clone(),
        }));
        if let Some(sender) = state.notifier.mail_sender() {
            background.spawn(sender.run(state.metrics.clone(), shutdown.clone()));
        }
        let (store, wake, shutdown) = (store.clone(), dispatcher.wake_handle(), shutdown.clone());
        background.spawn(async move { store.forward_wakeups(wake, shutdown).await });
    }

    // Every role: each node follows the database's sealing key and reports its keys.
    background.spawn(store::keys::watch(
        store.clone(),
        config.secret_key.clone(),
        config.key_reload_interval,
        clock.clone(),
        shutdown.clone(),
    ));

    let closing = store.clone();
    sources::start(&state, &background, &shutdown);
    background.close();
    let address = listener.local_addr()?;
    tracing::info!(%address, role = ?config.role, "Herald is listening");
    // The peer's address feeds the failed-authentication limit.
    let app = api::router(state, ui::router()).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await?;

    background.wait().await;
    attempts.close();
    if tokio::time::timeout(config.shutdown_grace, attempts.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            in_flight = attempts.len(),
            "shutdown grace period over; unfinished deliveries will be sent after the next start"
        );
    }
    // Bounded: a connection stuck on an unreachable database is not waited for.
    if tokio::time::timeout(STORE_CLOSE_GRACE, closing.close()).await.is_err() {
        tracing::warn!("the database connections did not close in time");
    }
    tracing::info!("Herald stopped");
    Ok(())
}

/// Profiles named by stored applications and endpoints but missing from the
/// configuration make their deliveries fail; say so at start.
async fn warn_about_unknown_profiles(store: &dyn store::Store, config: &Config) {
    match store.profile_names_in_use().await {
        Ok(names) => {
            for name in names.iter().filter(|n| config.profiles.get(n).is_none()) {
                tracing::warn!(profile = %name, "a profile in use is not configured; its deliveries will fail until it is");
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not list the profiles in use"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::api::error::ApiError;
    use crate::service::ServiceError;

    /// The API and the dashboard map workflow errors each in their own layer
    /// (neither may import the other); this holds them to the same status.
    #[test]
    fn the_dashboard_and_the_api_answer_each_refusal_alike() {
        let every_kind = [
            ServiceError::Validation(Vec::new()),
            ServiceError::Malformed("x".into()),
            ServiceError::Forbidden("x".into()),
            ServiceError::NotFound("endpoint"),
            ServiceError::Conflict("x".into()),
            ServiceError::TooLarge("x".into()),
            ServiceError::RateLimited(Duration::from_secs(1)),
            ServiceError::TooManyFailures(Duration::from_secs(1)),
            ServiceError::Unavailable,
            ServiceError::Internal("x".into()),
        ];
        // A new variant fails to compile here until it is listed above.
        let _listed = |e: &ServiceError| match e {
            ServiceError::Validation(_)
            | ServiceError::Malformed(_)
            | ServiceError::Forbidden(_)
            | ServiceError::NotFound(_)
            | ServiceError::Conflict(_)
            | ServiceError::TooLarge(_)
            | ServiceError::RateLimited(_)
            | ServiceError::TooManyFailures(_)
            | ServiceError::Unavailable
            | ServiceError::Internal(_) => (),
        };
        for error in every_kind {
            let page = crate::ui::status_of(&error);
            let route = ApiError::from(error).status();
            assert_eq!(page, route);
        }
    }
}
