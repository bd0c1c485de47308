//! Signing in with the admin token, a made token or a portal link, and
//! signing out. Wrong tokens spend from the client address's budget of
//! failures, shared with the API; past it the form answers 429.

use std::net::SocketAddr;

use axum::Form;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar};
use serde::Deserialize;

use super::UiError;
use super::render::{self, Layout};
use super::session::{self, Scope, Viewer};
use crate::domain::guard::retry_after_secs;
use crate::service::{AppState, ServiceError};

/// The first page of a viewer: operators see the overview, a customer
/// their application.
pub async fn home(viewer: Viewer) -> Redirect {
    Redirect::to(&landing(&viewer.scope))
}

fn landing(scope: &Scope) -> String {
    match scope {
        Scope::Admin => "/ui/overview".to_owned(),
        Scope::App { app, .. } => format!("/ui/app/{app}"),
    }
}

#[derive(Deserialize, Default)]
pub struct LoginQuery {
    #[serde(default)]
    next: String,
}

pub async fn login_page(Query(q): Query<LoginQuery>) -> Response {
    login_form(StatusCode::OK, &q.next, None)
}

fn login_form(status: StatusCode, next: &str, error: Option<&str>) -> Response {
    let layout = Layout {
        title: "Sign in".into(),
        ..Layout::default()
    };
    render::page(
        status,
        "login.html",
        layout,
        minijinja::context! { next => safe_next(next), error },
    )
}

/// Only a dashboard path: a sign-in never sends anyone to another site.
fn safe_next(next: &str) -> Option<&str> {
    (next.starts_with("/ui/") && !next.starts_with("//") && !next.contains('\\')).then_some(next)
}

#[derive(Deserialize)]
pub struct SignIn {
    #[serde(default)]
    token: String,
    #[serde(default)]
    next: String,
}

pub async fn sign_in(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    jar: CookieJar,
    Form(form): Form<SignIn>,
) -> Result<Response, UiError> {
    session::same_origin(&headers)?;
    let granted = match session::grant_for_token(&state, &form.token, peer.ip()).await {
        Ok(Some(granted)) => granted,
        Ok(None) => {
            tracing::info!("a dashboard sign-in was refused");
            return Ok(login_form(
                StatusCode::UNAUTHORIZED,
                &form.next,
                Some("That token is not valid, or the portal link has expired."),
            ));
        }
        Err(ServiceError::TooManyFailures(wait)) => return Ok(too_many_failures(&form.next, wait)),
        Err(e) => return Err(e.into()),
    };
    let target = match (&granted.scope, safe_next(&form.next)) {
        (Scope::Admin, Some(next)) => next.to_owned(),
        _ => landing(&granted.scope),
    };
    let cookie = session::start(&state, &headers, granted);
    Ok((jar.add(cookie), Redirect::to(&target)).into_response())
}

/// The form again, 429, saying when the address may try again.
fn too_many_failures(next: &str, wait: std::time::Duration) -> Response {
    let seconds = retry_after_secs(wait);
    let message = format!("Too many wrong tokens came from your address. Try again in {seconds} seconds.");
    let mut page = login_form(StatusCode::TOO_MANY_REQUESTS, next, Some(&message));
    page.headers_mut().insert(RETRY_AFTER, HeaderValue::from(seconds));
    page
}

pub async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
    _submitted: session::SignOutForm,
) -> Response {
    let removal: Cookie<'static> = session::end(&state, &headers);
    (jar.add(removal), Redirect::to("/ui/login")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_in_only_returns_to_dashboard_pages() {
        assert_eq!(safe_next("/ui/app/x"), Some("/ui/app/x"));
        assert_eq!(safe_next("https://evil.example/ui/"), None);
        assert_eq!(safe_next("//evil.example"), None);
        assert_eq!(safe_next("/ui/\\evil"), None);
        assert_eq!(safe_next(""), None);
    }
}
