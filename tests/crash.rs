//! Every accepted message survives kill -9: the real binary is killed while
//! publishing and delivering, restarted on the same data, and every message
//! it answered 202 for reaches the receiver.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::process::Node;
use common::{Receiver, TOKEN};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_publishing_loses_no_accepted_message() {
    let data = tempfile::tempdir().unwrap();
    // Slow answers keep deliveries in flight when the process dies.
    let receiver = Receiver::slow(Duration::from_millis(50)).await;
    let db = format!("sqlite://{}", data.path().join("herald.db").display());
    let mut herald = Node::start(&db, &[]);
    let base = herald.base.clone();
    let http = reqwest::Client::new();
    let app_id = common::create_app_and_endpoint(&http, &base, &receiver).await;

    // Eight publishers; the process is killed once 150 messages are accepted.
    let (accepted_tx, mut accepted_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut publishers = Vec::new();
    for p in 0..8 {
        let (http, base, app_id, tx) = (http.clone(), base.clone(), app_id.clone(), accepted_tx.clone());
        publishers.push(tokio::spawn(async move {
            for i in 0..100 {
                let sent = http
                    .post(format!("{base}/api/v1/app/{app_id}/msg"))
                    .bearer_auth(TOKEN)
                    .json(&json!({"eventType": "ticket.created", "payload": {"publisher": p, "n": i}}))
                    .send()
                    .await;
                let Ok(resp) = sent else { return };
                if resp.status() != StatusCode::ACCEPTED {
                    return;
                }
                let Ok(body) = resp.json::<serde_json::Value>().await else {
                    return;
                };
                let _ = tx.send(body["id"].as_str().unwrap_or_default().to_owned());
            }
        }));
    }
    drop(accepted_tx);
    let mut accepted = Vec::new();
    while let Some(id) = accepted_rx.recv().await {
        accepted.push(id);
        if accepted.len() == 150 {
            herald.kill_9();
        }
    }
    for p in publishers {
        p.await.unwrap();
    }
    let delivered_before_restart = receiver.count();
    assert!(
        accepted.len() >= 150,
        "only {} accepted before the kill",
        accepted.len()
    );
    assert!(
        delivered_before_restart < accepted.len(),
        "the kill came too late to test anything: all {} were already delivered",
        accepted.len()
    );

    let restarted = Node::start(&db, &[]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let counts = loop {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for r in receiver.received() {
            *counts.entry(r.header("webhook-id").to_owned()).or_default() += 1;
        }
        if accepted.iter().all(|id| counts.contains_key(id)) {
            break counts;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {} accepted messages never arrived",
            accepted.iter().filter(|id| !counts.contains_key(*id)).count(),
            accepted.len()
        );
        // Wake on the next arrival rather than after a fixed sleep.
        receiver.next_arrival(Duration::from_millis(200)).await;
    };
    drop(restarted);
    let duplicates: usize = counts.values().map(|c| c - 1).sum();
    common::report(&format!(
        "kill -9: {} accepted, {} delivered before the kill, all delivered after restart, {} duplicates (in flight at the kill)",
        accepted.len(),
        delivered_before_restart,
        duplicates
    ));
    // At-least-once: a duplicate can only come from a delivery in flight at the kill.
    assert!(
        duplicates <= 256,
        "{duplicates} duplicates is more than could have been in flight"
    );
}
