//! Where Svix's wire and its SDK generations need more than the shapes:
//! trailing slashes, fields a generation requires or chokes on, answers that
//! differ by SDK generation, empty filters, and the operations Svix users call.

mod common;

use common::{Backend, spawn_app};
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

on_both_backends!(trailing_slashes_reach_the_same_routes,);
