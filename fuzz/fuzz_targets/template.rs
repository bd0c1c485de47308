//! Payload formats over any template and any payload. The input is
//! `<format byte><template>\0<payload>\0<event type>`, so seeds stay
//! readable. Saving and rendering never panic; a render that succeeds is
//! valid JSON within the size limit; fuel bounds the work (the runner's
//! `-timeout` turns a render that runs on into a failure).
#![no_main]

use herald_fuzz::domain::format::{EventInfo, PayloadFormat};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const DEFAULT_PAYLOAD: &str = r#"{"id": 7, "user": {"name": "Eve \"q\" <b>"}, "tags": ["a", "b"], "n": null}"#;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let mut parts = text.splitn(3, '\0');
    let template = parts.next().unwrap_or_default();
    let payload = parts.next().unwrap_or(DEFAULT_PAYLOAD);
    let event_type = parts.next().unwrap_or("ticket.created");
    let event = EventInfo {
        event_type,
        msg_id: "msg_2pLLCgzBSv4Xr0HWvOyBWMGDJsX",
        event_id: Some("evt-9"),
        created_at: "2026-11-23T10:00:00Z".into(),
    };
    match selector % 3 {
        0 => {
            let body = PayloadFormat::Raw.render(&event, payload).expect("raw always renders");
            assert_eq!(body, payload);
        }
        1 => {
            if let Ok(body) = PayloadFormat::Slack.render(&event, payload) {
                let v: Value = serde_json::from_str(&body).expect("a Slack message is JSON");
                assert_eq!(v["text"], event_type);
                let text = v["blocks"][0]["text"]["text"].as_str().expect("a section text");
                assert!(
                    text.chars().count() <= 3000,
                    "Slack text of {} chars",
                    text.chars().count()
                );
            }
        }
        _ => {
            // A template that fails to save is still rendered: the store
            // hands back whatever it holds.
            let format = PayloadFormat::parse(Some("template"), Some(template))
                .unwrap_or_else(|_| PayloadFormat::Template(template.to_owned()));
            if let Ok(body) = format.render(&event, payload) {
                assert!(body.len() <= 1024 * 1024, "{} bytes rendered", body.len());
                // JSON's grammar has no bound on numbers; a literal such as
                // 1e999 in the template is valid JSON that no f64 holds.
                if let Err(e) = serde_json::from_str::<Value>(&body) {
                    assert!(e.to_string().starts_with("number out of range"), "{body:?}: {e}");
                }
            }
        }
    }
});
