//! Endpoint secrets as users type them and as the store reads them back:
//! parsing never panics, the text decides the kind, a parsed secret parses
//! back to itself, and neither `Debug` nor the consumer's copy leaks a key.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use herald_fuzz::domain::secret::{EndpointSecret, SecretKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let Ok(secret) = EndpointSecret::parse(text) else {
        return;
    };
    assert_eq!(secret.expose(), text);
    let kind = secret.kind();
    let expected = if text.starts_with("whsec_") {
        SecretKind::StandardHmac
    } else if text.starts_with("whsk_") {
        SecretKind::Ed25519
    } else {
        SecretKind::Text
    };
    assert_eq!(kind, expected, "{text:?}");
    let again = EndpointSecret::parse(secret.expose()).expect("a parsed secret parses again");
    assert!(again == secret && again.kind() == kind);
    assert_eq!(format!("{secret:?}"), format!("EndpointSecret({kind:?}, <redacted>)"));
    match kind {
        SecretKind::Ed25519 => {
            assert!(secret.hmac_key().is_none());
            let public = secret.for_consumer();
            let encoded = public.strip_prefix("whpk_").expect("a whpk_ public key");
            let bytes = STANDARD.decode(encoded).expect("standard base64");
            let key = secret.ed25519_key().expect("an Ed25519 key");
            assert_eq!(bytes.as_slice(), key.verifying_key().as_bytes());
        }
        SecretKind::StandardHmac => {
            let key = secret.hmac_key().expect("an HMAC key");
            assert!((24..=64).contains(&key.len()));
            assert_eq!(secret.for_consumer(), text);
        }
        SecretKind::Text => {
            assert_eq!(secret.hmac_key(), Some(text.as_bytes()));
            assert_eq!(secret.for_consumer(), text);
        }
    }
});
