//! Telling the operator: operational webhooks and emails.
//!
//! Operational webhooks are ordinary Herald messages in an application of
//! Herald's own (`herald-operational`), so they are stored, signed, retried
//! and listed like any other, and an operator may add more endpoints to it
//! (a Slack-formatted one, say). Emails are queued in the database and sent
//! by [`super::outbox`]. Both are built as [`Notices`] (by the domain) and
//! written by the store in the same transaction as the change they report,
//! so a crash never keeps one without the other.

use std::sync::Arc;

use chrono::DateTime;
use chrono::Utc;
use tokio::sync::Notify;

use super::email::{EmailError, Mailer};
use crate::config::Config;
use crate::domain::clock::Clock;
use crate::domain::ids::AppId;
pub use crate::domain::operational::{AttemptEvent, DisableTrigger, EndpointEvent, OPERATIONAL_APP_UID};
use crate::domain::operational::{EmailSchedule, Listeners, Notices};
use crate::domain::secret::{EndpointSecret, SecretKind};
use crate::store::{Application, Attempt, DeliveryJob, Endpoint, Store, StoreError};

/// The uid of its endpoint pointing at `HERALD_OPERATIONAL_WEBHOOK_URL`.
pub const OPERATIONAL_ENDPOINT_UID: &str = "operational";

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("cannot prepare operational webhooks: {0}")]
    Store(#[from] StoreError),
    #[error("cannot prepare operator emails: {0}")]
    Email(#[from] EmailError),
}

#[derive(Clone, Default)]
pub struct Notifier {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    store: Arc<dyn Store>,
    clock: Clock,
    listeners: Listeners,
    mailer: Option<Mailer>,
    schedule: EmailSchedule,
    /// Wakes the email sender when an email was queued.
    mail_queued: Arc<Notify>,
}

impl Notifier {
    /// Prepares what the configuration asks for: the operational
    /// application and its endpoint (created, or brought up to date), and
    /// the mailer.
    pub async fn start(store: Arc<dyn Store>, config: &Config, clock: Clock) -> Result<Self, NotifyError> {
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
                listeners: Listeners {
                    operational_app,
                    email: mailer.is_some(),
                },
                mailer,
                schedule: config.email_schedule.clone(),
                mail_queued: Arc::new(Notify::new()),
            })),
        })
    }

    /// The operational application's id, which never reports on itself.
    pub fn operational_app(&self) -> Option<&AppId> {
        self.inner.as_ref()?.listeners.operational_app.as_ref()
    }

    fn listeners(&self) -> Option<(&Listeners, DateTime<Utc>)> {
        let inner = self.inner.as_ref()?;
        Some((&inner.listeners, inner.clock.now()))
    }

    pub fn endpoint_changed(&self, event: EndpointEvent, app: &Application, ep: &Endpoint) -> Notices {
        self.listeners()
            .map(|(l, now)| l.endpoint_changed(event, app, ep, now))
            .unwrap_or_default()
    }

    pub fn endpoint_enabled(&self, app: &Application, ep: &Endpoint) -> Notices {
        self.listeners()
            .map(|(l, now)| l.endpoint_enabled(app, ep, now))
            .unwrap_or_default()
    }

    pub fn endpoint_disabled(
        &self,
        app: &Application,
        ep: &Endpoint,
        trigger: DisableTrigger,
        reason: Option<&str>,
    ) -> Notices {
        self.listeners()
            .map(|(l, now)| l.endpoint_disabled(app, ep, trigger, reason, now))
            .unwrap_or_default()
    }

    /// What an attempt tells the operator; reads the application (by id)
    /// when someone listens. `became_failing`: see [`Listeners::attempt`].
    pub async fn attempt(
        &self,
        event: AttemptEvent,
        job: &DeliveryJob,
        attempt: &Attempt,
        became_failing: bool,
    ) -> Notices {
        let Some(inner) = &self.inner else {
            return Notices::default();
        };
        if inner.listeners.operational_app.as_ref() == Some(&job.app_id) {
            return Notices::default();
        }
        match inner.store.get_app(job.app_id.as_str()).await {
            Ok(Some(app)) => inner
                .listeners
                .attempt(event, &app, job, attempt, became_failing, inner.clock.now()),
            Ok(None) => Notices::default(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the application of an operational event");
                Notices::default()
            }
        }
    }

    /// Tells the email sender that `notices` were committed.
    pub fn written(&self, notices: &Notices) {
        if let Some(inner) = &self.inner
            && !notices.emails.is_empty()
        {
            inner.mail_queued.notify_one();
        }
    }

    /// What the email sender needs, when email is configured.
    pub fn mail_sender(&self) -> Option<super::outbox::MailSender> {
        let inner = self.inner.as_ref()?;
        Some(super::outbox::MailSender {
            store: inner.store.clone(),
            mailer: inner.mailer.clone()?,
            schedule: inner.schedule.clone(),
            clock: inner.clock.clone(),
            wake: inner.mail_queued.clone(),
        })
    }
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
