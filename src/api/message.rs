//! Messages over HTTP: what a product publishes. Accepting one means it is
//! stored, with its deliveries, before the answer leaves.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::error::ApiResult;
use super::extract::{ApiJson, QueryParams};
use super::list::list_response;
use crate::service::AppState;
use crate::service::message::{self, MessageIn, MessageOut};

list_response!(ListResponseMessageOut, MessageOut);

#[utoipa::path(post, path = "/api/v1/app/{app_id}/msg", tag = "Message",
    params(("app_id" = String, Path),
           ("with_content" = Option<bool>, Query, description = "Default true; false answers a `{}` payload")),
    request_body = MessageIn,
    responses((status = 202, body = MessageOut, description = "Stored; delivery follows"),
              (status = 409, body = super::error::HttpErrorOut, description = "eventId already used"),
              (status = 413, body = super::error::HttpErrorOut)))]
pub async fn create_message(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    q: QueryParams,
    ApiJson(input): ApiJson<MessageIn>,
) -> ApiResult<(StatusCode, Json<MessageOut>)> {
    let shown = q.with_content()?;
    let msg = message::accept_message(&state, &app_id, input).await?;
    Ok((StatusCode::ACCEPTED, Json(MessageOut::from(msg).with_content(shown))))
}

#[utoipa::path(get, path = "/api/v1/app/{app_id}/msg", tag = "Message",
    params(("app_id" = String, Path), ("limit" = Option<u32>, Query), ("iterator" = Option<String>, Query),
           ("before" = Option<String>, Query), ("after" = Option<String>, Query),
           ("event_types" = Option<String>, Query, description = "Comma-separated"),
           ("channel" = Option<String>, Query),
           ("with_content" = Option<bool>, Query, description = "Default true; false answers `{}` payloads")),
    responses((status = 200, body = ListResponseMessageOut)))]
pub async fn list_messages(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    q: QueryParams,
) -> ApiResult<Json<ListResponseMessageOut>> {
    Ok(Json(message::list_messages(&state, &app_id, &q).await?.into()))
}

#[utoipa::path(get, path = "/api/v1/app/{app_id}/msg/{msg_id}", tag = "Message",
    params(("app_id" = String, Path), ("msg_id" = String, Path, description = "The message's id or eventId"),
           ("with_content" = Option<bool>, Query, description = "Default true; false answers a `{}` payload")),
    responses((status = 200, body = MessageOut), (status = 404, body = super::error::HttpErrorOut)))]
pub async fn get_message(
    State(state): State<AppState>,
    Path((app_id, msg_id)): Path<(String, String)>,
    q: QueryParams,
) -> ApiResult<Json<MessageOut>> {
    let shown = q.with_content()?;
    Ok(Json(
        message::get_message(&state, &app_id, &msg_id)
            .await?
            .with_content(shown),
    ))
}

/// Removes a message's payload now (for example on a customer's request);
/// deliveries not yet made are dropped, having nothing left to send.
#[utoipa::path(delete, path = "/api/v1/app/{app_id}/msg/{msg_id}/content", tag = "Message",
    params(("app_id" = String, Path), ("msg_id" = String, Path)),
    responses((status = 204, description = "The payload and the bodies sent from it are gone")))]
pub async fn expunge_content(
    State(state): State<AppState>,
    Path((app_id, msg_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    message::expunge_content(&state, &app_id, &msg_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
