//! Liveness and readiness in one answer (the process is up and its store
//! answers), and the metrics.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::service::AppState;

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthOut {
    /// "ok", or "degraded" when the database does not answer.
    pub status: &'static str,
    pub database: &'static str,
    pub version: &'static str,
    /// Herald: how long messages and their history are kept
    /// (HERALD_HISTORY_RETENTION), e.g. "90d".
    pub history_retention: String,
    /// Herald: when the oldest message kept was created; absent when none
    /// is, or when the database does not answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_record: Option<DateTime<Utc>>,
    /// Herald: the database's size on disk in bytes; absent when the
    /// database does not answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_size_bytes: Option<i64>,
    /// Herald: the days the history is partitioned into (PostgreSQL);
    /// absent where it is not partitioned or the database does not answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partitions: Option<PartitionsOut>,
    /// Herald: operator emails by state (HERALD_NOTIFY_EMAIL); absent when
    /// the database does not answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator_email: Option<crate::service::operational::OperatorEmailCounts>,
    /// Herald: each broker source's connection state and counts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<crate::service::sources::SourceHealth>,
}

/// The daily partitions of the history.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartitionsOut {
    /// How many days have partitions, the days made ahead included.
    pub days: usize,
    /// The oldest day kept (UTC), e.g. "2026-08-29".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_day: Option<NaiveDate>,
    /// The newest day made ahead (UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest_day: Option<NaiveDate>,
}

#[utoipa::path(get, path = "/health", tag = "Health", security(),
    responses((status = 200, body = HealthOut), (status = 503, body = HealthOut)))]
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<HealthOut>) {
    let database_ok = state.store.get_setting("health-probe").await.is_ok();
    let (oldest_record, operator_email, storage) = if database_ok {
        (
            state.store.oldest_message_at().await.ok().flatten(),
            state.store.email_counts().await.ok().map(Into::into),
            state.store.storage().await.ok(),
        )
    } else {
        (None, None, None)
    };
    let (status, text, db) = if database_ok {
        (StatusCode::OK, "ok", "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "degraded", "unreachable")
    };
    (
        status,
        Json(HealthOut {
            status: text,
            database: db,
            version: env!("CARGO_PKG_VERSION"),
            history_retention: crate::config::format_window(state.config.history_retention),
            oldest_record,
            database_size_bytes: storage.as_ref().map(|s| s.bytes),
            partitions: storage.and_then(|s| s.partitions).map(|p| PartitionsOut {
                days: p.count,
                oldest_day: p.oldest,
                newest_day: p.newest,
            }),
            operator_email,
            sources: state.sources.health(),
        }),
    )
}

/// Svix's liveness probe: 204 while the process answers, whatever its store
/// does (a load balancer's check that must not flap with the database).
pub async fn ping() -> StatusCode {
    StatusCode::NO_CONTENT
}

/// Prometheus text exposition. Like `/health` it needs no token: it tells
/// counts, never contents.
pub async fn metrics(
    State(state): State<AppState>,
) -> Result<impl axum::response::IntoResponse, super::error::ApiError> {
    let text = state.metrics.render(state.store.as_ref()).await?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    ))
}
