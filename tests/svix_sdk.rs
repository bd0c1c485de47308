//! The official Svix Python SDK (pinned in tests/sdk/requirements.txt) works
//! as a Herald client, and its deliveries verify with `standardwebhooks`.
//!
//! The test makes its own virtualenv under target/ on first run (pip needs
//! the package registry once); later runs reuse it.

mod common;

use std::path::Path;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_svix_sdk_drives_herald() {
    let python = tokio::task::spawn_blocking(common::python::sdk_python)
        .await
        .expect("venv");
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
