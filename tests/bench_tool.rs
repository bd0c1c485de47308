//! `herald bench` itself: a short run against a server it starts must
//! deliver everything it publishes, and say so in its report.

mod common;

use std::process::Command;

#[test]
fn a_short_bench_delivers_every_message_and_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench.json");
    let status = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args([
            "bench",
            "--messages",
            "300",
            "--fanout",
            "2",
            "--concurrency",
            "8",
            "--out",
        ])
        .arg(&out)
        .status()
        .expect("herald bench runs");
    assert!(status.success());
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(report["accepted"], 300, "{report}");
    assert_eq!(report["delivered"], 600, "{report}");
    assert_eq!(report["lost"], 0);
    assert_eq!(report["duplicates"], 0);
    assert!(report["deliveries_per_s"].as_f64().unwrap() > 0.0);
    assert!(report["latency_ms"]["p99"].as_f64().unwrap() > 0.0);
    assert!(report["peak_rss_mib"].as_f64().unwrap() > 1.0, "{report}");
}

#[test]
fn a_backlog_bench_holds_everything_then_drains_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench.json");
    let status = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["bench", "--messages", "300", "--backlog", "--concurrency", "8", "--out"])
        .arg(&out)
        .status()
        .expect("herald bench runs");
    assert!(status.success());
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(report["delivered"], 300, "{report}");
    assert_eq!(
        (report["lost"].as_u64(), report["duplicates"].as_u64()),
        (Some(0), Some(0))
    );
    // The report says how long enabling took and what memory the drain used.
    let backlog = &report["backlog"];
    assert!(backlog["enable_seconds"].as_f64().unwrap() >= 0.0, "{report}");
    assert!(backlog["drain_peak_rss_mib"].as_f64().unwrap() >= backlog["rss_at_enable_mib"].as_f64().unwrap());
}

/// `--compare` runs the same load against a second server that speaks the
/// same API (here another Herald) and reports both, in the JSON and in one
/// table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compared_bench_runs_the_same_load_against_both_servers() {
    let other = common::spawn_app(&common::Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench.json");
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args([
            "bench",
            "--messages",
            "200",
            "--concurrency",
            "8",
            "--compare",
            &other.base,
        ])
        .args(["--compare-token", common::TOKEN, "--out"])
        .arg(&out)
        .output()
        .await
        .expect("herald bench runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains(&format!("Compared with {}", other.base)), "{stdout}");
    assert!(stdout.contains("deliveries/s"), "{stdout}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    for side in ["herald", "compare"] {
        assert_eq!(report[side]["accepted"], 200, "{side}: {report}");
        assert_eq!(report[side]["delivered"], 200, "{side}: {report}");
        assert_eq!(report[side]["lost"], 0, "{side}");
    }
    assert_eq!(report["compare_url"], other.base.as_str());
    // The second server's memory is not the bench's to read.
    assert!(report["compare"]["peak_rss_mib"].is_null(), "{report}");
    let published = other.get("/api/v1/app").await.body;
    assert_eq!(
        published["data"][0]["name"], "bench",
        "the load went to the second server: {published}"
    );
}

/// `--nodes` starts several servers on one PostgreSQL database and spreads
/// the publishers over them; the report says what each delivery cost the
/// servers and the database, which is what predicts how nodes add up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bench_over_two_nodes_reports_what_a_delivery_costs_them_and_the_database() {
    let Some(db) = common::pg::fresh_database().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench.json");
    let mut bench = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"));
    bench
        .args(["bench", "--messages", "400", "--nodes", "2", "--concurrency", "8"])
        .args(["--server-binary", env!("CARGO_BIN_EXE_herald")])
        .args(["--database-url", &db, "--out"])
        .arg(&out);
    assert!(bench.status().await.expect("herald bench runs").success());
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(report["nodes"], 2, "{report}");
    assert_eq!(report["delivered"], 400, "{report}");
    assert_eq!(
        (report["lost"].as_u64(), report["duplicates"].as_u64()),
        (Some(0), Some(0))
    );
    assert!(report["server_cpu_ms_per_delivery"].as_f64().unwrap() > 0.0, "{report}");
    // Every delivery writes a message, a delivery and an attempt row at least.
    let database = &report["database"];
    assert!(
        database["rows_written_per_delivery"].as_f64().unwrap() >= 2.0,
        "{report}"
    );
    assert!(
        database["transactions_per_delivery"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    common::pg::drop_database(&db).await;
}

/// A SQLite file takes one node: asking for more is refused, and says why.
#[test]
fn more_nodes_than_one_need_postgresql() {
    let output = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["bench", "--messages", "10", "--nodes", "2"])
        .output()
        .expect("herald bench runs");
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("--nodes above 1 needs a PostgreSQL --database-url"),
        "{said}"
    );
}
