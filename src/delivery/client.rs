//! The outbound HTTP client: no redirects, no ambient proxy, and an address
//! check after DNS so a name cannot smuggle a request to a private address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::domain::target::TargetPolicy;

pub const USER_AGENT: &str = concat!("Herald/", env!("CARGO_PKG_VERSION"), " (webhook delivery)");

#[derive(Debug, thiserror::Error)]
#[error("{host} resolves only to refused addresses ({reasons})")]
struct BlockedTarget {
    host: String,
    reasons: String,
}

/// Resolves with the system resolver, then drops every refused address.
struct GuardedResolver {
    policy: TargetPolicy,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut allowed = Vec::new();
            let mut refused = Vec::new();
            for addr in resolved {
                match policy.check_ip(addr.ip()) {
                    Ok(()) => allowed.push(addr),
                    Err(e) => refused.push(e.to_string()),
                }
            }
            if allowed.is_empty() {
                let reasons = if refused.is_empty() {
                    "no addresses".to_owned()
                } else {
                    refused.join("; ")
                };
                return Err(Box::new(BlockedTarget { host, reasons }) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// `max_in_flight` idle connections are kept per host: every attempt in
/// flight to one busy receiver can then reuse a connection instead of
/// opening one.
pub fn build(
    policy: &TargetPolicy,
    request_timeout: Duration,
    max_in_flight: usize,
) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(GuardedResolver { policy: policy.clone() }))
        .connect_timeout(request_timeout.min(Duration::from_secs(10)))
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(max_in_flight)
        .tcp_nodelay(true)
        .build()
}

/// The error and its causes in one line, for the attempt's `response` field.
pub fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
