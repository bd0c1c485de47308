//! API tokens besides the configured admin token: administrators make them
//! for a service, an application or one owner of an application, with an
//! optional expiry, and revoke them. The token is shown once; Herald keeps
//! only its SHA-256. The API's `/api/v1/auth/token` and `herald token …`
//! both come here, so both follow the same rules.

use std::fmt::Write;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::{hash_token, hex};
use super::error::{ServiceError, ServiceResult};
use super::input::QueryParams;
use super::list::{Listed, Paging};
use crate::domain::access::Scope;
use crate::domain::clock::Clock;
use crate::domain::ids::TokenId;
use crate::domain::validate::{Problems, check_name};
use crate::store::{ApiToken, Order, Page, Store, StoreError};

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
    /// Herald: when it last authenticated (to the minute); `null` if never.
    pub last_used_at: Option<DateTime<Utc>>,
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
            last_used_at: t.last_used_at,
            token: None,
        }
    }
}

/// Checks `input`, makes the token and stores its hash. The answer carries
/// the token, once.
pub async fn make_token(store: &dyn Store, input: TokenIn, now: DateTime<Utc>) -> ServiceResult<TokenOut> {
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
    p.into_result().map_err(ServiceError::Validation)?;
    let scope = match input.app_id {
        None => Scope::Admin,
        Some(app) => Scope::App {
            app: store
                .get_app(&app)
                .await?
                .ok_or_else(|| ServiceError::body_field(&["appId"], format!("no application '{app}'")))?
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
        last_used_at: None,
    };
    store.create_token(&token).await?;
    Ok(TokenOut {
        token: Some(secret),
        ..token.into()
    })
}

/// Tokens made so far, revoked and expired ones included; never the tokens themselves.
pub async fn list_tokens(state: &AppState, q: &QueryParams) -> ServiceResult<Listed<TokenOut>> {
    let paging = Paging::from_query(q, Order::Ascending)?;
    let rows = state.store.list_tokens(&paging.page).await?;
    Ok(paging.finish(rows.into_iter().map(TokenOut::from).collect(), |t| t.id.clone()))
}

pub async fn get_token(state: &AppState, token_id: &str) -> ServiceResult<TokenOut> {
    Ok(find_token(state.store.as_ref(), token_id).await?.into())
}

/// Revokes a token at once, on every node: it is looked up on each request,
/// and each dashboard page of a session it opened.
pub async fn revoke_token(state: &AppState, token_id: &str) -> ServiceResult<()> {
    let token = find_token(state.store.as_ref(), token_id).await?;
    state.store.revoke_token(&token.id, state.clock.now()).await?;
    Ok(())
}

/// Whether the made token `token_id` still works: not revoked, not expired,
/// not removed with its application. One lookup by id.
pub async fn is_live(state: &AppState, token_id: &str) -> ServiceResult<bool> {
    let found = match TokenId::parse(token_id) {
        Some(id) => state.store.get_token(&id).await?,
        None => None,
    };
    Ok(found.is_some_and(|t| t.is_live(state.clock.now())))
}

async fn find_token(store: &dyn Store, id: &str) -> ServiceResult<ApiToken> {
    let found = match TokenId::parse(id) {
        Some(id) => store.get_token(&id).await?,
        None => None,
    };
    found.ok_or(ServiceError::NotFound("token"))
}

/// What `herald token …` was asked to do.
pub enum Action {
    Create(TokenIn),
    List,
    Revoke(String),
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ServiceError> for TokenError {
    fn from(e: ServiceError) -> Self {
        let detail = match &e {
            ServiceError::Validation(errors) => errors
                .iter()
                .map(|f| format!("{}: {}", f.loc.last().map_or("", String::as_str), f.msg))
                .collect::<Vec<_>>()
                .join("; "),
            other => other.to_string(),
        };
        Self::Refused(detail)
    }
}

/// `herald token …`: runs `action` and prints its outcome on stdout.
pub async fn run(store: &dyn Store, clock: &Clock, action: Action) -> Result<(), TokenError> {
    match action {
        Action::Create(input) => {
            let made = make_token(store, input, clock.now()).await?;
            println!(
                "Made token {} ({}). It is shown only now; Herald keeps only its hash.\n\n    {}\n",
                made.id,
                describe(&made),
                made.token.as_deref().unwrap_or_default()
            );
        }
        Action::List => print!("{}", table(store, clock).await?),
        Action::Revoke(id) => {
            let id = TokenId::parse(&id).ok_or_else(|| TokenError::Refused(format!("'{id}' is not a tok_ id")))?;
            if store.get_token(&id).await?.is_none() {
                return Err(TokenError::Refused(format!("no token {id}")));
            }
            let revoked = store.revoke_token(&id, clock.now()).await?;
            println!("{id} {}", if revoked { "revoked" } else { "was already revoked" });
        }
    }
    Ok(())
}

fn describe(t: &TokenOut) -> String {
    let mut text = match (&t.app_id, &t.owner_id) {
        (None, _) => "administrator".to_owned(),
        (Some(app), None) => format!("application {app}"),
        (Some(app), Some(owner)) => format!("owner {owner} of application {app}"),
    };
    if let Some(until) = t.expires_at {
        let _ = write!(
            text,
            ", expires {}",
            until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
    }
    text
}

async fn table(store: &dyn Store, clock: &Clock) -> Result<String, TokenError> {
    let mut out = String::new();
    let mut page = Page::first(100);
    loop {
        let tokens = store.list_tokens(&page).await?;
        let Some(last) = tokens.last() else { break };
        page.beyond = Some(last.id.to_string());
        for t in tokens {
            let state = match (t.revoked_at, t.is_live(clock.now())) {
                (Some(_), _) => "revoked",
                (None, false) => "expired",
                (None, true) => "live",
            };
            let t = TokenOut::from(t);
            let _ = writeln!(out, "{}  {:<7}  {}  {}", t.id, state, t.name, describe(&t));
        }
    }
    if out.is_empty() {
        out.push_str("no tokens\n");
    }
    Ok(out)
}
