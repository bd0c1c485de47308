//! One `Config`, loaded once: defaults, then the TOML file, then `HERALD_*`
//! variables and command-line flags. A bad value stops the start with the key
//! and the reason. Every value is parsed here, into the type the server
//! uses, so nothing downstream parses configuration text again.

pub mod email;
pub mod outbound;
pub mod source;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

use ipnet::IpNet;

use self::email::EmailSettings;
use self::outbound::{OutboundProxy, TrustAnchors};
use self::source::{SourceConfig, SourceSpec};
use crate::domain::operational::EmailSchedule;
use crate::domain::profile::{ProfileSpec, Profiles, ServerDefaults, parse_timeout};
use crate::domain::redacted::Redacted;
use crate::domain::retry::{RetrySchedule, parse_duration};
use crate::domain::sealing::SecretKey;
use crate::domain::secret::{EndpointSecret, SecretKind};
use crate::domain::target::TargetPolicy;

/// Every setting, as text, from flags or the environment (clap fills both)
/// or from the TOML file (serde fills it, under the field's name). Each
/// setting is named here once: its flag, its variable and its file key all
/// come from the field. No `Debug`: several of them are secrets.
#[derive(Clone, Default, clap::Args, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address the HTTP API listens on [default: 127.0.0.1:8080]
    #[arg(long, env = "HERALD_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,

    /// Where Herald keeps its data [default: sqlite://./herald-data/herald.db]
    #[arg(long, env = "HERALD_DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Bearer token of the admin API. Unset: the first start generates one,
    /// prints it once and keeps only its hash
    #[arg(long, env = "HERALD_ADMIN_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// The key that seals endpoint secrets at rest: 32 bytes in base64 or
    /// hex; several, comma-separated, during a key rotation. Every node of
    /// one database needs the key that seals. Unset: read from
    /// HERALD_SECRET_KEY_FILE
    #[arg(long, env = "HERALD_SECRET_KEY", value_name = "KEY", hide_env_values = true)]
    pub secret_key: Option<String>,

    /// File holding the secret key (one key a line: several during a key
    /// rotation); created (mode 0600, with a warning) when missing, and read
    /// again every HERALD_KEY_RELOAD_INTERVAL [default: secret.key beside the
    /// SQLite file, or ./herald-data/secret.key with PostgreSQL]
    #[arg(long, env = "HERALD_SECRET_KEY_FILE", value_name = "FILE")]
    pub secret_key_file: Option<String>,

    /// How often a node reads its key file again, learns which key the
    /// database seals with, and reports the keys it holds (for `herald keys
    /// rotate`) [default: 5s]
    #[arg(long, env = "HERALD_KEY_RELOAD_INTERVAL", value_name = "DURATION")]
    pub key_reload_interval: Option<String>,

    /// Most API requests per second one token may make on this node; over
    /// it the API answers 429 with Retry-After. 0 turns the limit off; a
    /// token made with its own rateLimit uses that [default: 25000]
    #[arg(long, env = "HERALD_API_RATE_LIMIT", value_name = "N")]
    pub api_rate_limit: Option<String>,

    /// Failed authentications (API tokens, dashboard sign-ins) one client
    /// address may make per minute on this node, refilled gradually; past
    /// them its tokens are answered 429 with Retry-After, unlooked-up. The
    /// admin token is never refused. 0 turns the limit off [default: 10]
    #[arg(long, env = "HERALD_AUTH_FAILURE_LIMIT", value_name = "N")]
    pub auth_failure_limit: Option<String>,

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

    /// Memory one payload template render may use, in MiB. Templates render
    /// in worker processes held to this budget; a render past it fails its
    /// attempt. 0 renders in Herald's own process, without a memory bound
    /// [default: 64]
    #[arg(long, env = "HERALD_TEMPLATE_MEMORY_LIMIT", value_name = "MIB")]
    pub template_memory_limit: Option<String>,

    /// The program started as a template render worker, with the argument
    /// `render-worker` [default: this herald executable]
    #[arg(long, env = "HERALD_TEMPLATE_WORKER", value_name = "FILE")]
    pub template_worker: Option<String>,

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

    /// Delays between tries at an operator email the SMTP server did not
    /// take, comma-separated; the last one repeats [default: 1m,5m,30m,2h,1h]
    #[arg(long, env = "HERALD_EMAIL_RETRY_SCHEDULE", value_name = "DELAYS")]
    pub email_retry_schedule: Option<String>,

    /// How long after it was queued an operator email is given up as
    /// failed [default: 24h]
    #[arg(long, env = "HERALD_EMAIL_GIVE_UP_AFTER", value_name = "DURATION")]
    pub email_give_up_after: Option<String>,

    /// For crash tests only: `endpoint-committed` aborts the process right
    /// after an endpoint change and its operational events commit. Unset,
    /// it does nothing [default: none]
    #[arg(long, env = "HERALD_FAILPOINT", value_name = "NAME")]
    pub failpoint: Option<String>,

    /// The address people use to reach Herald, e.g. https://herald.example.com;
    /// portal links start with it, and an https one marks the dashboard's
    /// session cookie Secure [default: the address of the request]
    #[arg(long, env = "HERALD_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,

    /// Comma-separated origins whose browser pages may call the API (an
    /// embedded customer portal), e.g. "https://app.example.com"
    /// [default: none]
    #[arg(long, env = "HERALD_CORS_ORIGINS", value_name = "ORIGINS")]
    pub cors_origins: Option<String>,

    /// Check every payload against its event type's JSON Schema; an
    /// application's validatePayloads overrides this [default: false]
    #[arg(long, env = "HERALD_VALIDATE_PAYLOADS", value_name = "BOOL")]
    pub validate_payloads: Option<String>,

    /// How long payloads are kept when a message names no
    /// payloadRetentionPeriod [default: 90d]
    #[arg(long, env = "HERALD_PAYLOAD_RETENTION", value_name = "DURATION")]
    pub payload_retention: Option<String>,

    /// How long messages are kept, with their deliveries and attempts; one
    /// still being delivered stays until it is done. Must be at least the
    /// payload retention [default: 90d]
    #[arg(long, env = "HERALD_HISTORY_RETENTION", value_name = "DURATION")]
    pub history_retention: Option<String>,

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

/// The configuration the server runs with. Secrets are `Redacted` (or types
/// whose `Debug` hides them), so `{:?}` of a `Config` never shows one.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub database: DatabaseUrl,
    pub admin_token: Option<Redacted<String>>,
    /// Where the keys that seal secrets at rest come from.
    pub secret_key: SecretKeySource,
    pub key_reload_interval: Duration,
    /// Requests per second per API token; `None`: no limit.
    pub api_rate_limit: Option<u32>,
    /// Failed authentications per minute per client address; `None`: no limit.
    pub auth_failure_limit: Option<u32>,
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
    /// Bytes one template render may use; `None`: rendered in process, unbounded.
    pub template_memory_limit: Option<u64>,
    /// The render worker's program; `None`: this executable.
    pub template_worker: Option<PathBuf>,
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
    /// When operator emails the SMTP server did not take are tried again.
    pub email_schedule: EmailSchedule,
    /// A test's crash point; `None` in any real run.
    pub failpoint: Option<Failpoint>,
    pub validate_payloads: bool,
    pub payload_retention: Duration,
    /// How long a message and its history are kept; an application may shorten it.
    pub history_retention: Duration,
    pub retain_payloads: bool,
    pub cleanup_interval: Duration,
    /// Where people reach Herald, for portal links and the cookie's Secure flag.
    pub public_url: Option<url::Url>,
    /// Browser origins allowed to call the API, as `scheme://host[:port]`.
    pub cors_origins: Vec<String>,
    /// Delivery profiles from the file's `[profiles.NAME]` tables, plus `default`.
    pub profiles: Profiles,
    /// Broker queues and streams Herald publishes from: the file's `[[sources]]`.
    pub sources: Vec<SourceConfig>,
}

/// The keys that seal secrets at rest: given, or kept in a file.
#[derive(Debug, Clone)]
pub enum SecretKeySource {
    /// One or more keys (`SecretKey`'s `Debug` shows no byte of them).
    Keys(Vec<SecretKey>),
    /// Read at start, and again while running; created with a fresh key when missing.
    File(PathBuf),
}

/// Where operational webhooks go, and the secret that signs them
/// (`EndpointSecret`'s `Debug` shows no byte of it).
#[derive(Debug, Clone)]
pub struct OperationalWebhook {
    pub url: url::Url,
    pub secret: Option<EndpointSecret>,
}

/// Where a crash test stops the process (HERALD_FAILPOINT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failpoint {
    /// Right after an endpoint change and its notices committed.
    EndpointCommitted,
}

impl Failpoint {
    fn parse(s: &str) -> Result<Self, String> {
        match s {
            "endpoint-committed" => Ok(Self::EndpointCommitted),
            other => Err(format!(
                "'{other}' is not a failpoint; the one known is endpoint-committed"
            )),
        }
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

    fn parse(s: &str) -> Result<Self, String> {
        match s {
            "all" => Ok(Self::All),
            "api" => Ok(Self::Api),
            "worker" => Ok(Self::Worker),
            _ => Err(format!("'{s}' is not one of all, api, worker")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    /// The URL may carry the database password.
    Postgres(Redacted<String>),
}

impl DatabaseUrl {
    fn parse(s: &str) -> Result<Self, String> {
        if let Some(rest) = s.strip_prefix("sqlite://").or_else(|| s.strip_prefix("sqlite:")) {
            let path = rest.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Err("names no file; use sqlite://path/to/herald.db".to_owned());
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return Ok(Self::Postgres(Redacted::new(s.to_owned())));
        }
        Err("is neither sqlite://FILE nor postgres://…".to_owned())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
    #[error("cannot read the config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
}

const MIN_ADMIN_TOKEN_LEN: usize = 16;

/// How much longer than a request timeout a lease lasts by default.
const LEASE_MARGIN: Duration = Duration::from_secs(15);

/// One setting as given: the key to name in an error (the variable, or the
/// file key and the file) and its text.
type Given = Option<(String, String)>;

impl Config {
    /// Defaults suited to a developer's machine: loopback, a local SQLite file.
    pub fn load(cli: &Settings, file: Option<&Path>) -> Result<Self, ConfigError> {
        let FileContents {
            settings: from_file,
            profiles,
            sources,
        } = match file {
            Some(path) => read_file(path)?,
            None => FileContents::default(),
        };
        let file_label = file.map(|p| p.display().to_string());
        let mut config = Self::from_layers(cli, &from_file, file_label.as_deref())?;
        config.add_profiles(profiles, file_label.as_deref())?;
        config.sources = source::build(sources).map_err(|e| {
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
        let pick = |name: &str, a: &Option<String>, b: &Option<String>| match (a, b) {
            (Some(v), _) => Some((env_name(name), v.clone())),
            (None, Some(v)) => Some((
                format!("{name} in {}", file_label.unwrap_or("the config file")),
                v.clone(),
            )),
            (None, None) => None,
        };
        macro_rules! get {
            ($field:ident) => {
                pick(stringify!($field), &top.$field, &file.$field)
            };
        }

        let listen = parse_or(get!(listen), "127.0.0.1:8080", |s| {
            s.parse::<SocketAddr>()
                .map_err(|_| format!("'{s}' is not an address such as 127.0.0.1:8080"))
        })?;
        let database = parse_or(
            get!(database_url),
            "sqlite://./herald-data/herald.db",
            DatabaseUrl::parse,
        )?;
        // Taken as written, spaces and all: it is compared byte for byte.
        let admin_token = match get!(admin_token) {
            Some((key, v)) if v.len() < MIN_ADMIN_TOKEN_LEN => {
                return Err(invalid(
                    key,
                    format!("must be at least {MIN_ADMIN_TOKEN_LEN} characters long"),
                ));
            }
            given => given.map(|(_, v)| Redacted::new(v)),
        };
        let secret_key = secret_key_source(get!(secret_key), get!(secret_key_file), &database)?;
        let key_reload_interval = parse_or(
            get!(key_reload_interval),
            "5s",
            duration_at_least(Duration::from_millis(10)),
        )?;
        let api_rate_limit = parse_or(get!(api_rate_limit), "25000", |s| match s.parse::<u32>() {
            Ok(0) => Ok(None),
            Ok(n) if n <= 1_000_000 => Ok(Some(n)),
            _ => Err(format!("'{s}' is not a number between 0 (no limit) and 1000000")),
        })?;
        let auth_failure_limit = parse_or(get!(auth_failure_limit), "10", |s| match s.parse::<u32>() {
            Ok(0) => Ok(None),
            Ok(n) if n <= 1_000_000 => Ok(Some(n)),
            _ => Err(format!("'{s}' is not a number between 0 (no limit) and 1000000")),
        })?;
        let retry_schedule = parse(get!(retry_schedule), |s| {
            RetrySchedule::parse(s).map_err(|e| e.to_string())
        })?
        .unwrap_or_default();
        let request_timeout = parse_or(get!(request_timeout), "15s", parse_timeout)?;
        let allow_http = parse_or(get!(allow_http), "false", parse_bool)?;
        let allowed_networks = parse_or(get!(allowed_target_networks), "", parse_networks)?;
        let extra_roots = parse(get!(ca_file), |path| TrustAnchors::load(Path::new(path)))?;
        let allow_insecure_tls = parse_or(get!(allow_insecure_tls), "false", parse_bool)?;
        let outbound_proxy = parse(get!(outbound_proxy), OutboundProxy::parse)?;
        let max_concurrent_deliveries = parse_or(get!(max_concurrent_deliveries), "256", number_in(1..=100_000))?;
        let max_in_flight_per_endpoint = parse_or(get!(max_in_flight_per_endpoint), "64", number_in(1..=100_000))?;
        let template_memory_limit = parse_or(get!(template_memory_limit), "64", |s| match s.parse::<u64>() {
            Ok(0) => Ok(0),
            Ok(n) if (16..=1_048_576).contains(&n) => Ok(n),
            _ => Err(format!(
                "'{s}' is not 0 (off) or a number of MiB between 16 and 1048576"
            )),
        })?;
        let template_memory_limit = (template_memory_limit > 0).then(|| template_memory_limit * 1024 * 1024);
        let template_worker = parse(get!(template_worker), |s| {
            if s.is_empty() {
                Err("must name a program".to_owned())
            } else {
                Ok(PathBuf::from(s))
            }
        })?;
        let shutdown_grace = parse_or(get!(shutdown_grace), "30s", duration_at_least(Duration::ZERO))?;
        let log = get!(log).map_or_else(|| "info".to_owned(), |(_, v)| v);
        let role_given = get!(role);
        let role_key = role_given.as_ref().map(|(k, _)| k.clone());
        let role = parse_or(role_given, "all", Role::parse)?;
        if role != Role::All && matches!(database, DatabaseUrl::Sqlite(_)) {
            return Err(invalid(
                role_key.unwrap_or_default(),
                "api and worker roles need a shared PostgreSQL database; on SQLite one process runs everything",
            ));
        }
        let db_pool_size = parse_or(get!(db_pool_size), "10", number_in(1..=1000))?;
        let db_statement_timeout = parse_or(
            get!(db_statement_timeout),
            "30s",
            duration_at_least(Duration::from_millis(1)),
        )?;
        let lease_given = get!(lease_duration);
        let lease_explicit = lease_given.is_some();
        let lease_duration = parse(lease_given, |s| match parse_duration(s).map_err(|e| e.to_string())? {
            d if d <= request_timeout => Err(format!(
                "must be longer than the request timeout ({}), or a slow attempt would be sent twice",
                humantime::format_duration(request_timeout)
            )),
            d => Ok(d),
        })?
        .unwrap_or(request_timeout + LEASE_MARGIN);
        let disable_after = parse_or(get!(disable_after), "5d", duration_at_least(Duration::ZERO))?;
        let operational_webhook = operational_webhook(get!(operational_webhook_url), get!(operational_webhook_secret))?;
        let email = email_settings(get!(smtp_url), get!(notify_email), get!(notify_from))?;
        let email_schedule = EmailSchedule {
            delays: parse(get!(email_retry_schedule), EmailSchedule::parse_delays)?
                .unwrap_or_else(|| EmailSchedule::default().delays),
            give_up_after: parse_or(
                get!(email_give_up_after),
                "24h",
                duration_at_least(Duration::from_secs(1)),
            )?,
        };
        let failpoint = parse(get!(failpoint), Failpoint::parse)?;
        let public_url = parse(get!(public_url), parse_public_url)?;
        let cors_origins = parse_or(get!(cors_origins), "", parse_origins)?;
        let validate_payloads = parse_or(get!(validate_payloads), "false", parse_bool)?;
        let payload_given = get!(payload_retention);
        let payload_key = given_key(&payload_given, "payload_retention");
        let payload_retention = parse_or(payload_given, "90d", |s| {
            match parse_duration(s).map_err(|e| e.to_string())? {
                d if d.is_zero() => Err("must be longer than 0s".to_owned()),
                d => Ok(d),
            }
        })?;
        let history_given = get!(history_retention);
        let history_key = given_key(&history_given, "history_retention");
        let history_retention = parse_or(history_given, "90d", duration_at_least(Duration::from_secs(3600)))?;
        if payload_retention > history_retention {
            return Err(invalid(
                payload_key,
                format!(
                    "is {}, longer than {history_key} ({}): a payload cannot outlive its message; \
                     shorten the one or lengthen the other",
                    format_window(payload_retention),
                    format_window(history_retention)
                ),
            ));
        }
        let retain_payloads = parse_or(get!(retain_payloads), "true", parse_bool)?;
        let cleanup_interval = parse_or(
            get!(cleanup_interval),
            "1m",
            duration_at_least(Duration::from_millis(10)),
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
            key_reload_interval,
            api_rate_limit,
            auth_failure_limit,
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
            template_memory_limit,
            template_worker,
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
            email_schedule,
            failpoint,
            validate_payloads,
            payload_retention,
            history_retention,
            retain_payloads,
            cleanup_interval,
            public_url,
            cors_origins,
            profiles,
            sources: Vec::new(),
        })
    }
}

/// A retention window as an operator writes it: whole days as `90d`
/// (humantime would say `2months 29days 2h 52m 48s`), else humantime's text.
pub fn format_window(window: Duration) -> String {
    const DAY: u64 = 24 * 3600;
    if window.subsec_nanos() == 0 && window.as_secs().is_multiple_of(DAY) {
        format!("{}d", window.as_secs() / DAY)
    } else {
        humantime::format_duration(window).to_string()
    }
}

/// The key to name for `setting` in an error: where its value came from,
/// else its variable.
fn given_key(given: &Given, setting: &str) -> String {
    given.as_ref().map_or_else(|| env_name(setting), |(key, _)| key.clone())
}

/// The variable clap reads a setting from, as declared on `Settings`.
fn env_name(setting: &str) -> String {
    settings_table()
        .iter()
        .find(|(name, _)| name == setting)
        .map_or_else(|| setting.to_owned(), |(_, env)| env.clone())
}

/// Every setting's name and variable, read once from `Settings`' clap
/// declaration, so neither is written a second time.
fn settings_table() -> &'static [(String, String)] {
    static TABLE: OnceLock<Vec<(String, String)>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let command = <Settings as clap::Args>::augment_args(clap::Command::new("herald"));
        command
            .get_arguments()
            .filter_map(|arg| {
                let env = arg.get_env()?.to_string_lossy().into_owned();
                Some((arg.get_id().as_str().to_owned(), env))
            })
            .collect()
    })
}

fn secret_key_source(key: Given, file: Given, database: &DatabaseUrl) -> Result<SecretKeySource, ConfigError> {
    match (key, file) {
        (Some((key, _)), Some((file_key, _))) => Err(invalid(key, format!("set either it or {file_key}, not both"))),
        (Some((key, text)), None) => SecretKey::parse_ring(&text)
            .map(SecretKeySource::Keys)
            .map_err(|e| invalid(key, e.to_string())),
        (None, Some((key, path))) if path.trim().is_empty() => Err(invalid(key, "must name a file")),
        (None, Some((_, path))) => Ok(SecretKeySource::File(PathBuf::from(path))),
        (None, None) => Ok(SecretKeySource::File(match database {
            DatabaseUrl::Sqlite(db) => db.with_file_name("secret.key"),
            DatabaseUrl::Postgres(_) => PathBuf::from("./herald-data/secret.key"),
        })),
    }
}

/// An http(s) base address without a query; a trailing slash is dropped.
/// Origins as browsers send them: `https://app.example.com[:port]`, no path.
fn parse_origins(text: &str) -> Result<Vec<String>, String> {
    let origin = |item: &str| match url::Url::parse(item) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() && u.path() == "/" && u.query().is_none() => {
            Ok(u.origin().ascii_serialization())
        }
        _ => Err(format!(
            "'{item}' is not an origin such as https://app.example.com (scheme, host and port only)"
        )),
    };
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(origin)
        .collect()
}

fn parse_public_url(text: &str) -> Result<url::Url, String> {
    match url::Url::parse(text.trim_end_matches('/')) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.query().is_none() && u.has_host() => Ok(u),
        _ => Err(format!(
            "'{text}' is not an http(s) address such as https://herald.example.com"
        )),
    }
}

fn operational_webhook(url: Given, secret: Given) -> Result<Option<OperationalWebhook>, ConfigError> {
    let secret = parse(secret, |text| match EndpointSecret::parse(text) {
        Ok(s) if s.kind() == SecretKind::StandardHmac => Ok(s),
        _ => Err("must be a whsec_ secret (base64 of 24 to 64 bytes)".to_owned()),
    })?;
    let url = parse(url, |text| {
        url::Url::parse(text)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| format!("'{text}' is not an http(s) URL"))
    })?;
    Ok(url.map(|url| OperationalWebhook { url, secret }))
}

fn email_settings(smtp_url: Given, to: Given, from: Given) -> Result<Option<EmailSettings>, ConfigError> {
    match (smtp_url, to) {
        (None, None) => Ok(None),
        (Some((key, _)), None) => Err(invalid(key, "needs HERALD_NOTIFY_EMAIL: whom to tell")),
        (None, Some((key, _))) => Err(invalid(key, "needs HERALD_SMTP_URL: how to send")),
        (Some((url_key, url)), Some((to_key, to))) => {
            let to: Vec<String> = to
                .split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
                .collect();
            if to.is_empty() {
                return Err(invalid(to_key, "names no address"));
            }
            let from = from.map_or_else(|| "Herald <herald@localhost>".to_owned(), |(_, f)| f.trim().to_owned());
            EmailSettings::parse(url.trim(), &from, &to)
                .map(Some)
                .map_err(|e| invalid(url_key, e.to_string()))
        }
    }
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

/// The given value, parsed (trimmed first); `None` when not given.
fn parse<T>(value: Given, parse: impl Fn(&str) -> Result<T, String>) -> Result<Option<T>, ConfigError> {
    value
        .map(|(key, v)| parse(v.trim()).map_err(|reason| invalid(key, reason)))
        .transpose()
}

/// The given value, else the documented default, parsed alike.
fn parse_or<T>(value: Given, default: &str, parse: impl Fn(&str) -> Result<T, String>) -> Result<T, ConfigError> {
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

fn number_in<T>(range: RangeInclusive<T>) -> impl Fn(&str) -> Result<T, String>
where
    T: FromStr + PartialOrd + std::fmt::Display,
{
    move |s| match s.parse::<T>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(format!(
            "'{s}' is not a number between {} and {}",
            range.start(),
            range.end()
        )),
    }
}

fn duration_at_least(min: Duration) -> impl Fn(&str) -> Result<Duration, String> {
    move |s| match parse_duration(s).map_err(|e| e.to_string())? {
        d if d < min => Err(format!("must be at least {}", humantime::format_duration(min))),
        d => Ok(d),
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

/// What the file holds: text settings like the flags', profiles and sources.
#[derive(Default)]
struct FileContents {
    settings: Settings,
    profiles: BTreeMap<String, ProfileSpec>,
    sources: Vec<SourceSpec>,
}

/// Reads the TOML file: its `[profiles.NAME]` and `[[sources]]` tables, and
/// every other key into the same text settings the flags produce. A key
/// `Settings` does not declare is refused, named with the file.
fn read_file(path: &Path) -> Result<FileContents, ConfigError> {
    let file_err = |reason: String| ConfigError::File {
        path: path.to_owned(),
        reason,
    };
    let in_file = |key: &str| format!("{key} in {}", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
    let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| file_err(e.to_string()))?;
    let profiles = table
        .remove("profiles")
        .map(toml::Value::try_into::<BTreeMap<String, ProfileSpec>>)
        .transpose()
        .map_err(|e: toml::de::Error| invalid(in_file("profiles"), e.message()))?
        .unwrap_or_default();
    let sources = table
        .remove("sources")
        .map(toml::Value::try_into::<Vec<SourceSpec>>)
        .transpose()
        .map_err(|e: toml::de::Error| invalid(in_file("sources"), e.message()))?
        .unwrap_or_default();
    let mut texts = toml::Table::new();
    for (key, value) in table {
        if !settings_table().iter().any(|(name, _)| *name == key) {
            return Err(invalid(in_file(&key), "is not a known setting"));
        }
        let text =
            toml_to_text(&value).ok_or_else(|| invalid(in_file(&key), "must be a string, number, boolean or list"))?;
        texts.insert(key, toml::Value::String(text));
    }
    let settings = toml::Value::Table(texts)
        .try_into::<Settings>()
        .map_err(|e: toml::de::Error| file_err(e.message().to_owned()))?;
    Ok(FileContents {
        settings,
        profiles,
        sources,
    })
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
    fn payloads_may_not_outlive_the_history() {
        let text = err_text(Settings {
            payload_retention: Some("30d".into()),
            history_retention: Some("7d".into()),
            ..Default::default()
        });
        assert!(text.contains("HERALD_PAYLOAD_RETENTION"), "{text}");
        assert!(text.contains("HERALD_HISTORY_RETENTION"), "{text}");
        let c = Config::from_layers(&Settings::default(), &Settings::default(), None).unwrap();
        assert_eq!(c.history_retention, Duration::from_secs(90 * 24 * 3600));
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

    #[test]
    fn debug_shows_no_secret() {
        let key = SecretKey::generate().to_base64();
        let webhook_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let settings = Settings {
            admin_token: Some("admin-token-4f1c9e2ab7d3".into()),
            database_url: Some("postgres://herald:db-pass-91c2@127.0.0.1:5432/herald".into()),
            secret_key: Some(key.clone()),
            smtp_url: Some("smtps://mailer:smtp-pass-77ab@mail.example.test".into()),
            notify_email: Some("ops@example.test".into()),
            outbound_proxy: Some("http://proxy-user:proxy-pass-3e8d@proxy.internal:3128".into()),
            operational_webhook_url: Some("https://ops.example.test/hook".into()),
            operational_webhook_secret: Some(webhook_secret.into()),
            ..Default::default()
        };
        let config = Config::from_layers(&settings, &Settings::default(), None).unwrap();
        let shown = format!("{config:?}");
        for secret in [
            "admin-token-4f1c9e2ab7d3",
            "db-pass-91c2",
            key.as_str(),
            "smtp-pass-77ab",
            "proxy-pass-3e8d",
            "proxy-user",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ] {
            assert!(!shown.contains(secret), "{secret} shown in {shown}");
        }
        assert!(shown.contains("ops.example.test"), "{shown}");
    }
}
