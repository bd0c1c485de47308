//! Request signatures: Standard Webhooks (`v1` HMAC-SHA256 and `v1a`
//! Ed25519 over `id.timestamp.body`) and a product's own style (an HMAC of
//! the raw body in a header of its choosing).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::Signer;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::secret::{EndpointSecret, SecretKind};

/// How requests to an endpoint are signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureStyle {
    /// `webhook-signature: v1,…` (HMAC) or `v1a,…` (Ed25519), or the same
    /// under Svix's header names.
    StandardWebhooks { algorithm: Algorithm, names: HeaderNames },
    /// `<header>: <prefix><hex or base64 HMAC-SHA256 of the raw body>`.
    BodyHmac {
        header: String,
        prefix: String,
        encoding: Encoding,
    },
}

/// The names of the id, timestamp and signature headers: Standard Webhooks'
/// `webhook-*`, or `svix-*`, which a Svix server sends by default, so
/// consumers that read those names keep working after a move to Herald.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HeaderNames {
    #[default]
    Webhook,
    Svix,
}

impl HeaderNames {
    pub fn id(self) -> &'static str {
        match self {
            Self::Webhook => "webhook-id",
            Self::Svix => "svix-id",
        }
    }

    pub fn timestamp(self) -> &'static str {
        match self {
            Self::Webhook => "webhook-timestamp",
            Self::Svix => "svix-timestamp",
        }
    }

    pub fn signature(self) -> &'static str {
        match self {
            Self::Webhook => "webhook-signature",
            Self::Svix => "svix-signature",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    HmacSha256,
    Ed25519,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Hex,
    Base64,
}

impl Default for SignatureStyle {
    fn default() -> Self {
        Self::StandardWebhooks {
            algorithm: Algorithm::HmacSha256,
            names: HeaderNames::Webhook,
        }
    }
}

impl SignatureStyle {
    /// The kind of secret this style signs with.
    pub fn secret_kind(&self) -> SecretKind {
        match self {
            Self::StandardWebhooks {
                algorithm: Algorithm::HmacSha256,
                ..
            } => SecretKind::StandardHmac,
            Self::StandardWebhooks {
                algorithm: Algorithm::Ed25519,
                ..
            } => SecretKind::Ed25519,
            Self::BodyHmac { .. } => SecretKind::Text,
        }
    }

    /// The id and timestamp headers' names (a product's own style keeps
    /// Standard Webhooks' beside its signature header).
    pub fn header_names(&self) -> HeaderNames {
        match self {
            Self::StandardWebhooks { names, .. } => *names,
            Self::BodyHmac { .. } => HeaderNames::Webhook,
        }
    }

    /// Whether a secret can sign in this style. A product's own HMAC takes
    /// any secret text as its key, except an Ed25519 key.
    pub fn accepts(&self, secret: &EndpointSecret) -> bool {
        match self {
            Self::BodyHmac { .. } => secret.kind() != SecretKind::Ed25519,
            Self::StandardWebhooks { .. } => secret.kind() == self.secret_kind(),
        }
    }

    /// The signature header and its value. `secrets` is the current secret
    /// first, then any still in a rotation grace period: Standard Webhooks
    /// sends one entry per secret; a product's own header carries one value,
    /// so only the current secret signs there. Secrets the style cannot use
    /// are skipped; `None` when none is left.
    pub fn sign(
        &self,
        secrets: &[EndpointSecret],
        msg_id: &str,
        timestamp: i64,
        body: &[u8],
    ) -> Option<(String, String)> {
        let usable = secrets.iter().filter(|s| self.accepts(s));
        match self {
            Self::StandardWebhooks { names, .. } => {
                let entries: Vec<String> = usable
                    .filter_map(|s| sign_standard(s, msg_id, timestamp, body))
                    .collect();
                (!entries.is_empty()).then(|| (names.signature().to_owned(), entries.join(" ")))
            }
            Self::BodyHmac {
                header,
                prefix,
                encoding,
            } => {
                let key = usable.into_iter().next()?.hmac_key()?;
                let mac = hmac_sha256(key, &[body]);
                let encoded = match encoding {
                    Encoding::Hex => hex(&mac),
                    Encoding::Base64 => STANDARD.encode(mac),
                };
                Some((header.clone(), format!("{prefix}{encoded}")))
            }
        }
    }
}

/// One Standard Webhooks entry: `v1,…` for an HMAC secret, `v1a,…` for Ed25519.
fn sign_standard(secret: &EndpointSecret, msg_id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let timestamp = timestamp.to_string();
    let parts = [msg_id.as_bytes(), b".", timestamp.as_bytes(), b".", body];
    match secret.kind() {
        SecretKind::StandardHmac => Some(format!(
            "v1,{}",
            STANDARD.encode(hmac_sha256(secret.hmac_key()?, &parts))
        )),
        SecretKind::Ed25519 => {
            let signed: Vec<u8> = parts.concat();
            let signature = secret.ed25519_key()?.sign(&signed);
            Some(format!("v1a,{}", STANDARD.encode(signature.to_bytes())))
        }
        SecretKind::Text => None,
    }
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;

    fn standard(algorithm: Algorithm) -> SignatureStyle {
        SignatureStyle::StandardWebhooks {
            algorithm,
            names: HeaderNames::Webhook,
        }
    }

    #[test]
    fn svix_names_carry_the_same_signature() {
        let secret = EndpointSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let svix = SignatureStyle::StandardWebhooks {
            algorithm: Algorithm::HmacSha256,
            names: HeaderNames::Svix,
        };
        let (name, value) = svix.sign(&[secret], ID, TS, BODY).unwrap();
        assert_eq!(name, "svix-signature");
        assert_eq!(value, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert_eq!(svix.header_names().id(), "svix-id");
        assert_eq!(svix.header_names().timestamp(), "svix-timestamp");
    }

    #[test]
    fn matches_the_standard_webhooks_hmac_vector() {
        let secret = EndpointSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let (name, value) = standard(Algorithm::HmacSha256).sign(&[secret], ID, TS, BODY).unwrap();
        assert_eq!(name, "webhook-signature");
        assert_eq!(value, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn matches_the_standard_webhooks_ed25519_vector() {
        let secret = EndpointSecret::parse(
            "whsk_6Xb/dCcHpPea21PS1N9VY/NZW723CEc77N4rJCubMbfVKIDij2HKpMKkioLlX0dRqSKJp4AJ6p9lMicMFs6Kvg==",
        )
        .unwrap();
        let (_, value) = standard(Algorithm::Ed25519).sign(&[secret], ID, TS, BODY).unwrap();
        assert_eq!(
            value,
            "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg=="
        );
    }

    #[test]
    fn a_standard_header_carries_one_entry_per_secret() {
        let a = EndpointSecret::generate(SecretKind::StandardHmac);
        let b = EndpointSecret::generate(SecretKind::StandardHmac);
        let (_, header) = standard(Algorithm::HmacSha256)
            .sign(&[a, b], "msg_1", 1, b"{}")
            .unwrap();
        let entries: Vec<&str> = header.split(' ').collect();
        assert_eq!(entries.len(), 2);
        assert!(entries.iter().all(|e| e.starts_with("v1,")));
        assert_ne!(entries[0], entries[1]);
    }

    #[test]
    fn body_hmac_is_keyed_with_the_secret_text_and_covers_only_the_body() {
        // Reference value: `echo -n 'hello' | openssl dgst -sha256 -hmac 'acme-secret-0123'`.
        let secret = EndpointSecret::parse("acme-secret-0123").unwrap();
        let style = SignatureStyle::BodyHmac {
            header: "X-Acme-Signature".into(),
            prefix: "sha256=".into(),
            encoding: Encoding::Hex,
        };
        let (name, value) = style.sign(std::slice::from_ref(&secret), "any", 0, b"hello").unwrap();
        assert_eq!(name, "X-Acme-Signature");
        let expected = hex(&hmac_sha256(b"acme-secret-0123", &[b"hello"]));
        assert_eq!(value, format!("sha256={expected}"));
        // The id and timestamp are not signed in this style.
        assert_eq!(style.sign(&[secret], "other", 99, b"hello").unwrap().1, value);
    }

    #[test]
    fn hex_encoding_matches_a_known_hmac() {
        // RFC 4231 test case 2.
        let mac = hmac_sha256(b"Jefe", &[b"what do ya want for nothing?"]);
        assert_eq!(
            hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn secrets_of_the_wrong_kind_do_not_sign() {
        let text = EndpointSecret::generate(SecretKind::Text);
        assert!(standard(Algorithm::HmacSha256).sign(&[text], ID, TS, BODY).is_none());
        let ed = EndpointSecret::generate(SecretKind::Ed25519);
        let body_style = SignatureStyle::BodyHmac {
            header: "X-Sig".into(),
            prefix: String::new(),
            encoding: Encoding::Base64,
        };
        assert!(body_style.sign(&[ed], ID, TS, BODY).is_none());
    }
}
