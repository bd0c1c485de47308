//! Messages: what a product publishes. Accepting one means it is stored,
//! with its deliveries, before the answer leaves.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::AppState;
use super::app::find_app;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, QueryParams};
use super::list::{Paging, list_response};
use crate::domain::ids::MessageId;
use crate::domain::validate::{Problems, check_channels, check_name};
use crate::store::{Message, MessageFilter, Order};

/// Largest payload accepted, in bytes as published.
pub const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageIn {
    pub event_type: String,
    /// Any JSON object. It is sent byte for byte as published.
    #[schema(value_type = Object)]
    pub payload: Box<RawValue>,
    /// Unique per application: publishing the same eventId twice answers 409.
    pub event_id: Option<String>,
    pub channels: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
    /// Herald: the owners who may see this message. An endpoint with an
    /// `ownerId` receives it only if listed; omit it for everyone.
    pub audience: Option<Vec<String>>,
    /// Accepted for compatibility; payloads are kept with the message.
    pub payload_retention_period: Option<i64>,
}

#[derive(Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageOut {
    pub id: String,
    pub event_type: String,
    pub event_id: Option<String>,
    #[schema(value_type = Object)]
    pub payload: Box<RawValue>,
    pub channels: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
    /// Herald: the owners who may see this message; `null` means everyone.
    pub audience: Option<Vec<String>>,
    pub timestamp: DateTime<Utc>,
}

list_response!(ListResponseMessageOut, MessageOut);

impl From<Message> for MessageOut {
    fn from(m: Message) -> Self {
        // Stored payloads were validated JSON objects when published.
        let payload = RawValue::from_string(m.payload.to_string())
            .unwrap_or_else(|_| RawValue::from_string("{}".to_owned()).expect("literal JSON"));
        Self {
            id: m.id.to_string(),
            event_type: m.event_type,
            event_id: m.event_id,
            payload,
            channels: m.channels,
            tags: m.tags,
            audience: m.audience,
            timestamp: m.created_at,
        }
    }
}

/// Most owners one message may name.
const MAX_AUDIENCE: usize = 100;

fn check(input: &MessageIn) -> ApiResult<()> {
    if input.payload.get().len() > MAX_PAYLOAD_BYTES {
        return Err(ApiError::PayloadTooLarge(format!(
            "payload is {} bytes; the limit is {MAX_PAYLOAD_BYTES} (1 MiB)",
            input.payload.get().len()
        )));
    }
    let mut p = Problems::default();
    check_name(&mut p, "eventType", &input.event_type);
    if !input.payload.get().starts_with('{') {
        p.add(&["payload"], "must be a JSON object");
    }
    if let Some(id) = &input.event_id {
        check_name(&mut p, "eventId", id);
    }
    if let Some(channels) = &input.channels {
        check_channels(&mut p, channels);
    }
    if let Some(audience) = &input.audience {
        if audience.len() > MAX_AUDIENCE {
            p.add(&["audience"], format!("at most {MAX_AUDIENCE} owners are allowed"));
        }
        for owner in audience {
            check_name(&mut p, "audience", owner);
        }
    }
    p.into_result().map_err(ApiError::Validation)
}

#[utoipa::path(post, path = "/api/v1/app/{app_id}/msg", tag = "Message",
    params(("app_id" = String, Path)), request_body = MessageIn,
    responses((status = 202, body = MessageOut, description = "Stored; delivery follows"),
              (status = 409, body = super::error::HttpErrorOut, description = "eventId already used"),
              (status = 413, body = super::error::HttpErrorOut)))]
pub async fn create_message(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    ApiJson(input): ApiJson<MessageIn>,
) -> ApiResult<(StatusCode, Json<MessageOut>)> {
    check(&input)?;
    let app = find_app(&state, &app_id).await?;
    let msg = Message {
        id: MessageId::generate(),
        app_id: app.id,
        event_type: input.event_type,
        event_id: input.event_id,
        payload: Arc::from(input.payload.get()),
        channels: input.channels,
        tags: input.tags,
        audience: input.audience,
        created_at: crate::store::now(),
    };
    let deliveries = state.store.publish(&msg).await?;
    if deliveries > 0 {
        state.dispatcher.wake();
    }
    Ok((StatusCode::ACCEPTED, Json(msg.into())))
}

#[utoipa::path(get, path = "/api/v1/app/{app_id}/msg", tag = "Message",
    params(("app_id" = String, Path), ("limit" = Option<u32>, Query), ("iterator" = Option<String>, Query),
           ("before" = Option<String>, Query), ("after" = Option<String>, Query),
           ("event_types" = Option<String>, Query, description = "Comma-separated"),
           ("channel" = Option<String>, Query)),
    responses((status = 200, body = ListResponseMessageOut)))]
pub async fn list_messages(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    q: QueryParams,
) -> ApiResult<Json<ListResponseMessageOut>> {
    let app = find_app(&state, &app_id).await?;
    let filter = MessageFilter {
        before: q.time("before")?,
        after: q.time("after")?,
        event_types: q.list("event_types"),
        channel: q.str("channel").map(str::to_owned),
    };
    let paging = Paging::from_query(&q, Order::Descending)?;
    let rows = state.store.list_messages(&app.id, &filter, &paging.page).await?;
    let listed = paging.finish(rows.into_iter().map(MessageOut::from).collect(), |m| m.id.clone());
    Ok(Json(listed.into()))
}

#[utoipa::path(get, path = "/api/v1/app/{app_id}/msg/{msg_id}", tag = "Message",
    params(("app_id" = String, Path), ("msg_id" = String, Path, description = "The message's id or eventId")),
    responses((status = 200, body = MessageOut), (status = 404, body = super::error::HttpErrorOut)))]
pub async fn get_message(
    State(state): State<AppState>,
    Path((app_id, msg_id)): Path<(String, String)>,
) -> ApiResult<Json<MessageOut>> {
    let app = find_app(&state, &app_id).await?;
    let msg = state
        .store
        .get_message(&app.id, &msg_id)
        .await?
        .ok_or(ApiError::NotFound("message"))?;
    Ok(Json(msg.into()))
}
