//! Micro-benchmarks of the per-attempt CPU work: signing and rendering a
//! 1 KB payload. Run with `cargo bench`; whole-system figures come from
//! `herald bench` (docs/performance.md).

use criterion::{Criterion, criterion_group, criterion_main};
use herald::config::{Config, Settings};
use herald::delivery::render::Renderer;
use herald::domain::format::{EventInfo, PayloadFormat};
use herald::domain::secret::{EndpointSecret, SecretKind};
use herald::domain::signature::{Algorithm, Encoding, HeaderNames, SignatureStyle};

fn payload() -> String {
    format!(
        r#"{{"ticket":{{"id":42,"subject":"Printer on fire","body":"{}"}}}}"#,
        "x".repeat(960)
    )
}

fn signing(c: &mut Criterion) {
    let body = payload();
    let cases = [
        (
            "standard_webhooks_hmac",
            SignatureStyle::StandardWebhooks {
                algorithm: Algorithm::HmacSha256,
                names: HeaderNames::Webhook,
            },
            SecretKind::StandardHmac,
        ),
        (
            "standard_webhooks_ed25519",
            SignatureStyle::StandardWebhooks {
                algorithm: Algorithm::Ed25519,
                names: HeaderNames::Webhook,
            },
            SecretKind::Ed25519,
        ),
        (
            "body_hmac_hex",
            SignatureStyle::BodyHmac {
                header: "X-Acme-Signature".into(),
                prefix: "sha256=".into(),
                encoding: Encoding::Hex,
            },
            SecretKind::Text,
        ),
    ];
    for (name, style, kind) in cases {
        let secrets = [EndpointSecret::generate(kind)];
        c.bench_function(&format!("sign_1kb/{name}"), |b| {
            b.iter(|| {
                style.sign(
                    &secrets,
                    "msg_01JABCDEFGHJKMNPQRSTVWXYZ0",
                    1_795_000_000,
                    body.as_bytes(),
                )
            })
        });
    }
}

fn rendering(c: &mut Criterion) {
    let body = payload();
    let event = EventInfo {
        event_type: "ticket.created",
        msg_id: "msg_01JABCDEFGHJKMNPQRSTVWXYZ0",
        event_id: Some("ticket-42"),
        created_at: "2026-11-23T12:00:00.000Z".into(),
    };
    let formats = [
        ("raw", PayloadFormat::parse(Some("raw"), None)),
        ("slack", PayloadFormat::parse(Some("slack"), None)),
        (
            "template",
            PayloadFormat::parse(
                Some("template"),
                Some(r#"{"event": {{ event_type | tojson }}, "subject": {{ payload.ticket.subject | tojson }}}"#),
            ),
        ),
    ];
    for (name, format) in formats {
        let Ok(format) = format else {
            panic!("the {name} format does not parse");
        };
        c.bench_function(&format!("render_1kb/{name}"), |b| {
            b.iter(|| format.render(&event, &body))
        });
    }
    // What the server does: raw in process, templates in a bounded worker
    // (a round trip over a pipe to a kept `herald render-worker`).
    let settings = Settings {
        template_worker: Some(env!("CARGO_BIN_EXE_herald").into()),
        ..Default::default()
    };
    let Ok(config) = Config::load(&settings, None) else {
        panic!("the default configuration loads");
    };
    let renderer = Renderer::new(&config);
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
        panic!("a runtime");
    };
    for name in ["raw", "template"] {
        let Ok(format) = PayloadFormat::parse(
            Some(name),
            (name == "template")
                .then_some(r#"{"event": {{ event_type | tojson }}, "subject": {{ payload.ticket.subject | tojson }}}"#),
        ) else {
            panic!("the {name} format does not parse");
        };
        c.bench_function(&format!("render_1kb_served/{name}"), |b| {
            b.iter(|| runtime.block_on(renderer.render(&format, &event, &body)))
        });
    }
}

criterion_group!(benches, signing, rendering);
criterion_main!(benches);
