//! The entities Herald keeps (applications, endpoints, messages, attempts,
//! tokens) and the records the store hands out, as plain values.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::domain::access::Scope;
use crate::domain::filter::{Publication, Subscription, matches};
use crate::domain::format::PayloadFormat;
use crate::domain::ids::{AppId, AttemptId, DeliveryId, EndpointId, MessageId, TaskId, TokenId};
use crate::domain::secret::EndpointSecret;
use crate::domain::status::{DeliveryOrder, DeliveryStatus, TaskKind, TaskStatus, TriggerType, WhileDisabled};

pub type Metadata = BTreeMap<String, String>;

#[derive(Debug, Clone)]
pub struct Application {
    pub id: AppId,
    pub uid: Option<String>,
    pub name: String,
    pub rate_limit: Option<i64>,
    pub metadata: Metadata,
    /// The delivery profile of endpoints that name none.
    pub profile: Option<String>,
    /// Check payloads against the event type's schema; `None` follows the server.
    pub validate_payloads: Option<bool>,
    /// Days its messages are kept, shorter than the server's window; `None` follows the server.
    pub history_retention_days: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Application {
    /// A new application with default settings.
    pub fn new(name: String, uid: Option<String>, now: DateTime<Utc>) -> Self {
        Self {
            id: AppId::generate(),
            uid,
            name,
            rate_limit: None,
            metadata: Metadata::new(),
            profile: None,
            validate_payloads: None,
            history_retention_days: None,
            created_at: now,
            updated_at: now,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Endpoint {
    pub id: EndpointId,
    pub app_id: AppId,
    pub uid: Option<String>,
    pub url: String,
    pub description: String,
    pub filter_types: Option<Vec<String>>,
    pub channels: Option<Vec<String>>,
    pub disabled: bool,
    pub while_disabled: WhileDisabled,
    /// Parallel, or one at a time in publish order.
    pub ordering: DeliveryOrder,
    pub rate_limit: Option<i64>,
    pub metadata: Metadata,
    pub headers: BTreeMap<String, String>,
    pub secret: EndpointSecret,
    /// The secret before the last rotation, still signing until it expires.
    pub previous_secret: Option<(EndpointSecret, DateTime<Utc>)>,
    /// The delivery profile; `None` follows the application's.
    pub profile: Option<String>,
    /// Sent with the `get-challenge` check so the receiver knows it is Herald.
    pub verify_token: Option<String>,
    pub format: PayloadFormat,
    /// Why Herald disabled the endpoint (410 Gone, a failed check).
    pub disabled_reason: Option<String>,
    /// Whose endpoint this is: it receives only messages whose audience is
    /// empty or names this owner.
    pub owner_id: Option<String>,
    /// Since when its deliveries have been exhausted with no success between.
    pub failing_since: Option<DateTime<Utc>>,
    /// When the profile's endpoint check is next repeated.
    pub reverify_at: Option<DateTime<Utc>>,
    /// False only where the server allows skipping certificate checks
    /// (a receiver with a self-signed certificate, in development).
    pub tls_verify: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Endpoint {
    /// A new, enabled endpoint receiving everything, with default settings.
    pub fn new(app_id: AppId, url: String, secret: EndpointSecret, now: DateTime<Utc>) -> Self {
        Self {
            id: EndpointId::generate(),
            app_id,
            uid: None,
            url,
            description: String::new(),
            filter_types: None,
            channels: None,
            disabled: false,
            while_disabled: WhileDisabled::default(),
            ordering: DeliveryOrder::default(),
            rate_limit: None,
            metadata: Metadata::new(),
            headers: BTreeMap::new(),
            secret,
            previous_secret: None,
            profile: None,
            verify_token: None,
            format: PayloadFormat::Raw,
            disabled_reason: None,
            reverify_at: None,
            owner_id: None,
            failing_since: None,
            tls_verify: true,
            created_at: now,
            updated_at: now,
        }
    }

    /// Whether the endpoint, as it is now, receives `msg` (for replays).
    pub fn wants(&self, msg: &Message) -> bool {
        let sub = Subscription {
            event_types: self.filter_types.as_deref(),
            channels: self.channels.as_deref(),
            owner: self.owner_id.as_deref(),
        };
        let publication = Publication {
            event_type: &msg.event_type,
            channels: msg.channels.as_deref(),
            audience: msg.audience.as_deref(),
        };
        matches(&sub, &publication)
    }

    /// Secrets that sign a request sent at `now`: the current one first.
    pub fn signing_secrets(&self, now: DateTime<Utc>) -> Vec<EndpointSecret> {
        let mut secrets = vec![self.secret.clone()];
        if let Some((old, until)) = &self.previous_secret
            && *until > now
        {
            secrets.push(old.clone());
        }
        secrets
    }
}

#[derive(Debug, Clone)]
pub struct EventType {
    pub name: String,
    pub description: String,
    pub archived: bool,
    pub deprecated: bool,
    pub schemas: Option<serde_json::Value>,
    pub group_name: Option<String>,
    pub feature_flags: Option<Vec<String>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Message {
    pub id: MessageId,
    pub app_id: AppId,
    pub event_type: String,
    pub event_id: Option<String>,
    /// The payload exactly as published: these bytes are signed and sent.
    pub payload: Arc<str>,
    pub channels: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
    /// Owners who may see this message; `None` means everyone.
    pub audience: Option<Vec<String>>,
    /// When the retention period ends and the cleaner may remove the payload.
    pub expires_at: Option<DateTime<Utc>>,
    /// When the payload was removed (expired or expunged); it reads `{}` since.
    pub payload_removed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Attempt {
    pub id: AttemptId,
    pub msg_id: MessageId,
    pub endpoint_id: EndpointId,
    pub url: String,
    pub response: String,
    pub response_status_code: i64,
    pub response_duration_ms: i64,
    pub status: DeliveryStatus,
    pub trigger_type: TriggerType,
    pub created_at: DateTime<Utc>,
    /// What was sent, secrets in custom headers masked.
    pub request_headers: Option<Headers>,
    /// The body sent. Written as `None` when it was the payload as
    /// published (stored once, on the message); read back resolved.
    pub request_body: Option<String>,
    pub response_headers: Option<Headers>,
    /// The message's event, read with the attempt for history views.
    pub event: Option<AttemptEvent>,
}

impl Attempt {
    /// The answer's class: 2 for 2xx … 5 for 5xx, 0 when none came.
    pub fn status_class(&self) -> i64 {
        status_class(self.response_status_code)
    }

    /// A delivery that was never tried, as history shows it.
    pub fn not_sent(msg: &Message, endpoint_id: &str, url: &str, reason: &str) -> Self {
        Self {
            id: AttemptId::generate(),
            msg_id: msg.id.clone(),
            endpoint_id: EndpointId::from_trusted(endpoint_id.to_owned()),
            url: url.to_owned(),
            response: reason.to_owned(),
            response_status_code: 0,
            response_duration_ms: 0,
            status: DeliveryStatus::Fail,
            trigger_type: TriggerType::Scheduled,
            created_at: msg.created_at,
            request_headers: None,
            request_body: Some(String::new()),
            response_headers: None,
            event: None,
        }
    }
}

/// Why a delivery to a disabled endpoint with `whileDisabled: drop` was
/// not sent, whether dropped when published or when claimed.
pub const DROPPED_WHILE_DISABLED: &str =
    "not sent: the endpoint was disabled and drops messages while disabled (whileDisabled: drop)";

pub type Headers = BTreeMap<String, String>;

/// The message an attempt belongs to, as history shows it.
#[derive(Debug, Clone)]
pub struct AttemptEvent {
    pub event_type: String,
    pub event_id: Option<String>,
    pub msg_created_at: DateTime<Utc>,
}

/// Deliveries of one endpoint by state, over a period.
#[derive(Debug, Clone, Default)]
pub struct DeliveryCounts {
    pub success: i64,
    pub pending: i64,
    pub sending: i64,
    pub fail: i64,
    pub held: i64,
    pub dropped: i64,
}

/// Attempts to every endpoint in one period of a window, by outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficBucket {
    /// Periods since the window's start.
    pub period: i64,
    pub succeeded: i64,
    /// Failed attempts of deliveries that gave up.
    pub failed: i64,
    /// Failed attempts of deliveries still being retried, or that later
    /// succeeded.
    pub retrying: i64,
}

/// Attempts to one endpoint in one period of a recent window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityBucket {
    pub endpoint_id: EndpointId,
    /// Periods since the window's start.
    pub period: i64,
    pub succeeded: i64,
    pub attempts: i64,
}

/// A long operation run in the background; `data` reports its progress.
#[derive(Debug, Clone)]
pub struct BackgroundTask {
    pub id: TaskId,
    pub kind: TaskKind,
    pub status: TaskStatus,
    pub app_id: AppId,
    pub endpoint_id: Option<EndpointId>,
    pub params: serde_json::Value,
    pub data: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Which messages a recovery looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Deliveries to the endpoint that failed, with no later success or retry pending.
    Failed,
    /// Messages the endpoint never had sent: no delivery, or only dropped ones.
    Missing,
}

/// A time window over message creation: `since` included, `until` excluded.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub since: DateTime<Utc>,
    pub until: Option<DateTime<Utc>>,
}

/// A claimed delivery with everything needed to send it.
#[derive(Debug, Clone)]
pub struct DeliveryJob {
    pub delivery_id: DeliveryId,
    pub lease_token: i64,
    pub msg_id: MessageId,
    pub app_id: AppId,
    pub endpoint: Endpoint,
    /// The application's profile, for an endpoint that names none.
    pub app_profile: Option<String>,
    pub event_type: String,
    pub event_id: Option<String>,
    pub msg_created_at: DateTime<Utc>,
    pub payload: Arc<str>,
    /// Attempts made before this one.
    pub attempts_made: u32,
    pub trigger_type: TriggerType,
}

/// What the metrics read from the store on each scrape.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    /// Pending and sending deliveries.
    pub queued: i64,
    /// The due time of the most overdue of them.
    pub most_overdue: Option<DateTime<Utc>>,
    pub endpoints_healthy: i64,
    pub endpoints_failing: i64,
    pub endpoints_disabled: i64,
}

/// Rows one history sweep batch removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    pub messages: u64,
    pub deliveries: u64,
    pub attempts: u64,
}

impl Removed {
    /// Adds another batch's rows.
    pub fn add(&mut self, other: Self) {
        self.messages += other.messages;
        self.deliveries += other.deliveries;
        self.attempts += other.attempts;
    }
}

/// A status code's class as stored and filtered: 1 to 5, or 0 for none.
pub fn status_class(code: i64) -> i64 {
    if (100..600).contains(&code) { code / 100 } else { 0 }
}

/// An API token besides the configured admin token. Only the SHA-256 of the
/// token is kept; the token itself is shown once, when it is made.
#[derive(Debug, Clone)]
pub struct ApiToken {
    pub id: TokenId,
    pub name: String,
    /// Hex SHA-256 of the token.
    pub token_hash: String,
    pub scope: Scope,
    /// Requests per second this token may make; `None` follows the server.
    pub rate_limit: Option<u32>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// When it last authenticated, to the minute; `None` if never.
    pub last_used_at: Option<DateTime<Utc>>,
}

impl ApiToken {
    /// Neither revoked nor expired at `now`.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|until| now < until)
    }
}
