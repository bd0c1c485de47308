//! The outbound settings that need checking at start: the operator's trust
//! file and forward proxy. Read here so a bad one stops the start; the
//! delivery clients only use them.

use std::path::Path;

use url::{Host, Url};

/// Extra trust anchors for endpoints behind a private CA, from a PEM file.
#[derive(Debug, Clone)]
pub struct TrustAnchors {
    certificates: Vec<reqwest::Certificate>,
}

impl TrustAnchors {
    /// Reads and checks the file now, so a bad one stops the start rather
    /// than failing every delivery.
    pub fn load(path: &Path) -> Result<Self, String> {
        let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("{} is not a PEM certificate file: {}", path.display(), describe(&e)))?;
        if certificates.is_empty() {
            return Err(format!(
                "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                path.display()
            ));
        }
        let anchors = Self { certificates };
        anchors
            .add_to(reqwest::Client::builder().tls_built_in_root_certs(false))
            .build()
            .map_err(|e| {
                format!(
                    "{} holds a certificate Herald cannot trust: {}",
                    path.display(),
                    describe(&e)
                )
            })?;
        Ok(anchors)
    }

    pub(crate) fn add_to(&self, builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        self.certificates
            .iter()
            .cloned()
            .fold(builder, reqwest::ClientBuilder::add_root_certificate)
    }
}

/// The operator's forward proxy. Its URL may carry credentials, so it is
/// shown only with them masked.
#[derive(Clone)]
pub struct OutboundProxy {
    url: Url,
}

impl OutboundProxy {
    pub fn parse(text: &str) -> Result<Self, String> {
        let shown = |url: &Url| Self { url: url.clone() }.to_string();
        let url = Url::parse(text).map_err(|_| "is not a URL such as http://proxy.internal:3128".to_owned())?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("'{}' must use http:// or https://", shown(&url)));
        }
        if !url.has_host() || !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "'{}' must be just a scheme, an optional user:password@, a host and a port",
                shown(&url)
            ));
        }
        let proxy = Self { url };
        proxy
            .reqwest()
            .map_err(|e| format!("'{proxy}' is not a usable proxy: {e}"))?;
        Ok(proxy)
    }

    pub(crate) fn reqwest(&self) -> reqwest::Result<reqwest::Proxy> {
        reqwest::Proxy::all(self.url.as_str())
    }

    /// The host the resolver must not judge: the operator chose it.
    pub(crate) fn host(&self) -> Option<String> {
        match self.url.host()? {
            Host::Domain(name) => Some(name.to_owned()),
            Host::Ipv4(_) | Host::Ipv6(_) => None,
        }
    }
}

impl std::fmt::Display for OutboundProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut url = self.url.clone();
        if !url.username().is_empty() || url.password().is_some() {
            let _ = url.set_username("***");
            let _ = url.set_password(None);
        }
        f.write_str(url.as_str())
    }
}

impl std::fmt::Debug for OutboundProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OutboundProxy({self})")
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_credentials_are_never_shown() {
        let proxy = OutboundProxy::parse("http://herald:s3cret@proxy.internal:3128").unwrap();
        for shown in [proxy.to_string(), format!("{proxy:?}")] {
            assert!(!shown.contains("s3cret") && !shown.contains("herald:"), "{shown}");
            assert!(shown.contains("proxy.internal:3128"), "{shown}");
        }
        let e = OutboundProxy::parse("socks5://herald:s3cret@proxy.internal:1080").unwrap_err();
        assert!(e.contains("http:// or https://") && !e.contains("s3cret"), "{e}");
        let e = OutboundProxy::parse("http://herald:s3cret@proxy.internal:3128/path").unwrap_err();
        assert!(!e.contains("s3cret"), "{e}");
        assert!(OutboundProxy::parse("proxy.internal:3128").is_err());
    }
}
