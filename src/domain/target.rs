//! Where Herald may send requests: the URL rules and the SSRF address block.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use url::{Host, Url};

/// The server-wide rules for endpoint URLs.
#[derive(Debug, Clone, Default)]
pub struct TargetPolicy {
    pub allow_http: bool,
    /// Networks exempt from the private-address block (for example a partner VPN).
    pub allowed_networks: Vec<IpNet>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("is not a valid URL: {0}")]
    Invalid(String),
    #[error("must use https (http is allowed only when the server sets HERALD_ALLOW_HTTP=true)")]
    HttpNotAllowed,
    #[error("must use http or https, not '{0}'")]
    BadScheme(String),
    #[error("must not carry a user name or password")]
    HasCredentials,
    #[error("must have a host")]
    NoHost,
    #[error("targets {0}, a {1} address; such targets are refused unless HERALD_ALLOWED_TARGET_NETWORKS includes them")]
    BlockedAddress(IpAddr, &'static str),
}

impl TargetPolicy {
    /// Checks an endpoint URL as typed. Names are checked again after DNS at
    /// connect time; here only literal addresses and `localhost` can be judged.
    pub fn check_url(&self, raw: &str) -> Result<Url, TargetError> {
        let url = Url::parse(raw).map_err(|e| TargetError::Invalid(e.to_string()))?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            "http" => return Err(TargetError::HttpNotAllowed),
            other => return Err(TargetError::BadScheme(other.to_owned())),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(TargetError::HasCredentials);
        }
        match url.host() {
            None => return Err(TargetError::NoHost),
            Some(Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip))?,
            Some(Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip))?,
            Some(Host::Domain(name)) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                if name == "localhost" || name.ends_with(".localhost") {
                    self.check_ip(IpAddr::V4(Ipv4Addr::LOCALHOST))?;
                }
            }
        }
        Ok(url)
    }

    /// Refuses an address in a blocked range unless an allowed network holds it.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), TargetError> {
        let ip = canonical(ip);
        if self.allowed_networks.iter().any(|net| net.contains(&ip)) {
            return Ok(());
        }
        match blocked_range(ip) {
            Some(kind) => Err(TargetError::BlockedAddress(ip, kind)),
            None => Ok(()),
        }
    }
}

/// IPv4 carried inside IPv6 (mapped or NAT64) is judged as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let nat64: Ipv6Net = "64:ff9b::/96".parse().expect("valid literal");
            if nat64.contains(&v6) {
                let o = v6.octets();
                return IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
            }
            IpAddr::V6(v6)
        }
        v4 => v4,
    }
}

const V4_BLOCKED: &[(&str, &str)] = &[
    ("0.0.0.0/8", "unspecified"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "carrier-grade NAT"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local (cloud metadata)"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "IETF protocol"),
    ("192.0.2.0/24", "documentation"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
];

const V6_BLOCKED: &[(&str, &str)] = &[
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("100::/64", "discard"),
    ("2001:db8::/32", "documentation"),
    ("fc00::/7", "private (unique local)"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local"),
    ("ff00::/8", "multicast"),
];

fn blocked_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => V4_BLOCKED.iter().find_map(|(net, kind)| {
            let net: Ipv4Net = net.parse().expect("valid literal");
            net.contains(&v4).then_some(*kind)
        }),
        IpAddr::V6(v6) => V6_BLOCKED.iter().find_map(|(net, kind)| {
            let net: Ipv6Net = net.parse().expect("valid literal");
            net.contains(&v6).then_some(*kind)
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict() -> TargetPolicy {
        TargetPolicy::default()
    }

    #[test]
    fn https_public_urls_pass() {
        assert!(strict().check_url("https://example.com/hook").is_ok());
        assert!(strict().check_url("https://93.184.216.34/hook").is_ok());
    }

    #[test]
    fn http_needs_explicit_permission() {
        assert_eq!(
            strict().check_url("http://example.com").unwrap_err(),
            TargetError::HttpNotAllowed
        );
        let loose = TargetPolicy {
            allow_http: true,
            ..Default::default()
        };
        assert!(loose.check_url("http://example.com").is_ok());
        assert!(matches!(
            strict().check_url("ftp://example.com"),
            Err(TargetError::BadScheme(_))
        ));
    }

    #[test]
    fn every_blocked_range_is_refused() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a9fe:a9fe",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(strict().check_ip(ip).is_err(), "{ip} should be blocked");
        }
        assert!(strict().check_ip("8.8.8.8".parse().unwrap()).is_ok());
        assert!(strict().check_ip("2606:4700::1111".parse().unwrap()).is_ok());
    }

    #[test]
    fn literal_private_targets_and_localhost_are_refused_at_creation() {
        assert!(matches!(
            strict().check_url("https://127.0.0.1:8443/x"),
            Err(TargetError::BlockedAddress(_, "loopback"))
        ));
        assert!(matches!(
            strict().check_url("https://[::1]/x"),
            Err(TargetError::BlockedAddress(_, "loopback"))
        ));
        assert!(strict().check_url("https://localhost/x").is_err());
        assert!(strict().check_url("https://api.localhost./x").is_err());
    }

    #[test]
    fn allowed_networks_open_a_hole() {
        let policy = TargetPolicy {
            allow_http: false,
            allowed_networks: vec!["10.20.0.0/16".parse().unwrap()],
        };
        assert!(policy.check_url("https://10.20.3.4/x").is_ok());
        assert!(policy.check_url("https://10.21.3.4/x").is_err());
    }

    #[test]
    fn credentials_in_urls_are_refused() {
        assert_eq!(
            strict().check_url("https://u:p@example.com").unwrap_err(),
            TargetError::HasCredentials
        );
    }
}
