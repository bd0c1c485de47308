//! The dashboard, as its users meet it: an operator in a real headless
//! Chromium signing in, creating an endpoint through the form, sending a test
//! event, finding failures in the history and retrying them; a customer with
//! a portal link who sees only their own endpoints; and the protections of
//! every form, checked over plain HTTP on both backends.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use common::browser::Browser;
use common::receiver::Reply;
use common::{Backend, Receiver, TOKEN, TestApp, spawn_app_with_file};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// One profile that checks the endpoint with OPTIONS before use.
const PROFILES: &str = r#"
[profiles.checked]
verify = "options"
"#;

async fn spawn(backend: &Backend) -> TestApp {
    spawn_app_with_file(backend, PROFILES).await
}

async fn catalog(app: &TestApp) {
    for (name, description) in [
        ("ticket.created", "A customer opened a ticket"),
        ("ticket.closed", "A ticket was closed"),
        ("sla.at_risk", "A ticket is about to miss its SLA"),
    ] {
        let schema = json!({"1": {
            "type": "object",
            "properties": {"ticketId": {"type": "string"}},
            "examples": [{"ticketId": "T-1001", "subject": "Printer on fire"}]
        }});
        let a = app
            .post(
                "/api/v1/event-type",
                json!({"name": name, "description": description, "schemas": schema}),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    }
}

/// A receiver whose answer the test switches between 200 and 500; OPTIONS
/// (the endpoint check) is never allowed to POST, so the check fails.
async fn switchable_receiver() -> (Receiver, Arc<AtomicU16>) {
    let status = Arc::new(AtomicU16::new(200));
    let answer = status.clone();
    let receiver = Receiver::answering(move |r| match r.method.as_str() {
        "OPTIONS" => Reply::status(200).header("allow", "GET, HEAD"),
        _ => Reply::status(answer.load(Ordering::SeqCst)),
    })
    .await;
    (receiver, status)
}

async fn attempts(app: &TestApp, app_id: &str, ep: &str, query: &str) -> Vec<Value> {
    app.get(&format!("/api/v1/app/{app_id}/attempt/endpoint/{ep}?{query}"))
        .await
        .body["data"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_creates_an_endpoint_tests_it_and_retries_its_failures() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let app = spawn(&Backend::Sqlite).await;
    catalog(&app).await;
    let app_id = app.create_app("Acme Help Desk").await;
    app.create_app("Globex Documents").await;
    let (receiver, status) = switchable_receiver().await;
    let hook = format!("{}/hooks/tickets", receiver.url);

    // Signing in: every page sends a stranger to the sign-in form first.
    browser.goto(&app.url("/ui/apps")).await;
    assert_eq!(browser.path().await, "/ui/login");
    browser.fill("#token", "not-the-token").await;
    browser.follow("#login-form button[type=submit]").await;
    assert!(browser.text("#login-error").await.contains("not valid"));
    browser.fill("#token", TOKEN).await;
    browser.follow("#login-form button[type=submit]").await;
    assert_eq!(browser.path().await, "/ui/apps");
    browser.fill("#q", "acme").await;
    browser.follow("form.search button").await;
    assert_eq!(browser.count("table.list tbody tr").await, 1);
    browser.screenshot("applications").await;
    browser.follow("table.list tbody a").await;
    assert_eq!(browser.path().await, format!("/ui/app/{app_id}"));

    // The endpoint form: a failed endpoint check is shown next to the URL.
    browser.follow("#new-endpoint").await;
    browser.fill("#description", "Ticket sync").await;
    browser.fill("#url", &hook).await;
    browser.click("input[name=events_mode][value=some]").await;
    browser.click("input[data-group=ticket]").await;
    browser.select("#profile", "checked").await;
    browser.follow("#save-endpoint").await;
    let url_error = browser.text("#url-error").await;
    assert!(url_error.contains("Allow"), "{url_error}");
    browser.screenshot("endpoint-form").await;
    // The form kept what was typed; without the check the endpoint saves.
    browser.select("#profile", "").await;
    browser.follow("#save-endpoint").await;
    let secret = browser.text("#secret-value").await;
    assert!(secret.starts_with("whsec_"), "{secret}");
    browser.follow("#continue").await;
    let ep_id = browser.text("#endpoint-id").await;
    let saved = app.get(&format!("/api/v1/app/{app_id}/endpoint/{ep_id}")).await.body;
    assert_eq!(saved["description"], "Ticket sync");
    assert_eq!(saved["filterTypes"], json!(["ticket.closed", "ticket.created"]));
    assert_eq!(app.secret(&app_id, &ep_id).await, secret);

    // A test event reaches the receiver and shows in the history.
    let checks = receiver.count();
    browser.select("#test-event-type", "ticket.closed").await;
    browser.follow("#send-test").await;
    assert!(browser.text("#notice").await.contains("Test event sent"));
    browser.reload_until("#attempts tr[data-status='200']").await;
    receiver.wait_for(checks + 1, Duration::from_secs(10)).await;
    let got = receiver.deliveries();
    assert_eq!(
        &got[0].body[..],
        br#"{"ticketId":"T-1001","subject":"Printer on fire"}"#
    );
    browser.follow("#attempts a").await;
    assert_eq!(browser.text("#attempt-status").await, "200");
    assert!(browser.text("#request-headers").await.contains("webhook-signature"));
    browser.screenshot("attempt").await;

    // The receiver breaks: three messages fail every attempt.
    status.store(500, Ordering::SeqCst);
    let mut failed = Vec::new();
    for n in 0..3 {
        failed.push(
            app.publish(&app_id, "ticket.created", json!({"ticketId": format!("T-{n}")}))
                .await["id"]
                .clone(),
        );
    }
    let wanted = failed.clone();
    app.wait_for_attempts(
        &format!("/api/v1/app/{app_id}/attempt/endpoint/{ep_id}?status_code_class=500"),
        |list| {
            wanted
                .iter()
                .all(|id| list.iter().filter(|a| &a["msgId"] == id).count() >= 3)
        },
    )
    .await;

    // Filter 5xx: only the failures are listed; retry them all once fixed.
    browser
        .goto(&app.url(&format!("/ui/app/{app_id}/endpoint/{ep_id}/history")))
        .await;
    browser.select("#class", "500").await;
    browser.follow("#apply-filters").await;
    let rows = browser.count("#attempts tbody tr").await;
    assert_eq!(rows, 9, "three messages, three attempts each");
    assert_eq!(browser.count("#attempts tr[data-status='500']").await, rows);
    let first = browser.text("#attempts tbody tr").await;
    assert!(first.contains("500") && first.contains("scheduled"), "{first}");
    assert_eq!(
        browser.count("#attempts tbody tr .code.server").await,
        rows,
        "each 5xx is coloured as one"
    );
    browser.screenshot("history").await;
    // Readable in a narrow window too.
    browser.client.set_window_size(420, 860).await.expect("resize");
    browser.screenshot("history-narrow").await;
    browser.client.set_window_size(1280, 900).await.expect("resize");
    status.store(200, Ordering::SeqCst);
    let before = receiver.count();
    browser.click("#select-all").await;
    browser.follow("#retry-selected").await;
    assert!(
        browser
            .text("#notice")
            .await
            .contains("Retry scheduled for 3 message(s)")
    );
    // Still filtered on 5xx after the retry.
    assert_eq!(browser.text("#class option:checked").await, "5xx");
    receiver.wait_for(before + 3, Duration::from_secs(10)).await;
    let delivered = attempts(&app, &app_id, &ep_id, "status_code_class=200").await;
    for id in &failed {
        let retried = delivered
            .iter()
            .find(|a| &a["msgId"] == id)
            .expect("retried and delivered");
        assert_eq!(retried["triggerType"], 1, "a manual retry");
    }

    // The endpoint list shows its health and last day's activity.
    browser.goto(&app.url(&format!("/ui/app/{app_id}"))).await;
    let rate = browser.text(&format!("tr[data-endpoint='{ep_id}'] .rate")).await;
    assert!(rate.contains("of 13"), "1 test + 9 failures + 3 retries: {rate}");
    browser.screenshot("endpoints").await;
    browser
        .goto(&app.url(&format!("/ui/app/{app_id}/endpoint/{ep_id}")))
        .await;
    browser.screenshot("endpoint").await;

    // Switch off, delete with confirmation.
    browser.follow("#switch-endpoint").await;
    assert_eq!(browser.text("#switch-endpoint").await, "Enable");
    let off = app.get(&format!("/api/v1/app/{app_id}/endpoint/{ep_id}")).await.body;
    assert_eq!(off["disabled"], true);
    browser.goto(&app.url("/ui/event-types")).await;
    assert_eq!(browser.count("article.event-type").await, 3);
    browser.screenshot("catalog").await;
    browser
        .goto(&app.url(&format!("/ui/app/{app_id}/endpoint/{ep_id}")))
        .await;
    browser.follow("#delete-endpoint").await;
    browser.follow("#confirm-delete").await;
    assert_eq!(browser.path().await, format!("/ui/app/{app_id}"));
    let gone = app.get(&format!("/api/v1/app/{app_id}/endpoint/{ep_id}")).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);

    browser.follow(".signout button").await;
    assert_eq!(browser.path().await, "/ui/login");
    browser.goto(&app.url("/ui/apps")).await;
    assert_eq!(browser.path().await, "/ui/login", "signed out means signed out");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portal_link_for_one_owner_shows_only_that_owners_endpoints() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let app = spawn(&Backend::Sqlite).await;
    catalog(&app).await;
    let app_id = app.create_app("Acme Help Desk").await;
    let other_app = app.create_app("Globex Documents").await;
    let receiver = Receiver::start().await;
    let mine = app
        .create_endpoint(
            &app_id,
            &format!("{}/acme", receiver.url),
            json!({"ownerId": "acme", "description": "Acme's endpoint"}),
        )
        .await;
    let theirs = app
        .create_endpoint(
            &app_id,
            &format!("{}/globex", receiver.url),
            json!({"ownerId": "globex", "description": "Globex's endpoint"}),
        )
        .await;

    let link = app
        .post(
            &format!("/api/v1/auth/app-portal-access/{app_id}"),
            json!({"ownerId": "acme"}),
        )
        .await;
    assert_eq!(link.status, StatusCode::OK, "{}", link.body);
    let url = link.body["url"].as_str().expect("url");
    assert!(url.starts_with(&app.url("/ui/login#token=hrld_portal_")), "{url}");

    // The link signs the customer in, and the token leaves the address bar.
    browser.goto(url).await;
    browser.text("#endpoints").await;
    assert_eq!(browser.path().await, format!("/ui/app/{app_id}"));
    assert!(browser.client.current_url().await.expect("url").fragment().is_none());
    assert_eq!(browser.count("#endpoints tbody tr").await, 1);
    assert!(browser.text("#endpoints").await.contains("Acme's endpoint"));
    assert_eq!(browser.count("#portal").await, 0, "customers cannot make portal links");
    browser.screenshot("portal").await;

    // Another owner's endpoint, another application, the operator's pages: not found.
    for path in [
        format!("/ui/app/{app_id}/endpoint/{}", theirs["id"].as_str().expect("id")),
        format!(
            "/ui/app/{app_id}/endpoint/{}/history",
            theirs["id"].as_str().expect("id")
        ),
        format!("/ui/app/{other_app}"),
        "/ui/apps".to_owned(),
    ] {
        browser.goto(&app.url(&path)).await;
        assert!(browser.text("main").await.contains("not yours to see"), "{path}");
    }
    browser
        .goto(&app.url(&format!(
            "/ui/app/{app_id}/endpoint/{}",
            mine["id"].as_str().expect("id")
        )))
        .await;
    assert_eq!(browser.text("#endpoint-id").await, mine["id"].as_str().expect("id"));

    // An endpoint the customer creates belongs to them, whatever the form says.
    browser.goto(&app.url(&format!("/ui/app/{app_id}/endpoint/new"))).await;
    assert_eq!(browser.count("#owner_id").await, 0);
    browser.fill("#url", &format!("{}/acme-2", receiver.url)).await;
    browser.follow("#save-endpoint").await;
    browser.follow("#continue").await;
    let created = browser.text("#endpoint-id").await;
    let saved = app.get(&format!("/api/v1/app/{app_id}/endpoint/{created}")).await.body;
    assert_eq!(saved["ownerId"], "acme");
    browser.close().await;
}

// The protections below need no browser: plain HTTP, on both backends.
on_both_backends!(
    forms_need_a_session_and_its_token,
    portal_links_are_checked,
    pages_escape_what_users_typed,
    unverified_tls_is_offered_only_where_allowed_and_flagged,
    a_fifo_endpoint_shows_its_order_and_what_waits_behind_its_head,
    a_read_only_portal_link_shows_everything_and_changes_nothing,
);

/// Signs in over plain HTTP; answers the session cookie and the page's CSRF token.
async fn sign_in(app: &TestApp, token: &str) -> (String, String) {
    let resp = unfollowing()
        .post(app.url("/ui/login"))
        .form(&[("token", token)])
        .send()
        .await
        .expect("sign in");
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let set_cookie = resp.headers()["set-cookie"].to_str().expect("cookie").to_owned();
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/ui"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    let cookie = set_cookie.split(';').next().expect("pair").to_owned();
    let page = page(app, &cookie, "/ui/event-types").await;
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a csrf field")
        .to_owned();
    (cookie, csrf)
}

async fn page(app: &TestApp, cookie: &str, path: &str) -> String {
    reqwest::Client::new()
        .get(app.url(path))
        .header("cookie", cookie)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html")
}

/// A client that shows a redirect instead of following it, as the tests
/// read where a sign-in or a form leads.
fn unfollowing() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// Posts a form with a session cookie (and an `Origin`, when given).
async fn submit(
    app: &TestApp,
    cookie: &str,
    path: &str,
    form: &[(&str, &str)],
    origin: Option<&str>,
) -> reqwest::Response {
    let mut req = unfollowing().post(app.url(path)).header("cookie", cookie).form(form);
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    req.send().await.expect("post")
}

async fn post_form(app: &TestApp, cookie: &str, path: &str, form: &[(&str, &str)], origin: Option<&str>) -> StatusCode {
    submit(app, cookie, path, form, origin).await.status()
}

async fn forms_need_a_session_and_its_token(backend: Backend) {
    let app = spawn(&backend).await;
    let app_id = app.create_app("Acme").await;
    let ep = app.create_endpoint(&app_id, "http://127.0.0.1:9/x", json!({})).await;
    let ep_id = ep["id"].as_str().expect("id");
    let switch = format!("/ui/app/{app_id}/endpoint/{ep_id}/switch");
    let ep_path = format!("/api/v1/app/{app_id}/endpoint/{ep_id}");
    let (cookie, csrf) = sign_in(&app, TOKEN).await;

    // No session: sent to sign in, nothing changes.
    assert_eq!(
        post_form(&app, "", &switch, &[("csrf", &csrf), ("to", "off")], None).await,
        StatusCode::SEE_OTHER
    );
    // A session but no token, a wrong token, or a post from another site: refused.
    assert_eq!(
        post_form(&app, &cookie, &switch, &[("to", "off")], None).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post_form(&app, &cookie, &switch, &[("csrf", "guess"), ("to", "off")], None).await,
        StatusCode::FORBIDDEN
    );
    let evil = Some("https://evil.example");
    assert_eq!(
        post_form(&app, &cookie, &switch, &[("csrf", &csrf), ("to", "off")], evil).await,
        StatusCode::FORBIDDEN
    );
    let still = app.get(&ep_path).await.body;
    assert_eq!(still["disabled"], false);
    // With both, from Herald's own page: done.
    let own = app.url("");
    assert_eq!(
        post_form(&app, &cookie, &switch, &[("csrf", &csrf), ("to", "off")], Some(&own)).await,
        StatusCode::SEE_OTHER
    );
    let off = app.get(&ep_path).await.body;
    assert_eq!(off["disabled"], true);

    // A session cookie changed in any way is worthless.
    let value = cookie.split('=').nth(1).expect("value");
    let forged = format!("herald_session=f{}", &value[1..]);
    assert_ne!(&value[..1], "f");
    let resp = unfollowing()
        .get(app.url("/ui/apps"))
        .header("cookie", forged)
        .send()
        .await
        .expect("page");
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
}

async fn portal_links_are_checked(backend: Backend) {
    let app = spawn(&backend).await;
    let app_id = app.create_app("Acme").await;
    let path = format!("/api/v1/auth/app-portal-access/{app_id}");
    let bad = app.post(&path, json!({"expiry": 60})).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.body["detail"][0]["loc"], json!(["body", "expiry"]));
    let missing = app.post("/api/v1/auth/app-portal-access/app_nothing", json!({})).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let unauthenticated = reqwest::Client::new()
        .post(app.url(&path))
        .json(&json!({}))
        .send()
        .await
        .expect("post");
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);

    let token = app.post(&path, json!({})).await.body["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let (cookie, _) = sign_in(&app, &token).await;
    assert!(page(&app, &cookie, &format!("/ui/app/{app_id}")).await.contains("Acme"));

    // An owner's customer cannot pull another owner's message to their own
    // endpoint by naming its id in a retry.
    let receiver = Receiver::start().await;
    let acme = app
        .create_endpoint(&app_id, &receiver.url, json!({"ownerId": "acme"}))
        .await;
    let globex = app
        .create_endpoint(&app_id, &receiver.url, json!({"ownerId": "globex"}))
        .await;
    let private = app
        .post(
            &format!("/api/v1/app/{app_id}/msg"),
            json!({"eventType": "ticket.created", "payload": {"for": "globex"}, "audience": ["globex"]}),
        )
        .await
        .body["id"]
        .as_str()
        .expect("id")
        .to_owned();
    app.wait_for_attempts(
        &format!(
            "/api/v1/app/{app_id}/attempt/endpoint/{}",
            globex["id"].as_str().expect("id")
        ),
        |list| !list.is_empty(),
    )
    .await;
    let acme_link = app.post(&path, json!({"ownerId": "acme"})).await.body["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let (acme_cookie, acme_csrf) = sign_in(&app, &acme_link).await;
    let acme_id = acme["id"].as_str().expect("id");
    let retry = format!("/ui/app/{app_id}/endpoint/{acme_id}/retry");
    let resp = submit(
        &app,
        &acme_cookie,
        &retry,
        &[("csrf", &acme_csrf), ("msg", &private)],
        None,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let location = resp.headers()["location"].to_str().expect("location").to_owned();
    assert!(
        location.contains("scheduled=0") && location.contains("skipped=1"),
        "{location}"
    );
    let acme_attempts = app
        .get(&format!(
            "/api/v1/app/{app_id}/attempt/msg/{private}?endpoint_id={acme_id}"
        ))
        .await;
    assert_eq!(acme_attempts.body["data"], json!([]), "nothing was sent to acme");

    // A token altered by one character signs nobody in.
    let mut tampered = token.clone();
    tampered.insert(20, 'x');
    let refused = reqwest::Client::new()
        .post(app.url("/ui/login"))
        .form(&[("token", tampered.as_str())])
        .send()
        .await
        .expect("post");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
}

/// A portal link made with `readOnly` is read-only in the dashboard too, not
/// only on the API: no page offers a change, and a form sent anyway is refused.
async fn a_read_only_portal_link_shows_everything_and_changes_nothing(backend: Backend) {
    let app = spawn(&backend).await;
    let app_id = app.create_app("Acme").await;
    let ep = app.create_endpoint(&app_id, "http://127.0.0.1:9/x", json!({})).await;
    let ep_id = ep["id"].as_str().expect("id");
    let link = app
        .post(
            &format!("/api/v1/auth/app-portal-access/{app_id}"),
            json!({"readOnly": true}),
        )
        .await
        .body["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let (cookie, csrf) = sign_in(&app, &link).await;
    let listing = page(&app, &cookie, &format!("/ui/app/{app_id}")).await;
    assert!(listing.contains(ep_id), "the endpoint is shown");
    assert!(listing.contains("read-only"), "the session says what it is");
    assert!(!listing.contains("new-endpoint"), "no way to add an endpoint");
    let detail = page(&app, &cookie, &format!("/ui/app/{app_id}/endpoint/{ep_id}")).await;
    for control in [
        "edit-endpoint",
        "switch-endpoint",
        "delete-endpoint",
        "send-test",
        "rotate-secret",
    ] {
        assert!(!detail.contains(control), "{control} is offered");
    }
    let switch = format!("/ui/app/{app_id}/endpoint/{ep_id}/switch");
    assert_eq!(
        post_form(&app, &cookie, &switch, &[("csrf", &csrf), ("to", "off")], None).await,
        StatusCode::FORBIDDEN
    );
    let still = app.get(&format!("/api/v1/app/{app_id}/endpoint/{ep_id}")).await.body;
    assert_eq!(still["disabled"], false);
    // Signing out changes nothing, so it is not refused.
    assert_eq!(
        post_form(&app, &cookie, "/ui/logout", &[("csrf", &csrf)], None).await,
        StatusCode::SEE_OTHER
    );

    // The same link without readOnly may change things.
    let writable = app
        .post(&format!("/api/v1/auth/app-portal-access/{app_id}"), json!({}))
        .await
        .body["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let (cookie, csrf) = sign_in(&app, &writable).await;
    assert!(
        page(&app, &cookie, &format!("/ui/app/{app_id}"))
            .await
            .contains("new-endpoint")
    );
    assert_eq!(
        post_form(&app, &cookie, &switch, &[("csrf", &csrf), ("to", "off")], None).await,
        StatusCode::SEE_OTHER
    );
}

async fn pages_escape_what_users_typed(backend: Backend) {
    let app = spawn(&backend).await;
    let app_id = app.create_app("<img src=x onerror=alert(1)>").await;
    app.create_endpoint(
        &app_id,
        "http://127.0.0.1:9/x",
        json!({"description": "<script>alert(1)</script>"}),
    )
    .await;
    let (cookie, _) = sign_in(&app, TOKEN).await;
    let html = page(&app, &cookie, &format!("/ui/app/{app_id}")).await;
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(1)"), "{html}");
    assert!(!html.contains("<img src=x"));
    let apps = page(&app, &cookie, "/ui/apps?q=%3Cimg").await;
    assert!(
        apps.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "search finds it, escaped"
    );
}

/// The form for a new endpoint that skips certificate checks.
fn unverified_endpoint_form<'a>(csrf: &'a str, url: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("csrf", csrf),
        ("url", url),
        ("events_mode", "all"),
        ("secret_mode", "generate"),
        ("format", "raw"),
        ("while_disabled", "drop"),
        ("tls_switch", "shown"),
        ("skip_tls_verify", "on"),
    ]
}

async fn unverified_tls_is_offered_only_where_allowed_and_flagged(backend: Backend) {
    let url = "https://127.0.0.1:9/hook";
    let strict = spawn(&backend).await;
    let app_id = strict.create_app("Acme").await;
    let (cookie, csrf) = sign_in(&strict, TOKEN).await;
    let form = page(&strict, &cookie, &format!("/ui/app/{app_id}/endpoint/new")).await;
    assert!(!form.contains("skip_tls_verify"), "no switch where it is not allowed");
    // A forged switch is refused by the API's rule, next to the field.
    let forged = submit(
        &strict,
        &cookie,
        &format!("/ui/app/{app_id}/endpoint/new"),
        &unverified_endpoint_form(&csrf, url),
        None,
    )
    .await;
    assert_eq!(forged.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(forged.text().await.unwrap().contains("HERALD_ALLOW_INSECURE_TLS"));
    // The same database (and so the same secret key), now allowing it.
    let data = strict.stop().await;
    let lenient = common::restart_with(&backend, data, |s| s.allow_insecure_tls = Some("true".into())).await;
    let app_id = lenient.create_app("Acme").await;
    let (cookie, csrf) = sign_in(&lenient, TOKEN).await;
    let form = page(&lenient, &cookie, &format!("/ui/app/{app_id}/endpoint/new")).await;
    assert!(
        form.contains("name=\"skip_tls_verify\"") && form.contains("id=\"tls-warning\""),
        "{form}"
    );
    let created = submit(
        &lenient,
        &cookie,
        &format!("/ui/app/{app_id}/endpoint/new"),
        &unverified_endpoint_form(&csrf, url),
        None,
    )
    .await;
    assert_eq!(created.status(), StatusCode::OK);
    let list = lenient.get(&format!("/api/v1/app/{app_id}/endpoint")).await.body;
    let ep = &list["data"][0];
    assert_eq!(ep["tlsVerify"], false, "{list}");
    let ep_id = ep["id"].as_str().unwrap();
    let checked = lenient
        .create_endpoint(&app_id, "https://127.0.0.1:9/checked", json!({}))
        .await;

    let listed = page(&lenient, &cookie, &format!("/ui/app/{app_id}")).await;
    let row = |id: &str| {
        listed
            .split(&format!("data-endpoint=\"{id}\""))
            .nth(1)
            .and_then(|rest| rest.split("</tr>").next())
            .unwrap_or_default()
            .to_owned()
    };
    assert!(row(ep_id).contains("data-tls=\"unverified\""), "{listed}");
    assert!(!row(checked["id"].as_str().unwrap()).contains("data-tls"), "{listed}");
    let shown = page(&lenient, &cookie, &format!("/ui/app/{app_id}/endpoint/{ep_id}")).await;
    assert!(shown.contains("data-tls=\"unverified\"") && shown.contains("id=\"tls-warning\""));
    let edit = page(&lenient, &cookie, &format!("/ui/app/{app_id}/endpoint/{ep_id}/edit")).await;
    assert!(
        edit.contains("value=\"on\" aria-describedby=\"tls-warning\" checked"),
        "{edit}"
    );
}

async fn a_fifo_endpoint_shows_its_order_and_what_waits_behind_its_head(backend: Backend) {
    let app = spawn(&backend).await;
    let app_id = app.create_app("Acme").await;
    // The head hangs past the request timeout, so the others wait behind it.
    let receiver = Receiver::slow(Duration::from_secs(10)).await;
    let ep = app
        .create_endpoint(&app_id, &receiver.url, json!({"ordering": "fifo"}))
        .await;
    let ep_id = ep["id"].as_str().expect("id");
    for n in 0..3 {
        app.publish(&app_id, "ticket.created", json!({"n": n})).await;
    }
    app.wait_until(&format!("/api/v1/app/{app_id}/endpoint/{ep_id}/stats"), |s| {
        s["waiting"] == 2
    })
    .await;
    let (cookie, csrf) = sign_in(&app, TOKEN).await;
    let shown = page(&app, &cookie, &format!("/ui/app/{app_id}/endpoint/{ep_id}")).await;
    assert!(shown.contains("FIFO: one at a time, in publish order"), "{shown}");
    assert!(shown.contains(r#"<dd id="count-waiting">2</dd>"#), "{shown}");
    assert!(shown.contains("2 waiting behind the message being sent"), "{shown}");

    // The form shows the choice and changes it.
    let edit = format!("/ui/app/{app_id}/endpoint/{ep_id}/edit");
    let form = page(&app, &cookie, &edit).await;
    assert!(form.contains(r#"<option value="fifo" selected>"#), "{form}");
    let saved = submit(
        &app,
        &cookie,
        &edit,
        &[
            ("csrf", csrf.as_str()),
            ("url", receiver.url.as_str()),
            ("events_mode", "all"),
            ("format", "raw"),
            ("while_disabled", "drop"),
            ("ordering", "parallel"),
        ],
        Some(&app.url("")),
    )
    .await;
    assert_eq!(saved.status(), StatusCode::SEE_OTHER);
    let after = app.get(&format!("/api/v1/app/{app_id}/endpoint/{ep_id}")).await.body;
    assert_eq!(after["ordering"], "parallel");
    let shown = page(&app, &cookie, &format!("/ui/app/{app_id}/endpoint/{ep_id}")).await;
    assert!(
        !shown.contains("count-waiting"),
        "a parallel endpoint has no queue to show"
    );
}
