//! Every accepted message survives kill -9: the real binary is killed while
//! publishing and delivering, restarted on the same data, and every message
//! it answered 202 for reaches the receiver. SIGTERM is gentler: deliveries
//! in flight finish and are recorded, so none is sent again.

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_deliveries_in_flight_finish_and_none_is_sent_again() {
    let data = tempfile::tempdir().unwrap();
    // Each answer takes 800 ms: the signal comes while all are being answered.
    let receiver = Receiver::slow(Duration::from_millis(800)).await;
    let db = format!("sqlite://{}", data.path().join("herald.db").display());
    let mut herald = Node::start(&db, &[("HERALD_SHUTDOWN_GRACE", "10s")]);
    let http = reqwest::Client::new();
    let app_id = common::create_app_and_endpoint(&http, &herald.base, &receiver).await;
    let publish = |base: String, n: u32| {
        let (http, app_id) = (http.clone(), app_id.clone());
        async move {
            let resp = http
                .post(format!("{base}/api/v1/app/{app_id}/msg"))
                .bearer_auth(TOKEN)
                .json(&json!({"eventType": "ticket.created", "payload": {"n": n}}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::ACCEPTED);
            resp.json::<serde_json::Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(publish(herald.base.clone(), n).await);
    }
    receiver.wait_for_begun(5, Duration::from_secs(5)).await;
    assert_eq!(receiver.count(), 0, "all five are still being answered");

    let signalled = tokio::time::Instant::now();
    let pid = herald.child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::task::spawn_blocking(move || herald.child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "a clean exit: {status}");
    assert!(signalled.elapsed() < Duration::from_secs(10), "within the grace period");
    assert_eq!(receiver.count(), 5, "the answers in flight were awaited");

    // On restart nothing already answered is sent again: once a new message
    // has been delivered and recorded, the five have one attempt each.
    let restarted = Node::start(&db, &[]);
    let marker = publish(restarted.base.clone(), 99).await;
    let get = |url: String| {
        let http = http.clone();
        async move {
            let resp = http.get(url).bearer_auth(TOKEN).send().await.unwrap();
            resp.json::<serde_json::Value>().await.unwrap()
        }
    };
    let endpoints = get(format!("{}/api/v1/app/{app_id}/endpoint", restarted.base)).await;
    let stats_url = format!(
        "{}/api/v1/app/{app_id}/endpoint/{}/stats",
        restarted.base,
        endpoints["data"][0]["id"].as_str().unwrap()
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let stats = loop {
        let stats = get(stats_url.clone()).await;
        if stats["success"] == 6 {
            break stats;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the marker was never delivered: {stats}"
        );
        receiver.next_arrival(Duration::from_millis(200)).await;
    };
    assert_eq!(
        (stats["pending"].as_i64(), stats["sending"].as_i64()),
        (Some(0), Some(0)),
        "{stats}"
    );
    let mut counts: HashMap<String, usize> = HashMap::new();
    for r in receiver.received() {
        *counts.entry(r.header("webhook-id").to_owned()).or_default() += 1;
    }
    for id in ids.iter().chain([&marker]) {
        assert_eq!(counts.get(id), Some(&1), "{id} arrived once: {counts:?}");
    }
}
