//! A product publishes; subscribed endpoints receive signed requests, retried
//! on schedule until they succeed or the schedule runs out.

mod common;

use std::time::Duration;

use common::{Backend, Receiver, signature_entries_valid, spawn_app, spawn_app_on_clock, spawn_app_with};
use reqwest::StatusCode;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

async fn a_published_message_is_delivered_once_signed_and_byte_for_byte(backend: Backend) {
    let app = spawn_app(&backend).await;
    let receiver = Receiver::start().await;
    let app_id = app.create_app("Acme Help Desk").await;
    let ep = app
        .create_endpoint(&app_id, &receiver.url, json!({"headers": {"X-Tenant": "acme"}}))
        .await;
    let secret = app.secret(&app_id, ep["id"].as_str().unwrap()).await;

    // Whitespace and key order survive: the consumer gets the bytes published.
    let raw = r#"{"msg": "ticket 42 opened",  "z": 1, "a": [1, 2]}"#;
    let resp = app
        .http
        .post(app.url(&format!("/api/v1/app/{app_id}/msg")))
        .bearer_auth(common::TOKEN)
        .header("content-type", "application/json")
        .body(format!(r#"{{"eventType": "ticket.created", "payload": {raw}}}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let msg: serde_json::Value = resp.json().await.unwrap();
    let msg_id = msg["id"].as_str().unwrap();

    let got = receiver.wait_for(1, WAIT).await;
    let req = &got[0];
    assert_eq!(req.body.as_ref(), raw.as_bytes());
    assert_eq!(req.header("webhook-id"), msg_id);
    assert_eq!(req.header("content-type"), "application/json");
    assert_eq!(req.header("x-tenant"), "acme");
    assert!(req.header("user-agent").starts_with("Herald/"));
    let ts: i64 = req.header("webhook-timestamp").parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - ts).abs() < 30);
    let valid = signature_entries_valid(
        &secret,
        msg_id,
        req.header("webhook-timestamp"),
        &req.body,
        req.header("webhook-signature"),
    );
    assert_eq!(valid, vec![true]);

    // Exactly once: the success is recorded and nothing more is sent.
    let attempts = app
        .wait_for_attempts(&format!("/api/v1/app/{app_id}/attempt/msg/{msg_id}"), |a| !a.is_empty())
        .await;
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["status"], 0);
    assert_eq!(attempts[0]["statusText"], "success");
    assert_eq!(attempts[0]["responseStatusCode"], 200);
    assert_eq!(attempts[0]["triggerType"], 0);
    // A later message proves the dispatcher moved on without resending the first.
    app.publish(&app_id, "ticket.created", json!({"n": 2})).await;
    let got = receiver.wait_for(2, WAIT).await;
    assert_eq!(got.len(), 2);
    assert_ne!(got[1].header("webhook-id"), msg_id);
}

async fn endpoints_receive_only_the_event_types_and_channels_they_subscribe_to(backend: Backend) {
    let app = spawn_app(&backend).await;
    let everything = Receiver::start().await;
    let tickets = Receiver::start().await;
    let ticket_42 = Receiver::start().await;
    let app_id = app.create_app("Docs Portal").await;
    app.create_endpoint(&app_id, &everything.url, json!({})).await;
    app.create_endpoint(&app_id, &tickets.url, json!({"filterTypes": ["ticket.created"]}))
        .await;
    // The SDK's newer name for the same field.
    app.create_endpoint(
        &app_id,
        &ticket_42.url,
        json!({"eventTypes": ["ticket.created"], "channels": ["ticket-42"]}),
    )
    .await;

    app.publish(&app_id, "sla.at_risk", json!({"n": 1})).await;
    let path = format!("/api/v1/app/{app_id}/msg");
    for channel in ["ticket-7", "ticket-42"] {
        let body = json!({"eventType": "ticket.created", "payload": {"n": 2}, "channels": [channel]});
        assert_eq!(app.post(&path, body).await.status, StatusCode::ACCEPTED);
    }

    everything.wait_for(3, WAIT).await;
    tickets.wait_for(2, WAIT).await;
    ticket_42.wait_for(1, WAIT).await;
    // Let any wrongly routed request land, then check nothing extra arrived:
    // a fourth message to all three is the barrier.
    app.post(
        &format!("/api/v1/app/{app_id}/msg"),
        json!({"eventType": "ticket.created", "payload": {"n": "barrier"}, "channels": ["ticket-42"]}),
    )
    .await;
    assert_eq!(everything.wait_for(4, WAIT).await.len(), 4);
    assert_eq!(tickets.wait_for(3, WAIT).await.len(), 3);
    let got = ticket_42.wait_for(2, WAIT).await;
    assert_eq!(got.len(), 2);
    assert!(
        got.iter()
            .all(|r| !String::from_utf8_lossy(&r.body).contains("\"n\":1"))
    );
}

async fn failures_are_retried_on_schedule_with_the_same_webhook_id(backend: Backend) {
    let app = spawn_app_with(&backend, |s| s.retry_schedule = Some("300ms,600ms".into())).await;
    let receiver = Receiver::scripted(&[500, 503]).await;
    let app_id = app.create_app("Acme").await;
    let ep = app.create_endpoint(&app_id, &receiver.url, json!({})).await;
    let msg = app.publish(&app_id, "ticket.created", json!({"id": 1})).await;

    let got = receiver.wait_for(3, WAIT).await;
    let ids: Vec<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids, vec![msg["id"].as_str().unwrap(); 3]);
    // Never earlier than the schedule (jitter only adds).
    assert!(
        got[1].at - got[0].at >= Duration::from_millis(300),
        "{:?}",
        got[1].at - got[0].at
    );
    assert!(
        got[2].at - got[1].at >= Duration::from_millis(600),
        "{:?}",
        got[2].at - got[1].at
    );

    let ep_id = ep["id"].as_str().unwrap();
    let attempts = app
        .wait_for_attempts(&format!("/api/v1/app/{app_id}/attempt/endpoint/{ep_id}"), |a| {
            a.len() == 3
        })
        .await;
    // Newest first.
    let codes: Vec<i64> = attempts
        .iter()
        .map(|a| a["responseStatusCode"].as_i64().unwrap())
        .collect();
    assert_eq!(codes, vec![200, 503, 500]);
    let statuses: Vec<i64> = attempts.iter().map(|a| a["status"].as_i64().unwrap()).collect();
    assert_eq!(statuses, vec![0, 2, 2]);
    assert_eq!(receiver.count(), 3);
}

async fn a_delivery_that_keeps_failing_is_exhausted_and_can_be_resent(backend: Backend) {
    let app = spawn_app(&backend).await; // 100ms,200ms: three attempts in all
    let receiver = Receiver::scripted(&[500, 500, 500]).await;
    let app_id = app.create_app("Acme").await;
    let ep = app.create_endpoint(&app_id, &receiver.url, json!({})).await;
    let ep_id = ep["id"].as_str().unwrap();
    let msg = app.publish(&app_id, "ticket.created", json!({"id": 1})).await;
    let msg_id = msg["id"].as_str().unwrap();

    let history = format!("/api/v1/app/{app_id}/attempt/msg/{msg_id}");
    let attempts = app.wait_for_attempts(&history, |a| a.len() == 3).await;
    assert!(attempts.iter().all(|a| a["status"] == 2 && a["statusText"] == "fail"));
    assert!(
        attempts
            .iter()
            .all(|a| a["response"].is_string() && a["responseDurationMs"].is_i64())
    );
    // Exhausted: no fourth attempt follows. The resend below is the barrier
    // that proves it, since it must be the fourth request.
    let resend = app
        .post(
            &format!("/api/v1/app/{app_id}/msg/{msg_id}/endpoint/{ep_id}/resend"),
            json!({}),
        )
        .await;
    assert_eq!(resend.status, StatusCode::ACCEPTED);
    assert_eq!(resend.body, json!({}));

    let got = receiver.wait_for(4, WAIT).await;
    assert_eq!(got.len(), 4);
    assert_eq!(got[3].header("webhook-id"), msg_id);
    let attempts = app.wait_for_attempts(&history, |a| a.len() == 4).await;
    assert_eq!(attempts[0]["status"], 0);
    assert_eq!(attempts[0]["triggerType"], 1, "a resend is a manual attempt");
}

async fn after_rotation_both_secrets_sign_until_the_grace_period_ends(backend: Backend) {
    let app = spawn_app(&backend).await;
    let receiver = Receiver::start().await;
    let app_id = app.create_app("Acme").await;
    let ep = app.create_endpoint(&app_id, &receiver.url, json!({})).await;
    let ep_id = ep["id"].as_str().unwrap();
    let old = app.secret(&app_id, ep_id).await;

    let rotated = app
        .post(
            &format!("/api/v1/app/{app_id}/endpoint/{ep_id}/secret/rotate"),
            json!({}),
        )
        .await;
    assert_eq!(rotated.status, StatusCode::OK);
    let new = rotated.body["key"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(app.secret(&app_id, ep_id).await, new);

    let msg = app.publish(&app_id, "ticket.created", json!({"id": 1})).await;
    let got = receiver.wait_for(1, WAIT).await;
    let (id, ts, sig) = (
        got[0].header("webhook-id"),
        got[0].header("webhook-timestamp"),
        got[0].header("webhook-signature"),
    );
    assert_eq!(id, msg["id"]);
    assert_eq!(
        signature_entries_valid(&new, id, ts, &got[0].body, sig),
        vec![true, false]
    );
    assert_eq!(
        signature_entries_valid(&old, id, ts, &got[0].body, sig),
        vec![false, true]
    );

    // A rotation with no grace period drops the old secret at once; a given key is used as is.
    let chosen = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let rotated = app
        .post(
            &format!("/api/v1/app/{app_id}/endpoint/{ep_id}/secret/rotate"),
            json!({"key": chosen, "gracePeriodSeconds": 0}),
        )
        .await;
    assert_eq!(rotated.body["key"], chosen);
    app.publish(&app_id, "ticket.created", json!({"id": 2})).await;
    let got = receiver.wait_for(2, WAIT).await;
    let r = &got[1];
    let valid = signature_entries_valid(
        chosen,
        r.header("webhook-id"),
        r.header("webhook-timestamp"),
        &r.body,
        r.header("webhook-signature"),
    );
    assert_eq!(valid, vec![true]);
}

async fn disabled_endpoints_receive_nothing(backend: Backend) {
    let app = spawn_app(&backend).await;
    let off = Receiver::start().await;
    let on = Receiver::start().await;
    let app_id = app.create_app("Acme").await;
    app.create_endpoint(&app_id, &off.url, json!({"disabled": true})).await;
    app.create_endpoint(&app_id, &on.url, json!({})).await;
    app.publish(&app_id, "ticket.created", json!({"id": 1})).await;
    app.publish(&app_id, "ticket.created", json!({"id": 2})).await;
    on.wait_for(2, WAIT).await;
    assert_eq!(off.count(), 0);
}

async fn a_target_that_resolves_to_a_private_address_is_refused_at_connect_time(backend: Backend) {
    // No allowed networks: the name passes creation, the address fails after DNS.
    let app = spawn_app_with(&backend, |s| {
        s.allowed_target_networks = None;
        s.retry_schedule = Some("".into());
    })
    .await;
    let receiver = Receiver::start().await;
    let port = receiver.url.rsplit(':').next().unwrap().to_owned();
    let app_id = app.create_app("Acme").await;
    // A name that resolves to loopback on every machine.
    let ep = app
        .post(
            &format!("/api/v1/app/{app_id}/endpoint"),
            json!({"url": format!("http://localhost:{port}/hook")}),
        )
        .await;
    assert_eq!(
        ep.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "localhost is refused at creation"
    );

    // The SSRF guard after DNS, tested directly with a name the test resolves itself.
    let policy = herald::domain::target::TargetPolicy::default();
    let client = herald::delivery::client::build(&policy, Duration::from_secs(2), 8).unwrap();
    let err = client
        .get(format!("http://localhost:{port}/hook"))
        .send()
        .await
        .unwrap_err();
    let text = herald::delivery::client::describe(&err);
    assert!(
        text.contains("refused addresses") && text.contains("loopback"),
        "{text}"
    );
    assert_eq!(receiver.count(), 0);
}

on_both_backends!(
    a_published_message_is_delivered_once_signed_and_byte_for_byte,
    endpoints_receive_only_the_event_types_and_channels_they_subscribe_to,
    failures_are_retried_on_schedule_with_the_same_webhook_id,
    a_delivery_that_keeps_failing_is_exhausted_and_can_be_resent,
    after_rotation_both_secrets_sign_until_the_grace_period_ends,
    disabled_endpoints_receive_nothing,
    a_target_that_resolves_to_a_private_address_is_refused_at_connect_time,
);

/// Herald reads time from the clock `run_with_clock` is given: on a clock
/// that follows tokio's, a retry an hour away is made as soon as tokio's
/// time is moved on, with no hour slept.
async fn a_retry_comes_due_when_the_injected_clock_moves(backend: Backend) {
    let clock = herald::domain::clock::Clock::following_tokio(chrono::Utc::now());
    let app = spawn_app_on_clock(&backend, clock.clone(), |s| s.retry_schedule = Some("1h".into())).await;
    let receiver = Receiver::scripted(&[500]).await;
    let app_id = app.create_app("Acme").await;
    let ep = app.create_endpoint(&app_id, &receiver.url, json!({})).await;
    app.publish(&app_id, "ticket.created", json!({"id": 1})).await;
    let ep_id = ep["id"].as_str().unwrap();
    let attempts = format!("/api/v1/app/{app_id}/attempt/endpoint/{ep_id}");
    app.wait_for_attempts(&attempts, |a| a.len() == 1).await;
    assert_eq!(receiver.wait_for(1, WAIT).await.len(), 1);

    // Up to 10% jitter: the retry is due within 66 minutes.
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(2 * 3600)).await;
    tokio::time::resume();

    let got = receiver.wait_for(2, WAIT).await;
    assert_eq!(got.len(), 2);
    let codes: Vec<i64> = app
        .wait_for_attempts(&attempts, |a| a.len() == 2)
        .await
        .iter()
        .map(|a| a["responseStatusCode"].as_i64().unwrap())
        .collect();
    assert_eq!(codes, vec![200, 500]);
}

/// Pausing tokio's time needs the single-threaded runtime.
mod paused_time {
    use super::*;

    #[tokio::test]
    async fn sqlite() {
        a_retry_comes_due_when_the_injected_clock_moves(Backend::Sqlite).await;
    }

    #[tokio::test]
    async fn postgres() {
        if let Some(backend) = Backend::postgres().await {
            a_retry_comes_due_when_the_injected_clock_moves(backend.clone()).await;
            if let Backend::Postgres(url) = backend {
                common::pg::drop_database(&url).await;
            }
        }
    }
}
