//! What Herald tells its operators about itself, as values: operational
//! webhooks (ordinary messages in an application of Herald's own,
//! `herald-operational`) and operator emails. They are built here, without
//! I/O, so that the store can write them in the same transaction as the
//! change they report: a change and its notice commit together or not at
//! all (the transactional outbox that carries every message).

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::ids::{AppId, EmailId, MessageId};
use super::model::{Application, Attempt, DeliveryJob, Endpoint, Message};

/// The uid of the application that carries operational webhooks.
pub const OPERATIONAL_APP_UID: &str = "herald-operational";

/// What happened to an endpoint, as operational webhooks name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointEvent {
    Created,
    Updated,
    Deleted,
}

impl EndpointEvent {
    pub fn name(self) -> &'static str {
        match self {
            Self::Created => "endpoint.created",
            Self::Updated => "endpoint.updated",
            Self::Deleted => "endpoint.deleted",
        }
    }
}

/// What happened to a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptEvent {
    /// A delivery failed its fourth attempt in a row and will be retried.
    Failing,
    /// A delivery ran out of retries.
    Exhausted,
    /// A delivery that was reported failing succeeded.
    Recovered,
}

impl AttemptEvent {
    pub fn name(self) -> &'static str {
        match self {
            Self::Failing => "message.attempt.failing",
            Self::Exhausted => "message.attempt.exhausted",
            Self::Recovered => "message.attempt.recovered",
        }
    }
}

/// Who switched an endpoint off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisableTrigger {
    Manual,
    Automatic,
}

/// One operator email, queued to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorEmail {
    pub id: EmailId,
    pub subject: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
}

/// What a change tells the operator: written with the change, in its
/// transaction. Empty when nobody listens.
#[derive(Debug, Clone, Default)]
pub struct Notices {
    /// Messages to the operational application, fanned out like any other.
    pub messages: Vec<Message>,
    pub emails: Vec<OperatorEmail>,
}

impl Notices {
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty() && self.emails.is_empty()
    }

    pub fn and(mut self, other: Notices) -> Self {
        self.messages.extend(other.messages);
        self.emails.extend(other.emails);
        self
    }
}

/// Who listens: the operational application (when
/// HERALD_OPERATIONAL_WEBHOOK_URL is set) and the operator's inbox (when
/// email is configured). Builds the notices of each event for them.
#[derive(Debug, Clone, Default)]
pub struct Listeners {
    pub operational_app: Option<AppId>,
    pub email: bool,
}

impl Listeners {
    /// Nothing is reported about the operational application itself, or
    /// its own failures would report themselves without end.
    fn hears_about(&self, app: &AppId) -> bool {
        self.operational_app.as_ref() != Some(app)
    }

    fn webhook(&self, about: &AppId, event_type: &str, data: Value, now: DateTime<Utc>) -> Option<Message> {
        let ops_app = self.operational_app.as_ref()?;
        if !self.hears_about(about) {
            return None;
        }
        let payload = json!({ "type": event_type, "timestamp": rfc3339(now), "data": data });
        Some(Message {
            id: MessageId::generate(),
            app_id: ops_app.clone(),
            event_type: event_type.to_owned(),
            event_id: None,
            payload: payload.to_string().into(),
            channels: None,
            tags: None,
            audience: None,
            expires_at: None,
            payload_removed_at: None,
            created_at: now,
        })
    }

    fn email(&self, about: &AppId, subject: String, body: String, now: DateTime<Utc>) -> Option<OperatorEmail> {
        (self.email && self.hears_about(about)).then(|| OperatorEmail {
            id: EmailId::generate(),
            subject,
            body,
            created_at: now,
        })
    }

    pub fn endpoint_changed(
        &self,
        event: EndpointEvent,
        app: &Application,
        ep: &Endpoint,
        now: DateTime<Utc>,
    ) -> Notices {
        Notices {
            messages: self
                .webhook(&app.id, event.name(), endpoint_data(app, ep), now)
                .into_iter()
                .collect(),
            emails: Vec::new(),
        }
    }

    /// A person switched a disabled endpoint back on.
    pub fn endpoint_enabled(&self, app: &Application, ep: &Endpoint, now: DateTime<Utc>) -> Notices {
        Notices {
            messages: self
                .webhook(&app.id, "endpoint.enabled", endpoint_data(app, ep), now)
                .into_iter()
                .collect(),
            emails: Vec::new(),
        }
    }

    /// An endpoint switched off; Herald's own decision is also emailed.
    pub fn endpoint_disabled(
        &self,
        app: &Application,
        ep: &Endpoint,
        trigger: DisableTrigger,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Notices {
        let mut data = endpoint_data(app, ep);
        data["trigger"] = json!(match trigger {
            DisableTrigger::Manual => "manual",
            DisableTrigger::Automatic => "automatic",
        });
        data["failSince"] = json!(ep.failing_since.map(rfc3339));
        data["reason"] = json!(reason);
        let messages = self
            .webhook(&app.id, "endpoint.disabled", data, now)
            .into_iter()
            .collect();
        let email = (trigger == DisableTrigger::Automatic).then(|| {
            let subject = format!("Herald disabled endpoint {} of {}", ep.id, app.name);
            let body = format!(
                "Herald stopped delivering to an endpoint.\n\n\
                 Application: {} ({})\nEndpoint: {} {}\nURL: {}\nReason: {}\n\n\
                 Fix the receiver, then enable the endpoint again; \
                 POST .../endpoint/{}/recover resends what failed meanwhile.\n",
                app.name,
                app.id,
                ep.id,
                ep.uid.as_deref().unwrap_or(""),
                ep.url,
                reason.unwrap_or("disabled by Herald"),
                ep.id
            );
            self.email(&app.id, subject, body, now)
        });
        Notices {
            messages,
            emails: email.flatten().into_iter().collect(),
        }
    }

    /// An attempt worth reporting. `became_failing`: this exhaustion turns
    /// a healthy endpoint failing, which is worth an email; later ones are not.
    pub fn attempt(
        &self,
        event: AttemptEvent,
        app: &Application,
        job: &DeliveryJob,
        attempt: &Attempt,
        became_failing: bool,
        now: DateTime<Utc>,
    ) -> Notices {
        let data = json!({
            "appId": app.id.as_str(),
            "appUid": app.uid,
            "msgId": job.msg_id.as_str(),
            "msgEventId": job.event_id,
            "endpointId": job.endpoint.id.as_str(),
            "lastAttempt": {
                "id": attempt.id.as_str(),
                "timestamp": rfc3339(attempt.created_at),
                "responseStatusCode": attempt.response_status_code,
            },
        });
        let messages = self.webhook(&app.id, event.name(), data, now).into_iter().collect();
        let email = (event == AttemptEvent::Exhausted && became_failing).then(|| {
            let ep = &job.endpoint;
            let subject = format!("Herald: endpoint {} of {} is failing", ep.id, app.name);
            let body = format!(
                "A message ran out of delivery attempts, so the endpoint is now failing.\n\n\
                 Application: {} ({})\nEndpoint: {} {}\nURL: {}\nMessage: {} ({})\n\
                 Last answer: {} {}\n\n\
                 Herald keeps trying new messages. Once the receiver is fixed, \
                 POST .../endpoint/{}/recover resends what failed.\n",
                app.name,
                app.id,
                ep.id,
                ep.uid.as_deref().unwrap_or(""),
                ep.url,
                job.msg_id,
                job.event_type,
                attempt.response_status_code,
                attempt.response.chars().take(200).collect::<String>(),
                ep.id
            );
            self.email(&app.id, subject, body, now)
        });
        Notices {
            messages,
            emails: email.flatten().into_iter().collect(),
        }
    }
}

fn endpoint_data(app: &Application, ep: &Endpoint) -> Value {
    json!({
        "appId": app.id.as_str(),
        "appUid": app.uid,
        "endpointId": ep.id.as_str(),
        "endpointUid": ep.uid,
    })
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Where a queued email stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmailState {
    /// Waiting for its next try (or being tried now, under a lease).
    Pending,
    /// The SMTP server accepted it.
    Sent,
    /// Given up after the schedule ran out.
    Failed,
}

impl EmailState {
    pub const ALL: [EmailState; 3] = [Self::Pending, Self::Sent, Self::Failed];

    pub fn name(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == text)
    }
}

/// A queued email as the outbox lists it.
#[derive(Debug, Clone)]
pub struct EmailRecord {
    pub id: EmailId,
    pub subject: String,
    pub body: String,
    pub state: EmailState,
    /// Tries made so far (a try under way counts).
    pub tries: u32,
    /// When the next try is due (pending only).
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

/// An email claimed for sending: the lease holder alone may mark it.
#[derive(Debug, Clone)]
pub struct ClaimedEmail {
    pub id: EmailId,
    pub subject: String,
    pub body: String,
    /// Tries made, this one included.
    pub tries: u32,
    pub created_at: DateTime<Utc>,
    pub lease_token: i64,
}

/// How many emails are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct EmailCounts {
    pub pending: i64,
    pub sent: i64,
    pub failed: i64,
}

/// When a failed email is tried again: the delays in order, the last one
/// repeated, until `give_up_after` from when the email was queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailSchedule {
    pub delays: Vec<Duration>,
    pub give_up_after: Duration,
}

impl Default for EmailSchedule {
    /// 1m, 5m, 30m, 2h, then hourly, for a day.
    fn default() -> Self {
        Self {
            delays: [60, 300, 1800, 7200, 3600].map(Duration::from_secs).to_vec(),
            give_up_after: Duration::from_secs(24 * 3600),
        }
    }
}

impl EmailSchedule {
    /// Comma-separated delays, e.g. "1m,5m,30m,2h,1h".
    pub fn parse_delays(text: &str) -> Result<Vec<Duration>, String> {
        let delays = text
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(|d| humantime::parse_duration(d).map_err(|e| format!("'{d}': {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        if delays.is_empty() || delays.iter().any(Duration::is_zero) {
            return Err("expected one or more delays longer than 0s, e.g. 1m,5m,30m,2h,1h".to_owned());
        }
        Ok(delays)
    }

    /// When to try again after failed try number `tries` (from 1), or
    /// `None`: give up, the next try would fall past the limit.
    pub fn retry_at(&self, tries: u32, created_at: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let index = usize::try_from(tries.saturating_sub(1)).unwrap_or(usize::MAX);
        let delay = self.delays.get(index).or(self.delays.last())?;
        let at = now + chrono::Duration::from_std(*delay).ok()?;
        let limit = created_at + chrono::Duration::from_std(self.give_up_after).ok()?;
        (at <= limit).then_some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::secret::{EndpointSecret, SecretKind};

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn the_default_schedule_backs_off_then_goes_hourly_for_a_day() {
        let s = EmailSchedule::default();
        let created = at(0);
        let mut now = created;
        let mut waits = Vec::new();
        let mut tries = 1;
        while let Some(next) = s.retry_at(tries, created, now) {
            waits.push((next - now).num_seconds());
            now = next;
            tries += 1;
        }
        assert_eq!(&waits[..5], &[60, 300, 1800, 7200, 3600]);
        assert!(waits[5..].iter().all(|w| *w == 3600));
        assert!((now - created).num_hours() <= 24, "{now}");
        assert!((now - created).num_hours() >= 23, "{now}");
    }

    #[test]
    fn delays_parse_and_refuse_nonsense() {
        assert_eq!(
            EmailSchedule::parse_delays("1s, 2m").unwrap(),
            vec![Duration::from_secs(1), Duration::from_secs(120)]
        );
        assert!(EmailSchedule::parse_delays("").is_err());
        assert!(EmailSchedule::parse_delays("0s").is_err());
        assert!(EmailSchedule::parse_delays("soon").is_err());
    }

    #[test]
    fn nothing_is_built_for_nobody_nor_about_the_operational_app() {
        let now = at(0);
        let app = Application::new("Acme".into(), None, now);
        let ep = Endpoint::new(
            app.id.clone(),
            "https://example.test/".into(),
            EndpointSecret::generate(SecretKind::StandardHmac),
            now,
        );
        let nobody = Listeners::default();
        assert!(
            nobody
                .endpoint_changed(EndpointEvent::Created, &app, &ep, now)
                .is_empty()
        );
        assert!(
            nobody
                .endpoint_disabled(&app, &ep, DisableTrigger::Automatic, Some("gone"), now)
                .is_empty()
        );

        let everyone = Listeners {
            operational_app: Some(AppId::generate()),
            email: true,
        };
        let n = everyone.endpoint_disabled(&app, &ep, DisableTrigger::Automatic, Some("gone"), now);
        assert_eq!((n.messages.len(), n.emails.len()), (1, 1));
        assert_eq!(n.messages[0].event_type, "endpoint.disabled");
        let payload: Value = serde_json::from_str(&n.messages[0].payload).unwrap();
        assert_eq!(payload["data"]["reason"], "gone");
        assert_eq!(payload["data"]["trigger"], "automatic");
        let manual = everyone.endpoint_disabled(&app, &ep, DisableTrigger::Manual, None, now);
        assert_eq!((manual.messages.len(), manual.emails.len()), (1, 0));

        let ops = Listeners {
            operational_app: Some(app.id.clone()),
            email: true,
        };
        assert!(
            ops.endpoint_disabled(&app, &ep, DisableTrigger::Automatic, None, now)
                .is_empty()
        );
    }
}
