//! Bearer-token authentication and authorization of the API.
//!
//! Only SHA-256 hashes of tokens are kept; the admin token's is compared in
//! constant time. API tokens are long random strings, so a fast hash is the
//! right tool.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::ApiError;
use crate::config::Config;
use crate::domain::access::{self, Decision, OwnerCheck, Scope};
use crate::domain::ids::AttemptId;
use crate::domain::rate::RequestBudget;
use crate::store::{Store, StoreResult};
use chrono::Utc;

pub type TokenHash = [u8; 32];

const ADMIN_TOKEN_SETTING: &str = "admin_token_sha256";

pub fn hash_token(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

/// The admin token's hash: from the configuration, else from the store, else
/// a new token is generated, printed once and only its hash kept.
pub async fn admin_token_hash(store: &dyn Store, config: &Config) -> StoreResult<TokenHash> {
    if let Some(token) = &config.admin_token {
        return Ok(hash_token(token));
    }
    if let Some(stored) = stored_hash(store).await? {
        return Ok(stored);
    }
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = format!("hrld_admin_{}", URL_SAFE_NO_PAD.encode(bytes));
    let hash = hash_token(&token);
    if store.put_setting_if_absent(ADMIN_TOKEN_SETTING, &hex(&hash)).await? {
        // Printed, not logged: this is the only time anyone sees it.
        println!(
            "\nHerald generated an admin API token. It is shown only now; Herald keeps only its hash.\n\n    {token}\n\n\
             Use it as 'Authorization: Bearer <token>'. To choose your own, set HERALD_ADMIN_TOKEN.\n"
        );
        return Ok(hash);
    }
    // Another process stored one first; use that.
    stored_hash(store)
        .await?
        .ok_or_else(|| crate::store::StoreError::Corrupt("admin token hash vanished".into()))
}

async fn stored_hash(store: &dyn Store) -> StoreResult<Option<TokenHash>> {
    let Some(text) = store.get_setting(ADMIN_TOKEN_SETTING).await? else {
        return Ok(None);
    };
    let bytes: Vec<u8> = (0..text.len())
        .step_by(2)
        .filter_map(|i| text.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect();
    bytes
        .try_into()
        .map(Some)
        .map_err(|_| crate::store::StoreError::Corrupt("admin token hash".into()))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Who made a request; handlers and the idempotency layer read it.
#[derive(Debug, Clone)]
pub struct Principal {
    pub token_hash: TokenHash,
    pub scope: Scope,
    /// The token's own request rate, if it has one.
    pub rate_limit: Option<u32>,
}

/// Authenticates the bearer token, spends from its request budget, and
/// checks that its scope reaches the route and the objects in the path.
pub async fn authenticate(State(state): State<AppState>, req: Request, next: Next) -> Result<Response, ApiError> {
    let (mut parts, body) = req.into_parts();
    let principal = principal(&state, bearer_token(&parts.headers)?).await?;
    state.throttle.admit(
        &principal.token_hash,
        principal.rate_limit.or(state.config.api_rate_limit),
    )?;
    authorize(&state, &principal.scope, &mut parts).await?;
    parts.extensions.insert(principal);
    Ok(next.run(Request::from_parts(parts, body)).await)
}

fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    let header = headers
        .get(AUTHORIZATION)
        .ok_or(ApiError::Unauthorized("missing 'Authorization: Bearer <token>' header"))?;
    header
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .ok_or(ApiError::Unauthorized(
            "the Authorization header must be 'Bearer <token>'",
        ))
}

/// The configured admin token, or a live token from the store. The store is
/// searched by the token's SHA-256, which says nothing about the token.
async fn principal(state: &AppState, token: &str) -> Result<Principal, ApiError> {
    let presented = hash_token(token);
    if bool::from(presented.ct_eq(&state.admin_token_hash)) {
        return Ok(Principal {
            token_hash: presented,
            scope: Scope::Admin,
            rate_limit: None,
        });
    }
    match state.store.find_token(&hex(&presented)).await? {
        Some(t) if t.is_live(Utc::now()) => Ok(Principal {
            token_hash: presented,
            scope: t.scope,
            rate_limit: t.rate_limit,
        }),
        Some(_) => Err(ApiError::Unauthorized("this token was revoked or has expired")),
        None => Err(ApiError::Unauthorized("invalid token")),
    }
}

/// Applies the route's rule (`access::rule`) to `scope`. Objects outside
/// the scope answer 404, as if they did not exist.
async fn authorize(state: &AppState, scope: &Scope, parts: &mut Parts) -> Result<(), ApiError> {
    let template = parts
        .extensions
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    let (app, then) = match access::decide(scope, access::rule(&parts.method, &template)) {
        Decision::Allow => return Ok(()),
        Decision::Forbidden(why) => return Err(ApiError::Forbidden(why.to_owned())),
        Decision::SameApp { app, then } => (app, then),
    };
    let params = RawPathParams::from_request_parts(parts, state)
        .await
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let param = |name: &str| params.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_owned());
    let Some(app_param) = param("app_id") else {
        // A route over every application (the list): the handler narrows it.
        return Ok(());
    };
    match state.store.get_app(&app_param).await? {
        Some(found) if found.id == app => {}
        _ => return Err(ApiError::NotFound("application")),
    }
    match then {
        OwnerCheck::Nothing => Ok(()),
        OwnerCheck::Endpoint(owner) => {
            let endpoint = param("endpoint_id").unwrap_or_default();
            let found = state.store.get_endpoint(&app, &endpoint).await?;
            match found {
                Some(ep) if ep.owner_id.as_deref() == Some(owner.as_str()) => Ok(()),
                _ => Err(ApiError::NotFound("endpoint")),
            }
        }
        OwnerCheck::Attempt(owner) => {
            let attempt = param("attempt_id").and_then(|a| AttemptId::parse(&a));
            let found = match attempt {
                Some(id) => state.store.get_attempt(&app, &id).await?,
                None => None,
            };
            let endpoint = match found {
                Some(a) => state.store.get_endpoint(&app, a.endpoint_id.as_str()).await?,
                None => None,
            };
            match endpoint {
                Some(ep) if ep.owner_id.as_deref() == Some(owner.as_str()) => Ok(()),
                _ => Err(ApiError::NotFound("attempt")),
            }
        }
    }
}

/// The caller's scope, for handlers that narrow what a scoped caller sees or
/// makes. The dashboard passes its viewer's scope the same way.
#[derive(Debug, Clone)]
pub struct Caller(pub Scope);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Principal>()
            .map(|p| Self(p.scope.clone()))
            .ok_or_else(|| ApiError::Internal("a route with a caller has no authentication".into()))
    }
}

/// Per-token request budgets on this node.
#[derive(Default)]
pub struct Throttle {
    budgets: Mutex<HashMap<TokenHash, RequestBudget>>,
}

/// Budgets kept before full ones are forgotten.
const THROTTLE_PRUNE_AT: usize = 4096;

impl Throttle {
    /// Spends one request of `token`'s budget at `per_second`; over it, a 429
    /// that says when to come back.
    pub fn admit(&self, token: &TokenHash, per_second: Option<u32>) -> Result<(), ApiError> {
        let Some(per_second) = per_second else {
            return Ok(());
        };
        let now = Instant::now();
        let mut budgets = self.budgets.lock().unwrap_or_else(|e| e.into_inner());
        if budgets.len() >= THROTTLE_PRUNE_AT {
            budgets.retain(|_, b| !b.is_full(now));
        }
        let budget = budgets
            .entry(*token)
            .or_insert_with(|| RequestBudget::new(per_second, now));
        if budget.rate() != per_second {
            *budget = RequestBudget::new(per_second, now);
        }
        budget.spend(now).map_err(ApiError::TooManyRequests)
    }
}
