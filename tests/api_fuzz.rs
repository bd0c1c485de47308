//! schemathesis (pinned in tests/schemathesis/requirements.txt) generates
//! requests from the OpenAPI document Herald serves, valid and invalid, and
//! finds no answer that is a server error. Real ids are given for the path
//! parameters, so that requests reach past the 404s into each handler.
//!
//! The test makes its own virtualenv under target/ on first run (pip needs
//! the package registry once); later runs reuse it.

mod common;

use common::{Backend, TOKEN, spawn_app};
use serde_json::json;

on_both_backends!(generated_requests_find_no_server_error);

async fn generated_requests_find_no_server_error(backend: Backend) {
    let python = tokio::task::spawn_blocking(|| {
        common::python::venv_python("schemathesis-venv", "tests/schemathesis/requirements.txt")
    })
    .await
    .expect("venv");
    let app = spawn_app(&backend).await;
    app.post("/api/v1/app", json!({"name": "Acme", "uid": "acme"})).await;
    app.create_endpoint("acme", "http://127.0.0.1:9/hook", json!({"uid": "ep1"}))
        .await;
    app.post(
        "/api/v1/event-type",
        json!({"name": "ticket.created", "description": "A ticket"}),
    )
    .await;
    let msg = app.publish("acme", "ticket.created", json!({"ticketId": "T-1"})).await;
    // schemathesis keeps a cache in its working directory: a temporary one.
    let work = tempfile::tempdir().expect("work dir");
    let config = work.path().join("schemathesis.toml");
    let ids = format!(
        "[parameters]\n\"path.app_id\" = \"acme\"\n\"path.endpoint_id\" = \"ep1\"\n\"path.msg_id\" = \"{}\"\n\"path.name\" = \"ticket.created\"\n",
        msg["id"].as_str().expect("id")
    );
    std::fs::write(&config, ids).expect("write config");
    let schemathesis = python.with_file_name("schemathesis");
    let output = tokio::process::Command::new(schemathesis)
        .current_dir(work.path())
        .arg("--config-file")
        .arg(&config)
        .args(["run", &app.url("/api/v1/openapi.json")])
        .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
        .args([
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "25",
            "--seed",
            "1",
            // One worker, and the same cases every run: CI is no lottery.
            "--workers",
            "1",
            "--generation-deterministic",
        ])
        .output()
        .await
        .expect("schemathesis runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found a server error\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(|c: char| c.is_ascii_digit()) && l.contains(" generated"))
        .unwrap_or_default();
    let on = match backend {
        Backend::Sqlite => "SQLite",
        Backend::Postgres(_) => "PostgreSQL",
    };
    common::report(&format!("schemathesis on {on}: {summary}"));
}
