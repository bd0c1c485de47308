//! One attempt: sign, POST, read a bounded response.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use crate::domain::signature::signature_header;
use crate::domain::target::TargetPolicy;
use crate::store::DeliveryJob;

/// Responses are kept for the history, but only their start: a receiver must
/// not be able to fill Herald's disk or memory.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024;

#[derive(Debug)]
pub struct AttemptResult {
    /// 0 when no HTTP answer came back.
    pub status_code: u16,
    pub response: String,
    pub duration: Duration,
}

impl AttemptResult {
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.status_code)
    }
}

pub async fn send(
    client: &reqwest::Client,
    policy: &TargetPolicy,
    job: &DeliveryJob,
    timeout: Duration,
    now: DateTime<Utc>,
) -> AttemptResult {
    let started = Instant::now();
    let outcome = match policy.check_url(&job.url) {
        Err(e) => Err(format!("not sent: the endpoint URL {e}")),
        Ok(_) => post(client, job, timeout, now.timestamp()).await,
    };
    let duration = started.elapsed();
    match outcome {
        Ok((status_code, response)) => AttemptResult {
            status_code,
            response,
            duration,
        },
        Err(response) => AttemptResult {
            status_code: 0,
            response,
            duration,
        },
    }
}

async fn post(
    client: &reqwest::Client,
    job: &DeliveryJob,
    timeout: Duration,
    timestamp: i64,
) -> Result<(u16, String), String> {
    let body = job.payload.as_bytes();
    let headers = request_headers(job, timestamp, body);
    let request = client
        .post(&job.url)
        .headers(headers)
        .timeout(timeout)
        .body(reqwest::Body::from(job.payload.to_string()));
    let read = async {
        let mut response = request.send().await.map_err(|e| describe_send_error(&e, timeout))?;
        let status = response.status().as_u16();
        let mut kept = Vec::new();
        while kept.len() < MAX_RESPONSE_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = MAX_RESPONSE_BYTES - kept.len();
                    kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                Ok(None) => break,
                // The status is what counts; a body cut short is still recorded.
                Err(_) => break,
            }
        }
        Ok((status, String::from_utf8_lossy(&kept).into_owned()))
    };
    // reqwest's timeout covers the body too; this bounds anything it might miss.
    match tokio::time::timeout(timeout + Duration::from_secs(1), read).await {
        Ok(result) => result,
        Err(_) => Err(format!("timed out after {}", humantime::format_duration(timeout))),
    }
}

fn describe_send_error(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        format!("timed out after {}", humantime::format_duration(timeout))
    } else {
        super::client::describe(e)
    }
}

fn request_headers(job: &DeliveryJob, timestamp: i64, body: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    // The endpoint's own headers first, so they can never replace the signature.
    for (name, value) in &job.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) {
            headers.insert(name, value);
        }
    }
    let signature = signature_header(&job.secrets, job.msg_id.as_str(), timestamp, body);
    let fixed = [
        ("webhook-id", job.msg_id.to_string()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signature),
    ];
    for (name, value) in fixed {
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers
}
