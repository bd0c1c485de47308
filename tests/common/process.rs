//! The real `herald` binary as a child process, for tests that kill it.

use std::io::{BufRead, BufReader, Lines};
use std::process::{Child, ChildStderr, Command, Stdio};

use super::TOKEN;

/// The secret key of nodes run as processes.
pub const SECRET_KEY: &str = "aGVyYWxkLXRlc3Qtc2VjcmV0LWtleS0zMi1ieXRlcyE=";

/// A running `herald serve`; killed with SIGKILL when dropped.
pub struct Node {
    pub child: Child,
    pub base: String,
    log: Option<Lines<BufReader<ChildStderr>>>,
}

impl Node {
    /// Starts `herald serve` on a free port with the test defaults plus
    /// `env`, and waits until it listens.
    pub fn start(database_url: &str, env: &[(&str, &str)]) -> Self {
        let mut node = Self::spawn(database_url, env);
        node.wait_until_listening();
        node
    }

    /// Starts `herald serve` without waiting for it.
    pub fn spawn(database_url: &str, env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
        cmd.arg("serve")
            .env("HERALD_LISTEN", "127.0.0.1:0")
            .env("HERALD_DATABASE_URL", database_url)
            .env("HERALD_ADMIN_TOKEN", TOKEN)
            // Every node of one database shares one key.
            .env("HERALD_SECRET_KEY", SECRET_KEY)
            .env("HERALD_ALLOW_HTTP", "true")
            .env("HERALD_ALLOWED_TARGET_NETWORKS", "127.0.0.0/8")
            .env("HERALD_RETRY_SCHEDULE", "100ms,200ms,400ms,800ms")
            .env("HERALD_LOG", "info")
            .stderr(Stdio::piped())
            .stdout(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("herald starts");
        let stderr = child.stderr.take().expect("stderr");
        Self {
            child,
            base: String::new(),
            log: Some(BufReader::new(stderr).lines()),
        }
    }

    /// Reads the log until a line contains `needle`; answers that line.
    pub fn wait_for_log(&mut self, needle: &str) -> String {
        let log = self.log.as_mut().expect("log not yet handed to the drain");
        for line in log.by_ref() {
            let line = line.expect("log line");
            if show_logs() {
                eprintln!("[herald] {line}");
            }
            if line.contains(needle) {
                return line;
            }
        }
        panic!("herald exited before logging '{needle}'");
    }

    /// Waits for the "listening" line, then keeps draining the log so the
    /// child never blocks on a full pipe.
    pub fn wait_until_listening(&mut self) {
        let line = self.wait_for_log("address=");
        let address = line
            .split("address=")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .expect("address");
        self.base = format!("http://{address}");
        let lines = self.log.take().expect("log");
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if show_logs() {
                    eprintln!("[herald] {line}");
                }
            }
        });
    }

    /// SIGKILL: no chance to finish anything or release a lease.
    pub fn kill_9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

/// HERALD_TEST_NODE_LOGS=1 shows the nodes' logs, for debugging.
fn show_logs() -> bool {
    std::env::var_os("HERALD_TEST_NODE_LOGS").is_some()
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
