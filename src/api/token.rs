//! API tokens besides the configured admin token: administrators make them
//! for a service, an application or one owner of an application, with an
//! optional expiry, and revoke them. The token is shown once; Herald keeps
//! only its SHA-256.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::{hash_token, hex};
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, QueryParams};
use super::list::{Paging, list_response};
use crate::domain::access::Scope;
use crate::domain::ids::TokenId;
use crate::domain::validate::{Problems, check_name};
use crate::store::{ApiToken, Order, Store};

/// Made tokens start with this, so secret scanners and people can tell them.
pub const TOKEN_PREFIX: &str = "hrld_token_";
/// The longest a token may live when it has an expiry: ten years.
const MAX_EXPIRY_SECS: i64 = 10 * 365 * 24 * 3600;
const MAX_NAME_LEN: usize = 256;

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenIn {
    /// What the token is for, e.g. "billing service".
    pub name: String,
    /// The application (id or uid) the token is bound to; omit for an
    /// administrator token.
    pub app_id: Option<String>,
    /// With appId: only this owner's endpoints (a customer's token).
    pub owner_id: Option<String>,
    /// Seconds until the token expires; omit for a token that does not.
    pub expires_in: Option<i64>,
    /// Requests per second; omit to follow HERALD_API_RATE_LIMIT.
    pub rate_limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenOut {
    pub id: String,
    pub name: String,
    /// `admin`, `app` or `owner`.
    pub scope: String,
    pub app_id: Option<String>,
    pub owner_id: Option<String>,
    pub rate_limit: Option<u32>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// The token itself: in the answer that made it, and never again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl From<ApiToken> for TokenOut {
    fn from(t: ApiToken) -> Self {
        let scope = match &t.scope {
            Scope::Admin => "admin",
            Scope::App { owner: None, .. } => "app",
            Scope::App { owner: Some(_), .. } => "owner",
        };
        Self {
            id: t.id.to_string(),
            name: t.name,
            scope: scope.to_owned(),
            app_id: t.scope.app().map(ToString::to_string),
            owner_id: t.scope.owner().map(str::to_owned),
            rate_limit: t.rate_limit,
            created_at: t.created_at,
            expires_at: t.expires_at,
            revoked_at: t.revoked_at,
            token: None,
        }
    }
}

list_response!(ListResponseTokenOut, TokenOut);

/// Checks `input`, makes the token and stores its hash. The answer carries
/// the token, once. The `herald token create` command calls this too.
pub async fn make_token(store: &dyn Store, input: TokenIn, now: DateTime<Utc>) -> ApiResult<TokenOut> {
    let mut p = Problems::default();
    if input.name.trim().is_empty() || input.name.len() > MAX_NAME_LEN {
        p.add(&["name"], format!("must be 1 to {MAX_NAME_LEN} characters long"));
    }
    if let Some(owner) = &input.owner_id {
        check_name(&mut p, "ownerId", owner);
        if input.app_id.is_none() {
            p.add(&["ownerId"], "needs appId: an owner belongs to one application");
        }
    }
    if let Some(secs) = input.expires_in
        && !(1..=MAX_EXPIRY_SECS).contains(&secs)
    {
        p.add(&["expiresIn"], format!("must be from 1 to {MAX_EXPIRY_SECS} seconds"));
    }
    if input.rate_limit == Some(0) {
        p.add(&["rateLimit"], "must be at least 1 request per second");
    }
    p.into_result().map_err(ApiError::Validation)?;
    let scope = match input.app_id {
        None => Scope::Admin,
        Some(app) => Scope::App {
            app: store
                .get_app(&app)
                .await?
                .ok_or_else(|| ApiError::body_field(&["appId"], format!("no application '{app}'")))?
                .id,
            owner: input.owner_id,
        },
    };
    let mut random = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut random);
    let secret = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(random));
    let token = ApiToken {
        id: TokenId::generate(),
        name: input.name.trim().to_owned(),
        token_hash: hex(&hash_token(&secret)),
        scope,
        rate_limit: input.rate_limit,
        created_at: now,
        expires_at: input.expires_in.map(|s| now + Duration::seconds(s)),
        revoked_at: None,
    };
    store.create_token(&token).await?;
    Ok(TokenOut {
        token: Some(secret),
        ..token.into()
    })
}

/// Makes a token: for administrators, one application, or one owner of it.
#[utoipa::path(post, path = "/api/v1/auth/token", tag = "Authentication",
    request_body = TokenIn,
    responses((status = 201, body = TokenOut, description = "The token is in the answer, once"),
        (status = 422, body = super::error::HttpValidationErrorOut)))]
pub async fn create_token(
    State(state): State<AppState>,
    ApiJson(input): ApiJson<TokenIn>,
) -> ApiResult<(StatusCode, Json<TokenOut>)> {
    let out = make_token(state.store.as_ref(), input, crate::store::now()).await?;
    Ok((StatusCode::CREATED, Json(out)))
}

/// Tokens made so far, revoked and expired ones included; never the tokens themselves.
#[utoipa::path(get, path = "/api/v1/auth/token", tag = "Authentication",
    params(("limit" = Option<u32>, Query), ("iterator" = Option<String>, Query)),
    responses((status = 200, body = ListResponseTokenOut)))]
pub async fn list_tokens(State(state): State<AppState>, q: QueryParams) -> ApiResult<Json<ListResponseTokenOut>> {
    let paging = Paging::from_query(&q, Order::Ascending)?;
    let rows = state.store.list_tokens(&paging.page).await?;
    let listed = paging.finish(rows.into_iter().map(TokenOut::from).collect(), |t| t.id.clone());
    Ok(Json(listed.into()))
}

#[utoipa::path(get, path = "/api/v1/auth/token/{token_id}", tag = "Authentication",
    params(("token_id" = String, Path)),
    responses((status = 200, body = TokenOut), (status = 404, body = super::error::HttpErrorOut)))]
pub async fn get_token(State(state): State<AppState>, Path(token_id): Path<String>) -> ApiResult<Json<TokenOut>> {
    Ok(Json(find_token(&state, &token_id).await?.into()))
}

/// Revokes a token at once, on every node: it is looked up on each request.
#[utoipa::path(delete, path = "/api/v1/auth/token/{token_id}", tag = "Authentication",
    params(("token_id" = String, Path)),
    responses((status = 204, description = "Revoked (or already was)"), (status = 404, body = super::error::HttpErrorOut)))]
pub async fn revoke_token(State(state): State<AppState>, Path(token_id): Path<String>) -> ApiResult<StatusCode> {
    let token = find_token(&state, &token_id).await?;
    state.store.revoke_token(&token.id, crate::store::now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn find_token(state: &AppState, id: &str) -> ApiResult<ApiToken> {
    let found = match TokenId::parse(id) {
        Some(id) => state.store.get_token(&id).await?,
        None => None,
    };
    found.ok_or(ApiError::NotFound("token"))
}
