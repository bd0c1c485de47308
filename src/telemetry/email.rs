//! Plain-text email to the people who run Herald, over SMTP.
//!
//! Everything that can be wrong with the configuration (the URL, the
//! addresses) is found by [`Mailer::new`], at start, so that a typo does not
//! wait for the first alert to show.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// How long one email may take, connecting included. lettre bounds only the
/// connect with it, so [`Mailer::send`] bounds the whole exchange as well:
/// a server that accepts and then stalls must not hold an alert forever.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

const URL_FORMS: &str =
    "expected smtp://[user:pass@]host[:port][?tls=required|opportunistic] or smtps://[user:pass@]host[:port]";

#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    /// Never holds the URL itself: it may carry a password.
    #[error("invalid SMTP URL: {0} ({URL_FORMS})")]
    SmtpUrl(String),
    #[error("invalid {which} address {address:?}: {reason}")]
    Address {
        which: &'static str,
        address: String,
        reason: lettre::address::AddressError,
    },
    #[error("no recipients: at least one address to send to is needed")]
    NoRecipients,
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
    /// `smtp_url` is `smtp://[user:pass@]host[:port][?tls=required|opportunistic]`
    /// or `smtps://...` for TLS from the first byte; addresses may carry a
    /// display name (`Herald <herald@example.com>`).
    pub fn new(smtp_url: &str, from: &str, to: &[String]) -> Result<Mailer, EmailError> {
        check_url(smtp_url).map_err(EmailError::SmtpUrl)?;
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url)
            .map_err(|e| EmailError::SmtpUrl(e.to_string()))?
            .timeout(Some(SEND_TIMEOUT))
            .build();
        let from = parse_mailbox("sender", from)?;
        if to.is_empty() {
            return Err(EmailError::NoRecipients);
        }
        let to = to
            .iter()
            .map(|address| parse_mailbox("recipient", address))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Mailer {
            inner: Arc::new(Inner { transport, from, to }),
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

fn parse_mailbox(which: &'static str, address: &str) -> Result<Mailbox, EmailError> {
    address.trim().parse().map_err(|reason| EmailError::Address {
        which,
        address: address.to_owned(),
        reason,
    })
}

/// What lettre would accept silently but is surely a mistake: an unknown
/// query parameter (a misspelt `tls` would send credentials in the clear)
/// or a user name without a password (it would not log in at all).
fn check_url(smtp_url: &str) -> Result<(), String> {
    let url = url::Url::parse(smtp_url).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "smtp" | "smtps") {
        return Err(format!("the scheme must be smtp or smtps, not {:?}", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("no host".into());
    }
    for (key, value) in url.query_pairs() {
        match (&*key, &*value) {
            ("tls", "required" | "opportunistic") => {}
            ("tls", other) => return Err(format!("tls must be required or opportunistic, not {other:?}")),
            (other, _) => return Err(format!("unknown parameter {other:?}; only tls is understood")),
        }
    }
    if !url.username().is_empty() && url.password().is_none() {
        return Err("a user name needs a password (user:pass@host)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to() -> Vec<String> {
        vec!["ops@example.test".into()]
    }

    fn url_error(url: &str) -> String {
        match Mailer::new(url, "herald@example.test", &to()) {
            Err(e @ EmailError::SmtpUrl(_)) => e.to_string(),
            other => panic!("{url}: expected an SMTP URL error, got {other:?}"),
        }
    }

    #[test]
    fn good_urls_are_accepted() {
        for url in [
            "smtp://127.0.0.1:2525",
            "smtp://mail.example.test?tls=required",
            "smtp://user:p%40ss@mail.example.test:587?tls=opportunistic",
            "smtps://user:secret@mail.example.test",
        ] {
            let mailer = Mailer::new(url, "Herald <herald@example.test>", &to());
            assert!(mailer.is_ok(), "{url}: {mailer:?}");
        }
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        assert!(url_error("mail.example.test").contains("not a URL"));
        assert!(url_error("http://mail.example.test").contains("scheme must be smtp or smtps"));
        assert!(url_error("smtp://mail.example.test?tls=always").contains("tls must be required or opportunistic"));
        assert!(url_error("smtp://mail.example.test?tsl=required").contains("unknown parameter \"tsl\""));
        assert!(url_error("smtp://user@mail.example.test").contains("needs a password"));
    }

    #[test]
    fn url_errors_never_show_the_password() {
        let message = url_error("smtp://user:hunter2@mail.example.test?tls=never");
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn bad_addresses_are_named() {
        let url = "smtp://127.0.0.1:2525";
        let e = Mailer::new(url, "not an address", &to()).unwrap_err();
        assert!(matches!(e, EmailError::Address { which: "sender", .. }), "{e:?}");
        assert!(e.to_string().contains("sender address \"not an address\""), "{e}");

        let recipients = vec!["ops@example.test".to_owned(), "oncall@".to_owned()];
        let e = Mailer::new(url, "herald@example.test", &recipients).unwrap_err();
        assert!(e.to_string().contains("recipient address \"oncall@\""), "{e}");

        let e = Mailer::new(url, "herald@example.test", &[]).unwrap_err();
        assert!(matches!(e, EmailError::NoRecipients), "{e:?}");
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
