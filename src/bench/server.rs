//! A Herald server started by the bench, as a child process, so its memory
//! can be read from /proc and nothing of the bench runs inside it.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::BenchError;

pub struct Server {
    pub base: String,
    pub token: String,
    child: Child,
    _data: Option<tempfile_dir::TempDir>,
}

/// A private temporary directory, removed on drop, without a dev dependency.
mod tempfile_dir {
    use std::path::{Path, PathBuf};

    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new() -> std::io::Result<Self> {
            let path = std::env::temp_dir().join(format!("herald-bench-{}", crate::domain::ids::AppId::generate()));
            std::fs::create_dir_all(&path)?;
            Ok(Self(path))
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Server {
    /// Starts `binary serve` on a free loopback port with a fresh SQLite file
    /// (or `database_url`), loopback receivers allowed, and waits until it
    /// answers. Nodes of one database are given the same admin `token`.
    pub async fn start(
        binary: &std::path::Path,
        database_url: Option<&str>,
        extra_env: &[(String, String)],
        token: Option<&str>,
    ) -> Result<Self, BenchError> {
        let port = free_port()?;
        let token = token.map_or_else(
            || format!("bench-{}", crate::domain::ids::AppId::generate()),
            str::to_owned,
        );
        let (data, db) = match database_url {
            Some(url) => (None, url.to_owned()),
            None => {
                let dir = tempfile_dir::TempDir::new()?;
                let db = format!("sqlite://{}", dir.path().join("herald.db").display());
                (Some(dir), db)
            }
        };
        let mut cmd = Command::new(binary);
        cmd.arg("serve")
            .env("HERALD_LISTEN", format!("127.0.0.1:{port}"))
            .env("HERALD_DATABASE_URL", db)
            .env("HERALD_ADMIN_TOKEN", &token)
            .env("HERALD_ALLOW_HTTP", "true")
            .env("HERALD_ALLOWED_TARGET_NETWORKS", "127.0.0.0/8")
            .env("HERALD_LOG", "warn")
            // The bench measures Herald's capacity, not the per-token limit.
            .env("HERALD_API_RATE_LIMIT", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let child = cmd.spawn()?;
        let server = Self {
            base: format!("http://127.0.0.1:{port}"),
            token,
            child,
            _data: data,
        };
        server.wait_until_healthy().await?;
        Ok(server)
    }

    async fn wait_until_healthy(&self) -> Result<(), BenchError> {
        let client = reqwest::Client::new();
        for _ in 0..300 {
            if let Ok(r) = client.get(format!("{}/health", self.base)).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(BenchError::Setup(
            "the Herald server did not become healthy within 15 s".to_owned(),
        ))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// The fields of `/proc/<pid>/stat` after the command name (which is in
/// parentheses and may hold spaces): the state is the first.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    Some(rest.split(' ').map(str::to_owned).collect())
}

/// CPU time a process has used so far (user and system), in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let fields = stat_fields(pid)?;
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    // utime and stime, the 14th and 15th fields, in USER_HZ (100 on Linux).
    Some((ticks(11)? + ticks(12)?) as f64 / 100.0)
}

/// The parent of a process.
pub fn parent_of(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// CPU time used so far by `parent` and its children (a database server's
/// backends and background writers), in seconds.
pub fn cpu_seconds_of_family(parent: u32) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    let children: f64 = dir
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| parent_of(*pid) == Some(parent))
        .filter_map(cpu_seconds)
        .sum();
    children + cpu_seconds(parent).unwrap_or(0.0)
}

/// Resident memory of a process in KiB: `VmRSS` now, or `VmHWM` (its peak).
pub fn memory_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
