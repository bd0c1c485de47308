//! Secrets at rest: what the database holds is sealed, opens only with the
//! node's key, and secrets stored before sealing existed are sealed at start.

mod common;

use std::time::Duration;

use common::{Backend, Receiver, TestApp, restart_with, spawn_app, spawn_app_with};
use herald::config::Config;
use serde_json::json;
use sqlx::{Connection, PgConnection, SqliteConnection};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Runs `sql` on the test's database over a plain connection, beside
/// Herald; answers the first column of the first row, if any.
async fn raw_sql(backend: &Backend, app: &TestApp, sql: &str) -> Option<String> {
    match backend {
        Backend::Sqlite => {
            let url = format!("sqlite://{}", app.data.path().join("herald.db").display());
            let mut db = SqliteConnection::connect(&url).await.expect("a direct connection");
            sqlx::query_scalar(sql)
                .fetch_optional(&mut db)
                .await
                .expect("the query runs")
        }
        Backend::Postgres(url) => {
            let mut db = PgConnection::connect(url).await.expect("a direct connection");
            sqlx::query_scalar(sql)
                .fetch_optional(&mut db)
                .await
                .expect("the query runs")
        }
    }
}

async fn stored_secret(backend: &Backend, app: &TestApp, endpoint: &str) -> String {
    let sql = format!("SELECT secret FROM endpoints WHERE id = '{endpoint}'");
    raw_sql(backend, app, &sql).await.expect("the endpoint row")
}

/// Publishes one message and checks its signature with `secret`.
async fn delivered_signed_with(app: &TestApp, receiver: &Receiver, app_id: &str, secret: &str) {
    let before = receiver.count();
    app.publish(app_id, "ticket.created", json!({"n": before})).await;
    let got = receiver.wait_for(before + 1, Duration::from_secs(10)).await;
    let last = got.last().expect("a delivery");
    let valid = common::signature_entries_valid(
        secret,
        last.header("webhook-id"),
        last.header("webhook-timestamp"),
        &last.body,
        last.header("webhook-signature"),
    );
    assert!(valid.iter().any(|v| *v), "signed with the endpoint's secret");
}

async fn secrets_are_sealed_in_the_database(backend: Backend) {
    let app = spawn_app(&backend).await;
    let receiver = Receiver::start().await;
    let app_id = app.create_app("Acme").await;
    let ep = app
        .create_endpoint(&app_id, &receiver.url, json!({"secret": SECRET}))
        .await;
    let ep_id = ep["id"].as_str().unwrap().to_owned();
    let stored = stored_secret(&backend, &app, &ep_id).await;
    assert!(stored.starts_with("sealed:v1:"), "{stored}");
    assert!(!stored.contains(&SECRET[6..]), "the secret is not in the row");
    let grant_key = raw_sql(
        &backend,
        &app,
        "SELECT value FROM settings WHERE name = 'grant_signing_key'",
    )
    .await
    .unwrap();
    assert!(grant_key.starts_with("sealed:v1:"), "{grant_key}");
    // The API still shows it, and deliveries are signed with it.
    assert_eq!(app.secret(&app_id, &ep_id).await, SECRET);
    delivered_signed_with(&app, &receiver, &app_id, SECRET).await;
    // A sealed secret copied onto another endpoint does not open there.
    let other = app.create_endpoint(&app_id, &receiver.url, json!({})).await;
    let other_id = other["id"].as_str().unwrap();
    let copy = format!("UPDATE endpoints SET secret = '{stored}' WHERE id = '{other_id}' RETURNING id");
    raw_sql(&backend, &app, &copy).await;
    let moved = app
        .get(&format!("/api/v1/app/{app_id}/endpoint/{other_id}/secret"))
        .await;
    assert_eq!(moved.status, 500, "{}", moved.body);
}

async fn a_node_with_another_key_is_refused(backend: Backend) {
    let app = spawn_app(&backend).await;
    let app_id = app.create_app("Acme").await;
    app.create_endpoint(&app_id, "http://127.0.0.1:9/", json!({"secret": SECRET}))
        .await;
    let data = app.stop().await;
    let mut settings = common::test_settings(&backend, data.path());
    settings.secret_key = Some(herald::domain::sealing::SecretKey::generate().to_base64());
    let config = Config::load(&settings, None).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refused = herald::run(listener, config, Default::default())
        .await
        .expect_err("started with the wrong key");
    assert!(
        refused
            .to_string()
            .contains("not the key this database's secrets were sealed with"),
        "{refused}"
    );
    // With its own key it starts and the secret reads back.
    let again = restart_with(&backend, data, |_| {}).await;
    let eps = again.get(&format!("/api/v1/app/{app_id}/endpoint")).await;
    let ep_id = eps.body["data"][0]["id"].as_str().unwrap();
    assert_eq!(again.secret(&app_id, ep_id).await, SECRET);
}

async fn secrets_stored_in_the_clear_are_sealed_at_start(backend: Backend) {
    let app = spawn_app(&backend).await;
    let receiver = Receiver::start().await;
    let app_id = app.create_app("Acme").await;
    let ep = app.create_endpoint(&app_id, &receiver.url, json!({})).await;
    let ep_id = ep["id"].as_str().unwrap().to_owned();
    // As a database written before sealing existed holds it.
    let plain = format!("UPDATE endpoints SET secret = '{SECRET}' WHERE id = '{ep_id}' RETURNING id");
    raw_sql(&backend, &app, &plain).await;
    let data = app.stop().await;
    let app = restart_with(&backend, data, |_| {}).await;
    // Herald answers once it has opened (and sealed) the store.
    assert_eq!(app.get("/health").await.status, 200);
    let stored = stored_secret(&backend, &app, &ep_id).await;
    assert!(stored.starts_with("sealed:v1:"), "sealed at start: {stored}");
    assert_eq!(app.secret(&app_id, &ep_id).await, SECRET);
    delivered_signed_with(&app, &receiver, &app_id, SECRET).await;
}

on_both_backends!(
    secrets_are_sealed_in_the_database,
    a_node_with_another_key_is_refused,
    secrets_stored_in_the_clear_are_sealed_at_start,
);

#[tokio::test]
async fn without_a_key_herald_makes_one_only_its_owner_can_read() {
    let app = spawn_app_with(&Backend::Sqlite, |_| {}).await;
    assert_eq!(app.get("/health").await.status, 200);
    let file = app.data.path().join("secret.key");
    let text = std::fs::read_to_string(&file).expect("a key file beside the database");
    assert!(herald::domain::sealing::SecretKey::parse(&text).is_ok());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    // A key given in the environment must be a real one.
    let settings = herald::config::Settings {
        secret_key: Some("too-short".into()),
        ..Default::default()
    };
    let err = Config::load(&settings, None).unwrap_err().to_string();
    assert!(err.starts_with("HERALD_SECRET_KEY: must be 32 bytes"), "{err}");
}
