//! Applications made, changed and deleted by an operator, through the same
//! workflows as `POST/PATCH/DELETE /api/v1/app`.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};

use super::apps::open_app;
use super::forms::field_errors;
use super::render::{self, Layout};
use super::session::{Submitted, Viewer};
use super::{UiError, UiResult, status_of};
use crate::service::app::{ApplicationIn, ApplicationOut, ApplicationPatch, create_app, delete_app, patch_app};
use crate::service::endpoint::list_endpoints;
use crate::service::input::QueryParams;
use crate::service::{AppState, ServiceError};
use crate::store::Metadata;

/// The application form, as posted.
#[derive(Deserialize, Serialize, Default)]
#[serde(default)]
pub struct AppForm {
    pub name: String,
    pub uid: String,
    pub profile: String,
    /// One `key=value` a line.
    pub metadata: String,
}

impl AppForm {
    fn from_app(app: &ApplicationOut) -> Self {
        Self {
            name: app.name.clone(),
            uid: app.uid.clone().unwrap_or_default(),
            profile: app.profile.clone().unwrap_or_default(),
            metadata: app
                .metadata
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    fn metadata(&self) -> Result<Metadata, ServiceError> {
        let mut out = Metadata::new();
        for (n, line) in self.metadata.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(ServiceError::body_field(
                    &["metadata"],
                    format!("line {} is not key=value", n + 1),
                ));
            };
            out.insert(key.trim().to_owned(), value.trim().to_owned());
        }
        Ok(out)
    }

    fn text(s: &str) -> Option<String> {
        Some(s.trim()).filter(|s| !s.is_empty()).map(str::to_owned)
    }
}

fn operator(viewer: &Viewer) -> UiResult<()> {
    if viewer.is_admin() {
        Ok(())
    } else {
        Err(UiError::NotFound)
    }
}

fn form_page(
    state: &AppState,
    viewer: &Viewer,
    status: StatusCode,
    app: Option<&ApplicationOut>,
    form: &AppForm,
    errors: BTreeMap<String, String>,
) -> Response {
    let title = if app.is_some() {
        "Edit application"
    } else {
        "New application"
    };
    let profiles: Vec<&str> = state.config.profiles.names().collect();
    render::page(
        status,
        "app_form.html",
        Layout::for_viewer(viewer, title),
        minijinja::context! { app, form, errors, profiles },
    )
}

pub async fn new_form(State(state): State<AppState>, viewer: Viewer) -> UiResult<Response> {
    operator(&viewer)?;
    Ok(form_page(
        &state,
        &viewer,
        StatusCode::OK,
        None,
        &AppForm::default(),
        BTreeMap::new(),
    ))
}

pub async fn create(
    State(state): State<AppState>,
    Submitted { viewer, form }: Submitted<AppForm>,
) -> UiResult<Response> {
    operator(&viewer)?;
    let created = async {
        let input = ApplicationIn {
            name: form.name.trim().to_owned(),
            uid: AppForm::text(&form.uid),
            metadata: Some(form.metadata()?),
            profile: AppForm::text(&form.profile),
            ..Default::default()
        };
        create_app(&state, input, &QueryParams::from_pairs([("get_if_exists", "false")])).await
    }
    .await;
    match created {
        Ok((_, app)) => Ok(Redirect::to(&format!("/ui/app/{}?notice=created", app.id)).into_response()),
        Err(e) => Ok(form_page(&state, &viewer, status_of(&e), None, &form, field_errors(&e))),
    }
}

pub async fn edit_form(State(state): State<AppState>, viewer: Viewer, Path(app): Path<String>) -> UiResult<Response> {
    operator(&viewer)?;
    let app = open_app(&state, &viewer, &app).await?;
    let form = AppForm::from_app(&app);
    Ok(form_page(
        &state,
        &viewer,
        StatusCode::OK,
        Some(&app),
        &form,
        BTreeMap::new(),
    ))
}

pub async fn save(
    State(state): State<AppState>,
    Path(app): Path<String>,
    Submitted { viewer, form }: Submitted<AppForm>,
) -> UiResult<Response> {
    operator(&viewer)?;
    let app = open_app(&state, &viewer, &app).await?;
    let saved = async {
        let patch = ApplicationPatch {
            name: Some(form.name.trim().to_owned()),
            uid: Some(AppForm::text(&form.uid)),
            metadata: Some(form.metadata()?),
            profile: Some(AppForm::text(&form.profile)),
            ..Default::default()
        };
        patch_app(&state, &app.id, patch).await
    }
    .await;
    match saved {
        Ok(app) => Ok(Redirect::to(&format!("/ui/app/{}?notice=saved", app.id)).into_response()),
        Err(e) => Ok(form_page(
            &state,
            &viewer,
            status_of(&e),
            Some(&app),
            &form,
            field_errors(&e),
        )),
    }
}

/// Endpoints counted on the confirmation page, at most.
const COUNTED: u32 = 250;

pub async fn confirm_delete(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(app): Path<String>,
) -> UiResult<Response> {
    operator(&viewer)?;
    let app = open_app(&state, &viewer, &app).await?;
    let limit = COUNTED.to_string();
    let endpoints = list_endpoints(
        &state,
        &viewer.scope,
        &app.id,
        &QueryParams::from_pairs([("limit", limit.as_str())]),
    )
    .await?;
    let more = !endpoints.done;
    Ok(render::ok(
        "app_delete.html",
        Layout::for_viewer(&viewer, "Delete application"),
        minijinja::context! { app, endpoints => endpoints.data.len(), more },
    ))
}

/// Deleting takes only the checked form: the confirmation page said what goes.
#[derive(Deserialize, Default)]
pub struct DeleteForm {}

pub async fn delete(
    State(state): State<AppState>,
    Path(app): Path<String>,
    Submitted {
        viewer,
        form: DeleteForm {},
    }: Submitted<DeleteForm>,
) -> UiResult<Response> {
    operator(&viewer)?;
    let app = open_app(&state, &viewer, &app).await?;
    delete_app(&state, &app.id).await?;
    Ok(Redirect::to("/ui/apps?notice=deleted").into_response())
}
