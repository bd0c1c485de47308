//! Applications over HTTP: one per customer of the product that publishes events.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::auth::Caller;
use super::error::ApiResult;
use super::extract::{ApiJson, QueryParams};
use super::list::list_response;
use crate::service::AppState;
use crate::service::app::{self, ApplicationIn, ApplicationOut, ApplicationPatch};

list_response!(ListResponseApplicationOut, ApplicationOut);

/// 201 for what a save made, 200 for what it found.
pub fn created_or_ok(created: bool) -> StatusCode {
    if created { StatusCode::CREATED } else { StatusCode::OK }
}

#[utoipa::path(get, path = "/api/v1/app", tag = "Application",
    params(("limit" = Option<u32>, Query), ("iterator" = Option<String>, Query),
        ("order" = Option<String>, Query, description = "ascending (default) or descending"),
        ("search" = Option<String>, Query, description = "Herald: only applications whose name or uid contains this, or whose id it is")),
    responses((status = 200, body = ListResponseApplicationOut)))]
pub async fn list_apps(
    State(state): State<AppState>,
    Caller(caller): Caller,
    q: QueryParams,
) -> ApiResult<Json<ListResponseApplicationOut>> {
    Ok(Json(app::list_apps(&state, &caller, &q).await?.into()))
}

#[utoipa::path(post, path = "/api/v1/app", tag = "Application",
    params(("get_if_exists" = Option<bool>, Query, description = "Answer the existing application when the uid is taken")),
    request_body = ApplicationIn,
    responses((status = 201, body = ApplicationOut), (status = 200, body = ApplicationOut, description = "Existing application (get_if_exists)")))]
pub async fn create_app(
    State(state): State<AppState>,
    q: QueryParams,
    ApiJson(input): ApiJson<ApplicationIn>,
) -> ApiResult<(StatusCode, Json<ApplicationOut>)> {
    let (created, out) = app::create_app(&state, input, &q).await?;
    Ok((created_or_ok(created), Json(out)))
}

#[utoipa::path(get, path = "/api/v1/app/{app_id}", tag = "Application",
    params(("app_id" = String, Path, description = "The application's id or uid")),
    responses((status = 200, body = ApplicationOut), (status = 404, body = super::error::HttpErrorOut)))]
pub async fn get_app(State(state): State<AppState>, Path(app_id): Path<String>) -> ApiResult<Json<ApplicationOut>> {
    Ok(Json(app::get_app(&state, &app_id).await?))
}

/// Replaces an application; creates it (with the path as its uid) when absent.
#[utoipa::path(put, path = "/api/v1/app/{app_id}", tag = "Application",
    params(("app_id" = String, Path, description = "The application's id or uid")),
    request_body = ApplicationIn,
    responses((status = 200, body = ApplicationOut), (status = 201, body = ApplicationOut)))]
pub async fn put_app(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    ApiJson(input): ApiJson<ApplicationIn>,
) -> ApiResult<(StatusCode, Json<ApplicationOut>)> {
    let (created, out) = app::put_app(&state, &app_id, input).await?;
    Ok((created_or_ok(created), Json(out)))
}

#[utoipa::path(patch, path = "/api/v1/app/{app_id}", tag = "Application",
    params(("app_id" = String, Path, description = "The application's id or uid")),
    request_body = ApplicationPatch,
    responses((status = 200, body = ApplicationOut)))]
pub async fn patch_app(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    ApiJson(patch): ApiJson<ApplicationPatch>,
) -> ApiResult<Json<ApplicationOut>> {
    Ok(Json(app::patch_app(&state, &app_id, patch).await?))
}

#[utoipa::path(delete, path = "/api/v1/app/{app_id}", tag = "Application",
    params(("app_id" = String, Path, description = "The application's id or uid")),
    responses((status = 204, description = "Deleted with its endpoints, messages and history")))]
pub async fn delete_app(State(state): State<AppState>, Path(app_id): Path<String>) -> ApiResult<StatusCode> {
    app::delete_app(&state, &app_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
