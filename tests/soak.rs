//! `herald soak`, short: a minute of load on a 3-node PostgreSQL cluster
//! (the soak's own server, made with initdb) and a SQLite node, under
//! chaos every few seconds; it must pass every check, and the report must
//! show that the chaos happened and the messages flowed.

mod common;

use std::path::Path;
use std::process::Command;

fn has_initdb() -> bool {
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .is_some_and(|o| {
            Path::new(String::from_utf8_lossy(&o.stdout).trim())
                .join("initdb")
                .exists()
        });
    from_pg_config
        || std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.path().join("bin/initdb").exists())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[test]
fn a_short_soak_under_chaos_loses_nothing_and_explains_every_error() {
    if !has_initdb() {
        assert!(
            std::env::var("HERALD_REQUIRE_POSTGRES").as_deref() != Ok("1"),
            "PostgreSQL is required (HERALD_REQUIRE_POSTGRES=1) but its initdb is not installed"
        );
        common::report("SKIPPED: the soak needs PostgreSQL's initdb (the server package)");
        return;
    }
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
    cmd.args([
        "soak",
        "--duration",
        "60s",
        "--chaos-every",
        "6s",
        "--rate",
        "15",
        "--sqlite-rate",
        "10",
        "--json",
    ]);
    if !is_root() {
        common::report("the soak's SQLite disk-full run needs root (to mount a tmpfs): left out");
        cmd.arg("--skip-sqlite");
    }
    let out = cmd.output().expect("herald soak runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "the soak printed no JSON report ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let text = serde_json::to_string_pretty(&report).unwrap();
    assert!(
        out.status.success(),
        "the soak failed: {:?}\n{text}",
        report["failures"]
    );
    assert_eq!(report["passed"], true, "{text}");

    let cluster = &report["targets"][0];
    assert_eq!(cluster["name"], "cluster");
    assert!(cluster["published"]["accepted_count"].as_u64().unwrap() > 300, "{text}");
    // The chaos did happen: several events, of more than one kind.
    let events = report["events"].as_array().unwrap();
    let cluster_events = events.iter().filter(|e| e["target"] == "cluster").count();
    assert!(cluster_events >= 4, "{text}");
    // Every receiver kind ended as its kind must.
    for ep in cluster["endpoints"].as_array().unwrap() {
        let accepted = ep["accepted"].as_u64().unwrap();
        let stats = &ep["stats"];
        assert_eq!(ep["lost"], 0, "{text}");
        match ep["kind"].as_str().unwrap() {
            "healthy" => assert_eq!(stats["success"].as_u64(), Some(accepted), "{text}"),
            "failing" => assert_eq!(stats["fail"].as_u64(), Some(accepted), "{text}"),
            _ => assert_eq!(
                stats["success"].as_u64().unwrap() + stats["fail"].as_u64().unwrap(),
                accepted,
                "{text}"
            ),
        }
    }
    if is_root() {
        let sqlite = &report["targets"][1];
        assert_eq!(sqlite["name"], "sqlite");
        assert!(
            events.iter().any(|e| e["kind"] == "disk_full"),
            "the SQLite disk was never filled: {text}"
        );
        // While the disk was full, publishes were refused and tried again.
        assert!(
            sqlite["published"]["retried"]["503"].as_u64().unwrap_or(0) > 0,
            "{text}"
        );
    }
    // Memory was sampled for every node.
    for m in report["memory"].as_array().unwrap() {
        assert!(m["peak_mib"].as_f64().unwrap() > 1.0, "{text}");
    }
}
