//! Herald killed with -9 while it consumes a broker loses nothing: the real
//! binary is killed mid-stream and restarted on the same data, and every
//! broker message becomes exactly one Herald message, delivered.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::brokers::TestBroker;
use common::process::Node;
use common::{Backend, Receiver, TOKEN};
use serde_json::{Value, json};

const APP: &str = "acme";
const TOTAL: usize = 300;

fn envelope(n: usize) -> Vec<u8> {
    json!({"app": APP, "eventType": "order.created", "eventId": format!("order-{n}"), "payload": {"n": n}})
        .to_string()
        .into_bytes()
}

async fn subscribe(http: &reqwest::Client, base: &str, receiver: &Receiver) {
    let app = json!({"name": "Acme", "uid": APP});
    common::create_app_and_endpoint_with(http, base, app, json!({"url": receiver.url})).await;
}

/// The eventIds of every stored message, through the API's list.
async fn stored_event_ids(http: &reqwest::Client, base: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut iterator = String::new();
    loop {
        let page: Value = http
            .get(format!("{base}/api/v1/app/{APP}/msg?limit=250{iterator}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for m in page["data"].as_array().unwrap() {
            ids.push(m["eventId"].as_str().unwrap_or_default().to_owned());
        }
        if page["done"].as_bool().unwrap_or(true) {
            return ids;
        }
        iterator = format!("&iterator={}", page["iterator"].as_str().unwrap());
    }
}

fn distinct_n(receiver: &Receiver) -> HashSet<u64> {
    receiver
        .deliveries()
        .iter()
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok()?["n"].as_u64())
        .collect()
}

async fn kill_9_while_consuming_loses_nothing(backend: Backend, kind: &str) {
    let Some(broker) = TestBroker::new(kind).await else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("herald.toml");
    std::fs::write(&config, broker.source_toml(&broker.url())).unwrap();
    let config = config.display().to_string();
    let db = backend.database_url(data.path());
    let env = [("HERALD_CONFIG", config.as_str())];
    let receiver = Receiver::start().await;
    let mut herald = Node::start(&db, &env);
    let http = reqwest::Client::new();
    subscribe(&http, &herald.base, &receiver).await;

    // The product keeps publishing while Herald dies and comes back.
    let broker = std::sync::Arc::new(broker);
    let publisher = {
        let broker = broker.clone();
        tokio::spawn(async move {
            for n in 0..TOTAL {
                broker.publish(&envelope(n)).await;
                // Paced, so that Herald is killed while messages keep coming.
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        })
    };
    receiver.wait_for(60, Duration::from_secs(60)).await;
    herald.kill_9();
    let before_restart = distinct_n(&receiver).len();
    publisher.await.unwrap();
    assert!(
        before_restart < TOTAL,
        "the kill came too late to test anything: all {TOTAL} were already delivered"
    );

    let restarted = Node::start(&db, &env);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while distinct_n(&receiver).len() < TOTAL {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {TOTAL} broker messages never arrived",
            TOTAL - distinct_n(&receiver).len()
        );
        receiver.next_arrival(Duration::from_millis(200)).await;
    }
    let stored = stored_event_ids(&http, &restarted.base).await;
    let unique: HashSet<&String> = stored.iter().collect();
    assert_eq!(stored.len(), TOTAL, "one Herald message per broker message");
    assert_eq!(unique.len(), TOTAL);
    let mut by_id: HashMap<String, usize> = HashMap::new();
    for r in receiver.deliveries() {
        *by_id.entry(r.header("webhook-id").to_owned()).or_default() += 1;
    }
    assert_eq!(by_id.len(), TOTAL, "one webhook-id per Herald message");
    let twice: usize = by_id.values().map(|c| c - 1).sum();
    common::report(&format!(
        "{kind} kill -9: {TOTAL} published, {before_restart} delivered before the kill, \
         {} stored after restart (exactly one each), {twice} webhook-id(s) delivered twice (in flight at the kill)",
        stored.len()
    ));
    // At-least-once: only deliveries in flight at the kill may repeat.
    assert!(
        twice <= 64,
        "{twice} repeated deliveries is more than could have been in flight"
    );
    drop(restarted);
    if let Ok(broker) = std::sync::Arc::try_unwrap(broker) {
        broker.delete().await;
    }
}

async fn rabbitmq_kill_9_while_consuming_loses_nothing(backend: Backend) {
    kill_9_while_consuming_loses_nothing(backend, "rabbitmq").await;
}

async fn nats_kill_9_while_consuming_loses_nothing(backend: Backend) {
    kill_9_while_consuming_loses_nothing(backend, "nats").await;
}

on_both_backends!(
    rabbitmq_kill_9_while_consuming_loses_nothing,
    nats_kill_9_while_consuming_loses_nothing,
);
