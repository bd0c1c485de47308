//! Guessing tokens does not pay: failed authentications from one client
//! address are limited (then `429` with `Retry-After`, before any database
//! lookup), unknown tokens are remembered, and other addresses carry on.
//! Made tokens sign in to the dashboard, and revoking one ends its session.

mod common;

use std::net::IpAddr;
use std::time::Instant;

use common::{Backend, TOKEN, TestApp, spawn_app, spawn_app_with};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The guesser, and the administrator working beside it.
const GUESSER: [u8; 4] = [127, 0, 0, 1];
const ADMIN: [u8; 4] = [127, 0, 0, 2];

/// A client whose requests come from `address`, showing redirects as they are.
fn client_from(address: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::from(address))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// A counter from `/metrics`, summed over its labels.
async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = app.metrics_text().await;
    text.lines()
        .filter(|l| l.split([' ', '{']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn lookups(app: &TestApp) -> f64 {
    metric(app, "herald_auth_token_lookups_total").await
}

fn retry_after(resp: &reqwest::Response) -> u64 {
    resp.headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After in whole seconds")
}

/// A token of the made kind that nobody made.
fn guess(n: usize) -> String {
    format!("hrld_token_guess{n:06}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")
}

async fn make_token(app: &TestApp, body: Value) -> Value {
    let made = app.post("/api/v1/auth/token", body).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    made.body
}

const GUESSES: usize = 1_000;
const AT_ONCE: usize = 8;

async fn a_thousand_guesses_cost_a_handful_of_lookups(backend: Backend) {
    let app = spawn_app(&backend).await;
    let app_id = app.create_app("Guarded").await;
    let scoped = make_token(&app, json!({"name": "billing", "appId": app_id})).await;
    let scoped = scoped["token"].as_str().expect("token").to_owned();
    let before = lookups(&app).await;

    // The administrator, and a service with an application's token, work
    // from another address the whole time.
    let stop = tokio_util::sync::CancellationToken::new();
    let admin = {
        let (http, url, stop) = (client_from(ADMIN), app.url("/api/v1/app"), stop.clone());
        let app_url = app.url(&format!("/api/v1/app/{app_id}"));
        tokio::spawn(async move {
            let mut served = 0;
            while !stop.is_cancelled() || served < 5 {
                let admin = http.get(&url).bearer_auth(TOKEN).send().await.expect("admin");
                assert_eq!(admin.status(), StatusCode::OK);
                let service = http.get(&app_url).bearer_auth(&scoped).send().await.expect("service");
                assert_eq!(service.status(), StatusCode::OK);
                served += 1;
            }
            served
        })
    };

    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..AT_ONCE {
        let (http, url) = (client_from(GUESSER), app.url("/api/v1/app"));
        workers.spawn(async move {
            let mut seen = Vec::new();
            for n in (worker..GUESSES).step_by(AT_ONCE) {
                let resp = http.get(&url).bearer_auth(guess(n)).send().await.expect("guess");
                let wait = (resp.status() == StatusCode::TOO_MANY_REQUESTS).then(|| retry_after(&resp));
                seen.push((resp.status(), wait));
            }
            seen
        });
    }
    let answers: Vec<(StatusCode, Option<u64>)> = workers.join_all().await.into_iter().flatten().collect();
    let took = started.elapsed();
    stop.cancel();
    let served = admin.await.expect("the administrator's requests all succeeded");

    let refused = answers.iter().filter(|(s, _)| *s == StatusCode::UNAUTHORIZED).count();
    let limited: Vec<u64> = answers.iter().filter_map(|(_, w)| *w).collect();
    assert_eq!(refused + limited.len(), GUESSES, "only 401 and 429: {answers:?}");
    assert!(
        (10..=10 + AT_ONCE).contains(&refused),
        "the budget of 10 failures, plus those already in flight: {refused}"
    );
    assert!(limited.iter().all(|w| (1..=6).contains(w)), "{limited:?}");
    // The admin token needs no lookup; the service's token one a request.
    let spent = lookups(&app).await - before - served as f64;
    assert_eq!(spent, refused as f64, "one lookup a 401, none a 429");
    assert_eq!(
        metric(&app, "herald_auth_rate_limited_total").await,
        limited.len() as f64
    );
    assert_eq!(metric(&app, "herald_auth_failures_total").await, refused as f64);
    common::report(&format!(
        "{backend:?}: {GUESSES} guessed tokens answered in {took:?} ({:.0}/s): {refused} x 401, {} x 429, \
         {spent} lookups; {served} admin and service requests from another address all 200",
        GUESSES as f64 / took.as_secs_f64(),
        limited.len()
    ));

    // The guesser's own API and dashboard are closed to it alike.
    let again = client_from(GUESSER)
        .post(app.url("/ui/login"))
        .form(&[("token", "hrld_token_another")])
        .send()
        .await
        .expect("sign in");
    assert_eq!(again.status(), StatusCode::TOO_MANY_REQUESTS);
}

async fn an_unknown_token_is_looked_up_once(backend: Backend) {
    // With the limit off, only the negative cache stands between a
    // repeated token and the database.
    let app = spawn_app_with(&backend, |s| s.auth_failure_limit = Some("0".into())).await;
    let http = client_from(GUESSER);
    let before = lookups(&app).await;
    for _ in 0..50 {
        let resp = http
            .get(app.url("/api/v1/app"))
            .bearer_auth(guess(7))
            .send()
            .await
            .expect("guess");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(lookups(&app).await - before, 1.0);
    assert_eq!(metric(&app, "herald_auth_rate_limited_total").await, 0.0);

    // A token made now works at once: nobody can have presented it before.
    let made = make_token(&app, json!({"name": "fresh"})).await;
    let fresh = http
        .get(app.url("/api/v1/app"))
        .bearer_auth(made["token"].as_str().expect("token"))
        .send()
        .await
        .expect("fresh");
    assert_eq!(fresh.status(), StatusCode::OK);
}

async fn sign_in(http: &reqwest::Client, app: &TestApp, token: &str) -> reqwest::Response {
    http.post(app.url("/ui/login"))
        .form(&[("token", token)])
        .send()
        .await
        .expect("sign in")
}

fn cookie_of(resp: &reqwest::Response) -> String {
    let set = resp.headers()["set-cookie"].to_str().expect("cookie");
    set.split(';').next().expect("pair").to_owned()
}

fn location(resp: &reqwest::Response) -> &str {
    resp.headers()["location"].to_str().expect("location")
}

async fn wrong_tokens_at_sign_in_are_limited(backend: Backend) {
    let app = spawn_app(&backend).await;
    let guesser = client_from(GUESSER);
    for n in 0..10 {
        let resp = sign_in(&guesser, &app, &guess(n)).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
    let before = lookups(&app).await;
    let limited = sign_in(&guesser, &app, &guess(10)).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!((1..=6).contains(&retry_after(&limited)));
    let page = limited.text().await.expect("page");
    assert!(page.contains("Too many wrong tokens"), "{page}");
    assert_eq!(lookups(&app).await, before, "refused without a lookup");
    // Its API requests with a token are refused alike, the admin token aside.
    let api = guesser
        .get(app.url("/api/v1/app"))
        .bearer_auth(guess(11))
        .send()
        .await
        .expect("api");
    assert_eq!(api.status(), StatusCode::TOO_MANY_REQUESTS);
    let admin_api = guesser
        .get(app.url("/api/v1/app"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("api");
    assert_eq!(admin_api.status(), StatusCode::OK);

    let admin = sign_in(&client_from(ADMIN), &app, TOKEN).await;
    assert_eq!(admin.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&admin), "/ui/overview");
    assert_eq!(metric(&app, "herald_auth_failures_total").await, 10.0);
}

async fn made_tokens_sign_in_until_revoked(backend: Backend) {
    let app = spawn_app(&backend).await;
    let app_id = app.create_app("Tenant").await;
    let http = client_from(ADMIN);
    let page = |cookie: String, path: String| {
        let http = http.clone();
        let url = app.url(&path);
        async move { http.get(url).header("cookie", cookie).send().await.expect("page") }
    };

    let operator = make_token(&app, json!({"name": "operator"})).await;
    let signed = sign_in(&http, &app, operator["token"].as_str().expect("token")).await;
    assert_eq!(signed.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&signed), "/ui/overview");
    let operator_cookie = cookie_of(&signed);
    let apps = page(operator_cookie.clone(), "/ui/apps".into()).await;
    assert_eq!(apps.status(), StatusCode::OK);

    let tenant = make_token(&app, json!({"name": "tenant", "appId": app_id, "ownerId": "acme"})).await;
    let signed = sign_in(&http, &app, tenant["token"].as_str().expect("token")).await;
    assert_eq!(signed.status(), StatusCode::SEE_OTHER);
    let own = format!("/ui/app/{app_id}");
    assert_eq!(location(&signed), own);
    let cookie = cookie_of(&signed);
    assert_eq!(page(cookie.clone(), own.clone()).await.status(), StatusCode::OK);
    let elsewhere = page(cookie.clone(), "/ui/apps".into()).await;
    assert_ne!(
        elsewhere.status(),
        StatusCode::OK,
        "an owner's session is not an operator's"
    );

    let id = tenant["id"].as_str().expect("id");
    let revoked = app.delete(&format!("/api/v1/auth/token/{id}")).await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    let after = page(cookie, own.clone()).await;
    assert_eq!(after.status(), StatusCode::SEE_OTHER);
    assert!(location(&after).starts_with("/ui/login"), "{}", location(&after));
    let again = sign_in(&http, &app, tenant["token"].as_str().expect("token")).await;
    assert_eq!(
        again.status(),
        StatusCode::UNAUTHORIZED,
        "a revoked token signs in no more"
    );
    // The operator's session, opened by another token, goes on.
    assert_eq!(page(operator_cookie, own).await.status(), StatusCode::OK);
}

on_both_backends!(
    a_thousand_guesses_cost_a_handful_of_lookups,
    an_unknown_token_is_looked_up_once,
    wrong_tokens_at_sign_in_are_limited,
    made_tokens_sign_in_until_revoked,
);

#[tokio::test]
async fn the_limit_is_one_setting() {
    let app = spawn_app_with(&Backend::Sqlite, |s| s.auth_failure_limit = Some("2".into())).await;
    let guesser = client_from(GUESSER);
    let mut statuses = Vec::new();
    for n in 0..3 {
        let resp = guesser
            .get(app.url("/api/v1/app"))
            .bearer_auth(guess(n))
            .send()
            .await
            .expect("guess");
        statuses.push(resp.status().as_u16());
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            // Two a minute: one back every 30 s.
            assert!((1..=30).contains(&retry_after(&resp)));
        }
    }
    assert_eq!(statuses, [401, 401, 429]);
}
