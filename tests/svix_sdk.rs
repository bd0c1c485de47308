//! The official Svix Python SDK (pinned in tests/sdk/requirements.txt) works
//! as a Herald client, and its deliveries verify with `standardwebhooks`.
//!
//! The test makes its own virtualenv under target/ on first run (pip needs
//! the package registry once); later runs reuse it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn sdk_python() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv = root.join("target").join("sdk-venv");
    let python = venv.join("bin").join("python");
    let requirements = root.join("tests/sdk/requirements.txt");
    let stamp = venv.join("requirements.installed");
    let wanted = std::fs::read_to_string(&requirements).expect("requirements file");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return python;
    }
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .expect("python3 is needed for the SDK test (install Python 3.9+)");
    assert!(status.success(), "creating the virtualenv failed");
    let status = Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(&requirements)
        .status()
        .expect("pip runs");
    assert!(
        status.success(),
        "installing the SDK failed (is the package registry reachable?)"
    );
    std::fs::write(&stamp, wanted).expect("stamp");
    python
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_svix_sdk_drives_herald() {
    let python = tokio::task::spawn_blocking(sdk_python).await.expect("venv");
    let app = common::spawn_app(&common::Backend::Sqlite).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/svix_client.py");
    let output = tokio::process::Command::new(python)
        .arg(script)
        .env("HERALD_URL", &app.base)
        .env("HERALD_TOKEN", common::TOKEN)
        .output()
        .await
        .expect("the SDK script runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "SDK script failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("every call succeeded"), "{stdout}");
}
