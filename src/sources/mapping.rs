//! From a broker message to a Herald message: where the application, the
//! event type, the payload, the eventId and the channels are read. Pure, so
//! that every rule is tested without a broker.

use std::collections::HashMap;

use serde_json::value::RawValue;

use crate::config::source::{Locator, Mapping, PayloadLocator};
use crate::service::message::MessageIn;

/// A message as a broker handed it over.
pub struct Incoming<'a> {
    /// Header names and their values as text.
    pub headers: Vec<(String, String)>,
    pub body: &'a [u8],
}

impl Incoming<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A message that cannot become a Herald message, and why. It is rejected to
/// the broker's dead letter, never retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error("{what}: {reason}")]
    Value { what: &'static str, reason: String },
}

/// What a broker message maps to: the application (id or uid) and the
/// message, to be checked and stored like a published one.
#[derive(Debug)]
pub struct Mapped {
    pub app: String,
    pub message: MessageIn,
}

impl Mapping {
    pub fn apply(&self, msg: &Incoming<'_>) -> Result<Mapped, Malformed> {
        let text = std::str::from_utf8(msg.body).map_err(|e| Malformed::NotJson(e.to_string()))?;
        let body: &RawValue = serde_json::from_str(text).map_err(|e| Malformed::NotJson(e.to_string()))?;
        let read = Reader { msg, body };
        let app = read.required("app", &self.app)?;
        let event_type = read.required("eventType", &self.event_type)?;
        let event_id = read.optional("eventId", &self.event_id)?;
        let channels = read.channels(&self.channels)?;
        let payload = match &self.payload {
            PayloadLocator::Body => body.to_owned(),
            PayloadLocator::Field(path) => field(body, path)
                .ok_or_else(|| missing("payload", &format!("field '{}'", path.join("."))))?
                .to_owned(),
        };
        Ok(Mapped {
            app,
            message: MessageIn {
                event_type,
                payload,
                event_id,
                channels,
                tags: None,
                audience: None,
                payload_retention_period: None,
                payload_retention_hours: None,
                application: None,
            },
        })
    }
}

struct Reader<'m, 'b> {
    msg: &'m Incoming<'b>,
    body: &'m RawValue,
}

impl Reader<'_, '_> {
    fn required(&self, what: &'static str, at: &Locator) -> Result<String, Malformed> {
        self.optional(what, at)?.ok_or_else(|| missing(what, &describe(at)))
    }

    /// The text at `at`; a JSON string or number where it is a field.
    fn optional(&self, what: &'static str, at: &Locator) -> Result<Option<String>, Malformed> {
        match at {
            Locator::Header(name) => Ok(self.msg.header(name).map(str::to_owned)),
            Locator::Value(text) => Ok(Some(text.clone())),
            Locator::Field(path) => match field(self.body, path) {
                None => Ok(None),
                Some(raw) => match serde_json::from_str::<serde_json::Value>(raw.get()) {
                    Ok(serde_json::Value::String(s)) => Ok(Some(s)),
                    Ok(serde_json::Value::Number(n)) => Ok(Some(n.to_string())),
                    Ok(serde_json::Value::Null) => Ok(None),
                    _ => Err(Malformed::Value {
                        what,
                        reason: format!("field '{}' must be a string", path.join(".")),
                    }),
                },
            },
        }
    }

    /// A JSON list of strings in a field; comma-separated text elsewhere.
    fn channels(&self, at: &Locator) -> Result<Option<Vec<String>>, Malformed> {
        let split = |text: &str| {
            text.split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        match at {
            Locator::Header(name) => Ok(self.msg.header(name).map(split)),
            Locator::Value(text) => Ok(Some(split(text))),
            Locator::Field(path) => match field(self.body, path) {
                None => Ok(None),
                Some(raw) => serde_json::from_str::<Option<Vec<String>>>(raw.get()).map_err(|_| Malformed::Value {
                    what: "channels",
                    reason: format!("field '{}' must be a list of strings", path.join(".")),
                }),
            },
        }
    }
}

/// The member at `path`, as written; `None` when some step is missing or
/// not an object.
fn field<'a>(body: &'a RawValue, path: &[String]) -> Option<&'a RawValue> {
    let mut here = body;
    for key in path {
        let members: HashMap<String, &'a RawValue> = serde_json::from_str(here.get()).ok()?;
        here = members.get(key).copied()?;
    }
    Some(here)
}

fn describe(at: &Locator) -> String {
    match at {
        Locator::Header(name) => format!("header '{name}'"),
        Locator::Field(path) => format!("field '{}'", path.join(".")),
        Locator::Value(_) => "value".to_owned(),
    }
}

fn missing(what: &'static str, place: &str) -> Malformed {
    Malformed::Value {
        what,
        reason: format!("{place} is missing"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::source::MappingSpec;

    fn incoming<'a>(headers: &[(&str, &str)], body: &'a str) -> Incoming<'a> {
        Incoming {
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            body: body.as_bytes(),
        }
    }

    #[test]
    fn the_default_reads_the_json_envelope_and_keeps_the_payload_bytes() {
        let body = r#"{"app":"acme","eventType":"ticket.created","eventId":"evt-1",
            "channels":["eu"],"payload":{"b": 1,  "a":[2]}}"#;
        let m = Mapping::default().apply(&incoming(&[], body)).unwrap();
        assert_eq!(m.app, "acme");
        assert_eq!(m.message.event_type, "ticket.created");
        assert_eq!(m.message.event_id.as_deref(), Some("evt-1"));
        assert_eq!(m.message.channels, Some(vec!["eu".to_owned()]));
        assert_eq!(m.message.payload.get(), r#"{"b": 1,  "a":[2]}"#);
    }

    #[test]
    fn event_id_and_channels_are_optional() {
        let body = r#"{"app":"acme","eventType":"t","payload":{}}"#;
        let m = Mapping::default().apply(&incoming(&[], body)).unwrap();
        assert_eq!(m.message.event_id, None);
        assert_eq!(m.message.channels, None);
    }

    #[test]
    fn headers_fields_and_values_can_be_mixed() {
        let mapping = MappingSpec {
            app: Some("value:acme".into()),
            event_type: Some("header:X-Event-Type".into()),
            payload: Some("body".into()),
            event_id: Some("field:meta.id".into()),
            channels: Some("header:x-channels".into()),
        }
        .build()
        .unwrap();
        let body = r#"{"meta":{"id":42},"total":10}"#;
        let msg = incoming(&[("x-event-type", "order.paid"), ("X-Channels", "eu, vip")], body);
        let m = mapping.apply(&msg).unwrap();
        assert_eq!(m.app, "acme");
        assert_eq!(m.message.event_type, "order.paid");
        assert_eq!(m.message.event_id.as_deref(), Some("42"));
        assert_eq!(m.message.channels, Some(vec!["eu".to_owned(), "vip".to_owned()]));
        assert_eq!(m.message.payload.get(), body);
    }

    #[test]
    fn what_is_wrong_is_named() {
        let d = Mapping::default();
        let err = |body: &str| d.apply(&incoming(&[], body)).unwrap_err().to_string();
        assert!(err("not json").starts_with("the body is not JSON"));
        assert_eq!(err(r#"{"eventType":"t","payload":{}}"#), "app: field 'app' is missing");
        assert_eq!(
            err(r#"{"app":"a","eventType":["t"],"payload":{}}"#),
            "eventType: field 'eventType' must be a string"
        );
        assert_eq!(
            err(r#"{"app":"a","eventType":"t"}"#),
            "payload: field 'payload' is missing"
        );
        assert_eq!(
            err(r#"{"app":"a","eventType":"t","payload":{},"channels":"eu"}"#),
            "channels: field 'channels' must be a list of strings"
        );
        let by_header = MappingSpec {
            app: Some("header:x-app".into()),
            ..Default::default()
        }
        .build()
        .unwrap();
        let e = by_header
            .apply(&incoming(&[], r#"{"eventType":"t","payload":{}}"#))
            .unwrap_err();
        assert_eq!(e.to_string(), "app: header 'x-app' is missing");
    }
}
