//! `idempotency-key`: a POST repeated with the same key within 24 h gets the
//! first answer back and does nothing again. The SDKs send one on every POST
//! and reuse it when they retry, so this is what makes their retries safe.

use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::auth::Principal;
use super::error::ApiError;
use crate::service::AppState;
use crate::store::IdempotencyState;

const TTL: Duration = crate::service::retention::IDEMPOTENCY_TTL;
/// Answers are small JSON documents; anything bigger is not replayed.
const MAX_STORED_BODY: usize = 1024 * 1024;

pub async fn idempotent_posts(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(key) = key_of(&req) else {
        return next.run(req).await;
    };
    match handle(&state, key, req, next).await {
        Ok(resp) | Err(resp) => resp,
    }
}

fn key_of(req: &Request) -> Option<String> {
    if req.method() != Method::POST {
        return None;
    }
    let key = req.headers().get("idempotency-key")?.to_str().ok()?;
    // Scoped to the caller and the route, so keys never collide across them.
    let principal = req
        .extensions()
        .get::<Principal>()
        .map(|p| p.token_hash)
        .unwrap_or_default();
    let mut h = Sha256::new();
    h.update(principal);
    h.update(req.uri().path().as_bytes());
    h.update(b"\n");
    h.update(key.as_bytes());
    Some(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

async fn handle(state: &AppState, key: String, req: Request, next: Next) -> Result<Response, Response> {
    let store = &state.store;
    match store
        .idempotency_begin(&key, state.clock.now(), TTL)
        .await
        .map_err(|e| ApiError::from(e).into_response())?
    {
        IdempotencyState::Done { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let mut resp = (status, body).into_response();
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            return Ok(resp);
        }
        IdempotencyState::InProgress => {
            return Err(ApiError::Conflict(
                "a request with this idempotency-key is still being processed; retry shortly".to_owned(),
            )
            .into_response());
        }
        IdempotencyState::New => {}
    }

    let resp = next.run(req).await;
    let (parts, body) = resp.into_parts();
    let bytes = match to_bytes(body, MAX_STORED_BODY).await {
        Ok(b) => b,
        Err(_) => {
            let _ = store.idempotency_abandon(&key).await;
            return Err(ApiError::Internal("response too large to store for idempotency".into()).into_response());
        }
    };
    // Server errors are not remembered: the client's retry should run again.
    let outcome = if parts.status.is_server_error() {
        store.idempotency_abandon(&key).await
    } else {
        store.idempotency_finish(&key, parts.status.as_u16(), &bytes).await
    };
    if let Err(e) = outcome {
        tracing::error!(error = %e, "recording an idempotency key failed");
    }
    Ok(Response::from_parts(parts, Body::from(bytes)))
}
