//! The file's `[[sources]]`: which broker queues and streams Herald
//! publishes from, and how a broker message maps to a Herald message.
//! Checked at start; the sources module only runs them.

use std::time::Duration;

use serde::Deserialize;

use crate::domain::retry::parse_duration;

/// One `[[sources]]` entry, checked.
#[derive(Clone)]
pub struct SourceConfig {
    /// Names the source in logs, `/health` and metrics.
    pub name: String,
    pub broker: Broker,
    pub mapping: Mapping,
    /// Most messages handed over before Herald acknowledges any.
    pub prefetch: u16,
}

#[derive(Clone)]
pub enum Broker {
    RabbitMq {
        url: String,
        queue: String,
    },
    Nats {
        url: String,
        stream: String,
        /// The durable pull consumer; created when missing.
        consumer: String,
        /// When Herald creates the consumer: only these subjects.
        filter_subject: Option<String>,
        /// When Herald creates the consumer: how long an unacknowledged
        /// message waits before it is delivered again.
        ack_wait: Duration,
    },
}

impl Broker {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::RabbitMq { .. } => "rabbitmq",
            Self::Nats { .. } => "nats",
        }
    }
}

impl std::fmt::Debug for SourceConfig {
    /// Broker URLs may carry a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceConfig")
            .field("name", &self.name)
            .field("kind", &self.broker.kind())
            .field("mapping", &self.mapping)
            .field("prefetch", &self.prefetch)
            .finish_non_exhaustive()
    }
}

/// A source as written in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    url: Option<String>,
    queue: Option<String>,
    stream: Option<String>,
    consumer: Option<String>,
    filter_subject: Option<String>,
    ack_wait: Option<String>,
    prefetch: Option<u16>,
    #[serde(default)]
    map: MappingSpec,
}

/// A problem with one key of one source, named as written in the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sources.{source_name}.{key}: {reason}")]
pub struct SourceError {
    pub source_name: String,
    pub key: String,
    pub reason: String,
}

const DEFAULT_PREFETCH: u16 = 64;
const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(30);

/// Checks the file's `[[sources]]`: names unique, each complete for its type.
pub fn build(specs: Vec<SourceSpec>) -> Result<Vec<SourceConfig>, SourceError> {
    let mut built: Vec<SourceConfig> = Vec::with_capacity(specs.len());
    for (index, spec) in specs.into_iter().enumerate() {
        let source = spec.build(index)?;
        if built.iter().any(|s| s.name == source.name) {
            return Err(SourceError {
                source_name: source.name,
                key: "name".into(),
                reason: "is used by another source".into(),
            });
        }
        built.push(source);
    }
    Ok(built)
}

impl SourceSpec {
    fn build(self, index: usize) -> Result<SourceConfig, SourceError> {
        let label = self.name.clone().unwrap_or_else(|| index.to_string());
        let err = |key: &str, reason: String| SourceError {
            source_name: label.clone(),
            key: key.to_owned(),
            reason,
        };
        let name = self.name.clone().ok_or_else(|| err("name", "is required".into()))?;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(err("name", "may contain only letters, digits, '-', '_' and '.'".into()));
        }
        let required = |key: &str, value: &Option<String>| match value.as_deref().map(str::trim) {
            Some(v) if !v.is_empty() => Ok(v.to_owned()),
            _ => Err(err(key, "is required".into())),
        };
        let forbidden = |key: &str, value: &Option<String>, kind: &str| match value {
            Some(_) => Err(err(key, format!("does not apply to a {kind} source"))),
            None => Ok(()),
        };
        let url = required("url", &self.url)?;
        let broker = match self.kind.as_deref() {
            Some("rabbitmq") => {
                if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
                    return Err(err("url", "must start with amqp:// or amqps://".into()));
                }
                for (key, value) in [
                    ("stream", &self.stream),
                    ("consumer", &self.consumer),
                    ("filter_subject", &self.filter_subject),
                    ("ack_wait", &self.ack_wait),
                ] {
                    forbidden(key, value, "rabbitmq")?;
                }
                Broker::RabbitMq {
                    url,
                    queue: required("queue", &self.queue)?,
                }
            }
            Some("nats") => {
                if !(url.starts_with("nats://") || url.starts_with("tls://")) {
                    return Err(err("url", "must start with nats:// or tls://".into()));
                }
                forbidden("queue", &self.queue, "nats")?;
                let ack_wait = match &self.ack_wait {
                    None => DEFAULT_ACK_WAIT,
                    Some(text) => match parse_duration(text) {
                        Ok(d) if d >= Duration::from_secs(1) => d,
                        Ok(_) => return Err(err("ack_wait", "must be at least 1s".into())),
                        Err(e) => return Err(err("ack_wait", e.to_string())),
                    },
                };
                Broker::Nats {
                    url,
                    stream: required("stream", &self.stream)?,
                    consumer: required("consumer", &self.consumer)?,
                    filter_subject: self.filter_subject.clone(),
                    ack_wait,
                }
            }
            Some(other) => return Err(err("type", format!("'{other}' is not one of rabbitmq, nats"))),
            None => return Err(err("type", "is required: rabbitmq or nats".into())),
        };
        let prefetch = match self.prefetch {
            None => DEFAULT_PREFETCH,
            Some(0) => return Err(err("prefetch", "must be at least 1".into())),
            Some(n) => n,
        };
        let mapping = self
            .map
            .build()
            .map_err(|(key, reason)| err(&format!("map.{key}"), reason))?;
        Ok(SourceConfig {
            name,
            broker,
            mapping,
            prefetch,
        })
    }
}

/// Where one text value of a broker message is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Locator {
    /// A message header (AMQP header table, NATS header), by name, any case.
    Header(String),
    /// A member of the JSON body, by a dotted path such as `meta.type`.
    Field(Vec<String>),
    /// The same text for every message (e.g. one queue per application).
    Value(String),
}

/// Where the payload is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadLocator {
    /// The whole body, byte for byte.
    Body,
    /// A member of the JSON body, byte for byte as it is written there.
    Field(Vec<String>),
}

/// How a source reads its messages. The default reads a JSON envelope:
/// `{"app", "eventType", "payload", "eventId", "channels"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub app: Locator,
    pub event_type: Locator,
    pub payload: PayloadLocator,
    /// Optional in the message: a message without it has no eventId.
    pub event_id: Locator,
    /// Optional in the message: a message without it has no channels.
    pub channels: Locator,
}

impl Default for Mapping {
    fn default() -> Self {
        let field = |name: &str| Locator::Field(vec![name.to_owned()]);
        Self {
            app: field("app"),
            event_type: field("eventType"),
            payload: PayloadLocator::Field(vec!["payload".to_owned()]),
            event_id: field("eventId"),
            channels: field("channels"),
        }
    }
}

/// The mapping as written in the file's `[sources.map]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingSpec {
    pub app: Option<String>,
    pub event_type: Option<String>,
    pub payload: Option<String>,
    pub event_id: Option<String>,
    pub channels: Option<String>,
}

impl MappingSpec {
    /// The mapping, or the key (`app`, `payload`…) and what is wrong with it.
    pub fn build(self) -> Result<Mapping, (&'static str, String)> {
        let mut m = Mapping::default();
        let set = |slot: &mut Locator, key: &'static str, text: Option<String>| {
            if let Some(text) = text {
                *slot = Locator::parse(&text).map_err(|reason| (key, reason))?;
            }
            Ok::<(), (&'static str, String)>(())
        };
        set(&mut m.app, "app", self.app)?;
        set(&mut m.event_type, "event_type", self.event_type)?;
        set(&mut m.event_id, "event_id", self.event_id)?;
        set(&mut m.channels, "channels", self.channels)?;
        if let Some(text) = self.payload {
            m.payload = PayloadLocator::parse(&text).map_err(|reason| ("payload", reason))?;
        }
        Ok(m)
    }
}

impl Locator {
    /// `header:NAME`, `field:a.b` or `value:TEXT`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("'{text}' is not one of header:NAME, field:PATH, value:TEXT");
        let (kind, rest) = text.split_once(':').ok_or_else(bad)?;
        match kind {
            "header" if !rest.trim().is_empty() => Ok(Self::Header(rest.trim().to_owned())),
            "field" => parse_path(rest).map(Self::Field),
            "value" if !rest.is_empty() => Ok(Self::Value(rest.to_owned())),
            _ => Err(bad()),
        }
    }
}

impl PayloadLocator {
    /// `body` or `field:a.b`.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text == "body" {
            return Ok(Self::Body);
        }
        match text.split_once(':') {
            Some(("field", rest)) => parse_path(rest).map(Self::Field),
            _ => Err(format!("'{text}' is neither body nor field:PATH")),
        }
    }
}

fn parse_path(text: &str) -> Result<Vec<String>, String> {
    let parts: Vec<String> = text.split('.').map(str::to_owned).collect();
    if parts.iter().any(String::is_empty) {
        return Err(format!("'{text}' is not a dotted path such as data.type"));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<Vec<SourceConfig>, SourceError> {
        #[derive(Deserialize)]
        struct File {
            sources: Vec<SourceSpec>,
        }
        let file: File = toml::from_str(toml_text).unwrap();
        build(file.sources)
    }

    #[test]
    fn a_rabbitmq_and_a_nats_source_with_defaults() {
        let sources = parse(
            r#"
            [[sources]]
            name = "orders"
            type = "rabbitmq"
            url = "amqp://guest:guest@127.0.0.1:5672/%2f"
            queue = "herald"

            [[sources]]
            name = "billing"
            type = "nats"
            url = "nats://127.0.0.1:4222"
            stream = "BILLING"
            consumer = "herald"
            ack_wait = "5s"
            [sources.map]
            app = "header:x-app"
            "#,
        )
        .unwrap();
        assert_eq!(sources.len(), 2);
        assert_eq!(sources[0].prefetch, DEFAULT_PREFETCH);
        assert_eq!(sources[0].mapping, Mapping::default());
        assert!(matches!(&sources[0].broker, Broker::RabbitMq { queue, .. } if queue == "herald"));
        assert!(matches!(&sources[1].broker, Broker::Nats { ack_wait, .. } if *ack_wait == Duration::from_secs(5)));
        assert_eq!(sources[1].mapping.app, Locator::Header("x-app".into()));
        assert!(!format!("{:?}", sources[0]).contains("guest:guest"));
    }

    #[test]
    fn mistakes_name_the_source_and_the_key() {
        let err = |text: &str| parse(text).unwrap_err().to_string();
        let e = err("[[sources]]\nname = \"a\"\ntype = \"kafka\"\nurl = \"x\"\n");
        assert!(e.starts_with("sources.a.type: 'kafka'"), "{e}");
        let e = err("[[sources]]\nname = \"a\"\ntype = \"rabbitmq\"\nurl = \"amqp://h\"\n");
        assert_eq!(e, "sources.a.queue: is required");
        let e =
            err("[[sources]]\nname = \"a\"\ntype = \"rabbitmq\"\nurl = \"amqp://h\"\nqueue = \"q\"\nstream = \"S\"\n");
        assert_eq!(e, "sources.a.stream: does not apply to a rabbitmq source");
        let e = err("[[sources]]\ntype = \"nats\"\nurl = \"nats://h\"\n");
        assert_eq!(e, "sources.0.name: is required");
        let e = err(
            "[[sources]]\nname = \"a\"\ntype = \"nats\"\nurl = \"nats://h\"\nstream = \"S\"\nconsumer = \"c\"\n[sources.map]\nevent_type = \"nowhere\"\n",
        );
        assert!(e.starts_with("sources.a.map.event_type: "), "{e}");
        let twice = "[[sources]]\nname = \"a\"\ntype = \"rabbitmq\"\nurl = \"amqp://h\"\nqueue = \"q\"\n";
        let e = err(&format!("{twice}{twice}"));
        assert_eq!(e, "sources.a.name: is used by another source");
    }

    #[test]
    fn bad_mappings_name_the_key() {
        let e = MappingSpec {
            app: Some("somewhere".into()),
            ..Default::default()
        }
        .build()
        .unwrap_err();
        assert_eq!(e.0, "app");
        assert!(e.1.contains("header:NAME"), "{}", e.1);
        let e = MappingSpec {
            payload: Some("field:a..b".into()),
            ..Default::default()
        }
        .build()
        .unwrap_err();
        assert_eq!(e.0, "payload");
        let e = MappingSpec {
            payload: Some("header:x".into()),
            ..Default::default()
        }
        .build()
        .unwrap_err();
        assert_eq!(e.0, "payload");
    }
}
