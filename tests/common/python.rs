//! Python with pinned packages (tests/sdk/requirements-<version>.txt for
//! each generation of the Svix client library, tests/schemathesis/requirements.txt
//! for the API fuzzer), for checks made by implementations other than
//! Herald's own.
//!
//! Each virtualenv is made under target/ on first use (pip needs the package
//! registry once); later runs reuse it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The Svix SDK whose venv also serves the other scripts under tests/sdk.
pub const CURRENT_SVIX: &str = "2.9.1";

/// The SDK venv's interpreter, installing the requirements when they changed.
pub fn sdk_python() -> PathBuf {
    svix_python(CURRENT_SVIX)
}

/// The interpreter of the venv holding `svix==version`
/// (tests/sdk/requirements-<version>.txt).
pub fn svix_python(version: &str) -> PathBuf {
    venv_python(
        &format!("sdk-venv-{version}"),
        &format!("tests/sdk/requirements-{version}.txt"),
    )
}

/// The interpreter of the virtualenv `target/NAME`, with the pinned
/// `requirements` (relative to the crate) installed when they changed.
pub fn venv_python(name: &str, requirements: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv = root.join("target").join(name);
    let python = venv.join("bin").join("python");
    let requirements = root.join(requirements);
    let wanted = std::fs::read_to_string(&requirements).expect("requirements file");
    super::installed_once(&venv, &wanted, || {
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 is needed for this test (install Python 3.9+)");
        assert!(status.success(), "creating the virtualenv failed");
        let status = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(&requirements)
            .status()
            .expect("pip runs");
        assert!(
            status.success(),
            "installing {} failed (is the package registry reachable?)",
            requirements.display()
        );
    });
    python
}

/// Runs `script` (under tests/sdk) with `input` on stdin; panics with its
/// output unless it exits 0. Answers its stdout.
pub async fn run_script(script: &str, input: &str) -> String {
    use tokio::io::AsyncWriteExt;
    let python = tokio::task::spawn_blocking(sdk_python).await.expect("venv");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk").join(script);
    let mut child = tokio::process::Command::new(python)
        .arg(path)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python starts");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input.as_bytes()).await.expect("write stdin");
    drop(stdin);
    let output = child.wait_with_output().await.expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{script} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout
}
