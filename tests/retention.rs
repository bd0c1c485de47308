//! History retention, walked as an operator would see it: old messages go
//! with their deliveries and attempts once nothing is left to send, an
//! application may keep its history for less time than the server, and the
//! window is told where operators look (`/health`, `/metrics`). Days pass on
//! tokio's paused time, never slept.

mod common;

use std::time::Duration;

use common::{Backend, Receiver, TestApp, spawn_app_on_clock, spawn_app_with};
use herald::domain::clock::Clock;
use reqwest::StatusCode;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(15);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// Moves Herald's clock (and every timer) on by `by`, then lets time run again.
async fn pass(by: Duration) {
    tokio::time::pause();
    tokio::time::advance(by).await;
    tokio::time::resume();
}

fn msg_path(app: &str, msg: &Value) -> String {
    format!("/api/v1/app/{app}/msg/{}", msg["id"].as_str().unwrap())
}

/// Waits until the message answers 404, as an unknown id does.
async fn wait_until_gone(app: &TestApp, path: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let status = app.get(path).await.status;
        if status == StatusCode::NOT_FOUND {
            return;
        }
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(tokio::time::Instant::now() < deadline, "{path} was never removed");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

fn time(v: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("a time: {v}"))).unwrap()
}

/// One sample of `/metrics`, by its full name with labels.
async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = app.metrics_text().await;
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("{name} not in:\n{text}"))
        .parse()
        .unwrap()
}

async fn old_history_goes_once_nothing_is_left_to_send(backend: Backend) {
    let clock = Clock::following_tokio(chrono::Utc::now());
    let app = spawn_app_on_clock(&backend, clock, |s| {
        s.history_retention = Some("3d".into());
        s.payload_retention = Some("1d".into());
        s.retry_schedule = Some("1d,1d,1d,1d".into());
        s.cleanup_interval = Some("100ms".into());
    })
    .await;
    let health = app.get("/health").await.body;
    assert_eq!(health["historyRetention"], "3d", "{health}");

    let healthy = Receiver::start().await;
    let kept = app.create_app("Kept for the server's window").await;
    app.create_endpoint(&kept, &healthy.url, json!({})).await;
    let short = app
        .post(
            "/api/v1/app",
            json!({"name": "Kept one day", "historyRetentionDays": 1}),
        )
        .await;
    assert_eq!(short.status, StatusCode::CREATED, "{}", short.body);
    assert_eq!(short.body["historyRetentionDays"], 1);
    let short = short.body["id"].as_str().unwrap().to_owned();
    app.create_endpoint(&short, &healthy.url, json!({})).await;
    // Fails three times, then takes it: the last try comes after the window.
    let flaky_receiver = Receiver::scripted(&[500, 500, 500]).await;
    let flaky = app.create_app("Retrying").await;
    app.create_endpoint(&flaky, &flaky_receiver.url, json!({})).await;

    let delivered = app.publish(&kept, "ticket.created", json!({"id": 1})).await;
    let short_lived = app.publish(&short, "ticket.created", json!({"id": 2})).await;
    let retrying = app.publish(&flaky, "ticket.created", json!({"id": 3})).await;
    assert_eq!(healthy.wait_for(2, WAIT).await.len(), 2);
    let retrying_attempts = format!("/api/v1/app/{flaky}/attempt/msg/{}", retrying["id"].as_str().unwrap());
    app.wait_for_attempts(&retrying_attempts, |a| a.len() == 1).await;

    // A day and a bit (retries wait up to 10% longer): the one-day
    // application's message goes; the server's window keeps the rest.
    pass(DAY + 3 * HOUR).await;
    wait_until_gone(&app, &msg_path(&short, &short_lived)).await;
    // Its second try is over before time moves again, so no lease ends mid-flight.
    app.wait_for_attempts(&retrying_attempts, |a| a.len() == 2).await;
    assert_eq!(app.get(&msg_path(&kept, &delivered)).await.status, StatusCode::OK);
    let health = app.get("/health").await.body;
    assert_eq!(
        time(&health["oldestRecord"]),
        time(&delivered["timestamp"]),
        "the oldest kept: {health}"
    );

    // Past three days: the delivered message goes with its attempts; the
    // one still retrying stays.
    pass(2 * DAY).await;
    let gone = msg_path(&kept, &delivered);
    wait_until_gone(&app, &gone).await;
    let attempts = app
        .get(&format!(
            "/api/v1/app/{kept}/attempt/msg/{}",
            delivered["id"].as_str().unwrap()
        ))
        .await;
    assert!(
        attempts.status == StatusCode::NOT_FOUND || ids(&attempts.body).is_empty(),
        "{}",
        attempts.body
    );
    let list = app.get(&format!("/api/v1/app/{kept}/msg")).await.body;
    assert!(ids(&list).is_empty(), "the list simply ends: {list}");
    assert_eq!(list["done"], true, "{list}");
    assert_eq!(
        app.get(&msg_path(&flaky, &retrying)).await.status,
        StatusCode::OK,
        "still being delivered"
    );
    app.wait_for_attempts(&retrying_attempts, |a| a.len() == 3).await;

    // Its last retry succeeds: then it goes at the next sweep.
    pass(2 * DAY).await;
    assert_eq!(flaky_receiver.wait_for(4, WAIT).await.len(), 4);
    wait_until_gone(&app, &msg_path(&flaky, &retrying)).await;
    let health = app.get("/health").await.body;
    assert!(health.get("oldestRecord").is_none(), "nothing is kept: {health}");

    let removed = |table: &str| format!("herald_history_removed_rows_total{{table=\"{table}\"}}");
    assert_eq!(metric(&app, &removed("messages")).await, 3.0);
    assert_eq!(metric(&app, &removed("deliveries")).await, 3.0);
    assert_eq!(metric(&app, &removed("attempts")).await, 6.0);
    assert_eq!(metric(&app, "herald_oldest_message_age_seconds").await, 0.0);
}

/// Pausing tokio's time needs the single-threaded runtime.
mod paused_time {
    use super::*;

    #[tokio::test]
    async fn sqlite() {
        old_history_goes_once_nothing_is_left_to_send(Backend::Sqlite).await;
    }

    #[tokio::test]
    async fn postgres() {
        if let Some(backend) = Backend::postgres().await {
            old_history_goes_once_nothing_is_left_to_send(backend.clone()).await;
            if let Backend::Postgres(url) = backend {
                common::pg::drop_database(&url).await;
            }
        }
    }
}

/// An application may shorten the server's window, never lengthen it.
async fn an_application_window_longer_than_the_servers_is_refused(backend: Backend) {
    let app = spawn_app_with(&backend, |s| {
        s.history_retention = Some("30d".into());
        s.payload_retention = Some("7d".into());
    })
    .await;
    let refused = app
        .post("/api/v1/app", json!({"name": "Acme", "historyRetentionDays": 31}))
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.body);
    assert_eq!(
        refused.body["detail"][0]["loc"],
        json!(["body", "historyRetentionDays"])
    );
    let msg = refused.body["detail"][0]["msg"].as_str().unwrap();
    assert!(msg.contains("30"), "{msg}");

    let acme = app.create_app("Acme").await;
    let path = format!("/api/v1/app/{acme}");
    let refused = app.patch(&path, json!({"historyRetentionDays": 0})).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.body);
    assert_eq!(
        refused.body["detail"][0]["loc"],
        json!(["body", "historyRetentionDays"])
    );
    let shortened = app.patch(&path, json!({"historyRetentionDays": 30})).await;
    assert_eq!(shortened.status, StatusCode::OK, "{}", shortened.body);
    assert_eq!(app.get(&path).await.body["historyRetentionDays"], 30);
    let cleared = app.patch(&path, json!({"historyRetentionDays": null})).await;
    assert_eq!(cleared.body["historyRetentionDays"], Value::Null, "{}", cleared.body);
    assert_eq!(app.get("/health").await.body["historyRetention"], "30d");
}

on_both_backends!(an_application_window_longer_than_the_servers_is_refused);

/// Payloads are part of the message: keeping them longer than the message
/// is refused at start, with both settings named.
#[test]
fn payload_retention_longer_than_the_history_is_refused_at_start() {
    let mut settings = common::test_settings(&Backend::Sqlite, std::path::Path::new("/tmp/unused"));
    settings.payload_retention = Some("60d".into());
    settings.history_retention = Some("30d".into());
    let error = herald::Config::load(&settings, None).expect_err("refused").to_string();
    assert!(error.contains("HERALD_PAYLOAD_RETENTION"), "{error}");
    assert!(error.contains("HERALD_HISTORY_RETENTION"), "{error}");

    settings.payload_retention = Some("30d".into());
    assert!(herald::Config::load(&settings, None).is_ok(), "equal windows are fine");
}

/// A new SQLite file is made to give pages freed by the sweep back to the
/// file system (the sweep runs `PRAGMA incremental_vacuum` after each batch).
#[tokio::test]
async fn a_new_sqlite_file_shrinks_after_the_sweep() {
    use sqlx::Connection;
    let app = common::spawn_app(&Backend::Sqlite).await;
    // Answering means the file is made and migrated.
    app.create_app("Acme").await;
    let url = format!("sqlite://{}", app.data.path().join("herald.db").display());
    let mut db = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("a direct connection");
    let mode: i64 = sqlx::query_scalar("PRAGMA auto_vacuum")
        .fetch_one(&mut db)
        .await
        .expect("the pragma answers");
    assert_eq!(mode, 2, "INCREMENTAL");
}
