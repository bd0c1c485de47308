//! Receivers that misbehave, as real sockets on loopback: one that never
//! answers, one that answers a byte at a time, one that resets the
//! connection, one that speaks something other than HTTP, one that
//! redirects, and one that sends an endless body. Each ends as a recorded
//! attempt with a reason, retried as its profile says, and none holds back a
//! healthy endpoint.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use common::{Backend, Receiver, TestApp, spawn_app_with_file};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Three attempts 0 and 300 ms apart, each given 400 ms; and one endpoint
/// that waits 5 s for its answer, to show it holds nobody else back.
const PROFILES: &str = r#"
[profiles.quick]
retry_schedule = ["0s", "300ms"]
timeout = "400ms"

[profiles.patient]
retry_schedule = ["1m"]
timeout = "5s"
"#;

#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Reads the request, then says nothing.
    Hang,
    /// Sends its status line one byte every 150 ms.
    Trickle,
    /// Closes with a TCP reset.
    Reset,
    /// Answers with something that is not HTTP.
    Garbage,
    /// Answers 302 to another address.
    Redirect,
    /// Answers 200 with a 256 MiB body, written as fast as it is read.
    EndlessBody,
}

/// A receiver with one fault; counts connections and body bytes written.
struct BadReceiver {
    url: String,
    connections: Arc<AtomicUsize>,
    body_written: Arc<AtomicU64>,
}

impl BadReceiver {
    async fn start(fault: Fault, redirect_to: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let connections = Arc::new(AtomicUsize::new(0));
        let body_written = Arc::new(AtomicU64::new(0));
        let (count, written, to) = (connections.clone(), body_written.clone(), redirect_to.to_owned());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(misbehave(stream, fault, written.clone(), to.clone()));
            }
        });
        Self {
            url,
            connections,
            body_written,
        }
    }
}

/// Reads one request: headers, then as many body bytes as they announce.
async fn read_request(stream: &mut TcpStream) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 8192];
    let header_end = loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
        if let Some(i) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&seen[..header_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut have = seen.len() - header_end;
    while have < length {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => have += n,
        }
    }
}

async fn misbehave(mut stream: TcpStream, fault: Fault, written: Arc<AtomicU64>, redirect_to: String) {
    read_request(&mut stream).await;
    match fault {
        Fault::Hang => tokio::time::sleep(Duration::from_secs(30)).await,
        Fault::Trickle => {
            for byte in b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n" {
                if stream.write_all(&[*byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        }
        Fault::Reset => {
            let socket = socket2::SockRef::from(&stream);
            let _ = socket.set_linger(Some(Duration::ZERO));
            drop(stream);
        }
        Fault::Garbage => {
            let _ = stream
                .write_all(b"SSH-2.0-OpenSSH_9.6\r\n\r\nnot http at all\r\n")
                .await;
        }
        Fault::Redirect => {
            let answer = format!(
                "HTTP/1.1 302 Found\r\nlocation: {redirect_to}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            let _ = stream.write_all(answer.as_bytes()).await;
        }
        Fault::EndlessBody => {
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", 256u64 << 20);
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = vec![b'x'; 64 * 1024];
            for _ in 0..4096 {
                if stream.write_all(&chunk).await.is_err() {
                    return;
                }
                written.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            }
        }
    }
}

async fn attempts_of(app: &TestApp, app_id: &str, ep: &Value, n: usize) -> Vec<Value> {
    let path = format!(
        "/api/v1/app/{app_id}/attempt/endpoint/{}",
        ep["id"].as_str().expect("id")
    );
    app.wait_for_attempts(&path, |list| list.len() >= n).await
}

on_both_backends!(
    every_receiver_fault_ends_as_a_failed_attempt_with_its_reason,
    a_hanging_receiver_holds_back_no_other_endpoint
);

async fn every_receiver_fault_ends_as_a_failed_attempt_with_its_reason(backend: Backend) {
    let app = spawn_app_with_file(&backend, PROFILES).await;
    let app_id = app.create_app("Acme").await;
    let elsewhere = Receiver::start().await;
    let faults = [
        (Fault::Hang, "timed out after 400ms"),
        (Fault::Trickle, "timed out after 400ms"),
        (Fault::Reset, "error sending request"),
        (Fault::Garbage, "error sending request"),
    ];
    let mut cases = Vec::new();
    for (fault, reason) in faults {
        let bad = BadReceiver::start(fault, &elsewhere.url).await;
        let channel = format!("{fault:?}").to_lowercase();
        let ep = app
            .create_endpoint(&app_id, &bad.url, json!({"profile": "quick", "channels": [channel]}))
            .await;
        cases.push((fault, reason, bad, ep, channel));
    }
    for (_, _, _, _, channel) in &cases {
        let body = json!({"eventType": "ticket.created", "payload": {"n": 1}, "channels": [channel]});
        let a = app.post(&format!("/api/v1/app/{app_id}/msg"), body).await;
        assert_eq!(a.status, reqwest::StatusCode::ACCEPTED, "{}", a.body);
    }
    for (fault, reason, bad, ep, _) in &cases {
        let attempts = attempts_of(&app, &app_id, ep, 3).await;
        assert_eq!(attempts.len(), 3, "{fault:?}: three attempts, as the profile says");
        for a in &attempts {
            assert_eq!(a["status"], 2, "{fault:?}: failed: {a}");
            assert_eq!(a["responseStatusCode"], 0, "{fault:?}: no HTTP answer: {a}");
            let why = a["response"].as_str().expect("reason");
            assert!(why.contains(reason), "{fault:?}: the reason says what happened: {why}");
        }
        assert_eq!(bad.connections.load(Ordering::SeqCst), 3, "{fault:?}");
    }

    // A redirect is an answer, recorded as a failure, and never followed.
    let redirecting = BadReceiver::start(Fault::Redirect, &elsewhere.url).await;
    let ep = app
        .create_endpoint(&app_id, &redirecting.url, json!({"profile": "quick"}))
        .await;
    app.publish(&app_id, "ticket.created", json!({"n": 2})).await;
    for a in attempts_of(&app, &app_id, &ep, 3).await {
        assert_eq!(
            (a["responseStatusCode"].as_i64(), a["status"].as_i64()),
            (Some(302), Some(2)),
            "{a}"
        );
        assert!(
            a["responseHeaders"]["location"]
                .as_str()
                .is_some_and(|l| l == elsewhere.url)
        );
    }
    assert_eq!(elsewhere.count(), 0, "the redirect's target got nothing");
}

async fn a_hanging_receiver_holds_back_no_other_endpoint(backend: Backend) {
    let app = spawn_app_with_file(&backend, PROFILES).await;
    let app_id = app.create_app("Acme").await;
    let hanging = BadReceiver::start(Fault::Hang, "").await;
    let endless = BadReceiver::start(Fault::EndlessBody, "").await;
    let healthy = Receiver::start().await;
    let stuck = app
        .create_endpoint(
            &app_id,
            &hanging.url,
            json!({"profile": "patient", "channels": ["stuck"]}),
        )
        .await;
    let big = app
        .create_endpoint(
            &app_id,
            &endless.url,
            json!({"profile": "patient", "channels": ["big"]}),
        )
        .await;
    app.create_endpoint(&app_id, &healthy.url, json!({"channels": ["fine"]}))
        .await;

    // Many deliveries to the hanging endpoint, all waiting for an answer…
    for n in 0..20 {
        let body = json!({"eventType": "ticket.created", "payload": {"n": n}, "channels": ["stuck"]});
        app.post(&format!("/api/v1/app/{app_id}/msg"), body).await;
    }
    let started = tokio::time::Instant::now();
    // …and the healthy endpoint still gets its messages at once.
    for n in 0..20 {
        let body = json!({"eventType": "ticket.created", "payload": {"n": n}, "channels": ["fine"]});
        app.post(&format!("/api/v1/app/{app_id}/msg"), body).await;
    }
    healthy.wait_for(20, Duration::from_secs(3)).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    let path = format!(
        "/api/v1/app/{app_id}/attempt/endpoint/{}",
        stuck["id"].as_str().expect("id")
    );
    assert!(
        app.get(&path).await.body["data"].as_array().is_some_and(Vec::is_empty),
        "the hanging endpoint's attempts are all still waiting"
    );

    // An endless body: the status counts, Herald reads at most 16 KiB of it
    // and hangs up instead of reading 256 MiB.
    app.post(
        &format!("/api/v1/app/{app_id}/msg"),
        json!({"eventType": "ticket.created", "payload": {}, "channels": ["big"]}),
    )
    .await;
    let attempt = attempts_of(&app, &app_id, &big, 1).await.remove(0);
    assert_eq!(attempt["responseStatusCode"], 200, "{attempt}");
    assert_eq!(attempt["response"].as_str().map(str::len), Some(16 * 1024));
    // Herald hung up when it recorded the attempt; the receiver could write
    // only what the sockets' buffers hold.
    let written = endless.body_written.load(Ordering::SeqCst);
    assert!(
        written < 32 << 20,
        "Herald stopped reading; the receiver wrote {written} bytes"
    );
}
