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

async fn lists_follow_svixs_order_and_content_switches(backend: Backend) {
    let app = spawn_app(&backend).await;
    for name in ["First", "Second", "Third"] {
        app.create_app(name).await;
    }
    let names = |list: &Value| -> Vec<String> {
        list["data"]
            .as_array()
            .expect("a list")
            .iter()
            .map(|a| a["name"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let natural = app.get("/api/v1/app").await.body;
    assert_eq!(names(&natural), ["First", "Second", "Third"]);
    let descending = app.get("/api/v1/app?order=descending&limit=2").await.body;
    assert_eq!(names(&descending), ["Third", "Second"]);
    let rest = app
        .get(&format!(
            "/api/v1/app?order=descending&limit=2&iterator={}",
            descending["iterator"].as_str().expect("more follow")
        ))
        .await
        .body;
    assert_eq!(names(&rest), ["First"]);
    let refused = app.get("/api/v1/app?order=sideways").await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.body);
    assert_eq!(refused.body["detail"][0]["loc"], json!(["query", "order"]));

    // Event type lists leave schemas out unless asked, as Svix's do.
    let schema = json!({"1": {"type": "object", "properties": {"id": {"type": "string"}}}});
    let made = app
        .post(
            "/api/v1/event-type",
            json!({"name": "ticket.created", "description": "A ticket", "schemas": schema}),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let listed = app.get("/api/v1/event-type").await.body;
    assert!(listed["data"][0]["schemas"].is_null(), "{listed}");
    let full = app.get("/api/v1/event-type?with_content=true").await.body;
    assert_eq!(full["data"][0]["schemas"], schema);

    // Messages and attempts without content read `{}`.
    let receiver = Receiver::start().await;
    let app_id = app.create_app("Content").await;
    app.create_endpoint(&app_id, &receiver.url, json!({"uid": "main"}))
        .await;
    let published = app
        .post(
            &format!("/api/v1/app/{app_id}/msg?with_content=false"),
            json!({"eventType": "ticket.created", "payload": {"id": "T-1"}}),
        )
        .await;
    assert_eq!(published.status, StatusCode::ACCEPTED, "{}", published.body);
    assert_eq!(published.body["payload"], json!({}));
    let msg_id = published.body["id"].as_str().expect("id").to_owned();
    let msg = format!("/api/v1/app/{app_id}/msg/{msg_id}");
    assert_eq!(app.get(&msg).await.body["payload"], json!({"id": "T-1"}));
    assert_eq!(
        app.get(&format!("{msg}?with_content=false")).await.body["payload"],
        json!({})
    );
    let list = app
        .get(&format!("/api/v1/app/{app_id}/msg?with_content=false"))
        .await
        .body;
    assert_eq!(list["data"][0]["payload"], json!({}));
    let path = format!("/api/v1/app/{app_id}/attempt/endpoint/main");
    app.wait_for_attempts(&path, |a| !a.is_empty()).await;
    let bare = app.get(&format!("{path}?with_content=false")).await.body;
    assert_eq!(bare["data"][0]["response"], "{}", "{bare}");
}

async fn a_message_or_a_portal_link_can_make_its_application(backend: Backend) {
    let app = spawn_app(&backend).await;
    let event = json!({"eventType": "ticket.created", "payload": {"id": 1}});
    let unknown = app.post("/api/v1/app/tenant-7/msg", event.clone()).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.body);

    let mut with_app = event.clone();
    with_app["application"] = json!({"name": "Tenant 7", "uid": "tenant-7"});
    let made = app.post("/api/v1/app/tenant-7/msg", with_app.clone()).await;
    assert_eq!(made.status, StatusCode::ACCEPTED, "{}", made.body);
    let tenant = app.get("/api/v1/app/tenant-7").await;
    assert_eq!(tenant.status, StatusCode::OK);
    assert_eq!(tenant.body["name"], "Tenant 7");
    // Once it exists, the application in the body is ignored.
    with_app["application"]["name"] = json!("Renamed");
    let again = app.post("/api/v1/app/tenant-7/msg", with_app).await;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{}", again.body);
    assert_eq!(app.get("/api/v1/app/tenant-7").await.body["name"], "Tenant 7");
    let listed = app.get("/api/v1/app/tenant-7/msg").await.body;
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(2));

    let mut mismatched = event.clone();
    mismatched["application"] = json!({"name": "Tenant 8", "uid": "someone-else"});
    let refused = app.post("/api/v1/app/tenant-8/msg", mismatched).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.body);
    assert_eq!(refused.body["detail"][0]["loc"], json!(["body", "application", "uid"]));
    assert_eq!(app.get("/api/v1/app/tenant-8").await.status, StatusCode::NOT_FOUND);

    let portal = app
        .post(
            "/api/v1/auth/app-portal-access/tenant-9",
            json!({"application": {"name": "Tenant 9", "uid": "tenant-9"}}),
        )
        .await;
    assert_eq!(portal.status, StatusCode::OK, "{}", portal.body);
    assert_eq!(app.get("/api/v1/app/tenant-9").await.body["name"], "Tenant 9");
}

on_both_backends!(
    trailing_slashes_reach_the_same_routes,
    endpoint_stats_count_canceled_deliveries,
    attempts_leave_msg_out_unless_asked_for,
    secret_rotation_answers_each_sdk_generation_as_it_expects,
    an_empty_event_type_filter_means_every_event,
    event_types_can_be_patched,
    attempted_messages_and_destinations_are_listed,
    lists_follow_svixs_order_and_content_switches,
    a_message_or_a_portal_link_can_make_its_application,
    messages_show_payloads_unless_with_content_is_false,
);

/// Svix's liveness probe answers 204 with no token, on GET and HEAD, as load
/// balancers configured for Svix expect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_liveness_ping_answers_no_content() {
    let app = spawn_app(&Backend::Sqlite).await;
    for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
        let answer = app
            .http
            .request(method.clone(), app.url("/api/v1/health/ping"))
            .send()
            .await
            .expect("answered");
        assert_eq!(answer.status(), StatusCode::NO_CONTENT, "{method}");
    }
}

/// docs/migrating-from-svix.md lists every operation of Svix's open-source
/// server with Herald's answer to it. Each one it calls served must reach a
/// route: a made-up id may be unknown (404 naming the object), but never
/// "route not found" and never 405.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_the_migration_guide_calls_served_is_routed() {
    let guide = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/migrating-from-svix.md"))
        .expect("the migration guide");
    let rows: Vec<Vec<String>> = guide
        .lines()
        .filter(|line| line.starts_with("| `"))
        .map(|line| {
            line.split('|')
                .map(|cell| cell.trim().trim_matches('`').to_owned())
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), 41, "Svix's OpenAPI document 1.1.1 has 41 operations");
    let app = spawn_app(&Backend::Sqlite).await;
    for row in &rows {
        let (method, path, herald) = (&row[1], &row[2], &row[4]);
        assert!(herald.starts_with("Served"), "{method} {path}: {herald}");
        let concrete = path
            .replace("{app_id}", "app_unknown")
            .replace("{endpoint_id}", "ep_unknown")
            .replace("{msg_id}", "msg_unknown")
            .replace("{attempt_id}", "atmpt_unknown")
            .replace("{event_type_name}", "unknown.type");
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
        let body = matches!(
            method,
            reqwest::Method::POST | reqwest::Method::PUT | reqwest::Method::PATCH
        )
        .then(|| json!({}));
        let answer = app.call(method.clone(), &concrete, body).await;
        assert_ne!(answer.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_ne!(
            answer.body["detail"], "route not found",
            "{method} {path} is not routed"
        );
    }
}
