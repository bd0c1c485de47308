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
use server::{Server, memory_kib};

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
    /// With --backlog: how long enabling the endpoints took (it makes the
    /// whole backlog due), and the server's peak memory while it drained.
    pub backlog: Option<BacklogReport>,
    pub seconds: f64,
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
    let server = match &args.url {
        Some(_) => None,
        None => Some(Server::start(args.database_url.as_deref(), &[]).await?),
    };
    let (base, token) = match (&server, &args.url) {
        (Some(s), _) => (s.base.clone(), s.token.clone()),
        (None, Some(url)) => (
            url.trim_end_matches('/').to_owned(),
            args.token
                .clone()
                .ok_or_else(|| BenchError::Setup("--url needs --token (or HERALD_ADMIN_TOKEN)".to_owned()))?,
        ),
        (None, None) => return Err(BenchError::Setup("no server".to_owned())),
    };
    let pid = server.as_ref().and_then(Server::pid);
    // Idle: after start, before any load.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss = pid.and_then(|p| memory_kib(p, "VmRSS"));

    let tally = Arc::new(Tally::new(args.messages, args.fanout));
    let stop = CancellationToken::new();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let receiver_base = format!("http://{}", listener.local_addr()?);
    receiver::spawn(listener, tally.clone(), stop.clone());

    let api = Api::new(base, token)?;
    let (app_id, endpoints) = api.setup(&receiver_base, args.fanout, args.backlog).await?;

    let peak = Arc::new(AtomicU64::new(idle_rss.unwrap_or(0)));
    if let Some(pid) = pid {
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
        let at_enable = pid.and_then(|p| memory_kib(p, "VmRSS"));
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
    let outcome = publishing
        .await
        .map_err(|e| BenchError::Setup(format!("the publishers failed: {e}")))?;
    // Late duplicates show up shortly after the last delivery, if at all.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();

    let delivered = tally.delivered.load(Ordering::Relaxed);
    let delivery_secs = (tally.last_at_us.load(Ordering::Relaxed).saturating_sub(started_us)) as f64 / 1e6;
    let peak_rss = pid.map(|p| {
        let hwm = memory_kib(p, "VmHWM").unwrap_or(0);
        hwm.max(peak.load(Ordering::Relaxed))
    });
    let backlog = backlog_started.map(|(enable_seconds, at_enable)| BacklogReport {
        enable_seconds,
        rss_at_enable_mib: at_enable.map(mib),
        drain_peak_rss_mib: pid.map(|_| mib(peak.load(Ordering::Relaxed))),
    });
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
        backlog,
        seconds: started.elapsed().as_secs_f64(),
    };
    if let Some(server) = server {
        server.stop().await;
    }
    Ok(report)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    fn new(base: String, token: String) -> Result<Self, BenchError> {
        let http = reqwest::Client::builder().pool_max_idle_per_host(1024).build()?;
        Ok(Self { http, base, token })
    }

    async fn post(&self, path: &str, body: &serde_json::Value) -> Result<reqwest::Response, BenchError> {
        self.send(reqwest::Method::POST, path, body).await
    }

    async fn patch(&self, path: &str, body: &serde_json::Value) -> Result<reqwest::Response, BenchError> {
        self.send(reqwest::Method::PATCH, path, body).await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<reqwest::Response, BenchError> {
        Ok(self
            .http
            .request(method, format!("{}{path}", self.base))
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
                match api.post(&path, &body).await {
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
        "  server RSS MiB    idle {}  peak {}",
        opt(r.idle_rss_mib),
        opt(r.peak_rss_mib)
    );
    if let Some(b) = &r.backlog {
        println!(
            "  backlog           enabled in {:.1} s; RSS {} MiB then, peak {} MiB while it drained",
            b.enable_seconds,
            opt(b.rss_at_enable_mib),
            opt(b.drain_peak_rss_mib)
        );
    }
}
