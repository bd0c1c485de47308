//! An endpoint's delivery history: filters, selection and bulk retry, and
//! each attempt in full.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};

use super::endpoints::open_endpoint;
use super::forms::{describe, utc_time};
use super::render::{self, Layout};
use super::session::{Submitted, Viewer};
use super::{UiError, UiResult};
use crate::service::attempt::{get_attempt, list_by_endpoint};
use crate::service::input::QueryParams;
use crate::service::message::get_message;
use crate::service::recovery::{BulkResendIn, resend_many};
use crate::service::{AppState, ServiceError};

const PAGE_SIZE: &str = "50";

/// The history's filters, as the form sends them and links carry them.
#[derive(Deserialize, Serialize, Default, Clone)]
#[serde(default)]
pub struct Filters {
    /// `datetime-local`, read as UTC.
    after: String,
    before: String,
    /// `0` (not sent), `200`, `300`, `400` or `500`; empty for all.
    class: String,
    event_type: String,
    iterator: String,
}

impl Filters {
    fn to_params(&self) -> Result<QueryParams, ServiceError> {
        let mut pairs = vec![
            ("limit".to_owned(), PAGE_SIZE.to_owned()),
            ("status_code_class".to_owned(), self.class.clone()),
            ("event_types".to_owned(), self.event_type.clone()),
            ("iterator".to_owned(), self.iterator.clone()),
        ];
        for (name, value) in [("after", &self.after), ("before", &self.before)] {
            if let Some(t) = utc_time(name, value)? {
                pairs.push((name.to_owned(), t));
            }
        }
        Ok(QueryParams::from_pairs(pairs))
    }

    /// The filters as a query string, for links and for coming back after a retry.
    fn query(&self, iterator: Option<&str>) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("after", &self.after),
            ("before", &self.before),
            ("class", &self.class),
            ("event_type", &self.event_type),
        ] {
            if !v.is_empty() {
                s.append_pair(k, v);
            }
        }
        if let Some(it) = iterator {
            s.append_pair("iterator", it);
        }
        s.finish()
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct Notice {
    notice: String,
    msg: String,
    scheduled: String,
    skipped: String,
}

pub async fn list(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((app, ep)): Path<(String, String)>,
    Query(filters): Query<Filters>,
    Query(notice): Query<Notice>,
) -> UiResult<Response> {
    let (app, ep) = open_endpoint(&state, &viewer, &app, &ep).await?;
    let listed = match filters.to_params() {
        Ok(params) => list_by_endpoint(&state, &app.id, &ep.id, &params).await,
        Err(e) => Err(e),
    };
    let (attempts, next, prev, error) = match listed {
        Ok(page) => {
            let next = (!page.done).then(|| page.iterator.clone()).flatten();
            // The first page has nothing newer.
            let prev = if filters.iterator.is_empty() {
                None
            } else {
                page.prev_iterator
            };
            (page.data, next, prev, None)
        }
        // A bad filter is shown above the table, not as an error page.
        Err(e @ ServiceError::Validation(_)) => (Vec::new(), None, None, Some(describe(&e))),
        Err(e) => return Err(e.into()),
    };
    let groups = super::catalog::groups(&state).await?;
    let next_query = next.as_deref().map(|it| filters.query(Some(it)));
    let prev_query = prev.as_deref().map(|it| filters.query(Some(it)));
    let back = filters.query((!filters.iterator.is_empty()).then_some(filters.iterator.as_str()));
    Ok(render::ok(
        "history.html",
        Layout::for_viewer(&viewer, "Delivery history"),
        minijinja::context! {
            app, endpoint => ep, attempts, filters, groups, error,
            next_query, prev_query, back,
            notice => notice.notice, notice_msg => notice.msg,
            scheduled => notice.scheduled, skipped => notice.skipped,
        },
    ))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct RetryForm {
    /// The selected messages' ids.
    msg: Vec<String>,
    /// The history's filters, to come back to the same view.
    back: String,
}

/// Sends the selected messages to this endpoint again.
pub async fn retry(
    State(state): State<AppState>,
    Path((app, ep)): Path<(String, String)>,
    Submitted { viewer, form }: Submitted<RetryForm>,
) -> UiResult<Response> {
    let (app, ep) = open_endpoint(&state, &viewer, &app, &ep).await?;
    let back: Filters = serde_html_form::from_str(&form.back).unwrap_or_default();
    let history = format!("/ui/app/{}/endpoint/{}/history", app.id, ep.id);
    if form.msg.is_empty() {
        return Ok(Redirect::to(&format!("{history}?{}&notice=none-selected", back.query(None))).into_response());
    }
    // A message tried several times is listed (and ticked) once per attempt.
    let mut msg_ids = form.msg;
    msg_ids.sort();
    msg_ids.dedup();
    // An owner's session resends only what its endpoint was sent before
    // (the API's rule); the rest come back as skipped.
    let input = BulkResendIn { msg_ids };
    let out = resend_many(&state, &viewer.scope, &app.id, &ep.id, input).await?;
    let mut q = url::form_urlencoded::Serializer::new(back.query(None));
    q.append_pair("notice", "retried");
    q.append_pair("scheduled", &out.scheduled.to_string());
    q.append_pair("skipped", &out.skipped.len().to_string());
    Ok(Redirect::to(&format!("{history}?{}", q.finish())).into_response())
}

/// One attempt in full: what was sent and what came back.
pub async fn attempt(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((app, ep, msg, attempt)): Path<(String, String, String, String)>,
) -> UiResult<Response> {
    let (app, ep) = open_endpoint(&state, &viewer, &app, &ep).await?;
    let attempt = get_attempt(&state, &app.id, &msg, &attempt).await?;
    if attempt.endpoint_id != ep.id {
        return Err(UiError::NotFound);
    }
    // The request body is stored only when it differs from the payload.
    let request_body = match &attempt.request_body {
        Some(body) => pretty(body),
        None => {
            let whole = QueryParams::from_pairs::<&str, &str>([]);
            let m = get_message(&state, &app.id, &attempt.msg_id, &whole).await?;
            pretty(m.payload.get())
        }
    };
    let response_body = pretty(&attempt.response);
    Ok(render::ok(
        "attempt.html",
        Layout::for_viewer(&viewer, "Delivery attempt"),
        minijinja::context! { app, endpoint => ep, attempt, request_body, response_body },
    ))
}

/// JSON indented for reading; anything else as it came.
fn pretty(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_survive_a_round_trip_through_the_query() {
        let f = Filters {
            after: "2026-11-23T10:00".into(),
            class: "500".into(),
            event_type: "ticket.created".into(),
            ..Default::default()
        };
        let back: Filters = serde_html_form::from_str(&f.query(None)).unwrap();
        assert_eq!(back.query(None), f.query(None));
        assert_eq!(back.class, "500");
        assert!(f.query(Some("atmpt_x")).ends_with("iterator=atmpt_x"));
    }
}
