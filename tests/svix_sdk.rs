//! The official Svix SDKs work as Herald clients: each drives one product
//! flow (applications with uids and paging, event types, filtered endpoints
//! with headers, publish, attempts, secrets and rotation, stats, resend,
//! recover, send-example, portal access, deletes) against a fresh Herald,
//! and every delivery verifies with a Standard Webhooks library.
//!
//! - Python: `svix` at one version of each generation, each in its own
//!   virtualenv (tests/sdk/requirements-<version>.txt), all running
//!   tests/sdk/svix_flow.py, verified with `standardwebhooks`.
//! - Node: the `svix` npm package (tests/sdk/package.json and its lock),
//!   running tests/sdk/svix_flow.mjs, verified with npm `standardwebhooks`.
//!
//! The Rust crate's flow is tests/svix_rust_sdk.rs. The SDKs are installed
//! under target/ on first run (the package registries are needed once);
//! later runs reuse them.

mod common;

use std::ffi::OsString;
use std::path::Path;
use std::time::Instant;

/// Runs `program args` against a fresh Herald; fails with its output unless
/// it exits 0 having said `expected`.
async fn drive_herald(sdk: &str, program: impl Into<OsString>, args: &[OsString], expected: &str) {
    let app = common::spawn_app(&common::Backend::Sqlite).await;
    let started = Instant::now();
    let output = tokio::process::Command::new(program.into())
        .args(args)
        .env("HERALD_URL", &app.base)
        .env("HERALD_TOKEN", common::TOKEN)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .await
        .expect("the SDK flow runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the {sdk} flow failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains(expected), "{stdout}");
    common::report(&format!("{sdk}: the flow took {:.1?}", started.elapsed()));
}

/// The flow of tests/sdk/svix_flow.py through `svix==version`.
async fn python_sdk_drives_herald(version: &'static str) {
    let python = tokio::task::spawn_blocking(move || common::python::svix_python(version))
        .await
        .expect("venv");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/svix_flow.py");
    let expected = format!("svix {version}: every call succeeded and every delivery verified");
    drive_herald(&format!("svix {version} (Python)"), python, &[script.into()], &expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_svix_1_40_0_drives_herald() {
    python_sdk_drives_herald("1.40.0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_svix_1_70_1_drives_herald() {
    python_sdk_drives_herald("1.70.1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_svix_1_99_1_drives_herald() {
    python_sdk_drives_herald("1.99.1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_svix_2_0_0_drives_herald() {
    python_sdk_drives_herald("2.0.0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_svix_2_9_1_drives_herald() {
    python_sdk_drives_herald("2.9.1").await;
}

/// The flow of tests/sdk/svix_flow.mjs, copied beside the node_modules that
/// hold the pinned npm packages so that its imports resolve there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npm_svix_drives_herald() {
    let dir = tokio::task::spawn_blocking(common::node::sdk_node_dir)
        .await
        .expect("npm ci");
    let script = dir.join("svix_flow.mjs");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/svix_flow.mjs");
    std::fs::copy(&source, &script).expect("copy the flow beside its node_modules");
    drive_herald("svix (npm)", "node", &[script.into()], "(npm): every call succeeded").await;
}
