//! The outbound HTTP clients: no redirects, no ambient proxy, and an address
//! check after DNS so a name cannot smuggle a request to a private address.
//! Certificates are verified against the bundled roots plus the operator's
//! trust file; an endpoint skips that only where the server allows it.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

use super::render::Renderer;
use crate::config::Config;
/// The error and its causes in one line (kept here too: it describes what
/// these clients report).
pub use crate::config::outbound::describe;
use crate::config::outbound::{OutboundProxy, TrustAnchors};
use crate::domain::target::TargetPolicy;
use crate::store::Endpoint;

pub const USER_AGENT: &str = concat!("Herald/", env!("CARGO_PKG_VERSION"), " (webhook delivery)");

#[derive(Debug, thiserror::Error)]
#[error("{host} resolves only to refused addresses ({reasons})")]
struct BlockedTarget {
    host: String,
    reasons: String,
}

/// Resolves with the system resolver, then drops every refused address.
/// The outbound proxy's own name is the operator's choice and is exempt.
struct GuardedResolver {
    policy: TargetPolicy,
    exempt: Option<String>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let exempt = self.exempt.as_deref() == Some(name.as_str());
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if exempt {
                return Ok(Box::new(resolved.into_iter()) as Addrs);
            }
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

/// How one outbound client is built.
struct ClientOptions<'a> {
    policy: &'a TargetPolicy,
    request_timeout: Duration,
    max_in_flight: usize,
    extra_roots: Option<&'a TrustAnchors>,
    proxy: Option<&'a OutboundProxy>,
    verify_certificates: bool,
}

/// `max_in_flight` idle connections are kept per host: every attempt in
/// flight to one busy receiver can then reuse a connection instead of
/// opening one.
fn build_with(o: &ClientOptions<'_>) -> reqwest::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(GuardedResolver {
            policy: o.policy.clone(),
            exempt: o.proxy.and_then(OutboundProxy::host),
        }))
        .connect_timeout(o.request_timeout.min(Duration::from_secs(10)))
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(o.max_in_flight)
        .tcp_nodelay(true)
        .danger_accept_invalid_certs(!o.verify_certificates);
    if let Some(proxy) = o.proxy {
        builder = builder.proxy(proxy.reqwest()?);
    }
    if let Some(roots) = o.extra_roots {
        builder = roots.add_to(builder);
    }
    builder.build()
}

/// A verifying client with no proxy and no extra roots.
pub fn build(
    policy: &TargetPolicy,
    request_timeout: Duration,
    max_in_flight: usize,
) -> reqwest::Result<reqwest::Client> {
    build_with(&ClientOptions {
        policy,
        request_timeout,
        max_in_flight,
        extra_roots: None,
        proxy: None,
        verify_certificates: true,
    })
}

/// What an endpoint whose `tlsVerify=false` the server no longer allows is
/// told when its certificate fails.
pub const TLS_VERIFY_IGNORED: &str = "the certificate was verified all the same: the endpoint sets tlsVerify=false, \
     which this server does not allow (HERALD_ALLOW_INSECURE_TLS)";

/// The clients every delivery and endpoint check goes through.
#[derive(Clone)]
pub struct Outbound {
    verified: reqwest::Client,
    /// Skips certificate checks; built only when the server allows it.
    unverified: Option<reqwest::Client>,
    policy: TargetPolicy,
    proxied: bool,
    /// Endpoints already logged for a `tlsVerify=false` that is ignored.
    warned: Arc<Mutex<HashSet<String>>>,
    /// Makes each request's body (templates in bounded workers).
    renderer: Renderer,
}

/// The client one request goes through, and whether an endpoint's wish to
/// skip certificate checks was overruled.
pub struct Route<'a> {
    pub client: &'a reqwest::Client,
    pub tls_verify_ignored: bool,
}

impl Outbound {
    pub fn new(config: &Config) -> reqwest::Result<Self> {
        let options = |verify_certificates| ClientOptions {
            policy: &config.target_policy,
            request_timeout: config.request_timeout,
            max_in_flight: config.max_concurrent_deliveries,
            extra_roots: config.extra_roots.as_ref(),
            proxy: config.outbound_proxy.as_ref(),
            verify_certificates,
        };
        let unverified = match config.allow_insecure_tls {
            true => Some(build_with(&options(false))?),
            false => None,
        };
        Ok(Self {
            verified: build_with(&options(true))?,
            unverified,
            policy: config.target_policy.clone(),
            proxied: config.outbound_proxy.is_some(),
            warned: Arc::default(),
            renderer: Renderer::new(config),
        })
    }

    pub fn renderer(&self) -> &Renderer {
        &self.renderer
    }

    pub fn policy(&self) -> &TargetPolicy {
        &self.policy
    }

    /// The client for `endpoint`: the unverifying one only when the endpoint
    /// asks for it and the server allows it.
    pub fn route(&self, endpoint: &Endpoint) -> Route<'_> {
        match (endpoint.tls_verify, &self.unverified) {
            (true, _) => Route {
                client: &self.verified,
                tls_verify_ignored: false,
            },
            (false, Some(unverified)) => Route {
                client: unverified,
                tls_verify_ignored: false,
            },
            (false, None) => {
                self.warn_once(endpoint);
                Route {
                    client: &self.verified,
                    tls_verify_ignored: true,
                }
            }
        }
    }

    fn warn_once(&self, endpoint: &Endpoint) {
        let first = self
            .warned
            .lock()
            .map(|mut seen| seen.insert(endpoint.id.to_string()))
            .unwrap_or(false);
        if first {
            tracing::warn!(
                endpoint_id = %endpoint.id,
                "the endpoint sets tlsVerify=false, which HERALD_ALLOW_INSECURE_TLS no longer allows; \
                 its certificate is verified"
            );
        }
    }

    /// Through a proxy Herald does not resolve the target itself, so the
    /// connect-time guard never sees it: the name is resolved and judged
    /// here, before sending. The proxy must still enforce egress rules, as
    /// the name may resolve differently for it (DNS rebinding).
    pub async fn check_target(&self, url: &Url, timeout: Duration) -> Result<(), String> {
        if !self.proxied {
            return Ok(());
        }
        let port = url.port_or_known_default().unwrap_or(443);
        let addresses: Vec<IpAddr> = match url.host() {
            None => return Err("the URL has no host".to_owned()),
            Some(Host::Ipv4(ip)) => vec![IpAddr::V4(ip)],
            Some(Host::Ipv6(ip)) => vec![IpAddr::V6(ip)],
            Some(Host::Domain(name)) => resolve(name, port, timeout).await?,
        };
        judge(&self.policy, url.host_str().unwrap_or_default(), &addresses)
    }
}

async fn resolve(name: &str, port: u16, timeout: Duration) -> Result<Vec<IpAddr>, String> {
    match tokio::time::timeout(timeout, tokio::net::lookup_host((name, port))).await {
        Ok(Ok(found)) => Ok(found.map(|a| a.ip()).collect()),
        Ok(Err(e)) => Err(format!("cannot resolve {name}: {e}")),
        Err(_) => Err(format!("resolving {name} timed out")),
    }
}

/// Every address must pass: Herald cannot tell which one the proxy picks.
fn judge(policy: &TargetPolicy, host: &str, addresses: &[IpAddr]) -> Result<(), String> {
    if addresses.is_empty() {
        return Err(format!("{host} resolves to no address"));
    }
    let refused: Vec<String> = addresses
        .iter()
        .filter_map(|ip| policy.check_ip(*ip).err())
        .map(|e| e.to_string())
        .collect();
    if refused.is_empty() {
        Ok(())
    } else {
        Err(format!("{host} resolves to refused addresses ({})", refused.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn through_a_proxy_a_name_is_judged_by_every_address_it_resolves_to() {
        let config = Config::load(
            &crate::config::Settings {
                outbound_proxy: Some("http://127.0.0.1:9".into()),
                allow_http: Some("true".into()),
                ..Default::default()
            },
            None,
        )
        .unwrap();
        let outbound = Outbound::new(&config).unwrap();
        let timeout = Duration::from_secs(5);
        // `localhost` resolves to loopback on every machine.
        let url = Url::parse("http://localhost:8080/hook").unwrap();
        let e = outbound.check_target(&url, timeout).await.unwrap_err();
        assert!(e.contains("refused") && e.contains("loopback"), "{e}");
        let url = Url::parse("http://[::ffff:10.0.0.1]/hook").unwrap();
        let e = outbound.check_target(&url, timeout).await.unwrap_err();
        assert!(e.contains("private"), "{e}");
        let url = Url::parse("http://93.184.215.14/hook").unwrap();
        assert_eq!(outbound.check_target(&url, timeout).await, Ok(()));

        let policy = TargetPolicy::default();
        let mixed = ["93.184.215.14".parse().unwrap(), "10.1.2.3".parse().unwrap()];
        assert!(
            judge(&policy, "mixed.example", &mixed).is_err(),
            "one refused address refuses all"
        );
    }
}
