//! Secrets at rest: what the database holds is sealed, opens only with the
//! node's key, and secrets stored before sealing existed are sealed at start.

mod common;

use std::time::Duration;

use common::{Backend, Receiver, TestApp, restart_with, spawn_app, spawn_app_with};
use herald::config::{Config, Settings};
use herald::domain::sealing::SecretKey;
use serde_json::{Value, json};
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

/// A key file holding `keys`, one a line.
fn write_keys(path: &std::path::Path, keys: &[&SecretKey]) {
    let text: String = keys.iter().map(|k| format!("{}\n", k.to_base64())).collect();
    std::fs::write(path, text).expect("write the key file");
}

/// Settings of a node whose keys are in `file`, read again every 100 ms.
fn keyed(file: &std::path::Path) -> impl Fn(&mut Settings) + Clone {
    let file = file.display().to_string();
    move |s: &mut Settings| {
        s.secret_key = None;
        s.secret_key_file = Some(file.clone());
        s.key_reload_interval = Some("100ms".into());
    }
}

/// Waits until every live node reports holding exactly `ids`.
async fn nodes_hold(app: &TestApp, ids: &[String]) -> Value {
    app.wait_until("/api/v1/keys", |v| {
        let live: Vec<&Value> = v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["live"] == true)
            .collect();
        !live.is_empty() && live.iter().all(|n| n["keys"] == json!(ids))
    })
    .await
}

fn rotate_command(app: &TestApp) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_herald"));
    cmd.args(["keys", "rotate", "--batch-size", "1", "--url", &app.base])
        .env("HERALD_ADMIN_TOKEN", common::TOKEN)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    cmd
}

/// Starts a node expecting it to refuse; answers why.
async fn refused_start(backend: &Backend, data: &std::path::Path, adjust: impl Fn(&mut Settings)) -> String {
    let mut settings = common::test_settings(backend, data);
    adjust(&mut settings);
    let config = Config::load(&settings, None).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    herald::run(listener, config, Default::default())
        .await
        .expect_err("the node is refused")
        .to_string()
}

async fn the_secret_key_rotates_while_herald_runs(backend: Backend) {
    const ENDPOINTS: usize = 120;
    let (old, new) = (SecretKey::generate(), SecretKey::generate());
    let keys = tempfile::tempdir().unwrap();
    let file = keys.path().join("secret.key");
    write_keys(&file, &[&old]);
    let app = spawn_app_with(&backend, keyed(&file)).await;
    let receiver = Receiver::start().await;
    let app_id = app.create_app("Acme").await;
    let ep = app
        .create_endpoint(&app_id, &receiver.url, json!({"secret": SECRET}))
        .await;
    let ep_id = ep["id"].as_str().unwrap().to_owned();
    for _ in 1..ENDPOINTS {
        app.create_endpoint(&app_id, "http://127.0.0.1:9/", json!({"filterTypes": ["never.sent"]}))
            .await;
    }
    delivered_signed_with(&app, &receiver, &app_id, SECRET).await;
    nodes_hold(&app, &[old.id()]).await;

    // On PostgreSQL a second node, with its own key file, shares the database.
    let second_file = keys.path().join("second.key");
    write_keys(&second_file, &[&old]);
    let second = match backend {
        Backend::Postgres(_) => Some(spawn_app_with(&backend, keyed(&second_file)).await),
        Backend::Sqlite => None,
    };

    // The new key goes first in the file; the old one stays until the end.
    write_keys(&file, &[&new, &old]);
    if second.is_some() {
        // Refused while a node lacks the new key.
        app.wait_until("/api/v1/keys", |v| {
            let live = v["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|n| n["live"] == true)
                .count();
            v["keys"] == json!([new.id(), old.id()]) && live == 2
        })
        .await;
        let out = tokio::process::Command::from(rotate_command(&app))
            .output()
            .await
            .unwrap();
        assert!(!out.status.success());
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            said.contains(&format!("not every node holds key {} yet", new.id())),
            "{said}"
        );
        write_keys(&second_file, &[&new, &old]);
    }
    nodes_hold(&app, &[new.id(), old.id()]).await;

    // Stopped with kill -9 part way: secrets read throughout.
    let mut rotation = rotate_command(&app).spawn().unwrap();
    let stdout = rotation.stdout.take().unwrap();
    let part_way = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let done: usize = line
                .strip_prefix("resealed ")
                .and_then(|rest| rest.split(',').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            if done >= 20 {
                return line;
            }
        }
        panic!("the rotation ended before it was stopped");
    });
    let mut reads = 0;
    while !part_way.is_finished() {
        assert_eq!(app.secret(&app_id, &ep_id).await, SECRET);
        reads += 1;
    }
    rotation.kill().unwrap();
    rotation.wait().unwrap();
    let line = part_way.await.unwrap();
    assert!(reads > 0, "the secret was read during the rotation");
    let status = app.get("/api/v1/keys").await.body;
    assert_eq!(status["sealing"], new.id(), "{status}");
    let (under_new, under_old) = (
        status["secrets"][new.id()].as_u64().unwrap_or(0),
        status["secrets"][old.id()].as_u64().unwrap_or(0),
    );
    assert!(under_new >= 20 && under_old > 0, "stopped part way ({line}): {status}");
    common::report(&format!(
        "rotation killed with {under_new} of {ENDPOINTS} resealed; the secret was read {reads} times meanwhile"
    ));
    assert_eq!(app.secret(&app_id, &ep_id).await, SECRET);
    delivered_signed_with(&app, &receiver, &app_id, SECRET).await;

    // A node without the old key is refused while secrets are still under it.
    let data = app.stop().await;
    let only_new = keys.path().join("only-new.key");
    write_keys(&only_new, &[&new]);
    let refused = refused_start(&backend, data.path(), keyed(&only_new)).await;
    assert!(
        refused.contains(&format!(
            "endpoint secrets are sealed under key {}, which this node does not hold",
            old.id()
        )),
        "{refused}"
    );
    let app = restart_with(&backend, data, keyed(&file)).await;

    // Run again, it resumes and completes.
    let out = tokio::process::Command::from(rotate_command(&app))
        .output()
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        said.contains(&format!("done: every secret is sealed under key {}", new.id())),
        "{said}"
    );
    let status = app.get("/api/v1/keys").await.body;
    let mut all_new = serde_json::Map::new();
    all_new.insert(new.id(), json!(ENDPOINTS));
    assert_eq!(status["secrets"], Value::Object(all_new), "{status}");
    let stored = stored_secret(&backend, &app, &ep_id).await;
    assert!(stored.starts_with(&format!("sealed:v2:{}:", new.id())), "{stored}");

    // The old key goes; Herald works on, and after a restart.
    write_keys(&file, &[&new]);
    write_keys(&second_file, &[&new]);
    nodes_hold(&app, &[new.id()]).await;
    assert_eq!(app.secret(&app_id, &ep_id).await, SECRET);
    delivered_signed_with(&app, &receiver, &app_id, SECRET).await;
    if let Some(second) = second {
        assert_eq!(second.secret(&app_id, &ep_id).await, SECRET);
        second.stop().await;
    }
    let data = app.stop().await;
    let app = restart_with(&backend, data, keyed(&file)).await;
    assert_eq!(app.secret(&app_id, &ep_id).await, SECRET);
    delivered_signed_with(&app, &receiver, &app_id, SECRET).await;
    // With only the old key, a node is refused, saying which key it lacks.
    let data = app.stop().await;
    let only_old = keys.path().join("only-old.key");
    write_keys(&only_old, &[&old]);
    let refused = refused_start(&backend, data.path(), keyed(&only_old)).await;
    assert!(
        refused.contains(&format!("the database seals with key {}", new.id())),
        "{refused}"
    );
}

on_both_backends!(
    secrets_are_sealed_in_the_database,
    a_node_with_another_key_is_refused,
    secrets_stored_in_the_clear_are_sealed_at_start,
    the_secret_key_rotates_while_herald_runs,
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
