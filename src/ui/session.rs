//! Who is signed in to the dashboard, and the checks every form passes.
//!
//! The session is a signed cookie (HttpOnly, SameSite=Lax, Secure behind
//! https) holding the viewer's scope, an expiry and a CSRF token. Nothing is
//! kept on the server, so any node of a cluster serves any request. Every
//! form carries the CSRF token and is refused from another origin.
//!
//! A session opened with a made token also holds the token's id, and every
//! page looks the token up by id (one lookup a page), so revoking it ends
//! the session at the next page on every node.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::net::IpAddr;

use chrono::{DateTime, Duration, Utc};
use rand::RngCore;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::UiError;
use crate::service::auth::{self as guard, hash_token};
use crate::service::portal::{PORTAL_TOKEN_PREFIX, Signer};
use crate::service::{AppState, ServiceResult, tokens};
use crate::telemetry::metrics::AuthSurface;

pub const COOKIE: &str = "herald_session";
const PURPOSE: &str = "session";

/// How long a sign-in lasts; a portal session also ends with its link.
const SESSION_HOURS: i64 = 12;

pub use crate::domain::access::Scope;

#[derive(Serialize, Deserialize)]
struct Claims {
    scope: Scope,
    csrf: String,
    expires_at: i64,
    /// A read-only portal link's session: it reads, and changes nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    read_only: bool,
    /// The made token the session was opened with; it must stay live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_id: Option<String>,
}

/// The signed-in person, as an extractor: a page that takes one is
/// reachable only after sign-in.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub scope: Scope,
    pub csrf: String,
    pub read_only: bool,
}

impl Viewer {
    pub fn is_admin(&self) -> bool {
        self.scope == Scope::Admin
    }

    pub fn owner(&self) -> Option<&str> {
        self.scope.owner()
    }

    pub fn may_open_app(&self, app: &str) -> bool {
        match &self.scope {
            Scope::Admin => true,
            Scope::App { app: granted, .. } => granted.as_str() == app,
        }
    }

    /// An owner-scoped viewer sees only endpoints of that owner.
    pub fn may_see_endpoint(&self, owner_id: Option<&str>) -> bool {
        self.scope.may_see_endpoint(owner_id)
    }
}

/// What a typed token lets its holder do in the dashboard, and until when.
pub struct Granted {
    pub scope: Scope,
    pub expires_at: i64,
    pub read_only: bool,
    /// A made token's id: its session lasts while the token is live.
    pub token_id: Option<String>,
}

/// What a typed token grants: the admin token, a portal link's token
/// (read-only when the link was made so), or a live made token (its scope:
/// an administrator's opens every application, an application's or an
/// owner's that application as a portal link would). `None` for a token
/// that grants nothing, which spends from `client`'s budget of failures;
/// once that is spent, `TooManyFailures` before any lookup.
pub async fn grant_for_token(state: &AppState, token: &str, client: IpAddr) -> ServiceResult<Option<Granted>> {
    let token = token.trim();
    let now = state.clock.now();
    let longest = (now + Duration::hours(SESSION_HOURS)).timestamp();
    let matches: bool = hash_token(token).ct_eq(&state.admin_token_hash).into();
    if matches {
        return Ok(Some(Granted {
            scope: Scope::Admin,
            expires_at: longest,
            read_only: false,
            token_id: None,
        }));
    }
    if token.starts_with(PORTAL_TOKEN_PREFIX)
        && let Some(grant) = state.signer.check_portal(token, now)
    {
        return Ok(Some(Granted {
            scope: Scope::App {
                app: grant.app,
                owner: grant.owner,
            },
            expires_at: grant.expires_at.min(longest),
            read_only: grant.read_only,
            token_id: None,
        }));
    }
    guard::admit_client(state, client, AuthSurface::Dashboard)?;
    let made = if token.starts_with(PORTAL_TOKEN_PREFIX) {
        None
    } else {
        guard::find_made_token(state, &hash_token(token)).await?
    };
    match made.filter(|t| t.is_live(now)) {
        Some(t) => Ok(Some(Granted {
            scope: t.scope,
            expires_at: t.expires_at.map_or(longest, |until| until.timestamp().min(longest)),
            read_only: false,
            token_id: Some(t.id.to_string()),
        })),
        None => {
            guard::failed(state, client, AuthSurface::Dashboard);
            Ok(None)
        }
    }
}

/// A new session cookie for what was granted, with a fresh CSRF token.
pub fn start(state: &AppState, headers: &HeaderMap, granted: Granted) -> Cookie<'static> {
    let mut csrf = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut csrf);
    let claims = Claims {
        scope: granted.scope,
        csrf: URL_SAFE_NO_PAD.encode(csrf),
        expires_at: granted.expires_at,
        read_only: granted.read_only,
        token_id: granted.token_id,
    };
    cookie(state.signer.sign(PURPOSE, &claims), secure(state, headers))
}

/// The cookie that ends the session.
pub fn end(state: &AppState, headers: &HeaderMap) -> Cookie<'static> {
    let mut c = cookie(String::new(), secure(state, headers));
    c.make_removal();
    c
}

/// No Max-Age: closing the browser ends the session; the signed expiry
/// ends it anyway.
fn cookie(value: String, secure: bool) -> Cookie<'static> {
    Cookie::build((COOKIE, value))
        .path("/ui")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .build()
}

/// Secure when people reach Herald over https.
fn secure(state: &AppState, headers: &HeaderMap) -> bool {
    match &state.config.public_url {
        Some(url) => url.scheme() == "https",
        None => headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()) == Some("https"),
    }
}

/// The session's viewer, and the made token it must still be opened by.
fn read(signer: &Signer, jar: &CookieJar, now: DateTime<Utc>) -> Option<(Viewer, Option<String>)> {
    let claims: Claims = signer.verify(PURPOSE, jar.get(COOKIE)?.value())?;
    (claims.expires_at > now.timestamp()).then_some((
        Viewer {
            scope: claims.scope,
            csrf: claims.csrf,
            read_only: claims.read_only,
        },
        claims.token_id,
    ))
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let sign_in = || UiError::SignIn {
            next: parts
                .uri
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default(),
        };
        let jar = CookieJar::from_headers(&parts.headers);
        let (viewer, token_id) = read(&state.signer, &jar, state.clock.now()).ok_or_else(sign_in)?;
        match token_id {
            Some(id) if !tokens::is_live(state, &id).await? => Err(sign_in()),
            _ => Ok(viewer),
        }
    }
}

#[derive(Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

/// A form that changes something, posted by a signed-in viewer who may
/// change things, from this site, with their CSRF token.
pub struct Submitted<T> {
    pub viewer: Viewer,
    pub form: T,
}

impl<T: DeserializeOwned> FromRequest<AppState> for Submitted<T> {
    type Rejection = UiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (viewer, bytes) = checked_form(req, state).await?;
        if viewer.read_only {
            return Err(UiError::Forbidden(
                "this portal link is read-only: it changes nothing".into(),
            ));
        }
        let form = serde_html_form::from_bytes(&bytes).map_err(|e| UiError::BadForm(e.to_string()))?;
        Ok(Self { viewer, form })
    }
}

/// The sign-out form: checked like any other, and open to read-only viewers.
pub struct SignOutForm;

impl FromRequest<AppState> for SignOutForm {
    type Rejection = UiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        checked_form(req, state).await.map(|_| Self)
    }
}

/// The viewer and the body of a form sent from this site with their CSRF token.
async fn checked_form(req: Request, state: &AppState) -> Result<(Viewer, Bytes), UiError> {
    let (mut parts, body) = req.into_parts();
    same_origin(&parts.headers)?;
    let viewer = Viewer::from_request_parts(&mut parts, state).await?;
    let bytes = Bytes::from_request(Request::from_parts(parts, body), state)
        .await
        .map_err(|e| UiError::BadForm(e.body_text()))?;
    let sent: CsrfField = serde_html_form::from_bytes(&bytes).map_err(|e| UiError::BadForm(e.to_string()))?;
    if !bool::from(sent.csrf.as_bytes().ct_eq(viewer.csrf.as_bytes())) {
        return Err(UiError::Forbidden(
            "this form is out of date or came from another site; reload the page and try again".into(),
        ));
    }
    Ok((viewer, bytes))
}

/// Refuses a form posted from another origin. Browsers send `Origin` with
/// every POST; its host must be the one the request was sent to.
pub fn same_origin(headers: &HeaderMap) -> Result<(), UiError> {
    if headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) == Some("cross-site") {
        return Err(UiError::Forbidden(
            "forms may only be sent from Herald's own pages".into(),
        ));
    }
    let Some(origin) = headers.get("origin").and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let host = headers.get("host").and_then(|v| v.to_str().ok());
    let origin_host = url::Url::parse(origin).ok().map(|u| match (u.host_str(), u.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => String::new(),
    });
    if origin_host.is_some() && origin_host.as_deref() == host {
        Ok(())
    } else {
        Err(UiError::Forbidden(
            "forms may only be sent from Herald's own pages".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::AppId;
    use axum::http::HeaderValue;

    fn viewer(owner: Option<&str>) -> Viewer {
        Viewer {
            scope: Scope::App {
                app: AppId::parse("app_01HZZZZZZZZZZZZZZZZZZZZZZZ").unwrap(),
                owner: owner.map(str::to_owned),
            },
            csrf: String::new(),
            read_only: false,
        }
    }

    #[test]
    fn an_owner_scoped_viewer_sees_only_that_owners_endpoints() {
        let v = viewer(Some("acme"));
        assert!(v.may_see_endpoint(Some("acme")));
        assert!(!v.may_see_endpoint(Some("globex")));
        assert!(!v.may_see_endpoint(None));
        assert!(viewer(None).may_see_endpoint(Some("globex")));
        assert!(v.may_open_app("app_01HZZZZZZZZZZZZZZZZZZZZZZZ"));
        assert!(!v.may_open_app("app_01HYYYYYYYYYYYYYYYYYYYYYYY"));
    }

    #[test]
    fn a_session_expires_and_a_forged_one_is_refused() {
        let signer = Signer::new(b"k", &[1; 32]);
        let now = Utc::now();
        let claims = Claims {
            scope: Scope::Admin,
            csrf: "c".into(),
            expires_at: now.timestamp() + 10,
            read_only: false,
            token_id: None,
        };
        let jar = CookieJar::new().add(Cookie::new(COOKIE, signer.sign(PURPOSE, &claims)));
        assert!(read(&signer, &jar, now).is_some_and(|(v, _)| v.is_admin()));
        assert!(read(&signer, &jar, now + Duration::seconds(11)).is_none());
        let other = Signer::new(b"k", &[2; 32]);
        assert!(read(&other, &jar, now).is_none());
    }

    #[test]
    fn forms_from_another_origin_are_refused() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("herald.example:8080"));
        assert!(same_origin(&h).is_ok());
        h.insert("origin", HeaderValue::from_static("http://herald.example:8080"));
        assert!(same_origin(&h).is_ok());
        h.insert("origin", HeaderValue::from_static("https://evil.example"));
        assert!(same_origin(&h).is_err());
        h.insert("origin", HeaderValue::from_static("null"));
        assert!(same_origin(&h).is_err());
        let mut h = HeaderMap::new();
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(same_origin(&h).is_err());
    }
}
