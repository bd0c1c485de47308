//! Signed grants: portal links for customers, and the dashboard's sessions.
//!
//! A grant is `base64url(JSON claims) "." base64url(HMAC-SHA256)`. The key is
//! derived from a random secret kept in the store (so every node of a cluster
//! shares it) and from the admin token's hash, so replacing the admin token
//! ends every session and portal link at once.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use utoipa::ToSchema;

use super::AppState;
use super::auth::{TokenHash, hex};
use super::endpoint::pin_owner;
use super::error::{ServiceError, ServiceResult};
use crate::domain::access::Scope;
use crate::domain::ids::{AppId, TokenId};
use crate::domain::model::ApiToken;
use crate::domain::validate::{Problems, check_name};
use crate::store::{Store, StoreResult};

const KEY_SETTING: &str = "grant_signing_key";

/// Portal links start with this, so the sign-in form tells them from the admin token.
pub const PORTAL_TOKEN_PREFIX: &str = "hrld_portal_";

/// Signs and checks grants. Cheap to clone.
#[derive(Clone)]
pub struct Signer {
    key: [u8; 32],
}

impl Signer {
    /// The cluster's signing secret (created once, by whichever node is
    /// first), bound to the current admin token.
    pub async fn load(store: &dyn Store, admin_token: &TokenHash) -> StoreResult<Self> {
        let mut fresh = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut fresh);
        store
            .put_secret_setting_if_absent(KEY_SETTING, &URL_SAFE_NO_PAD.encode(fresh))
            .await?;
        let stored = store
            .get_secret_setting(KEY_SETTING)
            .await?
            .ok_or_else(|| crate::store::StoreError::Corrupt("grant signing key vanished".into()))?;
        Ok(Self::new(stored.as_bytes(), admin_token))
    }

    pub fn new(secret: &[u8], admin_token: &TokenHash) -> Self {
        Self {
            key: hmac(secret, admin_token),
        }
    }

    /// `purpose` keeps a grant of one kind from being accepted as another.
    pub fn sign(&self, purpose: &str, claims: &impl Serialize) -> String {
        // Serializing plain claims into a Vec cannot fail.
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
        let tag = self.tag(purpose, &body);
        format!("{body}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    /// The claims, when `text` was signed by this key for `purpose`.
    pub fn verify<T: DeserializeOwned>(&self, purpose: &str, text: &str) -> Option<T> {
        let (body, tag) = text.split_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        let mut mac = self.mac(purpose);
        mac.update(body.as_bytes());
        // verify_slice compares in constant time.
        mac.verify_slice(&tag).ok()?;
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).ok()?).ok()
    }

    fn mac(&self, purpose: &str) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(purpose.as_bytes());
        mac.update(b"\0");
        mac
    }

    fn tag(&self, purpose: &str, body: &str) -> Vec<u8> {
        let mut mac = self.mac(purpose);
        mac.update(body.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    pub fn issue_portal(&self, grant: &PortalGrant) -> String {
        format!("{PORTAL_TOKEN_PREFIX}{}", self.sign("portal", grant))
    }

    /// A portal token's grant, if genuine and not expired at `now`.
    pub fn check_portal(&self, token: &str, now: DateTime<Utc>) -> Option<PortalGrant> {
        let grant: PortalGrant = self.verify("portal", token.strip_prefix(PORTAL_TOKEN_PREFIX)?)?;
        (grant.expires_at > now.timestamp()).then_some(grant)
    }
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// What a portal link lets its holder see: one application, and with an
/// owner only that owner's endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortalGrant {
    pub app: AppId,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub owner: Option<String>,
    /// Unix seconds.
    pub expires_at: i64,
    /// Reads only: the API refuses every write made with it.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub read_only: bool,
}

/// Svix's bounds for a portal token's life.
const MIN_EXPIRY_SECS: i64 = 3600;
const MAX_EXPIRY_SECS: i64 = 7 * 24 * 3600;

#[derive(Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct AppPortalAccessIn {
    /// Seconds the link stays valid: 3600 to 604800 (7 days, the default).
    pub expiry: Option<i64>,
    /// Herald: only this owner's endpoints are visible, and new ones belong to it.
    pub owner_id: Option<String>,
    /// Accepted for compatibility; ignored.
    pub feature_flags: Option<Vec<String>>,
    /// The token reads only: the API answers every write made with it 403.
    pub read_only: Option<bool>,
    /// Accepted for compatibility; ignored.
    pub session_id: Option<String>,
    /// Makes this application when the path names none yet; its `uid` must
    /// be the one in the path. Ignored when the application exists.
    pub application: Option<super::app::ApplicationIn>,
}

#[derive(Serialize, ToSchema)]
pub struct AppPortalAccessOut {
    /// Opens the dashboard signed in as this application's customer.
    pub url: String,
    pub token: String,
}

/// Where a request was sent, as its headers say: what a portal link is
/// built on when HERALD_PUBLIC_URL is not set.
#[derive(Debug, Default)]
pub struct RequestOrigin {
    /// The `Host` header.
    pub host: Option<String>,
    /// The `X-Forwarded-Proto` header.
    pub forwarded_proto: Option<String>,
}

impl RequestOrigin {
    pub fn from_headers(headers: &reqwest::header::HeaderMap) -> Self {
        let header = |name: &str| headers.get(name).and_then(|h| h.to_str().ok()).map(str::to_owned);
        Self {
            host: header(reqwest::header::HOST.as_str()),
            forwarded_proto: header("x-forwarded-proto"),
        }
    }
}

/// A link that signs a customer into the dashboard, scoped to one application
/// (and with `ownerId`, to that owner's endpoints).
pub async fn portal_access(
    state: &AppState,
    caller: &Scope,
    app_id: &str,
    mut input: AppPortalAccessIn,
    origin: &RequestOrigin,
) -> ServiceResult<AppPortalAccessOut> {
    input.owner_id = pin_owner(caller, input.owner_id)?;
    let app = super::app::find_or_make_app(state, app_id, input.application.take()).await?;
    let expiry = input.expiry.unwrap_or(MAX_EXPIRY_SECS);
    let mut problems = Problems::default();
    if !(MIN_EXPIRY_SECS..=MAX_EXPIRY_SECS).contains(&expiry) {
        problems.add(
            &["expiry"],
            format!("must be from {MIN_EXPIRY_SECS} to {MAX_EXPIRY_SECS} seconds"),
        );
    }
    if let Some(owner) = &input.owner_id {
        check_name(&mut problems, "ownerId", owner);
    }
    problems.into_result().map_err(ServiceError::Validation)?;
    let grant = PortalGrant {
        app: app.id,
        owner: input.owner_id,
        expires_at: (state.clock.now() + Duration::seconds(expiry)).timestamp(),
        read_only: input.read_only.unwrap_or(false),
    };
    let token = state.signer.issue_portal(&grant);
    let url = format!("{}/ui/login#token={token}", public_base(state, origin)?);
    Ok(AppPortalAccessOut { url, token })
}

/// Ends a portal token before it expires (`POST /auth/logout`). Portal
/// tokens are signed, not stored, so the logout is remembered as a revoked
/// token record under the token's hash until the token would have expired;
/// every request with it looks that hash up, as for made tokens.
pub async fn logout(state: &AppState, token_hash: &TokenHash, grant: &PortalGrant) -> ServiceResult<()> {
    let now = state.clock.now();
    let record = ApiToken {
        id: TokenId::generate(),
        name: "app portal session (logged out)".to_owned(),
        token_hash: hex(token_hash),
        scope: Scope::App {
            app: grant.app.clone(),
            owner: grant.owner.clone(),
        },
        rate_limit: None,
        created_at: now,
        expires_at: DateTime::from_timestamp(grant.expires_at, 0),
        revoked_at: Some(now),
        last_used_at: None,
    };
    Ok(state.store.create_token(&record).await?)
}

/// `HERALD_PUBLIC_URL`, else the address the request was sent to.
pub fn public_base(state: &AppState, origin: &RequestOrigin) -> ServiceResult<String> {
    if let Some(url) = &state.config.public_url {
        return Ok(url.as_str().trim_end_matches('/').to_owned());
    }
    let host = origin
        .host
        .as_deref()
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c)))
        .ok_or_else(|| ServiceError::Malformed("no usable Host header: set HERALD_PUBLIC_URL".into()))?;
    let scheme = match origin.forwarded_proto.as_deref() {
        Some("https") => "https",
        _ => "http",
    };
    Ok(format!("{scheme}://{host}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        Signer::new(b"cluster secret", &[7u8; 32])
    }

    fn grant(expires_at: i64) -> PortalGrant {
        PortalGrant {
            app: AppId::generate(),
            owner: Some("acme".into()),
            expires_at,
            read_only: false,
        }
    }

    #[test]
    fn a_portal_token_round_trips_until_it_expires() {
        let now = Utc::now();
        let g = grant(now.timestamp() + 60);
        let token = signer().issue_portal(&g);
        assert!(token.starts_with(PORTAL_TOKEN_PREFIX));
        assert_eq!(signer().check_portal(&token, now), Some(g));
        assert_eq!(signer().check_portal(&token, now + Duration::seconds(61)), None);
    }

    #[test]
    fn a_changed_claim_or_another_key_is_refused() {
        let now = Utc::now();
        let token = signer().issue_portal(&grant(now.timestamp() + 60));
        let body = token.strip_prefix(PORTAL_TOKEN_PREFIX).unwrap();
        let (claims, tag) = body.split_once('.').unwrap();
        let mut forged: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
        forged["owner"] = "someone-else".into();
        let forged = format!(
            "{PORTAL_TOKEN_PREFIX}{}.{tag}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap())
        );
        assert_eq!(signer().check_portal(&forged, now), None);
        let other_admin = Signer::new(b"cluster secret", &[8u8; 32]);
        assert_eq!(other_admin.check_portal(&token, now), None);
    }

    #[test]
    fn a_grant_signed_for_one_purpose_is_not_accepted_for_another() {
        let s = signer();
        let text = s.sign("session", &grant(i64::MAX));
        assert!(s.verify::<PortalGrant>("session", &text).is_some());
        assert!(s.verify::<PortalGrant>("portal", &text).is_none());
    }
}
