//! The event catalog kept by an operator: event types made and changed
//! (description, group, schema, examples), archived and restored, through
//! the same workflows as `/api/v1/event-type`.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::forms::field_errors;
use super::render::{self, Layout};
use super::session::{Submitted, Viewer};
use super::{UiError, UiResult, status_of};
use crate::domain::catalog::latest_schema;
use crate::service::event_type::{
    EventTypeIn, EventTypeOut, EventTypePatch, compose_schemas, create_event_type, get_event_type, patch_event_type,
};
use crate::service::{AppState, ServiceError};

/// The event type form, as posted.
#[derive(Deserialize, Serialize, Default)]
#[serde(default)]
pub struct EventTypeForm {
    /// Only when creating: a name cannot change.
    pub name: String,
    pub description: String,
    pub group_name: String,
    /// The newest schema, as JSON text; empty for none.
    pub schema: String,
    /// An example to add, as JSON text; empty for none.
    pub example: String,
}

fn operator(viewer: &Viewer) -> UiResult<()> {
    if viewer.is_admin() {
        Ok(())
    } else {
        Err(UiError::NotFound)
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// JSON text of a form field, refused at that field when it does not parse.
fn json_field(field: &str, text: &str) -> Result<Option<Value>, ServiceError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    serde_json::from_str(text)
        .map(Some)
        .map_err(|e| ServiceError::body_field(&[field], format!("is not JSON: {e}")))
}

/// The workflow's field names as this form's: a schema's problems belong
/// to the schema box, the group's to the group box.
fn form_errors(e: &ServiceError) -> BTreeMap<String, String> {
    field_errors(e)
        .into_iter()
        .map(|(field, msg)| {
            let field = match field.as_str() {
                "schemas" => "schema".to_owned(),
                "groupName" => "group_name".to_owned(),
                _ => field,
            };
            (field, msg)
        })
        .collect()
}

/// The newest schema without its examples (shown apart), and the examples.
fn schema_and_examples(et: &EventTypeOut) -> (String, Vec<String>) {
    let Some(schema) = et.schemas.as_ref().and_then(latest_schema) else {
        return (String::new(), Vec::new());
    };
    let examples = schema
        .get("examples")
        .and_then(Value::as_array)
        .map(|list| list.iter().map(pretty).collect())
        .unwrap_or_default();
    let mut bare = schema.clone();
    if let Some(o) = bare.as_object_mut() {
        o.remove("examples");
    }
    (pretty(&bare), examples)
}

fn form_page(
    viewer: &Viewer,
    status: StatusCode,
    event_type: Option<&EventTypeOut>,
    form: &EventTypeForm,
    errors: BTreeMap<String, String>,
    notice: &str,
) -> Response {
    let (title, examples) = match event_type {
        Some(et) => (format!("Event type {}", et.name), schema_and_examples(et).1),
        None => ("New event type".to_owned(), Vec::new()),
    };
    render::page(
        status,
        "event_type_form.html",
        Layout::for_viewer(viewer, title),
        minijinja::context! { event_type, form, errors, examples, notice },
    )
}

pub async fn new_form(viewer: Viewer) -> UiResult<Response> {
    operator(&viewer)?;
    Ok(form_page(
        &viewer,
        StatusCode::OK,
        None,
        &EventTypeForm::default(),
        BTreeMap::new(),
        "",
    ))
}

pub async fn create(
    State(state): State<AppState>,
    Submitted { viewer, form }: Submitted<EventTypeForm>,
) -> UiResult<Response> {
    operator(&viewer)?;
    let created = async {
        let (schema, example) = schema_and_example(&form)?;
        let input = EventTypeIn {
            name: form.name.trim().to_owned(),
            description: form.description.trim().to_owned(),
            group_name: Some(form.group_name.trim().to_owned()).filter(|g| !g.is_empty()),
            schemas: compose_schemas(None, schema, example)?,
            ..Default::default()
        };
        create_event_type(&state, input).await
    }
    .await;
    match created {
        Ok(et) => Ok(Redirect::to(&format!("{}?notice=created", edit_path(&et.name))).into_response()),
        Err(e) => Ok(form_page(&viewer, status_of(&e), None, &form, form_errors(&e), "")),
    }
}

/// Both fields' problems at once.
/// The form's schema and example as JSON, with the errors of both fields
/// when both are malformed.
fn schema_and_example(form: &EventTypeForm) -> Result<(Option<Value>, Option<Value>), ServiceError> {
    match (
        json_field("schemas", &form.schema),
        json_field("example", &form.example),
    ) {
        (Ok(s), Ok(e)) => Ok((s, e)),
        (Err(a), Err(b)) => Err(merge(a, b)),
        (Err(e), _) | (_, Err(e)) => Err(e),
    }
}

fn merge(a: ServiceError, b: ServiceError) -> ServiceError {
    match (a, b) {
        (ServiceError::Validation(mut x), ServiceError::Validation(y)) => {
            x.extend(y);
            ServiceError::Validation(x)
        }
        (a, _) => a,
    }
}

fn edit_path(name: &str) -> String {
    format!(
        "/ui/event-type/{}",
        url::form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>()
    )
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct Notice {
    notice: String,
}

pub async fn edit_form(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(name): Path<String>,
    axum::extract::Query(q): axum::extract::Query<Notice>,
) -> UiResult<Response> {
    operator(&viewer)?;
    let et = get_event_type(&state, &name).await?;
    let form = EventTypeForm {
        name: et.name.clone(),
        description: et.description.clone(),
        group_name: et.group_name.clone().unwrap_or_default(),
        schema: schema_and_examples(&et).0,
        example: String::new(),
    };
    Ok(form_page(
        &viewer,
        StatusCode::OK,
        Some(&et),
        &form,
        BTreeMap::new(),
        &q.notice,
    ))
}

pub async fn save(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Submitted { viewer, form }: Submitted<EventTypeForm>,
) -> UiResult<Response> {
    operator(&viewer)?;
    let et = get_event_type(&state, &name).await?;
    let saved = async {
        let (schema, example) = schema_and_example(&form)?;
        let patch = EventTypePatch {
            description: Some(form.description.trim().to_owned()),
            group_name: Some(Some(form.group_name.trim().to_owned()).filter(|g| !g.is_empty())),
            schemas: Some(compose_schemas(et.schemas.as_ref(), schema, example)?),
            ..Default::default()
        };
        patch_event_type(&state, &et.name, patch).await
    }
    .await;
    match saved {
        Ok(et) => Ok(Redirect::to(&format!("{}?notice=saved", edit_path(&et.name))).into_response()),
        Err(e) => Ok(form_page(&viewer, status_of(&e), Some(&et), &form, form_errors(&e), "")),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ArchiveForm {
    /// `archive` or `restore`.
    to: String,
}

pub async fn archive(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Submitted { viewer, form }: Submitted<ArchiveForm>,
) -> UiResult<Response> {
    operator(&viewer)?;
    let archived = match form.to.as_str() {
        "archive" => true,
        "restore" => false,
        other => return Err(UiError::BadForm(format!("'{other}' is neither archive nor restore"))),
    };
    let patch = EventTypePatch {
        archived: Some(archived),
        ..Default::default()
    };
    let et = patch_event_type(&state, &name, patch).await?;
    let notice = if archived { "archived" } else { "restored" };
    Ok(Redirect::to(&format!("{}?notice={notice}", edit_path(&et.name))).into_response())
}
