//! Endpoint secrets, in the three forms signatures need:
//!
//! - `whsec_` + standard base64 of 24–64 bytes: the Standard Webhooks HMAC key;
//! - `whsk_` + standard base64 of an Ed25519 seed‖public key (64 bytes);
//! - any other text of 16–256 characters: a product's own HMAC secret, used
//!   as the UTF-8 bytes the user sees and types.
//!
//! The text decides the form, so a stored secret parses back on its own.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::SigningKey;
use rand::RngCore;
use rand::distributions::{Alphanumeric, DistString};

const HMAC_PREFIX: &str = "whsec_";
const ED25519_PREFIX: &str = "whsk_";
const PUBLIC_PREFIX: &str = "whpk_";
const GENERATED_HMAC_LEN: usize = 24;
const HMAC_MIN_LEN: usize = 24;
const HMAC_MAX_LEN: usize = 64;
const GENERATED_TEXT_LEN: usize = 40;
pub const TEXT_MIN_LEN: usize = 16;
const TEXT_MAX_LEN: usize = 256;

/// Which signatures a secret can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// `whsec_…`: Standard Webhooks `v1`.
    StandardHmac,
    /// `whsk_…`: Standard Webhooks `v1a`.
    Ed25519,
    /// Plain text: HMAC of the body for a product's own header.
    Text,
}

impl SecretKind {
    /// How a secret of this kind looks, for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            Self::StandardHmac => "a 'whsec_' secret (standard base64 of 24 to 64 bytes)",
            Self::Ed25519 => "a 'whsk_' Ed25519 key (standard base64 of the 32-byte seed and 32-byte public key)",
            Self::Text => "a plain secret of 16 to 256 characters (no 'whsec_' or 'whsk_' prefix)",
        }
    }
}

/// A parsed secret: the text the user sees and the key it stands for.
#[derive(Clone)]
pub struct EndpointSecret {
    text: String,
    key: Key,
}

#[derive(Clone)]
enum Key {
    Hmac(Vec<u8>),
    Ed25519(Box<SigningKey>),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("must be standard base64 after '{0}' (A-Z a-z 0-9 + /, padded with =)")]
    NotBase64(&'static str),
    #[error("must encode between {HMAC_MIN_LEN} and {HMAC_MAX_LEN} bytes after 'whsec_', found {0}")]
    BadHmacLength(usize),
    #[error("must encode 64 bytes (seed and public key) after 'whsk_', found {0}")]
    BadEd25519Length(usize),
    #[error("holds a public key that does not belong to its seed")]
    KeyMismatch,
    #[error("must be {TEXT_MIN_LEN} to {TEXT_MAX_LEN} characters long, found {0}")]
    BadTextLength(usize),
    #[error("must not contain control characters or spaces at either end")]
    BadText,
}

impl EndpointSecret {
    /// A fresh random secret of `kind`.
    pub fn generate(kind: SecretKind) -> Self {
        match kind {
            SecretKind::StandardHmac => {
                let mut key = vec![0u8; GENERATED_HMAC_LEN];
                rand::rngs::OsRng.fill_bytes(&mut key);
                Self {
                    text: format!("{HMAC_PREFIX}{}", STANDARD.encode(&key)),
                    key: Key::Hmac(key),
                }
            }
            SecretKind::Ed25519 => {
                let mut seed = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut seed);
                let signing = SigningKey::from_bytes(&seed);
                Self {
                    text: format!("{ED25519_PREFIX}{}", STANDARD.encode(signing.to_keypair_bytes())),
                    key: Key::Ed25519(Box::new(signing)),
                }
            }
            SecretKind::Text => {
                let text = Alphanumeric.sample_string(&mut rand::rngs::OsRng, GENERATED_TEXT_LEN);
                Self {
                    key: Key::Hmac(text.as_bytes().to_vec()),
                    text,
                }
            }
        }
    }

    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let key = if let Some(encoded) = text.strip_prefix(HMAC_PREFIX) {
            let key = STANDARD
                .decode(encoded)
                .map_err(|_| SecretError::NotBase64(HMAC_PREFIX))?;
            if !(HMAC_MIN_LEN..=HMAC_MAX_LEN).contains(&key.len()) {
                return Err(SecretError::BadHmacLength(key.len()));
            }
            Key::Hmac(key)
        } else if let Some(encoded) = text.strip_prefix(ED25519_PREFIX) {
            let bytes = STANDARD
                .decode(encoded)
                .map_err(|_| SecretError::NotBase64(ED25519_PREFIX))?;
            let pair: [u8; 64] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| SecretError::BadEd25519Length(bytes.len()))?;
            let signing = SigningKey::from_keypair_bytes(&pair).map_err(|_| SecretError::KeyMismatch)?;
            Key::Ed25519(Box::new(signing))
        } else {
            let chars = text.chars().count();
            if !(TEXT_MIN_LEN..=TEXT_MAX_LEN).contains(&chars) {
                return Err(SecretError::BadTextLength(chars));
            }
            if text.chars().any(char::is_control) || text.trim() != text {
                return Err(SecretError::BadText);
            }
            Key::Hmac(text.as_bytes().to_vec())
        };
        Ok(Self {
            text: text.to_owned(),
            key,
        })
    }

    pub fn kind(&self) -> SecretKind {
        match &self.key {
            Key::Ed25519(_) => SecretKind::Ed25519,
            Key::Hmac(_) if self.text.starts_with(HMAC_PREFIX) => SecretKind::StandardHmac,
            Key::Hmac(_) => SecretKind::Text,
        }
    }

    /// The secret as stored and as the user typed it.
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// What a consumer needs to verify: the secret itself, except for an
    /// Ed25519 key, where it is the public half (`whpk_…`) and never the seed.
    pub fn for_consumer(&self) -> String {
        match &self.key {
            Key::Ed25519(signing) => format!("{PUBLIC_PREFIX}{}", STANDARD.encode(signing.verifying_key().as_bytes())),
            Key::Hmac(_) => self.text.clone(),
        }
    }

    /// HMAC key bytes, for the kinds that have one.
    pub fn hmac_key(&self) -> Option<&[u8]> {
        match &self.key {
            Key::Hmac(k) => Some(k),
            Key::Ed25519(_) => None,
        }
    }

    pub fn ed25519_key(&self) -> Option<&SigningKey> {
        match &self.key {
            Key::Ed25519(k) => Some(k),
            Key::Hmac(_) => None,
        }
    }
}

impl PartialEq for EndpointSecret {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for EndpointSecret {}

/// Secrets never appear in logs, even by accident.
impl fmt::Debug for EndpointSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EndpointSecret({:?}, <redacted>)", self.kind())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_parse_back_as_their_kind() {
        for kind in [SecretKind::StandardHmac, SecretKind::Ed25519, SecretKind::Text] {
            let s = EndpointSecret::generate(kind);
            assert_eq!(s.kind(), kind);
            let back = EndpointSecret::parse(s.expose()).unwrap();
            assert_eq!(back, s);
            assert_eq!(back.kind(), kind);
        }
        let hmac = EndpointSecret::generate(SecretKind::StandardHmac);
        assert!(hmac.expose().starts_with("whsec_"));
        assert_eq!(hmac.hmac_key().unwrap().len(), 24);
        let text = EndpointSecret::generate(SecretKind::Text);
        assert_eq!(text.expose().len(), 40);
        assert_eq!(text.hmac_key().unwrap(), text.expose().as_bytes());
    }

    #[test]
    fn the_published_ed25519_key_gives_the_published_public_key() {
        let s = EndpointSecret::parse(
            "whsk_6Xb/dCcHpPea21PS1N9VY/NZW723CEc77N4rJCubMbfVKIDij2HKpMKkioLlX0dRqSKJp4AJ6p9lMicMFs6Kvg==",
        )
        .unwrap();
        assert_eq!(s.kind(), SecretKind::Ed25519);
        assert_eq!(s.for_consumer(), "whpk_1SiA4o9hyqTCpIqC5V9HUakiiaeACeqfZTInDBbOir4=");
    }

    #[test]
    fn rejects_bad_secrets_with_the_reason() {
        assert_eq!(
            EndpointSecret::parse("whsec_***").unwrap_err(),
            SecretError::NotBase64("whsec_")
        );
        // URL-safe alphabet is refused: it silently changes the key in some verifiers.
        assert_eq!(
            EndpointSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLa-_").unwrap_err(),
            SecretError::NotBase64("whsec_")
        );
        assert_eq!(
            EndpointSecret::parse("whsec_c2hvcnQ=").unwrap_err(),
            SecretError::BadHmacLength(5)
        );
        assert_eq!(
            EndpointSecret::parse("whsk_c2hvcnQ=").unwrap_err(),
            SecretError::BadEd25519Length(5)
        );
        let mut pair = [7u8; 64];
        pair[63] = 1;
        assert_eq!(
            EndpointSecret::parse(&format!("whsk_{}", STANDARD.encode(pair))).unwrap_err(),
            SecretError::KeyMismatch
        );
        assert_eq!(
            EndpointSecret::parse("short").unwrap_err(),
            SecretError::BadTextLength(5)
        );
        assert_eq!(
            EndpointSecret::parse(" sixteen-chars-or-more").unwrap_err(),
            SecretError::BadText
        );
        assert_eq!(
            EndpointSecret::parse("acme-secret-0123").unwrap().kind(),
            SecretKind::Text
        );
    }

    #[test]
    fn debug_output_hides_the_key() {
        for kind in [SecretKind::StandardHmac, SecretKind::Ed25519, SecretKind::Text] {
            let s = EndpointSecret::generate(kind);
            assert!(!format!("{s:?}").contains(s.expose()));
        }
    }
}
