//! FIFO endpoints: messages reach them one at a time, in publish order; a
//! message that fails holds back the ones behind it until it succeeds or
//! runs out of retries, and no other endpoint waits for it.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::ordered::{OrderedReceiver, assert_fifo};
use common::{Backend, spawn_app_with_file};
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::json;

/// `quick`: three attempts, 0 and 100 ms apart. `stubborn`: retries every
/// 100 ms for a long while, so a failing head stays the head.
const PROFILES: &str = r#"
[profiles.quick]
retry_schedule = ["0s", "100ms"]
timeout = "2s"

[profiles.stubborn]
retry_schedule = ["100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms"]
timeout = "2s"
"#;

/// Attempts a message gets under `quick`.
const QUICK_ATTEMPTS: usize = 3;
/// Each answer takes this long: a second request sent meanwhile would overlap.
const HOLD: Duration = Duration::from_millis(15);

async fn publish_numbered(app: &common::TestApp, app_id: &str, total: u64) {
    for n in 0..total {
        app.publish(app_id, "ticket.created", json!({"n": n})).await;
    }
}

async fn a_receiver_failing_at_random_sees_messages_in_publish_order(backend: Backend) {
    let app = spawn_app_with_file(&backend, PROFILES).await;
    let app_id = app.create_app("Acme").await;
    // 30% of answers are 500s, from a seeded generator: the same run every time.
    let rng = Mutex::new(rand::rngs::StdRng::seed_from_u64(9));
    let receiver = OrderedReceiver::start(HOLD, move |_| {
        if rng.lock().expect("lock").gen_bool(0.3) {
            500
        } else {
            200
        }
    })
    .await;
    let ep = app
        .create_endpoint(&app_id, &receiver.url, json!({"profile": "quick", "ordering": "fifo"}))
        .await;
    assert_eq!(ep["ordering"], "fifo");

    const TOTAL: u64 = 50;
    publish_numbered(&app, &app_id, TOTAL).await;
    let log = receiver
        .wait_until(Duration::from_secs(60), |log| {
            (0..TOTAL).all(|k| {
                let mine: Vec<_> = log.iter().filter(|r| r.n == k).collect();
                mine.iter().any(|r| r.status == 200) || mine.len() >= QUICK_ATTEMPTS
            })
        })
        .await;
    let (delivered, exhausted) = assert_fifo(&log, TOTAL, QUICK_ATTEMPTS);
    let failures = log.iter().filter(|r| r.status != 200).count();
    assert!(
        failures > 10,
        "the receiver failed only {failures} times: the test proved little"
    );
    assert_eq!(receiver.most_in_flight(), 1);
    common::report(&format!(
        "FIFO under 30% failures: {} requests, {delivered} delivered in order, {exhausted} exhausted",
        log.len()
    ));
}

async fn a_failing_head_holds_its_endpoint_and_no_other(backend: Backend) {
    let app = spawn_app_with_file(&backend, PROFILES).await;
    let app_id = app.create_app("Acme").await;
    let broken = Arc::new(AtomicBool::new(true));
    let switch = broken.clone();
    let fifo = OrderedReceiver::start(HOLD, move |_| if switch.load(Ordering::SeqCst) { 500 } else { 200 }).await;
    let parallel = OrderedReceiver::start(Duration::ZERO, |_| 200).await;
    let ep = app
        .create_endpoint(&app_id, &fifo.url, json!({"profile": "stubborn", "ordering": "fifo"}))
        .await;
    let ep_id = ep["id"].as_str().expect("id").to_owned();
    app.create_endpoint(&app_id, &parallel.url, json!({"profile": "stubborn"}))
        .await;

    const TOTAL: u64 = 20;
    publish_numbered(&app, &app_id, TOTAL).await;
    parallel
        .wait_until(Duration::from_secs(20), |log| log.len() as u64 >= TOTAL)
        .await;
    // The head has failed a few times by now; nothing behind it was sent.
    let blocked = fifo.wait_until(Duration::from_secs(20), |log| log.len() >= 3).await;
    assert!(
        blocked.iter().all(|r| r.n == 0),
        "sent past a failing head: {blocked:#?}"
    );
    let stats = app
        .wait_until(&format!("/api/v1/app/{app_id}/endpoint/{ep_id}/stats"), |s| {
            s["waiting"] == 19
        })
        .await;
    assert_eq!(stats["waiting"], 19, "{stats}");

    // The receiver recovers: the head goes through, then the rest, in order.
    broken.store(false, Ordering::SeqCst);
    let log = fifo
        .wait_until(Duration::from_secs(30), |log| {
            log.iter().filter(|r| r.status == 200).count() as u64 >= TOTAL
        })
        .await;
    let (delivered, exhausted) = assert_fifo(&log, TOTAL, usize::MAX);
    assert_eq!((delivered, exhausted), (TOTAL as usize, 0));
    assert_eq!(fifo.most_in_flight(), 1);
    let stats = app.get(&format!("/api/v1/app/{app_id}/endpoint/{ep_id}/stats")).await;
    assert_eq!(stats.body["waiting"], 0);
}

async fn ordering_is_a_checked_endpoint_option(backend: Backend) {
    let app = spawn_app_with_file(&backend, PROFILES).await;
    let app_id = app.create_app("Acme").await;
    let bad = app
        .post(
            &format!("/api/v1/app/{app_id}/endpoint"),
            json!({"url": "http://127.0.0.1:9/hook", "ordering": "lifo"}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    assert_eq!(bad.body["detail"][0]["loc"], json!(["body", "ordering"]));
    let why = bad.body["detail"][0]["msg"].as_str().unwrap_or_default();
    assert!(why.contains("'lifo' is not an ordering"), "{why}");

    let ep = app.create_endpoint(&app_id, "http://127.0.0.1:9/hook", json!({})).await;
    assert_eq!(ep["ordering"], "parallel", "parallel unless asked");
    let path = format!("/api/v1/app/{app_id}/endpoint/{}", ep["id"].as_str().expect("id"));
    let patched = app.patch(&path, json!({"ordering": "fifo"})).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(app.get(&path).await.body["ordering"], "fifo");
    let bad = app.patch(&path, json!({"ordering": 1})).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.body["detail"][0]["loc"], json!(["body", "ordering"]));
    let put = app
        .put(&path, json!({"url": "http://127.0.0.1:9/hook", "ordering": "parallel"}))
        .await;
    assert_eq!(put.body["ordering"], "parallel", "{}", put.body);
}

on_both_backends!(
    a_receiver_failing_at_random_sees_messages_in_publish_order,
    a_failing_head_holds_its_endpoint_and_no_other,
    ordering_is_a_checked_endpoint_option,
);
