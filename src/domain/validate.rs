//! Field rules shared by the API's inputs, with errors that name the field.

/// One problem with one field, located like `["body", "filterTypes", 2]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub loc: Vec<String>,
    pub msg: String,
    pub kind: &'static str,
}

/// Collects every problem in a request so the caller fixes them all at once.
#[derive(Debug, Default)]
pub struct Problems(Vec<FieldError>);

impl Problems {
    pub fn add(&mut self, loc: &[&str], msg: impl Into<String>) {
        self.0.push(FieldError {
            loc: std::iter::once("body")
                .chain(loc.iter().copied())
                .map(str::to_owned)
                .collect(),
            msg: msg.into(),
            kind: "value_error",
        });
    }

    pub fn into_errors(self) -> Vec<FieldError> {
        self.0
    }

    pub fn into_result(self) -> Result<(), Vec<FieldError>> {
        if self.0.is_empty() { Ok(()) } else { Err(self.0) }
    }
}

const MAX_ID_LEN: usize = 256;
const MAX_CHANNEL_LEN: usize = 128;
const MAX_CHANNELS: usize = 10;

fn plain_name(s: &str, extra: &[char]) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') || extra.contains(&c))
}

/// `uid`s and event type names: 1–256 of `a-z A-Z 0-9 - _ .`.
pub fn check_name(p: &mut Problems, field: &str, value: &str) {
    if value.is_empty() || value.len() > MAX_ID_LEN {
        p.add(&[field], format!("must be 1 to {MAX_ID_LEN} characters long"));
    } else if !plain_name(value, &[]) {
        p.add(&[field], "may contain only letters, digits, '-', '_' and '.'");
    }
}

/// A uid must not be a well-formed Herald id of its kind (the prefix and a
/// ULID), or lookups by id-or-uid would be ambiguous. Anything else with the
/// prefix is a fine uid: an application moved from Svix keeps its Svix id
/// (`app_` and a 27-character KSUID) as its uid.
pub fn check_uid(p: &mut Problems, value: &str, id_prefix: &str) {
    check_name(p, "uid", value);
    let is_id = value
        .strip_prefix(id_prefix)
        .is_some_and(|rest| ulid::Ulid::from_string(rest).is_ok());
    if is_id {
        p.add(
            &["uid"],
            format!("must not be a Herald id ('{id_prefix}' and a ULID); ids and uids share one lookup"),
        );
    }
}

pub fn check_channels(p: &mut Problems, channels: &[String]) {
    if channels.len() > MAX_CHANNELS {
        p.add(&["channels"], format!("at most {MAX_CHANNELS} channels are allowed"));
    }
    for ch in channels {
        if ch.is_empty() || ch.len() > MAX_CHANNEL_LEN || !plain_name(ch, &[':']) {
            p.add(
                &["channels"],
                format!("'{ch}' must be 1 to {MAX_CHANNEL_LEN} of letters, digits, '-', '_', '.' and ':'"),
            );
        }
    }
}

pub fn check_event_types(p: &mut Problems, field: &str, types: &[String]) {
    for t in types {
        if t.is_empty() || t.len() > MAX_ID_LEN || !plain_name(t, &[]) {
            p.add(&[field], format!("'{t}' is not a valid event type name"));
        }
    }
}

/// Endpoint subscriptions: event type names, or a group wildcard such as
/// `ticket.*` (every type that starts with `ticket.`).
pub fn check_subscriptions(p: &mut Problems, field: &str, types: &[String]) {
    for t in types {
        let name = t.strip_suffix(".*").unwrap_or(t);
        if name.is_empty() || t.len() > MAX_ID_LEN || !plain_name(name, &[]) {
            p.add(
                &[field],
                format!("'{t}' is neither an event type name nor a wildcard such as 'ticket.*'"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_are_located_under_body() {
        let mut p = Problems::default();
        check_name(&mut p, "name", "no spaces allowed");
        let errs = p.into_result().unwrap_err();
        assert_eq!(errs[0].loc, vec!["body", "name"]);
    }

    #[test]
    fn good_values_pass() {
        let mut p = Problems::default();
        check_uid(&mut p, "customer-42", "app_");
        check_channels(&mut p, &["ticket:42".into()]);
        check_event_types(&mut p, "filterTypes", &["ticket.created".into()]);
        check_subscriptions(&mut p, "filterTypes", &["ticket.*".into(), "sla.at_risk".into()]);
        assert!(p.into_result().is_ok());
        let mut p = Problems::default();
        check_subscriptions(&mut p, "filterTypes", &["*".into(), ".*".into(), "ticket.*.x".into()]);
        assert_eq!(p.into_result().unwrap_err().len(), 3);
    }

    #[test]
    fn uids_cannot_pose_as_ids() {
        let mut p = Problems::default();
        check_uid(&mut p, &format!("app_{}", ulid::Ulid::new()), "app_");
        assert!(p.into_result().is_err());
    }

    #[test]
    fn a_svix_id_is_a_uid_not_an_id() {
        let mut p = Problems::default();
        check_uid(&mut p, "app_2XzKSUIDbase62Example00001", "app_");
        check_uid(&mut p, "ep_2XzKSUIDbase62Example00001", "ep_");
        check_uid(&mut p, "app_123", "app_");
        assert!(p.into_result().is_ok());
    }
}
