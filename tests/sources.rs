//! Broker sources against the real RabbitMQ and NATS JetStream: what is
//! published on the broker reaches the receiver once; what can never be a
//! Herald message goes to the dead letter without holding the rest back; an
//! eventId seen twice is stored once; a cut connection is made again.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::brokers::{self, NatsStream, RabbitQueue, Relay, TestBroker};
use common::{Backend, Receiver, TestApp, spawn_app_with_file};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The application every test publishes to, by uid.
const APP: &str = "acme";

fn rabbit_source(url: &str, queue: &str) -> String {
    format!("[[sources]]\nname = \"orders\"\ntype = \"rabbitmq\"\nurl = \"{url}\"\nqueue = \"{queue}\"\n")
}

fn nats_source(url: &str, stream: &str) -> String {
    format!(
        "[[sources]]\nname = \"events\"\ntype = \"nats\"\nurl = \"{url}\"\nstream = \"{stream}\"\n\
         consumer = \"herald\"\nack_wait = \"2s\"\n"
    )
}

/// The default envelope, numbered `n`, with eventId `order-n`.
fn envelope(n: usize) -> Vec<u8> {
    json!({"app": APP, "eventType": "order.created", "eventId": format!("order-{n}"), "payload": {"n": n}})
        .to_string()
        .into_bytes()
}

/// An application `acme` with one endpoint at `receiver`.
async fn subscribe(app: &TestApp, receiver: &Receiver) {
    let a = app.post("/api/v1/app", json!({"name": "Acme", "uid": APP})).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    app.create_endpoint(APP, &receiver.url, json!({})).await;
}

/// Each payload's `n` and how often it arrived; each webhook-id and how often.
fn tally(receiver: &Receiver) -> (HashMap<u64, usize>, HashMap<String, usize>) {
    let mut by_n: HashMap<u64, usize> = HashMap::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    for r in receiver.deliveries() {
        let body: Value = serde_json::from_slice(&r.body).expect("JSON delivery");
        let n = body["n"].as_u64().expect("payload n");
        *by_n.entry(n).or_default() += 1;
        *by_id.entry(r.header("webhook-id").to_owned()).or_default() += 1;
    }
    (by_n, by_id)
}

/// Waits until every `n` in `expected` has arrived.
async fn wait_for_all(receiver: &Receiver, expected: &HashSet<u64>, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let (by_n, _) = tally(receiver);
        let missing = expected.iter().filter(|n| !by_n.contains_key(n)).count();
        if missing == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{missing} of {} broker messages never arrived",
            expected.len()
        );
        receiver.next_arrival(Duration::from_millis(200)).await;
    }
}

/// The source's entry in `/health` once `done` holds for it.
async fn wait_for_source(app: &TestApp, done: impl Fn(&Value) -> bool) -> Value {
    let health = app.wait_until("/health", |h| done(&h["sources"][0])).await;
    health["sources"][0].clone()
}

/// Every message stored for `acme`, through the API's list.
async fn stored_messages(app: &TestApp) -> Vec<Value> {
    let mut all = Vec::new();
    let mut iterator: Option<String> = None;
    loop {
        let path = match &iterator {
            Some(it) => format!("/api/v1/app/{APP}/msg?limit=250&iterator={it}"),
            None => format!("/api/v1/app/{APP}/msg?limit=250"),
        };
        let page = app.get(&path).await.body;
        all.extend(page["data"].as_array().cloned().unwrap_or_default());
        if page["done"].as_bool().unwrap_or(true) {
            return all;
        }
        iterator = page["iterator"].as_str().map(str::to_owned);
    }
}

const N: usize = 200;

async fn rabbitmq_messages_all_arrive_once(backend: Backend) {
    if !brokers::available("RabbitMQ", &brokers::amqp_url()).await {
        return;
    }
    let queue = RabbitQueue::declare().await;
    let receiver = Receiver::start().await;
    let app = spawn_app_with_file(&backend, &rabbit_source(&brokers::amqp_url(), &queue.name)).await;
    subscribe(&app, &receiver).await;
    for n in 0..N {
        queue.publish(&envelope(n), &[]).await;
    }
    let expected: HashSet<u64> = (0..N as u64).collect();
    wait_for_all(&receiver, &expected, Duration::from_secs(60)).await;
    let source = wait_for_source(&app, |s| s["accepted"] == N).await;
    assert_eq!(source["state"], "connected", "{source}");
    assert_eq!(source["rejected"], 0, "{source}");
    let (by_n, by_id) = tally(&receiver);
    assert_eq!(by_id.len(), N, "one Herald message per broker message");
    assert!(by_n.values().all(|&c| c == 1), "a message arrived twice: {by_n:?}");
    assert_eq!(stored_messages(&app).await.len(), N);
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains(&format!(
            "herald_source_messages_total{{source=\"orders\",outcome=\"accepted\"}} {N}"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("herald_source_connected{source=\"orders\"} 1"),
        "{metrics}"
    );
    app.stop().await;
    assert_eq!(queue.ready().await, 0, "every message was acknowledged");
    queue.delete().await;
}

async fn rabbitmq_malformed_messages_go_to_the_dead_letter(backend: Backend) {
    if !brokers::available("RabbitMQ", &brokers::amqp_url()).await {
        return;
    }
    let queue = RabbitQueue::declare().await;
    let receiver = Receiver::start().await;
    let app = spawn_app_with_file(&backend, &rabbit_source(&brokers::amqp_url(), &queue.name)).await;
    subscribe(&app, &receiver).await;
    let too_large = json!({"app": APP, "eventType": "order.created", "payload": {"blob": "x".repeat(1024 * 1024)}});
    let bad: Vec<Vec<u8>> = vec![
        b"not json at all".to_vec(),
        json!({"app": "nobody", "eventType": "order.created", "payload": {}})
            .to_string()
            .into_bytes(),
        json!({"app": APP, "eventType": "order created!", "payload": {}})
            .to_string()
            .into_bytes(),
        json!({"app": APP, "eventType": "order.created", "payload": [1, 2]})
            .to_string()
            .into_bytes(),
        too_large.to_string().into_bytes(),
    ];
    // Bad and good interleaved: the bad ones must not hold the good ones back.
    for (n, body) in bad.iter().enumerate() {
        queue.publish(body, &[]).await;
        queue.publish(&envelope(n), &[]).await;
    }
    let expected: HashSet<u64> = (0..bad.len() as u64).collect();
    wait_for_all(&receiver, &expected, Duration::from_secs(30)).await;
    let mut dead = queue.dead_lettered(bad.len(), Duration::from_secs(30)).await;
    dead.sort();
    let mut sent = bad.clone();
    sent.sort();
    assert_eq!(dead, sent, "exactly the malformed messages were dead-lettered");
    let source = wait_for_source(&app, |s| s["rejected"] == bad.len()).await;
    assert_eq!(source["accepted"], bad.len(), "{source}");
    assert_eq!(stored_messages(&app).await.len(), bad.len());
    app.stop().await;
    queue.delete().await;
}

/// The same event twice (as a broker redelivers after a lost ack, or a
/// product republishes after a timeout), then another: one message each.
async fn a_redelivered_event_id_is_stored_once(backend: Backend, kind: &str) {
    let Some(broker) = TestBroker::new(kind).await else {
        return;
    };
    let receiver = Receiver::start().await;
    let app = spawn_app_with_file(&backend, &broker.source_toml(&broker.url())).await;
    subscribe(&app, &receiver).await;
    broker.publish(&envelope(1)).await;
    broker.publish(&envelope(1)).await;
    broker.publish(&envelope(2)).await;
    let source = wait_for_source(&app, |s| s["accepted"] == 2 && s["duplicates"] == 1).await;
    assert_eq!(source["rejected"], 0, "{source}");
    let expected: HashSet<u64> = [1, 2].into();
    wait_for_all(&receiver, &expected, Duration::from_secs(30)).await;
    let stored = stored_messages(&app).await;
    let event_ids: HashSet<&str> = stored.iter().filter_map(|m| m["eventId"].as_str()).collect();
    assert_eq!(stored.len(), 2, "{stored:#?}");
    assert_eq!(event_ids, ["order-1", "order-2"].into());
    // Nothing more arrives: the duplicate made no delivery.
    assert!(!receiver.next_arrival(Duration::from_millis(500)).await);
    assert_eq!(receiver.deliveries().len(), 2);
    app.stop().await;
    if let TestBroker::Rabbit(queue) = &broker {
        assert_eq!(queue.ready().await, 0, "the duplicate was acknowledged");
    }
    broker.delete().await;
}

async fn rabbitmq_a_redelivered_event_id_is_stored_once(backend: Backend) {
    a_redelivered_event_id_is_stored_once(backend, "rabbitmq").await;
}

async fn nats_a_redelivered_event_id_is_stored_once(backend: Backend) {
    a_redelivered_event_id_is_stored_once(backend, "nats").await;
}

async fn rabbitmq_headers_can_carry_the_routing(backend: Backend) {
    if !brokers::available("RabbitMQ", &brokers::amqp_url()).await {
        return;
    }
    let queue = RabbitQueue::declare().await;
    let receiver = Receiver::start().await;
    let toml = format!(
        "{}[sources.map]\napp = \"header:x-app\"\nevent_type = \"header:x-event-type\"\npayload = \"body\"\n\
         event_id = \"header:message-id\"\n",
        rabbit_source(&brokers::amqp_url(), &queue.name)
    );
    let app = spawn_app_with_file(&backend, &toml).await;
    subscribe(&app, &receiver).await;
    let body = br#"{"n": 7,  "total": 12.5}"#;
    queue
        .publish(body, &[("x-app", APP), ("x-event-type", "invoice.paid")])
        .await;
    let got = receiver.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(&got[0].body[..], &body[..], "the body is sent byte for byte");
    let stored = stored_messages(&app).await;
    assert_eq!(stored[0]["eventType"], "invoice.paid");
    app.stop().await;
    queue.delete().await;
}

async fn nats_messages_all_arrive_once_and_malformed_ones_are_terminated(backend: Backend) {
    if !brokers::available("NATS", &brokers::nats_url()).await {
        return;
    }
    use futures_util::StreamExt;
    let stream = NatsStream::create().await;
    let mut terminated = stream
        .client
        .subscribe(format!(
            "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.{}.herald",
            stream.name
        ))
        .await
        .unwrap();
    let receiver = Receiver::start().await;
    let app = spawn_app_with_file(&backend, &nats_source(&brokers::nats_url(), &stream.name)).await;
    subscribe(&app, &receiver).await;
    let mut bad_sequences = HashSet::new();
    for n in 0..N {
        stream.publish(&envelope(n), &[]).await;
        if n % 100 == 50 {
            bad_sequences.insert(stream.publish(b"{\"app\": ", &[]).await);
        }
    }
    let expected: HashSet<u64> = (0..N as u64).collect();
    wait_for_all(&receiver, &expected, Duration::from_secs(60)).await;
    let source = wait_for_source(&app, |s| s["accepted"] == N && s["rejected"] == bad_sequences.len()).await;
    assert_eq!(source["state"], "connected", "{source}");
    let mut announced = HashSet::new();
    while announced.len() < bad_sequences.len() {
        let advisory = tokio::time::timeout(Duration::from_secs(10), terminated.next())
            .await
            .expect("a termination advisory")
            .unwrap();
        let advisory: Value = serde_json::from_slice(&advisory.payload).unwrap();
        announced.insert(advisory["stream_seq"].as_u64().unwrap());
    }
    assert_eq!(announced, bad_sequences, "the malformed messages were terminated");
    let (by_n, by_id) = tally(&receiver);
    assert_eq!(by_id.len(), N);
    assert!(by_n.values().all(|&c| c == 1), "a message arrived twice: {by_n:?}");
    assert_eq!(stored_messages(&app).await.len(), N);
    app.stop().await;
    stream.delete().await;
}

/// Cuts Herald's connection to the broker (through a loopback relay, so the
/// shared broker keeps running) and publishes more: all of it arrives.
async fn a_cut_connection_is_made_again(backend: Backend, kind: &str) {
    let Some(broker) = TestBroker::new(kind).await else {
        return;
    };
    let relay = Relay::start(brokers::address(&broker.url())).await;
    let mut relayed = url::Url::parse(&broker.url()).unwrap();
    let (host, port) = relay.address.split_once(':').unwrap();
    relayed.set_host(Some(host)).unwrap();
    relayed.set_port(Some(port.parse().unwrap())).unwrap();
    let receiver = Receiver::start().await;
    let app = spawn_app_with_file(&backend, &broker.source_toml(relayed.as_str())).await;
    subscribe(&app, &receiver).await;
    for n in 0..20 {
        broker.publish(&envelope(n)).await;
    }
    wait_for_all(&receiver, &(0..20).collect(), Duration::from_secs(30)).await;
    assert!(relay.cut() >= 1, "{kind}: Herald's connection went through the relay");
    let lost = wait_for_source(&app, |s| s["reconnects"].as_u64() >= Some(1)).await;
    assert!(lost["lastError"].is_string(), "{lost}");
    for n in 20..40 {
        broker.publish(&envelope(n)).await;
    }
    wait_for_all(&receiver, &(0..40).collect(), Duration::from_secs(60)).await;
    let source = wait_for_source(&app, |s| s["state"] == "connected").await;
    common::report(&format!(
        "{kind}: connection cut once, {} reconnect(s), all 40 messages delivered",
        source["reconnects"]
    ));
    app.stop().await;
    broker.delete().await;
}

async fn rabbitmq_a_cut_connection_is_made_again(backend: Backend) {
    a_cut_connection_is_made_again(backend, "rabbitmq").await;
}

async fn nats_a_cut_connection_is_made_again(backend: Backend) {
    a_cut_connection_is_made_again(backend, "nats").await;
}

/// A database outage is not a malformed message: the broker keeps the
/// message (requeued, counted as retried) and Herald stores it once the
/// database is back. PostgreSQL only: the test closes the database to
/// every connection, Herald's included, then opens it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_rabbitmq_a_database_outage_keeps_messages_with_the_broker() {
    use sqlx::Connection;
    let Some(backend) = Backend::postgres().await else {
        return;
    };
    let Some(TestBroker::Rabbit(queue)) = TestBroker::new("rabbitmq").await else {
        return;
    };
    let Backend::Postgres(db_url) = &backend else {
        unreachable!()
    };
    let db_name = url::Url::parse(db_url)
        .unwrap()
        .path()
        .trim_start_matches('/')
        .to_owned();
    let mut admin = sqlx::PgConnection::connect(&common::pg::admin_url()).await.unwrap();
    let receiver = Receiver::start().await;
    let app = spawn_app_with_file(&backend, &rabbit_source(&brokers::amqp_url(), &queue.name)).await;
    subscribe(&app, &receiver).await;
    queue.publish(&envelope(0), &[]).await;
    wait_for_all(&receiver, &[0].into(), Duration::from_secs(30)).await;

    sqlx::query(&format!("ALTER DATABASE {db_name} ALLOW_CONNECTIONS false"))
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db_name}'"
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    for n in 1..=5 {
        queue.publish(&envelope(n), &[]).await;
    }
    let during = wait_for_source(&app, |s| s["retried"].as_u64() >= Some(2)).await;
    assert_eq!(during["rejected"], 0, "an outage is not a malformed message: {during}");
    assert!(during["lastError"].is_string(), "{during}");

    sqlx::query(&format!("ALTER DATABASE {db_name} ALLOW_CONNECTIONS true"))
        .execute(&mut admin)
        .await
        .unwrap();
    wait_for_all(&receiver, &(0..=5).collect(), Duration::from_secs(60)).await;
    let after = wait_for_source(&app, |s| s["accepted"] == 6).await;
    assert_eq!(after["rejected"], 0, "{after}");
    assert_eq!(queue.dead_letter_count().await, 0, "nothing was dead-lettered");
    common::report(&format!(
        "database outage: {} broker deliveries left with the broker while it was closed, all 6 stored after",
        after["retried"]
    ));
    app.stop().await;
    queue.delete().await;
    common::pg::drop_database(db_url).await;
}

on_both_backends!(
    rabbitmq_messages_all_arrive_once,
    rabbitmq_malformed_messages_go_to_the_dead_letter,
    rabbitmq_a_redelivered_event_id_is_stored_once,
    rabbitmq_headers_can_carry_the_routing,
    nats_messages_all_arrive_once_and_malformed_ones_are_terminated,
    nats_a_redelivered_event_id_is_stored_once,
    rabbitmq_a_cut_connection_is_made_again,
    nats_a_cut_connection_is_made_again,
);
