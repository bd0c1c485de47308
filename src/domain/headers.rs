//! Header-name rules shared by profiles and endpoints.

/// Headers Herald sets itself; neither a profile nor an endpoint may use them.
const RESERVED: &[&str] = &[
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "svix-id",
    "svix-timestamp",
    "svix-signature",
    "content-type",
    "content-length",
    "host",
    "connection",
    "transfer-encoding",
    "user-agent",
    "te",
    "upgrade",
    "keep-alive",
];

/// Headers whose values are credentials: listed by name only when read back.
const SENSITIVE: &[&str] = &["authorization", "proxy-authorization", "cookie", "x-api-key"];

pub fn is_reserved(name: &str) -> bool {
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name))
}

pub fn is_sensitive(name: &str) -> bool {
    SENSITIVE.iter().any(|r| r.eq_ignore_ascii_case(name))
}

/// An HTTP token (RFC 9110): what a header name may be made of.
pub fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_without_regard_to_case() {
        assert!(is_reserved("Webhook-Signature"));
        assert!(!is_reserved("X-Acme-Event"));
        assert!(is_sensitive("Authorization"));
        assert!(is_token("X-Acme-Event"));
        assert!(!is_token("X Acme"));
        assert!(!is_token(""));
        assert!(!is_token("X:Y"));
    }
}
