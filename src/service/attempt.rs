//! Delivery history and manual resend.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::app::find_app;
use super::endpoint::find_endpoint;
use super::error::{ServiceError, ServiceResult};
use super::input::QueryParams;
use super::list::{Listed, Paging};
use super::message::{MessageOut, find_message};
use crate::domain::access::Scope;
use crate::domain::ids::{AppId, AttemptId, EndpointId, MessageId};
use crate::store::{Attempt, AttemptFilter, Endpoint, Headers, Order, Page};

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageAttemptOut {
    pub id: String,
    pub msg_id: String,
    pub endpoint_id: String,
    pub url: String,
    /// The start of the response body (at most 16 KiB), or why no answer came.
    pub response: String,
    /// 0 when no HTTP answer came back.
    pub response_status_code: i64,
    pub response_duration_ms: i64,
    /// 0 success, 2 fail.
    pub status: i64,
    pub status_text: String,
    /// 0 scheduled, 1 manual.
    pub trigger_type: i64,
    /// When the attempt was made.
    pub timestamp: DateTime<Utc>,
    /// Only with `with_msg=true`; absent otherwise, as Svix leaves it (the
    /// 1.x SDKs read `null` as a message and fail).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msg: Option<MessageOut>,
    /// Herald: the message's event type, eventId and time.
    pub event_type: Option<String>,
    pub event_id: Option<String>,
    pub msg_timestamp: Option<DateTime<Utc>>,
    /// Herald: the request as sent; secrets in custom headers masked.
    pub request_headers: Option<Headers>,
    pub request_body: Option<String>,
    /// Herald: the response headers (the body is `response`).
    pub response_headers: Option<Headers>,
}

impl From<Attempt> for MessageAttemptOut {
    fn from(a: Attempt) -> Self {
        let event = a.event;
        Self {
            id: a.id.to_string(),
            msg_id: a.msg_id.to_string(),
            endpoint_id: a.endpoint_id.to_string(),
            url: a.url,
            response: a.response,
            response_status_code: a.response_status_code,
            response_duration_ms: a.response_duration_ms,
            status: a.status.code(),
            status_text: a.status.text().to_owned(),
            trigger_type: a.trigger_type.code(),
            timestamp: a.created_at,
            msg: None,
            event_type: event.as_ref().map(|e| e.event_type.clone()),
            event_id: event.as_ref().and_then(|e| e.event_id.clone()),
            msg_timestamp: event.as_ref().map(|e| e.msg_created_at),
            request_headers: a.request_headers,
            request_body: a.request_body,
            response_headers: a.response_headers,
        }
    }
}

fn filter_from(q: &QueryParams) -> ServiceResult<AttemptFilter> {
    let status_code_class = q.int("status_code_class", 0..=500)?;
    if let Some(c) = status_code_class
        && c % 100 != 0
    {
        return Err(ServiceError::field(
            &["query", "status_code_class"],
            "must be 0, 100, 200, 300, 400 or 500",
        ));
    }
    Ok(AttemptFilter {
        status: q.int("status", 0..=3)?,
        status_code_class,
        before: q.time("before")?,
        after: q.time("after")?,
        event_types: q.list("event_types"),
        channel: q.str("channel").map(str::to_owned),
        ..Default::default()
    })
}

async fn list(
    state: &AppState,
    app_id: &AppId,
    filter: AttemptFilter,
    q: &QueryParams,
) -> ServiceResult<Listed<MessageAttemptOut>> {
    let paging = Paging::from_query(q, Order::Descending)?;
    let rows = state.store.list_attempts(app_id, &filter, &paging.page).await?;
    let with_msg = q.bool("with_msg")?;
    let with_content = q.bool_or("with_content", true)?;
    let mut messages: HashMap<String, Option<MessageOut>> = HashMap::new();
    let mut out = Vec::with_capacity(rows.len());
    for attempt in rows {
        let mut item = MessageAttemptOut::from(attempt);
        if !with_content {
            // Svix's answer without content: the response body reads `{}`.
            "{}".clone_into(&mut item.response);
        }
        if with_msg {
            if !messages.contains_key(&item.msg_id) {
                let msg = state
                    .store
                    .get_message(app_id, &item.msg_id)
                    .await?
                    .map(MessageOut::from);
                messages.insert(item.msg_id.clone(), msg);
            }
            item.msg = messages
                .get(&item.msg_id)
                .cloned()
                .flatten()
                .map(|m| m.content_if(with_content));
        }
        out.push(item);
    }
    Ok(paging.finish(out, |a| a.id.clone()))
}

/// The attempts made to one endpoint, newest first.
pub async fn list_by_endpoint(
    state: &AppState,
    app_id: &str,
    endpoint_id: &str,
    q: &QueryParams,
) -> ServiceResult<Listed<MessageAttemptOut>> {
    let app = find_app(state, app_id).await?;
    let ep = find_endpoint(state, &app.id, endpoint_id).await?;
    let filter = AttemptFilter {
        endpoint_id: Some(ep.id),
        ..filter_from(q)?
    };
    list(state, &app.id, filter, q).await
}

/// The attempts made for one message, newest first.
pub async fn list_by_msg(
    state: &AppState,
    app_id: &str,
    msg_id: &str,
    q: &QueryParams,
) -> ServiceResult<Listed<MessageAttemptOut>> {
    let app = find_app(state, app_id).await?;
    let msg = find_message(state, &app.id, msg_id).await?;
    let endpoint_id = match q.str("endpoint_id") {
        Some(ep) => Some(find_endpoint(state, &app.id, ep).await?.id),
        None => None,
    };
    let filter = AttemptFilter {
        msg_id: Some(msg.id),
        endpoint_id,
        ..filter_from(q)?
    };
    list(state, &app.id, filter, q).await
}

/// Sends a message to an endpoint again, now, with the retry schedule behind it.
pub async fn resend(
    state: &AppState,
    caller: &Scope,
    app_id: &str,
    msg_id: &str,
    endpoint_id: &str,
) -> ServiceResult<()> {
    let app = find_app(state, app_id).await?;
    let msg = find_message(state, &app.id, msg_id).await?;
    let ep = find_endpoint(state, &app.id, endpoint_id).await?;
    if !may_resend(state, caller, &app.id, &msg.id, &ep.id).await? {
        return Err(ServiceError::NotFound("message"));
    }
    ensure_enabled(&ep)?;
    if let Some(at) = msg.payload_removed_at {
        return Err(ServiceError::Conflict(format!(
            "the payload of this message was removed at {}; there is nothing to resend",
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )));
    }
    state.store.resend(&msg, &ep, state.clock.now()).await?;
    state.dispatcher.wake();
    Ok(())
}

/// An owner-scoped caller may resend only what its endpoint was sent before:
/// naming another owner's message id must not pull it to their endpoint.
pub async fn may_resend(
    state: &AppState,
    caller: &Scope,
    app: &AppId,
    msg: &MessageId,
    endpoint: &EndpointId,
) -> ServiceResult<bool> {
    if caller.owner().is_none() {
        return Ok(true);
    }
    let filter = AttemptFilter {
        msg_id: Some(msg.clone()),
        endpoint_id: Some(endpoint.clone()),
        ..Default::default()
    };
    Ok(!state
        .store
        .list_attempts(app, &filter, &Page::first(1))
        .await?
        .is_empty())
}

/// Resends go to enabled endpoints only: a disabled one would drop or hold them.
pub fn ensure_enabled(ep: &Endpoint) -> ServiceResult<()> {
    if ep.disabled {
        return Err(ServiceError::Conflict(
            "the endpoint is disabled; enable it before resending".to_owned(),
        ));
    }
    Ok(())
}

/// An attempt of a message named by id or eventId, as the API's paths name them.
pub async fn find_attempt(state: &AppState, app_id: &AppId, msg_id: &str, attempt_id: &str) -> ServiceResult<Attempt> {
    let not_found = || ServiceError::NotFound("attempt");
    let id = AttemptId::parse(attempt_id).ok_or_else(not_found)?;
    // The message first (the path may name it by eventId): its id names the
    // day the attempt is kept in, so the lookup reads that day alone.
    let msg = match find_message(state, app_id, msg_id).await {
        Err(ServiceError::NotFound(_)) => return Err(not_found()),
        found => found?,
    };
    state
        .store
        .get_attempt(app_id, &msg.id, &id)
        .await?
        .ok_or_else(not_found)
}

pub async fn get_attempt(
    state: &AppState,
    app_id: &str,
    msg_id: &str,
    attempt_id: &str,
) -> ServiceResult<MessageAttemptOut> {
    let app = find_app(state, app_id).await?;
    let attempt = find_attempt(state, &app.id, msg_id, attempt_id).await?;
    Ok(attempt.into())
}

/// Removes what one attempt sent and received: bodies and headers.
pub async fn expunge_attempt_content(
    state: &AppState,
    app_id: &str,
    msg_id: &str,
    attempt_id: &str,
) -> ServiceResult<()> {
    let app = find_app(state, app_id).await?;
    let attempt = find_attempt(state, &app.id, msg_id, attempt_id).await?;
    state
        .store
        .remove_attempt_content(&app.id, &attempt.msg_id, &attempt.id)
        .await?;
    Ok(())
}
