//! Operator workflows on one endpoint: resend many, recover what failed,
//! replay what was never sent, send a test event, stats; and the background
//! tasks the long ones run as.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::app::find_app;
use super::attempt::{ensure_enabled, may_resend};
use super::auth::Caller;
use super::endpoint::find_endpoint;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, QueryParams};
use super::list::{Paging, list_response};
use super::message::MessageOut;
use crate::domain::catalog::example;
use crate::domain::ids::{MessageId, TaskId};
use crate::domain::status::TaskKind;
use crate::ops::recovery;
use crate::store::{BackgroundTask, Message, Order, Window};

/// Most messages one bulk resend may name.
const MAX_BULK_RESEND: usize = 1000;

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BulkResendIn {
    /// Message ids (or eventIds) to send to this endpoint again.
    pub msg_ids: Vec<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BulkResendOut {
    /// How many resends were scheduled.
    pub scheduled: u64,
    /// Ids that name no message of this application, or one whose payload was removed.
    pub skipped: Vec<String>,
}

/// Herald: resends the selected messages to this endpoint, in one transaction.
#[utoipa::path(post, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/resend", tag = "Endpoint",
    params(("app_id" = String, Path), ("endpoint_id" = String, Path)), request_body = BulkResendIn,
    responses((status = 202, body = BulkResendOut)))]
pub async fn resend_many(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    ApiJson(input): ApiJson<BulkResendIn>,
) -> ApiResult<(StatusCode, Json<BulkResendOut>)> {
    if input.msg_ids.is_empty() || input.msg_ids.len() > MAX_BULK_RESEND {
        return Err(ApiError::body_field(
            &["msgIds"],
            format!("must name 1 to {MAX_BULK_RESEND} messages"),
        ));
    }
    let app = find_app(&state, &app_id).await?;
    let ep = find_endpoint(&state, &app.id, &endpoint_id).await?;
    ensure_enabled(&ep)?;
    let mut found = Vec::with_capacity(input.msg_ids.len());
    let mut skipped = Vec::new();
    for id in &input.msg_ids {
        match state.store.get_message(&app.id, id).await? {
            Some(msg)
                if msg.payload_removed_at.is_none()
                    && may_resend(&state, &caller, &app.id, &msg.id, &ep.id).await? =>
            {
                found.push(msg.id)
            }
            _ => skipped.push(id.clone()),
        }
    }
    let scheduled = state.store.resend_many(&ep, &found, crate::store::now()).await?;
    state.dispatcher.wake();
    Ok((StatusCode::ACCEPTED, Json(BulkResendOut { scheduled, skipped })))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecoverIn {
    /// Messages created at or after this time.
    pub since: DateTime<Utc>,
    /// And before this time; omit for up to now.
    pub until: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackgroundTaskOut {
    pub id: String,
    /// `running`, `finished` or `failed`.
    pub status: String,
    /// `endpoint.recover` or `endpoint.replay`.
    pub task: String,
    /// Progress: `scheduled` (resends made), `examined` (messages looked at), `error`.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    pub updated_at: DateTime<Utc>,
}

list_response!(ListResponseBackgroundTaskOut, BackgroundTaskOut);

impl From<BackgroundTask> for BackgroundTaskOut {
    fn from(t: BackgroundTask) -> Self {
        Self {
            id: t.id.to_string(),
            status: t.status.name().to_owned(),
            task: t.kind.name().to_owned(),
            data: t.data,
            updated_at: t.updated_at,
        }
    }
}

async fn start_task(
    state: &AppState,
    app_id: &str,
    endpoint_id: &str,
    input: RecoverIn,
    kind: TaskKind,
) -> ApiResult<(StatusCode, Json<BackgroundTaskOut>)> {
    if let Some(until) = input.until
        && until <= input.since
    {
        return Err(ApiError::body_field(&["until"], "must be after since"));
    }
    let app = find_app(state, app_id).await?;
    let ep = find_endpoint(state, &app.id, endpoint_id).await?;
    ensure_enabled(&ep)?;
    let window = Window {
        since: input.since,
        until: input.until,
    };
    let task = recovery::start(state.store.clone(), state.dispatcher.clone(), kind, ep, window).await?;
    Ok((StatusCode::ACCEPTED, Json(task.into())))
}

/// Resends every message whose delivery to this endpoint failed in the
/// window (and has not succeeded or been rescheduled since).
#[utoipa::path(post, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/recover", tag = "Endpoint",
    params(("app_id" = String, Path), ("endpoint_id" = String, Path)), request_body = RecoverIn,
    responses((status = 202, body = BackgroundTaskOut)))]
pub async fn recover(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    ApiJson(input): ApiJson<RecoverIn>,
) -> ApiResult<(StatusCode, Json<BackgroundTaskOut>)> {
    start_task(&state, &app_id, &endpoint_id, input, TaskKind::EndpointRecover).await
}

/// Sends the messages of the window that this endpoint, as configured now,
/// would receive but never was sent: dropped while disabled, or published
/// before it existed.
#[utoipa::path(post, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/replay-missing", tag = "Endpoint",
    params(("app_id" = String, Path), ("endpoint_id" = String, Path)), request_body = RecoverIn,
    responses((status = 202, body = BackgroundTaskOut)))]
pub async fn replay_missing(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    ApiJson(input): ApiJson<RecoverIn>,
) -> ApiResult<(StatusCode, Json<BackgroundTaskOut>)> {
    start_task(&state, &app_id, &endpoint_id, input, TaskKind::EndpointReplay).await
}

#[utoipa::path(get, path = "/api/v1/background-task", tag = "Background Task",
    params(("limit" = Option<u32>, Query), ("iterator" = Option<String>, Query)),
    responses((status = 200, body = ListResponseBackgroundTaskOut)))]
pub async fn list_tasks(
    State(state): State<AppState>,
    q: QueryParams,
) -> ApiResult<Json<ListResponseBackgroundTaskOut>> {
    let paging = Paging::from_query(&q, Order::Descending)?;
    let rows = state.store.list_tasks(&paging.page).await?;
    let listed = paging.finish(rows.into_iter().map(BackgroundTaskOut::from).collect(), |t| {
        t.id.clone()
    });
    Ok(Json(listed.into()))
}

#[utoipa::path(get, path = "/api/v1/background-task/{task_id}", tag = "Background Task",
    params(("task_id" = String, Path)),
    responses((status = 200, body = BackgroundTaskOut), (status = 404, body = super::error::HttpErrorOut)))]
pub async fn get_task(
    State(state): State<AppState>,
    Path(task_id): Path<String>,
) -> ApiResult<Json<BackgroundTaskOut>> {
    let id = TaskId::parse(&task_id).ok_or(ApiError::NotFound("background task"))?;
    let task = state
        .store
        .get_task(&id)
        .await?
        .ok_or(ApiError::NotFound("background task"))?;
    Ok(Json(task.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventExampleIn {
    pub event_type: String,
    /// Which of the schema's `examples`; 0 when omitted.
    pub example_index: Option<usize>,
}

/// Sends the event type's example (or a sample built from its schema) to
/// this endpoint only, as a message visible in the history.
#[utoipa::path(post, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/send-example", tag = "Endpoint",
    params(("app_id" = String, Path), ("endpoint_id" = String, Path)), request_body = EventExampleIn,
    responses((status = 202, body = MessageOut)))]
pub async fn send_example(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    ApiJson(input): ApiJson<EventExampleIn>,
) -> ApiResult<(StatusCode, Json<MessageOut>)> {
    let app = find_app(&state, &app_id).await?;
    let ep = find_endpoint(&state, &app.id, &endpoint_id).await?;
    ensure_enabled(&ep)?;
    let et = state.store.get_event_type(&input.event_type).await?.ok_or_else(|| {
        ApiError::body_field(
            &["eventType"],
            format!("'{}' is not in the event catalog", input.event_type),
        )
    })?;
    let index = input.example_index.unwrap_or(0);
    let payload = example(et.schemas.as_ref(), index).ok_or_else(|| {
        ApiError::body_field(
            &["exampleIndex"],
            format!("'{}' has no example number {index}", et.name),
        )
    })?;
    let now = crate::store::now();
    let msg = Message {
        id: MessageId::generate(),
        app_id: app.id,
        event_type: et.name,
        event_id: None,
        payload: Arc::from(payload.to_string()),
        channels: None,
        tags: Some(vec!["herald.example".to_owned()]),
        audience: None,
        expires_at: chrono::Duration::from_std(state.config.payload_retention)
            .ok()
            .and_then(|d| now.checked_add_signed(d)),
        payload_removed_at: None,
        created_at: now,
    };
    state.store.publish_to(&msg, &ep.id).await?;
    state.dispatcher.wake();
    Ok((StatusCode::ACCEPTED, Json(msg.into())))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointStatsOut {
    pub success: i64,
    pub pending: i64,
    pub sending: i64,
    pub fail: i64,
    /// Herald: waiting for the endpoint to be enabled (`whileDisabled: hold`).
    pub held: i64,
    /// Herald: not sent because the endpoint was disabled (`whileDisabled: drop`).
    pub dropped: i64,
    /// Herald: with `ordering: fifo`, deliveries waiting behind the one
    /// being sent or retried, whenever they were created (not windowed).
    pub waiting: i64,
}

/// Deliveries to this endpoint created in the period, by state.
#[utoipa::path(get, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/stats", tag = "Endpoint",
    params(("app_id" = String, Path), ("endpoint_id" = String, Path),
           ("since" = Option<String>, Query, description = "Default: 28 days ago"),
           ("until" = Option<String>, Query, description = "Default: now")),
    responses((status = 200, body = EndpointStatsOut)))]
pub async fn stats(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    q: QueryParams,
) -> ApiResult<Json<EndpointStatsOut>> {
    let app = find_app(&state, &app_id).await?;
    let ep = find_endpoint(&state, &app.id, &endpoint_id).await?;
    let window = Window {
        since: q
            .time("since")?
            .unwrap_or_else(|| crate::store::now() - chrono::Duration::days(28)),
        until: q.time("until")?,
    };
    let c = state.store.endpoint_stats(&ep.id, &window).await?;
    let waiting = state.store.waiting_behind_head(&ep.id).await?;
    Ok(Json(EndpointStatsOut {
        waiting,
        success: c.success,
        pending: c.pending,
        sending: c.sending,
        fail: c.fail,
        held: c.held,
        dropped: c.dropped,
    }))
}
