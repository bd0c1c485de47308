//! The soak's verdict: what each receiver got against what the API accepted
//! and what Herald says became of each delivery, duplicates against the
//! bound, memory over the run, and the logs.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::logs::LogReport;
use super::nodes::Life;
use super::publisher::Published;
use super::receivers::{Arrivals, Kind, Tally};
use super::{Event, EventKind, SoakArgs, Target};

/// Attempts per delivery with the nodes' retry schedule (four delays).
const MAX_ATTEMPTS: u32 = 5;
/// How long a node tries to record an attempt before it gives up and lets
/// the lease bring the delivery back (the dispatcher's 4 tries, 100 ms
/// doubling): the cycle at which a full disk can cost a slot's attempt.
const RECORD_GIVE_UP_MS: u64 = 700;
/// Runs shorter than this are too short to judge memory growth.
const MEMORY_JUDGED_FROM_S: f64 = 300.0;

/// An endpoint's deliveries by state (`GET …/endpoint/{id}/stats`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Stats {
    pub success: u64,
    pub pending: u64,
    pub sending: u64,
    pub fail: u64,
    #[serde(default)]
    pub held: u64,
    #[serde(default)]
    pub dropped: u64,
}

impl Stats {
    fn total(&self) -> u64 {
        self.success + self.pending + self.sending + self.fail + self.held + self.dropped
    }
}

pub struct Inputs<'a> {
    pub args: &'a SoakArgs,
    pub seed: u64,
    pub load_seconds: f64,
    pub drain_seconds: f64,
    pub targets: &'a [Target],
    pub stats: &'a [(String, Kind, Option<Stats>)],
    pub tally: &'a Tally,
    pub events: &'a [Event],
    pub chaos_errors: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub passed: bool,
    pub failures: Vec<String>,
    pub seed: u64,
    pub load_seconds: f64,
    pub drain_seconds: f64,
    pub nodes: u32,
    pub rate: f64,
    pub sqlite_rate: Option<f64>,
    pub in_flight_per_endpoint: usize,
    pub request_timeout_ms: u128,
    pub events: Vec<Event>,
    pub targets: Vec<TargetReport>,
    pub memory: Vec<NodeMemory>,
    pub logs: LogReport,
}

#[derive(Debug, Serialize)]
pub struct TargetReport {
    pub name: String,
    pub published: Published,
    pub events: BTreeMap<String, u64>,
    /// In-flight windows lost: each time a node may send again what a
    /// receiver already had, because its record of the attempt was lost. A
    /// node killed or stopped: one. PostgreSQL restarted: one per node. The
    /// SQLite disk full: one per record give-up cycle it stayed full, plus
    /// one (while full, the node keeps claiming and sending, and each
    /// attempt it cannot record is sent again after its lease).
    pub crashes: u64,
    /// The in-flight cap per endpoint times those windows.
    pub duplicate_bound: u64,
    pub endpoints: Vec<EndpointReport>,
}

#[derive(Debug, Serialize)]
pub struct EndpointReport {
    pub kind: &'static str,
    pub accepted: u64,
    /// Herald's account: deliveries by state.
    pub stats: Option<Stats>,
    /// Accepted messages the receiver answered 2xx in time at least once.
    pub delivered: u64,
    /// 2xx answers beyond the first for one message.
    pub duplicates: u64,
    /// Requests beyond the retry schedule's attempts (failing receiver).
    pub extra_attempts: u64,
    /// Accepted messages neither delivered nor in a final state: losses.
    pub lost: u64,
    /// Deliveries still pending or being sent when the drain ended.
    pub not_final: u64,
    /// Messages that arrived although no publish of them was acknowledged.
    pub arrived_unacknowledged: u64,
    /// Messages that arrived with two different webhook-ids.
    pub two_ids: u64,
}

#[derive(Debug, Serialize)]
pub struct NodeMemory {
    pub node: String,
    pub lives: usize,
    /// Watched over the whole run (never killed).
    pub watched: bool,
    pub start_mib: f64,
    pub peak_mib: f64,
    pub end_mib: f64,
    /// The anonymous memory (heap, stacks) within the RSS; the rest is
    /// mapped files, such as SQLite's shared-memory index.
    pub anon_peak_mib: f64,
    pub anon_end_mib: f64,
    /// Every 30 s of the node's lives: (seconds since the soak started,
    /// RSS MiB, anonymous MiB), for the report's JSON.
    pub samples: Vec<(f64, f64, f64)>,
    /// For a watched node: the highest RSS over the last fifth of its life
    /// minus the highest over its second fifth.
    pub growth_mib: Option<f64>,
    pub verdict: String,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

impl Report {
    pub fn build(i: Inputs<'_>) -> Self {
        let mut failures = i.chaos_errors.clone();
        let mut targets = Vec::new();
        let mut memory = Vec::new();
        let mut logs = LogReport::default();
        for t in i.targets {
            let mut events: BTreeMap<String, u64> = BTreeMap::new();
            for e in i.events.iter().filter(|e| e.target == t.name) {
                *events.entry(e.kind.name().to_owned()).or_default() += 1;
            }
            let node_count = t.nodes.lock().map_or(1, |n| n.len()) as u64;
            let crashes: u64 = i
                .events
                .iter()
                .filter(|e| e.target == t.name)
                .map(|e| match e.kind {
                    EventKind::Kill | EventKind::Term => 1,
                    EventKind::PgRestart => node_count,
                    EventKind::DiskFull => {
                        let full_ms = (e.end - e.at).num_milliseconds().max(0) as u64;
                        node_count * (1 + full_ms.div_ceil(RECORD_GIVE_UP_MS))
                    }
                })
                .sum();
            let bound = crashes * i.args.in_flight as u64;
            let published = t
                .publisher
                .published
                .lock()
                .map(|mut p| std::mem::take(&mut *p))
                .unwrap_or_default();
            for (reason, n) in &published.rejected {
                failures.push(format!("{}: {n} publishes refused for good: {reason}", t.name));
            }
            let mut endpoints = Vec::new();
            for (kind, _) in &t.endpoints {
                let stats = i
                    .stats
                    .iter()
                    .find(|(name, k, _)| name == t.name && k == kind)
                    .and_then(|(_, _, s)| s.clone());
                let got = i.tally.of(t.name, *kind);
                let ep = endpoint_report(*kind, &published, stats, &got);
                let label = format!("{} {}", t.name, kind.name());
                match &ep.stats {
                    None => failures.push(format!("{label}: the endpoint's stats could not be read")),
                    Some(s) => {
                        let total = s.total();
                        if total < ep.accepted {
                            failures.push(format!(
                                "{label}: {} accepted messages have no delivery",
                                ep.accepted - total
                            ));
                        }
                        if total > ep.accepted + published.not_accepted {
                            failures.push(format!(
                                "{label}: {} deliveries more than messages published",
                                total - ep.accepted - published.not_accepted
                            ));
                        }
                        if *kind == Kind::Healthy && s.fail > 0 {
                            failures.push(format!("{label}: {} deliveries failed on a healthy receiver", s.fail));
                        }
                        if *kind == Kind::Failing && s.success > 0 {
                            failures.push(format!(
                                "{label}: {} successes on a receiver that always fails",
                                s.success
                            ));
                        }
                        if s.success > ep.delivered + ep.arrived_unacknowledged {
                            failures.push(format!(
                                "{label}: Herald counts {} successes, the receiver answered 2xx for {}",
                                s.success, ep.delivered
                            ));
                        }
                    }
                }
                if ep.lost > 0 {
                    failures.push(format!("{label}: {} accepted messages lost", ep.lost));
                }
                if ep.not_final > 0 {
                    failures.push(format!(
                        "{label}: {} deliveries not in a final state after the drain",
                        ep.not_final
                    ));
                }
                if ep.duplicates > bound {
                    failures.push(format!(
                        "{label}: {} duplicates, over the bound of {bound} ({} in flight × {crashes} lost windows)",
                        ep.duplicates, i.args.in_flight
                    ));
                }
                if ep.extra_attempts > bound {
                    failures.push(format!(
                        "{label}: {} attempts beyond the schedule, over the bound of {bound}",
                        ep.extra_attempts
                    ));
                }
                if ep.two_ids > 0 {
                    failures.push(format!("{label}: {} messages arrived with two webhook-ids", ep.two_ids));
                }
                if ep.arrived_unacknowledged > published.not_accepted {
                    failures.push(format!(
                        "{label}: {} messages arrived that were never published",
                        ep.arrived_unacknowledged - published.not_accepted
                    ));
                }
                endpoints.push(ep);
            }
            let failing: Vec<String> = t
                .endpoints
                .iter()
                .filter(|(k, _)| *k != Kind::Healthy)
                .map(|(_, id)| id.clone())
                .collect();
            if let Ok(nodes) = t.nodes.lock() {
                for (index, node) in nodes.iter().enumerate() {
                    LogReport::read(&node.name, &node.log, i.events, t.name, &failing, &mut logs);
                    let watched = index == 0 && node.lives.len() == 1;
                    let m = node_memory(&node.name, &node.lives, watched, i.load_seconds);
                    if m.verdict.starts_with("GREW") {
                        failures.push(format!("{}: memory {}", m.node, m.verdict));
                    }
                    memory.push(m);
                }
            }
            targets.push(TargetReport {
                name: t.name.to_owned(),
                published,
                events,
                crashes,
                duplicate_bound: bound,
                endpoints,
            });
        }
        if logs.unexplained_count > 0 {
            failures.push(format!(
                "{} log lines at WARN or ERROR that no chaos event explains",
                logs.unexplained_count
            ));
        }
        Self {
            passed: failures.is_empty(),
            failures,
            seed: i.seed,
            load_seconds: i.load_seconds,
            drain_seconds: i.drain_seconds,
            nodes: i.args.nodes,
            rate: i.args.rate,
            sqlite_rate: (!i.args.skip_sqlite).then_some(i.args.sqlite_rate),
            in_flight_per_endpoint: i.args.in_flight,
            request_timeout_ms: i.args.request_timeout.as_millis(),
            events: i.events.to_vec(),
            targets,
            memory,
            logs,
        }
    }

    pub fn print(&self) {
        println!();
        println!(
            "Herald soak: {:.0}s of load (then {:.0}s of drain), {} cluster nodes at {} msg/s{}, seed {}",
            self.load_seconds,
            self.drain_seconds,
            self.nodes,
            self.rate,
            self.sqlite_rate
                .map(|r| format!(", one SQLite node at {r} msg/s"))
                .unwrap_or_default(),
            self.seed
        );
        for t in &self.targets {
            let p = &t.published;
            let events: Vec<String> = t.events.iter().map(|(k, v)| format!("{v} {k}")).collect();
            println!();
            println!(
                "{}: chaos {}; duplicate bound {} ({} per endpoint in flight × {} lost in-flight windows)",
                t.name,
                if events.is_empty() {
                    "none".to_owned()
                } else {
                    events.join(", ")
                },
                t.duplicate_bound,
                self.in_flight_per_endpoint,
                t.crashes
            );
            let retried: Vec<String> = p.retried.iter().map(|(k, v)| format!("{v} {k}")).collect();
            println!(
                "  published {} accepted of {} ({} on a retry answered 409, {} found at the end, {} not accepted); tries sent again: {}",
                p.accepted_count,
                p.attempted,
                p.accepted_on_retry,
                p.found_at_end,
                p.not_accepted,
                if retried.is_empty() {
                    "none".to_owned()
                } else {
                    retried.join(", ")
                }
            );
            println!(
                "  {:<9} {:>8} {:>8} {:>7} {:>7} {:>9} {:>9} {:>6} {:>6}",
                "receiver", "accepted", "success", "fail", "pending", "delivered", "dupl.", "extra", "lost"
            );
            for e in &t.endpoints {
                let s = e.stats.clone().unwrap_or_default();
                println!(
                    "  {:<9} {:>8} {:>8} {:>7} {:>7} {:>9} {:>9} {:>6} {:>6}",
                    e.kind,
                    e.accepted,
                    s.success,
                    s.fail,
                    s.pending + s.sending + s.held,
                    e.delivered,
                    e.duplicates,
                    e.extra_attempts,
                    e.lost
                );
            }
        }
        println!();
        println!("memory (RSS MiB)   lives   start    peak     end  anon peak/end   verdict");
        for m in &self.memory {
            println!(
                "  {:<16} {:>5} {:>7.1} {:>7.1} {:>7.1}  {:>6.1}/{:<6.1}  {}",
                m.node, m.lives, m.start_mib, m.peak_mib, m.end_mib, m.anon_peak_mib, m.anon_end_mib, m.verdict
            );
        }
        println!();
        println!("logs: {} lines; WARN/ERROR explained:", self.logs.lines);
        for (cause, n) in &self.logs.explained {
            println!("  {n:>6}  {cause}");
        }
        if self.logs.unexplained_count > 0 {
            println!("unexplained ({}):", self.logs.unexplained_count);
            for l in &self.logs.unexplained {
                println!("  {l}");
            }
        }
        println!();
        if self.passed {
            println!("PASSED");
        } else {
            println!("FAILED:");
            for f in &self.failures {
                println!("  - {f}");
            }
        }
    }
}

fn endpoint_report(
    kind: Kind,
    published: &Published,
    stats: Option<Stats>,
    got: &HashMap<u64, Arrivals>,
) -> EndpointReport {
    let accepted = &published.accepted;
    let delivered: HashSet<u64> = got
        .iter()
        .filter(|(s, a)| a.delivered > 0 && accepted.contains(s))
        .map(|(s, _)| *s)
        .collect();
    let duplicates = if kind == Kind::Failing {
        0
    } else {
        got.values().map(|a| u64::from(a.delivered.saturating_sub(1))).sum()
    };
    let extra_attempts = if kind == Kind::Failing {
        got.values()
            .map(|a| u64::from(a.requests.saturating_sub(MAX_ATTEMPTS)))
            .sum()
    } else {
        0
    };
    let s = stats.clone().unwrap_or_default();
    let not_final = s.pending + s.sending + s.held;
    let accepted_n = accepted.len() as u64;
    let lost = match kind {
        // Every accepted message arrives at a failing receiver before it is exhausted.
        Kind::Failing => {
            let never = accepted.iter().filter(|s| !got.contains_key(s)).count() as u64;
            never.saturating_sub(not_final)
        }
        // Not delivered: failed (its final state), still pending, or lost.
        _ => {
            let undelivered = accepted_n - delivered.len() as u64;
            undelivered.saturating_sub(s.fail + not_final)
        }
    };
    EndpointReport {
        kind: kind.name(),
        accepted: accepted_n,
        stats,
        delivered: delivered.len() as u64,
        duplicates,
        extra_attempts,
        lost,
        not_final,
        arrived_unacknowledged: got.keys().filter(|s| !accepted.contains(s)).count() as u64,
        two_ids: got.values().filter(|a| a.other_id).count() as u64,
    }
}

fn node_memory(name: &str, lives: &[Life], watched: bool, load_seconds: f64) -> NodeMemory {
    let anon_end = lives.last().and_then(|l| l.rss.last()).map_or(0, |s| s.2);
    let anon_peak = lives.iter().flat_map(|l| &l.rss).map(|s| s.2).max().unwrap_or(0);
    let samples: Vec<(f64, u64)> = lives.iter().flat_map(|l| l.rss.iter().map(|s| (s.0, s.1))).collect();
    let start = samples.first().map_or(0, |s| s.1);
    let end = samples.last().map_or(0, |s| s.1);
    let peak = samples.iter().map(|s| s.1).max().unwrap_or(0);
    let (growth, verdict) = if !watched {
        (
            None,
            format!("restarted {} times; not judged", lives.len().saturating_sub(1)),
        )
    } else if let (Some(first), Some(last)) = (samples.first(), samples.last()) {
        let span = last.0 - first.0;
        let window = |from: f64, to: f64| {
            samples
                .iter()
                .filter(|s| s.0 >= first.0 + span * from && s.0 <= first.0 + span * to)
                .map(|s| s.1)
                .max()
                .unwrap_or(0)
        };
        let (early, late) = (window(0.2, 0.4), window(0.8, 1.0));
        let growth = mib(late) - mib(early);
        let verdict = if load_seconds < MEMORY_JUDGED_FROM_S {
            format!("{growth:+.1} MiB from the second fifth to the last; run too short to judge")
        } else if growth > 16.0_f64.max(mib(early) * 0.3) {
            format!("GREW {growth:+.1} MiB from the second fifth of the run to the last")
        } else {
            format!("flat ({growth:+.1} MiB from the second fifth to the last)")
        };
        (Some(growth), verdict)
    } else {
        (None, "no samples".to_owned())
    };
    NodeMemory {
        node: name.to_owned(),
        lives: lives.len(),
        watched,
        start_mib: mib(start),
        peak_mib: mib(peak),
        end_mib: mib(end),
        anon_peak_mib: mib(anon_peak),
        anon_end_mib: mib(anon_end),
        samples: lives
            .iter()
            .flat_map(|l| l.rss.iter().step_by(15))
            .map(|s| (s.0.round(), mib(s.1), mib(s.2)))
            .collect(),
        growth_mib: growth,
        verdict,
    }
}
