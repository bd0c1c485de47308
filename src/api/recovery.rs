//! Operator workflows on one endpoint over HTTP: resend many, recover what
//! failed, replay what was never sent, send a test event, stats; and the
//! background tasks the long ones run as. The work is `service::recovery`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::auth::Caller;
use super::error::ApiResult;
use super::extract::{ApiJson, QueryParams};
use super::list::list_response;
use crate::domain::status::TaskKind;
use crate::service::AppState;
use crate::service::message::MessageOut;
use crate::service::recovery::{
    self, BackgroundTaskOut, BulkResendIn, BulkResendOut, EndpointStatsOut, EventExampleIn, RecoverIn,
};

list_response!(ListResponseBackgroundTaskOut, BackgroundTaskOut);

/// Herald: resends the selected messages to this endpoint, in one transaction.
#[utoipa::path(post, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/resend", tag = "Endpoint",
    params(("app_id" = String, Path), ("endpoint_id" = String, Path)), request_body = BulkResendIn,
    responses((status = 202, body = BulkResendOut)))]
pub async fn resend_many(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    ApiJson(input): ApiJson<BulkResendIn>,
) -> ApiResult<(StatusCode, Json<BulkResendOut>)> {
    let out = recovery::resend_many(&state, &caller, &app_id, &endpoint_id, input).await?;
    Ok((StatusCode::ACCEPTED, Json(out)))
}

/// Resends every message whose delivery to this endpoint failed in the
/// window (and has not succeeded or been rescheduled since).
#[utoipa::path(post, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/recover", tag = "Endpoint",
    params(("app_id" = String, Path), ("endpoint_id" = String, Path)), request_body = RecoverIn,
    responses((status = 202, body = BackgroundTaskOut)))]
pub async fn recover(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    ApiJson(input): ApiJson<RecoverIn>,
) -> ApiResult<(StatusCode, Json<BackgroundTaskOut>)> {
    let task = recovery::start(&state, &app_id, &endpoint_id, input, TaskKind::EndpointRecover).await?;
    Ok((StatusCode::ACCEPTED, Json(task)))
}

/// Sends the messages of the window that this endpoint, as configured now,
/// would receive but never was sent: dropped while disabled, or published
/// before it existed.
#[utoipa::path(post, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/replay-missing", tag = "Endpoint",
    params(("app_id" = String, Path), ("endpoint_id" = String, Path)), request_body = RecoverIn,
    responses((status = 202, body = BackgroundTaskOut)))]
pub async fn replay_missing(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    ApiJson(input): ApiJson<RecoverIn>,
) -> ApiResult<(StatusCode, Json<BackgroundTaskOut>)> {
    let task = recovery::start(&state, &app_id, &endpoint_id, input, TaskKind::EndpointReplay).await?;
    Ok((StatusCode::ACCEPTED, Json(task)))
}

#[utoipa::path(get, path = "/api/v1/background-task", tag = "Background Task",
    params(("limit" = Option<u32>, Query), ("iterator" = Option<String>, Query)),
    responses((status = 200, body = ListResponseBackgroundTaskOut)))]
pub async fn list_tasks(
    State(state): State<AppState>,
    q: QueryParams,
) -> ApiResult<Json<ListResponseBackgroundTaskOut>> {
    Ok(Json(recovery::list_tasks(&state, &q).await?.into()))
}

#[utoipa::path(get, path = "/api/v1/background-task/{task_id}", tag = "Background Task",
    params(("task_id" = String, Path)),
    responses((status = 200, body = BackgroundTaskOut), (status = 404, body = super::error::HttpErrorOut)))]
pub async fn get_task(
    State(state): State<AppState>,
    Path(task_id): Path<String>,
) -> ApiResult<Json<BackgroundTaskOut>> {
    Ok(Json(recovery::get_task(&state, &task_id).await?))
}

/// Sends the event type's example (or a sample built from its schema) to
/// this endpoint only, as a message visible in the history.
#[utoipa::path(post, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/send-example", tag = "Endpoint",
    params(("app_id" = String, Path), ("endpoint_id" = String, Path)), request_body = EventExampleIn,
    responses((status = 202, body = MessageOut)))]
pub async fn send_example(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    ApiJson(input): ApiJson<EventExampleIn>,
) -> ApiResult<(StatusCode, Json<MessageOut>)> {
    let msg = recovery::send_example(&state, &app_id, &endpoint_id, input).await?;
    // 202: Svix's document now says 200, but older SDKs (svix 1.40)
    // accept only 202, and later ones take either.
    Ok((StatusCode::ACCEPTED, Json(msg)))
}

/// Deliveries to this endpoint created in the period, by state.
#[utoipa::path(get, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/stats", tag = "Endpoint",
    params(("app_id" = String, Path), ("endpoint_id" = String, Path),
           ("since" = Option<String>, Query, description = "Default: 28 days ago"),
           ("until" = Option<String>, Query, description = "Default: now")),
    responses((status = 200, body = EndpointStatsOut)))]
pub async fn stats(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    q: QueryParams,
) -> ApiResult<Json<EndpointStatsOut>> {
    Ok(Json(recovery::stats(&state, &app_id, &endpoint_id, &q).await?))
}
