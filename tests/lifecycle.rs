//! Endpoint lifecycle as an operator sees it: what an endpoint receives
//! (wildcards, owners), and how it goes failing, healthy, and disabled.

mod common;

use std::time::Duration;

use common::{Backend, Receiver, spawn_app, spawn_app_with};
use serde_json::{Value, json};

fn ep_path(app: &str, ep: &Value) -> String {
    format!("/api/v1/app/{app}/endpoint/{}", ep["id"].as_str().unwrap())
}

/// The event types a receiver got, sorted.
fn event_types(rx: &Receiver) -> Vec<String> {
    let mut got: Vec<String> = rx
        .received()
        .iter()
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    got.sort();
    got
}

async fn a_wildcard_subscribes_to_a_whole_group(backend: Backend) {
    let app = spawn_app(&backend).await;
    let app_id = app.create_app("Acme").await;
    let tickets = Receiver::start().await;
    let everything = Receiver::start().await;
    app.create_endpoint(&app_id, &tickets.url, json!({"filterTypes": ["ticket.*"]}))
        .await;
    app.create_endpoint(&app_id, &everything.url, json!({})).await;
    let refused = app
        .post(
            &format!("/api/v1/app/{app_id}/endpoint"),
            json!({"url": tickets.url, "filterTypes": ["ticket.*.x"]}),
        )
        .await;
    assert_eq!(refused.status, reqwest::StatusCode::UNPROCESSABLE_ENTITY);

    for event in ["ticket.created", "sla.at_risk", "ticket.sla.breached", "tickets.misc"] {
        app.publish(&app_id, event, json!({"type": event})).await;
    }
    everything.wait_for(4, Duration::from_secs(10)).await;
    tickets.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(event_types(&tickets), ["ticket.created", "ticket.sla.breached"]);
}

async fn an_owners_endpoint_receives_only_what_its_owner_may_see(backend: Backend) {
    let app = spawn_app(&backend).await;
    let app_id = app.create_app("Acme").await;
    let alice = Receiver::start().await;
    let bob = Receiver::start().await;
    let admin = Receiver::start().await;
    let ep = app
        .create_endpoint(&app_id, &alice.url, json!({"ownerId": "alice"}))
        .await;
    assert_eq!(ep["ownerId"], "alice");
    app.create_endpoint(&app_id, &bob.url, json!({"ownerId": "bob"})).await;
    app.create_endpoint(&app_id, &admin.url, json!({})).await;

    let publish = |event: &'static str, audience: Value| {
        let body = json!({"eventType": event, "payload": {"type": event}, "audience": audience});
        let path = format!("/api/v1/app/{app_id}/msg");
        let app = &app;
        async move {
            let a = app.post(&path, body).await;
            assert_eq!(a.status, reqwest::StatusCode::ACCEPTED, "{}", a.body);
        }
    };
    publish("ticket.for_alice", json!(["alice"])).await;
    publish("ticket.for_both", json!(["alice", "bob"])).await;
    publish("ticket.for_all", Value::Null).await;

    admin.wait_for(3, Duration::from_secs(10)).await;
    alice.wait_for(3, Duration::from_secs(10)).await;
    bob.wait_for(2, Duration::from_secs(10)).await;
    assert!(!bob.next_arrival(Duration::from_millis(300)).await);
    assert_eq!(event_types(&bob), ["ticket.for_all", "ticket.for_both"]);
    assert_eq!(
        event_types(&alice),
        ["ticket.for_alice", "ticket.for_all", "ticket.for_both"]
    );
}

async fn an_endpoint_goes_failing_then_healthy_and_is_disabled_when_it_keeps_failing(backend: Backend) {
    let app = spawn_app_with(&backend, |s| s.disable_after = Some("400ms".into())).await;
    let app_id = app.create_app("Acme").await;
    // Three attempts per message (test schedule 100ms, 200ms): the first message exhausts, the second succeeds.
    let receiver = Receiver::scripted(&[500, 500, 500]).await;
    let ep = app.create_endpoint(&app_id, &receiver.url, json!({})).await;
    assert_eq!(ep["status"], "healthy");
    app.publish(&app_id, "ticket.created", json!({})).await;
    let failing = app
        .wait_until(&ep_path(&app_id, &ep), |e| e["status"] == "failing")
        .await;
    assert!(failing["failingSince"].is_string(), "{failing}");
    app.publish(&app_id, "ticket.created", json!({})).await;
    app.wait_until(&ep_path(&app_id, &ep), |e| {
        e["status"] == "healthy" && e["failingSince"].is_null()
    })
    .await;

    // Failing for longer than disable_after: switched off, with the reason.
    let dead = Receiver::scripted(&[500; 12]).await;
    let ep = app
        .create_endpoint(&app_id, &dead.url, json!({"filterTypes": ["sla.at_risk"]}))
        .await;
    app.publish(&app_id, "sla.at_risk", json!({})).await;
    let failing = app
        .wait_until(&ep_path(&app_id, &ep), |e| e["status"] == "failing")
        .await;
    // The policy is about time: wait until disable_after has passed since failingSince.
    let since: chrono::DateTime<chrono::Utc> = failing["failingSince"].as_str().unwrap().parse().unwrap();
    let until = since + chrono::Duration::milliseconds(400);
    if let Ok(left) = (until - chrono::Utc::now()).to_std() {
        tokio::time::sleep(left).await;
    }
    app.publish(&app_id, "sla.at_risk", json!({})).await;
    let off = app
        .wait_until(&ep_path(&app_id, &ep), |e| e["status"] == "disabled")
        .await;
    assert!(
        off["disabledReason"]
            .as_str()
            .unwrap()
            .contains("no successful delivery for 400ms"),
        "{off}"
    );
}

on_both_backends!(
    a_wildcard_subscribes_to_a_whole_group,
    an_owners_endpoint_receives_only_what_its_owner_may_see,
    an_endpoint_goes_failing_then_healthy_and_is_disabled_when_it_keeps_failing,
);
