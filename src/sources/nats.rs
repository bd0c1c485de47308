//! A NATS JetStream stream as a source, through a durable pull consumer
//! (created with explicit acknowledgements when it does not exist).

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, pull};
use async_nats::jetstream::{self, AckKind};
use futures_util::StreamExt;

use super::{ConsumeError, Incoming, Session, Verdict, store_backoff};

/// Where a NATS source reads: the stream and its durable consumer.
pub(super) struct Target<'a> {
    pub url: &'a str,
    pub stream: &'a str,
    pub consumer: &'a str,
    pub filter_subject: Option<&'a str>,
    pub ack_wait: Duration,
}

/// Consumes the target until shutdown (Ok) or until the connection or the
/// consumer fails.
pub(super) async fn consume(session: &Session<'_>, target: Target<'_>) -> Result<(), ConsumeError> {
    let Target {
        url,
        stream,
        consumer,
        filter_subject,
        ack_wait,
    } = target;
    let name = &session.source.name;
    let client = connect(session, url).await?;
    let js = jetstream::new(client.clone());
    let stream_handle = js.get_stream(stream).await.map_err(nats)?;
    let config = pull::Config {
        durable_name: Some(consumer.to_owned()),
        ack_policy: AckPolicy::Explicit,
        ack_wait,
        filter_subject: filter_subject.unwrap_or_default().to_owned(),
        ..Default::default()
    };
    let pull_consumer = stream_handle
        .get_or_create_consumer(consumer, config)
        .await
        .map_err(nats)?;
    let mut messages = pull_consumer
        .stream()
        .max_messages_per_batch(usize::from(session.source.prefetch))
        .heartbeat(Duration::from_secs(5))
        .messages()
        .await
        .map_err(nats)?;
    session.status.connected(&session.state.metrics);
    tracing::info!(source = %name, %stream, %consumer, "consuming from NATS JetStream");
    let mut failures = 0;
    loop {
        let next = tokio::select! {
            next = messages.next() => next,
            () = session.shutdown.cancelled() => break,
        };
        let message = next.ok_or(ConsumeError::Ended)?.map_err(nats)?;
        match settle(session, &message, failures).await? {
            Verdict::Retry(_) => {
                failures += 1;
                if !session.pause(store_backoff(failures - 1)).await {
                    break;
                }
            }
            _ => failures = 0,
        }
    }
    // Acknowledgements are sent asynchronously: make sure they left.
    let _ = client.flush().await;
    Ok(())
}

/// A client whose connection events show in the source's status. It
/// reconnects by itself; the source notices the loss through the status.
async fn connect(session: &Session<'_>, url: &str) -> Result<async_nats::Client, ConsumeError> {
    let status = session.status.clone();
    let metrics = session.state.metrics.clone();
    let name = session.source.name.clone();
    async_nats::ConnectOptions::new()
        .name(format!("herald source {name}"))
        .connection_timeout(Duration::from_secs(5))
        .event_callback(move |event| {
            let (status, metrics, name) = (status.clone(), metrics.clone(), name.clone());
            async move {
                match event {
                    async_nats::Event::Connected => {
                        status.connected(&metrics);
                        tracing::info!(source = %name, "NATS connection up");
                    }
                    async_nats::Event::Disconnected => {
                        status.lost(&"the NATS connection was lost", &metrics);
                        tracing::warn!(source = %name, "NATS connection lost; reconnecting");
                    }
                    other => tracing::debug!(source = %name, event = %other, "NATS event"),
                }
            }
        })
        .connect(url)
        .await
        .map_err(nats)
}

/// Stores one message and tells the broker what became of it.
async fn settle(session: &Session<'_>, message: &jetstream::Message, failures: u32) -> Result<Verdict, ConsumeError> {
    let headers = message
        .headers
        .iter()
        .flat_map(|map| map.iter())
        .filter_map(|(name, values)| values.first().map(|v| (name.to_string(), v.as_str().to_owned())))
        .collect();
    let incoming = Incoming {
        headers,
        body: &message.payload,
    };
    let verdict = session.handle(&incoming).await;
    let kind = match &verdict {
        Verdict::Stored => AckKind::Ack,
        // Term: never delivered again; the server announces it as an advisory.
        Verdict::Reject(_) => AckKind::Term,
        Verdict::Retry(_) => AckKind::Nak(Some(store_backoff(failures))),
    };
    message.ack_with(kind).await.map_err(nats)?;
    Ok(verdict)
}

fn nats(e: impl std::fmt::Display) -> ConsumeError {
    ConsumeError::Nats(e.to_string())
}
