//! Where Svix's wire and its SDK generations need more than the shapes:
//! trailing slashes, fields a generation requires or chokes on, answers that
//! differ by SDK generation, empty filters, and the operations Svix users call.

mod common;

use common::{Backend, Receiver, spawn_app};
use reqwest::StatusCode;
use serde_json::json;

async fn trailing_slashes_reach_the_same_routes(backend: Backend) {
    let app = spawn_app(&backend).await;
    let created = app.post("/api/v1/app/", json!({"name": "Slash", "uid": "slash"})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let got = app.get("/api/v1/app/slash/").await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    assert_eq!(got.body["id"], created.body["id"]);
    let listed = app.get("/api/v1/app/?limit=1").await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    assert_eq!(listed.body["data"].as_array().map(Vec::len), Some(1));
    let types = app.get("/api/v1/event-type/").await;
    assert_eq!(types.status, StatusCode::OK);
    // Authentication still applies after the slash is trimmed.
    let anonymous = app.http.get(app.url("/api/v1/app/")).send().await.expect("sent");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

async fn endpoint_stats_count_canceled_deliveries(backend: Backend) {
    let app = spawn_app(&backend).await;
    let receiver = Receiver::start().await;
    let app_id = app.create_app("Stats").await;
    let ep = app.create_endpoint(&app_id, &receiver.url, json!({})).await;
    let stats = app
        .get(&format!(
            "/api/v1/app/{app_id}/endpoint/{}/stats",
            ep["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(stats.status, StatusCode::OK, "{}", stats.body);
    for field in ["success", "pending", "sending", "fail", "canceled"] {
        assert!(stats.body[field].is_i64(), "{field} missing: {}", stats.body);
    }
    assert_eq!(stats.body["canceled"], 0);
}

async fn attempts_leave_msg_out_unless_asked_for(backend: Backend) {
    let app = spawn_app(&backend).await;
    let receiver = Receiver::start().await;
    let app_id = app.create_app("Attempts").await;
    app.create_endpoint(&app_id, &receiver.url, json!({"uid": "main"}))
        .await;
    let msg = app.publish(&app_id, "ticket.created", json!({"ticket": 1})).await;
    let path = format!("/api/v1/app/{app_id}/attempt/endpoint/main");
    let attempts = app.wait_for_attempts(&path, |a| !a.is_empty()).await;
    assert!(attempts[0].get("msg").is_none(), "msg must be absent: {}", attempts[0]);
    let by_msg = app
        .get(&format!(
            "/api/v1/app/{app_id}/attempt/msg/{}",
            msg["id"].as_str().unwrap()
        ))
        .await;
    assert!(by_msg.body["data"][0].get("msg").is_none(), "{}", by_msg.body);
    let attempt_id = attempts[0]["id"].as_str().unwrap();
    let one = app
        .get(&format!(
            "/api/v1/app/{app_id}/msg/{}/attempt/{attempt_id}",
            msg["id"].as_str().unwrap()
        ))
        .await;
    assert!(one.body.get("msg").is_none(), "{}", one.body);
    let with = app.get(&format!("{path}?with_msg=true")).await;
    assert_eq!(with.body["data"][0]["msg"]["id"], msg["id"]);
}

on_both_backends!(
    trailing_slashes_reach_the_same_routes,
    endpoint_stats_count_canceled_deliveries,
    attempts_leave_msg_out_unless_asked_for,
);
