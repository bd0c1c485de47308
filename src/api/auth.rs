//! Bearer-token authentication and authorization of the API.
//!
//! Only SHA-256 hashes of tokens are kept (see `service::auth`); the admin
//! token's is compared in constant time. A token that fails spends from its
//! client address's budget of failures (the TCP peer's: Herald trusts no
//! forwarded header for this); once it is spent, every token from that
//! address but the admin token and a validly signed portal token is
//! answered 429 before any lookup.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::domain::access::{self, Decision, OwnerCheck, Scope};
use crate::service::AppState;
use crate::service::auth::{self as guard, TokenHash, hash_token};
use crate::service::error::ServiceError;
use crate::service::portal::{PORTAL_TOKEN_PREFIX, PortalGrant};
use crate::telemetry::metrics::AuthSurface;

/// Who made a request; handlers and the idempotency layer read it.
#[derive(Debug, Clone)]
pub struct Principal {
    pub token_hash: TokenHash,
    pub scope: Scope,
    /// The token's own request rate, if it has one.
    pub rate_limit: Option<u32>,
    /// What an app portal token grants (the token a customer portal calls
    /// the API with); `None` for the admin token and made tokens.
    pub portal: Option<PortalGrant>,
}

impl Principal {
    /// A read-only portal token may read, and end itself; nothing else.
    fn may(&self, method: &Method, template: &str) -> bool {
        let read_only = self.portal.as_ref().is_some_and(|g| g.read_only);
        !read_only || matches!(*method, Method::GET | Method::HEAD) || template == LOGOUT_ROUTE
    }
}

/// Where a portal token ends itself.
pub const LOGOUT_ROUTE: &str = "/api/v1/auth/logout";

/// Authenticates the bearer token, spends from its request budget, and
/// checks that its scope reaches the route and the objects in the path.
pub async fn authenticate(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let (mut parts, body) = req.into_parts();
    let principal = principal(&state, bearer_token(&parts.headers)?, peer.ip()).await?;
    state.throttle.admit(
        &principal.token_hash,
        principal.rate_limit.or(state.config.api_rate_limit),
    )?;
    let template = matched_path(&parts);
    if !principal.may(&parts.method, &template) {
        return Err(ApiError::Forbidden("this app portal token is read-only".to_owned()));
    }
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
/// A refused token counts against `client`'s budget of failures.
async fn principal(state: &AppState, token: &str, client: IpAddr) -> Result<Principal, ApiError> {
    let presented = hash_token(token);
    if bool::from(presented.ct_eq(&state.admin_token_hash)) {
        return Ok(Principal {
            token_hash: presented,
            scope: Scope::Admin,
            rate_limit: None,
            portal: None,
        });
    }
    let found = if token.starts_with(PORTAL_TOKEN_PREFIX) {
        portal_principal(state, token, presented, client).await
    } else {
        guard::admit_client(state, client, AuthSurface::Api)?;
        made_principal(state, presented).await
    };
    if let Err(ApiError::Unauthorized(_)) = &found {
        guard::failed(state, client, AuthSurface::Api);
    }
    found
}

/// A made token: live, from the store (or remembered as unknown).
async fn made_principal(state: &AppState, presented: TokenHash) -> Result<Principal, ApiError> {
    match guard::find_made_token(state, &presented).await? {
        Some(t) if t.is_live(state.clock.now()) => Ok(Principal {
            token_hash: presented,
            scope: t.scope,
            rate_limit: t.rate_limit,
            portal: None,
        }),
        Some(_) => Err(ApiError::Unauthorized("this token was revoked or has expired")),
        None => Err(ApiError::Unauthorized("invalid token")),
    }
}

/// An app portal token (from `POST /auth/app-portal-access/{app}`): signed,
/// so it needs no lookup to be believed, but one to know it was not logged
/// out. It reaches what a made token for its application (and owner) does.
async fn portal_principal(
    state: &AppState,
    token: &str,
    presented: TokenHash,
    client: IpAddr,
) -> Result<Principal, ApiError> {
    let Some(grant) = state.signer.check_portal(token, state.clock.now()) else {
        guard::admit_client(state, client, AuthSurface::Api)?;
        return Err(ApiError::Unauthorized(
            "this app portal token is invalid or has expired",
        ));
    };
    if guard::look_up(state, &presented).await?.is_some() {
        return Err(ApiError::Unauthorized("this app portal token was logged out"));
    }
    Ok(Principal {
        token_hash: presented,
        scope: Scope::App {
            app: grant.app.clone(),
            owner: grant.owner.clone(),
        },
        rate_limit: None,
        portal: Some(grant),
    })
}

fn matched_path(parts: &Parts) -> String {
    parts
        .extensions
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default()
}

/// Applies the route's rule (`access::rule`) to `scope`. Objects outside
/// the scope answer 404, as if they did not exist.
async fn authorize(state: &AppState, scope: &Scope, parts: &mut Parts) -> Result<(), ApiError> {
    let template = matched_path(parts);
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
            let (msg, attempt) = (
                param("msg_id").unwrap_or_default(),
                param("attempt_id").unwrap_or_default(),
            );
            let found = match crate::service::attempt::find_attempt(state, &app, &msg, &attempt).await {
                Err(ServiceError::NotFound(_)) => None,
                found => Some(found?),
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
