//! Tokens as Herald keeps them: only SHA-256 hashes (API tokens are long
//! random strings, so a fast hash is the right tool), the admin token's
//! among them, each token's request budget on this node, and the guards
//! against guessing tokens (`Guard`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::AppState;
use super::error::{ServiceError, ServiceResult};
use crate::config::Config;
use crate::domain::guard::{FailureLimiter, LIMITER_ADDRESSES, NEGATIVE_CACHE_TOKENS, NegativeCache};
use crate::domain::rate::RequestBudget;
use crate::store::{ApiToken, Store, StoreResult};
use crate::telemetry::metrics::AuthSurface;

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
    pub fn admit(&self, token: &TokenHash, per_second: Option<u32>) -> ServiceResult<()> {
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
        budget.spend(now).map_err(ServiceError::RateLimited)
    }
}

/// How long a token looked up and not found is remembered.
const UNKNOWN_TOKEN_TTL: Duration = Duration::from_secs(60);

/// The guards against guessing tokens, shared by the API and the dashboard
/// sign-in on this node: a budget of failures per client address
/// (`HERALD_AUTH_FAILURE_LIMIT` a minute, 10,000 addresses remembered) and
/// a negative cache of unknown tokens (10,000 hashes, 60 s). Together they
/// make a guess that is refused cost no database lookup.
pub struct Guard {
    /// `None` when the limit is off.
    limiter: Option<Mutex<FailureLimiter>>,
    unknown: Mutex<NegativeCache>,
}

impl Guard {
    pub fn new(failures_per_minute: Option<u32>) -> Self {
        Self {
            limiter: failures_per_minute.map(|n| Mutex::new(FailureLimiter::new(n, LIMITER_ADDRESSES))),
            unknown: Mutex::new(NegativeCache::new(UNKNOWN_TOKEN_TTL, NEGATIVE_CACHE_TOKENS)),
        }
    }
}

/// Before a token that is not known to be good is looked up: refused, with
/// the wait, while `client` has spent its budget of failures.
pub fn admit_client(state: &AppState, client: IpAddr, surface: AuthSurface) -> ServiceResult<()> {
    let Some(limiter) = &state.guard.limiter else {
        return Ok(());
    };
    let refusal = limiter
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .refusal(client, state.clock.now());
    match refusal {
        None => Ok(()),
        Some(wait) => {
            state.metrics.auth_rate_limited(surface);
            Err(ServiceError::TooManyFailures(wait))
        }
    }
}

/// A token from `client` did not authenticate: spends from its budget.
pub fn failed(state: &AppState, client: IpAddr, surface: AuthSurface) {
    state.metrics.auth_failed(surface);
    if let Some(limiter) = &state.guard.limiter {
        limiter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .failed(client, state.clock.now());
    }
}

/// The made token with this hash, if one was ever made (revoked and expired
/// ones included). An unknown hash is remembered for a minute, so
/// presenting it again costs no lookup; see `NegativeCache` for why a
/// token made meanwhile is never hidden by it.
pub async fn find_made_token(state: &AppState, hash: &TokenHash) -> ServiceResult<Option<ApiToken>> {
    let now = state.clock.now();
    let unknown = |c: &Mutex<NegativeCache>| c.lock().unwrap_or_else(|e| e.into_inner()).is_unknown(hash, now);
    if unknown(&state.guard.unknown) {
        return Ok(None);
    }
    let found = look_up(state, hash).await?;
    if let Some(token) = &found {
        note_use(state, token, now).await;
    }
    if found.is_none() {
        state
            .guard
            .unknown
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remember(*hash, now);
    }
    Ok(found)
}

/// How stale a token's "last used" may get before it is written again:
/// a busy token costs one write a minute, not one a request.
const LAST_USED_EVERY: chrono::Duration = chrono::Duration::minutes(1);

/// Notes that a live token authenticated. A failed write is logged and
/// costs the request nothing.
async fn note_use(state: &AppState, token: &ApiToken, now: chrono::DateTime<chrono::Utc>) {
    let stale = token.last_used_at.is_none_or(|at| now - at >= LAST_USED_EVERY);
    if stale
        && token.is_live(now)
        && let Err(e) = state.store.touch_token(&token.id, now).await
    {
        tracing::warn!(token = %token.id, error = %e, "could not note a token's last use");
    }
}

/// The one place authentication reads a token from the store, counted, so
/// an operator sees what guessing costs.
pub async fn look_up(state: &AppState, hash: &TokenHash) -> ServiceResult<Option<ApiToken>> {
    state.metrics.auth_token_lookup();
    Ok(state.store.find_token(&hex(hash)).await?)
}
