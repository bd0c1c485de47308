//! Bearer-token authentication of the admin API.
//!
//! Only a SHA-256 hash of the token is kept and compared, in constant time.
//! API tokens are long random strings, so a fast hash is the right tool.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
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
use crate::store::{Store, StoreResult};

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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Who made a request; handlers and the idempotency layer read it.
#[derive(Debug, Clone)]
pub struct Principal {
    pub token_hash: TokenHash,
}

pub async fn require_admin(State(state): State<AppState>, mut req: Request, next: Next) -> Result<Response, ApiError> {
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .ok_or(ApiError::Unauthorized("missing 'Authorization: Bearer <token>' header"))?;
    let token = header
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .ok_or(ApiError::Unauthorized(
            "the Authorization header must be 'Bearer <token>'",
        ))?;
    let presented = hash_token(token);
    if !bool::from(presented.ct_eq(&state.admin_token_hash)) {
        return Err(ApiError::Unauthorized("invalid token"));
    }
    req.extensions_mut().insert(Principal { token_hash: presented });
    Ok(next.run(req).await)
}
