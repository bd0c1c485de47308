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

/// An event type's schemas with its newest version replaced by `schema`
/// (version `1` when it has none), the examples it had carried over unless
/// `schema` brings its own, and `example` added. Every example must fit the
/// schema: a new one that does not is refused at `example`, an old one at
/// `schemas`. No schema means no schemas, and then no example.
pub fn compose_schemas(
    existing: Option<&serde_json::Value>,
    schema: Option<serde_json::Value>,
    example: Option<serde_json::Value>,
) -> ServiceResult<Option<serde_json::Value>> {
    use serde_json::Value;
    let Some(mut schema) = schema else {
        return match example {
            Some(_) => Err(ServiceError::body_field(
                &["example"],
                "an example needs a schema to be checked against",
            )),
            None => Ok(None),
        };
    };
    let mut versions = existing.and_then(Value::as_object).cloned().unwrap_or_default();
    let version = versions
        .keys()
        .filter_map(|v| v.parse::<u64>().ok())
        .max()
        .unwrap_or(1)
        .to_string();
    let compiled = PayloadSchema::compile(&schema).map_err(|e| {
        ServiceError::body_field(
            &["schemas", &version],
            format!("is not a valid JSON Schema (draft 7): {e}"),
        )
    })?;
    let Some(object) = schema.as_object_mut() else {
        return Err(ServiceError::body_field(
            &["schemas", &version],
            "must be a JSON object",
        ));
    };
    if !object.contains_key("examples")
        && let Some(kept) = versions.get(&version).and_then(|s| s.get("examples"))
    {
        object.insert("examples".into(), kept.clone());
    }
    for (n, old) in object
        .get("examples")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if let Err(problems) = compiled.check(old) {
            return Err(ServiceError::body_field(
                &["schemas", &version],
                format!("example {} does not fit this schema: {}", n + 1, describe(&problems)),
            ));
        }
    }
    if let Some(example) = example {
        compiled.check(&example).map_err(|problems| {
            ServiceError::body_field(
                &["example"],
                format!("does not fit the schema: {}", describe(&problems)),
            )
        })?;
        let list = object.entry("examples").or_insert_with(|| Value::Array(Vec::new()));
        match list.as_array_mut() {
            Some(list) => list.push(example),
            None => *list = Value::Array(vec![example]),
        }
    }
    versions.insert(version, schema);
    Ok(Some(Value::Object(versions)))
}

fn describe(problems: &crate::domain::catalog::PayloadProblems) -> String {
    problems
        .iter()
        .map(|(path, why)| match path.is_empty() {
            true => why.clone(),
            false => format!("{}: {why}", path.join(".")),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(e: &ServiceError) -> Vec<String> {
        match e {
            ServiceError::Validation(list) => list.iter().map(|f| f.loc.join(".")).collect(),
            other => vec![other.to_string()],
        }
    }

    #[test]
    fn an_example_is_added_to_the_newest_schema_once_it_fits() {
        let existing = json!({"1": {"type": "object"}, "2": {"type": "object", "examples": [{"a": "x"}]}});
        let schema = json!({"type": "object", "properties": {"a": {"type": "string"}}});
        let out = compose_schemas(Some(&existing), Some(schema.clone()), Some(json!({"a": "y"})))
            .unwrap()
            .unwrap();
        assert_eq!(out["1"], existing["1"]);
        assert_eq!(out["2"]["examples"], json!([{"a": "x"}, {"a": "y"}]));
        let refused = compose_schemas(Some(&existing), Some(schema), Some(json!({"a": 1}))).unwrap_err();
        assert_eq!(fields(&refused), ["body.example"]);
    }

    #[test]
    fn a_broken_schema_or_a_schemaless_example_is_refused_at_its_field() {
        let refused = compose_schemas(None, Some(json!({"type": "nonsense"})), None).unwrap_err();
        assert_eq!(fields(&refused), ["body.schemas.1"]);
        let refused = compose_schemas(None, None, Some(json!({}))).unwrap_err();
        assert_eq!(fields(&refused), ["body.example"]);
        assert_eq!(compose_schemas(None, None, None).unwrap(), None);
        // An old example the new schema no longer accepts.
        let existing = json!({"1": {"examples": [{"a": "x"}]}});
        let stricter = json!({"properties": {"a": {"type": "integer"}}});
        let refused = compose_schemas(Some(&existing), Some(stricter), None).unwrap_err();
        assert_eq!(fields(&refused), ["body.schemas.1"]);
    }
}
