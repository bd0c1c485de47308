//! Node.js with the npm packages pinned in tests/sdk/package.json and
//! package-lock.json (the Svix SDK, a Standard Webhooks verifier and axe-core),
//! installed by `npm ci` into target/sdk-node on first use and reused while
//! the pinned files are unchanged. npm fetches from the registry it is
//! configured with (`npm config get registry`, `NPM_CONFIG_REGISTRY`).

use std::path::{Path, PathBuf};
use std::process::Command;

const PINNED: [&str; 2] = ["package.json", "package-lock.json"];

/// The folder whose node_modules holds the pinned packages.
pub fn sdk_node_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("target").join("sdk-node");
    let files = PINNED.map(|f| std::fs::read_to_string(root.join("tests/sdk").join(f)).expect("pinned npm file"));
    super::installed_once(&dir, &files.concat(), || {
        std::fs::create_dir_all(&dir).expect("target/sdk-node");
        for (name, text) in PINNED.iter().zip(&files) {
            std::fs::write(dir.join(name), text).expect("copy the pinned npm file");
        }
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status()
            .expect("npm is needed for this test (install Node.js and npm)");
        assert!(status.success(), "npm ci failed (is the package registry reachable?)");
    });
    dir
}
