//! Secrets at rest: endpoint secrets and Herald's own signing key are stored
//! sealed with XChaCha20-Poly1305 under the node's secret key, so a copy of
//! the database (a backup, a dump, a stolen disk) holds no usable secret.
//!
//! A node holds a key ring: one or more keys, each known by its id (the
//! first characters of its fingerprint). One of them seals, the database's
//! choice; any of them opens. A sealed value names the key that sealed it:
//! `sealed:v2:` + key id + `:` + base64(nonce ‖ ciphertext ‖ tag). The older
//! form `sealed:v1:` + base64(…) carries no id: it is sealed under the
//! database's first key (the only key before rotation existed), and Herald
//! keeps writing that form while that key seals, so nodes of an older
//! version can still read it. Each value is bound to its purpose and row
//! (the associated data), so a sealed secret copied onto another endpoint
//! does not open there.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

const LEGACY_PREFIX: &str = "sealed:v1:";
const PREFIX: &str = "sealed:v2:";
const NONCE_LEN: usize = 24;
pub const KEY_LEN: usize = 32;
/// Characters of a key's fingerprint that name it (48 bits).
pub const KEY_ID_LEN: usize = 8;

/// A 32-byte key. Every node of one database needs the key that seals.
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

    /// Several keys, one a line (or separated by commas); blank lines and
    /// lines starting with `#` are skipped. At least one key.
    pub fn parse_ring(text: &str) -> Result<Vec<Self>, KeyError> {
        let keys = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .flat_map(|line| line.split(','))
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(Self::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(KeyError::Malformed);
        }
        Ok(keys)
    }

    /// The key as a key file holds it.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// The key's fingerprint (safe to store and show: it reveals nothing of the key).
    pub fn check_value(&self) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(b"herald secret key check v1");
        URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..16])
    }

    /// The name sealed values give this key.
    pub fn id(&self) -> String {
        key_id(&self.check_value())
    }
}

/// A key's id from its fingerprint.
pub fn key_id(check_value: &str) -> String {
    check_value.chars().take(KEY_ID_LEN).collect()
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("is sealed in a form this Herald cannot read")]
    Malformed,
    #[error("does not open with this secret key (a different key, or the value was moved or altered)")]
    WrongKey,
    #[error("is sealed under key {0}, which this node's key ring does not hold (put that key back in its key file)")]
    UnknownKey(String),
}

/// Which key sealed a stored value, as far as the value says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealedBy {
    /// Stored before sealing existed.
    Plain,
    /// `sealed:v1:`: the database's first key.
    FirstKey,
    /// `sealed:v2:` with this key id.
    Key(String),
}

impl SealedBy {
    pub fn of(stored: &str) -> Self {
        if stored.starts_with(LEGACY_PREFIX) {
            Self::FirstKey
        } else if let Some(rest) = stored.strip_prefix(PREFIX) {
            Self::Key(rest.split(':').next().unwrap_or_default().to_owned())
        } else {
            Self::Plain
        }
    }
}

#[derive(Clone)]
struct Held {
    id: String,
    check: String,
    cipher: XChaCha20Poly1305,
}

struct Ring {
    keys: Vec<Held>,
    /// Index of the key that seals.
    sealing: usize,
    /// Id of the database's first key (what `sealed:v1:` values are under).
    first: Option<String>,
}

impl Ring {
    fn held(&self, id: &str) -> Option<&Held> {
        self.keys.iter().find(|k| k.id == id)
    }
}

/// Seals and opens stored secrets with the node's key ring. Cheap to
/// clone; clones share the ring, so a reloaded ring reaches them all.
#[derive(Clone)]
pub struct Sealer {
    ring: Arc<RwLock<Arc<Ring>>>,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealer(…)")
    }
}

fn hold(key: &SecretKey) -> Held {
    let check = key.check_value();
    Held {
        id: key_id(&check),
        check,
        cipher: XChaCha20Poly1305::new((&key.0).into()),
    }
}

impl Sealer {
    /// A ring of one key.
    pub fn new(key: &SecretKey) -> Self {
        Self::with_keys(std::slice::from_ref(key))
    }

    /// A ring of `keys` (at least one); the first seals until
    /// [`Sealer::seal_with`] chooses another.
    pub fn with_keys(keys: &[SecretKey]) -> Self {
        assert!(!keys.is_empty(), "a key ring holds at least one key");
        Self {
            ring: Arc::new(RwLock::new(Arc::new(Ring {
                keys: keys.iter().map(hold).collect(),
                sealing: 0,
                first: None,
            }))),
        }
    }

    fn ring(&self) -> Arc<Ring> {
        self.ring.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn update(&self, change: impl FnOnce(&Ring) -> Ring) {
        let mut ring = self.ring.write().unwrap_or_else(PoisonError::into_inner);
        *ring = Arc::new(change(&ring));
    }

    /// Replaces the keys (a reloaded key file). The sealing key stays the
    /// same when the new ring holds it; false (and nothing changed) when it
    /// does not, or `keys` is empty.
    pub fn install(&self, keys: &[SecretKey]) -> bool {
        let sealing_id = self.sealing_id();
        let Some(sealing) = keys.iter().position(|k| k.id() == sealing_id) else {
            return false;
        };
        self.update(|ring| Ring {
            keys: keys.iter().map(hold).collect(),
            sealing,
            first: ring.first.clone(),
        });
        true
    }

    /// Makes the key with fingerprint `check` the one that seals; false
    /// when the ring does not hold it.
    pub fn seal_with(&self, check: &str) -> bool {
        let ring = self.ring();
        let Some(index) = ring.keys.iter().position(|k| k.check == check) else {
            return false;
        };
        if index != ring.sealing {
            self.update(|ring| Ring {
                keys: ring.keys.clone(),
                sealing: index,
                first: ring.first.clone(),
            });
        }
        true
    }

    /// Names the database's first key, which `sealed:v1:` values are under.
    pub fn set_first_key(&self, check: &str) {
        let id = key_id(check);
        self.update(|ring| Ring {
            keys: ring.keys.clone(),
            sealing: ring.sealing,
            first: Some(id),
        });
    }

    /// The fingerprint of the key that seals, stored beside the data: a
    /// node without that key is stopped before it writes anything the
    /// others cannot read.
    pub fn check_value(&self) -> String {
        let ring = self.ring();
        ring.keys[ring.sealing].check.clone()
    }

    /// The id of the key that seals.
    pub fn sealing_id(&self) -> String {
        let ring = self.ring();
        ring.keys[ring.sealing].id.clone()
    }

    /// The ids of every key held.
    pub fn key_ids(&self) -> Vec<String> {
        self.ring().keys.iter().map(|k| k.id.clone()).collect()
    }

    /// The fingerprint of the held key with this id.
    pub fn check_of(&self, id: &str) -> Option<String> {
        self.ring().held(id).map(|k| k.check.clone())
    }

    /// Whether the ring holds the key with this id.
    pub fn holds(&self, id: &str) -> bool {
        self.ring().held(id).is_some()
    }

    /// The id `sealed:v1:` values stand for, once the database said.
    pub fn first_key_id(&self) -> Option<String> {
        self.ring().first.clone()
    }

    /// How values sealed now begin: `sealed:v2:ID:`, or `sealed:v1:` while
    /// the database's first key seals.
    pub fn sealing_prefix(&self) -> String {
        let ring = self.ring();
        let id = &ring.keys[ring.sealing].id;
        if ring.first.as_deref() == Some(id.as_str()) {
            LEGACY_PREFIX.to_owned()
        } else {
            format!("{PREFIX}{id}:")
        }
    }

    /// `secret` sealed for `context` (what it is and whose, e.g. an endpoint id).
    pub fn seal(&self, context: &str, secret: &str) -> String {
        let ring = self.ring();
        let key = &ring.keys[ring.sealing];
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let payload = Payload {
            msg: secret.as_bytes(),
            aad: context.as_bytes(),
        };
        // Encryption fails only for messages beyond 256 GiB.
        let sealed = key
            .cipher
            .encrypt(XNonce::from_slice(&nonce), payload)
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        if ring.first.as_deref() == Some(key.id.as_str()) {
            format!("{LEGACY_PREFIX}{}", STANDARD.encode(out))
        } else {
            format!("{PREFIX}{}:{}", key.id, STANDARD.encode(out))
        }
    }

    /// Opens a stored value. One stored before sealing existed comes back
    /// as it is; Herald seals those at start.
    pub fn open(&self, context: &str, stored: &str) -> Result<String, SealError> {
        let ring = self.ring();
        if let Some(encoded) = stored.strip_prefix(LEGACY_PREFIX) {
            // Under the database's first key; before the database named it
            // (or without it in the ring) every key is tried.
            let first = ring.first.as_deref().and_then(|id| ring.held(id));
            return match first {
                Some(key) => open_with(key, context, encoded),
                None => ring
                    .keys
                    .iter()
                    .map(|key| open_with(key, context, encoded))
                    .find(|opened| !matches!(opened, Err(SealError::WrongKey)))
                    .unwrap_or(Err(SealError::WrongKey)),
            };
        }
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_owned());
        };
        let (id, encoded) = rest.split_once(':').ok_or(SealError::Malformed)?;
        let key = ring.held(id).ok_or_else(|| SealError::UnknownKey(id.to_owned()))?;
        open_with(key, context, encoded)
    }
}

fn open_with(key: &Held, context: &str, encoded: &str) -> Result<String, SealError> {
    let bytes = STANDARD.decode(encoded).map_err(|_| SealError::Malformed)?;
    if bytes.len() < NONCE_LEN {
        return Err(SealError::Malformed);
    }
    let (nonce, sealed) = bytes.split_at(NONCE_LEN);
    let payload = Payload {
        msg: sealed,
        aad: context.as_bytes(),
    };
    let plain = key
        .cipher
        .decrypt(XNonce::from_slice(nonce), payload)
        .map_err(|_| SealError::WrongKey)?;
    String::from_utf8(plain).map_err(|_| SealError::Malformed)
}

/// Whether a stored value is sealed.
pub fn is_sealed(stored: &str) -> bool {
    SealedBy::of(stored) != SealedBy::Plain
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
        // Another key: the value names the key it needs.
        let other = Sealer::new(&SecretKey::generate());
        assert_eq!(
            other.open("endpoint:ep_1", &sealed),
            Err(SealError::UnknownKey(sealer.sealing_id()))
        );
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
    fn a_ring_seals_with_its_chosen_key_and_opens_with_any() {
        let (old, new) = (SecretKey::generate(), SecretKey::generate());
        let before = Sealer::new(&old);
        before.set_first_key(&old.check_value());
        let legacy = before.seal("c", "s1");
        assert!(legacy.starts_with("sealed:v1:"), "the first key keeps the old form");
        assert_eq!(SealedBy::of(&legacy), SealedBy::FirstKey);

        let ring = Sealer::with_keys(&[new.clone(), old.clone()]);
        ring.set_first_key(&old.check_value());
        assert!(ring.seal_with(&old.check_value()));
        assert_eq!(ring.sealing_prefix(), "sealed:v1:");
        assert!(ring.seal_with(&new.check_value()));
        let sealed = ring.seal("c", "s2");
        assert_eq!(SealedBy::of(&sealed), SealedBy::Key(new.id()));
        assert!(sealed.starts_with(&ring.sealing_prefix()));
        assert_eq!(ring.open("c", &legacy).unwrap(), "s1");
        assert_eq!(ring.open("c", &sealed).unwrap(), "s2");

        // Without the key that sealed it, a value names the key it needs.
        let only_old = Sealer::new(&old);
        assert_eq!(only_old.open("c", &sealed), Err(SealError::UnknownKey(new.id())));
        assert!(!only_old.seal_with(&new.check_value()));
        // A reloaded ring that lacks the sealing key is refused.
        assert!(!ring.install(std::slice::from_ref(&old)));
        assert!(ring.install(std::slice::from_ref(&new)));
        assert_eq!(ring.key_ids(), [new.id()]);
        assert_eq!(ring.open("c", &legacy), Err(SealError::WrongKey));
    }

    #[test]
    fn key_rings_parse_one_key_a_line() {
        let (a, b) = (SecretKey::generate(), SecretKey::generate());
        let text = format!("# new\n{}\n\n{}\n", a.to_base64(), b.to_base64());
        let ring = SecretKey::parse_ring(&text).unwrap();
        assert_eq!(ring.iter().map(SecretKey::id).collect::<Vec<_>>(), [a.id(), b.id()]);
        let listed = SecretKey::parse_ring(&format!("{},{}", a.to_base64(), b.to_base64())).unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(SecretKey::parse_ring("# nothing\n").unwrap_err(), KeyError::Malformed);
        assert_eq!(SecretKey::parse_ring("short").unwrap_err(), KeyError::Malformed);
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
