//! Turning forms into the workflows' inputs, and their errors into messages
//! next to the fields they are about.

use std::collections::BTreeMap;

use chrono::{NaiveDateTime, TimeZone, Utc};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::session::Viewer;
use crate::service::ServiceError;

/// A person-readable account of an error.
pub fn describe(e: &ServiceError) -> String {
    match e {
        ServiceError::Validation(errors) => errors
            .iter()
            .map(|f| format!("{}: {}", field_name(&f.loc), f.msg))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

/// `["body", "url"]` → `url`; `["body", "filterTypes", "2"]` → `filterTypes`.
fn field_name(loc: &[String]) -> String {
    let skip = usize::from(loc.first().is_some_and(|l| l == "body" || l == "query"));
    loc.get(skip).cloned().unwrap_or_default()
}

/// A validation failure as messages per form field; other errors under `""`.
pub fn field_errors(e: &ServiceError) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    match e {
        ServiceError::Validation(errors) => {
            for f in errors {
                out.entry(field_name(&f.loc))
                    .and_modify(|m: &mut String| {
                        m.push_str("; ");
                        m.push_str(&f.msg);
                    })
                    .or_insert_with(|| f.msg.clone());
            }
        }
        other => {
            out.insert(String::new(), other.to_string());
        }
    }
    out
}

/// The endpoint form, as posted.
#[derive(Deserialize, Default, serde::Serialize)]
#[serde(default)]
pub struct EndpointForm {
    pub description: String,
    pub url: String,
    /// `all`, or `some` with `events`.
    pub events_mode: String,
    pub events: Vec<String>,
    /// Comma-separated.
    pub channels: String,
    pub owner_id: String,
    pub profile: String,
    /// `raw` or `slack`.
    pub format: String,
    /// `generate` or `own` with `secret`.
    pub secret_mode: String,
    pub secret: String,
    pub rate_limit: String,
    pub verify_token: String,
    pub while_disabled: String,
    /// `shown` when the form offered the TLS switch (the server allows it):
    /// an unticked box is not posted, so this tells "on" from "not offered".
    pub tls_switch: String,
    /// `on` to skip checking the endpoint's certificate.
    pub skip_tls_verify: String,
    /// `parallel` or `fifo`.
    pub ordering: String,
}

impl EndpointForm {
    /// The API's `EndpointIn` (on create) or `EndpointPatch` (on save): on a
    /// patch a cleared field is `null`, on create it is left out. A portal
    /// viewer's endpoints always belong to their owner.
    pub fn to_json(&self, viewer: &Viewer, patch: bool) -> Result<Value, ServiceError> {
        let mut body = Map::new();
        let mut set = |key: &str, value: Option<Value>| match value {
            Some(v) => {
                body.insert(key.to_owned(), v);
            }
            None if patch => {
                body.insert(key.to_owned(), Value::Null);
            }
            None => {}
        };
        let text = |s: &str| Some(s.trim()).filter(|s| !s.is_empty()).map(|s| json!(s));
        set("url", Some(json!(self.url.trim())));
        set("description", Some(json!(self.description.trim())));
        // The API reads an empty list as "everything"; a person who chose
        // "some events" and ticked none meant something else: ask.
        if self.events_mode == "some" && self.events.is_empty() {
            return Err(ServiceError::body_field(
                &["filterTypes"],
                "choose at least one event, or send everything",
            ));
        }
        set("filterTypes", (self.events_mode == "some").then(|| json!(self.events)));
        let channels: Vec<&str> = self
            .channels
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        set("channels", (!channels.is_empty()).then(|| json!(channels)));
        // Only administrators see the owner field; a customer's endpoints
        // belong to their owner, or keep the owner they have.
        match viewer.owner() {
            Some(mine) => set("ownerId", Some(json!(mine))),
            None if viewer.is_admin() => set("ownerId", text(&self.owner_id)),
            None => {}
        }
        set("profile", text(&self.profile));
        set("verifyToken", text(&self.verify_token));
        let rate = match self.rate_limit.trim() {
            "" => None,
            r => Some(json!(r.parse::<i64>().map_err(|_| {
                ServiceError::body_field(&["rateLimit"], "must be a whole number of messages per second")
            })?)),
        };
        set("rateLimit", rate);
        if let Some(format) = text(&self.format) {
            body.insert("format".into(), format);
        }
        if let Some(w) = text(&self.while_disabled) {
            body.insert("whileDisabled".into(), w);
        }
        if self.tls_switch == "shown" {
            body.insert("tlsVerify".into(), json!(self.skip_tls_verify != "on"));
        }
        if let Some(o) = text(&self.ordering) {
            body.insert("ordering".into(), o);
        }
        if !patch && self.secret_mode == "own" {
            body.insert("secret".into(), json!(self.secret.trim()));
        }
        Ok(Value::Object(body))
    }
}

/// A `datetime-local` value (read as UTC) as RFC 3339; empty stays empty.
pub fn utc_time(field: &str, value: &str) -> Result<Option<String>, ServiceError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(value, f).ok())
        .map(|t| Some(Utc.from_utc_datetime(&t).to_rfc3339()))
        .ok_or_else(|| ServiceError::field(&["query", field], format!("'{value}' is not a date and time")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::AppId;
    use crate::ui::session::Scope;

    fn admin() -> Viewer {
        Viewer {
            scope: Scope::Admin,
            csrf: String::new(),
            read_only: false,
        }
    }

    #[test]
    fn a_cleared_field_is_null_on_save_and_absent_on_create() {
        let form = EndpointForm {
            url: " https://example.com/hook ".into(),
            events_mode: "all".into(),
            ..Default::default()
        };
        let create = form.to_json(&admin(), false).unwrap();
        assert_eq!(create["url"], "https://example.com/hook");
        assert!(create.get("filterTypes").is_none());
        let save = form.to_json(&admin(), true).unwrap();
        assert_eq!(save["filterTypes"], Value::Null);
        assert_eq!(save["rateLimit"], Value::Null);
    }

    #[test]
    fn a_portal_owner_cannot_give_an_endpoint_to_someone_else() {
        let form = EndpointForm {
            owner_id: "globex".into(),
            events_mode: "some".into(),
            events: vec!["ticket.created".into()],
            channels: "a, b,".into(),
            ..Default::default()
        };
        let viewer = Viewer {
            scope: Scope::App {
                app: AppId::generate(),
                owner: Some("acme".into()),
            },
            csrf: String::new(),
            read_only: false,
        };
        let body = form.to_json(&viewer, false).unwrap();
        assert_eq!(body["ownerId"], "acme");
        assert_eq!(body["filterTypes"], json!(["ticket.created"]));
        assert_eq!(body["channels"], json!(["a", "b"]));
    }

    #[test]
    fn some_events_with_none_ticked_is_refused_at_the_field() {
        let form = EndpointForm {
            url: "https://example.com/hook".into(),
            events_mode: "some".into(),
            ..Default::default()
        };
        let refused = form.to_json(&admin(), false).unwrap_err();
        assert!(field_errors(&refused)["filterTypes"].contains("at least one event"));
    }

    #[test]
    fn a_customer_without_an_owner_leaves_the_owner_as_it_is() {
        let viewer = Viewer {
            scope: Scope::App {
                app: AppId::generate(),
                owner: None,
            },
            csrf: String::new(),
            read_only: false,
        };
        let body = EndpointForm::default().to_json(&viewer, true).unwrap();
        assert!(body.get("ownerId").is_none(), "{body}");
        let body = EndpointForm::default().to_json(&admin(), true).unwrap();
        assert_eq!(body["ownerId"], Value::Null, "an administrator clears it");
    }

    #[test]
    fn tls_verify_is_sent_only_when_the_switch_was_offered() {
        let body = EndpointForm::default().to_json(&admin(), true).unwrap();
        assert!(body.get("tlsVerify").is_none(), "{body}");
        let offered = |skip: &str| EndpointForm {
            tls_switch: "shown".into(),
            skip_tls_verify: skip.into(),
            ..Default::default()
        };
        assert_eq!(offered("on").to_json(&admin(), false).unwrap()["tlsVerify"], false);
        assert_eq!(offered("").to_json(&admin(), true).unwrap()["tlsVerify"], true);
    }

    #[test]
    fn a_bad_rate_limit_names_the_field() {
        let form = EndpointForm {
            rate_limit: "fast".into(),
            ..Default::default()
        };
        let e = form.to_json(&admin(), false).unwrap_err();
        assert!(field_errors(&e).contains_key("rateLimit"));
    }

    #[test]
    fn local_times_are_read_as_utc() {
        assert_eq!(
            utc_time("after", "2026-11-23T10:30").unwrap().as_deref(),
            Some("2026-11-23T10:30:00+00:00")
        );
        assert_eq!(utc_time("after", "").unwrap(), None);
        assert!(utc_time("after", "yesterday").is_err());
    }
}
