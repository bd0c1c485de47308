//! Plain-text email to the people who run Herald, over SMTP.
//!
//! Everything that can be wrong with the configuration (the URL, the
//! addresses) is found when the configuration is read
//! ([`EmailSettings::parse`]), at start, so that a typo does not wait for the
//! first alert to show.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

pub use crate::config::email::{EmailSettings, EmailSettingsError};

/// How long one email may take, connecting included. lettre bounds only the
/// connect with it, so [`Mailer::send`] bounds the whole exchange as well:
/// a server that accepts and then stalls must not hold an alert forever.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    #[error(transparent)]
    Settings(#[from] EmailSettingsError),
    #[error("cannot build the email: {0}")]
    Message(#[from] lettre::error::Error),
    #[error("cannot send the email: {0}")]
    Send(#[from] lettre::transport::smtp::Error),
    #[error("cannot send the email: the SMTP server did not take it within {} s", SEND_TIMEOUT.as_secs())]
    Timeout,
}

/// Sends to a fixed set of recipients; clones share one configuration, so
/// every task that may need to alert can hold its own.
#[derive(Clone)]
pub struct Mailer {
    inner: Arc<Inner>,
}

struct Inner {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

/// Shows the addresses only: the transport holds the SMTP credentials.
impl fmt::Debug for Mailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let to: Vec<String> = self.inner.to.iter().map(ToString::to_string).collect();
        f.debug_struct("Mailer")
            .field("from", &self.inner.from.to_string())
            .field("to", &to)
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// Checks the URL and addresses as the configuration does (see
    /// [`EmailSettings::parse`]), then prepares the transport.
    pub fn new(smtp_url: &str, from: &str, to: &[String]) -> Result<Mailer, EmailError> {
        Self::from_settings(&EmailSettings::parse(smtp_url, from, to)?)
    }

    pub fn from_settings(settings: &EmailSettings) -> Result<Mailer, EmailError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(settings.smtp_url.expose())
            .map_err(|e| EmailSettingsError::SmtpUrl(e.to_string()))?
            .timeout(Some(SEND_TIMEOUT))
            .build();
        Ok(Mailer {
            inner: Arc::new(Inner {
                transport,
                from: settings.from.clone(),
                to: settings.to.clone(),
            }),
        })
    }

    /// One message to all recipients at once, so they all see the same alert
    /// and a failure is reported once.
    pub async fn send(&self, subject: &str, body: &str) -> Result<(), EmailError> {
        let inner = &*self.inner;
        let mut builder = Message::builder()
            .from(inner.from.clone())
            .subject(subject)
            .header(ContentType::TEXT_PLAIN);
        for to in &inner.to {
            builder = builder.to(to.clone());
        }
        let message = builder.body(body.to_owned())?;
        match tokio::time::timeout(SEND_TIMEOUT, inner.transport.send(message)).await {
            Ok(sent) => sent.map(|_| ()).map_err(EmailError::from),
            Err(_) => Err(EmailError::Timeout),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to() -> Vec<String> {
        vec!["ops@example.test".into()]
    }

    #[test]
    fn bad_settings_stop_the_mailer() {
        let e = Mailer::new("http://mail.example.test", "herald@example.test", &to()).unwrap_err();
        assert!(
            matches!(e, EmailError::Settings(EmailSettingsError::SmtpUrl(_))),
            "{e:?}"
        );
        let e = Mailer::new("smtp://127.0.0.1:2525", "herald@example.test", &[]).unwrap_err();
        assert!(
            matches!(e, EmailError::Settings(EmailSettingsError::NoRecipients)),
            "{e:?}"
        );
    }

    #[test]
    fn debug_shows_no_credentials() {
        let mailer = Mailer::new("smtps://user:hunter2@mail.example.test", "herald@example.test", &to()).unwrap();
        let shown = format!("{mailer:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("mail.example.test"),
            "{shown}"
        );
        assert!(shown.contains("ops@example.test"), "{shown}");
    }
}
