//! Delivery profiles: what a product's existing consumers verify, reproduced
//! by configuration alone, and checked by implementations other than Herald's.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::receiver::{Received, Reply};
use common::{Backend, Receiver, TestApp, python, spawn_app_with_file};
use reqwest::StatusCode;
use serde_json::{Value, json};

const PROFILES: &str = r#"
[profiles.acme]
signature = { style = "hmac-sha256", header = "X-Acme-Signature", prefix = "sha256=", encoding = "hex" }
event_header = "X-Acme-Event"

[profiles.bare]
signature = { style = "hmac-sha256", header = "X-Signature", encoding = "base64" }

[profiles.ed]
signature = { style = "standard-webhooks", algorithm = "ed25519" }

[profiles.svix]
signature = { style = "svix" }

[profiles.quick]
retry_schedule = ["0s", "300ms"]
timeout = "300ms"

[profiles.strict]
retry_on_4xx = false

[profiles.options]
verify = "options"

[profiles.head]
verify = "head"

[profiles.challenge]
verify = "get-challenge"

[profiles.watched]
verify = "head"
reverify_every = "1s"

[profiles.once]
secret_reveal = "once"
"#;

async fn spawn(backend: &Backend) -> TestApp {
    spawn_app_with_file(backend, PROFILES).await
}

fn ep_path(app: &str, ep: &Value) -> String {
    format!("/api/v1/app/{app}/endpoint/{}", ep["id"].as_str().unwrap())
}

/// The request headers as a JSON object, names in lower case.
fn headers_json(r: &Received) -> Value {
    r.headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), json!(v.to_str().unwrap())))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn body_text(r: &Received) -> String {
    String::from_utf8(r.body.to_vec()).unwrap()
}

fn loc(body: &Value) -> Vec<String> {
    body["detail"][0]["loc"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

fn msg(body: &Value) -> String {
    body["detail"][0]["msg"].as_str().unwrap_or_default().to_owned()
}

async fn a_product_style_profile_signs_the_raw_body_in_its_own_header(backend: Backend) {
    let app = spawn(&backend).await;
    let app_id = app.create_app("Acme").await;
    let acme = Receiver::start().await;
    let bare = Receiver::start().await;
    // A secret typed by the user is used as the UTF-8 bytes they typed.
    let typed = "acme shared secret: 42";
    let ep = app
        .create_endpoint(&app_id, &acme.url, json!({"profile": "acme", "secret": typed}))
        .await;
    assert_eq!(ep["profile"], "acme");
    assert_eq!(ep["secret"], typed);
    // A generated one has no `whsec_` prefix and is readable back.
    let generated = app
        .create_endpoint(&app_id, &bare.url, json!({"profile": "bare"}))
        .await;
    let bare_secret = generated["secret"].as_str().unwrap().to_owned();
    assert!(
        !bare_secret.starts_with("whsec_") && bare_secret.len() >= 16,
        "{bare_secret}"
    );
    assert_eq!(
        app.secret(&app_id, generated["id"].as_str().unwrap()).await,
        bare_secret
    );

    for (event, payload) in [
        ("ticket.created", json!({"id": 1, "subject": "Printer on fire"})),
        ("sla.at_risk", json!({"ticket": 1, "minutes_left": 5})),
    ] {
        app.publish(&app_id, event, payload).await;
    }
    let got = acme.wait_for(2, Duration::from_secs(10)).await;
    let bare_got = bare.wait_for(2, Duration::from_secs(10)).await;
    let mut events: Vec<&str> = got.iter().map(|r| r.header("x-acme-event")).collect();
    events.sort();
    assert_eq!(events, ["sla.at_risk", "ticket.created"]);
    assert!(got.iter().all(|r| r.header("x-acme-signature").starts_with("sha256=")));
    assert!(bare_got.iter().all(|r| r.header("x-acme-event").is_empty()));

    let checks: Vec<Value> = got
        .iter()
        .map(|r| {
            json!({"kind": "body-hmac", "secret": typed, "header": "x-acme-signature", "prefix": "sha256=",
            "encoding": "hex", "headers": headers_json(r), "body": body_text(r)})
        })
        .chain(bare_got.iter().map(|r| {
            json!({"kind": "body-hmac", "secret": bare_secret, "header": "x-signature", "prefix": "",
                "encoding": "base64", "headers": headers_json(r), "body": body_text(r)})
        }))
        .collect();
    let out = python::run_script("verify_signatures.py", &Value::from(checks).to_string()).await;
    assert!(out.contains("verified 4"), "{out}");

    // A secret that cannot sign in the profile's style is refused.
    let wrong = app
        .post(
            &format!("/api/v1/app/{app_id}/endpoint"),
            json!({"url": acme.url, "profile": "ed", "secret": typed}),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(loc(&wrong.body), ["body", "secret"]);
    assert!(msg(&wrong.body).contains("whsk_"), "{}", wrong.body);
}

async fn the_default_profile_verifies_with_the_standard_webhooks_library(backend: Backend) {
    let app = spawn(&backend).await;
    let app_id = app.create_app("Acme").await;
    let receiver = Receiver::start().await;
    let ep = app.create_endpoint(&app_id, &receiver.url, json!({})).await;
    let secret = ep["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    app.publish(&app_id, "ticket.created", json!({"id": 7})).await;
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    let checks =
        json!([{"kind": "v1", "secret": secret, "headers": headers_json(&got[0]), "body": body_text(&got[0])}]);
    let out = python::run_script("verify_signatures.py", &checks.to_string()).await;
    assert!(out.contains("verified 1"), "{out}");
}

/// Consumers moved from a Svix server read `svix-id`, `svix-timestamp` and
/// `svix-signature`; a profile with style `svix` sends exactly those, and
/// Svix's own verifier accepts them.
async fn a_svix_style_profile_signs_under_svixs_header_names(backend: Backend) {
    let app = spawn(&backend).await;
    let app_id = app.create_app("Moved from Svix").await;
    let receiver = Receiver::start().await;
    let ep = app
        .create_endpoint(&app_id, &receiver.url, json!({"profile": "svix"}))
        .await;
    let secret = ep["secret"].as_str().unwrap().to_owned();
    let msg = app.publish(&app_id, "ticket.created", json!({"id": 7})).await;
    let got = &receiver.wait_for(1, Duration::from_secs(10)).await[0];
    assert_eq!(got.header("svix-id"), msg["id"].as_str().unwrap());
    assert!(got.header("svix-timestamp").parse::<i64>().is_ok());
    assert!(got.header("svix-signature").starts_with("v1,"));
    for standard in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        assert_eq!(got.header(standard), "", "{standard} is not sent beside the svix names");
    }
    let checks = json!([{"kind": "svix", "secret": secret, "headers": headers_json(got), "body": body_text(got)}]);
    let out = python::run_script("verify_signatures.py", &checks.to_string()).await;
    assert!(out.contains("verified 1"), "{out}");
}

async fn ed25519_endpoints_sign_v1a_that_another_implementation_verifies(backend: Backend) {
    let app = spawn(&backend).await;
    let app_id = app.create_app("Acme").await;
    let receiver = Receiver::start().await;
    let ep = app
        .create_endpoint(&app_id, &receiver.url, json!({"profile": "ed"}))
        .await;
    let public = ep["secret"].as_str().unwrap().to_owned();
    assert!(public.starts_with("whpk_"), "the seed never leaves Herald: {public}");
    assert_eq!(app.secret(&app_id, ep["id"].as_str().unwrap()).await, public);

    // The published key pair can be given, and its public half comes back.
    let other = Receiver::start().await;
    let given = app
        .create_endpoint(
            &app_id,
            &other.url,
            json!({"profile": "ed", "secret": "whsk_6Xb/dCcHpPea21PS1N9VY/NZW723CEc77N4rJCubMbfVKIDij2HKpMKkioLlX0dRqSKJp4AJ6p9lMicMFs6Kvg=="}),
        )
        .await;
    assert_eq!(given["secret"], "whpk_1SiA4o9hyqTCpIqC5V9HUakiiaeACeqfZTInDBbOir4=");

    app.publish(&app_id, "ticket.created", json!({"id": 1})).await;
    for (rx, key) in [
        (&receiver, public.as_str()),
        (&other, given["secret"].as_str().unwrap()),
    ] {
        let r = &rx.wait_for(1, Duration::from_secs(10)).await[0];
        let signed = format!(
            "{}.{}.{}",
            r.header("webhook-id"),
            r.header("webhook-timestamp"),
            body_text(r)
        );
        let (version, sig) = r.header("webhook-signature").split_once(',').unwrap();
        assert_eq!(version, "v1a");
        let key = STANDARD.decode(key.strip_prefix("whpk_").unwrap()).unwrap();
        let sig = STANDARD.decode(sig).unwrap();
        let verifier = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &key);
        verifier
            .verify(signed.as_bytes(), &sig)
            .expect("ring verifies Herald's v1a signature");
        assert!(verifier.verify(format!("{signed} ").as_bytes(), &sig).is_err());
    }
}

async fn a_profile_sets_the_retry_schedule_and_the_timeout(backend: Backend) {
    let app = spawn(&backend).await;
    let app_id = app.create_app("Acme").await;
    // Retries at once, then after 300 ms; then the delivery is exhausted.
    let failing = Receiver::scripted(&[500, 500, 500, 500]).await;
    app.create_endpoint(&app_id, &failing.url, json!({"profile": "quick"}))
        .await;
    let msg = app.publish(&app_id, "ticket.created", json!({})).await;
    let got = failing.wait_for(3, Duration::from_secs(10)).await;
    let gaps: Vec<Duration> = got.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(
        gaps[0] < Duration::from_millis(250),
        "the first retry is immediate: {gaps:?}"
    );
    assert!(gaps[1] >= Duration::from_millis(300), "then 300 ms: {gaps:?}");
    let msg_id = msg["id"].as_str().unwrap();
    let attempts_path = format!("/api/v1/app/{app_id}/attempt/msg/{msg_id}");
    let attempts = app.wait_for_attempts(&attempts_path, |a| a.len() == 3).await;
    assert!(attempts.iter().all(|a| a["responseStatusCode"] == 500));
    assert!(
        !failing.next_arrival(Duration::from_millis(600)).await,
        "no fourth attempt"
    );
    assert_eq!(app.get(&attempts_path).await.body["data"].as_array().unwrap().len(), 3);

    // The profile's timeout, not the server's 2 s, bounds an attempt.
    let slow = Receiver::slow(Duration::from_secs(1)).await;
    let ep = app
        .create_endpoint(&app_id, &slow.url, json!({"profile": "quick"}))
        .await;
    app.publish(&app_id, "ticket.created", json!({})).await;
    let path = format!("/api/v1/app/{app_id}/attempt/endpoint/{}", ep["id"].as_str().unwrap());
    let attempts = app.wait_for_attempts(&path, |a| !a.is_empty()).await;
    assert_eq!(attempts[0]["response"], "timed out after 300ms");
}

async fn a_4xx_is_final_when_the_profile_says_so_and_410_disables(backend: Backend) {
    let app = spawn(&backend).await;
    let app_id = app.create_app("Acme").await;
    let strict = Receiver::scripted(&[400, 200]).await;
    let lenient = Receiver::scripted(&[400, 200]).await;
    let gone = Receiver::scripted(&[410, 200]).await;
    let strict_ep = app
        .create_endpoint(&app_id, &strict.url, json!({"profile": "strict"}))
        .await;
    app.create_endpoint(&app_id, &lenient.url, json!({})).await;
    let gone_ep = app.create_endpoint(&app_id, &gone.url, json!({})).await;
    app.publish(&app_id, "ticket.created", json!({})).await;

    lenient.wait_for(2, Duration::from_secs(10)).await;
    let path = format!(
        "/api/v1/app/{app_id}/attempt/endpoint/{}",
        strict_ep["id"].as_str().unwrap()
    );
    let attempts = app.wait_for_attempts(&path, |a| !a.is_empty()).await;
    assert_eq!(attempts[0]["responseStatusCode"], 400);
    let gone_now = app
        .wait_until(&ep_path(&app_id, &gone_ep), |ep| ep["disabled"] == true)
        .await;
    assert!(
        gone_now["disabledReason"].as_str().unwrap().contains("410 Gone"),
        "{gone_now}"
    );
    assert!(!strict.next_arrival(Duration::from_millis(500)).await, "400 was final");
    assert_eq!(strict.count(), 1);
    assert_eq!(gone.count(), 1, "410 was final");
}

async fn retry_after_slows_the_next_attempt(backend: Backend) {
    let app = spawn(&backend).await;
    let app_id = app.create_app("Acme").await;
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let receiver = Receiver::answering(move |_| {
        if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            Reply::status(429).header("retry-after", "1")
        } else {
            Reply::status(200)
        }
    })
    .await;
    app.create_endpoint(&app_id, &receiver.url, json!({})).await;
    app.publish(&app_id, "ticket.created", json!({})).await;
    let got = receiver.wait_for(2, Duration::from_secs(10)).await;
    let gap = got[1].at - got[0].at;
    // The test schedule would retry after 100 ms; the receiver asked for 1 s.
    assert!(gap >= Duration::from_secs(1), "{gap:?}");
}

/// A receiver that passes every check: OPTIONS, HEAD and the GET challenge.
async fn well_behaved() -> Receiver {
    Receiver::answering(|r| match r.method.as_str() {
        "OPTIONS" => Reply::status(204).header("allow", "OPTIONS, POST"),
        "HEAD" => Reply::status(200),
        "GET" if r.param("verifyToken").as_deref() == Some("tok-42") => {
            Reply::status(200).body(r.param("challenge").unwrap_or_default())
        }
        "GET" => Reply::status(403),
        _ => Reply::status(200),
    })
    .await
}

async fn endpoint_checks_accept_good_receivers_and_explain_bad_ones(backend: Backend) {
    let app = spawn(&backend).await;
    let app_id = app.create_app("Acme").await;
    let good = well_behaved().await;
    let bad = Receiver::answering(|r| match r.method.as_str() {
        "OPTIONS" => Reply::status(200).header("allow", "GET, HEAD"),
        "HEAD" => Reply::status(404),
        "GET" => Reply::status(200).body("hello"),
        _ => Reply::status(200),
    })
    .await;
    let ep_list = format!("/api/v1/app/{app_id}/endpoint");
    let create = |url: &str, extra: Value| {
        let mut body = json!({"url": url});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        app.post(&ep_list, body)
    };
    for (profile, token, complaint) in [
        (
            "options",
            None,
            "Allow header that lists POST (it had Allow: GET, HEAD)",
        ),
        ("head", None, "the HEAD check got 404"),
        ("challenge", Some("tok-42"), "it answered \"hello\""),
    ] {
        let extra = json!({"profile": profile, "verifyToken": token});
        let ok = create(&good.url, extra.clone()).await;
        assert_eq!(ok.status, StatusCode::CREATED, "{profile}: {}", ok.body);
        let refused = create(&bad.url, extra).await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{profile}");
        assert_eq!(loc(&refused.body), ["body", "url"]);
        assert!(msg(&refused.body).contains(complaint), "{profile}: {}", refused.body);
    }
    let challenge = good.received().into_iter().find(|r| r.method == "GET").unwrap();
    assert_eq!(challenge.param("verifyToken").as_deref(), Some("tok-42"));
    assert!(challenge.param("challenge").unwrap().len() >= 16);

    let no_token = create(&good.url, json!({"profile": "challenge"})).await;
    assert_eq!(no_token.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(loc(&no_token.body), ["body", "verifyToken"]);

    // Changing the URL checks again; other changes do not.
    let ep = create(&good.url, json!({"profile": "head"})).await.body;
    let moved = app.patch(&ep_path(&app_id, &ep), json!({"url": bad.url})).await;
    assert_eq!(moved.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", moved.body);
    let renamed = app
        .patch(&ep_path(&app_id, &ep), json!({"description": "renamed"}))
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.body);
    assert!(bad.deliveries().is_empty());
}

async fn a_failed_repeat_check_disables_the_endpoint_with_the_reason(backend: Backend) {
    let app = spawn(&backend).await;
    let app_id = app.create_app("Acme").await;
    let healthy = Arc::new(AtomicBool::new(true));
    let switch = healthy.clone();
    let receiver =
        Receiver::answering(move |_| Reply::status(if switch.load(Ordering::SeqCst) { 200 } else { 503 })).await;
    let ep = app
        .create_endpoint(&app_id, &receiver.url, json!({"profile": "watched"}))
        .await;
    // It passes its repeat checks while healthy...
    for _ in 0..2 {
        assert!(receiver.next_arrival(Duration::from_secs(5)).await);
    }
    assert_eq!(app.get(&ep_path(&app_id, &ep)).await.body["disabled"], false);
    // ...and is switched off with the reason once it stops answering.
    healthy.store(false, Ordering::SeqCst);
    let off = app.wait_until(&ep_path(&app_id, &ep), |e| e["disabled"] == true).await;
    let reason = off["disabledReason"].as_str().unwrap();
    assert!(
        reason.contains("repeated endpoint check failed") && reason.contains("HEAD check got 503"),
        "{reason}"
    );
    // Switching it back on checks it again.
    let back = app.patch(&ep_path(&app_id, &ep), json!({"disabled": false})).await;
    assert_eq!(back.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", back.body);
    healthy.store(true, Ordering::SeqCst);
    let back = app.patch(&ep_path(&app_id, &ep), json!({"disabled": false})).await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.body);
    assert_eq!(back.body["disabledReason"], Value::Null);
}

async fn a_secret_shown_once_appears_only_on_create_and_rotate(backend: Backend) {
    let app = spawn(&backend).await;
    let app_id = app.create_app("Acme").await;
    let receiver = Receiver::start().await;
    let ep = app
        .create_endpoint(&app_id, &receiver.url, json!({"profile": "once"}))
        .await;
    let first = ep["secret"].as_str().unwrap().to_owned();
    assert!(first.starts_with("whsec_"));
    let path = ep_path(&app_id, &ep);
    let hidden = app.get(&format!("{path}/secret")).await;
    assert_eq!(hidden.status, StatusCode::FORBIDDEN);
    assert!(
        hidden.body["detail"].as_str().unwrap().contains("only once"),
        "{}",
        hidden.body
    );
    assert!(!hidden.body.to_string().contains(&first));
    assert!(!app.get(&path).await.body.to_string().contains(&first));

    let rotated = app.post(&format!("{path}/secret/rotate"), json!({})).await;
    assert_eq!(rotated.status, StatusCode::OK);
    let second = rotated.body["key"].as_str().unwrap();
    assert!(second.starts_with("whsec_") && second != first);
    assert_eq!(app.get(&format!("{path}/secret")).await.status, StatusCode::FORBIDDEN);
}

async fn unknown_profiles_are_refused_and_a_profile_change_brings_a_fitting_secret(backend: Backend) {
    let app = spawn(&backend).await;
    let a = app
        .post("/api/v1/app", json!({"name": "Acme", "profile": "nope"}))
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(loc(&a.body), ["body", "profile"]);
    assert!(msg(&a.body).contains("configured: acme"), "{}", a.body);
    let app_id = app.create_app("Acme").await;
    let receiver = Receiver::start().await;
    let e = app
        .post(
            &format!("/api/v1/app/{app_id}/endpoint"),
            json!({"url": receiver.url, "profile": "nope"}),
        )
        .await;
    assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(loc(&e.body), ["body", "profile"]);

    // An application's profile is its endpoints' default.
    let ed_app = app
        .post("/api/v1/app", json!({"name": "Ed", "profile": "ed"}))
        .await
        .body;
    assert_eq!(ed_app["profile"], "ed");
    let ed_id = ed_app["id"].as_str().unwrap();
    let ep = app.create_endpoint(ed_id, &receiver.url, json!({})).await;
    assert!(ep["secret"].as_str().unwrap().starts_with("whpk_"), "{ep}");
    // Moving it to a profile that signs with HMAC gives it an HMAC secret.
    let moved = app.patch(&ep_path(ed_id, &ep), json!({"profile": "default"})).await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.body);
    assert!(
        app.secret(ed_id, ep["id"].as_str().unwrap())
            .await
            .starts_with("whsec_")
    );
}

async fn payload_formats_render_slack_messages_and_templates(backend: Backend) {
    let app = spawn(&backend).await;
    let app_id = app.create_app("Acme").await;
    let slack = Receiver::start().await;
    let templated = Receiver::start().await;
    let broken = Receiver::start().await;
    app.create_endpoint(&app_id, &slack.url, json!({"format": "slack"}))
        .await;
    app.create_endpoint(
        &app_id,
        &templated.url,
        json!({"format": "template", "template": r#"{"title": {{ event_type }}, "ticket": {{ payload.id }}, "who": {{ payload.by }}}"#}),
    )
    .await;
    let broken_ep = app
        .create_endpoint(
            &app_id,
            &broken.url,
            json!({"format": "template", "template": r#"{"missing": {{ payload.nope.deeper }}}"#}),
        )
        .await;
    let bad = app
        .post(
            &format!("/api/v1/app/{app_id}/endpoint"),
            json!({"url": slack.url, "format": "template", "template": "{{ payload.id "}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(loc(&bad.body), ["body", "template"]);

    app.publish(&app_id, "ticket.created", json!({"id": 42, "by": "Eve \"<admin>\""}))
        .await;
    let s: Value = serde_json::from_slice(&slack.wait_for(1, Duration::from_secs(10)).await[0].body).unwrap();
    assert_eq!(
        s["blocks"][0]["text"]["text"],
        "*ticket.created*\n• *id*: 42\n• *by*: Eve \"&lt;admin&gt;\""
    );
    assert_eq!(s["blocks"][0]["text"]["type"], "mrkdwn");
    let t: Value = serde_json::from_slice(&templated.wait_for(1, Duration::from_secs(10)).await[0].body).unwrap();
    assert_eq!(
        t,
        json!({"title": "ticket.created", "ticket": 42, "who": "Eve \"<admin>\""})
    );

    let path = format!(
        "/api/v1/app/{app_id}/attempt/endpoint/{}",
        broken_ep["id"].as_str().unwrap()
    );
    let attempts = app.wait_for_attempts(&path, |a| !a.is_empty()).await;
    let reason = attempts[0]["response"].as_str().unwrap();
    assert!(reason.starts_with("not sent: the template failed"), "{reason}");
    assert!(broken.received().is_empty());

    // Back to the raw payload: the template goes with the format.
    let raw = app.patch(&ep_path(&app_id, &broken_ep), json!({"format": "raw"})).await;
    assert_eq!(raw.status, StatusCode::OK, "{}", raw.body);
    assert_eq!(raw.body["template"], Value::Null);
}

async fn custom_headers_are_sent_and_credentials_are_not_read_back(backend: Backend) {
    let app = spawn(&backend).await;
    let app_id = app.create_app("Acme").await;
    let receiver = Receiver::start().await;
    let ep = app
        .create_endpoint(&app_id, &receiver.url, json!({"profile": "acme"}))
        .await;
    let path = format!("{}/headers", ep_path(&app_id, &ep));
    let put = app
        .put(
            &path,
            json!({"headers": {"X-Tenant": "t-1", "Authorization": "Bearer s3cret", "X-Old": "1"}}),
        )
        .await;
    assert_eq!(put.status, StatusCode::NO_CONTENT, "{}", put.body);
    let patched = app
        .patch(&path, json!({"headers": {"X-Old": null, "X-Region": "eu"}}))
        .await;
    assert_eq!(patched.status, StatusCode::NO_CONTENT, "{}", patched.body);
    let read = app.get(&path).await.body;
    assert_eq!(
        read,
        json!({"headers": {"X-Region": "eu", "X-Tenant": "t-1"}, "sensitive": ["Authorization"]})
    );

    for name in ["webhook-signature", "X-Acme-Event", "X-Acme-Signature"] {
        let refused = app.put(&path, json!({"headers": {name: "forged"}})).await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{name}");
        assert_eq!(loc(&refused.body), ["body", "headers", name]);
    }
    app.publish(&app_id, "ticket.created", json!({})).await;
    let r = &receiver.wait_for(1, Duration::from_secs(10)).await[0];
    assert_eq!(r.header("x-tenant"), "t-1");
    assert_eq!(r.header("authorization"), "Bearer s3cret");
    assert_eq!(r.header("x-acme-event"), "ticket.created");
    assert!(r.header("x-old").is_empty());
}

/// A template that builds a huge string: fuel counts instructions, not
/// bytes, so only the render worker's memory budget stops it.
fn doubling_template(times: usize) -> String {
    format!(
        r#"{{% set s = "xxxxxxxx" %}}{}{{"size": {{{{ s | length }}}}}}"#,
        "{% set s = s ~ s %}".repeat(times)
    )
}

async fn a_template_past_its_memory_budget_fails_its_attempt_and_the_rest_goes_on(backend: Backend) {
    let app = common::spawn_app_with(&backend, |s| s.template_memory_limit = Some("32".into())).await;
    let app_id = app.create_app("Acme").await;
    let (hostile, huge, fine, raw) = (
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
    );
    // The issue's example: 8 bytes doubled 40 times, 8 TiB, in 80 instructions.
    let hostile_ep = app
        .create_endpoint(
            &app_id,
            &hostile.url,
            json!({"format": "template", "template": doubling_template(40)}),
        )
        .await;
    // 128 MiB: a size this machine could render unbounded, past a 32 MiB budget.
    let huge_ep = app
        .create_endpoint(
            &app_id,
            &huge.url,
            json!({"format": "template", "template": doubling_template(24)}),
        )
        .await;
    app.create_endpoint(
        &app_id,
        &fine.url,
        json!({"format": "template", "template": doubling_template(10)}),
    )
    .await;
    app.create_endpoint(&app_id, &raw.url, json!({})).await;

    app.publish(&app_id, "ticket.created", json!({"id": 1})).await;
    for ep in [&hostile_ep, &huge_ep] {
        let path = format!("/api/v1/app/{app_id}/attempt/endpoint/{}", ep["id"].as_str().unwrap());
        let attempts = app.wait_for_attempts(&path, |a| !a.is_empty()).await;
        let reason = attempts[0]["response"].as_str().unwrap();
        assert_eq!(
            reason,
            "not sent: the template failed: it used more than its memory budget of 32 MiB \
             (HERALD_TEMPLATE_MEMORY_LIMIT) and its render was stopped",
        );
    }
    let body: Value = serde_json::from_slice(&fine.wait_for(1, Duration::from_secs(10)).await[0].body).unwrap();
    assert_eq!(body, json!({"size": 8 * 1024}));
    raw.wait_for(1, Duration::from_secs(10)).await;

    // The server is up, and later messages go out, templated ones included.
    app.publish(&app_id, "ticket.created", json!({"id": 2})).await;
    fine.wait_for(2, Duration::from_secs(10)).await;
    raw.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(app.get("/health").await.status, StatusCode::OK);
    assert!(hostile.received().is_empty() && huge.received().is_empty());
}

on_both_backends!(
    a_product_style_profile_signs_the_raw_body_in_its_own_header,
    the_default_profile_verifies_with_the_standard_webhooks_library,
    ed25519_endpoints_sign_v1a_that_another_implementation_verifies,
    a_svix_style_profile_signs_under_svixs_header_names,
    a_profile_sets_the_retry_schedule_and_the_timeout,
    a_4xx_is_final_when_the_profile_says_so_and_410_disables,
    retry_after_slows_the_next_attempt,
    endpoint_checks_accept_good_receivers_and_explain_bad_ones,
    a_failed_repeat_check_disables_the_endpoint_with_the_reason,
    a_secret_shown_once_appears_only_on_create_and_rotate,
    unknown_profiles_are_refused_and_a_profile_change_brings_a_fitting_secret,
    payload_formats_render_slack_messages_and_templates,
    custom_headers_are_sent_and_credentials_are_not_read_back,
    a_template_past_its_memory_budget_fails_its_attempt_and_the_rest_goes_on,
);
