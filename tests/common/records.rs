//! Records the store stories write directly, without a server.

use std::sync::Arc;

use herald::domain::clock::Clock;
use herald::domain::ids::{AppId, AttemptId, MessageId};
use herald::domain::status::{DeliveryStatus, TriggerType};
use herald::store::{Attempt, DeliveryJob, Message};

/// A message of `app`, just published, with a small JSON payload.
pub fn message(app: &AppId, event_type: &str, event_id: Option<&str>) -> Message {
    Message {
        id: MessageId::generate(),
        app_id: app.clone(),
        event_type: event_type.into(),
        event_id: event_id.map(str::to_owned),
        payload: Arc::from(r#"{"a": 1}"#),
        channels: None,
        tags: None,
        audience: None,
        expires_at: None,
        payload_removed_at: None,
        created_at: Clock::system().now(),
    }
}

/// An attempt at `job`, just made: a 200 when `ok`, else a 500.
pub fn attempt(job: &DeliveryJob, ok: bool) -> Attempt {
    Attempt {
        id: AttemptId::generate(),
        msg_id: job.msg_id.clone(),
        endpoint_id: job.endpoint.id.clone(),
        url: job.endpoint.url.clone(),
        response: String::new(),
        response_status_code: if ok { 200 } else { 500 },
        response_duration_ms: 1,
        status: if ok {
            DeliveryStatus::Success
        } else {
            DeliveryStatus::Fail
        },
        trigger_type: TriggerType::Scheduled,
        created_at: Clock::system().now(),
        request_headers: None,
        request_body: None,
        response_headers: None,
        event: None,
    }
}
