//! The event catalog over HTTP: the names an application's messages may carry.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::app::created_or_ok;
use super::error::ApiResult;
use super::extract::{ApiJson, QueryParams};
use super::list::list_response;
use crate::service::AppState;
use crate::service::event_type::{self, EventTypeIn, EventTypeOut, EventTypePatch, EventTypeUpdate};

list_response!(ListResponseEventTypeOut, EventTypeOut);

#[utoipa::path(get, path = "/api/v1/event-type", tag = "Event Type",
    params(("limit" = Option<u32>, Query), ("iterator" = Option<String>, Query),
           ("include_archived" = Option<bool>, Query),
           ("with_content" = Option<bool>, Query, description = "Default false: schemas are left out unless true"),
           ("order" = Option<String>, Query, description = "ascending (default) or descending")),
    responses((status = 200, body = ListResponseEventTypeOut)))]
pub async fn list_event_types(
    State(state): State<AppState>,
    q: QueryParams,
) -> ApiResult<Json<ListResponseEventTypeOut>> {
    Ok(Json(event_type::list_event_types(&state, &q).await?.into()))
}

#[utoipa::path(post, path = "/api/v1/event-type", tag = "Event Type", request_body = EventTypeIn,
    responses((status = 201, body = EventTypeOut), (status = 409, body = super::error::HttpErrorOut)))]
pub async fn create_event_type(
    State(state): State<AppState>,
    ApiJson(input): ApiJson<EventTypeIn>,
) -> ApiResult<(StatusCode, Json<EventTypeOut>)> {
    let out = event_type::create_event_type(&state, input).await?;
    Ok((StatusCode::CREATED, Json(out)))
}

#[utoipa::path(get, path = "/api/v1/event-type/{event_type_name}", tag = "Event Type",
    params(("event_type_name" = String, Path)),
    responses((status = 200, body = EventTypeOut), (status = 404, body = super::error::HttpErrorOut)))]
pub async fn get_event_type(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<EventTypeOut>> {
    Ok(Json(event_type::get_event_type(&state, &name).await?))
}

/// Updates an event type, creating it when absent.
#[utoipa::path(put, path = "/api/v1/event-type/{event_type_name}", tag = "Event Type",
    params(("event_type_name" = String, Path)), request_body = EventTypeUpdate,
    responses((status = 200, body = EventTypeOut), (status = 201, body = EventTypeOut)))]
pub async fn put_event_type(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(input): ApiJson<EventTypeUpdate>,
) -> ApiResult<(StatusCode, Json<EventTypeOut>)> {
    let (created, out) = event_type::put_event_type(&state, name, input).await?;
    Ok((created_or_ok(created), Json(out)))
}

/// Changes the fields the body names; `null` clears a nullable one.
#[utoipa::path(patch, path = "/api/v1/event-type/{event_type_name}", tag = "Event Type",
    params(("event_type_name" = String, Path)), request_body = EventTypePatch,
    responses((status = 200, body = EventTypeOut), (status = 404, body = super::error::HttpErrorOut)))]
pub async fn patch_event_type(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(patch): ApiJson<EventTypePatch>,
) -> ApiResult<Json<EventTypeOut>> {
    Ok(Json(event_type::patch_event_type(&state, &name, patch).await?))
}

/// Archives an event type (it stays usable, but leaves the catalog);
/// `expunge=true` deletes it for good.
#[utoipa::path(delete, path = "/api/v1/event-type/{event_type_name}", tag = "Event Type",
    params(("event_type_name" = String, Path), ("expunge" = Option<bool>, Query)),
    responses((status = 204, description = "Archived or deleted")))]
pub async fn delete_event_type(
    State(state): State<AppState>,
    Path(name): Path<String>,
    q: QueryParams,
) -> ApiResult<StatusCode> {
    event_type::delete_event_type(&state, &name, &q).await?;
    Ok(StatusCode::NO_CONTENT)
}
