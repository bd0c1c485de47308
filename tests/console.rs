//! The operator console: running Herald day to day from the dashboard, in
//! a real headless Chromium, with no curl. An operator signs in to the
//! overview, makes an application, an event type with a schema and an
//! example, an endpoint, sends the example, makes and revokes a token and
//! finds a message; the overview shows a failing endpoint; axe-core checks
//! every page visited; portal sessions see none of it. On both backends.

mod common;

use std::time::{Duration, Instant};

use common::browser::Browser;
use common::receiver::Reply;
use common::{Backend, Receiver, TOKEN, TestApp, spawn_app};
use reqwest::{Method, StatusCode};
use serde_json::json;

on_both_backends!(
    an_operator_runs_herald_from_the_console,
    the_overview_shows_a_failing_endpoint_within_a_minute,
    portal_sessions_see_none_of_the_operator_pages,
);

async fn sign_in(browser: &Browser, app: &TestApp) {
    browser.goto(&app.url("/ui/")).await;
    assert_eq!(browser.path().await, "/ui/login");
    browser.assert_accessible().await;
    browser.fill("#token", TOKEN).await;
    browser.follow("#login-form button[type=submit]").await;
    assert_eq!(browser.path().await, "/ui/overview", "the overview comes first");
    browser.assert_accessible().await;
}

/// The path's last segment: the id a page was opened for.
fn last_segment(path: &str) -> String {
    path.rsplit('/').next().unwrap_or_default().to_owned()
}

async fn an_operator_runs_herald_from_the_console(backend: Backend) {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let app = spawn_app(&backend).await;
    let receiver = Receiver::start().await;
    sign_in(&browser, &app).await;

    // An application: an empty name is refused at the name, keeping the rest.
    browser.follow("a[href='/ui/apps']").await;
    browser.assert_accessible().await;
    browser.follow("#new-app").await;
    browser.assert_accessible().await;
    browser.fill("#uid", "acme").await;
    browser.fill("#metadata", "plan=enterprise\nregion=eu").await;
    browser.follow("#save-app").await;
    assert!(browser.text("#name-error").await.contains("1 to 256"));
    assert_eq!(browser.value("#uid").await, "acme");
    assert_eq!(browser.value("#metadata").await, "plan=enterprise\nregion=eu");
    browser.assert_accessible().await;
    browser.fill("#name", "Acme Help Desk").await;
    browser.screenshot("application-form").await;
    browser.follow("#save-app").await;
    let app_id = last_segment(&browser.path().await);
    assert!(app_id.starts_with("app_"), "{app_id}");
    browser.assert_accessible().await;
    let made = app.get(&format!("/api/v1/app/{app_id}")).await.body;
    assert_eq!(made["uid"], "acme");
    assert_eq!(made["metadata"], json!({"plan": "enterprise", "region": "eu"}));

    // Renamed; the API sees what the page saved.
    browser.follow("#edit-app").await;
    browser.assert_accessible().await;
    browser.fill("#name", "Acme Support").await;
    browser.follow("#save-app").await;
    assert!(browser.text("#notice").await.contains("Saved"));
    browser.assert_accessible().await;
    assert_eq!(app.get("/api/v1/app/acme").await.body["name"], "Acme Support");

    // An event type: a schema that is not one, then an example that does
    // not fit, each refused at its own field with everything else kept.
    browser.follow("a[href='/ui/event-types']").await;
    browser.assert_accessible().await;
    browser.follow("#new-event-type").await;
    browser.assert_accessible().await;
    browser.fill("#name", "invoice.paid").await;
    browser.fill("#description", "A customer paid an invoice").await;
    browser.fill("#schema", r#"{"type": "nonsense"}"#).await;
    browser.follow("#save-event-type").await;
    assert!(browser.text("#schema-error").await.contains("not a valid JSON Schema"));
    assert_eq!(browser.value("#name").await, "invoice.paid");
    assert_eq!(browser.value("#description").await, "A customer paid an invoice");
    browser.assert_accessible().await;
    let schema = r#"{"type": "object", "required": ["invoiceId"], "properties": {"invoiceId": {"type": "string"}, "amount": {"type": "integer"}}}"#;
    browser.fill("#schema", schema).await;
    browser.fill("#example", r#"{"invoiceId": 42}"#).await;
    browser.follow("#save-event-type").await;
    assert!(browser.text("#example-error").await.contains("does not fit"));
    assert_eq!(browser.value("#schema").await, schema);
    assert_eq!(browser.value("#name").await, "invoice.paid");
    browser.screenshot("event-type-form").await;
    browser
        .fill("#example", r#"{"invoiceId": "INV-7", "amount": 1200}"#)
        .await;
    browser.follow("#save-event-type").await;
    assert!(browser.text("#notice").await.contains("created"));
    browser.assert_accessible().await;
    let et = app.get("/api/v1/event-type/invoice.paid").await.body;
    assert_eq!(et["description"], "A customer paid an invoice");
    assert_eq!(et["groupName"], "invoice");
    assert_eq!(
        et["schemas"]["1"]["examples"],
        json!([{"invoiceId": "INV-7", "amount": 1200}])
    );
    // Archived and restored.
    browser.follow("#archive").await;
    browser.assert_accessible().await;
    assert_eq!(browser.count("#archived-badge").await, 1);
    assert_eq!(app.get("/api/v1/event-type/invoice.paid").await.body["archived"], true);
    browser.follow("#restore").await;
    browser.assert_accessible().await;
    assert_eq!(app.get("/api/v1/event-type/invoice.paid").await.body["archived"], false);

    // An endpoint on the loopback receiver; the example reaches it.
    browser.goto(&app.url(&format!("/ui/app/{app_id}"))).await;
    browser.assert_accessible().await;
    browser.follow("#new-endpoint").await;
    browser.assert_accessible().await;
    browser.fill("#description", "Billing sync").await;
    browser.fill("#url", &format!("{}/billing", receiver.url)).await;
    browser.follow("#save-endpoint").await;
    browser.assert_accessible().await;
    browser.follow("#continue").await;
    browser.assert_accessible().await;
    let before = receiver.count();
    browser.select("#test-event-type", "invoice.paid").await;
    browser.follow("#send-test").await;
    browser.assert_accessible().await;
    let got = receiver.wait_for(before + 1, Duration::from_secs(10)).await;
    let body: serde_json::Value = serde_json::from_slice(&got[before].body).expect("JSON");
    assert_eq!(body, json!({"invoiceId": "INV-7", "amount": 1200}));

    // A token: shown once, works, shows when it was last used; revoked, refused.
    browser.follow("a[href='/ui/tokens']").await;
    browser.assert_accessible().await;
    browser.follow("#make-token").await;
    assert!(
        browser.text("#name-error").await.contains("characters"),
        "an empty name"
    );
    browser.assert_accessible().await;
    browser.fill("#token-name", "billing service").await;
    browser.follow("#make-token").await;
    browser.assert_accessible().await;
    let token = browser.text("#token-value").await;
    let token_id = browser.text("#token-id").await;
    assert!(token.starts_with("hrld_token_"), "{token}");
    let used = app.call_as(&token, Method::GET, "/api/v1/app", None).await;
    assert_eq!(used.status, StatusCode::OK);
    browser.follow("#continue").await;
    let row = format!("#tokens tr[data-token='{token_id}']");
    assert!(!browser.text(&format!("{row} .last-used")).await.contains("never"));
    browser.screenshot("tokens").await;
    browser.assert_accessible().await;
    browser.follow(&format!("{row} button.revoke")).await;
    assert!(browser.text("#notice").await.contains("revoked"));
    assert_eq!(browser.count(&format!("{row}[data-state='revoked']")).await, 1);
    browser.assert_accessible().await;
    let refused = app.call_as(&token, Method::GET, "/api/v1/app", None).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);

    // A message found by its eventId from the header, with its attempts.
    let msg = app
        .post(
            &format!("/api/v1/app/{app_id}/msg"),
            json!({"eventType": "invoice.paid", "eventId": "evt-inv-7", "payload": {"invoiceId": "INV-7"}}),
        )
        .await;
    assert_eq!(msg.status, StatusCode::ACCEPTED, "{}", msg.body);
    let msg_id = msg.body["id"].as_str().expect("id").to_owned();
    // From the keyboard alone: Tab to the header's search box, type, Enter.
    browser.tab_to("find").await;
    browser.type_and_enter("evt-inv-7").await;
    assert_eq!(browser.path().await, format!("/ui/app/{app_id}/msg/{msg_id}"));
    assert_eq!(browser.text("#message-event-id").await, "evt-inv-7");
    browser.reload_until("#attempts tr[data-status='200']").await;
    browser.assert_accessible().await;
    browser.fill("#find", "evt-nobody-sent").await;
    browser.follow("#find-button").await;
    assert!(browser.text("#not-found").await.contains("evt-nobody-sent"));
    browser.assert_accessible().await;
    // The check can fail: a field without a label is a critical finding.
    browser
        .client
        .execute(
            "document.querySelector('main').append(document.createElement('input'));",
            vec![],
        )
        .await
        .expect("an unlabelled field");
    let problems = browser.accessibility_problems().await;
    assert!(problems.iter().any(|p| p.starts_with("critical label")), "{problems:?}");

    // Deleting the application says what goes with it.
    browser.goto(&app.url(&format!("/ui/app/{app_id}"))).await;
    browser.follow("#delete-app").await;
    assert!(browser.text("#goes-with-it").await.contains("1 endpoint"));
    browser.assert_accessible().await;
    browser.follow("#confirm-delete").await;
    assert_eq!(browser.path().await, "/ui/apps");
    browser.assert_accessible().await;
    assert_eq!(
        app.get(&format!("/api/v1/app/{app_id}")).await.status,
        StatusCode::NOT_FOUND
    );
    browser.close().await;
}

async fn the_overview_shows_a_failing_endpoint_within_a_minute(backend: Backend) {
    let Some(browser) = Browser::start().await else {
        return;
    };
    // The test settings retry after 100 ms and 200 ms, then give up.
    let app = spawn_app(&backend).await;
    let receiver = Receiver::answering(|_| Reply::status(500)).await;
    let app_id = app.create_app("Globex").await;
    let ep = app
        .create_endpoint(
            &app_id,
            &format!("{}/broken", receiver.url),
            json!({"description": "Broken sync"}),
        )
        .await;
    let ep_id = ep["id"].as_str().expect("id").to_owned();
    sign_in(&browser, &app).await;
    assert_eq!(browser.count("#no-trouble").await, 1);

    let started = Instant::now();
    app.publish(&app_id, "invoice.paid", json!({"invoiceId": "INV-8"}))
        .await;
    let row = format!("#troubled tr[data-endpoint='{ep_id}']");
    browser.reload_until(&row).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(60), "shown after {took:?}");
    common::report(&format!(
        "the overview showed the failing endpoint {took:?} after publishing"
    ));
    assert!(browser.text(&row).await.to_lowercase().contains("failing"));
    assert_eq!(browser.text("#failing-count").await, "1");
    browser.assert_accessible().await;
    // The last attempt may be written just after the endpoint is marked failing.
    browser.reload_until("#traffic-hour[data-failed='3']").await;
    let chart = browser.text("#traffic-hour figcaption").await;
    // Three attempts (one and two retries), all of a delivery that gave up.
    assert!(chart.contains("3 failed"), "{chart}");
    assert!(chart.contains("0 retrying"), "{chart}");
    browser.screenshot("overview").await;
    browser.follow(&format!("{row} a")).await;
    assert_eq!(browser.path().await, format!("/ui/app/{app_id}/endpoint/{ep_id}"));
    browser.assert_accessible().await;
    browser.close().await;
}

async fn session(app: &TestApp, token: &str) -> (String, String) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let resp = http
        .post(app.url("/ui/login"))
        .form(&[("token", token)])
        .send()
        .await
        .expect("sign in");
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let cookie = resp.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .split(';')
        .next()
        .expect("pair")
        .to_owned();
    let page = http
        .get(app.url("/ui/event-types"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a csrf field")
        .to_owned();
    (cookie, csrf)
}

async fn portal_sessions_see_none_of_the_operator_pages(backend: Backend) {
    let app = spawn_app(&backend).await;
    let app_id = app.create_app("Acme").await;
    let et = app
        .post(
            "/api/v1/event-type",
            json!({"name": "ticket.created", "description": "x"}),
        )
        .await;
    assert_eq!(et.status, StatusCode::CREATED);
    let msg = app.publish(&app_id, "ticket.created", json!({})).await;
    let msg_id = msg["id"].as_str().expect("id");
    let made = app.post("/api/v1/auth/token", json!({"name": "ops"})).await.body;
    let token_id = made["id"].as_str().expect("id");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let pages = [
        "/ui/overview".to_owned(),
        "/ui/find?q=x".to_owned(),
        "/ui/apps/new".to_owned(),
        format!("/ui/app/{app_id}/edit"),
        format!("/ui/app/{app_id}/delete"),
        format!("/ui/app/{app_id}/msg/{msg_id}"),
        "/ui/event-types/new".to_owned(),
        "/ui/event-type/ticket.created".to_owned(),
        "/ui/tokens".to_owned(),
    ];
    let forms = [
        ("/ui/apps/new".to_owned(), vec![("name", "Mine")]),
        (format!("/ui/app/{app_id}/edit"), vec![("name", "Mine")]),
        (format!("/ui/app/{app_id}/delete"), vec![]),
        ("/ui/event-types/new".to_owned(), vec![("name", "x.y")]),
        ("/ui/event-type/ticket.created".to_owned(), vec![("description", "y")]),
        (
            "/ui/event-type/ticket.created/archive".to_owned(),
            vec![("to", "archive")],
        ),
        ("/ui/tokens".to_owned(), vec![("name", "mine")]),
        (format!("/ui/token/{token_id}/revoke"), vec![]),
    ];
    for (body, read_only) in [
        (json!({"ownerId": "acme"}), false),
        (json!({}), false),
        (json!({"readOnly": true}), true),
    ] {
        let link = app
            .post(&format!("/api/v1/auth/app-portal-access/{app_id}"), body)
            .await;
        assert_eq!(link.status, StatusCode::OK, "{}", link.body);
        let token = link.body["token"].as_str().expect("token");
        let (cookie, csrf) = session(&app, token).await;
        for path in &pages {
            let resp = http
                .get(app.url(path))
                .header("cookie", &cookie)
                .send()
                .await
                .expect("page");
            assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
        }
        let page = http
            .get(app.url(&format!("/ui/app/{app_id}")))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("page");
        let html = page.text().await.expect("html");
        for operator_only in ["/ui/tokens", "/ui/overview", "id=\"find\"", "/edit\"", "delete-app"] {
            assert!(
                !html.contains(operator_only),
                "{operator_only} shown to a portal session"
            );
        }
        for (path, fields) in &forms {
            let mut form = vec![("csrf", csrf.as_str())];
            form.extend(fields.iter().copied());
            let resp = http
                .post(app.url(path))
                .header("cookie", &cookie)
                .form(&form)
                .send()
                .await
                .expect("post");
            let expected = if read_only {
                StatusCode::FORBIDDEN
            } else {
                StatusCode::NOT_FOUND
            };
            assert_eq!(resp.status(), expected, "{path}");
        }
    }
    // Nothing changed.
    assert_eq!(app.get(&format!("/api/v1/app/{app_id}")).await.body["name"], "Acme");
    assert_eq!(
        app.get("/api/v1/event-type/ticket.created").await.body["archived"],
        false
    );
    assert!(app.get(&format!("/api/v1/auth/token/{token_id}")).await.body["revokedAt"].is_null());
    let admin_overview = app.get("/health").await;
    assert_eq!(admin_overview.status, StatusCode::OK);
}
