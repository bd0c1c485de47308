//! A RabbitMQ (AMQP 0-9-1) queue as a source: one channel, manual
//! acknowledgements, at most `prefetch` messages unacknowledged.

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, BasicRejectOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties};

use super::{ConsumeError, Incoming, Session, Verdict, store_backoff};

/// Consumes `queue` until shutdown (Ok) or until the connection fails.
pub(super) async fn consume(session: &Session<'_>, url: &str, queue: &str) -> Result<(), ConsumeError> {
    let name = &session.source.name;
    let properties = ConnectionProperties::default().with_connection_name(format!("herald source {name}").into());
    let connection = Connection::connect(url, properties).await?;
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(session.source.prefetch, BasicQosOptions::default())
        .await?;
    let tag = format!("herald-{name}");
    let mut deliveries = channel
        .basic_consume(
            queue.into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    session.status.connected(&session.state.metrics);
    tracing::info!(source = %name, %queue, "consuming from RabbitMQ");
    let mut failures = 0;
    loop {
        let next = tokio::select! {
            next = deliveries.next() => next,
            () = session.shutdown.cancelled() => break,
        };
        let delivery = next.ok_or(ConsumeError::Ended)??;
        match settle(session, &delivery).await? {
            Verdict::Retry(_) => {
                failures += 1;
                if !session.pause(store_backoff(failures - 1)).await {
                    break;
                }
            }
            _ => failures = 0,
        }
    }
    // Messages received but not yet handled go back to the queue when the
    // channel closes; those handled were acknowledged already.
    let _ = channel
        .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
        .await;
    let _ = channel.close(200, "Herald is stopping".into()).await;
    let _ = connection.close(200, "Herald is stopping".into()).await;
    Ok(())
}

/// Stores one delivery and tells the broker what became of it.
async fn settle(session: &Session<'_>, delivery: &Delivery) -> Result<Verdict, ConsumeError> {
    let incoming = Incoming {
        headers: headers(delivery),
        body: &delivery.data,
    };
    let verdict = session.handle(&incoming).await;
    let acker = &delivery.acker;
    match &verdict {
        Verdict::Stored => acker.ack(BasicAckOptions::default()).await?,
        // requeue=false: to the queue's dead-letter exchange when it has one.
        Verdict::Reject(_) => acker.reject(BasicRejectOptions { requeue: false }).await?,
        Verdict::Retry(_) => {
            acker
                .nack(BasicNackOptions {
                    multiple: false,
                    requeue: true,
                })
                .await?
        }
    };
    Ok(verdict)
}

/// The message's headers as text, plus its `message-id`, `type` and
/// `app-id` properties under those names, for the mapping to read.
fn headers(delivery: &Delivery) -> Vec<(String, String)> {
    let p = &delivery.properties;
    let mut out: Vec<(String, String)> = [
        ("message-id", p.message_id()),
        ("type", p.kind()),
        ("app-id", p.app_id()),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.as_ref().map(|v| (name.to_owned(), v.as_str().to_owned())))
    .collect();
    if let Some(table) = p.headers() {
        for (name, value) in table {
            if let Some(text) = text_of(value) {
                out.push((name.as_str().to_owned(), text));
            }
        }
    }
    out
}

fn text_of(value: &AMQPValue) -> Option<String> {
    Some(match value {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.as_str().to_owned(),
        AMQPValue::ByteArray(b) => String::from_utf8_lossy(b.as_slice()).into_owned(),
        AMQPValue::Boolean(b) => b.to_string(),
        AMQPValue::ShortShortInt(n) => n.to_string(),
        AMQPValue::ShortShortUInt(n) => n.to_string(),
        AMQPValue::ShortInt(n) => n.to_string(),
        AMQPValue::ShortUInt(n) => n.to_string(),
        AMQPValue::LongInt(n) => n.to_string(),
        AMQPValue::LongUInt(n) => n.to_string(),
        AMQPValue::LongLongInt(n) => n.to_string(),
        _ => return None,
    })
}
