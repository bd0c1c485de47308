//! The nodes' logs, read at the end: every WARN or ERROR line must match a
//! known cause, and most causes only while the chaos event that brings them
//! about is under way (or shortly after). Anything else fails the soak.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::{Event, EventKind};

/// A known cause of a WARN or ERROR line.
struct Rule {
    /// Text the line contains.
    needle: &'static str,
    /// Why it is expected.
    cause: &'static str,
    /// Only while (or shortly after) one of these events; empty: at any time.
    during: &'static [EventKind],
    /// Only when the line names an endpoint of a receiver that fails on purpose.
    failing_receiver: bool,
}

const PG: &[EventKind] = &[EventKind::PgRestart];
const STORE_DOWN: &[EventKind] = &[EventKind::PgRestart, EventKind::DiskFull];
const DISK: &[EventKind] = &[EventKind::DiskFull];
const STOP: &[EventKind] = &[EventKind::Term];
const CLUSTER: &[EventKind] = &[EventKind::Kill, EventKind::Term, EventKind::PgRestart];

const fn during(needle: &'static str, cause: &'static str, during: &'static [EventKind]) -> Rule {
    Rule {
        needle,
        cause,
        during,
        failing_receiver: false,
    }
}

/// The database out of reach (PostgreSQL restarting) or out of room (the
/// SQLite disk full): every background loop and request that touches it
/// says so and tries again.
const STORE_CAUSE: &str = "the database was restarting or its disk full; the work is retried";

const RULES: &[Rule] = &[
    Rule {
        needle: "delivery exhausted its retries",
        cause: "a delivery to the failing, flapping or slow receiver used up its retries (its final state)",
        during: &[],
        failing_receiver: true,
    },
    during(
        "the database is unreachable",
        "a node started while PostgreSQL was down, and waited for it",
        PG,
    ),
    during(
        "slow statement: execution time exceeded alert threshold",
        "sqlx: a statement took over 1 s, waiting on rows a killed node's transaction held until PostgreSQL saw it gone, or on PostgreSQL's recovery",
        CLUSTER,
    ),
    during(
        "lost the PostgreSQL wake-up channel",
        "PostgreSQL's restart cut the LISTEN connection; it reconnects",
        PG,
    ),
    during(
        "cannot listen for wake-ups",
        "PostgreSQL was down while the wake-up channel reconnected",
        PG,
    ),
    during(
        "terminating connection due to",
        "PostgreSQL's fast or immediate stop cut the connections (its notice, logged by sqlx)",
        PG,
    ),
    during(
        "the database system is",
        "PostgreSQL was stopping, starting or recovering",
        PG,
    ),
    during("recording an attempt failed", STORE_CAUSE, STORE_DOWN),
    during("claiming deliveries failed", STORE_CAUSE, STORE_DOWN),
    during("reading the next due time failed", STORE_CAUSE, STORE_DOWN),
    during("deferring a delivery failed", STORE_CAUSE, STORE_DOWN),
    during("recording the endpoint's health failed", STORE_CAUSE, STORE_DOWN),
    during("removing expired payloads failed", STORE_CAUSE, STORE_DOWN),
    during("removing old history failed", STORE_CAUSE, STORE_DOWN),
    during("removing old idempotency keys failed", STORE_CAUSE, STORE_DOWN),
    during("reading applications' history windows failed", STORE_CAUSE, STORE_DOWN),
    during("recording an idempotency key failed", STORE_CAUSE, STORE_DOWN),
    during("cannot look for interrupted background tasks", STORE_CAUSE, STORE_DOWN),
    during("repeating endpoint checks failed", STORE_CAUSE, STORE_DOWN),
    during("cannot refresh the secret keys", STORE_CAUSE, STORE_DOWN),
    during("claiming operator emails failed", STORE_CAUSE, STORE_DOWN),
    during(
        "reading when the next operator email is due failed",
        STORE_CAUSE,
        STORE_DOWN,
    ),
    during(
        "acquired connection, but time to acquire exceeded slow threshold",
        "sqlx: requests waited for a connection while the database was restarting or full",
        STORE_DOWN,
    ),
    during(
        "error occurred while testing the connection on-release",
        "sqlx: a pooled connection found cut by PostgreSQL's restart is dropped",
        PG,
    ),
    during(
        "response failed classification=Status code: 503",
        "the API answered 503 (try again) while the database was restarting or full",
        STORE_DOWN,
    ),
    during(
        "a failed commit left the writer connection inside its transaction",
        "a commit failed on the full disk; the writer connection is replaced",
        DISK,
    ),
    during("database or disk is full", "the SQLite disk was full", DISK),
    during(
        "shutdown grace period over",
        "a node stopped with SIGTERM while deliveries were in flight",
        STOP,
    ),
];

/// How long after an event its consequences may still be logged: retries
/// back off up to a few seconds, leases last a few more.
const SETTLE: i64 = 30;

#[derive(Debug, Default, Serialize)]
pub struct LogReport {
    /// WARN and ERROR lines by cause.
    pub explained: BTreeMap<String, u64>,
    /// Lines no cause explains (the first 40), with the node they came from.
    pub unexplained: Vec<String>,
    pub unexplained_count: u64,
    pub lines: u64,
}

impl LogReport {
    /// Reads one node's log; `failing` are the ids of the endpoints whose
    /// receivers fail on purpose.
    pub fn read(name: &str, file: &Path, events: &[Event], target: &str, failing: &[String], into: &mut LogReport) {
        let Ok(text) = std::fs::read_to_string(file) else {
            into.push_unexplained(format!("{name}: its log {} cannot be read", file.display()));
            return;
        };
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            into.lines += 1;
            let mut words = line.split_whitespace();
            let at = words.next().and_then(|w| DateTime::parse_from_rfc3339(w).ok());
            let level = words.next().unwrap_or_default();
            let Some(at) = at else {
                into.push_unexplained(format!("{name}: {line}"));
                continue;
            };
            if level != "WARN" && level != "ERROR" {
                continue;
            }
            let at = at.with_timezone(&Utc);
            match explain(line, at, events, target, failing) {
                Some(cause) => *into.explained.entry(cause.to_owned()).or_default() += 1,
                None => into.push_unexplained(format!("{name}: {line}")),
            }
        }
    }

    fn push_unexplained(&mut self, line: String) {
        self.unexplained_count += 1;
        if self.unexplained.len() < 40 {
            self.unexplained.push(line);
        }
    }
}

fn explain(line: &str, at: DateTime<Utc>, events: &[Event], target: &str, failing: &[String]) -> Option<&'static str> {
    RULES.iter().find_map(|rule| {
        if !line.contains(rule.needle) {
            return None;
        }
        if rule.failing_receiver && !failing.iter().any(|id| line.contains(&format!("endpoint_id={id}"))) {
            return None;
        }
        let fits = rule.during.is_empty()
            || events.iter().any(|e| {
                e.target == target
                    && rule.during.contains(&e.kind)
                    && at >= e.at - Duration::seconds(2)
                    && at <= e.end + Duration::seconds(SETTLE)
            });
        fits.then_some(rule.cause)
    })
}
