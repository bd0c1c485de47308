//! Request extractors whose failures name the field and the reason.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::domain::validate::FieldError;

/// A JSON body. Malformed JSON is a 400; a well-formed body of the wrong
/// shape is a 422 that points at the field.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge("the request body is larger than 1 MiB".to_owned())
            } else {
                ApiError::BadRequest(rejection.body_text())
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// An optional body: empty (or only whitespace) means every field's default.
pub fn parse_json_or_default<T: DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        parse_json(bytes)
    }
}

/// The NUL character has no place in names, ids or URLs, and PostgreSQL
/// cannot store it in text; a message's payload keeps it escaped, so only the
/// payload may carry it.
fn refuse_nul_outside_payload(bytes: &[u8]) -> Result<(), ApiError> {
    // The escape is the only way JSON text carries a NUL; most bodies have none.
    if !bytes.windows(6).any(|w| w.eq_ignore_ascii_case(b"\\u0000")) {
        return Ok(());
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return Ok(()); // the typed parse below reports the syntax error
    };
    match nul_at(&value, &mut Vec::new()) {
        Some(loc) => Err(ApiError::Validation(vec![FieldError {
            loc,
            msg: "must not contain the NUL character (\\u0000)".to_owned(),
            kind: "value_error",
        }])),
        None => Ok(()),
    }
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

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
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
                ApiError::Validation(vec![FieldError {
                    loc,
                    msg: clean_serde_message(&inner),
                    kind: "type_error",
                }])
            }
            _ => ApiError::BadRequest(format!("the request body is not valid JSON: {inner}")),
        }
    })?;
    de.end()
        .map_err(|e| ApiError::BadRequest(format!("the request body is not valid JSON: {e}")))?;
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

/// Query parameters, read by name with errors located at `["query", name]`.
pub struct QueryParams(HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let mut map: HashMap<String, String> = HashMap::new();
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            if v.contains('\0') {
                return Err(query_error(&k, "must not contain the NUL character (%00)"));
            }
            // Repeated keys (a=1&a=2) join like the comma form the SDKs send.
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

fn query_error(name: &str, msg: impl Into<String>) -> ApiError {
    ApiError::Validation(vec![FieldError {
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

    pub fn str(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str).filter(|s| !s.is_empty())
    }

    pub fn bool(&self, name: &str) -> Result<bool, ApiError> {
        match self.str(name) {
            None => Ok(false),
            Some("true" | "1") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(other) => Err(query_error(name, format!("'{other}' is not true or false"))),
        }
    }

    pub fn int(&self, name: &str, range: std::ops::RangeInclusive<i64>) -> Result<Option<i64>, ApiError> {
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

    pub fn time(&self, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
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

    fn loc(e: ApiError) -> Vec<String> {
        match e {
            ApiError::Validation(errors) => errors[0].loc.clone(),
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

    #[tokio::test]
    async fn a_nul_in_a_query_is_refused_by_name() {
        let req = axum::http::Request::builder()
            .uri("/x?limit=5&iterator=a%00b")
            .body(())
            .unwrap();
        let (mut parts, ()) = req.into_parts();
        let e = match QueryParams::from_request_parts(&mut parts, &()).await {
            Err(e) => e,
            Ok(_) => panic!("accepted"),
        };
        assert_eq!(loc(e), ["query", "iterator"]);
    }
}
