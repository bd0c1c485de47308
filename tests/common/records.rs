//! Records the store stories write directly, without a server.

use herald::domain::clock::Clock;
use herald::domain::ids::AttemptId;
use herald::domain::status::{DeliveryStatus, TriggerType};
use herald::store::{Attempt, DeliveryJob};

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
