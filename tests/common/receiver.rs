//! A real HTTP receiver on loopback that records every request it gets and
//! answers with a scripted sequence of status codes.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::any;
use tokio::sync::Notify;

#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// When it was answered (after the receiver's delay, if it has one).
    pub at: tokio::time::Instant,
    /// When it had arrived whole, before any delay.
    pub began: tokio::time::Instant,
}

/// An answer chosen by a test: status, headers, body.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            ..Default::default()
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<String>) -> Self {
        self.body = body.into();
        self
    }
}

type Responder = Box<dyn Fn(&Received) -> Reply + Send + Sync>;

impl Received {
    /// A query parameter, decoded.
    pub fn param(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_deref().unwrap_or_default().as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }
}

#[derive(Default)]
struct Inner {
    got: Mutex<Vec<Received>>,
    script: Mutex<VecDeque<u16>>,
    arrived: Notify,
    /// Requests begun, answered or not: with a delay, those in flight too.
    begun: std::sync::atomic::AtomicUsize,
    begun_notify: Notify,
    /// How long each answer takes, to keep requests in flight.
    delay: Duration,
    /// Answers chosen by the test; the script and 200 otherwise.
    responder: Option<Responder>,
}

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    inner: Arc<Inner>,
}

impl Receiver {
    /// Answers 200 to everything.
    pub async fn start() -> Self {
        Self::scripted(&[]).await
    }

    /// Answers the given statuses in order, then 200.
    pub async fn scripted(statuses: &[u16]) -> Self {
        Self::serve(Inner {
            script: Mutex::new(statuses.iter().copied().collect()),
            ..Default::default()
        })
        .await
    }

    /// Answers 200 to everything, each after `delay`.
    pub async fn slow(delay: Duration) -> Self {
        Self::serve(Inner {
            delay,
            ..Default::default()
        })
        .await
    }

    /// Answers every request with what `respond` picks for it.
    pub async fn answering(respond: impl Fn(&Received) -> Reply + Send + Sync + 'static) -> Self {
        Self::serve(Inner {
            responder: Some(Box::new(respond)),
            ..Default::default()
        })
        .await
    }

    /// The POSTs only: deliveries, without endpoint checks.
    pub fn deliveries(&self) -> Vec<Received> {
        self.received().into_iter().filter(|r| r.method == "POST").collect()
    }

    /// Answers 200 to everything, listening on `ip` (another loopback
    /// address, for tests that tell targets apart by address).
    pub async fn start_on(ip: &str) -> Self {
        Self::serve_on(Inner::default(), ip, None).await
    }

    /// Answers 200 to everything over https, with `identity`'s certificate.
    pub async fn tls(identity: &super::tls::Identity) -> Self {
        Self::tls_on(identity, "127.0.0.1").await
    }

    /// Over https, listening on `ip`.
    pub async fn tls_on(identity: &super::tls::Identity, ip: &str) -> Self {
        Self::serve_on(Inner::default(), ip, Some(identity.acceptor())).await
    }

    async fn serve(inner: Inner) -> Self {
        Self::serve_on(inner, "127.0.0.1", None).await
    }

    async fn serve_on(inner: Inner, ip: &str, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let inner = Arc::new(inner);
        let app = axum::Router::new().fallback(any(record)).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.expect("bind receiver");
        let address = listener.local_addr().expect("addr");
        let url = match tls {
            None => {
                tokio::spawn(async move {
                    axum::serve(listener, app).await.expect("receiver runs");
                });
                format!("http://{address}/hook")
            }
            Some(acceptor) => {
                tokio::spawn(super::tls::serve(listener, acceptor, app));
                format!("https://{address}/hook")
            }
        };
        Self { url, inner }
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.got.lock().expect("lock").clone()
    }

    pub fn count(&self) -> usize {
        self.inner.got.lock().expect("lock").len()
    }

    /// Waits for the next request to arrive; false when none came within `limit`.
    pub async fn next_arrival(&self, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.inner.arrived.notified()).await.is_ok()
    }

    /// Waits until at least `n` requests have come in, answered or still
    /// being answered; fails after `limit`.
    pub async fn wait_for_begun(&self, n: usize, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.inner.begun_notify.notified();
            if self.inner.begun.load(std::sync::atomic::Ordering::SeqCst) >= n {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("expected {n} requests to begin within {limit:?}");
            }
        }
    }

    /// Waits until at least `n` requests have arrived; fails after `limit`.
    pub async fn wait_for(&self, n: usize, limit: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.inner.arrived.notified();
            if self.count() >= n {
                return self.received();
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("expected {n} requests within {limit:?}, got {}", self.count());
            }
        }
    }
}

async fn record(
    State(inner): State<Arc<Inner>>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let began = tokio::time::Instant::now();
    inner.begun.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    inner.begun_notify.notify_waiters();
    if !inner.delay.is_zero() {
        tokio::time::sleep(inner.delay).await;
    }
    let received = Received {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers,
        body,
        at: tokio::time::Instant::now(),
        began,
    };
    let reply = match &inner.responder {
        Some(respond) => respond(&received),
        None => Reply::status(inner.script.lock().expect("lock").pop_front().unwrap_or(200)),
    };
    inner.got.lock().expect("lock").push(received);
    inner.arrived.notify_waiters();
    let mut response = axum::response::Response::new(axum::body::Body::from(reply.body));
    *response.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
    for (name, value) in reply.headers {
        if let Ok(value) = axum::http::HeaderValue::try_from(value) {
            response.headers_mut().append(name, value);
        }
    }
    response
}
