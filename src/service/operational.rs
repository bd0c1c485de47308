//! The operator email outbox as the API lists it: what Herald queued to
//! tell its operators, and whether it went out.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::ServiceResult;
use super::input::QueryParams;
use super::list::{Listed, Paging};
use crate::store::{EmailCounts, EmailRecord, EmailState, Order};

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperatorEmailOut {
    pub id: String,
    pub subject: String,
    pub body: String,
    /// `pending` (waiting for its next try, or being sent), `sent` (the
    /// SMTP server accepted it) or `failed` (given up).
    pub state: String,
    /// Tries made so far.
    pub tries: u32,
    /// When the next try is due, while pending.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Why the last try failed.
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

impl From<EmailRecord> for OperatorEmailOut {
    fn from(e: EmailRecord) -> Self {
        Self {
            id: e.id.to_string(),
            subject: e.subject,
            body: e.body,
            state: e.state.name().to_owned(),
            tries: e.tries,
            next_attempt_at: e.next_attempt_at,
            last_error: e.last_error,
            created_at: e.created_at,
            sent_at: e.sent_at,
        }
    }
}

/// How many operator emails are in each state, for `GET /health`.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct OperatorEmailCounts {
    pub pending: i64,
    pub sent: i64,
    pub failed: i64,
}

impl From<EmailCounts> for OperatorEmailCounts {
    fn from(c: EmailCounts) -> Self {
        Self {
            pending: c.pending,
            sent: c.sent,
            failed: c.failed,
        }
    }
}

/// Operator emails, newest first; `state` keeps one state only.
pub async fn list_emails(state: &AppState, q: &QueryParams) -> ServiceResult<Listed<OperatorEmailOut>> {
    let wanted = match q.str("state") {
        None => None,
        Some(text) => Some(
            EmailState::parse(text)
                .ok_or_else(|| q.refuse("state", format!("'{text}' is not pending, sent or failed")))?,
        ),
    };
    let paging = Paging::from_query(q, Order::Descending)?;
    let rows = state.store.list_emails(&paging.page, wanted).await?;
    Ok(paging.finish(rows.into_iter().map(OperatorEmailOut::from).collect(), |e| e.id.clone()))
}
