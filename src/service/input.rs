//! Reading a workflow's input: JSON bodies whose failures name the field
//! and the reason, and named parameters (an API query, a dashboard filter).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;

use super::error::{ServiceError, ServiceResult};
use crate::domain::validate::FieldError;

/// An optional body: empty (or only whitespace) means every field's default.
pub fn parse_json_or_default<T: DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, ServiceError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        parse_json(bytes)
    }
}

/// The NUL character has no place in names, ids or URLs, and PostgreSQL
/// cannot store it in text; a message's payload keeps it escaped, so only the
/// payload may carry it.
fn refuse_nul_outside_payload(bytes: &[u8]) -> Result<(), ServiceError> {
    // The escape is the only way JSON text carries a NUL; most bodies have
    // none, and few backslashes to look behind.
    if !has_nul_escape(bytes) {
        return Ok(());
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return Ok(()); // the typed parse below reports the syntax error
    };
    match nul_at(&value, &mut Vec::new()) {
        Some(loc) => Err(ServiceError::Validation(vec![FieldError {
            loc,
            msg: "must not contain the NUL character (\\u0000)".to_owned(),
            kind: "value_error",
        }])),
        None => Ok(()),
    }
}

/// Whether `\u0000` appears anywhere in the text (in a string or not).
fn has_nul_escape(bytes: &[u8]) -> bool {
    let mut rest = bytes;
    while let Some(at) = rest.iter().position(|&b| b == b'\\') {
        if rest
            .get(at + 1..at + 6)
            .is_some_and(|e| e.eq_ignore_ascii_case(b"u0000"))
        {
            return true;
        }
        rest = &rest[at + 1..];
    }
    false
}

/// Where the first string (or key) holding a NUL is, skipping a top-level `payload`.
fn nul_at(value: &serde_json::Value, path: &mut Vec<String>) -> Option<Vec<String>> {
    let here = |path: &Vec<String>| std::iter::once("body".to_owned()).chain(path.iter().cloned()).collect();
    match value {
        serde_json::Value::String(s) if s.contains('\0') => Some(here(path)),
        serde_json::Value::Array(items) => items.iter().enumerate().find_map(|(i, v)| {
            path.push(i.to_string());
            let found = nul_at(v, path);
            path.pop();
            found
        }),
        serde_json::Value::Object(map) => map.iter().find_map(|(k, v)| {
            if path.is_empty() && k == "payload" {
                return None;
            }
            path.push(k.clone());
            let found = if k.contains('\0') {
                Some(here(path))
            } else {
                nul_at(v, path)
            };
            path.pop();
            found
        }),
        _ => None,
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ServiceError> {
    refuse_nul_outside_payload(bytes)?;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let mut loc = vec!["body".to_owned()];
                if path != "." {
                    loc.extend(path.split('.').map(str::to_owned));
                }
                ServiceError::Validation(vec![FieldError {
                    loc,
                    msg: clean_serde_message(&inner),
                    kind: "type_error",
                }])
            }
            _ => ServiceError::Malformed(format!("the request body is not valid JSON: {inner}")),
        }
    })?;
    de.end()
        .map_err(|e| ServiceError::Malformed(format!("the request body is not valid JSON: {e}")))?;
    Ok(value)
}

/// serde's messages end with " at line 1 column 42", which helps nobody here.
fn clean_serde_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

/// Named parameters, read by name with errors located at `["query", name]`.
pub struct QueryParams(HashMap<String, String>);

impl QueryParams {
    /// A URL query string. Repeated keys (a=1&a=2) join like the comma form
    /// the SDKs send.
    pub fn parse(query: &str) -> ServiceResult<Self> {
        let mut map: HashMap<String, String> = HashMap::new();
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            if v.contains('\0') {
                return Err(query_error(&k, "must not contain the NUL character (%00)"));
            }
            map.entry(k.into_owned())
                .and_modify(|existing| {
                    existing.push(',');
                    existing.push_str(&v);
                })
                .or_insert_with(|| v.into_owned());
        }
        Ok(Self(map))
    }
}

fn query_error(name: &str, msg: impl Into<String>) -> ServiceError {
    ServiceError::Validation(vec![FieldError {
        loc: vec!["query".into(), name.into()],
        msg: msg.into(),
        kind: "value_error",
    }])
}

impl QueryParams {
    /// Parameters given by name, as the dashboard passes its filters on.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Self(pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }

    /// A 422 that places `msg` at this query parameter.
    pub fn refuse(&self, name: &str, msg: impl Into<String>) -> ServiceError {
        query_error(name, msg)
    }

    pub fn str(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str).filter(|s| !s.is_empty())
    }

    pub fn bool(&self, name: &str) -> Result<bool, ServiceError> {
        match self.str(name) {
            None => Ok(false),
            Some("true" | "1") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(other) => Err(query_error(name, format!("'{other}' is not true or false"))),
        }
    }

    /// A true-or-false parameter that is `default` when absent (Svix's
    /// `with_content` is true unless said otherwise).
    pub fn bool_or(&self, name: &str, default: bool) -> Result<bool, ServiceError> {
        if self.str(name).is_none() {
            Ok(default)
        } else {
            self.bool(name)
        }
    }

    pub fn int(&self, name: &str, range: std::ops::RangeInclusive<i64>) -> Result<Option<i64>, ServiceError> {
        self.str(name)
            .map(|s| match s.parse::<i64>() {
                Ok(n) if range.contains(&n) => Ok(n),
                _ => Err(query_error(
                    name,
                    format!("'{s}' is not a whole number from {} to {}", range.start(), range.end()),
                )),
            })
            .transpose()
    }

    pub fn time(&self, name: &str) -> Result<Option<DateTime<Utc>>, ServiceError> {
        self.str(name)
            .map(|s| {
                DateTime::parse_from_rfc3339(s)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| {
                        query_error(
                            name,
                            format!("'{s}' is not an RFC 3339 time such as 2026-01-31T12:00:00Z"),
                        )
                    })
            })
            .transpose()
    }

    pub fn list(&self, name: &str) -> Vec<String> {
        self.str(name)
            .map(|s| {
                s.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Distinguishes "absent" (outer `None`) from "null" (`Some(None)`) in PATCH bodies.
pub fn double_option<'de, D, T>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    serde::Deserialize::deserialize(de).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    struct In {
        #[allow(dead_code)]
        name: String,
        #[allow(dead_code)]
        payload: Option<Box<serde_json::value::RawValue>>,
    }

    fn loc(e: ServiceError) -> Vec<String> {
        match e {
            ServiceError::Validation(errors) => errors[0].loc.clone(),
            other => panic!("not a validation error: {other:?}"),
        }
    }

    #[test]
    fn a_nul_is_refused_where_it_is_and_kept_in_a_payload() {
        let e = parse_json::<In>(br#"{"name": "a\u0000b"}"#).unwrap_err();
        assert_eq!(loc(e), ["body", "name"]);
        let e = parse_json::<serde_json::Value>(br#"{"list": ["ok", "\u0000"]}"#).unwrap_err();
        assert_eq!(loc(e), ["body", "list", "1"]);
        assert!(parse_json::<In>(br#"{"name": "a", "payload": {"text": "b\u0000c"}}"#).is_ok());
    }

    #[test]
    fn the_quick_scan_finds_every_nul_escape_and_only_those() {
        assert!(has_nul_escape(br#""\u0000""#));
        assert!(has_nul_escape(br#"{"a": "\\", "b": "x\u0000"}"#));
        assert!(has_nul_escape(b"\\U0000"));
        assert!(!has_nul_escape(br#"{"a": "\n", "b": "\u0001"}"#));
        assert!(!has_nul_escape(b"\\u000"));
        assert!(!has_nul_escape(b"\\"));
        assert!(!has_nul_escape(b""));
    }

    #[test]
    fn a_nul_in_a_query_is_refused_by_name() {
        let e = match QueryParams::parse("limit=5&iterator=a%00b") {
            Err(e) => e,
            Ok(_) => panic!("accepted"),
        };
        assert_eq!(loc(e), ["query", "iterator"]);
    }
}
