//! What the store keeps, in domain types.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::domain::format::PayloadFormat;
use crate::domain::ids::{AppId, AttemptId, DeliveryId, EndpointId, MessageId};
use crate::domain::secret::EndpointSecret;
use crate::domain::status::{DeliveryStatus, TriggerType};

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
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
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
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Endpoint {
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
