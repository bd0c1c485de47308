//! The event catalog: what can be subscribed to, with schemas and examples.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::Response;
use serde::Serialize;

use super::UiResult;
use super::render::{self, Layout};
use super::session::Viewer;
use crate::domain::catalog::{group_of, latest_schema};
use crate::service::AppState;
use crate::service::event_type::{EventTypeOut, list_event_types};
use crate::service::input::QueryParams;

/// Event types of one group, for the catalog and the subscription tree.
#[derive(Serialize)]
pub struct Group {
    pub name: String,
    pub types: Vec<EventTypeView>,
}

#[derive(Serialize)]
pub struct EventTypeView {
    #[serde(flatten)]
    pub event_type: EventTypeOut,
    /// The schema in force, pretty-printed.
    pub schema: Option<String>,
    pub examples: Vec<String>,
}

/// Every event type not archived, by group (its `groupName`, else its dot
/// prefix). The catalog is small: one page of the largest size.
pub async fn groups(state: &AppState) -> UiResult<Vec<Group>> {
    let list = list_event_types(
        state,
        &QueryParams::from_pairs([("limit", "250"), ("with_content", "true")]),
    )
    .await?;
    let mut by_group: BTreeMap<String, Vec<EventTypeView>> = BTreeMap::new();
    for et in list.data {
        let group = et
            .group_name
            .clone()
            .or_else(|| group_of(&et.name).map(str::to_owned))
            .unwrap_or_else(|| "other".to_owned());
        let schema = et.schemas.as_ref().and_then(latest_schema);
        let examples = schema
            .and_then(|s| s.get("examples"))
            .and_then(|e| e.as_array())
            .map(|list| list.iter().map(pretty).collect())
            .unwrap_or_default();
        let view = EventTypeView {
            schema: schema.map(pretty),
            examples,
            event_type: et,
        };
        by_group.entry(group).or_default().push(view);
    }
    Ok(by_group
        .into_iter()
        .map(|(name, types)| Group { name, types })
        .collect())
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub struct Notice {
    notice: String,
}

pub async fn list(
    State(state): State<AppState>,
    viewer: Viewer,
    axum::extract::Query(q): axum::extract::Query<Notice>,
) -> UiResult<Response> {
    let groups = groups(&state).await?;
    // Operators restore archived types from here; customers never see them.
    let archived: Vec<EventTypeOut> = if viewer.is_admin() {
        list_event_types(
            &state,
            &QueryParams::from_pairs([("limit", "250"), ("include_archived", "true")]),
        )
        .await?
        .data
        .into_iter()
        .filter(|et| et.archived)
        .collect()
    } else {
        Vec::new()
    };
    Ok(render::ok(
        "catalog.html",
        Layout::for_viewer(&viewer, "Event catalog"),
        minijinja::context! { groups, archived, notice => q.notice },
    ))
}
