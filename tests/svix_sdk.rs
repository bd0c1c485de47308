//! The official Svix Python SDKs work as Herald clients, and their
//! deliveries verify with `standardwebhooks`: the current generation
//! (pinned in tests/sdk/requirements.txt) and the first (requirements-1x.txt),
//! which reads some answers differently.
//!
//! Each test makes its own virtualenv under target/ on first run (pip needs
//! the package registry once); later runs reuse it.

mod common;

use std::path::{Path, PathBuf};

/// Runs `script` (under tests/sdk) with `python` against a fresh Herald;
/// fails with its output unless it ends with `expected` said.
async fn drive_herald(python: PathBuf, script: &str, expected: &str) {
    let app = common::spawn_app(&common::Backend::Sqlite).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk").join(script);
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
    assert!(stdout.contains(expected), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_svix_sdk_drives_herald() {
    let python = tokio::task::spawn_blocking(common::python::sdk_python)
        .await
        .expect("venv");
    drive_herald(python, "svix_client.py", "every call succeeded").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_generation_svix_sdk_drives_herald() {
    let python =
        tokio::task::spawn_blocking(|| common::python::venv_python("sdk1-venv", "tests/sdk/requirements-1x.txt"))
            .await
            .expect("venv");
    drive_herald(python, "svix1_client.py", "every call succeeded").await;
}
