//! Operator workflows on one endpoint: resend many, recover what failed,
//! replay what was never sent, send a test event, stats; and the background
//! tasks the long ones run as.
//!
//! Recover and replay-missing resend, in the background, what an endpoint
//! lost in a time window, and report progress as a background task. A task
//! is idempotent: messages it already scheduled have a pending or
//! successful delivery and are no longer candidates. So a task cut short by
//! a crash or shutdown is simply run again from the start when taken over.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::app::find_app;
use super::attempt::{ensure_enabled, may_resend};
use super::endpoint::find_endpoint;
use super::error::{ServiceError, ServiceResult};
use super::input::QueryParams;
use super::list::{Listed, Paging};
use super::message::MessageOut;
use super::{AppState, Background};
use crate::delivery::Dispatcher;
use crate::domain::access::Scope;
use crate::domain::catalog::example;
use crate::domain::clock::Clock;
use crate::domain::ids::{MessageId, TaskId};
use crate::domain::status::{TaskKind, TaskStatus};
use crate::store::{BackgroundTask, Endpoint, Message, Order, Recovery, Store, StoreResult, Window};

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

/// Resends the selected messages to this endpoint, in one transaction.
pub async fn resend_many(
    state: &AppState,
    caller: &Scope,
    app_id: &str,
    endpoint_id: &str,
    input: BulkResendIn,
) -> ServiceResult<BulkResendOut> {
    if input.msg_ids.is_empty() || input.msg_ids.len() > MAX_BULK_RESEND {
        return Err(ServiceError::body_field(
            &["msgIds"],
            format!("must name 1 to {MAX_BULK_RESEND} messages"),
        ));
    }
    let app = find_app(state, app_id).await?;
    let ep = find_endpoint(state, &app.id, endpoint_id).await?;
    ensure_enabled(&ep)?;
    let mut found = Vec::with_capacity(input.msg_ids.len());
    let mut skipped = Vec::new();
    for id in &input.msg_ids {
        match state.store.get_message(&app.id, id).await? {
            Some(msg)
                if msg.payload_removed_at.is_none() && may_resend(state, caller, &app.id, &msg.id, &ep.id).await? =>
            {
                found.push(msg.id)
            }
            _ => skipped.push(id.clone()),
        }
    }
    let scheduled = state.store.resend_many(&ep, &found, state.clock.now()).await?;
    state.dispatcher.wake();
    Ok(BulkResendOut { scheduled, skipped })
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

/// Starts a recover (`EndpointRecover`: what failed in the window) or a
/// replay (`EndpointReplay`: what the endpoint, as configured now, would
/// receive but never was sent) as a background task.
pub async fn start(
    state: &AppState,
    app_id: &str,
    endpoint_id: &str,
    input: RecoverIn,
    kind: TaskKind,
) -> ServiceResult<BackgroundTaskOut> {
    if let Some(until) = input.until
        && until <= input.since
    {
        return Err(ServiceError::body_field(&["until"], "must be after since"));
    }
    let app = find_app(state, app_id).await?;
    let ep = find_endpoint(state, &app.id, endpoint_id).await?;
    ensure_enabled(&ep)?;
    let window = Window {
        since: input.since,
        until: input.until,
    };
    let task = record_and_start(Worker::of(state), kind, ep, window).await?;
    Ok(task.into())
}

pub async fn list_tasks(state: &AppState, q: &QueryParams) -> ServiceResult<Listed<BackgroundTaskOut>> {
    let paging = Paging::from_query(q, Order::Descending)?;
    let rows = state.store.list_tasks(&paging.page).await?;
    Ok(
        paging.finish(rows.into_iter().map(BackgroundTaskOut::from).collect(), |t| {
            t.id.clone()
        }),
    )
}

pub async fn get_task(state: &AppState, task_id: &str) -> ServiceResult<BackgroundTaskOut> {
    let id = TaskId::parse(task_id).ok_or(ServiceError::NotFound("background task"))?;
    let task = state
        .store
        .get_task(&id)
        .await?
        .ok_or(ServiceError::NotFound("background task"))?;
    Ok(task.into())
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
pub async fn send_example(
    state: &AppState,
    app_id: &str,
    endpoint_id: &str,
    input: EventExampleIn,
) -> ServiceResult<MessageOut> {
    let app = find_app(state, app_id).await?;
    let ep = find_endpoint(state, &app.id, endpoint_id).await?;
    ensure_enabled(&ep)?;
    let et = state.store.get_event_type(&input.event_type).await?.ok_or_else(|| {
        ServiceError::body_field(
            &["eventType"],
            format!("'{}' is not in the event catalog", input.event_type),
        )
    })?;
    let index = input.example_index.unwrap_or(0);
    let payload = example(et.schemas.as_ref(), index).ok_or_else(|| {
        ServiceError::body_field(
            &["exampleIndex"],
            format!("'{}' has no example number {index}", et.name),
        )
    })?;
    let now = state.clock.now();
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
    Ok(msg.into())
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointStatsOut {
    pub success: i64,
    pub pending: i64,
    pub sending: i64,
    pub fail: i64,
    /// Always 0: Herald cancels no delivery (those it will not send because
    /// the endpoint was disabled are `dropped`). SDKs from 1.99 on require it.
    pub canceled: i64,
    /// Herald: waiting for the endpoint to be enabled (`whileDisabled: hold`).
    pub held: i64,
    /// Herald: not sent because the endpoint was disabled (`whileDisabled: drop`).
    pub dropped: i64,
    /// Herald: with `ordering: fifo`, deliveries waiting behind the one
    /// being sent or retried, whenever they were created (not windowed).
    pub waiting: i64,
}

/// Deliveries to this endpoint created from `since` (default: 28 days ago)
/// to `until` (default: now), by state.
pub async fn stats(
    state: &AppState,
    app_id: &str,
    endpoint_id: &str,
    q: &QueryParams,
) -> ServiceResult<EndpointStatsOut> {
    let app = find_app(state, app_id).await?;
    let ep = find_endpoint(state, &app.id, endpoint_id).await?;
    let window = Window {
        since: q
            .time("since")?
            .unwrap_or_else(|| state.clock.now() - chrono::Duration::days(28)),
        until: q.time("until")?,
    };
    let c = state.store.endpoint_stats(&ep.id, &window).await?;
    let waiting = state.store.waiting_behind_head(&ep.id).await?;
    Ok(EndpointStatsOut {
        waiting,
        success: c.success,
        pending: c.pending,
        sending: c.sending,
        fail: c.fail,
        canceled: 0,
        held: c.held,
        dropped: c.dropped,
    })
}

/// Messages looked at per transaction.
const BATCH: u32 = 500;
/// A running task not moved on for this long belongs to a dead node.
pub const STALE_AFTER: Duration = Duration::from_secs(60);

/// What a running task works with.
#[derive(Clone)]
pub struct Worker {
    pub store: Arc<dyn Store>,
    pub dispatcher: Dispatcher,
    pub clock: Clock,
    pub background: Background,
}

impl Worker {
    pub fn of(state: &AppState) -> Self {
        Self {
            store: state.store.clone(),
            dispatcher: state.dispatcher.clone(),
            clock: state.clock.clone(),
            background: state.background.clone(),
        }
    }
}

/// Records a new task for `endpoint` and starts it on the server's tasks.
async fn record_and_start(
    worker: Worker,
    kind: TaskKind,
    endpoint: Endpoint,
    window: Window,
) -> StoreResult<BackgroundTask> {
    let now = worker.clock.now();
    let task = BackgroundTask {
        id: TaskId::generate(),
        kind,
        status: TaskStatus::Running,
        app_id: endpoint.app_id.clone(),
        endpoint_id: Some(endpoint.id.clone()),
        params: json!({ "since": window.since, "until": window.until }),
        data: json!({ "scheduled": 0, "examined": 0 }),
        created_at: now,
        updated_at: now,
    };
    worker.store.create_task(&task).await?;
    worker
        .background
        .clone()
        .spawn(run(worker, task.clone(), endpoint, window));
    Ok(task)
}

/// Resumes the tasks of processes that died while running them.
pub async fn take_over_orphans(worker: Worker) {
    let store = worker.store.clone();
    let now = worker.clock.now();
    let stale_before = now - chrono::Duration::from_std(STALE_AFTER).unwrap_or_default();
    let tasks = match store.take_over_tasks(stale_before, now).await {
        Ok(tasks) => tasks,
        Err(e) => {
            tracing::warn!(error = %e, "cannot look for interrupted background tasks");
            return;
        }
    };
    for task in tasks {
        tracing::info!(task_id = %task.id, task = task.kind.name(), "resuming an interrupted background task");
        let endpoint = match &task.endpoint_id {
            Some(id) => store.get_endpoint(&task.app_id, id.as_str()).await.ok().flatten(),
            None => None,
        };
        let window = window_of(&task);
        match (endpoint, window) {
            (Some(endpoint), Some(window)) => {
                worker
                    .background
                    .clone()
                    .spawn(run(worker.clone(), task, endpoint, window));
            }
            _ => finish(&worker, task, Err("its endpoint was deleted".to_owned())).await,
        }
    }
}

fn window_of(task: &BackgroundTask) -> Option<Window> {
    let since: DateTime<Utc> = serde_json::from_value(task.params.get("since")?.clone()).ok()?;
    let until: Option<DateTime<Utc>> = serde_json::from_value(task.params.get("until")?.clone()).ok()?;
    Some(Window { since, until })
}

/// Works through the window batch by batch. At shutdown it stops between
/// batches and leaves the task running, for the next start to take over.
async fn run(worker: Worker, mut task: BackgroundTask, endpoint: Endpoint, window: Window) {
    let store = worker.store.as_ref();
    let recovery = match task.kind {
        TaskKind::EndpointRecover => Recovery::Failed,
        TaskKind::EndpointReplay => Recovery::Missing,
    };
    let mut after: Option<MessageId> = None;
    let (mut scheduled, mut examined) = (0_u64, 0_u64);
    let outcome = loop {
        if worker.background.shutdown().is_cancelled() {
            return;
        }
        let batch = match store
            .recovery_batch(&endpoint, recovery, &window, after.as_ref(), BATCH)
            .await
        {
            Ok(batch) => batch,
            Err(e) => break Err(e.to_string()),
        };
        let Some(last) = batch.last() else { break Ok(()) };
        after = Some(last.id.clone());
        examined += batch.len() as u64;
        // A replay sends only what the endpoint, as configured now, wants.
        let ids: Vec<MessageId> = batch
            .iter()
            .filter(|m| recovery == Recovery::Failed || endpoint.wants(m))
            .map(|m| m.id.clone())
            .collect();
        match store.resend_many(&endpoint, &ids, worker.clock.now()).await {
            Ok(n) => scheduled += n,
            Err(e) => break Err(e.to_string()),
        }
        worker.dispatcher.wake();
        task.data = json!({ "scheduled": scheduled, "examined": examined });
        task.updated_at = worker.clock.now();
        if let Err(e) = store.update_task(&task).await {
            break Err(e.to_string());
        }
    };
    task.data = json!({ "scheduled": scheduled, "examined": examined });
    finish(&worker, task, outcome).await;
}

async fn finish(worker: &Worker, mut task: BackgroundTask, outcome: Result<(), String>) {
    match outcome {
        Ok(()) => task.status = TaskStatus::Finished,
        Err(reason) => {
            tracing::error!(task_id = %task.id, %reason, "a background task failed");
            task.status = TaskStatus::Failed;
            task.data["error"] = json!(reason);
        }
    }
    task.updated_at = worker.clock.now();
    if let Err(e) = worker.store.update_task(&task).await {
        tracing::error!(error = %e, task_id = %task.id, "recording a background task's end failed");
    }
}
