//! Broker sources: Herald consumes a RabbitMQ queue or a NATS JetStream
//! consumer and publishes each message as if it came through the API.
//!
//! A broker message is acknowledged only once its Herald message is stored,
//! so a crash before that makes the broker deliver it again; its eventId
//! then makes the second copy harmless. A message that can never become a
//! Herald message goes to the broker's dead letter; a store outage leaves it
//! with the broker for later.

pub mod mapping;
mod nats;
mod rabbitmq;

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::source::{Broker, SourceConfig};
use crate::service::message::accept_message;
use crate::service::sources::SourceStatus;
use crate::service::{AppState, ServiceError};
pub use mapping::Incoming;

/// Starts one consumer per source on `tasks`; each stops at `shutdown`.
pub fn start(state: &AppState, tasks: &TaskTracker, shutdown: &CancellationToken) {
    for (source, status) in state.config.sources.iter().zip(state.sources.iter()) {
        let (state, source, status, shutdown) = (state.clone(), source.clone(), status.clone(), shutdown.clone());
        tasks.spawn(async move { run(state, source, status, shutdown).await });
    }
}

/// First wait after a lost connection; it doubles up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Consumes until `shutdown`, connecting again after every loss.
async fn run(state: AppState, source: SourceConfig, status: std::sync::Arc<SourceStatus>, shutdown: CancellationToken) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let session = Session {
            state: &state,
            source: &source,
            status: &status,
            shutdown: &shutdown,
        };
        let ended = match &source.broker {
            Broker::RabbitMq { url, queue } => rabbitmq::consume(&session, url, queue).await,
            Broker::Nats {
                url,
                stream,
                consumer,
                filter_subject,
                ack_wait,
            } => {
                let target = nats::Target {
                    url,
                    stream,
                    consumer,
                    filter_subject: filter_subject.as_deref(),
                    ack_wait: *ack_wait,
                };
                nats::consume(&session, target).await
            }
        };
        match ended {
            Ok(()) => break,
            Err(e) => {
                if status.lost(&e, &state.metrics) {
                    backoff = FIRST_BACKOFF;
                }
                tracing::warn!(source = %source.name, error = %e, retry_in = ?backoff, "source connection lost; reconnecting");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = shutdown.cancelled() => break,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    status.stopped(&state.metrics);
    tracing::info!(source = %source.name, "source stopped");
}

/// Why a source's connection ended.
#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error("RabbitMQ: {0}")]
    RabbitMq(#[from] lapin::Error),
    #[error("NATS: {0}")]
    Nats(String),
    #[error("the broker ended the consumer")]
    Ended,
}

/// What one connection of one source works with.
struct Session<'a> {
    state: &'a AppState,
    source: &'a SourceConfig,
    status: &'a std::sync::Arc<SourceStatus>,
    shutdown: &'a CancellationToken,
}

/// What to tell the broker about one message.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Stored now, or stored before (its eventId is taken): acknowledge.
    Stored,
    /// It can never be stored: to the dead letter.
    Reject(String),
    /// The store cannot take it now: leave it with the broker.
    Retry(String),
}

impl Session<'_> {
    /// Maps and stores one message; counts and logs the outcome.
    async fn handle(&self, msg: &Incoming<'_>) -> Verdict {
        let verdict = self.store(msg).await;
        let name = &self.source.name;
        match &verdict {
            Verdict::Stored => {}
            Verdict::Reject(reason) => {
                tracing::warn!(source = %name, %reason, "broker message rejected to the dead letter");
            }
            Verdict::Retry(reason) => {
                tracing::warn!(source = %name, %reason, "broker message left with the broker; the store is unavailable");
            }
        }
        verdict
    }

    async fn store(&self, msg: &Incoming<'_>) -> Verdict {
        let mapped = match self.source.mapping.apply(msg) {
            Ok(m) => m,
            Err(e) => {
                self.status.rejected(&self.state.metrics);
                return Verdict::Reject(e.to_string());
            }
        };
        let app = mapped.app;
        match accept_message(self.state, &app, mapped.message).await {
            Ok(_) => {
                self.status.accepted(&self.state.metrics);
                Verdict::Stored
            }
            Err(ServiceError::Conflict(_)) => {
                self.status.duplicate(&self.state.metrics);
                Verdict::Stored
            }
            Err(e @ (ServiceError::Unavailable | ServiceError::Internal(_))) => {
                let reason = match e {
                    ServiceError::Internal(cause) => cause,
                    other => other.to_string(),
                };
                self.status.retried(&reason, &self.state.metrics);
                Verdict::Retry(reason)
            }
            Err(e) => {
                self.status.rejected(&self.state.metrics);
                Verdict::Reject(rejection(&app, e))
            }
        }
    }

    /// Waits before the next message after a store failure; false at shutdown.
    async fn pause(&self, wait: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(wait) => true,
            () = self.shutdown.cancelled() => false,
        }
    }
}

/// Why it was refused (as the API would have refused it), in one line.
fn rejection(app: &str, e: ServiceError) -> String {
    match e {
        ServiceError::NotFound(_) => format!("application '{app}' not found"),
        ServiceError::Validation(errors) => errors
            .into_iter()
            .map(|f| {
                let field = f.loc.iter().skip(1).cloned().collect::<Vec<_>>().join(".");
                format!("{field}: {}", f.msg)
            })
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

/// How long to leave the store alone after it failed `streak` times running.
fn store_backoff(streak: u32) -> Duration {
    (FIRST_BACKOFF * 2u32.saturating_pow(streak.min(8))).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_backoff_grows_and_stops_growing() {
        assert_eq!(store_backoff(0), FIRST_BACKOFF);
        assert_eq!(store_backoff(1), FIRST_BACKOFF * 2);
        assert_eq!(store_backoff(40), MAX_BACKOFF);
    }

    #[test]
    fn rejections_read_like_the_api_error() {
        let e = ServiceError::body_field(&["eventType"], "may contain only letters");
        assert_eq!(rejection("acme", e), "eventType: may contain only letters");
        assert_eq!(
            rejection("acme", ServiceError::NotFound("application")),
            "application 'acme' not found"
        );
    }
}
