//! Finding a message by its id or eventId from any page, and the message's
//! page: its payload and its attempts to every endpoint.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::apps::open_app;
use super::render::{self, Layout};
use super::session::Viewer;
use super::{UiError, UiResult};
use crate::service::AppState;
use crate::service::attempt::list_by_msg;
use crate::service::attempted::list_attempted_destinations;
use crate::service::input::QueryParams;
use crate::service::message::{find_anywhere, get_message};

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct FindQuery {
    q: String,
}

/// One match leads straight to its message; several (an eventId used by
/// more than one application) are listed; none says so.
pub async fn find(State(state): State<AppState>, viewer: Viewer, Query(query): Query<FindQuery>) -> UiResult<Response> {
    if !viewer.is_admin() {
        return Err(UiError::NotFound);
    }
    let found = find_anywhere(&state, &query.q).await?;
    if let [one] = found.as_slice() {
        return Ok(Redirect::to(&format!("/ui/app/{}/msg/{}", one.app_id, one.message.id)).into_response());
    }
    Ok(render::ok(
        "find.html",
        Layout::for_viewer(&viewer, "Find a message"),
        minijinja::context! { found, q => query.q.trim() },
    ))
}

/// Most attempts shown on a message's page.
const ATTEMPTS_SHOWN: &str = "250";

pub async fn message(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((app, msg)): Path<(String, String)>,
) -> UiResult<Response> {
    // Every endpoint's attempts are shown: an operator's page.
    if !viewer.is_admin() {
        return Err(UiError::NotFound);
    }
    let app = open_app(&state, &viewer, &app).await?;
    let message = get_message(
        &state,
        &app.id,
        &msg,
        &QueryParams::from_pairs([("with_content", "true")]),
    )
    .await?;
    let destinations = list_attempted_destinations(
        &state,
        &app.id,
        &message.id,
        &QueryParams::from_pairs([("limit", "250")]),
    )
    .await?
    .data;
    let attempts = list_by_msg(
        &state,
        &app.id,
        &message.id,
        &QueryParams::from_pairs([("limit", ATTEMPTS_SHOWN)]),
    )
    .await?
    .data;
    let payload = serde_json::from_str::<serde_json::Value>(message.payload.get())
        .map(|v| serde_json::to_string_pretty(&v).unwrap_or_default())
        .unwrap_or_default();
    Ok(render::ok(
        "message.html",
        Layout::for_viewer(&viewer, format!("Message {}", message.id)),
        minijinja::context! { app, message, payload, destinations, attempts },
    ))
}
