//! Operator workflows, walked as an operator would: being told an endpoint
//! fails, recovering and replaying, holding and dropping while disabled,
//! reading the history, the event catalog, payload retention.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::receiver::{Received, Reply};
use common::smtp;
use common::{Backend, Receiver, TestApp, spawn_app, spawn_app_with};
use reqwest::StatusCode;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(15);

fn ep_path(app: &str, ep: &Value) -> String {
    format!("/api/v1/app/{app}/endpoint/{}", ep["id"].as_str().unwrap())
}

fn header(r: &Received, name: &str) -> String {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// The message ids (webhook-id) of the requests a receiver answered with 2xx.
fn delivered_ids(received: &[Received], accepted: impl Fn(&Received) -> bool) -> Vec<String> {
    received
        .iter()
        .filter(|r| accepted(r))
        .map(|r| header(r, "webhook-id"))
        .collect()
}

fn ids(msgs: &[Value]) -> BTreeSet<String> {
    msgs.iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect()
}

/// The Prometheus text `/metrics` answers.
/// Polls a background task until it is no longer running.
async fn finished_task(app: &TestApp, task: &Value) -> Value {
    let path = format!("/api/v1/background-task/{}", task["id"].as_str().unwrap());
    let done = app.wait_until(&path, |t| t["status"] != "running").await;
    assert_eq!(done["status"], "finished", "{done}");
    done
}

/// A receiver that fails until it is fixed.
fn broken_until_fixed() -> (Arc<AtomicBool>, impl Fn(&Received) -> Reply + Send + Sync + 'static) {
    let fixed = Arc::new(AtomicBool::new(true));
    let flag = fixed.clone();
    (fixed, move |_: &Received| {
        Reply::status(if flag.load(Ordering::SeqCst) { 200 } else { 500 })
    })
}

async fn a_failing_endpoint_tells_the_operator_and_recover_resends_exactly_what_failed(backend: Backend) {
    let ops = Receiver::start().await;
    let mail = smtp::start().await;
    let app = spawn_app_with(&backend, |s| {
        // Five attempts: the fourth failure reports the delivery as failing.
        s.retry_schedule = Some("20ms,20ms,20ms,20ms".into());
        s.operational_webhook_url = Some(ops.url.clone());
        s.operational_webhook_secret = Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into());
        s.smtp_url = Some(mail.url());
        s.notify_email = Some("oncall@example.test".into());
    })
    .await;
    let app_id = app.create_app("Acme").await;
    let (fixed, respond) = broken_until_fixed();
    let rx = Receiver::answering(respond).await;
    let ep = app.create_endpoint(&app_id, &rx.url, json!({"uid": "acme-hook"})).await;
    let since = chrono::Utc::now() - chrono::Duration::seconds(1);

    let delivered = app.publish(&app_id, "ticket.created", json!({"n": 0})).await;
    rx.wait_for(1, WAIT).await;
    fixed.store(false, Ordering::SeqCst);
    let failed = [
        app.publish(&app_id, "ticket.created", json!({"n": 1})).await,
        app.publish(&app_id, "ticket.updated", json!({"n": 2})).await,
    ];
    let failing = app
        .wait_until(&ep_path(&app_id, &ep), |e| e["status"] == "failing")
        .await;
    assert!(failing["failingSince"].is_string());

    // The operator hears of it: signed operational webhooks, and one email.
    let events = |rx: &Receiver| -> Vec<Value> {
        rx.received()
            .iter()
            .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap())
            .collect()
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while events(&ops)
        .iter()
        .filter(|e| e["type"] == "message.attempt.exhausted")
        .count()
        < 2
    {
        assert!(tokio::time::Instant::now() < deadline, "{:#?}", events(&ops));
        ops.next_arrival(Duration::from_millis(200)).await;
    }
    let seen = events(&ops);
    let kinds: BTreeSet<&str> = seen.iter().filter_map(|e| e["type"].as_str()).collect();
    for kind in [
        "endpoint.created",
        "message.attempt.failing",
        "message.attempt.exhausted",
    ] {
        assert!(kinds.contains(kind), "{kind} missing from {kinds:?}");
    }
    let exhausted = seen.iter().find(|e| e["type"] == "message.attempt.exhausted").unwrap();
    assert_eq!(exhausted["data"]["endpointId"], ep["id"]);
    assert_eq!(exhausted["data"]["appId"], app_id.as_str());
    assert_eq!(exhausted["data"]["lastAttempt"]["responseStatusCode"], 500);
    assert!(
        ops.received()
            .iter()
            .all(|r| header(r, "webhook-signature").starts_with("v1,"))
    );
    let mails = mail.wait_for(1).await;
    assert_eq!(mails[0].to, ["oncall@example.test"]);
    assert!(
        mails[0].subject().unwrap_or_default().contains("is failing"),
        "{:?}",
        mails[0]
    );
    assert!(mails[0].body().contains(ep["id"].as_str().unwrap()));

    // Fixed: recover resends exactly the two that failed.
    fixed.store(true, Ordering::SeqCst);
    let before = rx.count();
    let task = app
        .post(&format!("{}/recover", ep_path(&app_id, &ep)), json!({ "since": since }))
        .await;
    assert_eq!(task.status, StatusCode::ACCEPTED, "{}", task.body);
    assert_eq!(task.body["task"], "endpoint.recover");
    let done = finished_task(&app, &task.body).await;
    assert_eq!(done["data"]["scheduled"], 2, "{done}");
    let got = rx.wait_for(before + 2, WAIT).await;
    let resent: BTreeSet<String> = delivered_ids(&got[before..], |_| true).into_iter().collect();
    assert_eq!(resent, ids(&failed));
    assert!(!resent.contains(delivered["id"].as_str().unwrap()));
    app.wait_until(&ep_path(&app_id, &ep), |e| e["status"] == "healthy")
        .await;

    // A second recover finds nothing left to resend.
    let again = app
        .post(&format!("{}/recover", ep_path(&app_id, &ep)), json!({ "since": since }))
        .await;
    assert_eq!(finished_task(&app, &again.body).await["data"]["scheduled"], 0);
}

async fn hold_keeps_messages_until_enabled_and_drop_leaves_them_to_replay_missing(backend: Backend) {
    let app = spawn_app(&backend).await;
    let app_id = app.create_app("Acme").await;
    let holding = Receiver::start().await;
    let dropping = Receiver::start().await;
    let held_ep = app
        .create_endpoint(
            &app_id,
            &holding.url,
            json!({"disabled": true, "whileDisabled": "hold"}),
        )
        .await;
    assert_eq!(held_ep["whileDisabled"], "hold");
    let dropped_ep = app
        .create_endpoint(&app_id, &dropping.url, json!({"disabled": true}))
        .await;
    assert_eq!(dropped_ep["whileDisabled"], "drop");
    let since = chrono::Utc::now() - chrono::Duration::seconds(1);
    let mut published = Vec::new();
    for n in 0..3 {
        published.push(app.publish(&app_id, "ticket.created", json!({"n": n})).await);
    }

    let held = app
        .wait_until(&format!("{}/stats", ep_path(&app_id, &held_ep)), |s| s["held"] == 3)
        .await;
    assert_eq!(held["success"], 0);
    let dropped = app
        .wait_until(&format!("{}/stats", ep_path(&app_id, &dropped_ep)), |s| {
            s["dropped"] == 3
        })
        .await;
    assert_eq!(dropped["pending"], 0);
    // Dropped deliveries are in the history as not sent (no status code).
    let not_sent = app
        .get(&format!(
            "/api/v1/app/{app_id}/attempt/endpoint/{}?status_code_class=0",
            dropped_ep["id"].as_str().unwrap()
        ))
        .await;
    let rows = not_sent.body["data"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{}", not_sent.body);
    assert!(rows[0]["response"].as_str().unwrap().starts_with("not sent"));
    assert_eq!(holding.count() + dropping.count(), 0);

    // Enabled: the held ones arrive, the dropped ones do not.
    for ep in [&held_ep, &dropped_ep] {
        let a = app.patch(&ep_path(&app_id, ep), json!({"disabled": false})).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    }
    let got = holding.wait_for(3, WAIT).await;
    let arrived: BTreeSet<String> = delivered_ids(&got, |_| true).into_iter().collect();
    assert_eq!(arrived, ids(&published));
    assert!(!dropping.next_arrival(Duration::from_millis(300)).await);

    // replay-missing sends exactly what was never sent to the dropping one.
    let extra = Receiver::start().await;
    app.create_endpoint(&app_id, &extra.url, json!({})).await;
    let task = app
        .post(
            &format!("{}/replay-missing", ep_path(&app_id, &dropped_ep)),
            json!({ "since": since }),
        )
        .await;
    assert_eq!(task.status, StatusCode::ACCEPTED, "{}", task.body);
    assert_eq!(finished_task(&app, &task.body).await["data"]["scheduled"], 3);
    let got = dropping.wait_for(3, WAIT).await;
    let replayed: BTreeSet<String> = delivered_ids(&got, |_| true).into_iter().collect();
    assert_eq!(replayed, ids(&published));
    // Replaying again finds nothing missing.
    let again = app
        .post(
            &format!("{}/replay-missing", ep_path(&app_id, &dropped_ep)),
            json!({ "since": since }),
        )
        .await;
    assert_eq!(finished_task(&app, &again.body).await["data"]["scheduled"], 0);
}

async fn history_keeps_what_was_sent_and_received_and_filters_exactly(backend: Backend) {
    let app = spawn_app(&backend).await;
    let app_id = app.create_app("Acme").await;
    let rx = Receiver::answering(|r: &Received| {
        let body: Value = serde_json::from_slice(&r.body).unwrap_or_default();
        let status = if body["ok"] == true { 200 } else { 503 };
        Reply::status(status).header("x-receiver", "desk-7")
    })
    .await;
    let ep = app
        .create_endpoint(
            &app_id,
            &rx.url,
            json!({"headers": {"X-Api-Key": "k-123456", "X-Team": "support"}}),
        )
        .await;
    let started = chrono::Utc::now() - chrono::Duration::seconds(1);
    let publish = |event: &'static str, ok: bool, channel: &'static str| {
        let path = format!("/api/v1/app/{app_id}/msg");
        let body = json!({"eventType": event, "payload": {"ok": ok}, "channels": [channel]});
        let app = &app;
        async move {
            let a = app.post(&path, body).await;
            assert_eq!(a.status, StatusCode::ACCEPTED);
            a.body
        }
    };
    publish("ticket.created", true, "ticket-1").await;
    publish("ticket.updated", true, "ticket-1").await;
    let bad = publish("sla.at_risk", false, "ticket-2").await;
    // Two delivered; the bad one tried three times (test schedule 100ms, 200ms).
    let by_endpoint = format!("/api/v1/app/{app_id}/attempt/endpoint/{}", ep["id"].as_str().unwrap());
    let all = app.wait_for_attempts(&by_endpoint, |a| a.len() == 5).await;

    let count = |query: String| {
        let app = &app;
        let path = format!("{by_endpoint}?{query}");
        async move {
            let a = app.get(&path).await;
            assert_eq!(a.status, StatusCode::OK, "{}", a.body);
            a.body["data"].as_array().unwrap().len()
        }
    };
    assert_eq!(count("status_code_class=200".into()).await, 2);
    assert_eq!(count("status_code_class=500".into()).await, 3);
    assert_eq!(count("status_code_class=400".into()).await, 0);
    assert_eq!(count("status=2".into()).await, 3);
    assert_eq!(count("event_types=ticket.created,ticket.updated".into()).await, 2);
    assert_eq!(count("channel=ticket-2".into()).await, 3);
    let after = urlencode(&started.to_rfc3339());
    assert_eq!(count(format!("after={after}")).await, 5);
    let before = urlencode(&started.to_rfc3339());
    assert_eq!(count(format!("before={before}")).await, 0);
    // Paged both ways: two pages of 3 and 2, and back again.
    let first = app.get(&format!("{by_endpoint}?limit=3")).await.body;
    let second = app
        .get(&format!(
            "{by_endpoint}?limit=3&iterator={}",
            first["iterator"].as_str().unwrap()
        ))
        .await
        .body;
    assert_eq!(second["data"].as_array().unwrap().len(), 2);
    let back = app
        .get(&format!(
            "{by_endpoint}?limit=3&iterator={}",
            second["prevIterator"].as_str().unwrap()
        ))
        .await
        .body;
    assert_eq!(back["data"], first["data"]);

    // Each attempt shows the request and the response.
    let failed = all.iter().find(|a| a["msgId"] == bad["id"]).unwrap();
    assert_eq!(failed["responseStatusCode"], 503);
    assert_eq!(failed["eventType"], "sla.at_risk");
    assert_eq!(failed["msgTimestamp"], bad["timestamp"]);
    assert_eq!(failed["requestBody"], r#"{"ok":false}"#);
    let sent = &failed["requestHeaders"];
    assert!(sent["webhook-signature"].as_str().unwrap().starts_with("v1,"), "{sent}");
    assert_eq!(sent["x-team"], "support");
    assert_eq!(sent["x-api-key"], "********", "custom secrets are masked");
    assert_eq!(failed["responseHeaders"]["x-receiver"], "desk-7");
    let one = app
        .get(&format!(
            "/api/v1/app/{app_id}/msg/{}/attempt/{}",
            bad["id"].as_str().unwrap(),
            failed["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(one.body["id"], failed["id"]);

    let stats = app.get(&format!("{}/stats", ep_path(&app_id, &ep))).await.body;
    assert_eq!(
        (stats["success"].as_i64(), stats["fail"].as_i64()),
        (Some(2), Some(1)),
        "{stats}"
    );

    // Bulk resend of selected messages.
    let resend = app
        .post(
            &format!("{}/resend", ep_path(&app_id, &ep)),
            json!({"msgIds": [bad["id"], "msg_doesnotexist"]}),
        )
        .await;
    assert_eq!(resend.status, StatusCode::ACCEPTED, "{}", resend.body);
    assert_eq!(resend.body["scheduled"], 1);
    assert_eq!(resend.body["skipped"], json!(["msg_doesnotexist"]));
    let manual = app
        .wait_for_attempts(&by_endpoint, |a| a.iter().any(|x| x["triggerType"] == 1))
        .await;
    assert!(manual.iter().any(|x| x["triggerType"] == 1 && x["msgId"] == bad["id"]));
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

async fn the_catalog_checks_payloads_and_send_example_reaches_one_endpoint(backend: Backend) {
    let app = spawn_app(&backend).await;
    let schema = json!({
        "type": "object",
        "required": ["ticketId"],
        "properties": {"ticketId": {"type": "integer", "minimum": 1}, "subject": {"type": "string"}},
        "examples": [{"ticketId": 42, "subject": "Printer on fire"}]
    });
    let et = app
        .post(
            "/api/v1/event-type",
            json!({"name": "ticket.created", "description": "A ticket was created", "schemas": {"1": schema}}),
        )
        .await;
    assert_eq!(et.status, StatusCode::CREATED, "{}", et.body);
    assert_eq!(et.body["groupName"], "ticket");
    let broken = app
        .post(
            "/api/v1/event-type",
            json!({"name": "ticket.broken", "description": "x", "schemas": {"1": {"type": 12}}}),
        )
        .await;
    assert_eq!(broken.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(broken.body["detail"][0]["loc"], json!(["body", "schemas", "1"]));

    let a = app
        .post("/api/v1/app", json!({"name": "Acme", "validatePayloads": true}))
        .await;
    let app_id = a.body["id"].as_str().unwrap().to_owned();
    let bad = app
        .post(
            &format!("/api/v1/app/{app_id}/msg"),
            json!({"eventType": "ticket.created", "payload": {"ticketId": 0}}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    assert_eq!(bad.body["detail"][0]["loc"], json!(["body", "payload", "ticketId"]));
    app.publish(&app_id, "ticket.created", json!({"ticketId": 3})).await;

    let tested = Receiver::start().await;
    let other = Receiver::start().await;
    let ep = app.create_endpoint(&app_id, &tested.url, json!({})).await;
    app.create_endpoint(&app_id, &other.url, json!({})).await;
    let sent = app
        .post(
            &format!("{}/send-example", ep_path(&app_id, &ep)),
            json!({"eventType": "ticket.created"}),
        )
        .await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{}", sent.body);
    let got = tested.wait_for(1, WAIT).await;
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body, json!({"ticketId": 42, "subject": "Printer on fire"}));
    assert!(!other.next_arrival(Duration::from_millis(300)).await);
    let history = format!("/api/v1/app/{app_id}/attempt/msg/{}", sent.body["id"].as_str().unwrap());
    app.wait_for_attempts(&history, |a| a.len() == 1 && a[0]["triggerType"] == 1)
        .await;
}

async fn payloads_expire_and_can_be_expunged(backend: Backend) {
    let app = spawn_app_with(&backend, |s| {
        s.payload_retention = Some("300ms".into());
        s.cleanup_interval = Some("50ms".into());
    })
    .await;
    let app_id = app.create_app("Acme").await;
    let rx = Receiver::start().await;
    app.create_endpoint(&app_id, &rx.url, json!({})).await;
    let short = app.publish(&app_id, "ticket.created", json!({"secret": "s1"})).await;
    let kept = app
        .post(
            &format!("/api/v1/app/{app_id}/msg"),
            json!({"eventType": "ticket.created", "payload": {"secret": "s2"}, "payloadRetentionPeriod": 30}),
        )
        .await
        .body;
    rx.wait_for(2, WAIT).await;
    let msg_path = |m: &Value| format!("/api/v1/app/{app_id}/msg/{}", m["id"].as_str().unwrap());
    let expired = app
        .wait_until(&msg_path(&short), |m| m["payloadRemovedAt"].is_string())
        .await;
    assert_eq!(expired["payload"], json!({}));
    let attempts = app
        .get(&format!(
            "/api/v1/app/{app_id}/attempt/msg/{}",
            short["id"].as_str().unwrap()
        ))
        .await
        .body;
    // The payload's value, quoted: a bare "s1" can turn up inside a signature.
    let text = attempts.to_string();
    assert!(!text.contains(r#""s1""#) && !text.contains(r#"\"s1\""#), "{attempts}");
    assert_eq!(app.get(&msg_path(&kept)).await.body["payload"]["secret"], "s2");

    // Expunged on request: the payload, and an attempt's content.
    let gone = app.delete(&format!("{}/content", msg_path(&kept))).await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&msg_path(&kept)).await.body["payload"], json!({}));
    let resend = app
        .post(&format!("{}/endpoint/{}/resend", msg_path(&kept), "x"), json!({}))
        .await;
    assert_ne!(resend.status, StatusCode::ACCEPTED);
    let list = format!("/api/v1/app/{app_id}/attempt/msg/{}", kept["id"].as_str().unwrap());
    let attempt = app.get(&list).await.body["data"][0].clone();
    let a = app
        .delete(&format!(
            "{}/attempt/{}/content",
            msg_path(&kept),
            attempt["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let after = app.get(&list).await.body["data"][0].clone();
    assert_eq!(after["requestBody"], "");
    assert!(after["requestHeaders"].is_null());
}

async fn with_retain_payloads_off_a_delivered_payload_is_not_kept(backend: Backend) {
    let app = spawn_app_with(&backend, |s| s.retain_payloads = Some("false".into())).await;
    let app_id = app.create_app("Acme").await;
    let rx = Receiver::start().await;
    app.create_endpoint(&app_id, &rx.url, json!({})).await;
    let msg = app.publish(&app_id, "ticket.created", json!({"email": "a@b.c"})).await;
    let got = rx.wait_for(1, WAIT).await;
    assert_eq!(got[0].body.as_ref(), br#"{"email":"a@b.c"}"#);
    let path = format!("/api/v1/app/{app_id}/msg/{}", msg["id"].as_str().unwrap());
    let m = app.wait_until(&path, |m| m["payloadRemovedAt"].is_string()).await;
    assert_eq!(m["payload"], json!({}));
}

async fn metrics_count_what_happened(backend: Backend) {
    let app = spawn_app(&backend).await;
    let app_id = app.create_app("Acme").await;
    let ok = Receiver::start().await;
    let broken = Receiver::scripted(&[500, 500, 500]).await;
    app.create_endpoint(&app_id, &ok.url, json!({})).await;
    let failing = app.create_endpoint(&app_id, &broken.url, json!({})).await;
    app.publish(&app_id, "ticket.created", json!({})).await;
    app.wait_until(&ep_path(&app_id, &failing), |e| e["status"] == "failing")
        .await;

    let text = app.metrics_text().await;
    for line in [
        "herald_messages_published_total 1",
        r#"herald_attempts_total{outcome="delivered"} 1"#,
        r#"herald_attempts_total{outcome="retried"} 2"#,
        r#"herald_attempts_total{outcome="exhausted"} 1"#,
        r#"herald_endpoints{state="healthy"} 1"#,
        r#"herald_endpoints{state="failing"} 1"#,
        "herald_queue_depth 0",
        "herald_attempt_duration_seconds_count 4",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing from:\n{text}");
    }
}

async fn a_slow_endpoint_does_not_hold_back_the_others(backend: Backend) {
    let app = spawn_app_with(&backend, |s| {
        s.max_concurrent_deliveries = Some("8".into());
        s.max_in_flight_per_endpoint = Some("2".into());
        s.request_timeout = Some("5s".into());
    })
    .await;
    let app_id = app.create_app("Acme").await;
    let slow = Receiver::slow(Duration::from_secs(2)).await;
    let fast = Receiver::start().await;
    app.create_endpoint(&app_id, &slow.url, json!({})).await;
    app.create_endpoint(&app_id, &fast.url, json!({})).await;
    for n in 0..30 {
        app.publish(&app_id, "ticket.created", json!({"n": n})).await;
    }
    // Without lanes the slow endpoint would fill all 8 slots for 2 s at a time.
    fast.wait_for(30, Duration::from_millis(1800)).await;
    assert!(slow.count() <= 2, "the slow endpoint had {} in flight", slow.count());
}

/// The value of one series in the `/metrics` text, 0 when unseen.
fn series(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map_or(0, |n| n.parse().unwrap())
}

async fn a_busy_endpoint_queues_for_its_next_slot(backend: Backend) {
    let app = spawn_app_with(&backend, |s| s.max_in_flight_per_endpoint = Some("2".into())).await;
    let app_id = app.create_app("Acme").await;
    let slow = Receiver::slow(Duration::from_millis(300)).await;
    let ep = app.create_endpoint(&app_id, &slow.url, json!({})).await;
    for n in 0..4 {
        app.publish(&app_id, "ticket.created", json!({"n": n})).await;
    }
    app.wait_until(&format!("{}/stats", ep_path(&app_id, &ep)), |s| s["success"] == 4)
        .await;
    // Two in flight, two queued behind them: none went back to the store
    // to wait, where a freed slot would sit idle until it came due again.
    let text = app.metrics_text().await;
    assert_eq!(
        series(&text, r#"herald_attempts_total{outcome="deferred"}"#),
        0,
        "{text}"
    );
    assert_eq!(slow.count(), 4, "each message was sent once");
}

async fn a_fresh_delivery_is_handed_over_and_one_without_room_waits_for_a_claim(backend: Backend) {
    let app = spawn_app_with(&backend, |s| s.max_concurrent_deliveries = Some("2".into())).await;
    let app_id = app.create_app("Acme").await;
    let slow = Receiver::slow(Duration::from_secs(1)).await;
    let ep = app.create_endpoint(&app_id, &slow.url, json!({})).await;
    // The first message waits until the dispatcher is running and idle:
    // once it is delivered, nothing is due and nothing wakes it.
    let stats = format!("{}/stats", ep_path(&app_id, &ep));
    app.publish(&app_id, "ticket.created", json!({"n": 0})).await;
    app.wait_until(&stats, |s| s["success"] == 1).await;
    // The next two take the dispatcher's two slots straight from their
    // publish; the rest find no room and wait for a claim as slots free.
    for n in 1..7 {
        app.publish(&app_id, "ticket.created", json!({"n": n})).await;
    }
    app.wait_until(&stats, |s| s["success"] == 7).await;
    let text = app.metrics_text().await;
    let handed = series(&text, r#"herald_deliveries_dispatched_total{via="handoff"}"#);
    let claimed = series(&text, r#"herald_deliveries_dispatched_total{via="claim"}"#);
    assert!(handed >= 2, "{handed} handed over:\n{text}");
    assert!(claimed >= 1, "{claimed} claimed:\n{text}");
    assert_eq!(handed + claimed, 7, "{text}");
    assert_eq!(slow.count(), 7, "each message was sent once");
}

async fn a_rate_limit_spreads_deliveries_over_time(backend: Backend) {
    let app = spawn_app(&backend).await;
    let app_id = app.create_app("Acme").await;
    let rx = Receiver::start().await;
    app.create_endpoint(&app_id, &rx.url, json!({"rateLimit": 5})).await;
    for n in 0..15 {
        app.publish(&app_id, "ticket.created", json!({"n": n})).await;
    }
    let got = rx.wait_for(15, WAIT).await;
    let first = got.iter().map(|r| r.at).min().unwrap();
    // Five a second, evenly: 15 take at least 2.8 s, and no second holds more than 5.
    let last = got.iter().map(|r| r.at).max().unwrap();
    assert!(last - first >= Duration::from_millis(2700), "took {:?}", last - first);
    for r in &got {
        let window = got
            .iter()
            .filter(|o| o.at >= r.at && o.at < r.at + Duration::from_millis(950))
            .count();
        assert!(window <= 5, "{window} deliveries within one second");
    }
    let deferred = app.metrics_text().await;
    assert!(
        deferred.contains(r#"herald_attempts_total{outcome="deferred"}"#),
        "{deferred}"
    );
}

on_both_backends!(
    a_failing_endpoint_tells_the_operator_and_recover_resends_exactly_what_failed,
    hold_keeps_messages_until_enabled_and_drop_leaves_them_to_replay_missing,
    history_keeps_what_was_sent_and_received_and_filters_exactly,
    the_catalog_checks_payloads_and_send_example_reaches_one_endpoint,
    payloads_expire_and_can_be_expunged,
    with_retain_payloads_off_a_delivered_payload_is_not_kept,
    metrics_count_what_happened,
    a_slow_endpoint_does_not_hold_back_the_others,
    a_busy_endpoint_queues_for_its_next_slot,
    a_fresh_delivery_is_handed_over_and_one_without_room_waits_for_a_claim,
    a_rate_limit_spreads_deliveries_over_time,
);
