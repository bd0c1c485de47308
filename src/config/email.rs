//! How operator emails are sent: the SMTP URL and the addresses, checked at
//! start so that a typo does not wait for the first alert to show.

use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, Tokio1Executor};

use crate::domain::redacted::Redacted;

const URL_FORMS: &str =
    "expected smtp://[user:pass@]host[:port][?tls=required|opportunistic] or smtps://[user:pass@]host[:port]";

/// The sender and recipients of operator emails, and the server that takes them.
#[derive(Debug, Clone)]
pub struct EmailSettings {
    /// May carry a password.
    pub smtp_url: Redacted<String>,
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
}

#[derive(Debug, thiserror::Error)]
pub enum EmailSettingsError {
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
}

impl EmailSettings {
    /// `smtp_url` is `smtp://[user:pass@]host[:port][?tls=required|opportunistic]`
    /// or `smtps://...` for TLS from the first byte; addresses may carry a
    /// display name (`Herald <herald@example.com>`).
    pub fn parse(smtp_url: &str, from: &str, to: &[String]) -> Result<Self, EmailSettingsError> {
        check_url(smtp_url).map_err(EmailSettingsError::SmtpUrl)?;
        AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url)
            .map_err(|e| EmailSettingsError::SmtpUrl(e.to_string()))?;
        let from = parse_mailbox("sender", from)?;
        if to.is_empty() {
            return Err(EmailSettingsError::NoRecipients);
        }
        let to = to
            .iter()
            .map(|address| parse_mailbox("recipient", address))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            smtp_url: Redacted::new(smtp_url.to_owned()),
            from,
            to,
        })
    }
}

fn parse_mailbox(which: &'static str, address: &str) -> Result<Mailbox, EmailSettingsError> {
    address.trim().parse().map_err(|reason| EmailSettingsError::Address {
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
        match EmailSettings::parse(url, "herald@example.test", &to()) {
            Err(e @ EmailSettingsError::SmtpUrl(_)) => e.to_string(),
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
            let settings = EmailSettings::parse(url, "Herald <herald@example.test>", &to());
            assert!(settings.is_ok(), "{url}: {settings:?}");
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
        let e = EmailSettings::parse(url, "not an address", &to()).unwrap_err();
        assert!(
            matches!(e, EmailSettingsError::Address { which: "sender", .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("sender address \"not an address\""), "{e}");

        let recipients = vec!["ops@example.test".to_owned(), "oncall@".to_owned()];
        let e = EmailSettings::parse(url, "herald@example.test", &recipients).unwrap_err();
        assert!(e.to_string().contains("recipient address \"oncall@\""), "{e}");

        let e = EmailSettings::parse(url, "herald@example.test", &[]).unwrap_err();
        assert!(matches!(e, EmailSettingsError::NoRecipients), "{e:?}");
    }

    #[test]
    fn debug_shows_no_credentials() {
        let settings =
            EmailSettings::parse("smtps://user:hunter2@mail.example.test", "herald@example.test", &to()).unwrap();
        let shown = format!("{settings:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
