//! The soak's receivers, one HTTP server on loopback with four behaviours:
//! healthy (2xx at once), slow (random latency, some of it past the request
//! timeout), failing (500 always) and flapping (2xx, then 500, by windows of
//! time). Each records what arrived by (target, kind, message seq), so
//! losses and duplicates can be counted at the end.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use rand::Rng;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The four receiver behaviours; every endpoint of a target is one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Healthy,
    Slow,
    Failing,
    Flapping,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Healthy, Kind::Slow, Kind::Failing, Kind::Flapping];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Healthy => "healthy",
            Kind::Slow => "slow",
            Kind::Failing => "failing",
            Kind::Flapping => "flapping",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// Flapping: answers 2xx for this long…
pub const FLAP_UP: Duration = Duration::from_secs(4);
/// …then 500 for this long, and again.
pub const FLAP_DOWN: Duration = Duration::from_secs(8);

/// What one (target, kind, seq) received.
#[derive(Debug, Default, Clone)]
pub struct Arrivals {
    /// Requests that arrived, whatever the answer.
    pub requests: u32,
    /// Requests answered 2xx within the request timeout: deliveries.
    pub delivered: u32,
    /// A webhook-id other than the first one seen for this seq.
    pub other_id: bool,
    first_id: Option<String>,
}

#[derive(Default)]
pub struct Tally {
    seen: Mutex<HashMap<(String, Kind), HashMap<u64, Arrivals>>>,
}

impl Tally {
    fn arrived(&self, target: &str, kind: Kind, seq: u64, id: Option<&str>) {
        self.with(target, kind, seq, |a| {
            a.requests += 1;
            match (&a.first_id, id) {
                (None, Some(id)) => a.first_id = Some(id.to_owned()),
                (Some(first), Some(id)) if first != id => a.other_id = true,
                _ => {}
            }
        });
    }

    fn delivered(&self, target: &str, kind: Kind, seq: u64) {
        self.with(target, kind, seq, |a| a.delivered += 1);
    }

    fn with(&self, target: &str, kind: Kind, seq: u64, f: impl FnOnce(&mut Arrivals)) {
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        let a = seen
            .entry((target.to_owned(), kind))
            .or_default()
            .entry(seq)
            .or_default();
        f(a);
    }

    /// A copy of what one target's receiver of `kind` saw, by seq.
    pub fn of(&self, target: &str, kind: Kind) -> HashMap<u64, Arrivals> {
        self.seen
            .lock()
            .ok()
            .and_then(|s| s.get(&(target.to_owned(), kind)).cloned())
            .unwrap_or_default()
    }

    /// Requests received so far, all targets and kinds.
    pub fn requests(&self) -> u64 {
        self.seen.lock().map_or(0, |s| {
            s.values().flat_map(|m| m.values()).map(|a| u64::from(a.requests)).sum()
        })
    }
}

#[derive(Deserialize)]
struct Stamp {
    seq: u64,
}

struct Shared {
    tally: Arc<Tally>,
    started: Instant,
    /// Herald's request timeout: slow answers past it are not deliveries.
    timeout: Duration,
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    Path((target, kind)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let Some(kind) = Kind::parse(&kind) else {
        return StatusCode::NOT_FOUND;
    };
    let Ok(stamp) = serde_json::from_slice::<Stamp>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let id = headers.get("webhook-id").and_then(|v| v.to_str().ok());
    let (status, delay, delivered) = match kind {
        Kind::Healthy => (StatusCode::NO_CONTENT, Duration::ZERO, true),
        Kind::Failing => (StatusCode::INTERNAL_SERVER_ERROR, Duration::ZERO, false),
        Kind::Flapping => {
            let period = (FLAP_UP + FLAP_DOWN).as_millis();
            let phase = shared.started.elapsed().as_millis() % period;
            if phase < FLAP_UP.as_millis() {
                (StatusCode::OK, Duration::ZERO, true)
            } else {
                (StatusCode::INTERNAL_SERVER_ERROR, Duration::ZERO, false)
            }
        }
        Kind::Slow => {
            // Nine in ten well within the timeout, one in ten well past it:
            // never so near it that who won the race is in doubt.
            let mut rng = rand::thread_rng();
            if rng.gen_ratio(1, 10) {
                (StatusCode::OK, shared.timeout + Duration::from_millis(1500), false)
            } else {
                let ms = rng.gen_range(20..=(shared.timeout.as_millis() as u64 / 2).max(21));
                (StatusCode::OK, Duration::from_millis(ms), true)
            }
        }
    };
    shared.tally.arrived(&target, kind, stamp.seq, id);
    // A delivery is counted when the answer leaves, so one cut short by
    // Herald's timeout (or by a killed node) is not.
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if delivered {
        shared.tally.delivered(&target, kind, stamp.seq);
    }
    status
}

/// Serves `POST /r/{target}/{kind}` on `listener` until `stop`.
pub fn spawn(listener: TcpListener, tally: Arc<Tally>, timeout: Duration, stop: CancellationToken) {
    let shared = Arc::new(Shared {
        tally,
        started: Instant::now(),
        timeout,
    });
    let app = Router::new()
        .route("/r/{target}/{kind}", post(receive))
        .with_state(shared);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
    });
}
