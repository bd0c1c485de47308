//! The dashboard under `/ui`: server-rendered pages for operators (with the
//! admin token) and for customers (with a portal link), built on the same
//! workflows as the API (`service`) so both enforce the same rules.

mod app_forms;
mod apps;
mod catalog;
mod chart;
mod endpoints;
mod event_types;
mod find;
mod forms;
mod history;
mod login;
mod overview;
mod render;
pub mod session;
mod tokens;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::service::{AppState, ServiceError};
use render::Layout;

/// Why a page could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    #[error("sign in first")]
    SignIn { next: String },
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Forbidden(String),
    #[error("the form could not be read: {0}")]
    BadForm(String),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

pub type UiResult<T> = Result<T, UiError>;

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let (status, message) = match &self {
            Self::SignIn { next } => {
                let target = match next.as_str() {
                    "" | "/ui" | "/ui/" => "/ui/login".to_owned(),
                    n => format!(
                        "/ui/login?next={}",
                        url::form_urlencoded::byte_serialize(n.as_bytes()).collect::<String>()
                    ),
                };
                return Redirect::to(&target).into_response();
            }
            Self::NotFound => (
                StatusCode::NOT_FOUND,
                "There is nothing here, or it is not yours to see.".to_owned(),
            ),
            Self::Forbidden(why) => (StatusCode::FORBIDDEN, why.clone()),
            Self::BadForm(why) => (StatusCode::BAD_REQUEST, format!("The form could not be read: {why}")),
            Self::Service(ServiceError::NotFound(_)) => (
                StatusCode::NOT_FOUND,
                "There is nothing here, or it is not yours to see.".to_owned(),
            ),
            Self::Service(e) => (status_of(e), forms::describe(e)),
        };
        let layout = Layout {
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            ..Layout::default()
        };
        render::page(status, "error.html", layout, minijinja::context! { message })
    }
}

/// The status a page answers with when a workflow refused: the one the API
/// answers for the same refusal, so a page and its route agree.
pub fn status_of(e: &ServiceError) -> StatusCode {
    match e {
        ServiceError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
        ServiceError::Malformed(_) => StatusCode::BAD_REQUEST,
        ServiceError::Forbidden(_) => StatusCode::FORBIDDEN,
        ServiceError::NotFound(_) => StatusCode::NOT_FOUND,
        ServiceError::Conflict(_) => StatusCode::CONFLICT,
        ServiceError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        ServiceError::RateLimited(_) | ServiceError::TooManyFailures(_) => StatusCode::TOO_MANY_REQUESTS,
        ServiceError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ServiceError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

const CSS: &str = include_str!("assets/herald.css");
const JS: &str = include_str!("assets/herald.js");

/// Scripts and styles only from Herald itself; no framing; nothing cached.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ui", get(login::home))
        .route("/ui/", get(login::home))
        .route("/ui/login", get(login::login_page).post(login::sign_in))
        .route("/ui/logout", axum::routing::post(login::sign_out))
        .route(
            "/ui/assets/herald.css",
            get(|| async { asset("text/css; charset=utf-8", CSS) }),
        )
        .route(
            "/ui/assets/herald.js",
            get(|| async { asset("text/javascript; charset=utf-8", JS) }),
        )
        .route("/ui/overview", get(overview::page))
        .route("/ui/find", get(find::find))
        .route("/ui/apps", get(apps::list))
        .route("/ui/apps/new", get(app_forms::new_form).post(app_forms::create))
        .route("/ui/event-types", get(catalog::list))
        .route(
            "/ui/event-types/new",
            get(event_types::new_form).post(event_types::create),
        )
        .route(
            "/ui/event-type/{name}",
            get(event_types::edit_form).post(event_types::save),
        )
        .route(
            "/ui/event-type/{name}/archive",
            axum::routing::post(event_types::archive),
        )
        .route("/ui/tokens", get(tokens::list).post(tokens::make))
        .route("/ui/token/{id}/revoke", axum::routing::post(tokens::revoke))
        .route("/ui/app/{app}", get(apps::app_page))
        .route("/ui/app/{app}/edit", get(app_forms::edit_form).post(app_forms::save))
        .route(
            "/ui/app/{app}/delete",
            get(app_forms::confirm_delete).post(app_forms::delete),
        )
        .route("/ui/app/{app}/msg/{msg}", get(find::message))
        .route("/ui/app/{app}/portal-link", axum::routing::post(apps::portal_link))
        .route(
            "/ui/app/{app}/endpoint/new",
            get(endpoints::new_form).post(endpoints::create),
        )
        .route("/ui/app/{app}/endpoint/{ep}", get(endpoints::show))
        .route(
            "/ui/app/{app}/endpoint/{ep}/edit",
            get(endpoints::edit_form).post(endpoints::save),
        )
        .route(
            "/ui/app/{app}/endpoint/{ep}/switch",
            axum::routing::post(endpoints::switch),
        )
        .route(
            "/ui/app/{app}/endpoint/{ep}/delete",
            get(endpoints::confirm_delete).post(endpoints::delete),
        )
        .route("/ui/app/{app}/endpoint/{ep}/secret", get(endpoints::reveal_secret))
        .route(
            "/ui/app/{app}/endpoint/{ep}/rotate-secret",
            axum::routing::post(endpoints::rotate_secret),
        )
        .route(
            "/ui/app/{app}/endpoint/{ep}/test",
            axum::routing::post(endpoints::send_test),
        )
        .route("/ui/app/{app}/endpoint/{ep}/history", get(history::list))
        .route("/ui/app/{app}/endpoint/{ep}/retry", axum::routing::post(history::retry))
        .route(
            "/ui/app/{app}/endpoint/{ep}/attempt/{msg}/{attempt}",
            get(history::attempt),
        )
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        // No page address reaches another site. (`no-referrer` would also make
        // browsers send `Origin: null` with forms, which the origin check refuses.)
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}
