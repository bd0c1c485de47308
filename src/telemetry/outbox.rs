//! The operator email outbox's sender: a background task that sends the
//! emails queued in the database (in the transaction of the event that
//! caused them) and retries what the SMTP server did not take.
//!
//! Each email is claimed with a lease before it is sent, so nodes sharing a
//! PostgreSQL database, and a restarted node, never send one at the same
//! time; it is marked sent once the SMTP server accepted it. The one window
//! for a duplicate is a crash between the server's acceptance and that mark:
//! the lease then expires and the email is sent again.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::email::Mailer;
use super::metrics::Metrics;
use crate::domain::clock::Clock;
use crate::domain::operational::{ClaimedEmail, EmailSchedule};
use crate::store::Store;

/// How long a claimed email is ours: longer than one send may take
/// (connecting and the whole exchange are bounded by the mailer's 10 s).
pub const EMAIL_LEASE: Duration = Duration::from_secs(30);
/// Longest nap when nothing is due: a safety net, not the mechanism.
const IDLE_CHECK: Duration = Duration::from_secs(30);
/// Pause after a store error.
const ERROR_BACKOFF: Duration = Duration::from_secs(1);
/// Emails claimed at once.
const CLAIM_BATCH: u32 = 8;

/// What the sender works with; see [`super::notify::Notifier::mail_sender`].
pub struct MailSender {
    pub(super) store: Arc<dyn Store>,
    pub(super) mailer: Mailer,
    pub(super) schedule: EmailSchedule,
    pub(super) clock: Clock,
    /// Notified when an email was queued on this node.
    pub(super) wake: Arc<Notify>,
}

impl MailSender {
    /// Sends what is due until `shutdown`; an email being sent is finished first.
    pub async fn run(self, metrics: Arc<Metrics>, shutdown: CancellationToken) {
        tracing::debug!("operator email sender started");
        while !shutdown.is_cancelled() {
            let claimed = self
                .store
                .claim_emails(self.clock.now(), CLAIM_BATCH, EMAIL_LEASE)
                .await;
            match claimed {
                Ok(emails) if emails.is_empty() => self.sleep_until_due(&shutdown).await,
                Ok(emails) => {
                    for email in emails {
                        self.send(&email, &metrics).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "claiming operator emails failed; retrying");
                    sleep_or_cancel(ERROR_BACKOFF, &shutdown).await;
                }
            }
        }
    }

    async fn send(&self, email: &ClaimedEmail, metrics: &Metrics) {
        let subject = &email.subject;
        match self.mailer.send(subject, &email.body).await {
            Ok(()) => {
                metrics.operator_email(true, false);
                // The duplicate window: a crash before this mark sends it again.
                match self.store.email_sent(email, self.clock.now()).await {
                    Ok(true) => tracing::info!(%subject, tries = email.tries, "operator email sent"),
                    Ok(false) => tracing::warn!(%subject, "operator email sent after its lease ended"),
                    Err(e) => tracing::error!(error = %e, %subject,
                        "operator email sent but not marked; it is sent again when its lease ends"),
                }
            }
            Err(e) => {
                let now = self.clock.now();
                let retry_at = self.schedule.retry_at(email.tries, email.created_at, now);
                metrics.operator_email(false, retry_at.is_none());
                match retry_at {
                    Some(at) => tracing::warn!(error = %e, %subject, tries = email.tries, retry_at = %at,
                        "sending an operator email failed; it will be retried"),
                    None => tracing::error!(error = %e, %subject, tries = email.tries,
                        "sending an operator email failed; giving up"),
                }
                if let Err(e) = self.store.email_not_sent(email, &e.to_string(), retry_at, now).await {
                    tracing::error!(error = %e, %subject, "recording a failed operator email failed; it is tried again when its lease ends");
                }
            }
        }
    }

    async fn sleep_until_due(&self, shutdown: &CancellationToken) {
        let nap = match self.store.next_email_due().await {
            Ok(Some(at)) => (at - self.clock.now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(IDLE_CHECK),
            Ok(None) => IDLE_CHECK,
            Err(e) => {
                tracing::warn!(error = %e, "reading when the next operator email is due failed");
                ERROR_BACKOFF
            }
        };
        if nap.is_zero() {
            return;
        }
        tokio::select! {
            () = self.wake.notified() => {}
            () = tokio::time::sleep(nap) => {}
            () = shutdown.cancelled() => {}
        }
    }
}

async fn sleep_or_cancel(d: Duration, shutdown: &CancellationToken) {
    tokio::select! {
        () = tokio::time::sleep(d) => {}
        () = shutdown.cancelled() => {}
    }
}
