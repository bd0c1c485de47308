//! Where Svix's wire and its SDK generations need more than the shapes:
//! trailing slashes, fields a generation requires or chokes on, answers that
//! differ by SDK generation, empty filters, and the operations Svix users call.

mod common;

use common::{Backend, Receiver, TOKEN, TestApp, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};

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

async fn rotate(app: &TestApp, path: &str, user_agent: Option<&str>) -> (StatusCode, String) {
    let mut req = app.http.post(app.url(path)).bearer_auth(TOKEN).json(&json!({}));
    if let Some(ua) = user_agent {
        req = req.header(reqwest::header::USER_AGENT, ua);
    }
    let resp = req.send().await.expect("sent");
    (resp.status(), resp.text().await.expect("body"))
}

async fn secret_rotation_answers_each_sdk_generation_as_it_expects(backend: Backend) {
    let app = spawn_app(&backend).await;
    let receiver = Receiver::start().await;
    let app_id = app.create_app("Rotate").await;
    app.create_endpoint(&app_id, &receiver.url, json!({"uid": "main"}))
        .await;
    let path = format!("/api/v1/app/{app_id}/endpoint/main/secret/rotate");

    let before = app.secret(&app_id, "main").await;
    let (status, body) = rotate(&app, &path, Some("svix-libs/1.40.0/python")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(body, "");
    assert_ne!(app.secret(&app_id, "main").await, before, "a 204 still rotates");

    for ua in [Some("svix-libs/2.9.1/python"), Some("curl/8"), None] {
        let (status, body) = rotate(&app, &path, ua).await;
        assert_eq!(status, StatusCode::OK, "{ua:?}");
        let out: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(out["key"].as_str(), Some(app.secret(&app_id, "main").await.as_str()));
    }
}

async fn an_empty_event_type_filter_means_every_event(backend: Backend) {
    let app = spawn_app(&backend).await;
    let receiver = Receiver::start().await;
    let app_id = app.create_app("Filters").await;
    let ep = app
        .create_endpoint(&app_id, &receiver.url, json!({"uid": "all", "filterTypes": []}))
        .await;
    assert_eq!(ep["filterTypes"], Value::Null, "{ep}");
    assert_eq!(ep["eventTypes"], Value::Null, "{ep}");
    let base = format!("/api/v1/app/{app_id}/endpoint/all");
    let patched = app.patch(&base, json!({"eventTypes": ["a.b"]})).await;
    assert_eq!(patched.body["eventTypes"], json!(["a.b"]));
    let patched = app.patch(&base, json!({"eventTypes": []})).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(patched.body["eventTypes"], Value::Null);
    let put = app.put(&base, json!({"url": receiver.url, "eventTypes": []})).await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    assert_eq!(app.get(&base).await.body["filterTypes"], Value::Null);

    app.publish(&app_id, "anything.at.all", json!({"n": 1})).await;
    let attempts = app
        .wait_for_attempts(&format!("/api/v1/app/{app_id}/attempt/endpoint/all"), |a| !a.is_empty())
        .await;
    assert_eq!(attempts[0]["status"], 0);
}

async fn event_types_can_be_patched(backend: Backend) {
    let app = spawn_app(&backend).await;
    let created = app
        .post(
            "/api/v1/event-type",
            json!({"name": "ticket.created", "description": "old", "featureFlag": "beta"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let patched = app
        .patch(
            "/api/v1/event-type/ticket.created",
            json!({"description": "new", "deprecated": true, "featureFlag": null}),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(patched.body["description"], "new");
    assert_eq!(patched.body["deprecated"], true);
    assert_eq!(patched.body["archived"], false);
    assert_eq!(patched.body["featureFlag"], Value::Null);
    assert_eq!(patched.body["groupName"], "ticket");
    let read = app.get("/api/v1/event-type/ticket.created").await;
    assert_eq!(read.body["description"], "new");
    let bad = app
        .patch("/api/v1/event-type/ticket.created", json!({"schemas": {"x": {}}}))
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    let missing = app
        .patch("/api/v1/event-type/no.such", json!({"description": "x"}))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

/// The 2.x SDKs send `with_content=false` unless asked otherwise; Svix then
/// answers `{}` for payloads, and so does Herald.
async fn messages_show_payloads_unless_with_content_is_false(backend: Backend) {
    let app = spawn_app(&backend).await;
    let app_id = app.create_app("Content").await;
    let msgs = format!("/api/v1/app/{app_id}/msg");
    let body = json!({"eventType": "a.b", "payload": {"n": 1}});
    let created = app.post(&format!("{msgs}?with_content=false"), body.clone()).await;
    assert_eq!(created.status, StatusCode::ACCEPTED, "{}", created.body);
    assert_eq!(created.body["payload"], json!({}));
    let one = format!("{msgs}/{}", created.body["id"].as_str().expect("id"));
    assert_eq!(app.get(&one).await.body["payload"], json!({"n": 1}), "stored whole");
    assert_eq!(
        app.get(&format!("{one}?with_content=true")).await.body["payload"],
        json!({"n": 1})
    );
    assert_eq!(
        app.get(&format!("{one}?with_content=false")).await.body["payload"],
        json!({})
    );
    assert_eq!(app.get(&msgs).await.body["data"][0]["payload"], json!({"n": 1}));
    let bare = app.get(&format!("{msgs}?with_content=false")).await;
    assert_eq!(bare.body["data"][0]["payload"], json!({}));
    assert_eq!(bare.body["data"][0]["eventType"], "a.b");

    let bad = app.post(&format!("{msgs}?with_content=maybe"), body).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    assert_eq!(bad.body["detail"][0]["loc"], json!(["query", "with_content"]));
    assert_eq!(
        ids(&app.get(&msgs).await.body).len(),
        1,
        "a refused request stores nothing"
    );
}

fn ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|i| i["id"].as_str().expect("id").to_owned())
        .collect()
}

async fn attempted_messages_and_destinations_are_listed(backend: Backend) {
    let app = spawn_app(&backend).await;
    let ok = Receiver::start().await;
    let app_id = app.create_app("Attempted").await;
    let first = app
        .create_endpoint(&app_id, &ok.url, json!({"uid": "first", "filterTypes": ["a.one"]}))
        .await;
    let second = app.create_endpoint(&app_id, &ok.url, json!({"uid": "second"})).await;
    let m1 = app.publish(&app_id, "a.one", json!({"n": 1})).await;
    let m2 = app
        .post(
            &format!("/api/v1/app/{app_id}/msg"),
            json!({"eventType": "a.two", "payload": {"n": 2}, "tags": ["vip"]}),
        )
        .await
        .body;
    let m3 = app.publish(&app_id, "a.one", json!({"n": 3})).await;
    app.wait_for_attempts(&format!("/api/v1/app/{app_id}/attempt/endpoint/second"), |a| {
        a.len() == 3
    })
    .await;
    app.wait_for_attempts(&format!("/api/v1/app/{app_id}/attempt/endpoint/first"), |a| {
        a.len() == 2
    })
    .await;
    let id = |v: &Value| v["id"].as_str().unwrap().to_owned();

    // Messages attempted to one endpoint, newest first, with their status.
    let first_msgs = app.get(&format!("/api/v1/app/{app_id}/endpoint/first/msg")).await;
    assert_eq!(first_msgs.status, StatusCode::OK, "{}", first_msgs.body);
    assert_eq!(ids(&first_msgs.body), vec![id(&m3), id(&m1)]);
    let item = &first_msgs.body["data"][0];
    assert_eq!(item["status"], 0);
    assert_eq!(item["statusText"], "success");
    assert_eq!(item["payload"], json!({"n": 3}));
    assert_eq!(item["eventType"], "a.one");
    assert_eq!(first_msgs.body["done"], true);

    // Paging forwards and back, and the filters.
    let second_path = format!("/api/v1/app/{app_id}/endpoint/{}/msg", id(&second));
    let page1 = app.get(&format!("{second_path}?limit=2")).await.body;
    assert_eq!(ids(&page1), vec![id(&m3), id(&m2)]);
    assert_eq!(page1["done"], false);
    let page2 = app
        .get(&format!(
            "{second_path}?limit=2&iterator={}",
            page1["iterator"].as_str().unwrap()
        ))
        .await
        .body;
    assert_eq!(ids(&page2), vec![id(&m1)]);
    assert_eq!(page2["done"], true);
    let back = app
        .get(&format!(
            "{second_path}?limit=2&iterator={}",
            page2["prevIterator"].as_str().unwrap()
        ))
        .await
        .body;
    assert_eq!(ids(&back), vec![id(&m3), id(&m2)]);
    let typed = app.get(&format!("{second_path}?event_types=a.two")).await.body;
    assert_eq!(ids(&typed), vec![id(&m2)]);
    let tagged = app.get(&format!("{second_path}?tag=vip")).await.body;
    assert_eq!(ids(&tagged), vec![id(&m2)]);
    assert_eq!(
        ids(&app.get(&format!("{second_path}?status=2")).await.body),
        Vec::<String>::new()
    );
    assert_eq!(ids(&app.get(&format!("{second_path}?status=0")).await.body).len(), 3);
    let bare = app.get(&format!("{second_path}?with_content=false")).await.body;
    assert_eq!(bare["data"][0]["payload"], json!({}));

    // Endpoints one message was attempted to.
    let dest = app.get(&format!("/api/v1/app/{app_id}/msg/{}/endpoint", id(&m1))).await;
    assert_eq!(dest.status, StatusCode::OK, "{}", dest.body);
    let mut want = vec![id(&first), id(&second)];
    want.sort();
    want.reverse();
    assert_eq!(ids(&dest.body), want);
    let d = &dest.body["data"][0];
    assert_eq!(d["status"], 0);
    assert_eq!(d["statusText"], "success");
    assert!(d["url"].is_string() && d["createdAt"].is_string() && d["description"].is_string());
    assert_eq!(d["version"], 1, "SDKs 1.x require it");
    let only_second = app.get(&format!("/api/v1/app/{app_id}/msg/{}/endpoint", id(&m2))).await;
    assert_eq!(ids(&only_second.body), vec![id(&second)]);
    let paged = app
        .get(&format!("/api/v1/app/{app_id}/msg/{}/endpoint?limit=1", id(&m3)))
        .await
        .body;
    assert_eq!(ids(&paged), vec![want[0].clone()]);
    let rest = app
        .get(&format!(
            "/api/v1/app/{app_id}/msg/{}/endpoint?limit=1&iterator={}",
            id(&m3),
            paged["iterator"].as_str().unwrap()
        ))
        .await
        .body;
    assert_eq!(ids(&rest), vec![want[1].clone()]);
    assert_eq!(rest["done"], true);

    let missing = app.get(&format!("/api/v1/app/{app_id}/msg/msg_nope/endpoint")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

on_both_backends!(
    trailing_slashes_reach_the_same_routes,
    endpoint_stats_count_canceled_deliveries,
    attempts_leave_msg_out_unless_asked_for,
    secret_rotation_answers_each_sdk_generation_as_it_expects,
    an_empty_event_type_filter_means_every_event,
    event_types_can_be_patched,
    attempted_messages_and_destinations_are_listed,
    messages_show_payloads_unless_with_content_is_false,
);
