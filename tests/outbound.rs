//! Outbound trust: certificates are verified (with an operator's private CA
//! added on request), an endpoint skips that only where the server allows
//! it, and an outbound proxy carries every request without opening a hole
//! in the address policy.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::proxy::ForwardProxy;
use common::tls::{Identity, TestCa};
use common::{Backend, Receiver, TestApp, spawn_app_with, spawn_app_with_file_and};
use reqwest::StatusCode;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

/// The attempts of one endpoint, once `n` are recorded.
async fn attempts(app: &TestApp, app_id: &str, ep: &Value, n: usize) -> Vec<Value> {
    let path = format!("/api/v1/app/{app_id}/attempt/endpoint/{}", ep["id"].as_str().unwrap());
    app.wait_for_attempts(&path, |a| a.len() >= n).await
}

fn response(attempt: &Value) -> String {
    attempt["response"].as_str().unwrap_or_default().to_owned()
}

/// rustls names an untrusted issuer `UnknownIssuer`.
fn says_unknown_issuer(text: &str) -> bool {
    text.replace(' ', "").to_ascii_lowercase().contains("unknownissuer")
}

async fn a_private_ca_is_trusted_only_through_the_ca_file(backend: Backend) {
    let ca = TestCa::new();
    let receiver = Receiver::tls(&ca.issue_for_loopback()).await;

    // By default the bundled roots do not know the CA: the attempt fails and says why.
    let app = spawn_app_with(&backend, |s| s.retry_schedule = Some(String::new())).await;
    let app_id = app.create_app("Acme").await;
    let ep = app.create_endpoint(&app_id, &receiver.url, json!({})).await;
    assert_eq!(ep["tlsVerify"], true, "{ep}");
    app.publish(&app_id, "ticket.created", json!({"id": 1})).await;
    let failed = attempts(&app, &app_id, &ep, 1).await;
    assert_eq!(failed[0]["responseStatusCode"], 0);
    assert!(says_unknown_issuer(&response(&failed[0])), "{}", failed[0]);
    assert_eq!(receiver.deliveries().len(), 0);
    drop(app.stop().await);

    // With the CA's PEM in HERALD_CA_FILE, the same receiver is trusted.
    let pem = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(pem.path(), ca.pem()).unwrap();
    let app = spawn_app_with(&backend, |s| s.ca_file = Some(pem.path().display().to_string())).await;
    let app_id = app.create_app("Acme").await;
    let ep = app.create_endpoint(&app_id, &receiver.url, json!({})).await;
    app.publish(&app_id, "ticket.created", json!({"id": 2})).await;
    receiver.wait_for(1, WAIT).await;
    let delivered = attempts(&app, &app_id, &ep, 1).await;
    assert_eq!(delivered[0]["responseStatusCode"], 200, "{}", delivered[0]);
}

async fn tls_verify_false_only_where_the_server_allows_it(backend: Backend) {
    let receiver = Receiver::tls(&Identity::self_signed_loopback()).await;

    let strict = spawn_app_with(&backend, |s| s.retry_schedule = Some(String::new())).await;
    let app_id = strict.create_app("Acme").await;
    let refused = strict
        .post(
            &format!("/api/v1/app/{app_id}/endpoint"),
            json!({"url": receiver.url, "tlsVerify": false}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.body);
    let detail = &refused.body["detail"][0];
    assert_eq!(detail["loc"], json!(["body", "tlsVerify"]), "{}", refused.body);
    assert!(
        detail["msg"]
            .as_str()
            .unwrap()
            .contains("HERALD_ALLOW_INSECURE_TLS=true"),
        "{}",
        refused.body
    );
    let ep = strict.create_endpoint(&app_id, &receiver.url, json!({})).await;
    let patched = strict
        .patch(
            &format!("/api/v1/app/{app_id}/endpoint/{}", ep["id"].as_str().unwrap()),
            json!({"tlsVerify": false}),
        )
        .await;
    assert_eq!(patched.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", patched.body);
    assert_eq!(patched.body["detail"][0]["loc"], json!(["body", "tlsVerify"]));
    drop(strict.stop().await);

    // A profile that checks endpoints with HEAD when saved, and again every second.
    let checked = "[profiles.checked]\nverify = \"head\"\nreverify_every = \"1s\"\n";
    let lenient = spawn_app_with_file_and(&backend, checked, |s| {
        s.allow_insecure_tls = Some("true".into());
        s.retry_schedule = Some(String::new());
    })
    .await;
    let app_id = lenient.create_app("Acme").await;
    let unverified_url = receiver.url.replace("/hook", "/unverified");
    let unverified = lenient
        .create_endpoint(
            &app_id,
            &unverified_url,
            json!({"tlsVerify": false, "profile": "checked"}),
        )
        .await;
    let refused = lenient
        .post(
            &format!("/api/v1/app/{app_id}/endpoint"),
            json!({"url": receiver.url, "profile": "checked"}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "the check verifies");
    assert!(refused.body.to_string().contains("certificate"), "{}", refused.body);
    assert_eq!(unverified["tlsVerify"], false);
    let shown = lenient
        .get(&format!(
            "/api/v1/app/{app_id}/endpoint/{}",
            unverified["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(shown.body["tlsVerify"], false, "{}", shown.body);
    let verified = lenient.create_endpoint(&app_id, &receiver.url, json!({})).await;

    lenient.publish(&app_id, "ticket.created", json!({"id": 1})).await;
    receiver.wait_for(2, WAIT).await;
    assert_eq!(receiver.deliveries()[0].path, "/unverified");
    let ok = attempts(&lenient, &app_id, &unverified, 1).await;
    assert_eq!(ok[0]["responseStatusCode"], 200);
    // The endpoint that did not ask still gets the verifying client.
    let failed = attempts(&lenient, &app_id, &verified, 1).await;
    assert_eq!(failed[0]["responseStatusCode"], 0);
    assert!(
        response(&failed[0]).to_lowercase().contains("certificate"),
        "{}",
        failed[0]
    );
    assert_eq!(receiver.deliveries().len(), 1);

    // The repeated check uses the endpoint's client too, so it stays enabled.
    let deadline = tokio::time::Instant::now() + WAIT;
    while receiver.received().iter().filter(|r| r.method == "HEAD").count() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the repeated check did not reach the receiver"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = lenient
        .get(&format!(
            "/api/v1/app/{app_id}/endpoint/{}",
            unverified["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(after.body["disabled"], false, "{}", after.body);
}

async fn an_unverified_endpoint_is_verified_again_once_the_server_stops_allowing_it(backend: Backend) {
    let receiver = Receiver::tls(&Identity::self_signed_loopback()).await;
    let lenient = spawn_app_with(&backend, |s| {
        s.allow_insecure_tls = Some("true".into());
        s.retry_schedule = Some(String::new());
    })
    .await;
    let app_id = lenient.create_app("Acme").await;
    let ep = lenient
        .create_endpoint(&app_id, &receiver.url, json!({"tlsVerify": false}))
        .await;
    let ep_id = ep["id"].as_str().unwrap().to_owned();
    lenient.publish(&app_id, "ticket.created", json!({"id": 1})).await;
    receiver.wait_for(1, WAIT).await;
    let data = lenient.stop().await;

    // The same data, on a server that no longer allows it.
    let strict = spawn_app_with(&backend, |s| {
        s.database_url = Some(backend.database_url(data.path()));
        s.retry_schedule = Some(String::new());
    })
    .await;
    let shown = strict.get(&format!("/api/v1/app/{app_id}/endpoint/{ep_id}")).await;
    assert_eq!(shown.body["tlsVerify"], false, "the stored setting is shown as it is");
    strict.publish(&app_id, "ticket.created", json!({"id": 2})).await;
    let tried = attempts(&strict, &app_id, &ep, 2).await;
    let last = tried
        .iter()
        .find(|a| a["responseStatusCode"] == 0)
        .expect("a failed attempt");
    let text = response(last);
    assert!(
        text.contains("tlsVerify=false") && text.contains("HERALD_ALLOW_INSECURE_TLS"),
        "{text}"
    );
    assert_eq!(receiver.deliveries().len(), 1, "nothing more went out unverified");
    // Still editable, and switching verification back on is always allowed.
    let edited = strict
        .patch(
            &format!("/api/v1/app/{app_id}/endpoint/{ep_id}"),
            json!({"description": "kept"}),
        )
        .await;
    assert_eq!(edited.status, StatusCode::OK, "{}", edited.body);
    let on = strict
        .patch(
            &format!("/api/v1/app/{app_id}/endpoint/{ep_id}"),
            json!({"tlsVerify": true}),
        )
        .await;
    assert_eq!(on.body["tlsVerify"], true, "{}", on.body);
    drop(data);
}

/// The machine's own name, which resolves to one of its own (refused) addresses.
async fn own_host_name() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("the machine's name")
        .trim()
        .to_owned();
    let addresses: Vec<IpAddr> = tokio::net::lookup_host((name.as_str(), 80))
        .await
        .expect("the machine's name resolves")
        .map(|a| a.ip())
        .collect();
    let policy = herald::domain::target::TargetPolicy::default();
    assert!(
        !addresses.is_empty() && addresses.iter().all(|ip| policy.check_ip(*ip).is_err()),
        "{name} resolves to {addresses:?}; this test needs a name for a refused address"
    );
    name
}

async fn deliveries_and_checks_go_through_the_outbound_proxy(backend: Backend) {
    let proxy = ForwardProxy::start().await;
    let ca = TestCa::new();
    let https = Receiver::tls_on(&ca.issue_for_loopback(), "127.0.0.2").await;
    let http = Receiver::start_on("127.0.0.3").await;
    let pem = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(pem.path(), ca.pem()).unwrap();
    // Named, on 127.0.0.1: the proxy's own address is the operator's choice,
    // which the target policy (here only 127.0.0.2 and 127.0.0.3) does not judge.
    let toml = format!(
        "outbound_proxy = \"http://herald:s3cret@localhost:{port}\"\n\
         ca_file = \"{pem}\"\n\
         [profiles.checked]\nverify = \"head\"\n",
        port = proxy.port,
        pem = pem.path().display(),
    );
    let app = spawn_app_with_file_and(&backend, &toml, |s| {
        s.allowed_target_networks = Some("127.0.0.2/32,127.0.0.3/32".into());
    })
    .await;
    let app_id = app.create_app("Acme").await;
    let secure = app
        .create_endpoint(&app_id, &https.url, json!({"profile": "checked"}))
        .await;
    let plain = app.create_endpoint(&app_id, &http.url, json!({})).await;
    app.publish(&app_id, "ticket.created", json!({"id": 1})).await;
    https.wait_for(2, WAIT).await;
    http.wait_for(1, WAIT).await;
    assert_eq!(attempts(&app, &app_id, &secure, 1).await[0]["responseStatusCode"], 200);
    assert_eq!(attempts(&app, &app_id, &plain, 1).await[0]["responseStatusCode"], 200);

    let seen = proxy.seen();
    let https_host = https.url.trim_start_matches("https://").trim_end_matches("/hook");
    assert!(
        seen.iter().any(|p| p.method == "CONNECT" && p.target == https_host),
        "the check and the delivery tunnel through the proxy: {seen:?}"
    );
    assert!(
        seen.iter().any(|p| p.method == "POST" && p.target == http.url),
        "an http delivery goes to the proxy in absolute form: {seen:?}"
    );
    let credentials = format!("Basic {}", base64_of("herald:s3cret"));
    assert!(
        seen.iter()
            .all(|p| p.proxy_authorization.as_deref() == Some(credentials.as_str())),
        "{seen:?}"
    );
    assert_eq!(https.received()[0].method, "HEAD", "the endpoint check came first");
}

fn base64_of(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

async fn a_refused_target_stays_refused_through_the_proxy(backend: Backend) {
    let proxy = ForwardProxy::start().await;
    let receiver = Receiver::start().await;
    let port = receiver.url.rsplit(':').next().unwrap().to_owned();
    let name = own_host_name().await;
    let app = spawn_app_with(&backend, |s| {
        s.outbound_proxy = Some(proxy.url.clone());
        s.allowed_target_networks = None;
        s.retry_schedule = Some(String::new());
    })
    .await;
    let app_id = app.create_app("Acme").await;
    // A name passes when saved; what it resolves to is judged before sending.
    let ep = app
        .create_endpoint(&app_id, &format!("http://{name}:{port}"), json!({}))
        .await;
    app.publish(&app_id, "ticket.created", json!({"id": 1})).await;
    let refused = attempts(&app, &app_id, &ep, 1).await;
    let text = response(&refused[0]);
    assert!(text.starts_with("not sent:") && text.contains("refused"), "{text}");
    // A literal address is refused when saved, as without a proxy.
    let literal = app
        .post(&format!("/api/v1/app/{app_id}/endpoint"), json!({"url": receiver.url}))
        .await;
    assert_eq!(literal.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(proxy.seen().is_empty(), "{:?}", proxy.seen());
    assert_eq!(receiver.count(), 0);
}

on_both_backends!(
    a_private_ca_is_trusted_only_through_the_ca_file,
    tls_verify_false_only_where_the_server_allows_it,
    an_unverified_endpoint_is_verified_again_once_the_server_stops_allowing_it,
    deliveries_and_checks_go_through_the_outbound_proxy,
    a_refused_target_stays_refused_through_the_proxy,
);
