//! Secrets at rest: endpoint secrets and Herald's own signing key are stored
//! sealed with XChaCha20-Poly1305 under the node's secret key, so a copy of
//! the database (a backup, a dump, a stolen disk) holds no usable secret.
//!
//! A sealed value is `sealed:v1:` + base64(nonce ‖ ciphertext ‖ tag). Each is
//! bound to its purpose and row (the associated data), so a sealed secret
//! copied onto another endpoint does not open there.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

const PREFIX: &str = "sealed:v1:";
const NONCE_LEN: usize = 24;
pub const KEY_LEN: usize = 32;

/// The 32-byte key every node of one database must share.
#[derive(Clone)]
pub struct SecretKey([u8; KEY_LEN]);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(…)")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("must be 32 bytes in standard base64 (44 characters) or hex (64 characters)")]
    Malformed,
}

impl SecretKey {
    pub fn generate() -> Self {
        let mut key = [0u8; KEY_LEN];
        rand::rngs::OsRng.fill_bytes(&mut key);
        Self(key)
    }

    /// Standard base64 or hex of 32 bytes; surrounding whitespace is ignored
    /// (a key file usually ends with a newline).
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        let bytes = if text.len() == 2 * KEY_LEN && text.chars().all(|c| c.is_ascii_hexdigit()) {
            (0..KEY_LEN)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| KeyError::Malformed)?
        } else {
            STANDARD.decode(text).map_err(|_| KeyError::Malformed)?
        };
        bytes.try_into().map(Self).map_err(|_| KeyError::Malformed)
    }

    /// The key as a key file holds it.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("is sealed in a form this Herald cannot read")]
    Malformed,
    #[error("does not open with this secret key (a different key, or the value was moved or altered)")]
    WrongKey,
}

/// Seals and opens stored secrets. Cheap to clone.
#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
    check: String,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealer(…)")
    }
}

impl Sealer {
    pub fn new(key: &SecretKey) -> Self {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key.0).expect("HMAC takes any key length");
        mac.update(b"herald secret key check v1");
        Self {
            cipher: XChaCha20Poly1305::new((&key.0).into()),
            check: URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..16]),
        }
    }

    /// A fingerprint of the key, stored beside the data: a node started with
    /// another key is stopped before it writes anything it cannot read back.
    pub fn check_value(&self) -> &str {
        &self.check
    }

    /// `secret` sealed for `context` (what it is and whose, e.g. an endpoint id).
    pub fn seal(&self, context: &str, secret: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let payload = Payload {
            msg: secret.as_bytes(),
            aad: context.as_bytes(),
        };
        // Encryption fails only for messages beyond 256 GiB.
        let sealed = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), payload)
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{PREFIX}{}", STANDARD.encode(out))
    }

    /// Opens a stored value. One stored before sealing existed comes back
    /// as it is; Herald seals those at start.
    pub fn open(&self, context: &str, stored: &str) -> Result<String, SealError> {
        let Some(encoded) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_owned());
        };
        let bytes = STANDARD.decode(encoded).map_err(|_| SealError::Malformed)?;
        if bytes.len() < NONCE_LEN {
            return Err(SealError::Malformed);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let payload = Payload {
            msg: sealed,
            aad: context.as_bytes(),
        };
        let plain = self
            .cipher
            .decrypt(XNonce::from_slice(nonce), payload)
            .map_err(|_| SealError::WrongKey)?;
        String::from_utf8(plain).map_err(|_| SealError::Malformed)
    }
}

/// Whether a stored value is sealed.
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_with_its_key_and_context_only() {
        let sealer = Sealer::new(&SecretKey::generate());
        let sealed = sealer.seal("endpoint:ep_1", "whsec_abc");
        assert!(is_sealed(&sealed));
        assert!(!sealed.contains("whsec_abc"));
        assert_eq!(sealer.open("endpoint:ep_1", &sealed).unwrap(), "whsec_abc");
        assert_eq!(sealer.open("endpoint:ep_2", &sealed), Err(SealError::WrongKey));
        let other = Sealer::new(&SecretKey::generate());
        assert_eq!(other.open("endpoint:ep_1", &sealed), Err(SealError::WrongKey));
    }

    #[test]
    fn sealing_twice_gives_different_text() {
        let sealer = Sealer::new(&SecretKey::generate());
        assert_ne!(sealer.seal("c", "s"), sealer.seal("c", "s"));
    }

    #[test]
    fn altered_or_truncated_values_are_refused() {
        let sealer = Sealer::new(&SecretKey::generate());
        let sealed = sealer.seal("c", "secret");
        let mut altered = sealed.clone().into_bytes();
        let last = altered.len() - 3;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        assert!(sealer.open("c", &altered).is_err());
        assert_eq!(sealer.open("c", "sealed:v1:AAAA"), Err(SealError::Malformed));
        assert_eq!(sealer.open("c", "sealed:v1:***"), Err(SealError::Malformed));
    }

    #[test]
    fn values_from_before_sealing_read_as_they_are() {
        let sealer = Sealer::new(&SecretKey::generate());
        assert_eq!(sealer.open("c", "whsec_plain").unwrap(), "whsec_plain");
    }

    #[test]
    fn keys_parse_from_base64_or_hex_and_nothing_else() {
        let key = SecretKey::generate();
        let again = SecretKey::parse(&format!("{}\n", key.to_base64())).unwrap();
        assert_eq!(Sealer::new(&key).check_value(), Sealer::new(&again).check_value());
        assert!(SecretKey::parse(&"ab".repeat(32)).is_ok());
        assert_eq!(SecretKey::parse("short").unwrap_err(), KeyError::Malformed);
        assert_eq!(
            SecretKey::parse(&STANDARD.encode([0u8; 16])).unwrap_err(),
            KeyError::Malformed
        );
        assert!(!format!("{key:?}").contains(&key.to_base64()));
    }
}
