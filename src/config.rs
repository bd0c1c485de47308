//! One `Config`, loaded once: defaults, then the TOML file, then `HERALD_*`
//! variables and command-line flags. A bad value stops the start with the key
//! and the reason.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

use crate::delivery::client::{OutboundProxy, TrustAnchors};
use crate::domain::profile::{ProfileSpec, Profiles, ServerDefaults, parse_timeout};
use crate::domain::retry::{RetrySchedule, parse_duration};
use crate::domain::sealing::SecretKey;
use crate::domain::target::TargetPolicy;

/// Every setting, as text, from flags or the environment (clap fills both).
/// The same keys, in snake_case, may appear in the TOML file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Settings {
    /// Address the HTTP API listens on [default: 127.0.0.1:8080]
    #[arg(long, env = "HERALD_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,

    /// Where Herald keeps its data [default: sqlite://./herald-data/herald.db]
    #[arg(long, env = "HERALD_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,

    /// Bearer token of the admin API. Unset: the first start generates one,
    /// prints it once and keeps only its hash
    #[arg(long, env = "HERALD_ADMIN_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// The key that seals endpoint secrets at rest: 32 bytes in base64 or
    /// hex. Every node of one database needs the same key. Unset: read from
    /// HERALD_SECRET_KEY_FILE
    #[arg(long, env = "HERALD_SECRET_KEY", value_name = "KEY", hide_env_values = true)]
    pub secret_key: Option<String>,

    /// File holding the secret key; created (mode 0600, with a warning) when
    /// missing [default: secret.key beside the SQLite file, or
    /// ./herald-data/secret.key with PostgreSQL]
    #[arg(long, env = "HERALD_SECRET_KEY_FILE", value_name = "FILE")]
    pub secret_key_file: Option<String>,

    /// Most API requests per second one token may make on this node; over
    /// it the API answers 429 with Retry-After. 0 turns the limit off; a
    /// token made with its own rateLimit uses that [default: 5000]
    #[arg(long, env = "HERALD_API_RATE_LIMIT", value_name = "N")]
    pub api_rate_limit: Option<String>,

    /// Delays between delivery attempts, comma-separated ("1s,2s" = three
    /// attempts in all); up to 10% jitter is added
    /// [default: 5s,5m,30m,2h,5h,10h,10h]
    #[arg(long, env = "HERALD_RETRY_SCHEDULE", value_name = "DELAYS")]
    pub retry_schedule: Option<String>,

    /// How long one delivery attempt may take [default: 15s]
    #[arg(long, env = "HERALD_REQUEST_TIMEOUT", value_name = "DURATION")]
    pub request_timeout: Option<String>,

    /// Allow http:// endpoint URLs (for local development) [default: false]
    #[arg(long, env = "HERALD_ALLOW_HTTP", value_name = "BOOL")]
    pub allow_http: Option<String>,

    /// Comma-separated CIDRs exempt from the private-address block, e.g.
    /// "10.20.0.0/16" [default: none]
    #[arg(long, env = "HERALD_ALLOWED_TARGET_NETWORKS", value_name = "CIDRS")]
    pub allowed_target_networks: Option<String>,

    /// PEM file of extra trust anchors (a private CA), added to the bundled
    /// roots when Herald checks an endpoint's certificate [default: none]
    #[arg(long, env = "HERALD_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<String>,

    /// Let an endpoint set tlsVerify=false, so Herald skips checking its
    /// certificate (self-signed receivers in development) [default: false]
    #[arg(long, env = "HERALD_ALLOW_INSECURE_TLS", value_name = "BOOL")]
    pub allow_insecure_tls: Option<String>,

    /// http:// or https:// proxy that every delivery and endpoint check goes
    /// through, e.g. http://user:pass@proxy.internal:3128 [default: none]
    #[arg(long, env = "HERALD_OUTBOUND_PROXY", value_name = "URL", hide_env_values = true)]
    pub outbound_proxy: Option<String>,

    /// Most deliveries in flight at once [default: 256]
    #[arg(long, env = "HERALD_MAX_CONCURRENT_DELIVERIES", value_name = "N")]
    pub max_concurrent_deliveries: Option<String>,

    /// Most requests in flight to one endpoint, so one slow receiver cannot
    /// take every slot [default: 64]
    #[arg(long, env = "HERALD_MAX_IN_FLIGHT_PER_ENDPOINT", value_name = "N")]
    pub max_in_flight_per_endpoint: Option<String>,

    /// On shutdown, how long in-flight deliveries may take to finish [default: 30s]
    #[arg(long, env = "HERALD_SHUTDOWN_GRACE", value_name = "DURATION")]
    pub shutdown_grace: Option<String>,

    /// What this node runs: "all" (API and delivery), "api" or "worker".
    /// Split roles need PostgreSQL [default: all]
    #[arg(long, env = "HERALD_ROLE", value_name = "ROLE")]
    pub role: Option<String>,

    /// Most database connections this node opens (on SQLite: readers beside
    /// the one writer) [default: 10]
    #[arg(long, env = "HERALD_DB_POOL_SIZE", value_name = "N")]
    pub db_pool_size: Option<String>,

    /// PostgreSQL: longest time one statement may run [default: 30s]
    #[arg(long, env = "HERALD_DB_STATEMENT_TIMEOUT", value_name = "DURATION")]
    pub db_statement_timeout: Option<String>,

    /// How long a node keeps a claimed delivery before another node may take
    /// it over; must exceed the request timeout [default: request timeout + 15s]
    #[arg(long, env = "HERALD_LEASE_DURATION", value_name = "DURATION")]
    pub lease_duration: Option<String>,

    /// How long an endpoint may keep failing (deliveries exhausting their
    /// retries, no success) before Herald disables it [default: 5d]
    #[arg(long, env = "HERALD_DISABLE_AFTER", value_name = "DURATION")]
    pub disable_after: Option<String>,

    /// Where Herald sends its operational webhooks (endpoint.disabled,
    /// message.attempt.exhausted…), signed like any delivery [default: none]
    #[arg(long, env = "HERALD_OPERATIONAL_WEBHOOK_URL", value_name = "URL")]
    pub operational_webhook_url: Option<String>,

    /// The whsec_ secret that signs operational webhooks. Unset: generated
    /// once; read it from the herald-operational application's endpoint
    #[arg(
        long,
        env = "HERALD_OPERATIONAL_WEBHOOK_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub operational_webhook_secret: Option<String>,

    /// SMTP server for operator emails: smtp://[user:pass@]host[:port]
    /// (?tls=required for STARTTLS) or smtps://… [default: none]
    #[arg(long, env = "HERALD_SMTP_URL", value_name = "URL", hide_env_values = true)]
    pub smtp_url: Option<String>,

    /// Comma-separated addresses told when an endpoint starts failing or is
    /// disabled; needs HERALD_SMTP_URL [default: none]
    #[arg(long, env = "HERALD_NOTIFY_EMAIL", value_name = "ADDRESSES")]
    pub notify_email: Option<String>,

    /// The sender of operator emails [default: Herald <herald@localhost>]
    #[arg(long, env = "HERALD_NOTIFY_FROM", value_name = "ADDRESS")]
    pub notify_from: Option<String>,

    /// The address people use to reach Herald, e.g. https://herald.example.com;
    /// portal links start with it, and an https one marks the dashboard's
    /// session cookie Secure [default: the address of the request]
    #[arg(long, env = "HERALD_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,

    /// Check every payload against its event type's JSON Schema; an
    /// application's validatePayloads overrides this [default: false]
    #[arg(long, env = "HERALD_VALIDATE_PAYLOADS", value_name = "BOOL")]
    pub validate_payloads: Option<String>,

    /// How long payloads are kept when a message names no
    /// payloadRetentionPeriod [default: 90d]
    #[arg(long, env = "HERALD_PAYLOAD_RETENTION", value_name = "DURATION")]
    pub payload_retention: Option<String>,

    /// Keep payloads after every delivery succeeded; false removes them at
    /// once, for products that promise not to store event data [default: true]
    #[arg(long, env = "HERALD_RETAIN_PAYLOADS", value_name = "BOOL")]
    pub retain_payloads: Option<String>,

    /// How often expired payloads and idempotency keys are removed [default: 1m]
    #[arg(long, env = "HERALD_CLEANUP_INTERVAL", value_name = "DURATION")]
    pub cleanup_interval: Option<String>,

    /// Log filter, in tracing's EnvFilter syntax [default: info]
    #[arg(long, env = "HERALD_LOG", value_name = "FILTER")]
    pub log: Option<String>,
}

/// The configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub database: DatabaseUrl,
    pub admin_token: Option<String>,
    /// Where the key that seals secrets at rest comes from.
    pub secret_key: SecretKeySource,
    /// Requests per second per API token; `None`: no limit.
    pub api_rate_limit: Option<u32>,
    pub retry_schedule: RetrySchedule,
    pub request_timeout: Duration,
    pub target_policy: TargetPolicy,
    /// Trusted besides the bundled roots.
    pub extra_roots: Option<TrustAnchors>,
    /// Whether an endpoint may set `tlsVerify=false`.
    pub allow_insecure_tls: bool,
    pub outbound_proxy: Option<OutboundProxy>,
    pub max_concurrent_deliveries: usize,
    pub max_in_flight_per_endpoint: usize,
    pub shutdown_grace: Duration,
    pub log: String,
    pub role: Role,
    pub db_pool_size: u32,
    pub db_statement_timeout: Duration,
    pub lease_duration: Duration,
    pub disable_after: Duration,
    /// Whether the lease was set rather than derived from the timeouts.
    lease_explicit: bool,
    pub operational_webhook: Option<OperationalWebhook>,
    pub email: Option<EmailSettings>,
    pub validate_payloads: bool,
    pub payload_retention: Duration,
    pub retain_payloads: bool,
    pub cleanup_interval: Duration,
    /// Where people reach Herald, for portal links and the cookie's Secure flag.
    pub public_url: Option<url::Url>,
    /// Delivery profiles from the file's `[profiles.NAME]` tables, plus `default`.
    pub profiles: Profiles,
    /// Broker queues and streams Herald publishes from: the file's `[[sources]]`.
    pub sources: Vec<crate::sources::SourceConfig>,
}

/// The key that seals secrets at rest: given, or kept in a file.
#[derive(Debug, Clone)]
pub enum SecretKeySource {
    Key(SecretKey),
    /// Read at start; created with a fresh key when missing.
    File(PathBuf),
}

fn secret_key_source(
    key: Option<(String, String)>,
    file: Option<(String, String)>,
    database: &DatabaseUrl,
) -> Result<SecretKeySource, ConfigError> {
    match (key, file) {
        (Some((key, _)), Some((file_key, _))) => Err(invalid(key, format!("set either it or {file_key}, not both"))),
        (Some((key, text)), None) => SecretKey::parse(&text)
            .map(SecretKeySource::Key)
            .map_err(|e| invalid(key, e.to_string())),
        (None, Some((key, path))) if path.trim().is_empty() => Err(invalid(key, "must name a file")),
        (None, Some((_, path))) => Ok(SecretKeySource::File(PathBuf::from(path))),
        (None, None) => Ok(SecretKeySource::File(match database {
            DatabaseUrl::Sqlite(db) => db.with_file_name("secret.key"),
            DatabaseUrl::Postgres(_) => PathBuf::from("./herald-data/secret.key"),
        })),
    }
}

/// Where operational webhooks go, and the secret that signs them.
#[derive(Debug, Clone)]
pub struct OperationalWebhook {
    pub url: url::Url,
    pub secret: Option<crate::domain::secret::EndpointSecret>,
}

/// How operator emails are sent.
#[derive(Clone)]
pub struct EmailSettings {
    pub smtp_url: String,
    pub from: String,
    pub to: Vec<String>,
}

impl std::fmt::Debug for EmailSettings {
    /// The SMTP URL may carry a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailSettings")
            .field("from", &self.from)
            .field("to", &self.to)
            .finish_non_exhaustive()
    }
}

/// Which parts of Herald a node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    All,
    Api,
    Worker,
}

impl Role {
    pub fn serves_api(self) -> bool {
        matches!(self, Self::All | Self::Api)
    }

    pub fn delivers(self) -> bool {
        matches!(self, Self::All | Self::Worker)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
    #[error("cannot read the config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
}

const MIN_ADMIN_TOKEN_LEN: usize = 16;

impl Config {
    /// Defaults suited to a developer's machine: loopback, a local SQLite file.
    pub fn load(cli: &Settings, file: Option<&Path>) -> Result<Self, ConfigError> {
        let (from_file, profiles, sources) = match file {
            Some(path) => read_file(path)?,
            None => Default::default(),
        };
        let file_label = file.map(|p| p.display().to_string());
        let mut config = Self::from_layers(cli, &from_file, file_label.as_deref())?;
        config.add_profiles(profiles, file_label.as_deref())?;
        config.sources = crate::sources::build(sources).map_err(|e| {
            invalid(
                format!(
                    "sources.{}.{} in {}",
                    e.source_name,
                    e.key,
                    file_label.as_deref().unwrap_or("the config file")
                ),
                e.reason,
            )
        })?;
        Ok(config)
    }

    /// Adds the file's profiles; the lease must then outlast the slowest of them.
    fn add_profiles(
        &mut self,
        specs: BTreeMap<String, ProfileSpec>,
        file_label: Option<&str>,
    ) -> Result<(), ConfigError> {
        let defaults = ServerDefaults {
            retry_schedule: self.retry_schedule.clone(),
            timeout: self.request_timeout,
        };
        self.profiles = Profiles::build(specs, &defaults).map_err(|e| {
            let key = format!("profiles.{}.{}", e.profile, e.key);
            invalid(
                format!(
                    "{} in {}",
                    key.trim_end_matches('.'),
                    file_label.unwrap_or("the config file")
                ),
                e.reason,
            )
        })?;
        let slowest = self.profiles.longest_timeout();
        if self.lease_duration <= slowest {
            if self.lease_explicit {
                return Err(invalid(
                    "lease_duration",
                    format!(
                        "must be longer than the slowest profile's timeout ({}), or a slow attempt would be sent twice",
                        humantime::format_duration(slowest)
                    ),
                ));
            }
            self.lease_duration = slowest + LEASE_MARGIN;
        }
        Ok(())
    }

    fn from_layers(top: &Settings, file: &Settings, file_label: Option<&str>) -> Result<Self, ConfigError> {
        // The value wins from the flags/environment, else from the file; errors
        // name whichever source the bad value came from.
        let pick = |env_key: &'static str, file_key: &'static str, a: &Option<String>, b: &Option<String>| match (a, b)
        {
            (Some(v), _) => Some((env_key.to_owned(), v.clone())),
            (None, Some(v)) => Some((
                format!("{file_key} in {}", file_label.unwrap_or("the config file")),
                v.clone(),
            )),
            (None, None) => None,
        };
        macro_rules! get {
            ($field:ident, $env:literal) => {
                pick($env, stringify!($field), &top.$field, &file.$field)
            };
        }

        let listen = parse_or(get!(listen, "HERALD_LISTEN"), "127.0.0.1:8080", |s| {
            s.parse::<SocketAddr>()
                .map_err(|_| format!("'{s}' is not an address such as 127.0.0.1:8080"))
        })?;
        let database = parse_or(
            get!(database_url, "HERALD_DATABASE_URL"),
            "sqlite://./herald-data/herald.db",
            parse_database_url,
        )?;
        let admin_token = match get!(admin_token, "HERALD_ADMIN_TOKEN") {
            None => None,
            Some((key, v)) if v.len() < MIN_ADMIN_TOKEN_LEN => {
                return Err(invalid(
                    key,
                    format!("must be at least {MIN_ADMIN_TOKEN_LEN} characters long"),
                ));
            }
            Some((_, v)) => Some(v),
        };
        let secret_key = secret_key_source(
            get!(secret_key, "HERALD_SECRET_KEY"),
            get!(secret_key_file, "HERALD_SECRET_KEY_FILE"),
            &database,
        )?;
        let api_rate_limit = parse_or(get!(api_rate_limit, "HERALD_API_RATE_LIMIT"), "5000", |s| {
            match s.parse::<u32>() {
                Ok(0) => Ok(None),
                Ok(n) if n <= 1_000_000 => Ok(Some(n)),
                _ => Err(format!("'{s}' is not a number between 0 (no limit) and 1000000")),
            }
        })?;
        let retry_schedule = parse_or(
            get!(retry_schedule, "HERALD_RETRY_SCHEDULE"),
            "5s,5m,30m,2h,5h,10h,10h",
            |s| RetrySchedule::parse(s).map_err(|e| e.to_string()),
        )?;
        let request_timeout = parse_or(get!(request_timeout, "HERALD_REQUEST_TIMEOUT"), "15s", parse_timeout)?;
        let allow_http = parse_or(get!(allow_http, "HERALD_ALLOW_HTTP"), "false", parse_bool)?;
        let allowed_networks = parse_or(
            get!(allowed_target_networks, "HERALD_ALLOWED_TARGET_NETWORKS"),
            "",
            parse_networks,
        )?;
        let extra_roots = get!(ca_file, "HERALD_CA_FILE")
            .map(|(key, path)| TrustAnchors::load(Path::new(path.trim())).map_err(|reason| invalid(key, reason)))
            .transpose()?;
        let allow_insecure_tls = parse_or(
            get!(allow_insecure_tls, "HERALD_ALLOW_INSECURE_TLS"),
            "false",
            parse_bool,
        )?;
        let outbound_proxy = get!(outbound_proxy, "HERALD_OUTBOUND_PROXY")
            .map(|(key, text)| OutboundProxy::parse(text.trim()).map_err(|reason| invalid(key, reason)))
            .transpose()?;
        let max_concurrent_deliveries = parse_or(
            get!(max_concurrent_deliveries, "HERALD_MAX_CONCURRENT_DELIVERIES"),
            "256",
            |s| match s.parse::<usize>() {
                Ok(n) if (1..=100_000).contains(&n) => Ok(n),
                _ => Err(format!("'{s}' is not a number between 1 and 100000")),
            },
        )?;
        let max_in_flight_per_endpoint = parse_or(
            get!(max_in_flight_per_endpoint, "HERALD_MAX_IN_FLIGHT_PER_ENDPOINT"),
            "64",
            |s| match s.parse::<usize>() {
                Ok(n) if (1..=100_000).contains(&n) => Ok(n),
                _ => Err(format!("'{s}' is not a number between 1 and 100000")),
            },
        )?;
        let shutdown_grace = parse_or(get!(shutdown_grace, "HERALD_SHUTDOWN_GRACE"), "30s", |s| {
            parse_duration(s).map_err(|e| e.to_string())
        })?;
        let log = get!(log, "HERALD_LOG").map_or_else(|| "info".to_owned(), |(_, v)| v);
        let role_source = get!(role, "HERALD_ROLE");
        let role_key = role_source.as_ref().map(|(k, _)| k.clone());
        let role = parse_or(role_source, "all", |s| match s {
            "all" => Ok(Role::All),
            "api" => Ok(Role::Api),
            "worker" => Ok(Role::Worker),
            _ => Err(format!("'{s}' is not one of all, api, worker")),
        })?;
        if role != Role::All && matches!(database, DatabaseUrl::Sqlite(_)) {
            return Err(invalid(
                role_key.unwrap_or_default(),
                "api and worker roles need a shared PostgreSQL database; on SQLite one process runs everything",
            ));
        }
        let db_pool_size = parse_or(get!(db_pool_size, "HERALD_DB_POOL_SIZE"), "10", |s| {
            match s.parse::<u32>() {
                Ok(n) if (1..=1000).contains(&n) => Ok(n),
                _ => Err(format!("'{s}' is not a number between 1 and 1000")),
            }
        })?;
        let db_statement_timeout =
            parse_or(
                get!(db_statement_timeout, "HERALD_DB_STATEMENT_TIMEOUT"),
                "30s",
                |s| match parse_duration(s).map_err(|e| e.to_string())? {
                    d if d < Duration::from_millis(1) => Err("must be at least 1ms".to_owned()),
                    d => Ok(d),
                },
            )?;
        let default_lease = humantime::format_duration(request_timeout + LEASE_MARGIN).to_string();
        let lease_source = get!(lease_duration, "HERALD_LEASE_DURATION");
        let lease_explicit = lease_source.is_some();
        let lease_duration = parse_or(lease_source, &default_lease, |s| {
            match parse_duration(s).map_err(|e| e.to_string())? {
                d if d <= request_timeout => Err(format!(
                    "must be longer than the request timeout ({}), or a slow attempt would be sent twice",
                    humantime::format_duration(request_timeout)
                )),
                d => Ok(d),
            }
        })?;

        let disable_after = parse_or(get!(disable_after, "HERALD_DISABLE_AFTER"), "5d", |s| {
            parse_duration(s).map_err(|e| e.to_string())
        })?;
        let operational_webhook = operational_webhook(
            get!(operational_webhook_url, "HERALD_OPERATIONAL_WEBHOOK_URL"),
            get!(operational_webhook_secret, "HERALD_OPERATIONAL_WEBHOOK_SECRET"),
        )?;
        let email = email_settings(
            get!(smtp_url, "HERALD_SMTP_URL"),
            get!(notify_email, "HERALD_NOTIFY_EMAIL"),
            get!(notify_from, "HERALD_NOTIFY_FROM"),
        )?;
        let public_url = public_url(get!(public_url, "HERALD_PUBLIC_URL"))?;
        let validate_payloads = parse_or(get!(validate_payloads, "HERALD_VALIDATE_PAYLOADS"), "false", parse_bool)?;
        let payload_retention =
            parse_or(
                get!(payload_retention, "HERALD_PAYLOAD_RETENTION"),
                "90d",
                |s| match parse_duration(s).map_err(|e| e.to_string())? {
                    d if d.is_zero() => Err("must be longer than 0s".to_owned()),
                    d => Ok(d),
                },
            )?;
        let retain_payloads = parse_or(get!(retain_payloads, "HERALD_RETAIN_PAYLOADS"), "true", parse_bool)?;
        let cleanup_interval =
            parse_or(
                get!(cleanup_interval, "HERALD_CLEANUP_INTERVAL"),
                "1m",
                |s| match parse_duration(s).map_err(|e| e.to_string())? {
                    d if d < Duration::from_millis(10) => Err("must be at least 10ms".to_owned()),
                    d => Ok(d),
                },
            )?;
        let profiles = Profiles::build(
            BTreeMap::new(),
            &ServerDefaults {
                retry_schedule: retry_schedule.clone(),
                timeout: request_timeout,
            },
        )
        .map_err(|e| invalid("profiles", e.to_string()))?;
        Ok(Self {
            listen,
            database,
            admin_token,
            secret_key,
            api_rate_limit,
            retry_schedule,
            request_timeout,
            target_policy: TargetPolicy {
                allow_http,
                allowed_networks,
            },
            extra_roots,
            allow_insecure_tls,
            outbound_proxy,
            max_concurrent_deliveries,
            max_in_flight_per_endpoint,
            shutdown_grace,
            log,
            role,
            db_pool_size,
            db_statement_timeout,
            lease_duration,
            lease_explicit,
            disable_after,
            operational_webhook,
            email,
            validate_payloads,
            payload_retention,
            retain_payloads,
            cleanup_interval,
            public_url,
            profiles,
            sources: Vec::new(),
        })
    }
}

/// An http(s) base address without a query; a trailing slash is dropped.
fn public_url(setting: Option<(String, String)>) -> Result<Option<url::Url>, ConfigError> {
    let Some((key, text)) = setting else {
        return Ok(None);
    };
    let trimmed = text.trim().trim_end_matches('/');
    match url::Url::parse(trimmed) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.query().is_none() && u.has_host() => Ok(Some(u)),
        _ => Err(invalid(
            key,
            format!("'{text}' is not an http(s) address such as https://herald.example.com"),
        )),
    }
}

fn operational_webhook(
    url: Option<(String, String)>,
    secret: Option<(String, String)>,
) -> Result<Option<OperationalWebhook>, ConfigError> {
    let secret = match secret {
        None => None,
        Some((key, text)) => match crate::domain::secret::EndpointSecret::parse(text.trim()) {
            Ok(s) if s.kind() == crate::domain::secret::SecretKind::StandardHmac => Some(s),
            _ => return Err(invalid(key, "must be a whsec_ secret (base64 of 24 to 64 bytes)")),
        },
    };
    let Some((key, text)) = url else {
        return Ok(None);
    };
    let url = url::Url::parse(text.trim())
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| invalid(key, format!("'{text}' is not an http(s) URL")))?;
    Ok(Some(OperationalWebhook { url, secret }))
}

fn email_settings(
    smtp_url: Option<(String, String)>,
    to: Option<(String, String)>,
    from: Option<(String, String)>,
) -> Result<Option<EmailSettings>, ConfigError> {
    let recipients = |text: &str| -> Vec<String> {
        text.split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect()
    };
    match (smtp_url, to) {
        (None, None) => Ok(None),
        (Some((key, _)), None) => Err(invalid(key, "needs HERALD_NOTIFY_EMAIL: whom to tell")),
        (None, Some((key, _))) => Err(invalid(key, "needs HERALD_SMTP_URL: how to send")),
        (Some((url_key, url)), Some((to_key, to))) => {
            let settings = EmailSettings {
                smtp_url: url.trim().to_owned(),
                from: from.map_or_else(|| "Herald <herald@localhost>".to_owned(), |(_, f)| f.trim().to_owned()),
                to: recipients(&to),
            };
            if settings.to.is_empty() {
                return Err(invalid(to_key, "names no address"));
            }
            // Checked now, so a typo stops the start instead of the first email.
            crate::telemetry::email::Mailer::new(&settings.smtp_url, &settings.from, &settings.to)
                .map_err(|e| invalid(url_key, e.to_string()))?;
            Ok(Some(settings))
        }
    }
}

/// How much longer than a request timeout a lease lasts by default.
const LEASE_MARGIN: Duration = Duration::from_secs(15);

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

fn parse_or<T>(
    value: Option<(String, String)>,
    default: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<T, ConfigError> {
    match value {
        Some((key, v)) => parse(v.trim()).map_err(|reason| invalid(key, reason)),
        None => parse(default).map_err(|reason| invalid("default", reason)),
    }
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" | "" => Ok(false),
        _ => Err(format!("'{s}' is not true or false")),
    }
}

fn parse_networks(s: &str) -> Result<Vec<IpNet>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<IpNet>()
                .or_else(|_| p.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| format!("'{p}' is not a CIDR such as 10.0.0.0/8"))
        })
        .collect()
}

fn parse_database_url(s: &str) -> Result<DatabaseUrl, String> {
    if let Some(rest) = s.strip_prefix("sqlite://").or_else(|| s.strip_prefix("sqlite:")) {
        let path = rest.split('?').next().unwrap_or_default();
        if path.is_empty() {
            return Err("names no file; use sqlite://path/to/herald.db".to_owned());
        }
        return Ok(DatabaseUrl::Sqlite(PathBuf::from(path)));
    }
    if s.starts_with("postgres://") || s.starts_with("postgresql://") {
        return Ok(DatabaseUrl::Postgres(s.to_owned()));
    }
    Err(format!("'{s}' is neither sqlite://FILE nor postgres://…"))
}

/// What the file holds: text settings like the flags', profiles and sources.
type FileContents = (Settings, BTreeMap<String, ProfileSpec>, Vec<crate::sources::SourceSpec>);

/// Reads the TOML file into the same text settings the flags produce, and
/// its `[profiles.NAME]` tables.
fn read_file(path: &Path) -> Result<FileContents, ConfigError> {
    let file_err = |reason: String| ConfigError::File {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| file_err(e.to_string()))?;
    let mut s = Settings::default();
    let mut profiles = BTreeMap::new();
    let mut sources = Vec::new();
    for (key, value) in table {
        if key == "profiles" {
            profiles = value.try_into().map_err(|e: toml::de::Error| {
                invalid(format!("profiles in {}", path.display()), e.message().to_owned())
            })?;
            continue;
        }
        if key == "sources" {
            sources = value.try_into().map_err(|e: toml::de::Error| {
                invalid(format!("sources in {}", path.display()), e.message().to_owned())
            })?;
            continue;
        }
        let text = toml_to_text(&value).ok_or_else(|| {
            invalid(
                format!("{key} in {}", path.display()),
                "must be a string, number, boolean or list",
            )
        })?;
        let slot = match key.as_str() {
            "listen" => &mut s.listen,
            "database_url" => &mut s.database_url,
            "admin_token" => &mut s.admin_token,
            "api_rate_limit" => &mut s.api_rate_limit,
            "secret_key" => &mut s.secret_key,
            "secret_key_file" => &mut s.secret_key_file,
            "retry_schedule" => &mut s.retry_schedule,
            "request_timeout" => &mut s.request_timeout,
            "allow_http" => &mut s.allow_http,
            "allowed_target_networks" => &mut s.allowed_target_networks,
            "ca_file" => &mut s.ca_file,
            "allow_insecure_tls" => &mut s.allow_insecure_tls,
            "outbound_proxy" => &mut s.outbound_proxy,
            "max_concurrent_deliveries" => &mut s.max_concurrent_deliveries,
            "max_in_flight_per_endpoint" => &mut s.max_in_flight_per_endpoint,
            "shutdown_grace" => &mut s.shutdown_grace,
            "log" => &mut s.log,
            "role" => &mut s.role,
            "db_pool_size" => &mut s.db_pool_size,
            "db_statement_timeout" => &mut s.db_statement_timeout,
            "lease_duration" => &mut s.lease_duration,
            "disable_after" => &mut s.disable_after,
            "operational_webhook_url" => &mut s.operational_webhook_url,
            "operational_webhook_secret" => &mut s.operational_webhook_secret,
            "smtp_url" => &mut s.smtp_url,
            "notify_email" => &mut s.notify_email,
            "notify_from" => &mut s.notify_from,
            "public_url" => &mut s.public_url,
            "validate_payloads" => &mut s.validate_payloads,
            "payload_retention" => &mut s.payload_retention,
            "retain_payloads" => &mut s.retain_payloads,
            "cleanup_interval" => &mut s.cleanup_interval,
            _ => {
                return Err(invalid(
                    format!("{key} in {}", path.display()),
                    "is not a known setting",
                ));
            }
        };
        *slot = Some(text);
    }
    Ok((s, profiles, sources))
}

fn toml_to_text(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Array(items) => items
            .iter()
            .map(toml_to_text)
            .collect::<Option<Vec<_>>>()
            .map(|parts| parts.join(",")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_text(top: Settings) -> String {
        Config::from_layers(&top, &Settings::default(), None)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn no_configuration_gives_the_documented_defaults() {
        let c = Config::from_layers(&Settings::default(), &Settings::default(), None).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.database, DatabaseUrl::Sqlite("./herald-data/herald.db".into()));
        assert_eq!(c.retry_schedule, RetrySchedule::default());
        assert_eq!(c.request_timeout, Duration::from_secs(15));
        assert!(!c.target_policy.allow_http);
        assert!(c.target_policy.allowed_networks.is_empty());
        assert!(c.admin_token.is_none());
        assert_eq!(c.role, Role::All);
        assert_eq!(c.lease_duration, Duration::from_secs(30));
    }

    #[test]
    fn bad_values_name_the_key_and_the_reason() {
        let e = err_text(Settings {
            retry_schedule: Some("5s,later".into()),
            ..Default::default()
        });
        assert!(e.starts_with("HERALD_RETRY_SCHEDULE: 'later' is not a duration"), "{e}");
        let e = err_text(Settings {
            listen: Some("nowhere".into()),
            ..Default::default()
        });
        assert!(e.starts_with("HERALD_LISTEN:"), "{e}");
        let e = err_text(Settings {
            allow_http: Some("maybe".into()),
            ..Default::default()
        });
        assert!(e.starts_with("HERALD_ALLOW_HTTP:"), "{e}");
        let e = err_text(Settings {
            allowed_target_networks: Some("10.0.0.0/33".into()),
            ..Default::default()
        });
        assert!(e.starts_with("HERALD_ALLOWED_TARGET_NETWORKS:"), "{e}");
        let e = err_text(Settings {
            admin_token: Some("short".into()),
            ..Default::default()
        });
        assert!(e.starts_with("HERALD_ADMIN_TOKEN:"), "{e}");
        let e = err_text(Settings {
            database_url: Some("mysql://x".into()),
            ..Default::default()
        });
        assert!(e.starts_with("HERALD_DATABASE_URL:"), "{e}");
        let e = err_text(Settings {
            request_timeout: Some("0s".into()),
            ..Default::default()
        });
        assert!(e.starts_with("HERALD_REQUEST_TIMEOUT:"), "{e}");
    }

    #[test]
    fn outbound_tls_and_proxy_settings_are_checked_at_start() {
        let c = Config::from_layers(&Settings::default(), &Settings::default(), None).unwrap();
        assert!(c.extra_roots.is_none() && !c.allow_insecure_tls && c.outbound_proxy.is_none());
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = err_text(Settings {
            ca_file: Some(missing.display().to_string()),
            ..Default::default()
        });
        assert!(e.starts_with("HERALD_CA_FILE: cannot read"), "{e}");
        let not_pem = dir.path().join("not.pem");
        std::fs::write(&not_pem, "just some text\n").unwrap();
        let e = err_text(Settings {
            ca_file: Some(not_pem.display().to_string()),
            ..Default::default()
        });
        assert!(
            e.starts_with("HERALD_CA_FILE:") && e.contains("no PEM certificate"),
            "{e}"
        );
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nTm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = err_text(Settings {
            ca_file: Some(garbage.display().to_string()),
            ..Default::default()
        });
        assert!(e.starts_with("HERALD_CA_FILE:") && e.contains("cannot trust"), "{e}");
        let e = err_text(Settings {
            allow_insecure_tls: Some("perhaps".into()),
            ..Default::default()
        });
        assert!(e.starts_with("HERALD_ALLOW_INSECURE_TLS:"), "{e}");
        let e = err_text(Settings {
            outbound_proxy: Some("ftp://user:hunter2@proxy:21".into()),
            ..Default::default()
        });
        assert!(e.starts_with("HERALD_OUTBOUND_PROXY:") && !e.contains("hunter2"), "{e}");
        let c = Config::from_layers(
            &Settings {
                outbound_proxy: Some("http://user:hunter2@proxy.internal:3128".into()),
                ..Default::default()
            },
            &Settings::default(),
            None,
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn the_file_fills_in_and_the_environment_overrides_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald.toml");
        std::fs::write(
            &path,
            "listen = \"0.0.0.0:9000\"\nretry_schedule = [\"1s\", \"2s\"]\nallow_http = true\n",
        )
        .unwrap();
        let env = Settings {
            listen: Some("127.0.0.1:9001".into()),
            ..Default::default()
        };
        let c = Config::load(&env, Some(&path)).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9001");
        assert_eq!(c.retry_schedule.max_attempts(), 3);
        assert!(c.target_policy.allow_http);
    }

    #[test]
    fn profiles_come_from_the_file_and_stretch_the_lease() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald.toml");
        std::fs::write(
            &path,
            "[profiles.acme]\nsignature = { style = \"hmac-sha256\", header = \"X-Acme-Signature\" }\ntimeout = \"60s\"\n",
        )
        .unwrap();
        let c = Config::load(&Settings::default(), Some(&path)).unwrap();
        assert_eq!(c.profiles.get("acme").unwrap().timeout, Duration::from_secs(60));
        assert_eq!(c.profiles.get("default").unwrap().timeout, c.request_timeout);
        assert_eq!(c.lease_duration, Duration::from_secs(75));
        let explicit = Settings {
            lease_duration: Some("30s".into()),
            ..Default::default()
        };
        let e = Config::load(&explicit, Some(&path)).unwrap_err().to_string();
        assert!(
            e.starts_with("lease_duration: must be longer than the slowest profile"),
            "{e}"
        );

        std::fs::write(&path, "[profiles.acme]\ntimeout = \"soon\"\n").unwrap();
        let e = Config::load(&Settings::default(), Some(&path)).unwrap_err().to_string();
        assert!(e.starts_with("profiles.acme.timeout in "), "{e}");
        std::fs::write(&path, "[profiles.acme]\ncolour = \"red\"\n").unwrap();
        let e = Config::load(&Settings::default(), Some(&path)).unwrap_err().to_string();
        assert!(e.starts_with("profiles in ") && e.contains("colour"), "{e}");
    }

    #[test]
    fn sources_come_from_the_file_and_their_errors_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald.toml");
        let source = "[[sources]]\nname = \"orders\"\ntype = \"rabbitmq\"\nurl = \"amqp://h\"\n";
        std::fs::write(&path, format!("{source}queue = \"q\"\n")).unwrap();
        let c = Config::load(&Settings::default(), Some(&path)).unwrap();
        assert_eq!(c.sources.len(), 1);
        assert_eq!(c.sources[0].name, "orders");
        std::fs::write(&path, source).unwrap();
        let e = Config::load(&Settings::default(), Some(&path)).unwrap_err().to_string();
        assert!(
            e.starts_with("sources.orders.queue in ") && e.ends_with(": is required"),
            "{e}"
        );
        std::fs::write(&path, format!("{source}queue = \"q\"\ncolour = \"red\"\n")).unwrap();
        let e = Config::load(&Settings::default(), Some(&path)).unwrap_err().to_string();
        assert!(e.starts_with("sources in ") && e.contains("colour"), "{e}");
    }

    #[test]
    fn errors_in_the_file_name_the_file_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald.toml");
        std::fs::write(&path, "request_timeout = \"fast\"\n").unwrap();
        let e = Config::load(&Settings::default(), Some(&path)).unwrap_err().to_string();
        assert!(e.starts_with("request_timeout in "), "{e}");
        std::fs::write(&path, "colour = \"blue\"\n").unwrap();
        let e = Config::load(&Settings::default(), Some(&path)).unwrap_err().to_string();
        assert!(e.contains("colour") && e.contains("not a known setting"), "{e}");
    }
}
