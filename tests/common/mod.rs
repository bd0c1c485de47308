//! The test harness: the real server on a random port, a real receiver on
//! loopback, and small helpers that make tests read like a user's story.
#![allow(dead_code)]

pub mod brokers;
pub mod browser;
pub mod node;
pub mod ordered;
pub mod pg;
pub mod process;
pub mod proxy;
pub mod python;
pub mod receiver;
pub mod records;
pub mod smtp;
pub mod tls;

use std::time::Duration;

use herald::config::{Config, Settings};
use herald::domain::clock::Clock;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[allow(unused_imports)]
pub use receiver::Receiver;

pub const TOKEN: &str = "test-admin-token-0123456789";

/// Prints past the test harness's capture, so a skip notice or a measured
/// figure shows in a plain `cargo test` run even when the test passes.
pub fn report(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Runs `install` into `dir` (a folder under target/) unless its stamp says
/// it was already done from `pinned` (the text of the files that pin what it
/// installs). Tests run as threads: one installs, others wanting the same
/// folder wait for it and reuse it.
pub fn installed_once(dir: &std::path::Path, pinned: &str, install: impl FnOnce()) {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex, PoisonError};
    static FOLDERS: Mutex<BTreeMap<std::path::PathBuf, Arc<Mutex<()>>>> = Mutex::new(BTreeMap::new());
    let folder = FOLDERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(dir.to_owned())
        .or_default()
        .clone();
    let _installing = folder.lock().unwrap_or_else(PoisonError::into_inner);
    let stamp = dir.join("requirements.installed");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(pinned) {
        return;
    }
    install();
    std::fs::write(&stamp, pinned).expect("stamp");
}

/// Where a test keeps its data. Every black-box test runs on both.
#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite,
    Postgres(String),
}

impl Backend {
    /// A PostgreSQL backend on a fresh database, or `None` when the test is skipped.
    pub async fn postgres() -> Option<Self> {
        pg::fresh_database().await.map(Self::Postgres)
    }

    pub fn database_url(&self, data: &std::path::Path) -> String {
        match self {
            Self::Sqlite => format!("sqlite://{}", data.join("herald.db").display()),
            Self::Postgres(url) => url.clone(),
        }
    }

    /// The secret key a test gives Herald. On SQLite the default key file
    /// (beside the database) is already the test's own; on PostgreSQL every
    /// server a test starts on its database must share one key, as the
    /// nodes of a cluster do.
    pub fn secret_key(&self) -> Option<String> {
        match self {
            Self::Sqlite => None,
            Self::Postgres(_) => Some(process::SECRET_KEY.to_owned()),
        }
    }
}

/// Runs each named `async fn(Backend)` as two tests, `sqlite::NAME` and `postgres::NAME`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(backend) = $crate::common::Backend::postgres().await {
                        super::$name(backend.clone()).await;
                        if let $crate::common::Backend::Postgres(url) = backend {
                            $crate::common::pg::drop_database(&url).await;
                        }
                    }
                }
            )*
        }
    };
}

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub data: tempfile::TempDir,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<()>>,
}

/// Settings every test starts from: loopback receivers allowed, fast retries.
pub fn test_settings(backend: &Backend, data: &std::path::Path) -> Settings {
    Settings {
        listen: Some("127.0.0.1:0".into()),
        database_url: Some(backend.database_url(data)),
        secret_key: backend.secret_key(),
        admin_token: Some(TOKEN.into()),
        retry_schedule: Some("100ms,200ms".into()),
        request_timeout: Some("2s".into()),
        allow_http: Some("true".into()),
        allowed_target_networks: Some("127.0.0.0/8".into()),
        shutdown_grace: Some("2s".into()),
        log: Some("warn".into()),
        // The server runs inside the test binary: templates render in
        // workers of the herald executable, as they do in production.
        template_worker: Some(env!("CARGO_BIN_EXE_herald").into()),
        ..Default::default()
    }
}

pub async fn spawn_app(backend: &Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// Starts Herald with the test settings, changed by `adjust`.
pub async fn spawn_app_with(backend: &Backend, adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let data = tempfile::tempdir().expect("temp dir");
    let mut settings = test_settings(backend, data.path());
    adjust(&mut settings);
    start(data, settings, None).await
}

/// Starts Herald again on the data of a stopped one (`TestApp::stop`).
pub async fn restart_with(backend: &Backend, data: tempfile::TempDir, adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = test_settings(backend, data.path());
    adjust(&mut settings);
    start(data, settings, None).await
}

/// Starts Herald with the test settings and a configuration file holding
/// `toml` (for what only the file can say, such as `[profiles.NAME]`).
pub async fn spawn_app_with_file(backend: &Backend, toml: &str) -> TestApp {
    spawn_app_with_file_and(backend, toml, |_| {}).await
}

/// A configuration file holding `toml`, and the test settings changed by
/// `adjust` (which, like flags, win over the file).
pub async fn spawn_app_with_file_and(backend: &Backend, toml: &str, adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let data = tempfile::tempdir().expect("temp dir");
    let mut settings = test_settings(backend, data.path());
    adjust(&mut settings);
    let file = data.path().join("herald.toml");
    std::fs::write(&file, toml).expect("write config file");
    start(data, settings, Some(file)).await
}

/// Starts Herald with the test settings on `clock` (for stories on tokio's
/// paused time).
pub async fn spawn_app_on_clock(backend: &Backend, clock: Clock, adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let data = tempfile::tempdir().expect("temp dir");
    let mut settings = test_settings(backend, data.path());
    adjust(&mut settings);
    start_on(data, settings, None, clock).await
}

async fn start(data: tempfile::TempDir, settings: Settings, file: Option<std::path::PathBuf>) -> TestApp {
    start_on(data, settings, file, Clock::system()).await
}

async fn start_on(
    data: tempfile::TempDir,
    settings: Settings,
    file: Option<std::path::PathBuf>,
    clock: Clock,
) -> TestApp {
    let config = Config::load(&settings, file.as_deref()).expect("valid test config");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let server = tokio::spawn(async move {
        herald::run_with_clock(listener, config, clock, token)
            .await
            .expect("server runs");
    });
    TestApp {
        base,
        http: reqwest::Client::new(),
        data,
        shutdown,
        server: Some(server),
    }
}

pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Answer {
        self.call_as(TOKEN, method, path, body).await
    }

    /// A request made with `token` instead of the admin token.
    pub async fn call_as(&self, token: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> Answer {
        let mut req = self.http.request(method, self.url(path)).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        answer(req.send().await.expect("request sent")).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Answer {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Answer {
        self.call(reqwest::Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    /// The Prometheus text of `/metrics` (it needs no token).
    pub async fn metrics_text(&self) -> String {
        let answer = self
            .http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics answered");
        answer.text().await.expect("metrics text")
    }

    /// Creates an application and answers its id.
    pub async fn create_app(&self, name: &str) -> String {
        let a = self.post("/api/v1/app", json!({"name": name})).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        a.body["id"].as_str().expect("id").to_owned()
    }

    /// Creates an endpoint with extra fields merged in; answers the EndpointOut.
    pub async fn create_endpoint(&self, app: &str, url: &str, extra: Value) -> Value {
        let mut body = json!({"url": url});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        let a = self.post(&format!("/api/v1/app/{app}/endpoint"), body).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        a.body
    }

    pub async fn secret(&self, app: &str, endpoint: &str) -> String {
        let a = self.get(&format!("/api/v1/app/{app}/endpoint/{endpoint}/secret")).await;
        a.body["key"].as_str().expect("key").to_owned()
    }

    /// Publishes a message; answers the MessageOut.
    pub async fn publish(&self, app: &str, event_type: &str, payload: Value) -> Value {
        let a = self
            .post(
                &format!("/api/v1/app/{app}/msg"),
                json!({"eventType": event_type, "payload": payload}),
            )
            .await;
        assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
        a.body
    }

    /// Polls `path` until `done` holds for its answer or the deadline passes.
    pub async fn wait_until(&self, path: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let body = self.get(path).await.body;
            if done(&body) {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "condition not met in time; last answer: {body:#}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Polls the attempt history until `done` holds or the deadline passes.
    pub async fn wait_for_attempts(&self, path: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let list = self.get(path).await.body["data"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if done(&list) {
                return list;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "condition not met in time; attempts: {list:#?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Stops the server as SIGTERM would, and waits for it.
    pub async fn stop(mut self) -> tempfile::TempDir {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server.await.expect("server task");
        }
        let data = tempfile::tempdir().expect("temp dir");
        std::mem::replace(&mut self.data, data)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn answer(resp: reqwest::Response) -> Answer {
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    Answer { status, body, headers }
}

/// Verifies a Standard Webhooks signature header independently of Herald's code.
pub fn signature_entries_valid(secret: &str, id: &str, ts: &str, body: &[u8], header: &str) -> Vec<bool> {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").expect("whsec_ prefix"))
        .expect("base64 secret");
    header
        .split(' ')
        .map(|entry| {
            let (version, sig) = entry.split_once(',').expect("entry has a comma");
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).expect("key");
            mac.update(format!("{id}.{ts}.").as_bytes());
            mac.update(body);
            let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
            version == "v1" && sig == expected
        })
        .collect()
}

/// Over plain HTTP (for nodes run as processes): an application with one
/// endpoint pointing at `receiver`. Answers the application id.
pub async fn create_app_and_endpoint(http: &reqwest::Client, base: &str, receiver: &Receiver) -> String {
    create_app_and_endpoint_with(http, base, json!({"name": "Acme"}), json!({"url": receiver.url})).await
}

/// As `create_app_and_endpoint`, with the application and endpoint bodies given.
pub async fn create_app_and_endpoint_with(http: &reqwest::Client, base: &str, app: Value, endpoint: Value) -> String {
    let app = http
        .post(format!("{base}/api/v1/app"))
        .bearer_auth(TOKEN)
        .json(&app)
        .send()
        .await
        .unwrap();
    assert_eq!(app.status(), StatusCode::CREATED);
    let app: Value = app.json().await.unwrap();
    let app_id = app["id"].as_str().unwrap().to_owned();
    let ep = http
        .post(format!("{base}/api/v1/app/{app_id}/endpoint"))
        .bearer_auth(TOKEN)
        .json(&endpoint)
        .send()
        .await
        .unwrap();
    assert_eq!(ep.status(), StatusCode::CREATED);
    app_id
}
