//! The event catalog: the names an application's messages may carry.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::app::Created;
use super::error::{ServiceError, ServiceResult};
use super::input::{QueryParams, double_option};
use super::list::{Listed, Paging};
use crate::domain::catalog::{PayloadSchema, group_of};
use crate::domain::validate::{Problems, check_name};
use crate::store::{EventType, Order};

#[derive(Deserialize, ToSchema, Default)]
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

/// Changes the fields it names; `null` clears a nullable one.
#[derive(Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct EventTypePatch {
    pub description: Option<String>,
    pub archived: Option<bool>,
    pub deprecated: Option<bool>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Object>)]
    pub schemas: Option<Option<serde_json::Value>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub group_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Vec<String>>)]
    pub feature_flags: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub feature_flag: Option<Option<String>>,
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

fn check(name: &str, schemas: Option<&serde_json::Value>) -> ServiceResult<()> {
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
    p.into_result().map_err(ServiceError::Validation)
}

fn flags(many: Option<Vec<String>>, one: Option<String>) -> Option<Vec<String>> {
    many.or_else(|| one.map(|f| vec![f]))
}

/// As on Svix, the list leaves schemas out unless `with_content=true`.
pub async fn list_event_types(state: &AppState, q: &QueryParams) -> ServiceResult<Listed<EventTypeOut>> {
    let with_content = q.bool_or("with_content", false)?;
    let paging = Paging::from_query(q, Order::Ascending)?;
    let rows = state
        .store
        .list_event_types(&paging.page, q.bool("include_archived")?)
        .await?;
    let out = rows.into_iter().map(EventTypeOut::from).map(|mut e| {
        if !with_content {
            e.schemas = None;
        }
        e
    });
    Ok(paging.finish(out.collect(), |e| e.name.clone()))
}

pub async fn create_event_type(state: &AppState, input: EventTypeIn) -> ServiceResult<EventTypeOut> {
    check(&input.name, input.schemas.as_ref())?;
    let group = group_of(&input.name).map(str::to_owned);
    let now = state.clock.now();
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
    Ok(et.into())
}

pub async fn get_event_type(state: &AppState, name: &str) -> ServiceResult<EventTypeOut> {
    Ok(find_event_type(state, name).await?.into())
}

async fn find_event_type(state: &AppState, name: &str) -> ServiceResult<EventType> {
    state
        .store
        .get_event_type(name)
        .await?
        .ok_or(ServiceError::NotFound("event type"))
}

/// Updates an event type, creating it when absent.
pub async fn put_event_type(
    state: &AppState,
    name: String,
    input: EventTypeUpdate,
) -> ServiceResult<(Created, EventTypeOut)> {
    check(&name, input.schemas.as_ref())?;
    let now = state.clock.now();
    let existing = state.store.get_event_type(&name).await?;
    let created = existing.is_none();
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
    Ok((created, et.into()))
}

/// Changes the fields `patch` names on an existing event type.
pub async fn patch_event_type(state: &AppState, name: &str, patch: EventTypePatch) -> ServiceResult<EventTypeOut> {
    let mut et = find_event_type(state, name).await?;
    if let Some(schemas) = patch.schemas {
        check(name, schemas.as_ref())?;
        et.schemas = schemas;
    }
    if let Some(description) = patch.description {
        et.description = description;
    }
    if let Some(archived) = patch.archived {
        et.archived = archived;
    }
    if let Some(deprecated) = patch.deprecated {
        et.deprecated = deprecated;
    }
    if let Some(group) = patch.group_name {
        et.group_name = group.or_else(|| group_of(name).map(str::to_owned));
    }
    match (patch.feature_flags, patch.feature_flag) {
        (Some(many), _) => et.feature_flags = many,
        (None, Some(one)) => et.feature_flags = one.map(|f| vec![f]),
        (None, None) => {}
    }
    et.updated_at = state.clock.now();
    state.store.upsert_event_type(&et).await?;
    Ok(et.into())
}

/// Archives an event type (it stays usable, but leaves the catalog);
/// `expunge=true` deletes it for good.
pub async fn delete_event_type(state: &AppState, name: &str, q: &QueryParams) -> ServiceResult<()> {
    let mut et = find_event_type(state, name).await?;
    if q.bool("expunge")? {
        state.store.delete_event_type(name).await?;
    } else {
        et.archived = true;
        et.updated_at = state.clock.now();
        state.store.upsert_event_type(&et).await?;
    }
    Ok(())
}
