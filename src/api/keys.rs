//! Secret key rotation over HTTP, for administrators. The rules are
//! `service::keys`; `herald keys status|rotate` drive these routes.

use axum::Json;
use axum::extract::State;

use super::error::ApiResult;
use super::extract::ApiJson;
use crate::service::AppState;
use crate::service::keys::{self, KeysOut, RotateIn, RotateOut};

/// Which key seals, what is sealed under which key, and what every node holds.
#[utoipa::path(get, path = "/api/v1/keys", tag = "Secret keys",
    responses((status = 200, body = KeysOut)))]
pub async fn keys_status(State(state): State<AppState>) -> ApiResult<Json<KeysOut>> {
    Ok(Json(keys::status(&state).await?))
}

/// One step of a rotation of the secret key: repeat until `state` is `done`.
/// Safe to repeat, interrupt and resume.
#[utoipa::path(post, path = "/api/v1/keys/rotate", tag = "Secret keys",
    request_body = RotateIn,
    responses((status = 200, body = RotateOut),
        (status = 409, body = super::error::HttpErrorOut, description = "A node lacks the new key, or a secret opens with no key"),
        (status = 422, body = super::error::HttpValidationErrorOut)))]
pub async fn rotate_keys(
    State(state): State<AppState>,
    ApiJson(input): ApiJson<RotateIn>,
) -> ApiResult<Json<RotateOut>> {
    Ok(Json(keys::rotate(&state, input).await?))
}
