//! `herald soak`: publish without pause to healthy, slow, failing and
//! flapping receivers on a cluster of Herald nodes over the soak's own
//! PostgreSQL, while a chaos loop kills and restarts nodes (SIGKILL and
//! SIGTERM) and restarts PostgreSQL; beside it, a single node on SQLite
//! whose small disk is filled and freed. At the end, every accepted message
//! must be delivered or in its documented final state, duplicates within
//! the in-flight bound per crash, memory flat, and every error or warning
//! in the nodes' logs explained by the chaos that caused it.

mod check;
mod disk;
mod logs;
mod nodes;
mod postgres;
mod publisher;
mod receivers;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use nodes::{Node, Nodes};
use publisher::Publisher;
use receivers::{Kind, Tally};

#[derive(Debug, thiserror::Error)]
pub enum SoakError {
    #[error("{0}")]
    Setup(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
}

/// `herald soak`'s flags (its description is the subcommand's, in main.rs).
#[derive(Debug, Clone, clap::Args)]
pub struct SoakArgs {
    /// How long to publish under chaos (the drain and checks come after)
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Herald nodes on the PostgreSQL cluster
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub nodes: u32,
    /// Messages per second published to the cluster (each goes to four endpoints)
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// Messages per second published to the single SQLite node
    #[arg(long, default_value_t = 10.0)]
    pub sqlite_rate: f64,
    /// Mean time between two chaos events (each loop draws 0.5–1.5× this)
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub chaos_every: Duration,
    /// Seed of the chaos loops' choices [default: random, printed]
    #[arg(long)]
    pub seed: Option<u64>,
    /// HERALD_MAX_IN_FLIGHT_PER_ENDPOINT of the nodes; the duplicate bound
    /// is this many per crash and endpoint
    #[arg(long, default_value_t = 8)]
    pub in_flight: usize,
    /// HERALD_REQUEST_TIMEOUT of the nodes; the slow receiver answers one
    /// request in ten well after it
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
    /// After the load stops, how long the queues may go without draining
    /// further before the soak stops waiting (a backlog that keeps shrinking
    /// is waited for, up to ten times this)
    #[arg(long, default_value = "3m", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
    /// Leave out the single-node SQLite run (its disk needs root to mount)
    #[arg(long)]
    pub skip_sqlite: bool,
    /// Print the report as JSON instead of text
    #[arg(long)]
    pub json: bool,
    /// Also write the report as JSON to this file
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Keep the working directory (node logs, PostgreSQL's data and log)
    /// and print where it is
    #[arg(long)]
    pub keep: bool,
}

/// One thing the chaos loops did, with when it started and ended.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub kind: EventKind,
    pub target: &'static str,
    pub detail: String,
    pub at: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A node killed with SIGKILL, then started again.
    Kill,
    /// A node stopped with SIGTERM (SIGKILL after the grace), then started again.
    Term,
    /// PostgreSQL stopped (fast or immediate) and started again.
    PgRestart,
    /// The SQLite disk filled to the last byte, then freed.
    DiskFull,
}

impl EventKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Kill => "kill",
            Self::Term => "term",
            Self::PgRestart => "pg_restart",
            Self::DiskFull => "disk_full",
        }
    }
}

type Events = Arc<Mutex<Vec<Event>>>;

/// A target: nodes over one database, one application with one endpoint
/// per receiver kind.
struct Target {
    name: &'static str,
    nodes: Nodes,
    app_id: String,
    endpoints: Vec<(Kind, String)>,
    publisher: Arc<Publisher>,
}

/// A working directory removed at the end unless kept.
struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

const TOKEN_PREFIX: &str = "soak";

/// Runs the soak and prints its report; answers whether every check passed.
/// Ctrl-C or SIGTERM ends it early, stopping its nodes and its PostgreSQL
/// and unmounting its disk.
pub async fn run(args: SoakArgs) -> Result<bool, SoakError> {
    let term = crate::terminated();
    tokio::select! {
        r = run_soak(args) => r,
        _ = tokio::signal::ctrl_c() => Err(SoakError::Setup("interrupted".to_owned())),
        () = term => Err(SoakError::Setup("terminated".to_owned())),
    }
}

async fn run_soak(args: SoakArgs) -> Result<bool, SoakError> {
    let seed = args.seed.unwrap_or_else(rand::random);
    let started = Instant::now();
    let since = move || started.elapsed().as_secs_f64();
    let work = WorkDir {
        path: std::env::temp_dir().join(format!("herald-soak-{}", crate::domain::ids::AppId::generate())),
        keep: args.keep,
    };
    std::fs::create_dir_all(&work.path)?;
    let logs_dir = work.path.join("logs");
    std::fs::create_dir_all(&logs_dir)?;
    let program = nodes::node_program(&work.path)?;
    say(&args, &format!("soak: seed {seed}, working in {}", work.path.display()));

    let token = format!("{TOKEN_PREFIX}-{}", crate::domain::ids::AppId::generate());
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    let tally = Arc::new(Tally::default());
    let stop_receivers = CancellationToken::new();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let receiver_base = format!("http://{}", listener.local_addr()?);
    receivers::spawn(listener, tally.clone(), args.request_timeout, stop_receivers.clone());

    // The cluster, on the soak's own PostgreSQL.
    let pg = Arc::new(postgres::Postgres::create(&work.path, nodes::free_port()?)?);
    say(&args, &format!("soak: PostgreSQL on port {}", pg.port));
    let env = nodes::common_env(&pg.url(), &token, args.in_flight, args.request_timeout);
    let mut cluster = Vec::new();
    for i in 0..args.nodes {
        let mut node = Node::new(&format!("node{}", i + 1), &program, &logs_dir, env.clone())?;
        node.spawn(since())?;
        cluster.push(node);
    }
    let cluster: Nodes = Arc::new(Mutex::new(cluster));
    wait_all_healthy(&http, &cluster, Duration::from_secs(60)).await?;

    // The single node, on SQLite on its own small disk.
    let mut disk = None;
    let mut single = None;
    if !args.skip_sqlite {
        // Room for the whole run's history (about 10 KiB a message with its
        // deliveries and attempts, here 24), so the disk is full only when
        // the chaos fills it.
        let needed_mib = (args.sqlite_rate * args.duration.as_secs_f64() * 24.0 / 1024.0).ceil() as u64;
        let d = disk::SmallDisk::mount(&work.path.join("sqlite"), needed_mib.max(64))?;
        let url = format!("sqlite://{}", d.path().join("herald.db").display());
        let mut node = Node::new(
            "sqlite",
            &program,
            &logs_dir,
            nodes::common_env(&url, &token, args.in_flight, args.request_timeout),
        )?;
        node.spawn(since())?;
        let nodes: Nodes = Arc::new(Mutex::new(vec![node]));
        wait_all_healthy(&http, &nodes, Duration::from_secs(60)).await?;
        single = Some(nodes);
        disk = Some(Arc::new(d));
    }

    let mut targets = vec![setup_target(&http, "cluster", cluster.clone(), &token, &receiver_base).await?];
    if let Some(nodes) = &single {
        targets.push(setup_target(&http, "sqlite", nodes.clone(), &token, &receiver_base).await?);
    }

    // Memory, every two seconds, of every node alive.
    let stop_sampling = CancellationToken::new();
    let sampler = {
        let all: Vec<Nodes> = targets.iter().map(|t| t.nodes.clone()).collect();
        let stop = stop_sampling.clone();
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                for nodes in &all {
                    if let Ok(mut n) = nodes.lock() {
                        n.iter_mut().for_each(|n| n.sample(since()));
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(2)) => {}
                    () = stop.cancelled() => {}
                }
            }
        })
    };

    // Load and chaos.
    let load_stop = CancellationToken::new();
    let give_up = CancellationToken::new();
    let events: Events = Arc::new(Mutex::new(Vec::new()));
    let mut publishing = Vec::new();
    for t in &targets {
        let rate = if t.name == "cluster" {
            args.rate
        } else {
            args.sqlite_rate
        };
        publishing.push(tokio::spawn(t.publisher.clone().run(
            rate,
            64,
            load_stop.clone(),
            give_up.clone(),
        )));
    }
    let mut chaos = vec![tokio::spawn(cluster_chaos(
        ChaosCtx {
            http: http.clone(),
            events: events.clone(),
            stop: load_stop.clone(),
            every: args.chaos_every,
            rng: StdRng::seed_from_u64(seed),
            started,
        },
        cluster.clone(),
        pg.clone(),
    ))];
    if let Some(d) = &disk {
        chaos.push(tokio::spawn(disk_chaos(
            ChaosCtx {
                http: http.clone(),
                events: events.clone(),
                stop: load_stop.clone(),
                every: args.chaos_every,
                rng: StdRng::seed_from_u64(seed.wrapping_add(1)),
                started,
            },
            d.clone(),
        )));
    }
    let progress = tokio::spawn(progress_lines(
        args.clone(),
        targets.iter().map(|t| t.publisher.clone()).collect(),
        tally.clone(),
        events.clone(),
        load_stop.clone(),
        started,
    ));

    tokio::time::sleep(args.duration).await;
    let load_seconds = since();
    load_stop.cancel();
    say(
        &args,
        "soak: load stopped; waiting for the chaos to settle and the queues to drain",
    );
    let mut chaos_errors = Vec::new();
    for c in chaos {
        match c.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => chaos_errors.push(e.to_string()),
            Err(e) => chaos_errors.push(format!("a chaos loop failed: {e}")),
        }
    }
    let _ = progress.await;
    // Every node up for the drain.
    for t in &targets {
        if let Err(e) = wait_all_healthy(&http, &t.nodes, Duration::from_secs(60)).await {
            chaos_errors.push(format!("{}: {e}", t.name));
        }
    }
    // Publishes still retrying get a minute to be answered.
    let give_up_timer = {
        let give_up = give_up.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            give_up.cancel();
        })
    };
    for p in publishing {
        let _ = p.await;
    }
    give_up_timer.abort();
    for t in &targets {
        t.publisher.resolve().await;
    }
    let drain_started = Instant::now();
    let stats = drain(&http, &targets, &token, args.drain_timeout).await;
    let drain_seconds = drain_started.elapsed().as_secs_f64();
    // Late duplicates show up shortly after the last delivery, if at all.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_sampling.cancel();
    let _ = sampler.await;
    let end_s = since();
    for t in &targets {
        nodes::stop_all(&t.nodes, end_s).await;
    }
    stop_receivers.cancel();

    let events = events.lock().map(|e| e.clone()).unwrap_or_default();
    let report = check::Report::build(check::Inputs {
        args: &args,
        seed,
        load_seconds,
        drain_seconds,
        targets: &targets,
        stats: &stats,
        tally: &tally,
        events: &events,
        chaos_errors,
    });
    let json = serde_json::to_string_pretty(&report).unwrap_or_default();
    if let Some(out) = &args.out {
        std::fs::write(out, &json)?;
    }
    if args.json {
        println!("{json}");
    } else {
        report.print();
    }
    if !report.passed {
        eprintln!("PostgreSQL's last log lines:\n{}", pg.log_tail(20));
    }
    if args.keep {
        if let Some(d) = &disk {
            keep_sqlite_files(d.path(), &work.path.join("sqlite-kept"));
        }
        eprintln!("soak: kept {}", work.path.display());
    }
    drop(disk);
    Ok(report.passed)
}

/// Copies the SQLite node's database off its disk, which is unmounted at
/// the end, so a kept run can be looked into.
fn keep_sqlite_files(from: &Path, to: &Path) {
    let copied = std::fs::create_dir_all(to).and_then(|()| {
        for name in ["herald.db", "herald.db-wal", "herald.db-shm"] {
            let file = from.join(name);
            if file.exists() {
                std::fs::copy(&file, to.join(name))?;
            }
        }
        Ok(())
    });
    if let Err(e) = copied {
        eprintln!("soak: could not keep the SQLite database: {e}");
    }
}

/// Progress on stderr (unless --json), a line every half minute.
fn say(args: &SoakArgs, line: &str) {
    if !args.json || std::env::var_os("HERALD_SOAK_VERBOSE").is_some() {
        eprintln!("{line}");
    }
}

async fn progress_lines(
    args: SoakArgs,
    publishers: Vec<Arc<Publisher>>,
    tally: Arc<Tally>,
    events: Events,
    stop: CancellationToken,
    started: Instant,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(30)) => {}
            () = stop.cancelled() => return,
        }
        let accepted: Vec<String> = publishers
            .iter()
            .map(|p| {
                let n = p.published.lock().map_or(0, |p| p.accepted.len());
                format!("{} {n}", p.target)
            })
            .collect();
        let n_events = events.lock().map_or(0, |e| e.len());
        say(
            &args,
            &format!(
                "soak: {:>5.0}s accepted [{}], {} receiver requests, {n_events} chaos events",
                started.elapsed().as_secs_f64(),
                accepted.join(", "),
                tally.requests()
            ),
        );
    }
}

async fn wait_all_healthy(http: &reqwest::Client, nodes: &Nodes, within: Duration) -> Result<(), SoakError> {
    let bases: Vec<(String, String)> = nodes
        .lock()
        .map(|n| n.iter().map(|n| (n.name.clone(), n.base.clone())).collect())
        .unwrap_or_default();
    for (name, base) in bases {
        if !nodes::wait_healthy(http, &base, within).await {
            return Err(SoakError::Setup(format!(
                "{name} did not become healthy within {}s",
                within.as_secs()
            )));
        }
    }
    Ok(())
}

async fn setup_target(
    http: &reqwest::Client,
    name: &'static str,
    nodes: Nodes,
    token: &str,
    receiver_base: &str,
) -> Result<Target, SoakError> {
    let bases: Vec<String> = nodes
        .lock()
        .map(|n| n.iter().map(|n| n.base.clone()).collect())
        .unwrap_or_default();
    let base = bases
        .first()
        .cloned()
        .ok_or_else(|| SoakError::Setup("no node".to_owned()))?;
    let post = |path: String, body: serde_json::Value| {
        let req = http.post(format!("{base}{path}")).bearer_auth(token).json(&body);
        async move {
            let r = req.send().await?;
            let status = r.status();
            let v: serde_json::Value = r.json().await?;
            if !status.is_success() {
                return Err(SoakError::Setup(format!("{path}: {status} {v}")));
            }
            Ok::<_, SoakError>(v)
        }
    };
    let app = post("/api/v1/app".to_owned(), json!({"name": format!("soak {name}")})).await?;
    let app_id = app["id"].as_str().unwrap_or_default().to_owned();
    let mut endpoints = Vec::new();
    for kind in Kind::ALL {
        let ep = post(
            format!("/api/v1/app/{app_id}/endpoint"),
            json!({"url": format!("{receiver_base}/r/{name}/{}", kind.name()), "description": kind.name()}),
        )
        .await?;
        endpoints.push((kind, ep["id"].as_str().unwrap_or_default().to_owned()));
    }
    let publisher = Publisher::new(http.clone(), bases, token.to_owned(), app_id.clone(), name);
    Ok(Target {
        name,
        nodes,
        app_id,
        endpoints,
        publisher,
    })
}

struct ChaosCtx {
    http: reqwest::Client,
    events: Events,
    stop: CancellationToken,
    every: Duration,
    rng: StdRng,
    started: Instant,
}

impl ChaosCtx {
    /// Sleeps 0.5–1.5× the mean interval; false when the load stopped meanwhile.
    async fn pause(&mut self) -> bool {
        let secs = self.every.as_secs_f64() * self.rng.gen_range(0.5..1.5);
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs_f64(secs)) => !self.stop.is_cancelled(),
            () = self.stop.cancelled() => false,
        }
    }

    fn record(&self, kind: EventKind, target: &'static str, detail: String, at: DateTime<Utc>) {
        if let Ok(mut e) = self.events.lock() {
            e.push(Event {
                kind,
                target,
                detail,
                at,
                end: Utc::now(),
            });
        }
    }

    fn since(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

/// Kills (SIGKILL) or stops (SIGTERM) a node other than the first, or
/// restarts PostgreSQL; after each, waits until every node answers again.
async fn cluster_chaos(mut ctx: ChaosCtx, nodes: Nodes, pg: Arc<postgres::Postgres>) -> Result<(), SoakError> {
    let count = nodes.lock().map_or(0, |n| n.len());
    while ctx.pause().await {
        let at = Utc::now();
        let roll = ctx.rng.gen_range(0..10);
        let (kind, detail) = if roll < 7 && count > 0 {
            // The first node is spared (unless it is the only one): its
            // memory is watched over the whole run.
            let victim = if count > 1 { ctx.rng.gen_range(1..count) } else { 0 };
            let sigkill = roll < 4;
            let now = ctx.since();
            let (child, name) = nodes
                .lock()
                .map(|mut n| (n[victim].take(now), n[victim].name.clone()))
                .map_err(|_| SoakError::Setup("node list poisoned".to_owned()))?;
            let how = match child {
                Some(child) if sigkill => {
                    nodes::kill(child);
                    "SIGKILL".to_owned()
                }
                Some(child) => {
                    if nodes::terminate(child, Duration::from_secs(15)).await {
                        "SIGTERM, stopped".to_owned()
                    } else {
                        "SIGTERM, then SIGKILL after 15s".to_owned()
                    }
                }
                None => "not running".to_owned(),
            };
            let down = ctx.rng.gen_range(0.5..4.0);
            tokio::time::sleep(Duration::from_secs_f64(down)).await;
            let now = ctx.since();
            let base = nodes
                .lock()
                .map_err(|_| SoakError::Setup("node list poisoned".to_owned()))
                .and_then(|mut n| {
                    n[victim].spawn(now)?;
                    Ok(n[victim].base.clone())
                })?;
            if !nodes::wait_healthy(&ctx.http, &base, Duration::from_secs(60)).await {
                return Err(SoakError::Setup(format!("{name} did not come back within 60s")));
            }
            let kind = if sigkill { EventKind::Kill } else { EventKind::Term };
            (kind, format!("{name}: {how}, down {down:.1}s"))
        } else {
            let mode = if ctx.rng.gen_bool(0.5) { "fast" } else { "immediate" };
            let stop = pg.clone();
            let m = mode.to_owned();
            tokio::task::spawn_blocking(move || stop.stop(&m))
                .await
                .map_err(|e| SoakError::Setup(e.to_string()))??;
            let down = ctx.rng.gen_range(1.0..6.0);
            tokio::time::sleep(Duration::from_secs_f64(down)).await;
            let start = pg.clone();
            tokio::task::spawn_blocking(move || start.start())
                .await
                .map_err(|e| SoakError::Setup(e.to_string()))??;
            wait_all_healthy(&ctx.http, &nodes, Duration::from_secs(60)).await?;
            (EventKind::PgRestart, format!("pg_ctl stop -m {mode}, down {down:.1}s"))
        };
        ctx.record(kind, "cluster", detail, at);
    }
    Ok(())
}

/// Fills the SQLite node's disk, holds it full a few seconds, frees it.
async fn disk_chaos(mut ctx: ChaosCtx, disk: Arc<disk::SmallDisk>) -> Result<(), SoakError> {
    while ctx.pause().await {
        let at = Utc::now();
        let d = disk.clone();
        let written = tokio::task::spawn_blocking(move || d.fill())
            .await
            .map_err(|e| SoakError::Setup(e.to_string()))??;
        let hold = ctx.rng.gen_range(2.0..8.0);
        tokio::time::sleep(Duration::from_secs_f64(hold)).await;
        disk.free()?;
        ctx.record(
            EventKind::DiskFull,
            "sqlite",
            format!("{} MiB of ballast, full for {hold:.1}s", written / (1024 * 1024)),
            at,
        );
    }
    Ok(())
}

/// Endpoint stats (deliveries by state) of every target, once nothing is
/// pending or being sent, or once the backlog has not shrunk for `stall`.
/// A receiver slower than the load offered to it is left a backlog by the
/// run; it is not lost while it drains. Progress is read from each
/// target's queue-depth gauge: one count over the queue a second, where
/// the endpoints' stats would scan all their history, a load of the
/// checker's own on the node whose memory it judges. The stats are read
/// once, at the end, for the checks.
async fn drain(
    http: &reqwest::Client,
    targets: &[Target],
    token: &str,
    stall: Duration,
) -> Vec<(String, Kind, Option<check::Stats>)> {
    let started = Instant::now();
    let (mut lowest, mut progress_at, mut told_at) = (u64::MAX, started, started);
    loop {
        let mut left = 0;
        let mut unknown = false;
        for t in targets {
            match queue_depth(http, &first_base(t)).await {
                Some(n) => left += n,
                None => unknown = true,
            }
        }
        let now = Instant::now();
        if left < lowest {
            (lowest, progress_at) = (left, now);
        }
        let busy = unknown || left > 0;
        if !busy || now - progress_at >= stall || now - started >= stall * 10 {
            break;
        }
        if now - told_at >= Duration::from_secs(30) {
            eprintln!(
                "soak: {:>5.0}s into the drain, {left} deliveries left",
                (now - started).as_secs_f64()
            );
            told_at = now;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let mut all = Vec::new();
    for t in targets {
        let base = first_base(t);
        for (kind, ep) in &t.endpoints {
            let url = format!("{base}/api/v1/app/{}/endpoint/{ep}/stats", t.app_id);
            let stats: Option<check::Stats> = match http.get(url).bearer_auth(token).send().await {
                Ok(r) if r.status().is_success() => r.json().await.ok(),
                _ => None,
            };
            all.push((t.name.to_owned(), *kind, stats));
        }
    }
    all
}

/// The API address of a target's first node.
fn first_base(t: &Target) -> String {
    t.nodes
        .lock()
        .ok()
        .and_then(|n| n.first().map(|n| n.base.clone()))
        .unwrap_or_default()
}

/// Deliveries pending or being sent on a node's database, from its
/// `herald_queue_depth` gauge; `None` when the node does not answer.
async fn queue_depth(http: &reqwest::Client, base: &str) -> Option<u64> {
    let response = http.get(format!("{base}/metrics")).send().await.ok()?;
    let text = response.error_for_status().ok()?.text().await.ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("herald_queue_depth "))?
        .trim()
        .parse()
        .ok()
}
