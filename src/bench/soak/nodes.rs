//! Herald nodes run by the soak: `herald serve` of this same binary, one
//! child process per node, each with its log in a file (every life of the
//! node appended to it) and its memory sampled from /proc.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::SoakError;
use crate::bench::server::memory_kib;

/// The key every node of one database shares.
const SECRET_KEY: &str = "aGVyYWxkLXNvYWstc2VjcmV0LWtleS0zMi1ieXRlcyE=";

/// One life of a node: from a start to the kill or stop that ended it.
#[derive(Debug, Clone, Serialize)]
pub struct Life {
    pub pid: u32,
    pub started_s: f64,
    pub ended_s: Option<f64>,
    /// (seconds since the soak started, RSS in KiB, the anonymous part of
    /// it in KiB): the rest is files mapped, SQLite's among them.
    pub rss: Vec<(f64, u64, u64)>,
}

pub struct Node {
    pub name: String,
    pub base: String,
    port: u16,
    env: Vec<(String, String)>,
    exe: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
    pub lives: Vec<Life>,
}

/// The soak's nodes, shared by the chaos loop, the publisher and the sampler.
pub type Nodes = Arc<Mutex<Vec<Node>>>;

/// A copy of this executable in the soak's directory, which every node
/// life runs: a rebuild during a long soak must not change the program
/// under test, nor leave restarts nothing to start.
pub fn node_program(work: &Path) -> Result<PathBuf, SoakError> {
    let copy = work.join("herald");
    std::fs::copy(std::env::current_exe()?, &copy)?;
    Ok(copy)
}

pub fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Settings every soak node runs with: short retries and leases so that a
/// crash is recovered from within seconds, and a small in-flight cap per
/// endpoint, which bounds the duplicates a crash can cause.
pub fn common_env(database_url: &str, token: &str, in_flight: usize, timeout: Duration) -> Vec<(String, String)> {
    let timeout_ms = timeout.as_millis();
    [
        ("HERALD_DATABASE_URL", database_url.to_owned()),
        ("HERALD_ADMIN_TOKEN", token.to_owned()),
        ("HERALD_SECRET_KEY", SECRET_KEY.to_owned()),
        ("HERALD_ALLOW_HTTP", "true".to_owned()),
        ("HERALD_ALLOWED_TARGET_NETWORKS", "127.0.0.0/8".to_owned()),
        ("HERALD_RETRY_SCHEDULE", "500ms,1s,2s,4s".to_owned()),
        ("HERALD_REQUEST_TIMEOUT", format!("{timeout_ms}ms")),
        ("HERALD_LEASE_DURATION", format!("{}ms", timeout_ms + 3000)),
        ("HERALD_MAX_IN_FLIGHT_PER_ENDPOINT", in_flight.to_string()),
        ("HERALD_SHUTDOWN_GRACE", "5s".to_owned()),
        ("HERALD_API_RATE_LIMIT", "0".to_owned()),
        ("HERALD_LOG", "warn".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

impl Node {
    /// A node running `exe` (see [`node_program`]).
    pub fn new(name: &str, exe: &Path, logs: &Path, env: Vec<(String, String)>) -> Result<Self, SoakError> {
        let port = free_port()?;
        Ok(Self {
            name: name.to_owned(),
            base: format!("http://127.0.0.1:{port}"),
            port,
            env,
            exe: exe.to_owned(),
            log: logs.join(format!("{name}.log")),
            child: None,
            lives: Vec::new(),
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts a new life of the node (it does not wait for it to answer).
    pub fn spawn(&mut self, now_s: f64) -> Result<(), SoakError> {
        let log = OpenOptions::new().create(true).append(true).open(&self.log)?;
        let mut cmd = Command::new(&self.exe);
        cmd.arg("serve")
            .env("HERALD_LISTEN", format!("127.0.0.1:{}", self.port))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn()?;
        self.lives.push(Life {
            pid: child.id(),
            started_s: now_s,
            ended_s: None,
            rss: Vec::new(),
        });
        self.child = Some(child);
        Ok(())
    }

    /// Takes the running process out, to be killed or stopped.
    pub fn take(&mut self, now_s: f64) -> Option<Child> {
        if let Some(life) = self.lives.last_mut()
            && life.ended_s.is_none()
        {
            life.ended_s = Some(now_s);
        }
        self.child.take()
    }

    pub fn sample(&mut self, now_s: f64) {
        let Some(pid) = self.pid() else { return };
        if let (Some(kib), Some(anon), Some(life)) = (
            memory_kib(pid, "VmRSS"),
            memory_kib(pid, "RssAnon"),
            self.lives.last_mut(),
        ) {
            life.rss.push((now_s, kib, anon));
        }
    }
}

impl Drop for Node {
    /// A soak cut short (an error, Ctrl-C) leaves no node behind.
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            kill(child);
        }
    }
}

/// SIGKILL: no chance to finish anything or release a lease.
pub fn kill(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// SIGTERM, then up to `grace` for the node to stop by itself; SIGKILL
/// after that. Answers whether it stopped by itself.
pub async fn terminate(mut child: Child, grace: Duration) -> bool {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    kill(child);
    false
}

/// Waits until `base` answers /health with 200.
pub async fn wait_healthy(http: &reqwest::Client, base: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(r) = http
            .get(format!("{base}/health"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            && r.status().is_success()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Stops every node (SIGTERM, then SIGKILL) at the end of the soak.
pub async fn stop_all(nodes: &Nodes, now_s: f64) {
    let children: Vec<Child> = nodes
        .lock()
        .map(|mut n| n.iter_mut().filter_map(|n| n.take(now_s)).collect())
        .unwrap_or_default();
    for child in children {
        terminate(child, Duration::from_secs(10)).await;
    }
}
