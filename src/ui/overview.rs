//! The operator's first page: deliveries across every application, the
//! queue, the endpoints in trouble, the broker sources and the server.

use axum::extract::State;
use axum::response::Response;

use super::chart::traffic_chart;
use super::render::{self, Layout};
use super::session::Viewer;
use super::{UiError, UiResult};
use crate::service::AppState;
use crate::service::overview::{TROUBLED_SHOWN, overview};

pub async fn page(State(state): State<AppState>, viewer: Viewer) -> UiResult<Response> {
    if !viewer.is_admin() {
        return Err(UiError::NotFound);
    }
    let o = overview(&state).await?;
    let hour = traffic_chart(
        o.last_hour.periods,
        o.last_hour.period_seconds,
        &o.last_hour.buckets,
        "hour",
    );
    let day = traffic_chart(
        o.last_day.periods,
        o.last_day.period_seconds,
        &o.last_day.buckets,
        "24 hours",
    );
    let more_troubled = o.troubled.len() >= TROUBLED_SHOWN as usize;
    Ok(render::ok(
        "overview.html",
        Layout::for_viewer(&viewer, "Overview"),
        minijinja::context! {
            hour, day,
            queued => o.queued, lag_seconds => o.lag_seconds,
            healthy => o.endpoints_healthy, failing => o.endpoints_failing, disabled => o.endpoints_disabled,
            troubled => o.troubled, more_troubled,
            sources => o.sources, version => o.version, storage => o.storage,
        },
    ))
}
