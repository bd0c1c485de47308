//! Signing, checked the way a consumer checks it. Herald only sends
//! signatures, so the target verifies each header value independently:
//! Standard Webhooks entries (`v1,` HMAC-SHA256 and `v1a,` Ed25519 over
//! `id.timestamp.body`, one per usable secret) and a product's own
//! `<prefix><hex or base64 HMAC of the body>`.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, SigningKey, Verifier, VerifyingKey};
use herald_fuzz::domain::secret::{EndpointSecret, SecretKind};
use herald_fuzz::domain::signature::{Algorithm, Encoding, HeaderNames, SignatureStyle};
use hmac::{Hmac, Mac};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;

#[derive(Debug, Arbitrary)]
struct Input {
    secrets: Vec<SecretInput>,
    style: StyleInput,
    msg_id: String,
    timestamp: i64,
    body: Vec<u8>,
}

/// A secret in each form: HMAC key bytes and Ed25519 seeds are encoded the
/// documented way (and must then parse); text is taken as typed.
#[derive(Debug, Arbitrary)]
enum SecretInput {
    Hmac(Vec<u8>),
    Ed25519([u8; 32]),
    Text(String),
}

#[derive(Debug, Arbitrary)]
enum StyleInput {
    StandardHmac { svix_names: bool },
    StandardEd25519 { svix_names: bool },
    Body { prefix: String, base64: bool },
}

fuzz_target!(|input: Input| {
    let secrets: Vec<EndpointSecret> = input.secrets.iter().take(4).filter_map(secret).collect();
    let style = match input.style {
        StyleInput::StandardHmac { svix_names } => SignatureStyle::StandardWebhooks {
            algorithm: Algorithm::HmacSha256,
            names: header_names(svix_names),
        },
        StyleInput::StandardEd25519 { svix_names } => SignatureStyle::StandardWebhooks {
            algorithm: Algorithm::Ed25519,
            names: header_names(svix_names),
        },
        StyleInput::Body { prefix, base64 } => SignatureStyle::BodyHmac {
            header: "X-Product-Signature".into(),
            prefix,
            encoding: if base64 { Encoding::Base64 } else { Encoding::Hex },
        },
    };
    let usable: Vec<&EndpointSecret> = secrets.iter().filter(|s| style.accepts(s)).collect();
    let signed = style.sign(&secrets, &input.msg_id, input.timestamp, &input.body);
    let Some((name, value)) = signed else {
        assert!(usable.is_empty(), "{} usable secrets signed nothing", usable.len());
        return;
    };
    match &style {
        SignatureStyle::StandardWebhooks { names, .. } => {
            assert_eq!(name, names.signature());
            let signed = [
                input.msg_id.as_bytes(),
                b".",
                input.timestamp.to_string().as_bytes(),
                b".",
                &input.body,
            ]
            .concat();
            let entries: Vec<&str> = value.split(' ').collect();
            assert_eq!(entries.len(), usable.len(), "{value:?}");
            for (entry, secret) in entries.iter().zip(&usable) {
                verify_standard(entry, secret, &signed);
            }
        }
        SignatureStyle::BodyHmac {
            header,
            prefix,
            encoding,
        } => {
            assert_eq!(&name, header);
            let encoded = value.strip_prefix(prefix.as_str()).expect("the prefix comes first");
            let mac = match encoding {
                Encoding::Hex => decode_hex(encoded),
                Encoding::Base64 => STANDARD.decode(encoded).expect("standard base64"),
            };
            let key = usable
                .first()
                .and_then(|s| s.hmac_key())
                .expect("the current usable secret signs");
            assert_eq!(mac, hmac(key, &input.body));
        }
    }
});

/// Svix's header names carry the same signature under `svix-signature`.
fn header_names(svix: bool) -> HeaderNames {
    if svix { HeaderNames::Svix } else { HeaderNames::Webhook }
}

fn secret(input: &SecretInput) -> Option<EndpointSecret> {
    match input {
        SecretInput::Hmac(bytes) => {
            let mut key = bytes.clone();
            key.resize(key.len().clamp(24, 64), 0);
            let parsed = EndpointSecret::parse(&format!("whsec_{}", STANDARD.encode(&key)));
            Some(parsed.expect("24 to 64 bytes of standard base64 make a whsec_ secret"))
        }
        SecretInput::Ed25519(seed) => {
            let pair = SigningKey::from_bytes(seed).to_keypair_bytes();
            let parsed = EndpointSecret::parse(&format!("whsk_{}", STANDARD.encode(pair)));
            Some(parsed.expect("a seed and its public key make a whsk_ secret"))
        }
        SecretInput::Text(text) => EndpointSecret::parse(text).ok(),
    }
}

fn verify_standard(entry: &str, secret: &EndpointSecret, signed: &[u8]) {
    match secret.kind() {
        SecretKind::StandardHmac => {
            let encoded = entry.strip_prefix("v1,").expect("an HMAC entry starts with v1,");
            let mac = STANDARD.decode(encoded).expect("standard base64");
            assert_eq!(mac, hmac(secret.hmac_key().unwrap(), signed));
        }
        SecretKind::Ed25519 => {
            let encoded = entry.strip_prefix("v1a,").expect("an Ed25519 entry starts with v1a,");
            let bytes: [u8; 64] = STANDARD
                .decode(encoded)
                .expect("standard base64")
                .try_into()
                .expect("64 bytes");
            let public = secret.for_consumer();
            let public = STANDARD.decode(public.strip_prefix("whpk_").unwrap()).unwrap();
            let key = VerifyingKey::from_bytes(&public.try_into().unwrap()).expect("a valid public key");
            key.verify(signed, &Signature::from_bytes(&bytes))
                .expect("the signature verifies");
        }
        SecretKind::Text => panic!("a text secret signed a Standard Webhooks entry"),
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn decode_hex(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2) && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}
