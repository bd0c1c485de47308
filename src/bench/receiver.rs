//! The bench's receiver: as little work per request as counting needs, so
//! Herald's delivery path, not the receiver, is what is measured.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What every bench payload starts with; the padding after it is ignored.
#[derive(Deserialize)]
pub struct Stamp {
    pub seq: u64,
    /// Microseconds since the Unix epoch when the publisher sent it.
    #[serde(rename = "sentAt")]
    pub sent_at: u64,
}

pub struct Tally {
    messages: u64,
    /// Receipts per (endpoint, message), to find losses and duplicates.
    seen: Vec<AtomicU8>,
    pub delivered: AtomicU64,
    pub duplicates: AtomicU64,
    pub last_at_us: AtomicU64,
    latencies_us: std::sync::Mutex<Vec<u32>>,
}

impl Tally {
    pub fn new(messages: u64, endpoints: u64) -> Self {
        Self {
            messages,
            seen: (0..messages * endpoints).map(|_| AtomicU8::new(0)).collect(),
            delivered: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            last_at_us: AtomicU64::new(0),
            latencies_us: std::sync::Mutex::new(Vec::with_capacity((messages * endpoints) as usize)),
        }
    }

    fn record(&self, endpoint: u64, stamp: &Stamp) {
        let now = now_us();
        let Some(slot) = self.seen.get((endpoint * self.messages + stamp.seq) as usize) else {
            return;
        };
        if slot.fetch_add(1, Ordering::Relaxed) > 0 {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.delivered.fetch_add(1, Ordering::Relaxed);
        self.last_at_us.fetch_max(now, Ordering::Relaxed);
        let latency = u32::try_from(now.saturating_sub(stamp.sent_at)).unwrap_or(u32::MAX);
        if let Ok(mut l) = self.latencies_us.lock() {
            l.push(latency);
        }
    }

    /// Latencies so far, sorted.
    pub fn latencies(&self) -> Vec<u32> {
        let mut l = self.latencies_us.lock().map(|l| l.clone()).unwrap_or_default();
        l.sort_unstable();
        l
    }
}

pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

async fn receive(State(tally): State<Arc<Tally>>, Path(endpoint): Path<u64>, body: Bytes) -> StatusCode {
    match serde_json::from_slice::<Stamp>(&body) {
        Ok(stamp) => {
            tally.record(endpoint, &stamp);
            StatusCode::NO_CONTENT
        }
        Err(_) => StatusCode::BAD_REQUEST,
    }
}

/// Serves `POST /e/{endpoint}` on `listener` until `stop`.
pub fn spawn(listener: TcpListener, tally: Arc<Tally>, stop: CancellationToken) {
    let app = Router::new().route("/e/{endpoint}", post(receive)).with_state(tally);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
    });
}
