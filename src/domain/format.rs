//! Payload formats: what body an endpoint receives for a message.
//!
//! `raw` sends the payload exactly as published; `slack` wraps it in a Slack
//! Block Kit message; `template` renders a user's template to JSON.

use std::borrow::Cow;

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;
use serde_json::{Map, Value, json};

/// Largest template an endpoint may store.
pub const MAX_TEMPLATE_BYTES: usize = 16 * 1024;
/// Largest body a template may produce.
const MAX_RENDERED_BYTES: usize = 1024 * 1024;
/// Bounds the work one render may do, so a template cannot stall a worker.
const TEMPLATE_FUEL: u64 = 200_000;
/// Payload fields shown in a Slack message.
const SLACK_FIELDS: usize = 10;
/// Slack truncates section text beyond 3,000 characters.
const SLACK_TEXT_LIMIT: usize = 3000;
const SLACK_VALUE_LIMIT: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PayloadFormat {
    #[default]
    Raw,
    Slack,
    Template(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("'{0}' is not one of raw, slack, template")]
    UnknownFormat(String),
    #[error("is required when format is \"template\"")]
    MissingTemplate,
    #[error("applies only when format is \"template\"")]
    TemplateWithoutFormat,
    #[error("is longer than {MAX_TEMPLATE_BYTES} bytes")]
    TemplateTooLong,
    #[error("does not compile: {0}")]
    BadTemplate(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("the payload is not JSON: {0}")]
    PayloadNotJson(String),
    #[error("the template failed: {0}")]
    Template(String),
    #[error("the template produced invalid JSON: {0}")]
    NotJson(String),
    #[error("the template produced more than {MAX_RENDERED_BYTES} bytes")]
    TooLarge,
}

/// What a format may use besides the payload.
#[derive(Debug, Clone, Serialize)]
pub struct EventInfo<'a> {
    pub event_type: &'a str,
    pub msg_id: &'a str,
    pub event_id: Option<&'a str>,
    /// When the message was published, RFC 3339.
    pub created_at: String,
}

impl PayloadFormat {
    /// Parses the `format` and `template` fields of an endpoint; a template
    /// is compiled here so that a broken one is refused when saved.
    pub fn parse(format: Option<&str>, template: Option<&str>) -> Result<Self, (&'static str, FormatError)> {
        let parsed = match format.unwrap_or("raw") {
            "raw" => Self::Raw,
            "slack" => Self::Slack,
            "template" => {
                let text = template.ok_or(("template", FormatError::MissingTemplate))?;
                check_template(text).map_err(|e| ("template", e))?;
                Self::Template(text.to_owned())
            }
            other => return Err(("format", FormatError::UnknownFormat(other.to_owned()))),
        };
        if template.is_some() && !matches!(parsed, Self::Template(_)) {
            return Err(("template", FormatError::TemplateWithoutFormat));
        }
        Ok(parsed)
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Slack => "slack",
            Self::Template(_) => "template",
        }
    }

    pub fn template(&self) -> Option<&str> {
        match self {
            Self::Template(t) => Some(t),
            _ => None,
        }
    }

    /// The body to send: borrowed as published for `raw`.
    pub fn render<'p>(&self, event: &EventInfo<'_>, payload: &'p str) -> Result<Cow<'p, str>, RenderError> {
        match self {
            Self::Raw => Ok(Cow::Borrowed(payload)),
            Self::Slack => {
                let value = parse_payload(payload)?;
                Ok(Cow::Owned(slack_message(event.event_type, &value).to_string()))
            }
            Self::Template(text) => render_template(text, event, payload).map(Cow::Owned),
        }
    }
}

fn parse_payload(payload: &str) -> Result<Value, RenderError> {
    serde_json::from_str(payload).map_err(|e| RenderError::PayloadNotJson(e.to_string()))
}

/// Templates emit JSON: every `{{ value }}` is written as a JSON value, so a
/// string in the payload can never break out of its quotes.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| AutoEscape::Json);
    env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
    env.set_fuel(Some(TEMPLATE_FUEL));
    env
}

pub fn check_template(text: &str) -> Result<(), FormatError> {
    if text.len() > MAX_TEMPLATE_BYTES {
        return Err(FormatError::TemplateTooLong);
    }
    environment()
        .template_from_str(text)
        .map(|_| ())
        .map_err(|e| FormatError::BadTemplate(describe(&e)))
}

fn render_template(text: &str, event: &EventInfo<'_>, payload: &str) -> Result<String, RenderError> {
    let payload = parse_payload(payload)?;
    let env = environment();
    let template = env
        .template_from_str(text)
        .map_err(|e| RenderError::Template(describe(&e)))?;
    let context = minijinja::context! {
        event_type => event.event_type,
        msg_id => event.msg_id,
        event_id => event.event_id,
        created_at => &event.created_at,
        payload => minijinja::Value::from_serialize(&payload),
    };
    let mut out = Bounded::default();
    if let Err(e) = template.render_captured_to(context, &mut out) {
        return Err(if out.overflowed {
            RenderError::TooLarge
        } else {
            RenderError::Template(describe(&e))
        });
    }
    let out = String::from_utf8(out.bytes).map_err(|e| RenderError::NotJson(e.to_string()))?;
    serde_json::from_str::<serde::de::IgnoredAny>(&out).map_err(|e| RenderError::NotJson(e.to_string()))?;
    Ok(out)
}

/// A render's output, refused past [`MAX_RENDERED_BYTES`]: a loop that
/// repeats the payload stops there instead of filling memory (before, it
/// wrote hundreds of megabytes until its fuel ran out).
#[derive(Default)]
struct Bounded {
    bytes: Vec<u8>,
    overflowed: bool,
}

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > MAX_RENDERED_BYTES {
            self.overflowed = true;
            return Err(std::io::Error::other("the rendered body is too large"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// minijinja's message plus the line, without its multi-line debug dump.
fn describe(e: &minijinja::Error) -> String {
    match e.line() {
        Some(line) => format!("{} (line {line})", e.detail().unwrap_or(&e.kind().to_string())),
        None => e.detail().map_or_else(|| e.kind().to_string(), str::to_owned),
    }
}

/// A Block Kit message: the event type as a bold title, then the payload's
/// main fields, one per line. `text` is the notification fallback.
pub fn slack_message(event_type: &str, payload: &Value) -> Value {
    let mut text = format!("*{}*", slack_escape(event_type));
    match payload {
        Value::Object(fields) => append_fields(&mut text, fields),
        other => {
            text.push('\n');
            text.push_str(&slack_escape(&shorten(&other.to_string())));
        }
    }
    if text.chars().count() > SLACK_TEXT_LIMIT {
        text = text.chars().take(SLACK_TEXT_LIMIT - 1).collect::<String>() + "…";
    }
    json!({
        "text": event_type,
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
    })
}

fn append_fields(text: &mut String, fields: &Map<String, Value>) {
    for (name, value) in fields.iter().take(SLACK_FIELDS) {
        let shown = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        text.push_str(&format!(
            "\n• *{}*: {}",
            slack_escape(name),
            slack_escape(&shorten(&shown))
        ));
    }
    if fields.len() > SLACK_FIELDS {
        text.push_str(&format!("\n_…and {} more_", fields.len() - SLACK_FIELDS));
    }
}

fn shorten(s: &str) -> String {
    if s.chars().count() <= SLACK_VALUE_LIMIT {
        s.to_owned()
    } else {
        s.chars().take(SLACK_VALUE_LIMIT - 1).collect::<String>() + "…"
    }
}

/// Slack's three control characters in message text.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> EventInfo<'static> {
        EventInfo {
            event_type: "ticket.created",
            msg_id: "msg_1",
            event_id: Some("evt-9"),
            created_at: "2026-11-23T10:00:00Z".into(),
        }
    }

    #[test]
    fn raw_sends_the_published_bytes() {
        let payload = r#"{ "b": 1,  "a": 2 }"#;
        assert_eq!(PayloadFormat::Raw.render(&event(), payload).unwrap(), payload);
    }

    #[test]
    fn slack_shows_the_event_type_and_the_main_fields() {
        let body = PayloadFormat::Slack
            .render(
                &event(),
                r#"{"id": 42, "subject": "Printer <on fire> & smoking", "tags": ["a"]}"#,
            )
            .unwrap();
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["text"], "ticket.created");
        assert_eq!(v["blocks"][0]["type"], "section");
        assert_eq!(v["blocks"][0]["text"]["type"], "mrkdwn");
        assert_eq!(
            v["blocks"][0]["text"]["text"],
            "*ticket.created*\n• *id*: 42\n• *subject*: Printer &lt;on fire&gt; &amp; smoking\n• *tags*: [\"a\"]"
        );
    }

    #[test]
    fn slack_lists_at_most_ten_fields() {
        let fields: Map<String, Value> = (0..12).map(|i| (format!("f{i:02}"), json!(i))).collect();
        let v = slack_message("x", &Value::Object(fields));
        let text = v["blocks"][0]["text"]["text"].as_str().unwrap();
        assert_eq!(text.matches('•').count(), 10);
        assert!(text.ends_with("_…and 2 more_"));
    }

    #[test]
    fn templates_render_json_with_values_escaped() {
        let format = PayloadFormat::parse(
            Some("template"),
            Some(r#"{"title": {{ event_type }}, "who": {{ payload.user.name }}, "id": {{ payload.id }}}"#),
        )
        .unwrap();
        let body = format
            .render(&event(), r#"{"id": 7, "user": {"name": "Eve \"quoted\" }"}}"#)
            .unwrap();
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v,
            json!({"title": "ticket.created", "who": "Eve \"quoted\" }", "id": 7})
        );
    }

    #[test]
    fn a_broken_template_is_refused_when_saved() {
        let err = PayloadFormat::parse(Some("template"), Some("{{ payload.id ")).unwrap_err();
        assert_eq!(err.0, "template");
        assert!(matches!(err.1, FormatError::BadTemplate(_)), "{err:?}");
        assert_eq!(
            PayloadFormat::parse(Some("template"), None).unwrap_err().1,
            FormatError::MissingTemplate
        );
        assert_eq!(
            PayloadFormat::parse(Some("slack"), Some("{}")).unwrap_err().1,
            FormatError::TemplateWithoutFormat
        );
        assert_eq!(PayloadFormat::parse(Some("xml"), None).unwrap_err().0, "format");
    }

    #[test]
    fn render_failures_are_reasons_not_panics() {
        let missing = PayloadFormat::Template(r#"{"x": {{ payload.nope }}}"#.into());
        assert!(matches!(
            missing.render(&event(), "{}").unwrap_err(),
            RenderError::Template(_)
        ));
        let not_json = PayloadFormat::Template("hello {{ event_type }}".into());
        assert!(matches!(
            not_json.render(&event(), "{}").unwrap_err(),
            RenderError::NotJson(_)
        ));
        // A loop over a large payload stops at the size limit, long before
        // its fuel runs out (by then it would have written 40 MB).
        let big = format!(r#"{{"text": "{}"}}"#, "x".repeat(1_000));
        let repeated = PayloadFormat::Template("{% for i in range(100000) %}{{ payload }}{% endfor %}".into());
        assert_eq!(repeated.render(&event(), &big).unwrap_err(), RenderError::TooLarge);
        let endless = PayloadFormat::Template(
            "{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}{}".into(),
        );
        assert!(matches!(
            endless.render(&event(), "{}").unwrap_err(),
            RenderError::Template(_)
        ));
    }
}
