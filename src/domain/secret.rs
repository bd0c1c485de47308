//! Endpoint signing secrets: `whsec_` + standard base64 of 24–64 random bytes.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;

const PREFIX: &str = "whsec_";
const GENERATED_LEN: usize = 24;
const MIN_LEN: usize = 24;
const MAX_LEN: usize = 64;

/// A parsed secret: the string the user sees and the key bytes it stands for.
#[derive(Clone, PartialEq, Eq)]
pub struct EndpointSecret {
    text: String,
    key: Vec<u8>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("must start with 'whsec_'")]
    MissingPrefix,
    #[error("must be standard base64 after 'whsec_' (A-Z a-z 0-9 + /, padded with =)")]
    NotBase64,
    #[error("must encode between {MIN_LEN} and {MAX_LEN} bytes, found {0}")]
    BadLength(usize),
}

impl EndpointSecret {
    pub fn generate() -> Self {
        let mut key = vec![0u8; GENERATED_LEN];
        rand::rngs::OsRng.fill_bytes(&mut key);
        Self {
            text: format!("{PREFIX}{}", STANDARD.encode(&key)),
            key,
        }
    }

    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let encoded = text.strip_prefix(PREFIX).ok_or(SecretError::MissingPrefix)?;
        let key = STANDARD.decode(encoded).map_err(|_| SecretError::NotBase64)?;
        if !(MIN_LEN..=MAX_LEN).contains(&key.len()) {
            return Err(SecretError::BadLength(key.len()));
        }
        Ok(Self {
            text: text.to_owned(),
            key,
        })
    }

    /// The secret as the user sees it, `whsec_…`.
    pub fn expose(&self) -> &str {
        &self.text
    }

    pub fn key(&self) -> &[u8] {
        &self.key
    }
}

/// Secrets never appear in logs, even by accident.
impl fmt::Debug for EndpointSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EndpointSecret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_parse_back() {
        let s = EndpointSecret::generate();
        assert!(s.expose().starts_with("whsec_"));
        assert_eq!(EndpointSecret::parse(s.expose()).unwrap(), s);
        assert_eq!(s.key().len(), 24);
    }

    #[test]
    fn rejects_bad_secrets_with_the_reason() {
        assert_eq!(EndpointSecret::parse("abc").unwrap_err(), SecretError::MissingPrefix);
        assert_eq!(EndpointSecret::parse("whsec_***").unwrap_err(), SecretError::NotBase64);
        // URL-safe alphabet is refused: it silently changes the key in some verifiers.
        assert_eq!(
            EndpointSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLa-_").unwrap_err(),
            SecretError::NotBase64
        );
        assert_eq!(
            EndpointSecret::parse("whsec_c2hvcnQ=").unwrap_err(),
            SecretError::BadLength(5)
        );
    }

    #[test]
    fn debug_output_hides_the_key() {
        let s = EndpointSecret::generate();
        assert!(!format!("{s:?}").contains(s.expose()));
    }
}
