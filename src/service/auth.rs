//! Tokens as Herald keeps them: only SHA-256 hashes (API tokens are long
//! random strings, so a fast hash is the right tool), the admin token's
//! among them, and each token's request budget on this node.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::error::{ServiceError, ServiceResult};
use crate::config::Config;
use crate::domain::rate::RequestBudget;
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
