//! API tokens over HTTP. The rules are `service::tokens`.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::auth::Principal;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, QueryParams};
use super::list::list_response;
use crate::service::AppState;
use crate::service::portal;
use crate::service::tokens::{self, TokenIn, TokenOut};

list_response!(ListResponseTokenOut, TokenOut);

/// Makes a token: for administrators, one application, or one owner of it.
#[utoipa::path(post, path = "/api/v1/auth/token", tag = "Authentication",
    request_body = TokenIn,
    responses((status = 201, body = TokenOut, description = "The token is in the answer, once"),
        (status = 422, body = super::error::HttpValidationErrorOut)))]
pub async fn create_token(
    State(state): State<AppState>,
    ApiJson(input): ApiJson<TokenIn>,
) -> ApiResult<(StatusCode, Json<TokenOut>)> {
    let out = tokens::make_token(state.store.as_ref(), input, state.clock.now()).await?;
    Ok((StatusCode::CREATED, Json(out)))
}

/// Tokens made so far, revoked and expired ones included; never the tokens themselves.
#[utoipa::path(get, path = "/api/v1/auth/token", tag = "Authentication",
    params(("limit" = Option<u32>, Query), ("iterator" = Option<String>, Query)),
    responses((status = 200, body = ListResponseTokenOut)))]
pub async fn list_tokens(State(state): State<AppState>, q: QueryParams) -> ApiResult<Json<ListResponseTokenOut>> {
    Ok(Json(tokens::list_tokens(&state, &q).await?.into()))
}

#[utoipa::path(get, path = "/api/v1/auth/token/{token_id}", tag = "Authentication",
    params(("token_id" = String, Path)),
    responses((status = 200, body = TokenOut), (status = 404, body = super::error::HttpErrorOut)))]
pub async fn get_token(State(state): State<AppState>, Path(token_id): Path<String>) -> ApiResult<Json<TokenOut>> {
    Ok(Json(tokens::get_token(&state, &token_id).await?))
}

/// Revokes a token at once, on every node: it is looked up on each request.
#[utoipa::path(delete, path = "/api/v1/auth/token/{token_id}", tag = "Authentication",
    params(("token_id" = String, Path)),
    responses((status = 204, description = "Revoked (or already was)"), (status = 404, body = super::error::HttpErrorOut)))]
pub async fn revoke_token(State(state): State<AppState>, Path(token_id): Path<String>) -> ApiResult<StatusCode> {
    tokens::revoke_token(&state, &token_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Ends the calling app portal token (the one a customer portal holds) at
/// once, on every node. Other tokens are revoked with `DELETE /auth/token/{id}`.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "Authentication",
    responses((status = 204, description = "The portal token no longer works"),
        (status = 403, body = super::error::HttpErrorOut, description = "Not an app portal token")))]
pub async fn logout(State(state): State<AppState>, Extension(caller): Extension<Principal>) -> ApiResult<StatusCode> {
    let Some(grant) = &caller.portal else {
        return Err(ApiError::Forbidden(
            "only an app portal token can log out; revoke a made token with DELETE /api/v1/auth/token/{token_id}"
                .to_owned(),
        ));
    };
    portal::logout(&state, &caller.token_hash, grant).await?;
    Ok(StatusCode::NO_CONTENT)
}
