//! The HTTP API, in the Svix v1 shapes so that Svix SDKs are Herald clients.

pub mod app;
pub mod attempt;
pub mod auth;
pub mod endpoint;
pub mod error;
pub mod event_type;
pub mod extract;
pub mod health;
pub mod idempotency;
pub mod keys;
pub mod list;
pub mod message;
pub mod operational;
pub mod portal;
pub mod recovery;
pub mod token;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware;
use axum::routing::get;
use tower_http::classify::ServerErrorsFailureClass;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::service::AppState;

/// Room for a 1 MiB payload plus the message envelope around it; the payload
/// itself is checked against 1 MiB exactly.
const MAX_REQUEST_BYTES: usize = 1024 * 1024 + 64 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(title = "Herald", description = "Webhook delivery server. Paths and shapes follow the Svix v1 API."),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    components(schemas(error::HttpErrorOut, error::HttpValidationErrorOut, error::ValidationErrorOut))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The authenticated `/api/v1` routes, and the OpenAPI document built from them.
fn api_routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(app::list_apps, app::create_app))
        .routes(routes!(app::get_app, app::put_app, app::patch_app, app::delete_app))
        .routes(routes!(endpoint::list_endpoints, endpoint::create_endpoint))
        .routes(routes!(
            endpoint::get_endpoint,
            endpoint::put_endpoint,
            endpoint::patch_endpoint,
            endpoint::delete_endpoint
        ))
        .routes(routes!(endpoint::get_secret))
        .routes(routes!(endpoint::rotate_secret))
        .routes(routes!(
            endpoint::get_headers,
            endpoint::update_headers,
            endpoint::patch_headers
        ))
        .routes(routes!(event_type::list_event_types, event_type::create_event_type))
        .routes(routes!(
            event_type::get_event_type,
            event_type::put_event_type,
            event_type::patch_event_type,
            event_type::delete_event_type
        ))
        .routes(routes!(message::list_messages, message::create_message))
        .routes(routes!(message::get_message))
        .routes(routes!(attempt::list_by_endpoint))
        .routes(routes!(attempt::list_by_msg))
        .routes(routes!(attempt::list_attempted_messages))
        .routes(routes!(attempt::list_attempted_destinations))
        .routes(routes!(attempt::resend))
        .routes(routes!(attempt::get_attempt))
        .routes(routes!(attempt::expunge_attempt_content))
        .routes(routes!(message::expunge_content))
        .routes(routes!(recovery::resend_many))
        .routes(routes!(recovery::recover))
        .routes(routes!(recovery::replay_missing))
        .routes(routes!(recovery::send_example))
        .routes(routes!(recovery::stats))
        .routes(routes!(recovery::list_tasks))
        .routes(routes!(recovery::get_task))
        .routes(routes!(portal::app_portal_access))
        .routes(routes!(token::list_tokens, token::create_token))
        .routes(routes!(token::get_token, token::revoke_token))
        .routes(routes!(token::logout))
        .routes(routes!(operational::list_emails))
        .routes(routes!(keys::keys_status))
        .routes(routes!(keys::rotate_keys))
        .split_for_parts()
}

/// The OpenAPI document, as served at `/api/v1/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut doc) = api_routes();
    let (_, health_doc) = OpenApiRouter::new().routes(routes!(health::health)).split_for_parts();
    doc.merge(health_doc);
    doc
}

/// The HTTP routes of a node: the API, and `pages` (the dashboard) beside it
/// with their own sign-in. A worker-only node answers health checks only.
pub fn router(state: AppState, pages: Router<AppState>) -> Router {
    let health = Router::new()
        .route("/health", get(health::health))
        .route("/api/v1/health", get(health::health))
        .route("/api/v1/health/ping", get(health::ping))
        .route("/metrics", get(health::metrics));
    if !state.config.role.serves_api() {
        return health
            .fallback(|| async { error::ApiError::NotFound("route (this node runs HERALD_ROLE=worker)") })
            .with_state(state);
    }
    let (api, _) = api_routes();
    let doc = Arc::new(openapi());
    let origins = state.config.cors_origins.clone();
    let api = api
        // Layers run bottom-up: authenticate first, then idempotency (scoped to the caller).
        .layer(middleware::from_fn_with_state(
            state.clone(),
            idempotency::idempotent_posts,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), auth::authenticate));
    let routes = Router::new()
        .route("/health", get(health::health))
        .route("/api/v1/health", get(health::health))
        .route("/api/v1/health/ping", get(health::ping))
        .route("/metrics", get(health::metrics))
        .route(
            "/api/v1/openapi.json",
            get(move || async move { axum::Json(doc.as_ref().clone()) }),
        )
        .merge(api)
        .merge(pages)
        .fallback(|| async { error::ApiError::NotFound("route") })
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .layer(tower_http::trace::TraceLayer::new_for_http().on_failure(FailureLog::default()))
        .with_state(state);
    // Outside the routes, so the path is trimmed before they are matched.
    let app = Router::new()
        .fallback_service(routes)
        .layer(middleware::map_request(trim_trailing_slash));
    if origins.is_empty() {
        app
    } else {
        app.layer(cors(&origins))
    }
}

/// Browser pages on `origins` (an embedded customer portal) may call the
/// API: their preflights are answered and their origin echoed. Any other
/// origin gets no CORS headers, so browsers keep refusing it. Cookies are
/// never allowed cross-origin: the API takes bearer tokens only.
fn cors(origins: &[String]) -> tower_http::cors::CorsLayer {
    use axum::http::{HeaderValue, Method, header};
    use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};
    let allowed: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(allowed))
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers([header::RETRY_AFTER])
        .max_age(std::time::Duration::from_secs(600))
}

/// `/api/v1/app/` is `/api/v1/app`: Svix accepts either, and older SDKs and
/// hand-written clients send the slash.
async fn trim_trailing_slash(mut req: axum::extract::Request) -> axum::extract::Request {
    let path = req.uri().path();
    let trimmed = path.trim_end_matches('/');
    if trimmed.len() == path.len() || trimmed.is_empty() {
        return req;
    }
    let path_and_query = match req.uri().query() {
        Some(q) => format!("{trimmed}?{q}"),
        None => trimmed.to_owned(),
    };
    let mut parts = req.uri().clone().into_parts();
    if let Ok(pq) = path_and_query.parse() {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = axum::http::Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    req
}

/// How often, at most, the 503s of an outage are logged: one line for
/// each window, counting the requests refused, not one per request.
const UNAVAILABLE_LOG_EVERY: Duration = Duration::from_secs(10);

/// A 503 means "try again": the database is restarting or its disk is full,
/// which its own log lines explain, so it is a warning, and one line per
/// window counts them. Other server errors stay errors, one per request.
#[derive(Clone, Default)]
struct FailureLog {
    unavailable: Arc<std::sync::Mutex<UnavailableTally>>,
}

#[derive(Default)]
struct UnavailableTally {
    /// When the last line was written.
    said_at: Option<std::time::Instant>,
    /// 503s answered since.
    unsaid: u64,
}

impl UnavailableTally {
    /// Counts one 503; answers how many to report when a line is due.
    fn refused(&mut self, now: std::time::Instant) -> Option<u64> {
        self.unsaid += 1;
        if self
            .said_at
            .is_some_and(|at| now.duration_since(at) < UNAVAILABLE_LOG_EVERY)
        {
            return None;
        }
        self.said_at = Some(now);
        Some(std::mem::take(&mut self.unsaid))
    }
}

impl tower_http::trace::OnFailure<ServerErrorsFailureClass> for FailureLog {
    fn on_failure(&mut self, class: ServerErrorsFailureClass, latency: Duration, _span: &tracing::Span) {
        let latency_ms = latency.as_millis();
        match class {
            ServerErrorsFailureClass::StatusCode(StatusCode::SERVICE_UNAVAILABLE) => {
                let due = self
                    .unavailable
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .refused(std::time::Instant::now());
                if let Some(refused) = due {
                    tracing::warn!(classification = %class, latency_ms, refused, "response failed");
                }
            }
            _ => tracing::error!(classification = %class, latency_ms, "response failed"),
        }
    }
}

#[cfg(test)]
mod failure_log_tests {
    use super::*;

    #[test]
    fn an_outage_is_logged_once_a_window_with_what_was_refused_since() {
        let mut tally = UnavailableTally::default();
        let start = std::time::Instant::now();
        assert_eq!(tally.refused(start), Some(1), "the first 503 is said at once");
        for n in 1..=3 {
            assert_eq!(tally.refused(start + Duration::from_secs(n)), None);
        }
        let later = start + UNAVAILABLE_LOG_EVERY + Duration::from_millis(1);
        assert_eq!(
            tally.refused(later),
            Some(4),
            "the next line counts every 503 since the last"
        );
        assert_eq!(tally.refused(later + Duration::from_secs(1)), None);
    }
}
