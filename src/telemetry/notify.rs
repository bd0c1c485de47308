//! Telling the operator: operational webhooks and emails.
//!
//! Operational webhooks are ordinary Herald messages in an application of
//! Herald's own (`herald-operational`), so they are stored, signed, retried
//! and listed like any other, and an operator may add more endpoints to it
//! (a Slack-formatted one, say). Emails are best effort: one try, logged.

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use tokio_util::task::TaskTracker;

use super::email::{EmailError, Mailer};
use crate::config::Config;
use crate::domain::clock::Clock;
use crate::domain::ids::{AppId, MessageId};
use crate::domain::secret::{EndpointSecret, SecretKind};
use crate::store::{Application, Attempt, DeliveryJob, Endpoint, Message, Store, StoreError};

/// The uid of the application that carries operational webhooks.
pub const OPERATIONAL_APP_UID: &str = "herald-operational";
/// The uid of its endpoint pointing at `HERALD_OPERATIONAL_WEBHOOK_URL`.
pub const OPERATIONAL_ENDPOINT_UID: &str = "operational";

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("cannot prepare operational webhooks: {0}")]
    Store(#[from] StoreError),
    #[error("cannot prepare operator emails: {0}")]
    Email(#[from] EmailError),
}

/// What happened to an endpoint, as operational webhooks name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointEvent {
    Created,
    Updated,
    Deleted,
}

impl EndpointEvent {
    fn name(self) -> &'static str {
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
    fn name(self) -> &'static str {
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

#[derive(Clone, Default)]
pub struct Notifier {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    store: Arc<dyn Store>,
    clock: Clock,
    /// Where operator emails are sent from, so shutdown waits for them.
    tasks: TaskTracker,
    /// Where operational webhooks are published, when configured.
    operational_app: Option<AppId>,
    mailer: Option<Mailer>,
}

impl Notifier {
    /// Prepares what the configuration asks for: the operational
    /// application and its endpoint (created, or brought up to date), and
    /// the mailer. Emails are sent on `tasks`.
    pub async fn start(
        store: Arc<dyn Store>,
        config: &Config,
        clock: Clock,
        tasks: TaskTracker,
    ) -> Result<Self, NotifyError> {
        let operational_app = match &config.operational_webhook {
            Some(hook) => Some(prepare_operational_app(store.as_ref(), hook, clock.now()).await?),
            None => None,
        };
        let mailer = match &config.email {
            Some(e) => Some(Mailer::from_settings(e)?),
            None => None,
        };
        if operational_app.is_none() && mailer.is_none() {
            return Ok(Self::default());
        }
        Ok(Self {
            inner: Some(Arc::new(Inner {
                store,
                clock,
                tasks,
                operational_app,
                mailer,
            })),
        })
    }

    /// The operational application's id, which never reports on itself.
    pub fn operational_app(&self) -> Option<&AppId> {
        self.inner.as_ref()?.operational_app.as_ref()
    }

    pub async fn endpoint_changed(&self, event: EndpointEvent, app: &Application, ep: &Endpoint) {
        let data = endpoint_data(app, ep);
        self.publish(&app.id, event.name(), data).await;
    }

    pub async fn endpoint_disabled(
        &self,
        app: &Application,
        ep: &Endpoint,
        trigger: DisableTrigger,
        reason: Option<&str>,
    ) {
        let mut data = endpoint_data(app, ep);
        data["trigger"] = json!(match trigger {
            DisableTrigger::Manual => "manual",
            DisableTrigger::Automatic => "automatic",
        });
        data["failSince"] = json!(ep.failing_since.map(rfc3339));
        data["reason"] = json!(reason);
        self.publish(&app.id, "endpoint.disabled", data).await;
        if trigger == DisableTrigger::Automatic {
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
            self.email(&app.id, subject, body);
        }
    }

    /// `became_failing`: this exhaustion turned a healthy endpoint failing,
    /// which is worth an email; later ones are not.
    pub async fn attempt(&self, event: AttemptEvent, job: &DeliveryJob, attempt: &Attempt, became_failing: bool) {
        let Some(inner) = &self.inner else { return };
        if inner.operational_app.as_ref() == Some(&job.app_id) {
            return;
        }
        let app = match inner.store.get_app(job.app_id.as_str()).await {
            Ok(Some(app)) => app,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the application of an operational event");
                return;
            }
        };
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
        self.publish(&app.id, event.name(), data).await;
        if event == AttemptEvent::Exhausted && became_failing {
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
            self.email(&app.id, subject, body);
        }
    }

    async fn publish(&self, about: &AppId, event_type: &str, data: Value) {
        let Some(inner) = &self.inner else { return };
        let Some(ops_app) = &inner.operational_app else { return };
        if about == ops_app {
            return;
        }
        let now = inner.clock.now();
        let payload = json!({ "type": event_type, "timestamp": rfc3339(now), "data": data });
        let msg = Message {
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
        };
        if let Err(e) = inner.store.publish(&msg).await {
            tracing::error!(error = %e, event_type, "publishing an operational webhook failed");
        }
    }

    fn email(&self, about: &AppId, subject: String, body: String) {
        let Some(inner) = &self.inner else { return };
        let Some(mailer) = inner.mailer.clone() else { return };
        if inner.operational_app.as_ref() == Some(about) {
            return;
        }
        inner.tasks.spawn(async move {
            match mailer.send(&subject, &body).await {
                Ok(()) => tracing::info!(%subject, "operator email sent"),
                Err(e) => tracing::warn!(error = %e, %subject, "sending the operator email failed"),
            }
        });
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

/// Creates the operational application and endpoint on first start, and
/// brings the endpoint's URL and secret in line with the configuration.
/// Several nodes may do this at once: a lost race reads the winner's.
async fn prepare_operational_app(
    store: &dyn Store,
    hook: &crate::config::OperationalWebhook,
    now: DateTime<Utc>,
) -> Result<AppId, StoreError> {
    let app = match store.get_app(OPERATIONAL_APP_UID).await? {
        Some(app) => app,
        None => {
            let app = Application::new(
                "Herald operational events".to_owned(),
                Some(OPERATIONAL_APP_UID.to_owned()),
                now,
            );
            match store.create_app(&app).await {
                Ok(()) => app,
                Err(StoreError::Conflict(_)) => store
                    .get_app(OPERATIONAL_APP_UID)
                    .await?
                    .ok_or_else(|| StoreError::Conflict("the operational application vanished".to_owned()))?,
                Err(e) => return Err(e),
            }
        }
    };
    let url = hook.url.to_string();
    match store.get_endpoint(&app.id, OPERATIONAL_ENDPOINT_UID).await? {
        None => {
            let secret = hook
                .secret
                .clone()
                .unwrap_or_else(|| EndpointSecret::generate(SecretKind::StandardHmac));
            let mut ep = Endpoint::new(app.id.clone(), url, secret, now);
            ep.uid = Some(OPERATIONAL_ENDPOINT_UID.to_owned());
            ep.description = "HERALD_OPERATIONAL_WEBHOOK_URL".to_owned();
            match store.create_endpoint(&ep).await {
                Ok(()) | Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
            if hook.secret.is_none() {
                tracing::info!(
                    "operational webhooks are signed with a generated secret; read it at \
                     GET /api/v1/app/{OPERATIONAL_APP_UID}/endpoint/{OPERATIONAL_ENDPOINT_UID}/secret"
                );
            }
        }
        Some(mut ep) => {
            let secret_changed = hook.secret.as_ref().is_some_and(|s| s.expose() != ep.secret.expose());
            if ep.url != url || secret_changed {
                ep.url = url;
                if let Some(secret) = &hook.secret {
                    ep.secret = secret.clone();
                    ep.previous_secret = None;
                }
                ep.updated_at = now;
                store.update_endpoint(&ep).await?;
            }
        }
    }
    Ok(app.id)
}
