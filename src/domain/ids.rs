//! Prefixed, time-sortable identifiers (`app_…`, `ep_…`, `msg_…`, `atmpt_…`).
//!
//! A ULID after the prefix sorts by creation time, so ids double as cursors
//! for pagination and clients can order them without a timestamp.

use std::fmt;
use std::sync::{LazyLock, Mutex};

use ulid::{Generator, Ulid};

/// Ids made in the same millisecond still sort in the order they were made.
static GENERATOR: LazyLock<Mutex<Generator>> = LazyLock::new(|| Mutex::new(Generator::new()));

fn next_ulid() -> Ulid {
    // The generator fails only when 2^80 ids fall in one millisecond.
    GENERATOR
        .lock()
        .ok()
        .and_then(|mut g| g.generate().ok())
        .unwrap_or_else(|| Ulid::from_datetime(std::time::SystemTime::now()))
}

macro_rules! prefixed_id {
    ($name:ident, $prefix:literal) => {
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn generate() -> Self {
                Self(format!("{}{}", $prefix, next_ulid()))
            }

            /// Accepts only a well-formed id of this kind; anything else may be a uid.
            pub fn parse(s: &str) -> Option<Self> {
                let rest = s.strip_prefix($prefix)?;
                Ulid::from_string(rest).ok()?;
                Some(Self(s.to_owned()))
            }

            /// For values read back from the store, which only ever holds ids it generated.
            pub fn from_trusted(s: String) -> Self {
                Self(s)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The lowest id generated at or after `time`: ids sort by
            /// creation, so an index on ids serves a time range.
            pub fn lowest_at(time: chrono::DateTime<chrono::Utc>) -> String {
                let ms = u64::try_from(time.timestamp_millis()).unwrap_or(0);
                format!("{}{}", $prefix, Ulid::from_parts(ms, 0))
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        /// Only a well-formed id of this kind deserializes.
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                Self::parse(&text).ok_or_else(|| serde::de::Error::custom(concat!("not a ", $prefix, " id")))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

prefixed_id!(AppId, "app_");
prefixed_id!(EndpointId, "ep_");
prefixed_id!(MessageId, "msg_");
prefixed_id!(AttemptId, "atmpt_");
prefixed_id!(DeliveryId, "dlv_");
prefixed_id!(TaskId, "qtask_");
prefixed_id!(TokenId, "tok_");
prefixed_id!(EmailId, "email_");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_carry_their_prefix_and_parse_back() {
        let id = MessageId::generate();
        assert!(id.as_str().starts_with("msg_"));
        assert_eq!(MessageId::parse(id.as_str()), Some(id));
    }

    #[test]
    fn ids_of_another_kind_or_garbage_do_not_parse() {
        let app = AppId::generate();
        assert_eq!(EndpointId::parse(app.as_str()), None);
        assert_eq!(AppId::parse("app_not-a-ulid"), None);
        assert_eq!(AppId::parse("my-app"), None);
    }

    #[test]
    fn ids_sort_in_the_order_they_were_made_even_within_a_millisecond() {
        let ids: Vec<AppId> = (0..1000).map(|_| AppId::generate()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }
}
