//! `herald keys`: make a key, and drive a rotation of the secret key
//! through a running Herald's API (`/api/v1/keys`), one batch a request, so
//! it works on SQLite (one process per file) as on PostgreSQL, and stopping
//! it anywhere (Ctrl-C, kill -9) loses nothing: run it again to resume.

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::domain::sealing::SecretKey;

/// Pause before asking again while nodes switch to the new key.
const WAIT_STEP: Duration = Duration::from_millis(500);

/// Where the running Herald is, and who asks.
pub struct Server {
    pub url: String,
    pub token: String,
}

/// A fresh key, as a key file holds it.
pub fn generate() -> String {
    SecretKey::generate().to_base64()
}

fn client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .context("cannot build the HTTP client")
}

async fn call(server: &Server, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
    let answer = request
        .bearer_auth(&server.token)
        .send()
        .await
        .with_context(|| format!("cannot reach Herald at {}", server.url))?;
    let status = answer.status();
    let body: Value = answer.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let detail = body.get("detail").map_or_else(
            || body.to_string(),
            |d| d.as_str().map_or_else(|| d.to_string(), str::to_owned),
        );
        bail!("Herald refused ({status}): {detail}");
    }
    Ok(body)
}

/// `herald keys status`: the answer of `GET /api/v1/keys`, for people.
pub async fn status(server: &Server) -> anyhow::Result<String> {
    let client = client()?;
    let url = format!("{}/api/v1/keys", server.url.trim_end_matches('/'));
    let body = call(server, client.get(&url)).await?;
    let mut out = format!(
        "the database seals with key {}\nthis node holds: {}\nsecrets by key:",
        body["sealing"].as_str().unwrap_or_default(),
        list(&body["keys"])
    );
    if let Some(secrets) = body["secrets"].as_object() {
        for (key, n) in secrets {
            out.push_str(&format!(" {key}={n}"));
        }
    }
    out.push_str("\nnodes:");
    for node in body["nodes"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "\n  {} holds {}, seals with {}, seen {}{}",
            node["node"].as_str().unwrap_or_default(),
            list(&node["keys"]),
            node["sealing"].as_str().unwrap_or_default(),
            node["seenAt"].as_str().unwrap_or_default(),
            if node["live"] == Value::Bool(true) {
                ""
            } else {
                " (not live)"
            }
        ));
    }
    Ok(out)
}

fn list(values: &Value) -> String {
    values
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `herald keys rotate`: steps until every secret is under the new key,
/// printing a line per step.
pub async fn rotate(server: &Server, key: Option<String>, batch_size: u32) -> anyhow::Result<()> {
    let client = client()?;
    let url = format!("{}/api/v1/keys/rotate", server.url.trim_end_matches('/'));
    let mut body = json!({"batchSize": batch_size});
    if let Some(key) = key {
        body["key"] = Value::String(key);
    }
    let mut total = 0;
    loop {
        let step = call(server, client.post(&url).json(&body)).await?;
        let key = step["key"].as_str().unwrap_or_default().to_owned();
        // Later steps go on to the same key, whatever the node's file says first.
        body["key"] = Value::String(key.clone());
        let remaining = step["remaining"].as_u64().unwrap_or_default();
        match step["state"].as_str() {
            Some("waiting") => {
                println!(
                    "waiting for nodes to seal with key {key}: {}",
                    list(&step["waitingFor"])
                );
                tokio::time::sleep(WAIT_STEP).await;
            }
            Some("resealing") => {
                total += step["resealed"].as_u64().unwrap_or_default();
                println!("resealed {total}, {remaining} remaining under other keys (key {key})");
            }
            Some("done") => {
                total += step["resealed"].as_u64().unwrap_or_default();
                println!(
                    "done: every secret is sealed under key {key} ({total} resealed by this run); \
                     the old key may now be removed from every node's key file"
                );
                return Ok(());
            }
            other => bail!("unexpected answer from Herald: {other:?}"),
        }
    }
}
