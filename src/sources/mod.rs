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

use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::domain::retry::parse_duration;
use crate::service::message::accept_message;
use crate::service::sources::SourceStatus;
use crate::service::{AppState, ServiceError};
pub use mapping::{Incoming, Mapping};

/// One `[[sources]]` entry, checked.
#[derive(Clone)]
pub struct SourceConfig {
    /// Names the source in logs, `/health` and metrics.
    pub name: String,
    pub broker: Broker,
    pub mapping: Mapping,
    /// Most messages handed over before Herald acknowledges any.
    pub prefetch: u16,
}

#[derive(Clone)]
pub enum Broker {
    RabbitMq {
        url: String,
        queue: String,
    },
    Nats {
        url: String,
        stream: String,
        /// The durable pull consumer; created when missing.
        consumer: String,
        /// When Herald creates the consumer: only these subjects.
        filter_subject: Option<String>,
        /// When Herald creates the consumer: how long an unacknowledged
        /// message waits before it is delivered again.
        ack_wait: Duration,
    },
}

impl Broker {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::RabbitMq { .. } => "rabbitmq",
            Self::Nats { .. } => "nats",
        }
    }
}

impl std::fmt::Debug for SourceConfig {
    /// Broker URLs may carry a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceConfig")
            .field("name", &self.name)
            .field("kind", &self.broker.kind())
            .field("mapping", &self.mapping)
            .field("prefetch", &self.prefetch)
            .finish_non_exhaustive()
    }
}

/// A source as written in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    url: Option<String>,
    queue: Option<String>,
    stream: Option<String>,
    consumer: Option<String>,
    filter_subject: Option<String>,
    ack_wait: Option<String>,
    prefetch: Option<u16>,
    #[serde(default)]
    map: mapping::MappingSpec,
}

/// A problem with one key of one source, named as written in the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sources.{source_name}.{key}: {reason}")]
pub struct SourceError {
    pub source_name: String,
    pub key: String,
    pub reason: String,
}

const DEFAULT_PREFETCH: u16 = 64;
const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(30);

/// Checks the file's `[[sources]]`: names unique, each complete for its type.
pub fn build(specs: Vec<SourceSpec>) -> Result<Vec<SourceConfig>, SourceError> {
    let mut built: Vec<SourceConfig> = Vec::with_capacity(specs.len());
    for (index, spec) in specs.into_iter().enumerate() {
        let source = spec.build(index)?;
        if built.iter().any(|s| s.name == source.name) {
            return Err(SourceError {
                source_name: source.name,
                key: "name".into(),
                reason: "is used by another source".into(),
            });
        }
        built.push(source);
    }
    Ok(built)
}

impl SourceSpec {
    fn build(self, index: usize) -> Result<SourceConfig, SourceError> {
        let label = self.name.clone().unwrap_or_else(|| index.to_string());
        let err = |key: &str, reason: String| SourceError {
            source_name: label.clone(),
            key: key.to_owned(),
            reason,
        };
        let name = self.name.clone().ok_or_else(|| err("name", "is required".into()))?;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(err("name", "may contain only letters, digits, '-', '_' and '.'".into()));
        }
        let required = |key: &str, value: &Option<String>| match value.as_deref().map(str::trim) {
            Some(v) if !v.is_empty() => Ok(v.to_owned()),
            _ => Err(err(key, "is required".into())),
        };
        let forbidden = |key: &str, value: &Option<String>, kind: &str| match value {
            Some(_) => Err(err(key, format!("does not apply to a {kind} source"))),
            None => Ok(()),
        };
        let url = required("url", &self.url)?;
        let broker = match self.kind.as_deref() {
            Some("rabbitmq") => {
                if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
                    return Err(err("url", "must start with amqp:// or amqps://".into()));
                }
                for (key, value) in [
                    ("stream", &self.stream),
                    ("consumer", &self.consumer),
                    ("filter_subject", &self.filter_subject),
                    ("ack_wait", &self.ack_wait),
                ] {
                    forbidden(key, value, "rabbitmq")?;
                }
                Broker::RabbitMq {
                    url,
                    queue: required("queue", &self.queue)?,
                }
            }
            Some("nats") => {
                if !(url.starts_with("nats://") || url.starts_with("tls://")) {
                    return Err(err("url", "must start with nats:// or tls://".into()));
                }
                forbidden("queue", &self.queue, "nats")?;
                let ack_wait = match &self.ack_wait {
                    None => DEFAULT_ACK_WAIT,
                    Some(text) => match parse_duration(text) {
                        Ok(d) if d >= Duration::from_secs(1) => d,
                        Ok(_) => return Err(err("ack_wait", "must be at least 1s".into())),
                        Err(e) => return Err(err("ack_wait", e.to_string())),
                    },
                };
                Broker::Nats {
                    url,
                    stream: required("stream", &self.stream)?,
                    consumer: required("consumer", &self.consumer)?,
                    filter_subject: self.filter_subject.clone(),
                    ack_wait,
                }
            }
            Some(other) => return Err(err("type", format!("'{other}' is not one of rabbitmq, nats"))),
            None => return Err(err("type", "is required: rabbitmq or nats".into())),
        };
        let prefetch = match self.prefetch {
            None => DEFAULT_PREFETCH,
            Some(0) => return Err(err("prefetch", "must be at least 1".into())),
            Some(n) => n,
        };
        let mapping = self
            .map
            .build()
            .map_err(|(key, reason)| err(&format!("map.{key}"), reason))?;
        Ok(SourceConfig {
            name,
            broker,
            mapping,
            prefetch,
        })
    }
}

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

    fn parse(toml_text: &str) -> Result<Vec<SourceConfig>, SourceError> {
        #[derive(Deserialize)]
        struct File {
            sources: Vec<SourceSpec>,
        }
        let file: File = toml::from_str(toml_text).unwrap();
        build(file.sources)
    }

    #[test]
    fn a_rabbitmq_and_a_nats_source_with_defaults() {
        let sources = parse(
            r#"
            [[sources]]
            name = "orders"
            type = "rabbitmq"
            url = "amqp://guest:guest@127.0.0.1:5672/%2f"
            queue = "herald"

            [[sources]]
            name = "billing"
            type = "nats"
            url = "nats://127.0.0.1:4222"
            stream = "BILLING"
            consumer = "herald"
            ack_wait = "5s"
            [sources.map]
            app = "header:x-app"
            "#,
        )
        .unwrap();
        assert_eq!(sources.len(), 2);
        assert_eq!(sources[0].prefetch, DEFAULT_PREFETCH);
        assert_eq!(sources[0].mapping, Mapping::default());
        assert!(matches!(&sources[0].broker, Broker::RabbitMq { queue, .. } if queue == "herald"));
        assert!(matches!(&sources[1].broker, Broker::Nats { ack_wait, .. } if *ack_wait == Duration::from_secs(5)));
        assert_eq!(sources[1].mapping.app, mapping::Locator::Header("x-app".into()));
        assert!(!format!("{:?}", sources[0]).contains("guest:guest"));
    }

    #[test]
    fn mistakes_name_the_source_and_the_key() {
        let err = |text: &str| parse(text).unwrap_err().to_string();
        let e = err("[[sources]]\nname = \"a\"\ntype = \"kafka\"\nurl = \"x\"\n");
        assert!(e.starts_with("sources.a.type: 'kafka'"), "{e}");
        let e = err("[[sources]]\nname = \"a\"\ntype = \"rabbitmq\"\nurl = \"amqp://h\"\n");
        assert_eq!(e, "sources.a.queue: is required");
        let e =
            err("[[sources]]\nname = \"a\"\ntype = \"rabbitmq\"\nurl = \"amqp://h\"\nqueue = \"q\"\nstream = \"S\"\n");
        assert_eq!(e, "sources.a.stream: does not apply to a rabbitmq source");
        let e = err("[[sources]]\ntype = \"nats\"\nurl = \"nats://h\"\n");
        assert_eq!(e, "sources.0.name: is required");
        let e = err(
            "[[sources]]\nname = \"a\"\ntype = \"nats\"\nurl = \"nats://h\"\nstream = \"S\"\nconsumer = \"c\"\n[sources.map]\nevent_type = \"nowhere\"\n",
        );
        assert!(e.starts_with("sources.a.map.event_type: "), "{e}");
        let twice = "[[sources]]\nname = \"a\"\ntype = \"rabbitmq\"\nurl = \"amqp://h\"\nqueue = \"q\"\n";
        let e = err(&format!("{twice}{twice}"));
        assert_eq!(e, "sources.a.name: is used by another source");
    }

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
