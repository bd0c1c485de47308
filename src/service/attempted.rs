//! Svix's two views of delivery history by message: the messages attempted
//! to one endpoint, and the endpoints one message was attempted to, each with
//! how its latest attempt went.
//!
//! Both are built from the attempt history one message or endpoint at a
//! time, so a delivery not yet attempted (pending its first try) is not
//! listed yet.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::app::find_app;
use super::endpoint::find_endpoint;
use super::error::ServiceResult;
use super::input::QueryParams;
use super::list::{Listed, Paging};
use super::message::{MessageOut, find_message};
use crate::domain::ids::{AppId, EndpointId, MessageId};
use crate::store::{Attempt, AttemptFilter, Endpoint, MessageFilter, Order, Page};

/// Rows read from the store per round while looking for a page's items.
const SCAN_BATCH: u32 = 250;

/// A message attempted to an endpoint, and how its latest attempt went.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointMessageOut {
    #[serde(flatten)]
    pub msg: MessageOut,
    /// The latest attempt's: 0 success, 2 fail.
    pub status: i64,
    pub status_text: String,
}

/// An endpoint a message was attempted to, and how its latest attempt went.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageEndpointOut {
    pub id: String,
    pub url: String,
    pub description: String,
    pub filter_types: Option<Vec<String>>,
    pub event_types: Option<Vec<String>>,
    pub channels: Option<Vec<String>>,
    pub disabled: bool,
    pub uid: Option<String>,
    pub rate_limit: Option<i64>,
    pub throttle_rate: Option<i64>,
    /// Always 1; Svix sends it and SDKs 1.x require it.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The latest attempt's: 0 success, 2 fail.
    pub status: i64,
    pub status_text: String,
}

impl MessageEndpointOut {
    fn new(ep: Endpoint, latest: &Attempt) -> Self {
        Self {
            id: ep.id.to_string(),
            url: ep.url,
            description: ep.description,
            event_types: ep.filter_types.clone(),
            filter_types: ep.filter_types,
            channels: ep.channels,
            disabled: ep.disabled,
            uid: ep.uid,
            rate_limit: ep.rate_limit,
            throttle_rate: ep.rate_limit,
            version: 1,
            created_at: ep.created_at,
            updated_at: ep.updated_at,
            status: latest.status.code(),
            status_text: latest.status.text().to_owned(),
        }
    }
}

/// The latest attempt to send `msg` to `endpoint`, if there was one.
async fn latest_attempt(
    state: &AppState,
    app: &AppId,
    msg: &MessageId,
    endpoint: &EndpointId,
) -> ServiceResult<Option<Attempt>> {
    let filter = AttemptFilter {
        msg_id: Some(msg.clone()),
        endpoint_id: Some(endpoint.clone()),
        ..Default::default()
    };
    let newest = Page {
        limit: 1,
        beyond: None,
        order: Order::Descending,
    };
    Ok(state
        .store
        .list_attempts(app, &filter, &newest)
        .await?
        .into_iter()
        .next())
}

/// The messages attempted to one endpoint, newest first, paged by message id.
/// `status` filters on the latest attempt, `tag` on the message's tags;
/// `with_content=false` leaves payloads out (`{}`).
pub async fn list_attempted_messages(
    state: &AppState,
    app_id: &str,
    endpoint_id: &str,
    q: &QueryParams,
) -> ServiceResult<Listed<EndpointMessageOut>> {
    let app = find_app(state, app_id).await?;
    let ep = find_endpoint(state, &app.id, endpoint_id).await?;
    let filter = MessageFilter {
        before: q.time("before")?,
        after: q.time("after")?,
        event_types: q.list("event_types"),
        channel: q.str("channel").map(str::to_owned),
    };
    let status = q.int("status", 0..=3)?;
    let tag = q.str("tag");
    let with_content = q.with_content()?;
    let paging = Paging::from_query(q, Order::Descending)?;
    let wanted = paging.page.limit as usize;
    let mut scan = Page {
        limit: SCAN_BATCH,
        ..paging.page.clone()
    };
    let mut found = Vec::new();
    'scan: loop {
        let batch = state.store.list_messages(&app.id, &filter, &scan).await?;
        let exhausted = batch.len() < SCAN_BATCH as usize;
        for mut msg in batch {
            scan.beyond = Some(msg.id.to_string());
            if tag.is_some_and(|t| !msg.tags.as_ref().is_some_and(|tags| tags.iter().any(|m| m == t))) {
                continue;
            }
            let Some(latest) = latest_attempt(state, &app.id, &msg.id, &ep.id).await? else {
                continue;
            };
            if status.is_some_and(|s| s != latest.status.code()) {
                continue;
            }
            if !with_content {
                msg.payload = Arc::from("{}");
            }
            found.push(EndpointMessageOut {
                msg: msg.into(),
                status: latest.status.code(),
                status_text: latest.status.text().to_owned(),
            });
            if found.len() == wanted {
                break 'scan;
            }
        }
        if exhausted {
            break;
        }
    }
    Ok(paging.finish(found, |m| m.msg.id.clone()))
}

/// The endpoints a message (id or eventId) was attempted to, paged by
/// endpoint id, newest first. Deleted endpoints took their history along.
pub async fn list_attempted_destinations(
    state: &AppState,
    app_id: &str,
    msg_id: &str,
    q: &QueryParams,
) -> ServiceResult<Listed<MessageEndpointOut>> {
    let app = find_app(state, app_id).await?;
    let msg = find_message(state, &app.id, msg_id).await?;
    let latest = latest_attempt_per_endpoint(state, &app.id, &msg.id).await?;
    let paging = Paging::from_query(q, Order::Descending)?;
    let beyond = paging.page.beyond.as_deref();
    let mut in_order: Vec<(String, Attempt)> = latest
        .into_iter()
        .filter(|(id, _)| match (beyond, paging.page.order) {
            (None, _) => true,
            (Some(b), Order::Descending) => id.as_str() < b,
            (Some(b), Order::Ascending) => id.as_str() > b,
        })
        .collect();
    if paging.page.order == Order::Descending {
        in_order.reverse();
    }
    let mut rows = Vec::new();
    for (id, attempt) in in_order {
        if rows.len() == paging.page.limit as usize {
            break;
        }
        if let Some(ep) = state.store.get_endpoint(&app.id, &id).await? {
            rows.push(MessageEndpointOut::new(ep, &attempt));
        }
    }
    Ok(paging.finish(rows, |e| e.id.clone()))
}

/// Every endpoint a message was attempted to, with its newest attempt.
async fn latest_attempt_per_endpoint(
    state: &AppState,
    app: &AppId,
    msg: &MessageId,
) -> ServiceResult<BTreeMap<String, Attempt>> {
    let filter = AttemptFilter {
        msg_id: Some(msg.clone()),
        ..Default::default()
    };
    let mut page = Page {
        limit: SCAN_BATCH,
        beyond: None,
        order: Order::Descending,
    };
    let mut latest = BTreeMap::new();
    loop {
        let batch = state.store.list_attempts(app, &filter, &page).await?;
        let exhausted = batch.len() < SCAN_BATCH as usize;
        for attempt in batch {
            page.beyond = Some(attempt.id.to_string());
            latest.entry(attempt.endpoint_id.to_string()).or_insert(attempt);
        }
        if exhausted {
            return Ok(latest);
        }
    }
}
