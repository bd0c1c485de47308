//! A full disk: publishes are refused with 503 and Retry-After, never
//! accepted and lost; once there is room again Herald takes them without a
//! restart, and every message it accepted is delivered.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Backend, Receiver, restart_with};
use reqwest::StatusCode;
use serde_json::json;

/// A small tmpfs over a directory, unmounted when dropped.
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    /// Mounts `size` of tmpfs on `dir`; `None` when this machine does not
    /// let the test mount (not root).
    fn mount(dir: &Path, size: &str) -> Option<Self> {
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .ok()?;
        status.success().then(|| Self { dir: dir.to_owned() })
    }

    fn grow(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.dir)
            .status()
            .expect("mount runs");
        assert!(status.success(), "remount");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_publishes_with_503_and_loses_nothing() {
    let data = tempfile::tempdir().unwrap();
    let Some(disk) = SmallDisk::mount(data.path(), "3m") else {
        assert!(!is_root(), "root could not mount a tmpfs for the disk-full test");
        common::report("skipped: mounting a small disk needs root");
        return;
    };
    let backend = Backend::Sqlite;
    let app = restart_with(&backend, data, |_| {}).await;
    let receiver = Receiver::start().await;
    let app_id = app.create_app("Acme").await;
    // The endpoint holds what it gets until the disk has room again.
    let ep = app
        .create_endpoint(
            &app_id,
            &receiver.url,
            json!({"disabled": true, "whileDisabled": "hold"}),
        )
        .await;
    let payload = json!({"filler": "x".repeat(16 * 1024)});
    let mut accepted = 0usize;
    let mut refusal = None;
    for _ in 0..2000 {
        let answer = app
            .post(
                &format!("/api/v1/app/{app_id}/msg"),
                json!({"eventType": "ticket.created", "payload": payload}),
            )
            .await;
        match answer.status {
            StatusCode::ACCEPTED => accepted += 1,
            _ => {
                refusal = Some(answer);
                break;
            }
        }
    }
    let refusal = refusal.expect("the small disk filled up");
    assert_eq!(refusal.status, StatusCode::SERVICE_UNAVAILABLE, "{}", refusal.body);
    assert!(refusal.headers.contains_key("retry-after"));
    assert_eq!(refusal.body["code"], "unavailable");
    assert!(accepted > 10, "some fitted before the disk was full ({accepted})");
    // Still full: still refused, and Herald keeps serving reads.
    assert_eq!(app.get(&format!("/api/v1/app/{app_id}")).await.status, StatusCode::OK);

    disk.grow("64m");
    let later = app.publish(&app_id, "ticket.created", json!({"after": "room"})).await;
    assert!(later["id"].is_string());
    let enabled = app
        .patch(
            &format!("/api/v1/app/{app_id}/endpoint/{}", ep["id"].as_str().unwrap()),
            json!({"disabled": false}),
        )
        .await;
    assert_eq!(enabled.status, StatusCode::OK, "{}", enabled.body);
    let got = receiver.wait_for(accepted + 1, Duration::from_secs(30)).await;
    let ids: std::collections::BTreeSet<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids.len(), accepted + 1, "every accepted message arrived once");
    common::report(&format!(
        "disk full: {accepted} accepted before the disk filled; then 503 with Retry-After; all delivered after it grew"
    ));
    drop(app);
}
