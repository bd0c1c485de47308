//! The real brokers the source tests publish to: RabbitMQ at
//! HERALD_TEST_AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/%2f) and
//! NATS with JetStream at HERALD_TEST_NATS_URL (default nats://127.0.0.1:4222).
//! When one is not reachable its tests are skipped with a printed notice,
//! unless HERALD_REQUIRE_BROKERS=1 (as in CI), where that is a failure.
//!
//! Also a loopback TCP relay between Herald and a broker, whose connections
//! the test can cut: a real connection loss without stopping the shared broker.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

pub fn amqp_url() -> String {
    std::env::var("HERALD_TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

pub fn nats_url() -> String {
    std::env::var("HERALD_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// The broker's `host:port`, read from its URL.
pub fn address(url: &str) -> String {
    let parsed = url::Url::parse(url).expect("broker URL");
    format!(
        "{}:{}",
        parsed.host_str().expect("broker host"),
        parsed
            .port()
            .unwrap_or(if url.starts_with("amqp") { 5672 } else { 4222 })
    )
}

/// True when the broker at `url` answers; else skips (prints why) or, with
/// HERALD_REQUIRE_BROKERS=1, fails.
pub async fn available(name: &str, url: &str) -> bool {
    let addr = address(url);
    let reached = tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(&addr)).await;
    let problem = match reached {
        Ok(Ok(_)) => return true,
        Ok(Err(e)) => e.to_string(),
        Err(_) => "no answer in 3s".to_owned(),
    };
    if std::env::var("HERALD_REQUIRE_BROKERS").as_deref() == Ok("1") {
        panic!("{name} is required (HERALD_REQUIRE_BROKERS=1) but {addr} is unreachable: {problem}");
    }
    super::report(&format!(
        "SKIPPED: a {name} source test: {addr} is unreachable ({problem}). docs/sources.md says how to start one."
    ));
    false
}

/// A name no other test run uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

/// Relays loopback connections to a broker until told to cut them.
pub struct Relay {
    pub address: String,
    links: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl Relay {
    pub async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let address = listener.local_addr().expect("relay address").to_string();
        let links: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let kept = links.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let link = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                kept.lock().unwrap().push(link.abort_handle());
            }
        })
        .abort_handle();
        Self { address, links, accept }
    }

    /// Closes every connection made so far, both ways; new ones are relayed.
    pub fn cut(&self) -> usize {
        let links: Vec<AbortHandle> = std::mem::take(&mut *self.links.lock().unwrap());
        for link in &links {
            link.abort();
        }
        links.len()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// A queue of its own for one test, with a dead-letter queue behind it.
/// Both remove themselves a minute after their last consumer left, so a
/// failed test leaves nothing behind for long.
pub struct RabbitQueue {
    pub name: String,
    pub dead_letters: String,
    channel: lapin::Channel,
    _connection: lapin::Connection,
}

impl RabbitQueue {
    pub async fn declare() -> Self {
        use lapin::options::{ConfirmSelectOptions, QueueDeclareOptions};
        use lapin::types::{AMQPValue, FieldTable};
        let connection = lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default())
            .await
            .expect("connect to RabbitMQ");
        let channel = connection.create_channel().await.expect("channel");
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("publisher confirms");
        let name = unique("herald-test");
        let dead_letters = format!("{name}-dlq");
        let expires = |table: &mut FieldTable| {
            table.insert("x-expires".into(), AMQPValue::LongInt(60_000));
        };
        let mut dlq_args = FieldTable::default();
        expires(&mut dlq_args);
        channel
            .queue_declare(dead_letters.as_str().into(), QueueDeclareOptions::default(), dlq_args)
            .await
            .expect("declare the dead-letter queue");
        let mut args = FieldTable::default();
        expires(&mut args);
        args.insert("x-dead-letter-exchange".into(), AMQPValue::LongString("".into()));
        args.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(dead_letters.as_str().into()),
        );
        channel
            .queue_declare(name.as_str().into(), QueueDeclareOptions::default(), args)
            .await
            .expect("declare the queue");
        Self {
            name,
            dead_letters,
            channel,
            _connection: connection,
        }
    }

    /// Publishes `body` with `headers`, and waits for the broker's confirm.
    pub async fn publish(&self, body: &[u8], headers: &[(&str, &str)]) {
        use lapin::options::BasicPublishOptions;
        use lapin::types::{AMQPValue, FieldTable};
        let mut table = FieldTable::default();
        for (name, value) in headers {
            table.insert((*name).into(), AMQPValue::LongString((*value).into()));
        }
        let properties = lapin::BasicProperties::default().with_headers(table);
        self.channel
            .basic_publish(
                "".into(),
                self.name.as_str().into(),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await
            .expect("publish")
            .await
            .expect("confirmed");
    }

    /// Takes the dead-lettered messages' bodies, waiting up to `limit` for `n`.
    pub async fn dead_lettered(&self, n: usize, limit: Duration) -> Vec<Vec<u8>> {
        use lapin::options::BasicGetOptions;
        let deadline = tokio::time::Instant::now() + limit;
        let mut bodies = Vec::new();
        while bodies.len() < n {
            let got = self
                .channel
                .basic_get(self.dead_letters.as_str().into(), BasicGetOptions { no_ack: true })
                .await
                .expect("basic.get");
            match got {
                Some(m) => bodies.push(m.delivery.data),
                None => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "{} of {n} dead letters within {limit:?}",
                        bodies.len()
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        bodies
    }

    /// Messages waiting in the queue, not counting those handed to a consumer.
    pub async fn ready(&self) -> u32 {
        self.count(&self.name).await
    }

    /// Messages in the dead-letter queue.
    pub async fn dead_letter_count(&self) -> u32 {
        self.count(&self.dead_letters).await
    }

    async fn count(&self, queue: &str) -> u32 {
        use lapin::options::QueueDeclareOptions;
        self.channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                Default::default(),
            )
            .await
            .expect("passive declare")
            .message_count()
    }

    pub async fn delete(self) {
        use lapin::options::QueueDeleteOptions;
        for queue in [&self.name, &self.dead_letters] {
            let _ = self
                .channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
    }
}

/// A JetStream stream of its own for one test, on subjects `NAME.>`.
pub struct NatsStream {
    pub name: String,
    pub client: async_nats::Client,
    pub js: async_nats::jetstream::Context,
}

impl NatsStream {
    pub async fn create() -> Self {
        let client = async_nats::connect(nats_url()).await.expect("connect to NATS");
        let js = async_nats::jetstream::new(client.clone());
        let name = unique("HERALD_TEST").replace('-', "_");
        js.create_stream(async_nats::jetstream::stream::Config {
            name: name.clone(),
            subjects: vec![format!("{name}.>")],
            max_age: Duration::from_secs(600),
            ..Default::default()
        })
        .await
        .expect("create the stream");
        Self { name, client, js }
    }

    /// Publishes `body` with `headers` on `NAME.events`; waits for the stream's ack.
    pub async fn publish(&self, body: &[u8], headers: &[(&str, &str)]) -> u64 {
        let mut map = async_nats::HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, *value);
        }
        self.js
            .publish_with_headers(format!("{}.events", self.name), map, body.to_vec().into())
            .await
            .expect("publish")
            .await
            .expect("stored by the stream")
            .sequence
    }

    pub async fn delete(self) {
        let _ = self.js.delete_stream(&self.name).await;
    }
}

/// A queue or a stream of one test's own, whichever broker it exercises.
pub enum TestBroker {
    Rabbit(RabbitQueue),
    Nats(NatsStream),
}

impl TestBroker {
    /// A fresh queue or stream on `kind` ("rabbitmq" or "nats"), or `None`
    /// when that broker is not reachable (and the test is skipped).
    pub async fn new(kind: &str) -> Option<Self> {
        match kind {
            "rabbitmq" => available("RabbitMQ", &amqp_url()).await.then_some(())?,
            _ => available("NATS", &nats_url()).await.then_some(())?,
        };
        Some(match kind {
            "rabbitmq" => Self::Rabbit(RabbitQueue::declare().await),
            _ => Self::Nats(NatsStream::create().await),
        })
    }

    /// A `[[sources]]` table consuming it through `url` (the broker's, or a relay's).
    pub fn source_toml(&self, url: &str) -> String {
        match self {
            Self::Rabbit(q) => format!(
                "[[sources]]\nname = \"orders\"\ntype = \"rabbitmq\"\nurl = \"{url}\"\nqueue = \"{}\"\n",
                q.name
            ),
            Self::Nats(s) => format!(
                "[[sources]]\nname = \"events\"\ntype = \"nats\"\nurl = \"{url}\"\nstream = \"{}\"\n\
                 consumer = \"herald\"\nack_wait = \"2s\"\n",
                s.name
            ),
        }
    }

    pub fn url(&self) -> String {
        match self {
            Self::Rabbit(_) => amqp_url(),
            Self::Nats(_) => nats_url(),
        }
    }

    pub async fn publish(&self, body: &[u8]) {
        match self {
            Self::Rabbit(q) => q.publish(body, &[]).await,
            Self::Nats(s) => {
                s.publish(body, &[]).await;
            }
        }
    }

    pub async fn delete(self) {
        match self {
            Self::Rabbit(q) => q.delete().await,
            Self::Nats(s) => s.delete().await,
        }
    }
}
