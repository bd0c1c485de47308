//! The event catalog: the names an application's messages may carry.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, QueryParams};
use super::list::{Paging, list_response};
use crate::domain::catalog::{PayloadSchema, group_of};
use crate::domain::validate::{Problems, check_name};
use crate::store::{EventType, Order};

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventTypeIn {
    pub name: String,
    pub description: String,
    pub archived: Option<bool>,
    pub deprecated: Option<bool>,
    /// JSON Schemas by version, e.g. `{"1": {...}}`.
    #[schema(value_type = Option<Object>)]
    pub schemas: Option<serde_json::Value>,
    pub group_name: Option<String>,
    pub feature_flags: Option<Vec<String>>,
    pub feature_flag: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventTypeUpdate {
    pub description: String,
    pub archived: Option<bool>,
    pub deprecated: Option<bool>,
    #[schema(value_type = Option<Object>)]
    pub schemas: Option<serde_json::Value>,
    pub group_name: Option<String>,
    pub feature_flags: Option<Vec<String>>,
    pub feature_flag: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventTypeOut {
    pub name: String,
    pub description: String,
    pub archived: bool,
    pub deprecated: bool,
    #[schema(value_type = Option<Object>)]
    pub schemas: Option<serde_json::Value>,
    pub group_name: Option<String>,
    pub feature_flags: Option<Vec<String>>,
    pub feature_flag: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

list_response!(ListResponseEventTypeOut, EventTypeOut);

impl From<EventType> for EventTypeOut {
    fn from(e: EventType) -> Self {
        Self {
            name: e.name,
            description: e.description,
            archived: e.archived,
            deprecated: e.deprecated,
            schemas: e.schemas,
            group_name: e.group_name,
            feature_flag: e.feature_flags.as_ref().and_then(|f| f.first().cloned()),
            feature_flags: e.feature_flags,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

fn check(name: &str, schemas: Option<&serde_json::Value>) -> ApiResult<()> {
    let mut p = Problems::default();
    check_name(&mut p, "name", name);
    match schemas {
        Some(serde_json::Value::Object(versions)) => {
            for (version, schema) in versions {
                if version.parse::<u64>().is_err() {
                    p.add(&["schemas", version], "versions are numbers, e.g. \"1\"");
                } else if let Err(e) = PayloadSchema::compile(schema) {
                    p.add(
                        &["schemas", version],
                        format!("is not a valid JSON Schema (draft 7): {e}"),
                    );
                }
            }
        }
        Some(_) => p.add(&["schemas"], "must be an object of JSON Schemas keyed by version"),
        None => {}
    }
    p.into_result().map_err(ApiError::Validation)
}

fn flags(many: Option<Vec<String>>, one: Option<String>) -> Option<Vec<String>> {
    many.or_else(|| one.map(|f| vec![f]))
}

#[utoipa::path(get, path = "/api/v1/event-type", tag = "Event Type",
    params(("limit" = Option<u32>, Query), ("iterator" = Option<String>, Query),
           ("include_archived" = Option<bool>, Query)),
    responses((status = 200, body = ListResponseEventTypeOut)))]
pub async fn list_event_types(
    State(state): State<AppState>,
    q: QueryParams,
) -> ApiResult<Json<ListResponseEventTypeOut>> {
    let paging = Paging::from_query(&q, Order::Ascending)?;
    let rows = state
        .store
        .list_event_types(&paging.page, q.bool("include_archived")?)
        .await?;
    let listed = paging.finish(rows.into_iter().map(EventTypeOut::from).collect(), |e| e.name.clone());
    Ok(Json(listed.into()))
}

#[utoipa::path(post, path = "/api/v1/event-type", tag = "Event Type", request_body = EventTypeIn,
    responses((status = 201, body = EventTypeOut), (status = 409, body = super::error::HttpErrorOut)))]
pub async fn create_event_type(
    State(state): State<AppState>,
    ApiJson(input): ApiJson<EventTypeIn>,
) -> ApiResult<(StatusCode, Json<EventTypeOut>)> {
    check(&input.name, input.schemas.as_ref())?;
    let group = group_of(&input.name).map(str::to_owned);
    let now = crate::store::now();
    let et = EventType {
        name: input.name,
        description: input.description,
        archived: input.archived.unwrap_or(false),
        deprecated: input.deprecated.unwrap_or(false),
        schemas: input.schemas,
        group_name: input.group_name.or(group),
        feature_flags: flags(input.feature_flags, input.feature_flag),
        created_at: now,
        updated_at: now,
    };
    state.store.create_event_type(&et).await?;
    Ok((StatusCode::CREATED, Json(et.into())))
}

#[utoipa::path(get, path = "/api/v1/event-type/{event_type_name}", tag = "Event Type",
    params(("event_type_name" = String, Path)),
    responses((status = 200, body = EventTypeOut), (status = 404, body = super::error::HttpErrorOut)))]
pub async fn get_event_type(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<EventTypeOut>> {
    let et = state
        .store
        .get_event_type(&name)
        .await?
        .ok_or(ApiError::NotFound("event type"))?;
    Ok(Json(et.into()))
}

/// Updates an event type, creating it when absent.
#[utoipa::path(put, path = "/api/v1/event-type/{event_type_name}", tag = "Event Type",
    params(("event_type_name" = String, Path)), request_body = EventTypeUpdate,
    responses((status = 200, body = EventTypeOut), (status = 201, body = EventTypeOut)))]
pub async fn put_event_type(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(input): ApiJson<EventTypeUpdate>,
) -> ApiResult<(StatusCode, Json<EventTypeOut>)> {
    check(&name, input.schemas.as_ref())?;
    let now = crate::store::now();
    let existing = state.store.get_event_type(&name).await?;
    let status = if existing.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let group = group_of(&name).map(str::to_owned);
    let et = EventType {
        name,
        description: input.description,
        archived: input.archived.unwrap_or(false),
        deprecated: input.deprecated.unwrap_or(false),
        schemas: input.schemas,
        group_name: input.group_name.or(group),
        feature_flags: flags(input.feature_flags, input.feature_flag),
        created_at: existing.map_or(now, |e| e.created_at),
        updated_at: now,
    };
    state.store.upsert_event_type(&et).await?;
    Ok((status, Json(et.into())))
}

/// Archives an event type (it stays usable, but leaves the catalog);
/// `expunge=true` deletes it for good.
#[utoipa::path(delete, path = "/api/v1/event-type/{event_type_name}", tag = "Event Type",
    params(("event_type_name" = String, Path), ("expunge" = Option<bool>, Query)),
    responses((status = 204, description = "Archived or deleted")))]
pub async fn delete_event_type(
    State(state): State<AppState>,
    Path(name): Path<String>,
    q: QueryParams,
) -> ApiResult<StatusCode> {
    let mut et = state
        .store
        .get_event_type(&name)
        .await?
        .ok_or(ApiError::NotFound("event type"))?;
    if q.bool("expunge")? {
        state.store.delete_event_type(&name).await?;
    } else {
        et.archived = true;
        et.updated_at = crate::store::now();
        state.store.upsert_event_type(&et).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}
