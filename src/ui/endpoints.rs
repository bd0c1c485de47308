//! One endpoint of an application: the create and edit form, its page, the
//! switch, the secret, test events and deletion.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Duration;
use minijinja::Value;
use serde::Deserialize;

use super::apps::open_app;
use super::catalog::groups;
use super::chart::PERIODS;
use super::forms::{EndpointForm, describe, field_errors};
use super::render::{self, Layout};
use super::session::{Submitted, Viewer};
use super::{UiError, UiResult, status_of};
use crate::service::app::ApplicationOut;
use crate::service::endpoint::{self, EndpointOut, EndpointSecretRotateIn};
use crate::service::input::{QueryParams, parse_json};
use crate::service::recovery::{EventExampleIn, send_example, stats};
use crate::service::{AppState, ServiceError};

/// The endpoint at `ep` of application `app`, if the viewer may see it.
pub async fn open_endpoint(
    state: &AppState,
    viewer: &Viewer,
    app: &str,
    ep: &str,
) -> UiResult<(ApplicationOut, EndpointOut)> {
    let app = open_app(state, viewer, app).await?;
    let found = endpoint::get_endpoint(state, &app.id, ep).await?;
    if viewer.may_see_endpoint(found.owner_id.as_deref()) {
        Ok((app, found))
    } else {
        Err(UiError::NotFound)
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct Notice {
    notice: String,
}

/// The create and edit form, with the catalog as a tree to subscribe from.
async fn form_page(
    state: &AppState,
    viewer: &Viewer,
    status: StatusCode,
    app: &ApplicationOut,
    endpoint: Option<&EndpointOut>,
    form: &EndpointForm,
    errors: BTreeMap<String, String>,
) -> UiResult<Response> {
    let groups = groups(state).await?;
    let title = if endpoint.is_some() {
        "Edit endpoint"
    } else {
        "New endpoint"
    };
    let profiles: Vec<&str> = state.config.profiles.names().collect();
    Ok(render::page(
        status,
        "endpoint_form.html",
        Layout::for_viewer(viewer, title),
        minijinja::context! { app, endpoint, form, errors, groups, profiles, allow_insecure_tls => state.config.allow_insecure_tls },
    ))
}

pub async fn new_form(State(state): State<AppState>, viewer: Viewer, Path(app): Path<String>) -> UiResult<Response> {
    let app = open_app(&state, &viewer, &app).await?;
    let form = EndpointForm {
        events_mode: "all".into(),
        secret_mode: "generate".into(),
        format: "raw".into(),
        while_disabled: "drop".into(),
        ordering: "parallel".into(),
        ..Default::default()
    };
    form_page(&state, &viewer, StatusCode::OK, &app, None, &form, BTreeMap::new()).await
}

pub async fn create(
    State(state): State<AppState>,
    Path(app): Path<String>,
    Submitted { viewer, form }: Submitted<EndpointForm>,
) -> UiResult<Response> {
    let app = open_app(&state, &viewer, &app).await?;
    let created = async {
        let input = parse_json(&serde_json::to_vec(&form.to_json(&viewer, false)?).unwrap_or_default())?;
        endpoint::create_endpoint(&state, &viewer.scope, &app.id, input).await
    }
    .await;
    match created {
        Ok(ep) => Ok(secret_page(&viewer, &app, &ep, ep.secret.clone(), "created")),
        Err(e) => form_page(&state, &viewer, status_of(&e), &app, None, &form, field_errors(&e)).await,
    }
}

fn secret_page(viewer: &Viewer, app: &ApplicationOut, ep: &EndpointOut, secret: Option<String>, why: &str) -> Response {
    render::ok(
        "secret.html",
        Layout::for_viewer(viewer, "Signing secret"),
        minijinja::context! { app, endpoint => ep, secret, why },
    )
}

pub async fn show(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((app, ep)): Path<(String, String)>,
    Query(q): Query<Notice>,
) -> UiResult<Response> {
    show_with(&state, &viewer, &app, &ep, minijinja::context! { notice => q.notice }).await
}

async fn show_with(state: &AppState, viewer: &Viewer, app: &str, ep: &str, extra: Value) -> UiResult<Response> {
    let (app, ep) = open_endpoint(state, viewer, app, ep).await?;
    let since = (state.clock.now() - Duration::hours(PERIODS)).to_rfc3339();
    let counts = stats(state, &app.id, &ep.id, &QueryParams::from_pairs([("since", since)])).await?;
    // A test event can be any type the endpoint receives.
    let mut groups = groups(state).await?;
    if let Some(wanted) = &ep.filter_types {
        for g in &mut groups {
            g.types.retain(|t| wanted.contains(&t.event_type.name));
        }
        groups.retain(|g| !g.types.is_empty());
    }
    Ok(render::ok(
        "endpoint.html",
        Layout::for_viewer(viewer, ep_title(&ep)),
        minijinja::context! { app, endpoint => ep, counts, groups, allow_insecure_tls => state.config.allow_insecure_tls, ..extra },
    ))
}

fn ep_title(ep: &EndpointOut) -> String {
    if ep.description.is_empty() {
        ep.url.clone()
    } else {
        ep.description.clone()
    }
}

pub async fn edit_form(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((app, ep)): Path<(String, String)>,
) -> UiResult<Response> {
    let (app, ep) = open_endpoint(&state, &viewer, &app, &ep).await?;
    let form = EndpointForm::from(&ep);
    form_page(&state, &viewer, StatusCode::OK, &app, Some(&ep), &form, BTreeMap::new()).await
}

impl From<&EndpointOut> for EndpointForm {
    fn from(ep: &EndpointOut) -> Self {
        Self {
            description: ep.description.clone(),
            url: ep.url.clone(),
            events_mode: if ep.filter_types.is_some() { "some" } else { "all" }.into(),
            events: ep.filter_types.clone().unwrap_or_default(),
            channels: ep.channels.clone().unwrap_or_default().join(", "),
            owner_id: ep.owner_id.clone().unwrap_or_default(),
            profile: ep.profile.clone().unwrap_or_default(),
            format: ep.format.clone(),
            secret_mode: String::new(),
            secret: String::new(),
            rate_limit: ep.rate_limit.map(|r| r.to_string()).unwrap_or_default(),
            verify_token: ep.verify_token.clone().unwrap_or_default(),
            while_disabled: ep.while_disabled.clone(),
            tls_switch: String::new(),
            skip_tls_verify: if ep.tls_verify { "" } else { "on" }.into(),
            ordering: ep.ordering.clone(),
        }
    }
}

pub async fn save(
    State(state): State<AppState>,
    Path((app, ep)): Path<(String, String)>,
    Submitted { viewer, form }: Submitted<EndpointForm>,
) -> UiResult<Response> {
    let (app, ep) = open_endpoint(&state, &viewer, &app, &ep).await?;
    let saved = patch(&state, &viewer, &app, &ep, form.to_json(&viewer, true)).await;
    match saved {
        Ok(_) => Ok(Redirect::to(&format!("/ui/app/{}/endpoint/{}?notice=saved", app.id, ep.id)).into_response()),
        Err(e) => form_page(&state, &viewer, status_of(&e), &app, Some(&ep), &form, field_errors(&e)).await,
    }
}

async fn patch(
    state: &AppState,
    viewer: &Viewer,
    app: &ApplicationOut,
    ep: &EndpointOut,
    body: Result<serde_json::Value, ServiceError>,
) -> Result<EndpointOut, ServiceError> {
    let input = parse_json(&serde_json::to_vec(&body?).unwrap_or_default())?;
    endpoint::patch_endpoint(state, &viewer.scope, &app.id, &ep.id, input).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SwitchForm {
    /// `on` or `off`.
    to: String,
}

/// Turns the endpoint on or off. Turning it on runs the endpoint check.
pub async fn switch(
    State(state): State<AppState>,
    Path((app, ep)): Path<(String, String)>,
    Submitted { viewer, form }: Submitted<SwitchForm>,
) -> UiResult<Response> {
    let (app, ep) = open_endpoint(&state, &viewer, &app, &ep).await?;
    let disabled = form.to != "on";
    let notice = if disabled { "disabled" } else { "enabled" };
    let outcome = patch(
        &state,
        &viewer,
        &app,
        &ep,
        Ok(serde_json::json!({ "disabled": disabled })),
    )
    .await
    .map(|_| format!("/ui/app/{}/endpoint/{}?notice={notice}", app.id, ep.id));
    after_action(&state, &viewer, &app, &ep, outcome).await
}

/// Goes where a successful action leads, or back to the endpoint's page
/// saying why the action failed.
async fn after_action(
    state: &AppState,
    viewer: &Viewer,
    app: &ApplicationOut,
    ep: &EndpointOut,
    outcome: Result<String, ServiceError>,
) -> UiResult<Response> {
    match outcome {
        Ok(target) => Ok(Redirect::to(&target).into_response()),
        Err(e) => {
            show_with(
                state,
                viewer,
                &app.id,
                &ep.id,
                minijinja::context! { error => describe(&e) },
            )
            .await
        }
    }
}

pub async fn confirm_delete(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((app, ep)): Path<(String, String)>,
) -> UiResult<Response> {
    let (app, ep) = open_endpoint(&state, &viewer, &app, &ep).await?;
    Ok(render::ok(
        "delete.html",
        Layout::for_viewer(&viewer, "Delete endpoint"),
        minijinja::context! { app, endpoint => ep },
    ))
}

pub async fn delete(
    State(state): State<AppState>,
    Path((app, ep)): Path<(String, String)>,
    Submitted { viewer, .. }: Submitted<serde::de::IgnoredAny>,
) -> UiResult<Response> {
    let (app, ep) = open_endpoint(&state, &viewer, &app, &ep).await?;
    endpoint::delete_endpoint(&state, &app.id, &ep.id).await?;
    Ok(Redirect::to(&format!("/ui/app/{}?notice=deleted", app.id)).into_response())
}

/// Shows the secret where the profile allows it; otherwise says why not.
pub async fn reveal_secret(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((app, ep)): Path<(String, String)>,
) -> UiResult<Response> {
    let (app, ep) = open_endpoint(&state, &viewer, &app, &ep).await?;
    match endpoint::get_secret(&state, &app.id, &ep.id).await {
        Ok(s) => Ok(secret_page(&viewer, &app, &ep, Some(s.key), "revealed")),
        Err(ServiceError::Forbidden(why)) => Ok(render::ok(
            "secret.html",
            Layout::for_viewer(&viewer, "Signing secret"),
            minijinja::context! { app, endpoint => ep, refused => why },
        )),
        Err(e) => Err(e.into()),
    }
}

pub async fn rotate_secret(
    State(state): State<AppState>,
    Path((app, ep)): Path<(String, String)>,
    Submitted { viewer, .. }: Submitted<serde::de::IgnoredAny>,
) -> UiResult<Response> {
    let (app, ep) = open_endpoint(&state, &viewer, &app, &ep).await?;
    let s = endpoint::rotate_secret(&state, &app.id, &ep.id, EndpointSecretRotateIn::default()).await?;
    Ok(secret_page(&viewer, &app, &ep, Some(s.key), "rotated"))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct TestForm {
    event_type: String,
}

/// Sends the event type's example to this endpoint, then shows the history.
pub async fn send_test(
    State(state): State<AppState>,
    Path((app, ep)): Path<(String, String)>,
    Submitted { viewer, form }: Submitted<TestForm>,
) -> UiResult<Response> {
    let (app, ep) = open_endpoint(&state, &viewer, &app, &ep).await?;
    let input = EventExampleIn {
        event_type: form.event_type,
        example_index: None,
    };
    let outcome = send_example(&state, &app.id, &ep.id, input).await.map(|msg| {
        format!(
            "/ui/app/{}/endpoint/{}/history?notice=test-sent&msg={}",
            app.id, ep.id, msg.id
        )
    });
    after_action(&state, &viewer, &app, &ep, outcome).await
}
