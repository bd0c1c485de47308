//! Scoped, revocable API tokens: an application's token and an owner's
//! token reach their own objects and nothing else, route by route, and a
//! revoked or expired token reaches nothing.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Backend, Receiver, TestApp, spawn_app, spawn_app_with};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Two applications; in the first, endpoints of owners acme and globex, each
/// sent one message; in the second, one endpoint sent one message.
struct World {
    app_a: String,
    app_b: String,
    ep_acme: String,
    ep_globex: String,
    ep_b: String,
    msg_acme: String,
    msg_globex: String,
    msg_b: String,
    attempt_globex: String,
    attempt_b: String,
    _receiver: Receiver,
}

async fn world(app: &TestApp) -> World {
    let receiver = Receiver::start().await;
    let catalog = app
        .post(
            "/api/v1/event-type",
            json!({"name": "ticket.created", "description": "A ticket was opened"}),
        )
        .await;
    assert_eq!(catalog.status, StatusCode::CREATED, "{}", catalog.body);
    let app_a = app.create_app("Tenant A").await;
    let app_b = app.create_app("Tenant B").await;
    let endpoint = |a: &str, owner: &str| {
        let (a, owner, url) = (a.to_owned(), owner.to_owned(), receiver.url.clone());
        async move {
            app.create_endpoint(&a, &url, json!({"ownerId": owner, "channels": [owner]}))
                .await["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let ep_acme = endpoint(&app_a, "acme").await;
    let ep_globex = endpoint(&app_a, "globex").await;
    let ep_b = endpoint(&app_b, "acme").await;
    let publish = |a: &str, channel: &str| {
        let (a, channel) = (a.to_owned(), channel.to_owned());
        async move {
            let body = json!({"eventType": "ticket.created", "payload": {"for": channel}, "channels": [channel]});
            let answer = app.post(&format!("/api/v1/app/{a}/msg"), body).await;
            assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
            answer.body["id"].as_str().unwrap().to_owned()
        }
    };
    let msg_acme = publish(&app_a, "acme").await;
    let msg_globex = publish(&app_a, "globex").await;
    let msg_b = publish(&app_b, "acme").await;
    receiver.wait_for(3, Duration::from_secs(10)).await;
    let first_attempt = |a: String, ep: String| async move {
        let path = format!("/api/v1/app/{a}/attempt/endpoint/{ep}");
        let list = app.wait_for_attempts(&path, |l| !l.is_empty()).await;
        list[0]["id"].as_str().unwrap().to_owned()
    };
    let attempt_globex = first_attempt(app_a.clone(), ep_globex.clone()).await;
    let attempt_b = first_attempt(app_b.clone(), ep_b.clone()).await;
    World {
        app_a,
        app_b,
        ep_acme,
        ep_globex,
        ep_b,
        msg_acme,
        msg_globex,
        msg_b,
        attempt_globex,
        attempt_b,
        _receiver: receiver,
    }
}

/// Makes a token with the admin token; answers the token text.
async fn token(app: &TestApp, body: Value) -> String {
    let made = app.post("/api/v1/auth/token", body).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    made.body["token"].as_str().expect("token shown once").to_owned()
}

/// Every route of the served OpenAPI document, as (method, template).
async fn routes(app: &TestApp) -> Vec<(Method, String)> {
    let doc = app.get("/api/v1/openapi.json").await.body;
    let mut out = Vec::new();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for method in ops.as_object().expect("operations").keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            out.push((method, path.clone()));
        }
    }
    assert!(out.len() > 40, "the document lists every route ({})", out.len());
    out
}

fn fill(template: &str, params: &[(&str, &str)]) -> String {
    params.iter().fold(template.to_owned(), |path, (name, value)| {
        path.replace(&format!("{{{name}}}"), value)
    })
}

/// A body for any route: enough to pass validation where it matters, so a
/// route that forgot its check would answer 2xx and fail the test.
fn body_for(method: &Method, template: &str, receiver_url: &str) -> Option<Value> {
    if *method == Method::GET || *method == Method::DELETE {
        return None;
    }
    Some(
        if template.ends_with("/endpoint") || template.ends_with("/endpoint/{endpoint_id}") {
            json!({"url": receiver_url})
        } else if template.ends_with("/msg") {
            json!({"eventType": "ticket.created", "payload": {}})
        } else if template.ends_with("/resend") && !template.contains("{msg_id}") {
            json!({"msgIds": ["placeholder"]})
        } else if template.ends_with("/recover") || template.ends_with("/replay-missing") {
            json!({"since": "2020-01-01T00:00:00Z"})
        } else if template.ends_with("/headers") {
            json!({"headers": {"x-test": "1"}})
        } else if template.ends_with("/app") || template.ends_with("/app/{app_id}") {
            json!({"name": "renamed"})
        } else if template.contains("event-type") {
            json!({"name": "ticket.created", "description": "changed"})
        } else if template.ends_with("/auth/token") {
            json!({"name": "escalated"})
        } else {
            json!({})
        },
    )
}

/// Values for every path parameter of the API: these objects, and ids of a
/// task and a token that do not exist.
fn path_params<'a>(app: &'a str, endpoint: &'a str, msg: &'a str, attempt: &'a str) -> [(&'a str, &'a str); 7] {
    [
        ("app_id", app),
        ("endpoint_id", endpoint),
        ("msg_id", msg),
        ("attempt_id", attempt),
        ("task_id", "qtask_01J00000000000000000000000"),
        ("token_id", "tok_01J00000000000000000000000"),
        ("event_type_name", "ticket.created"),
    ]
}

/// Calls every route with `token`, its path filled from `params`. Every
/// refusal must be 403 or 404; answers the routes that succeeded.
async fn walk_routes(app: &TestApp, token: &str, params: &[(&str, &str)]) -> BTreeSet<String> {
    let mut allowed = BTreeSet::new();
    for (method, template) in routes(app).await {
        let path = fill(&template, params);
        let body = body_for(&method, &template, "http://127.0.0.1:9/");
        let answer = app.call_as(token, method.clone(), &path, body).await;
        if answer.status.is_success() {
            allowed.insert(format!("{method} {template}"));
            continue;
        }
        assert!(
            answer.status == StatusCode::NOT_FOUND || answer.status == StatusCode::FORBIDDEN,
            "{method} {path}: {} {}",
            answer.status,
            answer.body
        );
    }
    allowed
}

async fn an_application_token_reaches_nothing_outside_its_application(backend: Backend) {
    let app = spawn_app(&backend).await;
    let w = world(&app).await;
    let tok = token(&app, json!({"name": "tenant A service", "appId": w.app_a})).await;
    // Every route, pointed at the other application's objects.
    let foreign = path_params(&w.app_b, &w.ep_b, &w.msg_b, &w.attempt_b);
    // Only reads of its own list and the shared event catalog succeed.
    let allowed = walk_routes(&app, &tok, &foreign).await;
    let expected = [
        "GET /api/v1/app",
        "GET /api/v1/event-type",
        "GET /api/v1/event-type/{event_type_name}",
        "GET /health",
    ];
    assert_eq!(allowed, BTreeSet::from(expected.map(str::to_owned)));
    let listed = app.call_as(&tok, Method::GET, "/api/v1/app", None).await;
    let ids: Vec<&str> = listed.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [w.app_a.as_str()]);
    // Nothing of the other application changed.
    let b = app.get(&format!("/api/v1/app/{}/endpoint/{}", w.app_b, w.ep_b)).await;
    assert_eq!(b.status, StatusCode::OK);
    assert_eq!(b.body["description"], "");
    assert_eq!(
        app.get(&format!("/api/v1/app/{}", w.app_b)).await.body["name"],
        "Tenant B"
    );

    // Within its application it does the product's work.
    let own = format!("/api/v1/app/{}", w.app_a);
    let made = app
        .call_as(
            &tok,
            Method::POST,
            &format!("{own}/endpoint"),
            Some(json!({"url": "http://127.0.0.1:9/"})),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let sent = app
        .call_as(
            &tok,
            Method::POST,
            &format!("{own}/msg"),
            Some(json!({"eventType": "ticket.created", "payload": {}})),
        )
        .await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{}", sent.body);
    let listed = app.call_as(&tok, Method::GET, &format!("{own}/msg"), None).await;
    assert_eq!(listed.body["data"].as_array().unwrap().len(), 3);
    // But not the administrator's work.
    let refused = app
        .call_as(&tok, Method::POST, "/api/v1/app", Some(json!({"name": "mine now"})))
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let refused = app.call_as(&tok, Method::DELETE, &own, None).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
}

async fn an_owner_token_reaches_only_its_owners_endpoints(backend: Backend) {
    let app = spawn_app(&backend).await;
    let w = world(&app).await;
    let tok = token(
        &app,
        json!({"name": "acme's portal", "appId": w.app_a, "ownerId": "acme"}),
    )
    .await;
    // Every route, pointed at the other owner's objects in the same application.
    let other_owner = path_params(&w.app_a, &w.ep_globex, &w.msg_globex, &w.attempt_globex);
    // What succeeds is narrowed to acme; each is checked below.
    let allowed = walk_routes(&app, &tok, &other_owner).await;
    let expected = [
        "GET /api/v1/app",
        "GET /api/v1/app/{app_id}",
        "GET /api/v1/app/{app_id}/endpoint",
        "POST /api/v1/app/{app_id}/endpoint",
        "POST /api/v1/auth/app-portal-access/{app_id}",
        "GET /api/v1/event-type",
        "GET /api/v1/event-type/{event_type_name}",
        "GET /health",
    ];
    assert_eq!(allowed, BTreeSet::from(expected.map(str::to_owned)));

    let own = format!("/api/v1/app/{}", w.app_a);
    // The list shows acme's endpoints only: the one it had and the one the matrix made.
    let listed = app.call_as(&tok, Method::GET, &format!("{own}/endpoint"), None).await;
    let owners: BTreeSet<&str> = listed.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["ownerId"].as_str().unwrap())
        .collect();
    assert_eq!(owners, BTreeSet::from(["acme"]));
    let asked_other = app
        .call_as(&tok, Method::GET, &format!("{own}/endpoint?owner_id=globex"), None)
        .await;
    assert_eq!(asked_other.status, StatusCode::FORBIDDEN);
    // Endpoints it makes are acme's, and it cannot make one for globex.
    let made = app
        .call_as(
            &tok,
            Method::POST,
            &format!("{own}/endpoint"),
            Some(json!({"url": "http://127.0.0.1:9/"})),
        )
        .await;
    assert_eq!(made.body["ownerId"], "acme");
    let refused = app
        .call_as(
            &tok,
            Method::POST,
            &format!("{own}/endpoint"),
            Some(json!({"url": "http://127.0.0.1:9/", "ownerId": "globex"})),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    // Nor write a payload template: templates are bounded by fuel, not memory.
    let templated = app
        .call_as(
            &tok,
            Method::PATCH,
            &format!("{own}/endpoint/{}", w.ep_acme),
            Some(json!({"format": "template", "template": "{{ payload }}"})),
        )
        .await;
    assert_eq!(templated.status, StatusCode::FORBIDDEN, "{}", templated.body);
    // It cannot hand its own endpoint to globex either.
    let moved = app
        .call_as(
            &tok,
            Method::PATCH,
            &format!("{own}/endpoint/{}", w.ep_acme),
            Some(json!({"ownerId": "globex"})),
        )
        .await;
    assert_eq!(moved.status, StatusCode::FORBIDDEN);
    // Portal links it makes are acme's.
    let link = app
        .call_as(
            &tok,
            Method::POST,
            &format!("/api/v1/auth/app-portal-access/{}", w.app_a),
            Some(json!({"ownerId": "globex"})),
        )
        .await;
    assert_eq!(link.status, StatusCode::FORBIDDEN);

    // Its own endpoint: history, secret, and resending what it was sent.
    let acme_ep = format!("{own}/endpoint/{}", w.ep_acme);
    for path in [
        acme_ep.clone(),
        format!("{acme_ep}/secret"),
        format!("{own}/attempt/endpoint/{}", w.ep_acme),
    ] {
        let answer = app.call_as(&tok, Method::GET, &path, None).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.body);
    }
    let resend = |msg: String| {
        let path = format!("{own}/msg/{msg}/endpoint/{}/resend", w.ep_acme);
        let tok = tok.clone();
        let app = &app;
        async move { app.call_as(&tok, Method::POST, &path, None).await.status }
    };
    assert_eq!(resend(w.msg_acme.clone()).await, StatusCode::ACCEPTED);
    // globex's message was never sent to acme's endpoint: it must not be pulled there.
    assert_eq!(resend(w.msg_globex.clone()).await, StatusCode::NOT_FOUND);
    let bulk = app
        .call_as(
            &tok,
            Method::POST,
            &format!("{acme_ep}/resend"),
            Some(json!({"msgIds": [w.msg_acme, w.msg_globex]})),
        )
        .await;
    assert_eq!(bulk.status, StatusCode::ACCEPTED, "{}", bulk.body);
    assert_eq!(bulk.body["scheduled"], 1);
    assert_eq!(bulk.body["skipped"], json!([w.msg_globex]));
}

async fn revoked_and_expired_tokens_reach_nothing(backend: Backend) {
    let app = spawn_app(&backend).await;
    let admin = token(&app, json!({"name": "ops"})).await;
    let created = app
        .call_as(
            &admin,
            Method::POST,
            "/api/v1/app",
            Some(json!({"name": "by a made admin token"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "a made admin token administers");
    let app_id = created.body["id"].as_str().unwrap().to_owned();

    let listed = app.get("/api/v1/auth/token").await.body;
    let entry = &listed["data"][0];
    assert_eq!(entry["scope"], "admin");
    assert!(entry.get("token").is_none(), "a token is shown only when made: {entry}");
    let id = entry["id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.delete(&format!("/api/v1/auth/token/{id}")).await.status,
        StatusCode::NO_CONTENT
    );
    let after = app.call_as(&admin, Method::GET, "/api/v1/app", None).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    assert_eq!(after.body["detail"], "this token was revoked or has expired");
    assert!(app.get(&format!("/api/v1/auth/token/{id}")).await.body["revokedAt"].is_string());

    let brief = token(&app, json!({"name": "brief", "appId": app_id, "expiresIn": 1})).await;
    let path = format!("/api/v1/app/{app_id}");
    assert_eq!(
        app.call_as(&brief, Method::GET, &path, None).await.status,
        StatusCode::OK
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while app.call_as(&brief, Method::GET, &path, None).await.status == StatusCode::OK {
        assert!(tokio::time::Instant::now() < deadline, "the token outlived its expiry");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        app.call_as(&brief, Method::GET, &path, None).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Scoped tokens cannot make tokens; bad requests name the field.
    let scoped = token(&app, json!({"name": "tenant", "appId": app_id})).await;
    let escalate = app
        .call_as(
            &scoped,
            Method::POST,
            "/api/v1/auth/token",
            Some(json!({"name": "root"})),
        )
        .await;
    assert_eq!(escalate.status, StatusCode::FORBIDDEN);
    for (body, field) in [
        (json!({"name": "x", "ownerId": "acme"}), "ownerId"),
        (json!({"name": "x", "appId": "no-such-app"}), "appId"),
        (json!({"name": "x", "expiresIn": 0}), "expiresIn"),
        (json!({"name": ""}), "name"),
        (json!({"name": "x", "rateLimit": 0}), "rateLimit"),
    ] {
        let refused = app.post("/api/v1/auth/token", body).await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            refused.body["detail"][0]["loc"],
            json!(["body", field]),
            "{}",
            refused.body
        );
    }
}

async fn a_token_over_its_rate_is_told_when_to_return(backend: Backend) {
    let app = spawn_app_with(&backend, |s| s.api_rate_limit = Some("2".into())).await;
    let generous = token(&app, json!({"name": "bulk import", "rateLimit": 1000})).await;
    let (mut ok, mut limited) = (0, 0);
    for _ in 0..10 {
        let answer = app.get("/api/v1/app").await;
        match answer.status {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                limited += 1;
                let wait: u64 = answer.headers["retry-after"].to_str().unwrap().parse().unwrap();
                assert!((1..=2).contains(&wait), "retry-after {wait}");
                assert_eq!(answer.body["code"], "rate_limit_exceeded");
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(ok >= 1 && limited >= 1, "{ok} answered, {limited} limited");
    // Another token has its own budget, and a token's own rateLimit wins.
    for _ in 0..10 {
        let answer = app.call_as(&generous, Method::GET, "/api/v1/app", None).await;
        assert_eq!(answer.status, StatusCode::OK);
    }
}

on_both_backends!(
    an_application_token_reaches_nothing_outside_its_application,
    an_owner_token_reaches_only_its_owners_endpoints,
    revoked_and_expired_tokens_reach_nothing,
    a_token_over_its_rate_is_told_when_to_return,
);

/// `herald token create` and `revoke` work on the database the server uses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_command_makes_and_revokes_tokens() {
    let backend = Backend::Sqlite;
    let data = tempfile::tempdir().unwrap();
    let herald = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["token"])
            .args(args)
            .env("HERALD_DATABASE_URL", backend.database_url(data.path()))
            .output()
            .expect("herald runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let made = herald(&["create", "--name", "deploy bot", "--expires-in", "30d"]);
    let secret = made
        .split_whitespace()
        .find(|w| w.starts_with("hrld_token_"))
        .expect("the token is printed")
        .to_owned();
    assert!(made.contains("administrator, expires"), "{made}");
    let listed = herald(&["list"]);
    assert!(listed.contains("live") && listed.contains("deploy bot"), "{listed}");

    let app = common::restart_with(&backend, data, |_| {}).await;
    assert_eq!(
        app.call_as(&secret, Method::GET, "/api/v1/app", None).await.status,
        StatusCode::OK
    );
    let data = app.stop().await;

    let id = listed.split_whitespace().next().unwrap().to_owned();
    let revoke = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["token", "revoke", &id])
        .env("HERALD_DATABASE_URL", backend.database_url(data.path()))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&revoke.stdout).contains("revoked"));
    let app = common::restart_with(&backend, data, |_| {}).await;
    assert_eq!(
        app.call_as(&secret, Method::GET, "/api/v1/app", None).await.status,
        StatusCode::UNAUTHORIZED
    );
}

/// A command refused for a reason a person can fix says that reason and
/// stops there: no backtrace, even with `RUST_BACKTRACE` set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_command_ends_at_its_message() {
    let backend = Backend::Sqlite;
    let app = common::restart_with(&backend, tempfile::tempdir().unwrap(), |_| {}).await;
    // Answering means the server holds the file.
    assert_eq!(app.get("/health").await.status, StatusCode::OK);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["token", "list"])
        .env("HERALD_DATABASE_URL", backend.database_url(app.data.path()))
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("herald runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the server holds the file: {stderr}");
    assert!(stderr.contains("another Herald process is using"), "{stderr}");
    assert!(!stderr.to_lowercase().contains("backtrace"), "{stderr}");
    app.stop().await;
}
