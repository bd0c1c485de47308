//! Messages: what a product publishes. Accepting one means it is stored,
//! with its deliveries, before the answer leaves.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use std::collections::HashMap;
use std::sync::Mutex;

use super::AppState;
use super::app::{ApplicationIn, find_app, find_or_make_app};
use super::error::{ServiceError, ServiceResult};
use super::input::QueryParams;
use super::list::{Listed, Paging};

use crate::domain::catalog::{PayloadSchema, latest_schema};
use crate::domain::ids::{AppId, MessageId};
use crate::domain::validate::{Problems, check_channels, check_name};
use crate::store::{Application, EventType, Message, MessageFilter, Order};

/// Largest payload accepted, in bytes as published.
pub const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

#[derive(Debug, Deserialize, ToSchema)]
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
    /// Days the payload is kept (1 to 3650); the server's
    /// HERALD_PAYLOAD_RETENTION when omitted. Then it reads `{}`.
    pub payload_retention_period: Option<i64>,
    /// The same in hours (1 to 87600); wins over the period in days.
    pub payload_retention_hours: Option<i64>,
    /// Makes this application when the path names none yet; its `uid` must
    /// be the one in the path. Ignored when the application exists.
    pub application: Option<ApplicationIn>,
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
    /// Herald: when the payload may be removed.
    pub expires_at: Option<DateTime<Utc>>,
    /// Herald: when the payload was removed (expired or expunged); `payload` reads `{}` since.
    pub payload_removed_at: Option<DateTime<Utc>>,
}

impl MessageOut {
    /// The payload, or `{}` when the caller asked for no content.
    pub fn content_if(mut self, with_content: bool) -> Self {
        if !with_content {
            self.payload = RawValue::from_string("{}".to_owned()).expect("literal JSON");
        }
        self
    }
}

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
            expires_at: m.expires_at,
            payload_removed_at: m.payload_removed_at,
        }
    }
}

/// Most owners one message may name.
const MAX_AUDIENCE: usize = 100;

fn check(input: &MessageIn) -> ServiceResult<()> {
    if input.payload.get().len() > MAX_PAYLOAD_BYTES {
        return Err(ServiceError::TooLarge(format!(
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
    if let Some(days) = input.payload_retention_period
        && !(1..=3650).contains(&days)
    {
        p.add(&["payloadRetentionPeriod"], "must be 1 to 3650 days");
    }
    if let Some(hours) = input.payload_retention_hours
        && !(1..=87600).contains(&hours)
    {
        p.add(&["payloadRetentionHours"], "must be 1 to 87600 hours");
    }
    p.into_result().map_err(ServiceError::Validation)
}

/// When the payload's retention ends.
fn expires_at(state: &AppState, input: &MessageIn, now: DateTime<Utc>) -> DateTime<Utc> {
    let kept = match (input.payload_retention_hours, input.payload_retention_period) {
        (Some(hours), _) => chrono::Duration::hours(hours),
        (None, Some(days)) => chrono::Duration::days(days),
        (None, None) => chrono::Duration::from_std(state.config.payload_retention).unwrap_or(chrono::Duration::MAX),
    };
    now.checked_add_signed(kept).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Compiled payload schemas by event type, recompiled when the type changes.
#[derive(Clone, Default)]
pub struct SchemaCache(Arc<Mutex<HashMap<String, CachedSchema>>>);

/// A compiled schema and the event type version (`updatedAt`) it came from.
type CachedSchema = (DateTime<Utc>, Arc<PayloadSchema>);

impl SchemaCache {
    fn get(&self, et: &EventType, schema: &serde_json::Value) -> Result<Arc<PayloadSchema>, String> {
        let mut cache = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((version, compiled)) = cache.get(&et.name)
            && *version == et.updated_at
        {
            return Ok(compiled.clone());
        }
        let compiled = Arc::new(PayloadSchema::compile(schema)?);
        cache.insert(et.name.clone(), (et.updated_at, compiled.clone()));
        Ok(compiled)
    }
}

/// With validation on, a payload must fit its event type's newest schema.
/// Event types without a schema, or not in the catalog, are not checked.
async fn validate_payload(state: &AppState, app: &Application, input: &MessageIn) -> ServiceResult<()> {
    if !app.validate_payloads.unwrap_or(state.config.validate_payloads) {
        return Ok(());
    }
    let Some(et) = state.store.get_event_type(&input.event_type).await? else {
        return Ok(());
    };
    let Some(schema) = et.schemas.as_ref().and_then(latest_schema) else {
        return Ok(());
    };
    let compiled = state.schemas.get(&et, schema).map_err(|e| {
        ServiceError::body_field(
            &["eventType"],
            format!("the schema of '{}' is not a valid JSON Schema: {e}", et.name),
        )
    })?;
    let payload: serde_json::Value =
        serde_json::from_str(input.payload.get()).map_err(|e| ServiceError::body_field(&["payload"], e.to_string()))?;
    compiled.check(&payload).map_err(|problems| {
        let mut p = Problems::default();
        for (path, reason) in problems {
            let mut loc = vec!["payload"];
            loc.extend(path.iter().map(String::as_str));
            p.add(&loc, reason);
        }
        ServiceError::Validation(p.into_errors())
    })
}

/// Checks a message for the application `app_id` (id or uid) and stores it
/// with its deliveries: what the API and the broker sources both do, so a
/// message is accepted by the same rules whichever way it came.
pub async fn accept_message(state: &AppState, app_id: &str, mut input: MessageIn) -> ServiceResult<Message> {
    check(&input)?;
    let app = find_or_make_app(state, app_id, input.application.take()).await?;
    validate_payload(state, &app, &input).await?;
    let now = state.clock.now();
    let msg = Message {
        id: MessageId::generate(),
        app_id: app.id,
        expires_at: Some(expires_at(state, &input, now)),
        event_type: input.event_type,
        event_id: input.event_id,
        payload: Arc::from(input.payload.get()),
        channels: input.channels,
        tags: input.tags,
        audience: input.audience,
        payload_removed_at: None,
        created_at: now,
    };
    let deliveries = state.store.publish(&msg).await?;
    state.metrics.published();
    if deliveries > 0 {
        state.dispatcher.wake();
    }
    Ok(msg)
}

pub async fn list_messages(state: &AppState, app_id: &str, q: &QueryParams) -> ServiceResult<Listed<MessageOut>> {
    let app = find_app(state, app_id).await?;
    let filter = MessageFilter {
        before: q.time("before")?,
        after: q.time("after")?,
        event_types: q.list("event_types"),
        channel: q.str("channel").map(str::to_owned),
    };
    let with_content = q.bool_or("with_content", true)?;
    let paging = Paging::from_query(q, Order::Descending)?;
    let rows = state.store.list_messages(&app.id, &filter, &paging.page).await?;
    let out = rows.into_iter().map(|m| MessageOut::from(m).content_if(with_content));
    Ok(paging.finish(out.collect(), |m| m.id.clone()))
}

/// The message `msg_id` (its id or eventId) of application `app_id`;
/// `with_content=false` leaves its payload out (`{}`), as on Svix.
pub async fn get_message(state: &AppState, app_id: &str, msg_id: &str, q: &QueryParams) -> ServiceResult<MessageOut> {
    let with_content = q.bool_or("with_content", true)?;
    let app = find_app(state, app_id).await?;
    Ok(MessageOut::from(find_message(state, &app.id, msg_id).await?).content_if(with_content))
}

/// Finds a message by id or eventId.
pub async fn find_message(state: &AppState, app_id: &AppId, id_or_event_id: &str) -> ServiceResult<Message> {
    state
        .store
        .get_message(app_id, id_or_event_id)
        .await?
        .ok_or(ServiceError::NotFound("message"))
}

/// Removes a message's payload now (for example on a customer's request);
/// deliveries not yet made are dropped, having nothing left to send.
pub async fn expunge_content(state: &AppState, app_id: &str, msg_id: &str) -> ServiceResult<()> {
    let app = find_app(state, app_id).await?;
    let msg = find_message(state, &app.id, msg_id).await?;
    if !state.store.remove_payload(&app.id, &msg.id, state.clock.now()).await? {
        return Err(ServiceError::NotFound("message"));
    }
    Ok(())
}

/// Most messages an operator's search lists.
const FOUND_AT_MOST: u32 = 20;

/// A message found by an operator's search, with its application.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FoundMessage {
    pub app_id: String,
    pub app_name: String,
    pub message: MessageOut,
}

/// The messages of every application whose id or eventId is
/// `id_or_event_id` (an eventId is unique only within its application),
/// newest first, without their payloads.
pub async fn find_anywhere(state: &AppState, id_or_event_id: &str) -> ServiceResult<Vec<FoundMessage>> {
    let wanted = id_or_event_id.trim();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    for msg in state.store.find_messages(wanted, FOUND_AT_MOST).await? {
        let app = state.store.get_app(msg.app_id.as_str()).await?;
        found.push(FoundMessage {
            app_id: msg.app_id.to_string(),
            app_name: app.map(|a| a.name).unwrap_or_default(),
            message: MessageOut::from(msg).content_if(false),
        });
    }
    Ok(found)
}
