//! Delivery profiles: named sets of wire behaviour (signature style, event
//! header, retries, timeout, endpoint check, secret visibility) that an
//! application or an endpoint picks by name.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::headers::{is_reserved, is_token};
use super::retry::{RetrySchedule, parse_duration};
use super::signature::{Algorithm, Encoding, HeaderNames, SignatureStyle};

/// The profile used when neither the endpoint nor its application names one.
pub const DEFAULT_PROFILE: &str = "default";

/// Longest request timeout a profile may set.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    pub signature: SignatureStyle,
    /// A header carrying the event type, e.g. `X-Acme-Event`.
    pub event_header: Option<String>,
    pub retry_schedule: RetrySchedule,
    pub timeout: Duration,
    /// When false, a 4xx answer (other than 408 and 429) ends the delivery.
    pub retry_on_4xx: bool,
    pub verify: VerifyMethod,
    pub reverify_every: Option<Duration>,
    pub secret_reveal: SecretReveal,
}

/// The check an endpoint must pass before Herald accepts its URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyMethod {
    None,
    /// OPTIONS answers 200 or 204 with `Allow` listing POST.
    Options,
    /// HEAD answers 200.
    Head,
    /// GET `?verifyToken=…&challenge=…` answers 200 with the challenge as its body.
    GetChallenge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretReveal {
    Always,
    /// Only the create and rotate answers carry the secret.
    Once,
}

/// What a profile falls back to for keys it does not set: the server-wide settings.
#[derive(Debug, Clone)]
pub struct ServerDefaults {
    pub retry_schedule: RetrySchedule,
    pub timeout: Duration,
}

impl Profile {
    /// The built-in profile: Standard Webhooks HMAC with the server's settings.
    pub fn builtin(defaults: &ServerDefaults) -> Self {
        Self {
            name: DEFAULT_PROFILE.to_owned(),
            signature: SignatureStyle::default(),
            event_header: None,
            retry_schedule: defaults.retry_schedule.clone(),
            timeout: defaults.timeout,
            retry_on_4xx: true,
            verify: VerifyMethod::None,
            reverify_every: None,
            secret_reveal: SecretReveal::Always,
        }
    }
}

/// A problem with one key of one profile, named as it is written in the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("profiles.{profile}.{key}: {reason}")]
pub struct ProfileError {
    pub profile: String,
    pub key: String,
    pub reason: String,
}

/// A profile as written in the configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileSpec {
    signature: Option<SignatureSpec>,
    event_header: Option<String>,
    retry_schedule: Option<ScheduleSpec>,
    timeout: Option<String>,
    retry_on_4xx: Option<bool>,
    verify: Option<String>,
    reverify_every: Option<String>,
    secret_reveal: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureSpec {
    style: String,
    algorithm: Option<String>,
    header: Option<String>,
    prefix: Option<String>,
    encoding: Option<String>,
}

/// `["0s", "1m"]` or `"0s,1m"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ScheduleSpec {
    List(Vec<String>),
    Text(String),
}

impl ProfileSpec {
    pub fn build(self, name: &str, defaults: &ServerDefaults) -> Result<Profile, ProfileError> {
        let err = |key: &str, reason: String| ProfileError {
            profile: name.to_owned(),
            key: key.to_owned(),
            reason,
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        {
            return Err(err(
                "",
                "a profile name may contain only letters, digits, '-' and '_'".into(),
            ));
        }
        let mut profile = Profile::builtin(defaults);
        profile.name = name.to_owned();
        if let Some(spec) = self.signature {
            profile.signature = spec
                .build()
                .map_err(|(key, reason)| err(&format!("signature.{key}"), reason))?;
        }
        if let Some(header) = self.event_header {
            check_header_name(&header).map_err(|r| err("event_header", r))?;
            profile.event_header = Some(header);
        }
        if let Some(schedule) = self.retry_schedule {
            let text = match schedule {
                ScheduleSpec::List(items) => items.join(","),
                ScheduleSpec::Text(text) => text,
            };
            profile.retry_schedule = RetrySchedule::parse(&text).map_err(|e| err("retry_schedule", e.to_string()))?;
        }
        if let Some(timeout) = self.timeout {
            profile.timeout = parse_timeout(&timeout).map_err(|r| err("timeout", r))?;
        }
        if let Some(flag) = self.retry_on_4xx {
            profile.retry_on_4xx = flag;
        }
        if let Some(verify) = self.verify {
            profile.verify = match verify.as_str() {
                "none" => VerifyMethod::None,
                "options" => VerifyMethod::Options,
                "head" => VerifyMethod::Head,
                "get-challenge" => VerifyMethod::GetChallenge,
                other => {
                    return Err(err(
                        "verify",
                        format!("'{other}' is not one of none, options, head, get-challenge"),
                    ));
                }
            };
        }
        if let Some(every) = self.reverify_every {
            let every = parse_duration(&every).map_err(|e| err("reverify_every", e.to_string()))?;
            if every < Duration::from_secs(1) {
                return Err(err("reverify_every", "must be at least 1s".into()));
            }
            if profile.verify == VerifyMethod::None {
                return Err(err("reverify_every", "needs a `verify` check to repeat".into()));
            }
            profile.reverify_every = Some(every);
        }
        if let Some(reveal) = self.secret_reveal {
            profile.secret_reveal = match reveal.as_str() {
                "always" => SecretReveal::Always,
                "once" => SecretReveal::Once,
                other => return Err(err("secret_reveal", format!("'{other}' is not one of always, once"))),
            };
        }
        if let (SignatureStyle::BodyHmac { header, .. }, Some(event)) = (&profile.signature, &profile.event_header)
            && header.eq_ignore_ascii_case(event)
        {
            return Err(err("event_header", "must differ from the signature header".into()));
        }
        Ok(profile)
    }
}

impl SignatureSpec {
    fn build(self) -> Result<SignatureStyle, (&'static str, String)> {
        match self.style.as_str() {
            style @ ("standard-webhooks" | "svix") => {
                if let Some(extra) = [
                    ("header", &self.header),
                    ("prefix", &self.prefix),
                    ("encoding", &self.encoding),
                ]
                .into_iter()
                .find_map(|(k, v)| v.as_ref().map(|_| k))
                {
                    return Err((extra, "applies only to style \"hmac-sha256\"".into()));
                }
                let algorithm = match self.algorithm.as_deref() {
                    None | Some("hmac-sha256") => Algorithm::HmacSha256,
                    Some("ed25519") => Algorithm::Ed25519,
                    Some(other) => {
                        return Err(("algorithm", format!("'{other}' is not one of hmac-sha256, ed25519")));
                    }
                };
                let names = if style == "svix" {
                    HeaderNames::Svix
                } else {
                    HeaderNames::Webhook
                };
                Ok(SignatureStyle::StandardWebhooks { algorithm, names })
            }
            "hmac-sha256" => {
                if self.algorithm.is_some() {
                    return Err((
                        "algorithm",
                        "applies only to styles \"standard-webhooks\" and \"svix\"".into(),
                    ));
                }
                let header = self.header.ok_or((
                    "header",
                    "is required: the header that carries the signature".to_owned(),
                ))?;
                check_header_name(&header).map_err(|r| ("header", r))?;
                let prefix = self.prefix.unwrap_or_default();
                if prefix.len() > 64 || !prefix.chars().all(|c| c.is_ascii_graphic()) {
                    return Err(("prefix", "must be at most 64 visible ASCII characters".into()));
                }
                let encoding = match self.encoding.as_deref() {
                    None | Some("hex") => Encoding::Hex,
                    Some("base64") => Encoding::Base64,
                    Some(other) => return Err(("encoding", format!("'{other}' is not one of hex, base64"))),
                };
                Ok(SignatureStyle::BodyHmac {
                    header,
                    prefix,
                    encoding,
                })
            }
            other => Err((
                "style",
                format!("'{other}' is not one of standard-webhooks, svix, hmac-sha256"),
            )),
        }
    }
}

fn check_header_name(name: &str) -> Result<(), String> {
    if !is_token(name) {
        return Err(format!("'{name}' is not a valid header name"));
    }
    if is_reserved(name) {
        return Err(format!("'{name}' is set by Herald itself"));
    }
    Ok(())
}

/// A request timeout: between 1 ms and 5 minutes.
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text).map_err(|e| e.to_string())?;
    if d.is_zero() || d > MAX_TIMEOUT {
        return Err("must be between 1ms and 5m".to_owned());
    }
    Ok(d)
}

/// Every configured profile, by name; `default` is always present.
#[derive(Debug, Clone)]
pub struct Profiles(BTreeMap<String, std::sync::Arc<Profile>>);

impl Profiles {
    /// Builds the set from the file's `[profiles.NAME]` tables; a `default`
    /// table changes the built-in profile.
    pub fn build(specs: BTreeMap<String, ProfileSpec>, defaults: &ServerDefaults) -> Result<Self, ProfileError> {
        let mut all = BTreeMap::new();
        all.insert(
            DEFAULT_PROFILE.to_owned(),
            std::sync::Arc::new(Profile::builtin(defaults)),
        );
        for (name, spec) in specs {
            let profile = spec.build(&name, defaults)?;
            all.insert(name, std::sync::Arc::new(profile));
        }
        Ok(Self(all))
    }

    pub fn get(&self, name: &str) -> Option<&std::sync::Arc<Profile>> {
        self.0.get(name)
    }

    /// The profile for an endpoint that names `endpoint`, in an application
    /// that names `app`; `None` when the chosen name is not configured.
    pub fn resolve(&self, endpoint: Option<&str>, app: Option<&str>) -> Option<&std::sync::Arc<Profile>> {
        self.get(endpoint.or(app).unwrap_or(DEFAULT_PROFILE))
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Profile> {
        self.0.values().map(|p| p.as_ref())
    }

    pub fn longest_timeout(&self) -> Duration {
        self.iter().map(|p| p.timeout).max().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> ServerDefaults {
        ServerDefaults {
            retry_schedule: RetrySchedule::parse("5s,5m").unwrap(),
            timeout: Duration::from_secs(15),
        }
    }

    fn spec(toml_text: &str) -> ProfileSpec {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn an_empty_profile_is_the_default_behaviour() {
        let p = ProfileSpec::default().build("plain", &defaults()).unwrap();
        assert_eq!(
            p,
            Profile {
                name: "plain".into(),
                ..Profile::builtin(&defaults())
            }
        );
    }

    #[test]
    fn reads_every_key_of_an_acme_style_profile() {
        let p = spec(
            r#"
            signature = { style = "hmac-sha256", header = "X-Acme-Signature", prefix = "sha256=", encoding = "hex" }
            event_header = "X-Acme-Event"
            retry_schedule = ["0s", "1m", "5m", "30m", "2h"]
            timeout = "5s"
            retry_on_4xx = false
            verify = "get-challenge"
            reverify_every = "24h"
            secret_reveal = "once"
            "#,
        )
        .build("acme", &defaults())
        .unwrap();
        assert_eq!(
            p.signature,
            SignatureStyle::BodyHmac {
                header: "X-Acme-Signature".into(),
                prefix: "sha256=".into(),
                encoding: Encoding::Hex
            }
        );
        assert_eq!(p.event_header.as_deref(), Some("X-Acme-Event"));
        assert_eq!(p.retry_schedule.max_attempts(), 6);
        assert_eq!(p.timeout, Duration::from_secs(5));
        assert!(!p.retry_on_4xx);
        assert_eq!(p.verify, VerifyMethod::GetChallenge);
        assert_eq!(p.reverify_every, Some(Duration::from_secs(24 * 3600)));
        assert_eq!(p.secret_reveal, SecretReveal::Once);
    }

    #[test]
    fn errors_name_the_profile_and_the_key() {
        let cases = [
            (r#"signature = { style = "rot13" }"#, "profiles.p.signature.style"),
            (
                r#"signature = { style = "hmac-sha256" }"#,
                "profiles.p.signature.header",
            ),
            (
                r#"signature = { style = "standard-webhooks", algorithm = "rsa" }"#,
                "profiles.p.signature.algorithm",
            ),
            (
                r#"signature = { style = "standard-webhooks", header = "X-Sig" }"#,
                "profiles.p.signature.header",
            ),
            (r#"event_header = "Bad Header""#, "profiles.p.event_header"),
            (r#"event_header = "webhook-signature""#, "profiles.p.event_header"),
            (r#"retry_schedule = ["soon"]"#, "profiles.p.retry_schedule"),
            (r#"timeout = "10m""#, "profiles.p.timeout"),
            (r#"verify = "ping""#, "profiles.p.verify"),
            (r#"reverify_every = "1h""#, "profiles.p.reverify_every"),
            (r#"secret_reveal = "never""#, "profiles.p.secret_reveal"),
        ];
        for (text, key) in cases {
            let e = spec(text).build("p", &defaults()).unwrap_err().to_string();
            assert!(e.starts_with(&format!("{key}:")), "{text} gave {e}");
        }
        assert!(toml::from_str::<ProfileSpec>("colour = \"red\"").is_err());
    }

    #[test]
    fn the_default_profile_can_be_changed_and_names_resolve() {
        let mut specs = BTreeMap::new();
        specs.insert("default".to_owned(), spec(r#"timeout = "3s""#));
        specs.insert("slow".to_owned(), spec(r#"timeout = "20s""#));
        let all = Profiles::build(specs, &defaults()).unwrap();
        assert_eq!(all.resolve(None, None).unwrap().timeout, Duration::from_secs(3));
        assert_eq!(all.resolve(None, Some("slow")).unwrap().name, "slow");
        assert_eq!(all.resolve(Some("default"), Some("slow")).unwrap().name, "default");
        assert!(all.resolve(Some("gone"), None).is_none());
        assert_eq!(all.longest_timeout(), Duration::from_secs(20));
    }
}
