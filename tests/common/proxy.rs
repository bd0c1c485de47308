//! A real forward proxy on loopback, as an operator would run one: CONNECT
//! tunnels for https targets, absolute-form requests for http ones. It
//! records the first request of each connection.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What a client asked the proxy for.
#[derive(Debug, Clone)]
pub struct Proxied {
    /// `CONNECT` or the request's own method.
    pub method: String,
    /// `host:port` for CONNECT, the absolute URL otherwise.
    pub target: String,
    pub proxy_authorization: Option<String>,
}

#[derive(Clone)]
pub struct ForwardProxy {
    /// `http://127.0.0.1:PORT`, to be given to Herald.
    pub url: String,
    pub port: u16,
    seen: Arc<Mutex<Vec<Proxied>>>,
}

/// Most bytes of a request head the proxy reads.
const MAX_HEAD: usize = 64 * 1024;

impl ForwardProxy {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let record = record.clone();
                tokio::spawn(async move {
                    let _ = relay(client, record).await;
                });
            }
        });
        Self {
            url: format!("http://127.0.0.1:{port}"),
            port,
            seen,
        }
    }

    pub fn seen(&self) -> Vec<Proxied> {
        self.seen.lock().expect("lock").clone()
    }

    /// Waits until `n` requests went through; fails after `limit`.
    pub async fn wait_for(&self, n: usize, limit: Duration) -> Vec<Proxied> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let seen = self.seen();
            if seen.len() >= n {
                return seen;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "expected {n} proxied requests within {limit:?}, got {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn relay(mut client: TcpStream, record: Arc<Mutex<Vec<Proxied>>>) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        let n = client.read(&mut buf).await?;
        if n == 0 || head.len() > MAX_HEAD {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(at) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let text = String::from_utf8_lossy(&head[..end]).into_owned();
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_owned();
    let target = first.next().unwrap_or_default().to_owned();
    let proxy_authorization = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("proxy-authorization"))
        .map(|(_, value)| value.trim().to_owned());
    record.lock().expect("lock").push(Proxied {
        method: method.clone(),
        target: target.clone(),
        proxy_authorization,
    });
    if method == "CONNECT" {
        let mut upstream = TcpStream::connect(&target).await?;
        client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await?;
        upstream.write_all(&head[end..]).await?;
        tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    } else {
        let url = url::Url::parse(&target).map_err(std::io::Error::other)?;
        let host = url.host_str().unwrap_or_default().trim_matches(['[', ']']).to_owned();
        let port = url.port_or_known_default().unwrap_or(80);
        let mut upstream = TcpStream::connect((host.as_str(), port)).await?;
        // Hyper servers take absolute-form requests as they are.
        upstream.write_all(&head).await?;
        tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    }
    Ok(())
}
