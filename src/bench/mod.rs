//! `herald bench`: a load generator that drives Herald through the same API
//! a product calls, with its own fast receiver, and reports throughput,
//! losses, duplicates, end-to-end latency and the server's memory.

mod receiver;
mod server;
pub mod soak;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use receiver::{Tally, now_us};
use server::{Server, cpu_seconds, cpu_seconds_of_family, memory_kib, parent_of};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Setup(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
}

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Messages to publish
    #[arg(long, default_value_t = 20_000)]
    pub messages: u64,
    /// Publishers sending at once (closed loop: each waits for its answer)
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Publish at this fixed rate (messages/s) instead of as fast as possible
    #[arg(long)]
    pub rate: Option<u64>,
    /// Endpoints subscribed to every message (deliveries = messages × fan-out)
    #[arg(long, default_value_t = 1)]
    pub fanout: u64,
    /// Payload size in bytes
    #[arg(long, default_value_t = 1024)]
    pub payload_bytes: usize,
    /// Drive this running Herald instead of starting one (it must allow
    /// http:// and 127.0.0.0/8 targets); memory is then not reported
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Admin token of the server given with --url
    #[arg(long, env = "HERALD_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Database of the server the bench starts [default: a fresh SQLite file]
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Start this Herald binary as the server instead of this one: two
    /// builds measured by the same load tool
    #[arg(long, value_name = "PATH")]
    pub server_binary: Option<std::path::PathBuf>,
    /// Start this many nodes on the --database-url (PostgreSQL) and spread
    /// the publishers over them, as a load balancer would
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub nodes: u16,
    /// Give up waiting for deliveries after this long without progress
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,
    /// Publish everything first to disabled endpoints that hold their
    /// messages, then enable them and time the drain of that backlog
    #[arg(long)]
    pub backlog: bool,
    /// Then run the same load against this second server, which speaks the
    /// same API (another Herald, or a Svix server: it must deliver to
    /// http://127.0.0.1), and print one table with both
    #[arg(long, value_name = "URL")]
    pub compare: Option<String>,
    /// API token of the server given with --compare
    #[arg(long, value_name = "TOKEN", requires = "compare", hide_env_values = true)]
    pub compare_token: Option<String>,
    /// Write the report here as JSON (with --compare: `{"herald", "compare_url", "compare"}`)
    #[arg(long, value_name = "FILE", default_value = "bench.json")]
    pub out: std::path::PathBuf,
}

/// The two reports of a `--compare` run, as written to `--out`.
#[derive(Debug, Serialize)]
pub struct Comparison {
    pub herald: Report,
    pub compare_url: String,
    pub compare: Report,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub messages: u64,
    pub concurrency: usize,
    pub rate: Option<u64>,
    pub fanout: u64,
    pub payload_bytes: usize,
    pub accepted: u64,
    pub rejected: u64,
    pub accepted_per_s: f64,
    pub delivered: u64,
    pub deliveries_per_s: f64,
    pub lost: u64,
    pub duplicates: u64,
    pub latency_ms: Percentiles,
    pub idle_rss_mib: Option<f64>,
    pub peak_rss_mib: Option<f64>,
    /// Nodes the load was spread over (servers the bench started).
    pub nodes: u16,
    /// CPU time (user and system) the bench's own servers spent per
    /// delivery, from the first publish to the last receipt.
    pub server_cpu_ms_per_delivery: Option<f64>,
    /// On PostgreSQL: the database server's CPU time (when it runs on this
    /// machine), its transactions and the rows it wrote, per delivery.
    pub database: Option<DatabaseCost>,
    /// With --backlog: how long enabling the endpoints took (it makes the
    /// whole backlog due), and the server's peak memory while it drained.
    pub backlog: Option<BacklogReport>,
    pub seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct DatabaseCost {
    pub cpu_ms_per_delivery: f64,
    pub transactions_per_delivery: f64,
    pub rows_written_per_delivery: f64,
}

#[derive(Debug, Serialize)]
pub struct BacklogReport {
    pub enable_seconds: f64,
    pub rss_at_enable_mib: Option<f64>,
    pub drain_peak_rss_mib: Option<f64>,
}

#[derive(Debug, Serialize, Default)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    fn of(sorted_us: &[u32]) -> Self {
        let at = |q: f64| -> f64 {
            if sorted_us.is_empty() {
                return 0.0;
            }
            let i = ((sorted_us.len() as f64 - 1.0) * q).round() as usize;
            f64::from(sorted_us[i]) / 1000.0
        };
        Self {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

/// Runs the load and reports it, printed as a table and written as JSON;
/// with `--compare`, runs it again against the second server, one after the
/// other so neither run takes cores from the other, and prints both side by side.
pub async fn run(args: BenchArgs) -> Result<(), BenchError> {
    let herald = run_once(&args).await?;
    print_table(&herald);
    let Some(compare_url) = args.compare.clone() else {
        std::fs::write(&args.out, serde_json::to_vec_pretty(&herald).unwrap_or_default())?;
        return Ok(());
    };
    let token = args
        .compare_token
        .clone()
        .ok_or_else(|| BenchError::Setup("--compare needs --compare-token".to_owned()))?;
    let other_args = BenchArgs {
        url: Some(compare_url.clone()),
        token: Some(token),
        database_url: None,
        ..args.clone()
    };
    let compare = run_once(&other_args).await?;
    print_comparison(&herald, &compare_url, &compare);
    let both = Comparison {
        herald,
        compare_url,
        compare,
    };
    std::fs::write(&args.out, serde_json::to_vec_pretty(&both).unwrap_or_default())?;
    Ok(())
}

/// Runs one load against Herald (started here, or at `--url`) and reports it.
async fn run_once(args: &BenchArgs) -> Result<Report, BenchError> {
    let servers = match &args.url {
        Some(_) => Vec::new(),
        None => start_nodes(args).await?,
    };
    let (bases, token) = match (servers.first(), &args.url) {
        (Some(s), _) => (servers.iter().map(|s| s.base.clone()).collect(), s.token.clone()),
        (None, Some(url)) => (
            vec![url.trim_end_matches('/').to_owned()],
            args.token
                .clone()
                .ok_or_else(|| BenchError::Setup("--url needs --token (or HERALD_ADMIN_TOKEN)".to_owned()))?,
        ),
        (None, None) => return Err(BenchError::Setup("no server".to_owned())),
    };
    let pids: Vec<u32> = servers.iter().filter_map(Server::pid).collect();
    // Idle: after start, before any load.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss = pids.iter().filter_map(|p| memory_kib(*p, "VmRSS")).max();
    let database = match &args.database_url {
        Some(url) if !servers.is_empty() && url.starts_with("postgres") => Some(DatabaseProbe::connect(url).await?),
        _ => None,
    };

    let tally = Arc::new(Tally::new(args.messages, args.fanout));
    let stop = CancellationToken::new();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let receiver_base = format!("http://{}", listener.local_addr()?);
    receiver::spawn(listener, tally.clone(), stop.clone());

    let api = Api::new(bases, token)?;
    let (app_id, endpoints) = api.setup(&receiver_base, args.fanout, args.backlog).await?;

    let peak = Arc::new(AtomicU64::new(idle_rss.unwrap_or(0)));
    for &pid in &pids {
        let (peak, stop) = (peak.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                if let Some(kib) = memory_kib(pid, "VmRSS") {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }
    let cpu_before: f64 = pids.iter().filter_map(|p| cpu_seconds(*p)).sum();
    let db_before = match &database {
        Some(probe) => Some(probe.read().await?),
        None => None,
    };

    let expected = args.messages * args.fanout;
    let bar = ProgressBar::new(expected);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} delivered {per_sec} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let mut started_us = now_us();
    let publishing = tokio::spawn(publish_all(api.clone(), app_id.clone(), args.clone()));
    let backlog_started = if args.backlog {
        // Everything is held; deliveries are timed from the enabling on.
        while !publishing.is_finished() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let at_enable = pids.iter().filter_map(|p| memory_kib(*p, "VmRSS")).max();
        peak.store(at_enable.unwrap_or(0), Ordering::Relaxed);
        started_us = now_us();
        let enabling = Instant::now();
        for ep in &endpoints {
            api.patch(
                &format!("/api/v1/app/{app_id}/endpoint/{ep}"),
                &json!({"disabled": false}),
            )
            .await?
            .error_for_status()?;
        }
        Some((enabling.elapsed().as_secs_f64(), at_enable))
    } else {
        None
    };
    // Deliveries until all arrived or no progress for idle_timeout.
    let mut last = (0, Instant::now());
    loop {
        let got = tally.delivered.load(Ordering::Relaxed);
        bar.set_position(got);
        if got >= expected && publishing.is_finished() {
            break;
        }
        if got != last.0 {
            last = (got, Instant::now());
        } else if last.1.elapsed() > args.idle_timeout && publishing.is_finished() {
            bar.set_message("gave up waiting");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bar.finish();
    let cpu_after: f64 = pids.iter().filter_map(|p| cpu_seconds(*p)).sum();
    // Read before the nodes stop, while their backends still exist.
    let db_cpu_after = database.as_ref().map_or(0.0, DatabaseProbe::cpu_seconds);
    let outcome = publishing
        .await
        .map_err(|e| BenchError::Setup(format!("the publishers failed: {e}")))?;
    // Late duplicates show up shortly after the last delivery, if at all.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();

    let delivered = tally.delivered.load(Ordering::Relaxed);
    let delivery_secs = (tally.last_at_us.load(Ordering::Relaxed).saturating_sub(started_us)) as f64 / 1e6;
    let peak_rss = pids
        .iter()
        .map(|p| memory_kib(*p, "VmHWM").unwrap_or(0))
        .max()
        .map(|hwm| hwm.max(peak.load(Ordering::Relaxed)));
    let backlog = backlog_started.map(|(enable_seconds, at_enable)| BacklogReport {
        enable_seconds,
        rss_at_enable_mib: at_enable.map(mib),
        drain_peak_rss_mib: (!pids.is_empty()).then(|| mib(peak.load(Ordering::Relaxed))),
    });
    let nodes = u16::try_from(servers.len()).unwrap_or(1).max(1);
    for server in servers {
        server.stop().await;
    }
    let per_delivery = |total: f64| total / delivered.max(1) as f64;
    let server_cpu_ms_per_delivery = (!pids.is_empty()).then(|| per_delivery((cpu_after - cpu_before) * 1000.0));
    // A backend reports its last statistics as it exits, with the node.
    let db_after = match &database {
        Some(probe) => Some(probe.settled().await?),
        None => None,
    };
    let database = match (db_before, db_after) {
        (Some(before), Some(after)) => Some(DatabaseCost {
            cpu_ms_per_delivery: per_delivery((db_cpu_after - before.cpu_seconds) * 1000.0),
            transactions_per_delivery: per_delivery((after.transactions - before.transactions) as f64),
            rows_written_per_delivery: per_delivery((after.rows_written - before.rows_written) as f64),
        }),
        _ => None,
    };
    let report = Report {
        messages: args.messages,
        concurrency: args.concurrency,
        rate: args.rate,
        fanout: args.fanout,
        payload_bytes: args.payload_bytes,
        accepted: outcome.accepted,
        rejected: outcome.rejected,
        accepted_per_s: outcome.accepted as f64 / outcome.seconds.max(1e-9),
        delivered,
        deliveries_per_s: delivered as f64 / delivery_secs.max(1e-9),
        lost: (outcome.accepted * args.fanout).saturating_sub(delivered),
        duplicates: tally.duplicates.load(Ordering::Relaxed),
        latency_ms: Percentiles::of(&tally.latencies()),
        idle_rss_mib: idle_rss.map(mib),
        peak_rss_mib: peak_rss.map(mib),
        nodes,
        server_cpu_ms_per_delivery,
        database,
        backlog,
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok(report)
}

/// The bench's own servers: one, or `--nodes` on one PostgreSQL database,
/// started one after the other (the first migrates it).
async fn start_nodes(args: &BenchArgs) -> Result<Vec<Server>, BenchError> {
    let shared = args.database_url.as_deref().is_some_and(|u| u.starts_with("postgres"));
    if args.nodes > 1 && !shared {
        return Err(BenchError::Setup(
            "--nodes above 1 needs a PostgreSQL --database-url (a SQLite file takes one node)".to_owned(),
        ));
    }
    let binary = match &args.server_binary {
        Some(path) => path.clone(),
        None => std::env::current_exe()?,
    };
    let first = Server::start(&binary, args.database_url.as_deref(), &[], None).await?;
    let token = first.token.clone();
    let mut servers = vec![first];
    for _ in 1..args.nodes {
        servers.push(Server::start(&binary, args.database_url.as_deref(), &[], Some(&token)).await?);
    }
    Ok(servers)
}

/// Whether the database URL names this machine.
fn database_is_local(url: &str) -> bool {
    let host = url::Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_owned));
    matches!(host.as_deref(), None | Some("" | "localhost" | "127.0.0.1" | "[::1]"))
}

/// Reads what the database server has done so far: its processes' CPU
/// (on this machine) and the database's statistics.
struct DatabaseProbe {
    pool: sqlx::PgPool,
    /// The server's main process, found as the parent of a backend.
    postmaster: Option<u32>,
}

struct DatabaseReading {
    cpu_seconds: f64,
    transactions: i64,
    rows_written: i64,
}

impl DatabaseProbe {
    async fn connect(url: &str) -> Result<Self, BenchError> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await
            .map_err(|e| BenchError::Setup(format!("cannot read the database's statistics: {e}")))?;
        let backend: Option<i32> = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&pool)
            .await
            .ok();
        // Only a server on this machine: a remote backend's pid means nothing here.
        let postmaster = backend
            .and_then(|pid| parent_of(u32::try_from(pid).ok()?))
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim_end() == "postgres")
            })
            .filter(|_| database_is_local(url));
        Ok(Self { pool, postmaster })
    }

    /// The server's CPU time so far, or 0 when it runs elsewhere.
    fn cpu_seconds(&self) -> f64 {
        self.postmaster.map_or(0.0, cpu_seconds_of_family)
    }

    /// The statistics once the nodes' backends have exited, which is when
    /// they report their last (a live one reports about once a second).
    async fn settled(&self) -> Result<DatabaseReading, BenchError> {
        tokio::time::sleep(Duration::from_secs(1)).await;
        self.read().await
    }

    async fn read(&self) -> Result<DatabaseReading, BenchError> {
        let (transactions, rows_written): (i64, i64) = sqlx::query_as(
            "SELECT (xact_commit + xact_rollback)::int8, (tup_inserted + tup_updated + tup_deleted)::int8 \
             FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| BenchError::Setup(format!("cannot read the database's statistics: {e}")))?;
        Ok(DatabaseReading {
            cpu_seconds: self.cpu_seconds(),
            transactions,
            rows_written,
        })
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The API of the node (or nodes) under load.
#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    bases: Arc<[String]>,
    token: String,
}

impl Api {
    fn new(bases: Vec<String>, token: String) -> Result<Self, BenchError> {
        let http = reqwest::Client::builder().pool_max_idle_per_host(1024).build()?;
        Ok(Self {
            http,
            bases: bases.into(),
            token,
        })
    }

    async fn post(&self, path: &str, body: &serde_json::Value) -> Result<reqwest::Response, BenchError> {
        self.send(0, reqwest::Method::POST, path, body).await
    }

    /// Posts through the `n`th node, counted round.
    async fn post_via(&self, n: u64, path: &str, body: &serde_json::Value) -> Result<reqwest::Response, BenchError> {
        self.send(n, reqwest::Method::POST, path, body).await
    }

    async fn patch(&self, path: &str, body: &serde_json::Value) -> Result<reqwest::Response, BenchError> {
        self.send(0, reqwest::Method::PATCH, path, body).await
    }

    async fn send(
        &self,
        node: u64,
        method: reqwest::Method,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<reqwest::Response, BenchError> {
        let base = &self.bases[(node % self.bases.len().max(1) as u64) as usize];
        Ok(self
            .http
            .request(method, format!("{base}{path}"))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await?)
    }

    /// A fresh application with `fanout` endpoints on the receiver; held
    /// ones start disabled and keep what is published to them.
    async fn setup(&self, receiver: &str, fanout: u64, held: bool) -> Result<(String, Vec<String>), BenchError> {
        let app = self.post("/api/v1/app", &json!({"name": "bench"})).await?;
        let app: serde_json::Value = app.error_for_status()?.json().await?;
        let app_id = app["id"].as_str().unwrap_or_default().to_owned();
        let mut endpoints = Vec::new();
        for i in 0..fanout {
            let mut body = json!({"url": format!("{receiver}/e/{i}")});
            if held {
                body["disabled"] = json!(true);
                body["whileDisabled"] = json!("hold");
            }
            let ep: serde_json::Value = self
                .post(&format!("/api/v1/app/{app_id}/endpoint"), &body)
                .await?
                .error_for_status()?
                .json()
                .await?;
            endpoints.push(ep["id"].as_str().unwrap_or_default().to_owned());
        }
        Ok((app_id, endpoints))
    }
}

struct PublishOutcome {
    accepted: u64,
    rejected: u64,
    seconds: f64,
}

/// Publishes every message: `concurrency` publishers in a closed loop, or
/// paced to `rate` per second.
async fn publish_all(api: Api, app_id: String, args: BenchArgs) -> PublishOutcome {
    let next = Arc::new(AtomicU64::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let rejected = Arc::new(AtomicU64::new(0));
    let pad = "x".repeat(args.payload_bytes.saturating_sub(60));
    let path = Arc::new(format!("/api/v1/app/{app_id}/msg"));
    let started = Instant::now();
    let publish_one = {
        let (api, accepted, rejected, path) = (api.clone(), accepted.clone(), rejected.clone(), path.clone());
        move |seq: u64, pad: Arc<str>| {
            let (api, accepted, rejected, path) = (api.clone(), accepted.clone(), rejected.clone(), path.clone());
            async move {
                let body = json!({
                    "eventType": "bench.event",
                    "payload": {"seq": seq, "sentAt": now_us(), "pad": &*pad},
                });
                // Spread over the nodes by sequence, as a load balancer would.
                match api.post_via(seq, &path, &body).await {
                    Ok(r) if r.status().is_success() => accepted.fetch_add(1, Ordering::Relaxed),
                    _ => rejected.fetch_add(1, Ordering::Relaxed),
                };
            }
        }
    };
    let pad: Arc<str> = Arc::from(pad);
    match args.rate {
        None => {
            let mut publishers = Vec::with_capacity(args.concurrency);
            for _ in 0..args.concurrency {
                let (next, pad, publish_one) = (next.clone(), pad.clone(), publish_one.clone());
                let total = args.messages;
                publishers.push(tokio::spawn(async move {
                    loop {
                        let seq = next.fetch_add(1, Ordering::Relaxed);
                        if seq >= total {
                            break;
                        }
                        publish_one(seq, pad.clone()).await;
                    }
                }));
            }
            for p in publishers {
                let _ = p.await;
            }
        }
        Some(rate) => {
            let in_flight = Arc::new(Semaphore::new(args.concurrency));
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(1) as f64));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut tasks = Vec::with_capacity(args.messages as usize);
            for seq in 0..args.messages {
                tick.tick().await;
                let Ok(permit) = in_flight.clone().acquire_owned().await else {
                    break;
                };
                let (pad, publish_one) = (pad.clone(), publish_one.clone());
                tasks.push(tokio::spawn(async move {
                    publish_one(seq, pad).await;
                    drop(permit);
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
        }
    }
    PublishOutcome {
        accepted: accepted.load(Ordering::Relaxed),
        rejected: rejected.load(Ordering::Relaxed),
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// Both runs, a row per figure, and how many times the second's the first is.
fn print_comparison(herald: &Report, compare_url: &str, other: &Report) {
    let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
    let ratio = |a: f64, b: f64| {
        if b > 0.0 {
            format!("{:.2}x", a / b)
        } else {
            "-".to_owned()
        }
    };
    let rows: [(&str, String, String, String); 8] = [
        (
            "accepted msg/s",
            format!("{:.0}", herald.accepted_per_s),
            format!("{:.0}", other.accepted_per_s),
            ratio(herald.accepted_per_s, other.accepted_per_s),
        ),
        (
            "deliveries/s",
            format!("{:.0}", herald.deliveries_per_s),
            format!("{:.0}", other.deliveries_per_s),
            ratio(herald.deliveries_per_s, other.deliveries_per_s),
        ),
        (
            "lost / duplicated",
            format!("{} / {}", herald.lost, herald.duplicates),
            format!("{} / {}", other.lost, other.duplicates),
            String::new(),
        ),
        (
            "latency p50 ms",
            format!("{:.2}", herald.latency_ms.p50),
            format!("{:.2}", other.latency_ms.p50),
            ratio(other.latency_ms.p50, herald.latency_ms.p50),
        ),
        (
            "latency p99 ms",
            format!("{:.2}", herald.latency_ms.p99),
            format!("{:.2}", other.latency_ms.p99),
            ratio(other.latency_ms.p99, herald.latency_ms.p99),
        ),
        (
            "latency max ms",
            format!("{:.2}", herald.latency_ms.max),
            format!("{:.2}", other.latency_ms.max),
            String::new(),
        ),
        (
            "server peak RSS MiB",
            opt(herald.peak_rss_mib),
            opt(other.peak_rss_mib),
            String::new(),
        ),
        (
            "wall time s",
            format!("{:.1}", herald.seconds),
            format!("{:.1}", other.seconds),
            String::new(),
        ),
    ];
    println!();
    println!("Compared with {compare_url} (the same load, one after the other; the last column is Herald's advantage)");
    println!("  {:<20} {:>12} {:>12} {:>8}", "", "Herald", "compared", "");
    for (name, mine, theirs, advantage) in rows {
        println!("  {name:<20} {mine:>12} {theirs:>12} {advantage:>8}");
    }
}

fn print_table(r: &Report) {
    let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
    let load = match r.rate {
        Some(rate) => format!("{rate} msg/s"),
        None => format!("{} publishers", r.concurrency),
    };
    println!();
    println!(
        "Herald bench: {} messages of {} B, {load}, fan-out {}",
        r.messages, r.payload_bytes, r.fanout
    );
    println!(
        "  accepted          {:>10} ({:.0} msg/s, {} rejected)",
        r.accepted, r.accepted_per_s, r.rejected
    );
    println!(
        "  delivered         {:>10} ({:.0} deliveries/s)",
        r.delivered, r.deliveries_per_s
    );
    println!("  lost / duplicated {:>10} / {}", r.lost, r.duplicates);
    println!(
        "  latency ms        p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        r.latency_ms.p50, r.latency_ms.p90, r.latency_ms.p99, r.latency_ms.max
    );
    println!(
        "  server RSS MiB    idle {}  peak {}{}",
        opt(r.idle_rss_mib),
        opt(r.peak_rss_mib),
        if r.nodes > 1 { " (the largest node)" } else { "" }
    );
    if let Some(cpu) = r.server_cpu_ms_per_delivery {
        println!("  server CPU        {cpu:.3} ms per delivery, all {} node(s)", r.nodes);
    }
    if let Some(db) = &r.database {
        println!(
            "  database          {:.3} ms CPU, {:.2} transactions, {:.2} rows written per delivery",
            db.cpu_ms_per_delivery, db.transactions_per_delivery, db.rows_written_per_delivery
        );
    }
    if let Some(b) = &r.backlog {
        println!(
            "  backlog           enabled in {:.1} s; RSS {} MiB then, peak {} MiB while it drained",
            b.enable_seconds,
            opt(b.rss_at_enable_mib),
            opt(b.drain_peak_rss_mib)
        );
    }
}
