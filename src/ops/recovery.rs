//! Recover and replay-missing: resend, in the background, what an endpoint
//! lost in a time window, and report progress as a background task.
//!
//! A task is idempotent: messages it already scheduled have a pending or
//! successful delivery and are no longer candidates. So a task cut short by
//! a crash or shutdown is simply run again from the start when taken over.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::delivery::Dispatcher;
use crate::domain::ids::{MessageId, TaskId};
use crate::domain::status::{TaskKind, TaskStatus};
use crate::store::{BackgroundTask, Endpoint, Recovery, Store, StoreResult, Window};

/// Messages looked at per transaction.
const BATCH: u32 = 500;
/// A running task not moved on for this long belongs to a dead node.
pub const STALE_AFTER: Duration = Duration::from_secs(60);

/// Records a new task for `endpoint` and starts it.
pub async fn start(
    store: Arc<dyn Store>,
    dispatcher: Dispatcher,
    kind: TaskKind,
    endpoint: Endpoint,
    window: Window,
) -> StoreResult<BackgroundTask> {
    let now = crate::store::now();
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
    store.create_task(&task).await?;
    tokio::spawn(run(store, dispatcher, task.clone(), endpoint, window));
    Ok(task)
}

/// Resumes the tasks of processes that died while running them.
pub async fn take_over_orphans(store: Arc<dyn Store>, dispatcher: Dispatcher) {
    let now = crate::store::now();
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
                tokio::spawn(run(store.clone(), dispatcher.clone(), task, endpoint, window));
            }
            _ => finish(store.as_ref(), task, Err("its endpoint was deleted".to_owned())).await,
        }
    }
}

fn window_of(task: &BackgroundTask) -> Option<Window> {
    let since: DateTime<Utc> = serde_json::from_value(task.params.get("since")?.clone()).ok()?;
    let until: Option<DateTime<Utc>> = serde_json::from_value(task.params.get("until")?.clone()).ok()?;
    Some(Window { since, until })
}

async fn run(
    store: Arc<dyn Store>,
    dispatcher: Dispatcher,
    mut task: BackgroundTask,
    endpoint: Endpoint,
    window: Window,
) {
    let recovery = match task.kind {
        TaskKind::EndpointRecover => Recovery::Failed,
        TaskKind::EndpointReplay => Recovery::Missing,
    };
    let mut after: Option<MessageId> = None;
    let (mut scheduled, mut examined) = (0_u64, 0_u64);
    let outcome = loop {
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
        match store.resend_many(&endpoint, &ids, crate::store::now()).await {
            Ok(n) => scheduled += n,
            Err(e) => break Err(e.to_string()),
        }
        dispatcher.wake();
        task.data = json!({ "scheduled": scheduled, "examined": examined });
        task.updated_at = crate::store::now();
        if let Err(e) = store.update_task(&task).await {
            break Err(e.to_string());
        }
    };
    task.data = json!({ "scheduled": scheduled, "examined": examined });
    finish(store.as_ref(), task, outcome).await;
}

async fn finish(store: &dyn Store, mut task: BackgroundTask, outcome: Result<(), String>) {
    match outcome {
        Ok(()) => task.status = TaskStatus::Finished,
        Err(reason) => {
            tracing::error!(task_id = %task.id, %reason, "a background task failed");
            task.status = TaskStatus::Failed;
            task.data["error"] = json!(reason);
        }
    }
    task.updated_at = crate::store::now();
    if let Err(e) = store.update_task(&task).await {
        tracing::error!(error = %e, task_id = %task.id, "recording a background task's end failed");
    }
}
