//! A customer portal built on Svix's portal token (svix-react and the like)
//! calls the API from the browser with the token that
//! `POST /auth/app-portal-access/{app}` answers: that token reaches its
//! application (and owner) like a made token, honours `readOnly`, ends at
//! logout, and browsers may use it only from the origins Herald is told.

mod common;

use common::{Backend, Receiver, TestApp, spawn_app, spawn_app_with};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A portal token for `app`, made with the admin token.
async fn portal_token(app: &TestApp, app_id: &str, body: Value) -> String {
    let made = app
        .post(&format!("/api/v1/auth/app-portal-access/{app_id}"), body)
        .await;
    assert_eq!(made.status, StatusCode::OK, "{}", made.body);
    made.body["token"].as_str().expect("a token").to_owned()
}

fn ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|e| e["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn a_portal_token_reaches_its_owners_endpoints_and_nothing_else(backend: Backend) {
    let app = spawn_app(&backend).await;
    let receiver = Receiver::start().await;
    let tenant = app.create_app("Tenant").await;
    let other = app.create_app("Other tenant").await;
    let acme = app
        .create_endpoint(&tenant, &receiver.url, json!({"ownerId": "acme"}))
        .await["id"]
        .clone();
    let globex = app
        .create_endpoint(&tenant, &receiver.url, json!({"ownerId": "globex"}))
        .await["id"]
        .clone();
    let token = portal_token(&app, &tenant, json!({"ownerId": "acme"})).await;

    let list = app
        .call_as(&token, Method::GET, &format!("/api/v1/app/{tenant}/endpoint"), None)
        .await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    assert_eq!(ids(&list.body), vec![acme.as_str().unwrap().to_owned()]);
    let theirs = format!("/api/v1/app/{tenant}/endpoint/{}", globex.as_str().unwrap());
    assert_eq!(
        app.call_as(&token, Method::GET, &theirs, None).await.status,
        StatusCode::NOT_FOUND
    );
    let elsewhere = format!("/api/v1/app/{other}/endpoint");
    assert_eq!(
        app.call_as(&token, Method::GET, &elsewhere, None).await.status,
        StatusCode::NOT_FOUND
    );
    // What the customer makes is theirs.
    let made = app
        .call_as(
            &token,
            Method::POST,
            &format!("/api/v1/app/{tenant}/endpoint"),
            Some(json!({"url": receiver.url})),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    assert_eq!(made.body["ownerId"], "acme");
    // A portal token makes no tokens.
    let escalate = app
        .call_as(
            &token,
            Method::POST,
            "/api/v1/auth/token",
            Some(json!({"name": "mine"})),
        )
        .await;
    assert_eq!(escalate.status, StatusCode::FORBIDDEN, "{}", escalate.body);
    // A forged or tampered token is refused.
    let tampered = format!("{token}x");
    let refused = app
        .call_as(&tampered, Method::GET, &format!("/api/v1/app/{tenant}/endpoint"), None)
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
}

async fn a_read_only_portal_token_reads_and_writes_nothing(backend: Backend) {
    let app = spawn_app(&backend).await;
    let receiver = Receiver::start().await;
    let tenant = app.create_app("Tenant").await;
    app.create_endpoint(&tenant, &receiver.url, json!({})).await;
    let token = portal_token(&app, &tenant, json!({"readOnly": true})).await;
    let path = format!("/api/v1/app/{tenant}/endpoint");
    assert_eq!(
        app.call_as(&token, Method::GET, &path, None).await.status,
        StatusCode::OK
    );
    let write = app
        .call_as(&token, Method::POST, &path, Some(json!({"url": receiver.url})))
        .await;
    assert_eq!(write.status, StatusCode::FORBIDDEN, "{}", write.body);
    assert!(
        write.body["detail"].as_str().unwrap_or_default().contains("read-only"),
        "{}",
        write.body
    );
    assert_eq!(ids(&app.get(&path).await.body).len(), 1, "nothing was made");
}

async fn logout_ends_a_portal_token_and_only_a_portal_token(backend: Backend) {
    let app = spawn_app(&backend).await;
    let tenant = app.create_app("Tenant").await;
    let token = portal_token(&app, &tenant, json!({"readOnly": true})).await;
    let path = format!("/api/v1/app/{tenant}/endpoint");
    assert_eq!(
        app.call_as(&token, Method::GET, &path, None).await.status,
        StatusCode::OK
    );

    let out = app.call_as(&token, Method::POST, "/api/v1/auth/logout", None).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT, "{}", out.body);
    let after = app.call_as(&token, Method::GET, &path, None).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    assert!(
        after.body["detail"].as_str().unwrap_or_default().contains("logged out"),
        "{}",
        after.body
    );
    // Another portal token of the same application still works.
    let fresh = portal_token(&app, &tenant, json!({})).await;
    assert_eq!(
        app.call_as(&fresh, Method::GET, &path, None).await.status,
        StatusCode::OK
    );
    // The admin token is not a session: it cannot log out.
    let admin = app.post("/api/v1/auth/logout", json!({})).await;
    assert_eq!(admin.status, StatusCode::FORBIDDEN, "{}", admin.body);
}

async fn browsers_reach_the_api_only_from_the_configured_origins(backend: Backend) {
    let app = spawn_app_with(&backend, |s| {
        s.cors_origins = Some("https://portal.example.com, http://localhost:3000".into())
    })
    .await;
    let preflight = |origin: &'static str| {
        app.http
            .request(Method::OPTIONS, app.url("/api/v1/app/x/endpoint"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type, idempotency-key",
            )
            .send()
    };
    let allowed = preflight("https://portal.example.com").await.expect("answered");
    assert!(allowed.status().is_success(), "{}", allowed.status());
    let h = allowed.headers();
    assert_eq!(h["access-control-allow-origin"], "https://portal.example.com");
    assert!(h["access-control-allow-methods"].to_str().unwrap().contains("POST"));
    let headers = h["access-control-allow-headers"].to_str().unwrap().to_lowercase();
    assert!(
        headers.contains("authorization") && headers.contains("idempotency-key"),
        "{headers}"
    );
    assert!(
        h.get("access-control-allow-credentials").is_none(),
        "no cookies cross-origin"
    );

    let refused = preflight("https://evil.example.com").await.expect("answered");
    assert!(refused.headers().get("access-control-allow-origin").is_none());

    let read = app
        .http
        .get(app.url("/api/v1/app"))
        .bearer_auth(common::TOKEN)
        .header("origin", "http://localhost:3000")
        .send()
        .await
        .expect("answered");
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(read.headers()["access-control-allow-origin"], "http://localhost:3000");

    // By default no origin is allowed.
    let closed = spawn_app(&backend).await;
    let answer = closed
        .http
        .get(closed.url("/api/v1/app"))
        .bearer_auth(common::TOKEN)
        .header("origin", "https://portal.example.com")
        .send()
        .await
        .expect("answered");
    assert!(answer.headers().get("access-control-allow-origin").is_none());
}

on_both_backends!(
    a_portal_token_reaches_its_owners_endpoints_and_nothing_else,
    a_read_only_portal_token_reads_and_writes_nothing,
    logout_ends_a_portal_token_and_only_a_portal_token,
    browsers_reach_the_api_only_from_the_configured_origins,
);

#[test]
fn a_cors_origin_with_a_path_is_refused_with_its_setting_named() {
    let mut settings = common::test_settings(&Backend::Sqlite, std::path::Path::new("/tmp/unused"));
    settings.cors_origins = Some("https://portal.example.com/app".into());
    let error = herald::Config::load(&settings, None).expect_err("refused").to_string();
    assert!(
        error.contains("cors_origins") || error.contains("HERALD_CORS_ORIGINS"),
        "{error}"
    );
    assert!(error.contains("https://portal.example.com/app"), "{error}");
}

/// A customer portal as svix-react builds it: a page on the product's own
/// origin that calls Herald's API with a portal token. It reads its settings
/// from the fragment, creates one endpoint, then lists them, and writes what
/// it saw into the page (`#done` last, so a test waits for it).
const PORTAL_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Customer portal</title></head>
<body>
<ul id="endpoints"></ul>
<script>
const settings = new URLSearchParams(location.hash.slice(1));
const call = (method, path, body) => fetch(settings.get("base") + path, {
  method,
  headers: { "Authorization": "Bearer " + settings.get("token"), "Content-Type": "application/json" },
  body: body === undefined ? undefined : JSON.stringify(body),
});
const say = (id, text) => {
  const p = document.createElement("p");
  p.id = id;
  p.textContent = text;
  document.body.appendChild(p);
};
(async () => {
  const path = "/api/v1/app/" + settings.get("app") + "/endpoint";
  try {
    const created = await call("POST", path, { url: settings.get("url"), description: "made in the portal" });
    say("created", String(created.status));
    const listed = await call("GET", path);
    say("listed", String(listed.status));
    for (const endpoint of (await listed.json()).data) {
      const item = document.createElement("li");
      item.textContent = endpoint.id;
      document.getElementById("endpoints").appendChild(item);
    }
  } catch (error) {
    say("blocked", String(error));
  }
  say("done", "done");
})();
</script>
</body></html>"#;

/// Serves the portal page on its own loopback origin.
async fn serve_portal_page() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let origin = format!("http://{}", listener.local_addr().expect("addr"));
    let page = axum::Router::new().route("/", axum::routing::get(|| async { axum::response::Html(PORTAL_PAGE) }));
    tokio::spawn(async move { axum::serve(listener, page).await });
    origin
}

/// What the portal page did, once it is done: the status of its write, the
/// status of its list and the endpoint ids it was shown, or why the browser
/// stopped it.
async fn open_portal(
    browser: &common::browser::Browser,
    origin: &str,
    base: &str,
    app: &str,
    token: &str,
    url: &str,
) -> PortalView {
    let fragment = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("base", base)
        .append_pair("app", app)
        .append_pair("token", token)
        .append_pair("url", url)
        .finish();
    // A new query each time: a change of fragment alone would not reload the page.
    static VISITS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let visit = VISITS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    browser.goto(&format!("{origin}/?visit={visit}#{fragment}")).await;
    browser.text("#done").await;
    let optional = |css: &'static str| async move {
        if browser.count(css).await > 0 {
            Some(browser.text(css).await)
        } else {
            None
        }
    };
    let mut shown = Vec::new();
    for item in browser
        .client
        .find_all(fantoccini::Locator::Css("#endpoints li"))
        .await
        .expect("list")
    {
        shown.push(item.text().await.expect("text"));
    }
    PortalView {
        created: optional("#created").await,
        listed: optional("#listed").await,
        blocked: optional("#blocked").await,
        shown,
    }
}

#[derive(Debug)]
struct PortalView {
    created: Option<String>,
    listed: Option<String>,
    blocked: Option<String>,
    shown: Vec<String>,
}

/// In real Chromium, a page on a second origin works as a customer's portal
/// through CORS: it sees and makes only its owner's endpoints, a read-only
/// token's write is refused, and an origin Herald was not told of is stopped
/// by the browser itself. One backend suffices: the browser tests CORS and
/// the token's scope, which the stories above already run on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portal_page_on_another_origin_works_through_cors_in_a_real_browser() {
    let Some(browser) = common::browser::Browser::start().await else {
        return;
    };
    let portal = serve_portal_page().await;
    let stranger = serve_portal_page().await;
    let app = spawn_app_with(&Backend::Sqlite, |s| s.cors_origins = Some(portal.clone())).await;
    let receiver = Receiver::start().await;
    let tenant = app.create_app("Tenant").await;
    let acme = app
        .create_endpoint(&tenant, &receiver.url, json!({"ownerId": "acme"}))
        .await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let globex = app
        .create_endpoint(&tenant, &receiver.url, json!({"ownerId": "globex"}))
        .await["id"]
        .as_str()
        .expect("id")
        .to_owned();

    let token = portal_token(&app, &tenant, json!({"ownerId": "acme"})).await;
    let seen = open_portal(&browser, &portal, &app.base, &tenant, &token, &receiver.url).await;
    assert_eq!(seen.blocked, None, "{seen:?}");
    assert_eq!(seen.created.as_deref(), Some("201"), "{seen:?}");
    assert_eq!(seen.listed.as_deref(), Some("200"), "{seen:?}");
    assert_eq!(seen.shown.len(), 2, "acme's endpoint and the one just made: {seen:?}");
    assert!(seen.shown.contains(&acme), "{seen:?}");
    assert!(
        !seen.shown.contains(&globex),
        "another owner's endpoint leaked: {seen:?}"
    );
    let everything = app.get(&format!("/api/v1/app/{tenant}/endpoint")).await.body;
    let made: Vec<&Value> = everything["data"]
        .as_array()
        .expect("list")
        .iter()
        .filter(|e| e["description"] == "made in the portal")
        .collect();
    assert_eq!(made.len(), 1, "{everything}");
    assert_eq!(made[0]["ownerId"], "acme", "what the portal makes is its owner's");

    let read_only = portal_token(&app, &tenant, json!({"ownerId": "acme", "readOnly": true})).await;
    let seen = open_portal(&browser, &portal, &app.base, &tenant, &read_only, &receiver.url).await;
    assert_eq!(seen.created.as_deref(), Some("403"), "{seen:?}");
    assert_eq!(seen.listed.as_deref(), Some("200"), "{seen:?}");
    assert_eq!(seen.shown.len(), 2, "{seen:?}");

    let seen = open_portal(&browser, &stranger, &app.base, &tenant, &token, &receiver.url).await;
    assert!(seen.blocked.is_some(), "an origin Herald was not told of: {seen:?}");
    assert_eq!(seen.created, None, "{seen:?}");
    let after = app.get(&format!("/api/v1/app/{tenant}/endpoint")).await.body;
    assert_eq!(
        after["data"].as_array().map(Vec::len),
        Some(3),
        "the refused origin made nothing: {after}"
    );
    browser.close().await;
}
