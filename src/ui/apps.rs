//! The operator's list of applications, an application's page (its
//! endpoints with health and activity), and portal links for customers.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::Duration;
use minijinja::Value;
use serde::Deserialize;

use super::chart::{PERIODS, chart};
use super::render::{self, Layout};
use super::session::{Submitted, Viewer};
use super::{UiError, UiResult};
use crate::domain::ids::EndpointId;
use crate::service::AppState;
use crate::service::app::{ApplicationOut, get_app, list_apps};
use crate::service::endpoint::list_endpoints;
use crate::service::input::QueryParams;
use crate::service::portal::{AppPortalAccessIn, RequestOrigin, portal_access};

const PAGE_SIZE: &str = "50";

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct AppsQuery {
    q: String,
    iterator: String,
    notice: String,
}

pub async fn list(State(state): State<AppState>, viewer: Viewer, Query(query): Query<AppsQuery>) -> UiResult<Response> {
    if !viewer.is_admin() {
        return Err(UiError::NotFound);
    }
    let params = QueryParams::from_pairs([
        ("limit", PAGE_SIZE),
        ("search", query.q.as_str()),
        ("iterator", query.iterator.as_str()),
    ]);
    let apps = list_apps(&state, &viewer.scope, &params).await?;
    Ok(render::ok(
        "apps.html",
        Layout::for_viewer(&viewer, "Applications"),
        minijinja::context! { apps, q => query.q, notice => query.notice },
    ))
}

/// The application at `app` (id or uid), if the viewer may open it.
pub async fn open_app(state: &AppState, viewer: &Viewer, app: &str) -> UiResult<ApplicationOut> {
    let found = get_app(state, app).await?;
    if viewer.may_open_app(&found.id) {
        Ok(found)
    } else {
        Err(UiError::NotFound)
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct Notice {
    notice: String,
    iterator: String,
}

pub async fn app_page(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(app): Path<String>,
    Query(q): Query<Notice>,
) -> UiResult<Response> {
    app_page_with(
        &state,
        &viewer,
        &app,
        &q.iterator,
        minijinja::context! { notice => q.notice },
    )
    .await
}

/// Most endpoints listed on one page.
const ENDPOINT_PAGE: &str = "100";

/// The application's page from endpoint `iterator` on, with `extra` values
/// (a notice, a new portal link) for its template.
async fn app_page_with(
    state: &AppState,
    viewer: &Viewer,
    app: &str,
    iterator: &str,
    extra: Value,
) -> UiResult<Response> {
    let app = open_app(state, viewer, app).await?;
    let params = QueryParams::from_pairs([
        ("limit", ENDPOINT_PAGE),
        ("iterator", iterator),
        ("owner_id", viewer.owner().unwrap_or_default()),
    ]);
    let page = list_endpoints(state, &viewer.scope, &app.id, &params).await?;
    let endpoints = page.data;
    let ids: Vec<EndpointId> = endpoints
        .iter()
        .map(|e| EndpointId::from_trusted(e.id.clone()))
        .collect();
    let since = state.clock.now() - Duration::hours(PERIODS);
    let activity = state
        .store
        .endpoint_activity(&ids, since, std::time::Duration::from_secs(3600))
        .await
        .map_err(crate::service::ServiceError::from)?;
    let charts: BTreeMap<&str, _> = endpoints
        .iter()
        .map(|e| {
            let mine: Vec<_> = activity.iter().filter(|b| b.endpoint_id.as_str() == e.id).collect();
            (e.id.as_str(), chart(&mine))
        })
        .collect();
    let next = (!page.done).then_some(page.iterator).flatten();
    Ok(render::ok(
        "app.html",
        Layout::for_viewer(viewer, app.name.clone()),
        minijinja::context! { app, endpoints, charts, next, allow_insecure_tls => state.config.allow_insecure_tls, ..extra },
    ))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PortalLinkForm {
    owner_id: String,
}

/// An operator makes a portal link to hand to a customer.
pub async fn portal_link(
    State(state): State<AppState>,
    Path(app): Path<String>,
    headers: HeaderMap,
    Submitted { viewer, form }: Submitted<PortalLinkForm>,
) -> UiResult<Response> {
    if !viewer.is_admin() {
        return Err(UiError::NotFound);
    }
    let owner = form.owner_id.trim();
    let input = AppPortalAccessIn {
        owner_id: (!owner.is_empty()).then(|| owner.to_owned()),
        ..Default::default()
    };
    let origin = RequestOrigin::from_headers(&headers);
    let link = portal_access(&state, &viewer.scope, &app, input, &origin).await;
    let extra = match link {
        Ok(out) => minijinja::context! { portal_link => out.url, portal_owner => owner },
        Err(e) => minijinja::context! { portal_error => super::forms::describe(&e) },
    };
    app_page_with(&state, &viewer, &app, "", extra).await
}
