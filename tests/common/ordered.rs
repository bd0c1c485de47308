//! A real receiver on loopback for ordered delivery: it logs when each
//! request began and ended and what it answered, counts the requests in
//! flight at once, and answers as the test decides. Each payload carries its
//! publish position as `{"n": …}`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use tokio::time::Instant;

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub n: u64,
    pub status: u16,
    pub began: Instant,
    pub ended: Instant,
}

type Answer = Box<dyn Fn(u64) -> u16 + Send + Sync>;

struct Inner {
    log: Mutex<Vec<Request>>,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
    /// How long each answer takes: long enough for a second request, if
    /// one were sent, to arrive while the first is still open.
    hold: Duration,
    answer: Answer,
}

#[derive(Clone)]
pub struct OrderedReceiver {
    pub url: String,
    inner: Arc<Inner>,
}

impl OrderedReceiver {
    /// Answers each request with what `answer` picks for its message.
    pub async fn start(hold: Duration, answer: impl Fn(u64) -> u16 + Send + Sync + 'static) -> Self {
        let inner = Arc::new(Inner {
            log: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            most_in_flight: AtomicUsize::new(0),
            hold,
            answer: Box::new(answer),
        });
        let app = axum::Router::new()
            .route("/hook", post(record))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("receiver runs");
        });
        Self { url, inner }
    }

    pub fn log(&self) -> Vec<Request> {
        self.inner.log.lock().expect("lock").clone()
    }

    /// The most requests that were open at the same moment.
    pub fn most_in_flight(&self) -> usize {
        self.inner.most_in_flight.load(Ordering::SeqCst)
    }

    /// Waits until `done` holds for the log; fails after `limit`.
    pub async fn wait_until(&self, limit: Duration, done: impl Fn(&[Request]) -> bool) -> Vec<Request> {
        let deadline = Instant::now() + limit;
        loop {
            let log = self.log();
            if done(&log) {
                return log;
            }
            assert!(Instant::now() < deadline, "condition not met in time; log: {log:#?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn record(State(inner): State<Arc<Inner>>, body: Bytes) -> StatusCode {
    let began = Instant::now();
    let open = inner.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    inner.most_in_flight.fetch_max(open, Ordering::SeqCst);
    let n = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["n"].as_u64())
        .unwrap_or(u64::MAX);
    tokio::time::sleep(inner.hold).await;
    let status = (inner.answer)(n);
    // Logged before it leaves: Herald cannot send the next one before this.
    inner.in_flight.fetch_sub(1, Ordering::SeqCst);
    inner.log.lock().expect("lock").push(Request {
        n,
        status,
        began,
        ended: Instant::now(),
    });
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// Whether a message is finished after these requests for it: answered
/// 2xx, or every one of its `attempts` failed.
fn finished(requests: &[&Request], attempts: usize) -> bool {
    requests.iter().any(|r| (200..300).contains(&r.status)) || requests.len() >= attempts
}

/// Asserts FIFO delivery of messages `0..total` as the log shows it: never
/// two requests open at once; no request for message k+1 before message k
/// was answered 2xx or exhausted its `attempts`; each message finished.
/// Answers how many were delivered and how many exhausted.
pub fn assert_fifo(log: &[Request], total: u64, attempts: usize) -> (usize, usize) {
    let mut by_start: Vec<&Request> = log.iter().collect();
    by_start.sort_by_key(|r| r.began);
    for pair in by_start.windows(2) {
        assert!(
            pair[1].began >= pair[0].ended,
            "two requests in flight at once: {:?} and {:?}",
            pair[0],
            pair[1]
        );
    }
    let positions: Vec<u64> = by_start.iter().map(|r| r.n).collect();
    assert!(
        positions.windows(2).all(|w| w[1] == w[0] || w[1] == w[0] + 1),
        "requests out of publish order: {positions:?}"
    );
    let (mut delivered, mut exhausted) = (0, 0);
    for k in 0..total {
        let requests: Vec<&Request> = by_start.iter().copied().filter(|r| r.n == k).collect();
        assert!(!requests.is_empty(), "message {k} was never sent: {positions:?}");
        assert!(
            finished(&requests, attempts),
            "message {k} was left unfinished before the next one: {requests:?}"
        );
        let successes = requests.iter().filter(|r| (200..300).contains(&r.status)).count();
        assert!(successes <= 1, "message {k} was sent again after it succeeded");
        if successes == 1 {
            assert!(
                (200..300).contains(&requests[requests.len() - 1].status),
                "sent again after a 2xx"
            );
            delivered += 1;
        } else {
            exhausted += 1;
        }
    }
    (delivered, exhausted)
}
