//! The operator's list of applications, and portal links for customers.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;

use super::endpoints::app_page_with;
use super::render::{self, Layout};
use super::session::{Submitted, Viewer};
use super::{UiError, UiResult};
use crate::api::app::{ApplicationOut, get_app, list_apps};
use crate::api::auth::Caller;
use crate::api::extract::QueryParams;
use crate::service::AppState;

const PAGE_SIZE: &str = "50";

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct AppsQuery {
    q: String,
    iterator: String,
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
    let Json(apps) = list_apps(State(state), Caller(viewer.scope.clone()), params).await?;
    Ok(render::ok(
        "apps.html",
        Layout::for_viewer(&viewer, "Applications"),
        minijinja::context! { apps, q => query.q },
    ))
}

/// The application at `app` (id or uid), if the viewer may open it.
pub async fn open_app(state: &AppState, viewer: &Viewer, app: &str) -> UiResult<ApplicationOut> {
    let Json(found) = get_app(State(state.clone()), Path(app.to_owned())).await?;
    if viewer.may_open_app(&found.id) {
        Ok(found)
    } else {
        Err(UiError::NotFound)
    }
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
    let body = match owner {
        "" => serde_json::json!({}),
        owner => serde_json::json!({ "ownerId": owner }),
    };
    let link = crate::api::portal::app_portal_access(
        State(state.clone()),
        Caller(viewer.scope.clone()),
        Path(app.clone()),
        headers,
        axum::body::Bytes::from(body.to_string()),
    )
    .await;
    let extra = match link {
        Ok(Json(out)) => minijinja::context! { portal_link => out.url, portal_owner => owner },
        Err(e) => minijinja::context! { portal_error => super::forms::describe(&e) },
    };
    app_page_with(&state, &viewer, &app, "", extra).await
}
