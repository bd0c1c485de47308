//! Endpoints over HTTP: where an application's messages go, and how they
//! are signed. The checks, secrets and events are `service::endpoint`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header::USER_AGENT;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::app::created_or_ok;
use super::auth::Caller;
use super::error::ApiResult;
use super::extract::{ApiJson, QueryParams};
use super::list::list_response;
use crate::domain::clients::{RotateAnswer, rotate_answer};
use crate::service::AppState;
use crate::service::endpoint::{
    self, EndpointHeadersIn, EndpointHeadersOut, EndpointHeadersPatchIn, EndpointIn, EndpointOut, EndpointPatch,
    EndpointSecretOut, EndpointSecretRotateIn,
};

list_response!(ListResponseEndpointOut, EndpointOut);

#[utoipa::path(get, path = "/api/v1/app/{app_id}/endpoint", tag = "Endpoint",
    params(("app_id" = String, Path), ("limit" = Option<u32>, Query), ("iterator" = Option<String>, Query),
        ("order" = Option<String>, Query, description = "ascending (default) or descending"),
        ("owner_id" = Option<String>, Query, description = "Herald: only this owner's endpoints")),
    responses((status = 200, body = ListResponseEndpointOut)))]
pub async fn list_endpoints(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(app_id): Path<String>,
    q: QueryParams,
) -> ApiResult<Json<ListResponseEndpointOut>> {
    Ok(Json(
        endpoint::list_endpoints(&state, &caller, &app_id, &q).await?.into(),
    ))
}

#[utoipa::path(post, path = "/api/v1/app/{app_id}/endpoint", tag = "Endpoint",
    params(("app_id" = String, Path)), request_body = EndpointIn,
    responses((status = 201, body = EndpointOut), (status = 422, body = super::error::HttpValidationErrorOut)))]
pub async fn create_endpoint(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(app_id): Path<String>,
    ApiJson(input): ApiJson<EndpointIn>,
) -> ApiResult<(StatusCode, Json<EndpointOut>)> {
    let out = endpoint::create_endpoint(&state, &caller, &app_id, input).await?;
    Ok((StatusCode::CREATED, Json(out)))
}

#[utoipa::path(get, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}", tag = "Endpoint",
    params(("app_id" = String, Path), ("endpoint_id" = String, Path, description = "The endpoint's id or uid")),
    responses((status = 200, body = EndpointOut), (status = 404, body = super::error::HttpErrorOut)))]
pub async fn get_endpoint(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
) -> ApiResult<Json<EndpointOut>> {
    Ok(Json(endpoint::get_endpoint(&state, &app_id, &endpoint_id).await?))
}

/// Replaces an endpoint's settings (not its secret); creates it when absent.
#[utoipa::path(put, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}", tag = "Endpoint",
    params(("app_id" = String, Path), ("endpoint_id" = String, Path)), request_body = EndpointIn,
    responses((status = 200, body = EndpointOut), (status = 201, body = EndpointOut)))]
pub async fn put_endpoint(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    ApiJson(input): ApiJson<EndpointIn>,
) -> ApiResult<(StatusCode, Json<EndpointOut>)> {
    let (created, out) = endpoint::put_endpoint(&state, &caller, &app_id, &endpoint_id, input).await?;
    Ok((created_or_ok(created), Json(out)))
}

#[utoipa::path(patch, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}", tag = "Endpoint",
    params(("app_id" = String, Path), ("endpoint_id" = String, Path)), request_body = EndpointPatch,
    responses((status = 200, body = EndpointOut)))]
pub async fn patch_endpoint(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    ApiJson(patch): ApiJson<EndpointPatch>,
) -> ApiResult<Json<EndpointOut>> {
    Ok(Json(
        endpoint::patch_endpoint(&state, &caller, &app_id, &endpoint_id, patch).await?,
    ))
}

#[utoipa::path(delete, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}", tag = "Endpoint",
    params(("app_id" = String, Path), ("endpoint_id" = String, Path)),
    responses((status = 204, description = "Deleted with its pending deliveries and history")))]
pub async fn delete_endpoint(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    endpoint::delete_endpoint(&state, &app_id, &endpoint_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/secret", tag = "Endpoint",
    params(("app_id" = String, Path), ("endpoint_id" = String, Path)),
    responses((status = 200, body = EndpointSecretOut)))]
pub async fn get_secret(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
) -> ApiResult<Json<EndpointSecretOut>> {
    Ok(Json(endpoint::get_secret(&state, &app_id, &endpoint_id).await?))
}

/// Replaces the secret; the old one keeps signing (a second `v1,` entry)
/// through the grace period so consumers can switch without losing events.
/// Svix SDKs 1.x get `204` (they accept nothing else); others the new secret.
#[utoipa::path(post, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/secret/rotate", tag = "Endpoint",
    params(("app_id" = String, Path), ("endpoint_id" = String, Path)), request_body = EndpointSecretRotateIn,
    responses((status = 200, body = EndpointSecretOut, description = "The new secret"),
              (status = 204, description = "Rotated; the answer to Svix SDKs 1.x (`User-Agent: svix-libs/1.…`)")))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let input: EndpointSecretRotateIn = super::extract::parse_json_or_default(&body)?;
    let out = endpoint::rotate_secret(&state, &app_id, &endpoint_id, input).await?;
    let user_agent = headers.get(USER_AGENT).and_then(|v| v.to_str().ok());
    Ok(match rotate_answer(user_agent) {
        RotateAnswer::Empty => StatusCode::NO_CONTENT.into_response(),
        RotateAnswer::Secret => Json(out).into_response(),
    })
}

#[utoipa::path(get, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/headers", tag = "Endpoint",
    params(("app_id" = String, Path), ("endpoint_id" = String, Path)),
    responses((status = 200, body = EndpointHeadersOut)))]
pub async fn get_headers(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
) -> ApiResult<Json<EndpointHeadersOut>> {
    Ok(Json(endpoint::get_headers(&state, &app_id, &endpoint_id).await?))
}

/// Replaces every custom header.
#[utoipa::path(put, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/headers", tag = "Endpoint",
    params(("app_id" = String, Path), ("endpoint_id" = String, Path)), request_body = EndpointHeadersIn,
    responses((status = 204, description = "Saved")))]
pub async fn update_headers(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    ApiJson(input): ApiJson<EndpointHeadersIn>,
) -> ApiResult<StatusCode> {
    endpoint::update_headers(&state, &app_id, &endpoint_id, input).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(patch, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/headers", tag = "Endpoint",
    params(("app_id" = String, Path), ("endpoint_id" = String, Path)), request_body = EndpointHeadersPatchIn,
    responses((status = 204, description = "Saved")))]
pub async fn patch_headers(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    ApiJson(input): ApiJson<EndpointHeadersPatchIn>,
) -> ApiResult<StatusCode> {
    endpoint::patch_headers(&state, &app_id, &endpoint_id, input).await?;
    Ok(StatusCode::NO_CONTENT)
}
