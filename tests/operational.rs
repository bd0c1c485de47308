//! Nothing Herald tells its operators is lost: an endpoint change and its
//! operational webhook commit together, so a crash right after the commit
//! still delivers the event; operator emails wait in the database while the
//! SMTP server is down, and go out exactly once when it is back, across
//! restarts and (on PostgreSQL) with several nodes sending.

mod common;

use std::time::Duration;

use common::process::Node;
use common::receiver::Reply;
use common::smtp;
use common::{Backend, Receiver, TOKEN, spawn_app_with};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Longer than an email's lease (30 s): a node killed while holding one
/// leaves it to be taken over when the lease ends.
const WAIT: Duration = Duration::from_secs(45);

/// The database URL a node process of this test uses.
fn database_url(backend: &Backend, data: &std::path::Path) -> String {
    backend.database_url(data)
}

async fn get(http: &reqwest::Client, url: String) -> Value {
    let resp = http.get(url).bearer_auth(TOKEN).send().await.expect("request sent");
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json().await.expect("JSON")
}

/// Polls `url` until `done` holds for its answer.
async fn wait_for(http: &reqwest::Client, url: String, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let body = get(http, url.clone()).await;
        if done(&body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not in time; last answer: {body:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The operational webhooks a receiver got, as JSON.
fn events(ops: &Receiver) -> Vec<Value> {
    ops.received()
        .iter()
        .filter_map(|r| serde_json::from_slice(&r.body).ok())
        .collect()
}

async fn an_endpoint_change_and_its_event_survive_a_crash_right_after_the_commit(backend: Backend) {
    let data = tempfile::tempdir().unwrap();
    let db = database_url(&backend, data.path());
    let ops = Receiver::start().await;
    let hook = [("HERALD_OPERATIONAL_WEBHOOK_URL", ops.url.as_str())];
    let crashing = [hook[0], ("HERALD_FAILPOINT", "endpoint-committed")];
    let mut herald = Node::start(&db, &crashing);
    let http = reqwest::Client::new();
    let app = http
        .post(format!("{}/api/v1/app", herald.base))
        .bearer_auth(TOKEN)
        .json(&json!({"name": "Acme"}))
        .send()
        .await
        .unwrap();
    assert_eq!(app.status(), StatusCode::CREATED);
    let app_id = app.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();

    // The process dies right after the endpoint's transaction commits:
    // the caller never gets an answer.
    let receiver = Receiver::start().await;
    let created = http
        .post(format!("{}/api/v1/app/{app_id}/endpoint", herald.base))
        .bearer_auth(TOKEN)
        .json(&json!({"url": receiver.url, "uid": "crashed"}))
        .send()
        .await;
    assert!(
        created.is_err(),
        "the failpoint stops the process before it answers: {created:?}"
    );
    let status = tokio::task::spawn_blocking(move || {
        let status = herald.child.wait().expect("reaped");
        (herald, status)
    })
    .await
    .unwrap()
    .1;
    assert!(!status.success(), "the process was aborted: {status}");

    // Restarted without the failpoint, it delivers the event of the change.
    let restarted = Node::start(&db, &hook);
    let list = get(&http, format!("{}/api/v1/app/{app_id}/endpoint", restarted.base)).await;
    assert_eq!(
        list["data"].as_array().map(Vec::len),
        Some(1),
        "the change committed: {list}"
    );
    let ep_id = list["data"][0]["id"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + WAIT;
    let created = loop {
        if let Some(e) = events(&ops).into_iter().find(|e| e["type"] == "endpoint.created") {
            break e;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "endpoint.created never arrived: {:#?}",
            events(&ops)
        );
        ops.next_arrival(Duration::from_millis(200)).await;
    };
    assert_eq!(created["data"]["endpointId"], ep_id.as_str());
    assert_eq!(created["data"]["endpointUid"], "crashed");
    assert_eq!(created["data"]["appId"], app_id.as_str());
    drop(restarted);
    if let Backend::Postgres(url) = &backend {
        common::pg::drop_database(url).await;
    }
}

/// The Prometheus sample `name` (with its labels) reads `value`.
fn has_sample(metrics: &str, name: &str, value: &str) -> bool {
    metrics
        .lines()
        .any(|l| l.strip_prefix(name).map(str::trim) == Some(value))
}

async fn an_email_waits_out_a_smtp_outage_and_arrives_once(backend: Backend) {
    let smtp_at = smtp::closed_port();
    let failing = Receiver::answering(|_| Reply::status(500)).await;
    let app = spawn_app_with(&backend, |s| {
        s.retry_schedule = Some("20ms".into());
        s.smtp_url = Some(format!("smtp://{smtp_at}"));
        s.notify_email = Some("oncall@example.test".into());
        s.email_retry_schedule = Some("200ms".into());
    })
    .await;
    let app_id = app.create_app("Acme").await;
    let ep = app.create_endpoint(&app_id, &failing.url, json!({})).await;
    app.publish(&app_id, "ticket.created", json!({"n": 1})).await;

    // The endpoint fails; the email about it is queued and tried while the
    // SMTP server is down, several times.
    let outbox = app
        .wait_until("/api/v1/operator-email", |l| {
            l["data"][0]["tries"].as_u64().unwrap_or(0) >= 3
        })
        .await;
    let email = &outbox["data"][0];
    assert_eq!(outbox["data"].as_array().map(Vec::len), Some(1), "{outbox}");
    assert_eq!(email["state"], "pending", "{email}");
    assert!(
        email["lastError"].as_str().unwrap_or_default().contains("cannot send"),
        "{email}"
    );
    assert!(
        email["subject"].as_str().unwrap_or_default().contains("is failing"),
        "{email}"
    );
    let pending = app.get("/health").await.body;
    assert_eq!(pending["operatorEmail"]["pending"], 1, "{pending}");

    // Back up: it arrives, once.
    let sink = smtp::start_at(smtp_at).await;
    let mails = sink.wait_for(1).await;
    assert!(mails[0].body().contains(ep["id"].as_str().unwrap()), "{:?}", mails[0]);
    let sent = app
        .wait_until("/api/v1/operator-email", |l| l["data"][0]["state"] == "sent")
        .await;
    insta::assert_json_snapshot!("operator_email_out", sent["data"][0], {
        ".id" => "[email id]", ".subject" => "[subject]", ".body" => "[body]", ".tries" => "[tries]",
        ".lastError" => "[error]", ".createdAt" => "[time]", ".sentAt" => "[time]"
    });
    assert!(sent["data"][0]["sentAt"].is_string(), "{sent}");
    assert!(sent["data"][0]["nextAttemptAt"].is_null(), "{sent}");
    assert_eq!(sink.mails().len(), 1, "sent exactly once: {:#?}", sink.mails());

    let health = app.get("/health").await.body;
    assert_eq!(
        health["operatorEmail"],
        json!({"pending": 0, "sent": 1, "failed": 0}),
        "{health}"
    );
    let metrics = app.metrics_text().await;
    assert!(
        has_sample(&metrics, "herald_operator_emails{state=\"sent\"}", "1"),
        "{metrics}"
    );
    assert!(
        has_sample(&metrics, "herald_operator_emails{state=\"pending\"}", "0"),
        "{metrics}"
    );
    assert!(
        has_sample(&metrics, "herald_operator_emails_sent_total", "1"),
        "{metrics}"
    );
    let errors = metrics
        .lines()
        .find_map(|l| l.strip_prefix("herald_operator_email_errors_total "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    assert!(errors >= 3, "{metrics}");

    // Filtered by state; a scoped token may not read the outbox.
    let only_failed = app.get("/api/v1/operator-email?state=failed").await.body;
    assert_eq!(only_failed["data"], json!([]), "{only_failed}");
    let bad = app.get("/api/v1/operator-email?state=lost").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    let token = app
        .post("/api/v1/auth/token", json!({"name": "acme", "appId": app_id}))
        .await;
    assert_eq!(token.status, StatusCode::CREATED, "{}", token.body);
    let refused = app
        .call_as(
            token.body["token"].as_str().unwrap(),
            reqwest::Method::GET,
            "/api/v1/operator-email",
            None,
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
}

async fn an_email_the_server_never_takes_is_given_up_as_failed(backend: Backend) {
    let smtp_at = smtp::closed_port();
    let failing = Receiver::answering(|_| Reply::status(500)).await;
    let app = spawn_app_with(&backend, |s| {
        s.retry_schedule = Some("20ms".into());
        s.smtp_url = Some(format!("smtp://{smtp_at}"));
        s.notify_email = Some("oncall@example.test".into());
        s.email_retry_schedule = Some("100ms".into());
        s.email_give_up_after = Some("1s".into());
    })
    .await;
    let app_id = app.create_app("Acme").await;
    app.create_endpoint(&app_id, &failing.url, json!({})).await;
    app.publish(&app_id, "ticket.created", json!({"n": 1})).await;
    let failed = app
        .wait_until("/api/v1/operator-email", |l| l["data"][0]["state"] == "failed")
        .await;
    assert!(failed["data"][0]["nextAttemptAt"].is_null(), "{failed}");
    assert!(failed["data"][0]["tries"].as_u64().unwrap_or(0) >= 2, "{failed}");
    let metrics = app.metrics_text().await;
    assert!(
        has_sample(&metrics, "herald_operator_emails{state=\"failed\"}", "1"),
        "{metrics}"
    );
    assert!(
        has_sample(&metrics, "herald_operator_emails_failed_total", "1"),
        "{metrics}"
    );
}

/// Waits until the operational receiver got an event of `kind`; answers it.
async fn event_of(ops: &Receiver, kind: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(e) = events(ops).into_iter().find(|e| e["type"] == kind) {
            return e;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{kind} never arrived: {:#?}",
            events(ops)
        );
        ops.next_arrival(Duration::from_millis(200)).await;
    }
}

async fn a_failed_repeated_check_disables_the_endpoint_and_says_so(backend: Backend) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let ops = Receiver::start().await;
    let sink = smtp::start().await;
    let healthy = Arc::new(AtomicBool::new(true));
    let flag = healthy.clone();
    let watched =
        Receiver::answering(move |_| Reply::status(if flag.load(Ordering::SeqCst) { 200 } else { 503 })).await;
    let toml = "[profiles.watched]\nverify = \"head\"\nreverify_every = \"1s\"\n";
    let app = common::spawn_app_with_file_and(&backend, toml, |s| {
        s.operational_webhook_url = Some(ops.url.clone());
        s.smtp_url = Some(sink.url());
        s.notify_email = Some("oncall@example.test".into());
    })
    .await;
    let app_id = app.create_app("Acme").await;
    let ep = app
        .create_endpoint(&app_id, &watched.url, json!({"profile": "watched"}))
        .await;
    let path = format!("/api/v1/app/{app_id}/endpoint/{}", ep["id"].as_str().unwrap());
    healthy.store(false, Ordering::SeqCst);
    app.wait_until(&path, |e| e["disabled"] == true).await;

    let disabled = event_of(&ops, "endpoint.disabled").await;
    assert_eq!(disabled["data"]["trigger"], "automatic", "{disabled}");
    assert_eq!(disabled["data"]["endpointId"], ep["id"], "{disabled}");
    assert!(
        disabled["data"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("repeated endpoint check failed"),
        "{disabled}"
    );
    let mails = sink.wait_for(1).await;
    assert!(
        mails[0].subject().unwrap_or_default().contains("disabled endpoint"),
        "{:?}",
        mails[0]
    );

    // A person switches it back on: endpoint.enabled.
    healthy.store(true, Ordering::SeqCst);
    let back = app.patch(&path, json!({"disabled": false})).await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.body);
    let enabled = event_of(&ops, "endpoint.enabled").await;
    assert_eq!(enabled["data"]["endpointId"], ep["id"], "{enabled}");
}

/// Publishes one message to a new application whose endpoint always fails:
/// its exhaustion queues one "is failing" email.
async fn make_an_endpoint_fail(http: &reqwest::Client, base: &str, failing: &Receiver, name: &str) {
    let app_id =
        common::create_app_and_endpoint_with(http, base, json!({"name": name}), json!({"url": failing.url})).await;
    let resp = http
        .post(format!("{base}/api/v1/app/{app_id}/msg"))
        .bearer_auth(TOKEN)
        .json(&json!({"eventType": "ticket.created", "payload": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
}

async fn a_pending_email_is_sent_once_across_a_kill_and_restart(backend: Backend) {
    let data = tempfile::tempdir().unwrap();
    let db = database_url(&backend, data.path());
    let smtp_at = smtp::closed_port();
    let smtp_url = format!("smtp://{smtp_at}");
    let env = [
        ("HERALD_RETRY_SCHEDULE", "20ms"),
        ("HERALD_SMTP_URL", smtp_url.as_str()),
        ("HERALD_NOTIFY_EMAIL", "oncall@example.test"),
        ("HERALD_EMAIL_RETRY_SCHEDULE", "200ms"),
    ];
    let failing = Receiver::answering(|_| Reply::status(500)).await;
    let http = reqwest::Client::new();
    let mut herald = Node::start(&db, &env);
    make_an_endpoint_fail(&http, &herald.base, &failing, "Acme").await;
    let outbox = |base: &str| format!("{base}/api/v1/operator-email");
    wait_for(&http, outbox(&herald.base), |l| {
        l["data"][0]["tries"].as_u64().unwrap_or(0) >= 2
    })
    .await;

    // Killed while the email is pending; the SMTP server comes back; the
    // node restarts (on PostgreSQL, two nodes, both sending).
    herald.kill_9();
    let sink = smtp::start_at(smtp_at).await;
    let nodes: Vec<Node> = match backend {
        Backend::Sqlite => vec![Node::start(&db, &env)],
        Backend::Postgres(_) => vec![Node::start(&db, &env), Node::start(&db, &env)],
    };
    let base = nodes[0].base.clone();
    wait_for(&http, outbox(&base), |l| l["data"][0]["state"] == "sent").await;
    sink.wait_for(1).await;

    // A later email going out shows the senders moved on: the first was
    // not sent again meanwhile.
    make_an_endpoint_fail(&http, &nodes[nodes.len() - 1].base, &failing, "Globex").await;
    let listed = wait_for(&http, outbox(&base), |l| {
        l["data"]
            .as_array()
            .is_some_and(|d| d.len() == 2 && d.iter().all(|e| e["state"] == "sent"))
    })
    .await;
    let mails = sink.wait_for(2).await;
    assert_eq!(mails.len(), 2, "each email once: {mails:#?}");
    let subjects: Vec<String> = mails.iter().filter_map(|m| m.subject()).collect();
    assert!(
        subjects[0].contains("Acme") && subjects[1].contains("Globex"),
        "{subjects:?}"
    );
    assert_eq!(
        listed["data"][1]["tries"].as_u64().map(|t| t >= 3),
        Some(true),
        "{listed}"
    );
    drop(nodes);
    if let Backend::Postgres(url) = &backend {
        common::pg::drop_database(url).await;
    }
}

mod sqlite {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_endpoint_change_and_its_event_survive_a_crash_right_after_the_commit() {
        super::an_endpoint_change_and_its_event_survive_a_crash_right_after_the_commit(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pending_email_is_sent_once_across_a_kill_and_restart() {
        super::a_pending_email_is_sent_once_across_a_kill_and_restart(Backend::Sqlite).await;
    }
}

mod postgres {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_endpoint_change_and_its_event_survive_a_crash_right_after_the_commit() {
        if let Some(backend) = Backend::postgres().await {
            super::an_endpoint_change_and_its_event_survive_a_crash_right_after_the_commit(backend).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pending_email_is_sent_once_across_a_kill_and_restart() {
        if let Some(backend) = Backend::postgres().await {
            super::a_pending_email_is_sent_once_across_a_kill_and_restart(backend).await;
        }
    }
}

mod in_process {
    use super::*;

    on_both_backends!(
        a_failed_repeated_check_disables_the_endpoint_and_says_so,
        an_email_waits_out_a_smtp_outage_and_arrives_once,
        an_email_the_server_never_takes_is_given_up_as_failed,
    );
}
