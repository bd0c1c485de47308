//! Delivery history and manual resend, over HTTP.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::json;

use super::auth::Caller;
use super::error::ApiResult;
use super::extract::QueryParams;
use super::list::list_response;
use crate::service::AppState;
use crate::service::attempt::{self, MessageAttemptOut};
use crate::service::attempted::{self, EndpointMessageOut, MessageEndpointOut};

list_response!(ListResponseMessageAttemptOut, MessageAttemptOut);
list_response!(ListResponseEndpointMessageOut, EndpointMessageOut);
list_response!(ListResponseMessageEndpointOut, MessageEndpointOut);

#[utoipa::path(get, path = "/api/v1/app/{app_id}/attempt/endpoint/{endpoint_id}", tag = "Message Attempt",
    params(("app_id" = String, Path), ("endpoint_id" = String, Path),
           ("limit" = Option<u32>, Query), ("iterator" = Option<String>, Query),
           ("status" = Option<i64>, Query, description = "0 success, 1 pending, 2 fail, 3 sending"),
           ("status_code_class" = Option<i64>, Query, description = "0 (no response), 100, 200, 300, 400, 500"),
           ("before" = Option<String>, Query), ("after" = Option<String>, Query),
           ("event_types" = Option<String>, Query), ("channel" = Option<String>, Query),
           ("with_msg" = Option<bool>, Query),
           ("with_content" = Option<bool>, Query, description = "Default true; false answers `{}` response bodies")),
    responses((status = 200, body = ListResponseMessageAttemptOut)))]
pub async fn list_by_endpoint(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    q: QueryParams,
) -> ApiResult<Json<ListResponseMessageAttemptOut>> {
    Ok(Json(
        attempt::list_by_endpoint(&state, &app_id, &endpoint_id, &q)
            .await?
            .into(),
    ))
}

#[utoipa::path(get, path = "/api/v1/app/{app_id}/attempt/msg/{msg_id}", tag = "Message Attempt",
    params(("app_id" = String, Path), ("msg_id" = String, Path),
           ("limit" = Option<u32>, Query), ("iterator" = Option<String>, Query),
           ("endpoint_id" = Option<String>, Query),
           ("status" = Option<i64>, Query), ("status_code_class" = Option<i64>, Query),
           ("before" = Option<String>, Query), ("after" = Option<String>, Query),
           ("event_types" = Option<String>, Query), ("channel" = Option<String>, Query),
           ("with_content" = Option<bool>, Query, description = "Default true; false answers `{}` response bodies")),
    responses((status = 200, body = ListResponseMessageAttemptOut)))]
pub async fn list_by_msg(
    State(state): State<AppState>,
    Path((app_id, msg_id)): Path<(String, String)>,
    q: QueryParams,
) -> ApiResult<Json<ListResponseMessageAttemptOut>> {
    Ok(Json(attempt::list_by_msg(&state, &app_id, &msg_id, &q).await?.into()))
}

/// The messages attempted to an endpoint, newest first, each with how its
/// latest attempt went. Deliveries not yet attempted are not listed.
#[utoipa::path(get, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/msg", tag = "Message Attempt",
    params(("app_id" = String, Path), ("endpoint_id" = String, Path),
           ("limit" = Option<u32>, Query), ("iterator" = Option<String>, Query),
           ("status" = Option<i64>, Query, description = "The latest attempt's: 0 success, 2 fail"),
           ("before" = Option<String>, Query), ("after" = Option<String>, Query),
           ("event_types" = Option<String>, Query, description = "Comma-separated"),
           ("channel" = Option<String>, Query), ("tag" = Option<String>, Query),
           ("with_content" = Option<bool>, Query, description = "Default true; false answers `{}` payloads")),
    responses((status = 200, body = ListResponseEndpointMessageOut)))]
pub async fn list_attempted_messages(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    q: QueryParams,
) -> ApiResult<Json<ListResponseEndpointMessageOut>> {
    Ok(Json(
        attempted::list_attempted_messages(&state, &app_id, &endpoint_id, &q)
            .await?
            .into(),
    ))
}

/// The endpoints a message was attempted to, each with how its latest
/// attempt went.
#[utoipa::path(get, path = "/api/v1/app/{app_id}/msg/{msg_id}/endpoint", tag = "Message Attempt",
    params(("app_id" = String, Path), ("msg_id" = String, Path, description = "The message's id or eventId"),
           ("limit" = Option<u32>, Query), ("iterator" = Option<String>, Query)),
    responses((status = 200, body = ListResponseMessageEndpointOut)))]
pub async fn list_attempted_destinations(
    State(state): State<AppState>,
    Path((app_id, msg_id)): Path<(String, String)>,
    q: QueryParams,
) -> ApiResult<Json<ListResponseMessageEndpointOut>> {
    Ok(Json(
        attempted::list_attempted_destinations(&state, &app_id, &msg_id, &q)
            .await?
            .into(),
    ))
}

/// Sends a message to an endpoint again, now, with the retry schedule behind it.
#[utoipa::path(post, path = "/api/v1/app/{app_id}/msg/{msg_id}/endpoint/{endpoint_id}/resend", tag = "Message Attempt",
    params(("app_id" = String, Path), ("msg_id" = String, Path), ("endpoint_id" = String, Path)),
    responses((status = 202, description = "Scheduled; answers {}")))]
pub async fn resend(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((app_id, msg_id, endpoint_id)): Path<(String, String, String)>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    attempt::resend(&state, &caller, &app_id, &msg_id, &endpoint_id).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({}))))
}

#[utoipa::path(get, path = "/api/v1/app/{app_id}/msg/{msg_id}/attempt/{attempt_id}", tag = "Message Attempt",
    params(("app_id" = String, Path), ("msg_id" = String, Path), ("attempt_id" = String, Path)),
    responses((status = 200, body = MessageAttemptOut), (status = 404, body = super::error::HttpErrorOut)))]
pub async fn get_attempt(
    State(state): State<AppState>,
    Path((app_id, msg_id, attempt_id)): Path<(String, String, String)>,
) -> ApiResult<Json<MessageAttemptOut>> {
    Ok(Json(attempt::get_attempt(&state, &app_id, &msg_id, &attempt_id).await?))
}

/// Removes what one attempt sent and received: bodies and headers.
#[utoipa::path(delete, path = "/api/v1/app/{app_id}/msg/{msg_id}/attempt/{attempt_id}/content", tag = "Message Attempt",
    params(("app_id" = String, Path), ("msg_id" = String, Path), ("attempt_id" = String, Path)),
    responses((status = 204, description = "Removed")))]
pub async fn expunge_attempt_content(
    State(state): State<AppState>,
    Path((app_id, msg_id, attempt_id)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    attempt::expunge_attempt_content(&state, &app_id, &msg_id, &attempt_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
