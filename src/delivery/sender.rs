//! One attempt: render, sign, POST, read a bounded response.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER, USER_AGENT};

use super::client::{Outbound, TLS_VERIFY_IGNORED};
use crate::domain::clock::Clock;
use crate::domain::format::EventInfo;
use crate::domain::headers::is_sensitive;
use crate::domain::profile::Profile;
use crate::domain::retry::parse_retry_after;
use crate::store::{DeliveryJob, Headers};

/// Responses are kept for the history, but only their start: a receiver must
/// not be able to fill Herald's disk or memory.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024;
/// How far past its timeout a request may run before it is cut regardless.
pub const BODY_READ_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct AttemptResult {
    /// 0 when no HTTP answer came back.
    pub status_code: u16,
    pub response: String,
    pub duration: Duration,
    /// The answer's `Retry-After`, if it had a readable one.
    pub retry_after: Option<Duration>,
    /// What was sent, for the history; secrets in custom headers masked.
    pub request_headers: Option<Headers>,
    /// The body sent when it differs from the payload as published.
    pub request_body: Option<String>,
    pub response_headers: Option<Headers>,
}

/// How a masked header value reads in the history.
const MASKED: &str = "********";

impl AttemptResult {
    /// An attempt that ended before any request left Herald.
    pub fn not_sent(reason: impl std::fmt::Display) -> Self {
        Self::recorded_as(format!("not sent: {reason}"))
    }

    /// An attempt never made, recorded with this text as its response.
    pub fn recorded_as(response: String) -> Self {
        Self {
            status_code: 0,
            response,
            duration: Duration::ZERO,
            retry_after: None,
            request_headers: None,
            request_body: Some(String::new()),
            response_headers: None,
        }
    }
}

/// A request ready to go: the body as the endpoint's format renders it,
/// signed for this attempt's timestamp.
struct Prepared {
    headers: HeaderMap,
    body: String,
    /// The headers as the history shows them.
    recorded: Headers,
}

/// `now` is when the attempt started (its signature's timestamp); `clock`
/// reads the time a `Retry-After` date is measured from.
pub async fn send(
    outbound: &Outbound,
    job: &DeliveryJob,
    profile: &Profile,
    clock: &Clock,
    now: DateTime<Utc>,
) -> AttemptResult {
    let target = match outbound
        .policy()
        .check_url(&job.endpoint.url)
        .map_err(|e| format!("the endpoint URL {e}"))
    {
        Ok(url) => url,
        Err(reason) => return AttemptResult::not_sent(reason),
    };
    if let Err(reason) = outbound.check_target(&target, profile.timeout).await {
        return AttemptResult::not_sent(reason);
    }
    let event = EventInfo {
        event_type: &job.event_type,
        msg_id: job.msg_id.as_str(),
        event_id: job.event_id.as_deref(),
        created_at: job.msg_created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    };
    let body = match outbound
        .renderer()
        .render(&job.endpoint.format, &event, &job.payload)
        .await
    {
        Ok(body) => body.into_owned(),
        Err(reason) => return AttemptResult::not_sent(reason),
    };
    let mut prepared = match prepare(job, profile, now, body) {
        Ok(p) => p,
        Err(reason) => return AttemptResult::not_sent(reason),
    };
    let request_headers = Some(std::mem::take(&mut prepared.recorded));
    let request_body = (prepared.body != *job.payload).then(|| prepared.body.clone());
    let route = outbound.route(&job.endpoint);
    let started = Instant::now();
    // The URL as checked, so reqwest need not parse it again.
    let outcome = post(route.client, target, prepared, profile.timeout, clock)
        .await
        .map_err(|reason| overruled(reason, route.tls_verify_ignored));
    let duration = started.elapsed();
    match outcome {
        Ok(answer) => AttemptResult {
            status_code: answer.status,
            response: answer.body,
            duration,
            retry_after: answer.retry_after,
            request_headers,
            request_body,
            response_headers: Some(answer.headers),
        },
        Err(response) => AttemptResult {
            status_code: 0,
            response,
            duration,
            retry_after: None,
            request_headers,
            request_body,
            response_headers: None,
        },
    }
}

/// A failure to an endpoint whose `tlsVerify=false` was overruled says so.
pub(super) fn overruled(reason: String, tls_verify_ignored: bool) -> String {
    if tls_verify_ignored {
        format!("{reason} ({TLS_VERIFY_IGNORED})")
    } else {
        reason
    }
}

/// Signs `body` (the payload as the endpoint's format rendered it).
fn prepare(job: &DeliveryJob, profile: &Profile, now: DateTime<Utc>, body: String) -> Result<Prepared, String> {
    let timestamp = now.timestamp();
    let secrets = job.endpoint.signing_secrets(now);
    let (signature_name, signature) = profile
        .signature
        .sign(&secrets, job.msg_id.as_str(), timestamp, body.as_bytes())
        .ok_or_else(|| {
            format!(
                "profile '{}' signs with {}, and the endpoint's secret is not one; rotate the secret",
                profile.name,
                profile.signature.secret_kind().describe()
            )
        })?;

    let mut headers = HeaderMap::new();
    // The endpoint's own headers first, so they can never replace Herald's.
    for (name, value) in &job.endpoint.headers {
        insert(&mut headers, name, value);
    }
    let names = profile.signature.header_names();
    insert(&mut headers, names.id(), job.msg_id.as_str());
    insert(&mut headers, names.timestamp(), &timestamp.to_string());
    insert(&mut headers, &signature_name, &signature);
    if let Some(name) = &profile.event_header {
        insert(&mut headers, name, &job.event_type);
    }
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let mut recorded: Headers = headers
        .iter()
        .map(|(name, value)| {
            let shown = if is_sensitive(name.as_str()) {
                MASKED.to_owned()
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            };
            (name.as_str().to_owned(), shown)
        })
        .collect();
    // Added by the client itself, but sent all the same.
    recorded.insert(USER_AGENT.as_str().to_owned(), super::client::USER_AGENT.to_owned());
    Ok(Prepared {
        headers,
        body,
        recorded,
    })
}

/// Names and values were checked when the profile and endpoint were saved;
/// anything that still does not fit a header is left out rather than sent broken.
fn insert(headers: &mut HeaderMap, name: &str, value: &str) {
    if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
        headers.insert(name, value);
    }
}

struct Answered {
    status: u16,
    body: String,
    retry_after: Option<Duration>,
    headers: Headers,
}

async fn post(
    client: &reqwest::Client,
    url: url::Url,
    prepared: Prepared,
    timeout: Duration,
    clock: &Clock,
) -> Result<Answered, String> {
    let request = client
        .post(url)
        .headers(prepared.headers)
        .timeout(timeout)
        .body(prepared.body);
    let read = async {
        let response = request.send().await.map_err(|e| describe_send_error(&e, timeout))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, clock.now()));
        let headers = response_headers(response.headers());
        let body = read_bounded(response, MAX_RESPONSE_BYTES).await;
        Ok(Answered {
            status,
            body,
            retry_after,
            headers,
        })
    };
    // reqwest's timeout covers the body too; this bounds anything it might miss.
    match tokio::time::timeout(timeout + BODY_READ_GRACE, read).await {
        Ok(result) => result,
        Err(_) => Err(format!("timed out after {}", humantime::format_duration(timeout))),
    }
}

/// Most response headers kept in the history, so a receiver cannot bloat it.
const MAX_RESPONSE_HEADERS: usize = 64;

fn response_headers(headers: &HeaderMap) -> Headers {
    let mut kept = Headers::new();
    for (name, value) in headers.iter().take(MAX_RESPONSE_HEADERS) {
        let value = String::from_utf8_lossy(value.as_bytes());
        kept.entry(name.as_str().to_owned())
            .and_modify(|v: &mut String| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    kept
}

/// The first `limit` bytes of a response body, as text.
pub(super) async fn read_bounded(mut response: reqwest::Response, limit: usize) -> String {
    let mut kept = Vec::new();
    while kept.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = limit - kept.len();
                kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) => break,
            // The status is what counts; a body cut short is still recorded.
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

pub(super) fn describe_send_error(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        format!("timed out after {}", humantime::format_duration(timeout))
    } else {
        super::client::describe(e)
    }
}
