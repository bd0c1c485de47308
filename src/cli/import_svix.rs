//! `herald import svix`: copies a running Svix server's event types,
//! applications and endpoints (with their headers and signing secrets) into
//! this Herald's database, through the same workflows the API uses, so
//! every check and the sealing of secrets apply.
//!
//! Objects are matched by uid: each is created, updated (only the fields
//! that differ) or left alone, so running it again changes nothing. A Svix
//! object without a uid gets its Svix id as uid, so product code that
//! addresses it by that id keeps working; one whose id is already a Herald
//! id (the source is another Herald) keeps that id.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::svix::{Svix, SvixApp, SvixEndpoint, SvixEventType, SvixHeaders};
use crate::config::Config;
use crate::domain::access::Scope;
use crate::domain::clock::Clock;
use crate::domain::ids::{AppId, EndpointId};
use crate::domain::validate::FieldError;
use crate::service::app::{self, ApplicationIn, ApplicationPatch};
use crate::service::endpoint::{self, EndpointIn, EndpointPatch};
use crate::service::event_type::{self, EventTypeIn, EventTypeOut, EventTypePatch};
use crate::service::input::QueryParams;
use crate::service::{AppState, Background, ServiceError, StartError};
use crate::store::{Application, Endpoint, Metadata, StoreError};

/// Why the import stopped, or ended with objects left behind.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("--url '{url}' cannot be used: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("--token is empty: give an API token of the Svix server")]
    NoToken,
    #[error("cannot reach the Svix server at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{url} answered 401 Unauthorized: the Svix server refused the token; check --token")]
    Unauthorized { url: String },
    #[error("{url} answered {status}: {body}")]
    Status { url: String, status: u16, body: String },
    #[error("{url} answered with JSON that is not Svix's: {reason}")]
    Unreadable { url: String, reason: String },
    #[error("cannot open the Herald database: {0}")]
    Database(StoreError),
    #[error("cannot prepare Herald's workflows: {0}")]
    Start(StartError),
    #[error("Herald failed while saving {what}: {reason}")]
    Herald { what: String, reason: String },
    #[error("{} refused by Herald (listed above); everything else was imported", objects(.0))]
    Refused(usize),
}

fn objects(n: &usize) -> String {
    if *n == 1 {
        "1 object was".to_owned()
    } else {
        format!("{n} objects were")
    }
}

/// The Svix server to copy from.
pub struct Source {
    pub url: String,
    pub token: String,
}

/// Copies everything from `source` into the database `config` names, prints
/// a summary on stdout, and fails when anything was refused.
pub async fn run(config: Config, source: Source) -> Result<(), ImportError> {
    let svix = Svix::new(&source.url, &source.token)?;
    let progress = Progress::start();
    let copied = copy(config, &svix, &progress).await;
    progress.finish();
    let (report, stopped) = copied?;
    print!("{}", report.render(&source.url));
    if let Some(e) = stopped {
        return Err(e);
    }
    match report.lines.refused.len() {
        0 => Ok(()),
        n => Err(ImportError::Refused(n)),
    }
}

/// Reads the source, then writes. A failure before the database is opened
/// is the answer; one after it comes with the report of what was done.
async fn copy(config: Config, svix: &Svix, progress: &Progress) -> Result<(Report, Option<ImportError>), ImportError> {
    // The source is read first: a wrong URL or token leaves the database untouched.
    let catalog = read(svix, progress).await?;
    let clock = Clock::system();
    let store = crate::store::open(&config, &clock)
        .await
        .map_err(ImportError::Database)?;
    let tasks = TaskTracker::new();
    let background = Background::new(tasks.clone(), CancellationToken::new());
    let mut report = Report::default();
    let outcome = match AppState::assemble(store.clone(), Arc::new(config), clock, background).await {
        Ok(state) => write(&state, svix, &catalog, progress, &mut report).await,
        Err(e) => Err(ImportError::Start(e)),
    };
    tasks.close();
    tasks.wait().await;
    store.close().await;
    Ok((report, outcome.err()))
}

/// Everything listed on the Svix server, before any write.
struct Catalog {
    event_types: Vec<SvixEventType>,
    apps: Vec<(SvixApp, Vec<SvixEndpoint>)>,
}

impl Catalog {
    fn len(&self) -> usize {
        self.event_types.len() + self.apps.iter().map(|(_, eps)| 1 + eps.len()).sum::<usize>()
    }
}

async fn read(svix: &Svix, progress: &Progress) -> Result<Catalog, ImportError> {
    progress.say("reading event types from Svix".to_owned());
    let event_types = svix.event_types().await?;
    progress.say("reading applications from Svix".to_owned());
    let apps = svix.apps().await?;
    let mut catalog = Catalog {
        event_types,
        apps: Vec::with_capacity(apps.len()),
    };
    for (n, app) in apps.into_iter().enumerate() {
        progress.say(format!("reading the endpoints of application {} from Svix", n + 1));
        let endpoints = svix.endpoints(&app.id).await?;
        catalog.apps.push((app, endpoints));
    }
    Ok(catalog)
}

async fn write(
    state: &AppState,
    svix: &Svix,
    catalog: &Catalog,
    progress: &Progress,
    report: &mut Report,
) -> Result<(), ImportError> {
    progress.count(catalog.len());
    for et in &catalog.event_types {
        let what = format!("event type {}", et.name);
        progress.step(&what);
        let change = import_event_type(state, et).await;
        report.event_types.note(&what, change, &mut report.lines)?;
        progress.done();
    }
    for (app, endpoints) in &catalog.apps {
        let identity = identity(app.uid.as_deref(), &app.id, AppId::parse);
        let app_what = format!("application {}", shown(&identity, &app.id));
        progress.step(&app_what);
        let outcome = import_app(state, app, &identity).await;
        let target = outcome.as_ref().ok().map(|(_, id)| id.clone());
        report
            .apps
            .note(&app_what, outcome.map(|(change, _)| change), &mut report.lines)?;
        progress.done();
        for ep in endpoints {
            let identity = identity_of(ep);
            let what = format!("endpoint {} of {app_what}", shown(&identity, &ep.id));
            progress.step(&what);
            let saved = match &target {
                Some(target) => import_endpoint(state, svix, app, target, ep, &identity).await,
                None => Err(Failure::Refused("its application was refused".to_owned())),
            };
            let change = saved.map(|(change, unknown)| {
                for name in unknown {
                    report.lines.by_hand.push(format!(
                        "{what}: header {name} (Svix shows its name, never its value); set it with PATCH …/headers"
                    ));
                }
                if change.wrote_secret() {
                    report.lines.secrets.push(what.clone());
                }
                change
            });
            report.endpoints.note(&what, change, &mut report.lines)?;
            progress.done();
        }
    }
    Ok(())
}

/// How a Svix object is found and kept in Herald: `key` (its uid, else its
/// Svix id) finds it; `kept` is the id itself when it is a Herald id.
#[derive(Debug, PartialEq, Eq)]
struct Identity<Id> {
    key: String,
    kept: Option<Id>,
}

impl<Id> Identity<Id> {
    /// The uid a new object is given: the key, unless the id itself is kept.
    fn uid(&self) -> Option<String> {
        self.kept.is_none().then(|| self.key.clone())
    }
}

fn identity<Id>(uid: Option<&str>, svix_id: &str, herald_id: fn(&str) -> Option<Id>) -> Identity<Id> {
    match uid.filter(|u| !u.is_empty()) {
        Some(uid) => Identity {
            key: uid.to_owned(),
            kept: None,
        },
        None => Identity {
            key: svix_id.to_owned(),
            kept: herald_id(svix_id),
        },
    }
}

fn identity_of(ep: &SvixEndpoint) -> Identity<EndpointId> {
    identity(ep.uid.as_deref(), &ep.id, EndpointId::parse)
}

/// An object as the summary names it: by its key, with the Svix id beside a uid.
fn shown<Id>(identity: &Identity<Id>, svix_id: &str) -> String {
    if identity.key == svix_id {
        identity.key.clone()
    } else {
        format!("{} (Svix {svix_id})", identity.key)
    }
}

/// What a run did to one object.
#[derive(Debug, PartialEq, Eq)]
enum Change {
    Created,
    /// The fields that differed, as the API names them.
    Updated(Vec<&'static str>),
    Unchanged,
}

impl Change {
    fn from_fields(changed: Vec<&'static str>) -> Self {
        if changed.is_empty() {
            Self::Unchanged
        } else {
            Self::Updated(changed)
        }
    }

    /// Whether Svix's signing secret was written (endpoints).
    fn wrote_secret(&self) -> bool {
        match self {
            Self::Created => true,
            Self::Updated(fields) => fields.contains(&"secret"),
            Self::Unchanged => false,
        }
    }
}

/// Why one object was not saved: Herald refused it (the import goes on), or
/// something failed that stops the import.
#[derive(Debug)]
enum Failure {
    Refused(String),
    /// Herald itself failed (its database went away, say).
    Broken(String),
    Fatal(ImportError),
}

impl Failure {
    fn service(e: ServiceError) -> Self {
        match e {
            ServiceError::Validation(errors) => Self::Refused(fields(&errors)),
            ServiceError::Internal(cause) => Self::Broken(cause),
            e @ (ServiceError::Unavailable | ServiceError::RateLimited(_) | ServiceError::TooManyFailures(_)) => {
                Self::Broken(e.to_string())
            }
            other => Self::Refused(other.to_string()),
        }
    }

    /// A Svix answer about one object refuses that object; an unreachable
    /// server or a refused token stops the import.
    fn source(e: ImportError) -> Self {
        match e {
            ImportError::Status { .. } | ImportError::Unreadable { .. } => Self::Refused(e.to_string()),
            other => Self::Fatal(other),
        }
    }
}

/// `url: must be https; headers.X-Y: is set by Herald …`, the fields as the API names them.
fn fields(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| {
            let loc: Vec<&str> = e.loc.iter().map(String::as_str).filter(|l| *l != "body").collect();
            format!("{}: {}", loc.join("."), e.msg)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

// ---- event types ----

/// An event type as Svix has it, in the form Herald compares.
struct WantedEventType {
    description: String,
    archived: bool,
    deprecated: bool,
    schemas: Option<serde_json::Value>,
    /// Only compared when Svix names one: Herald derives a missing group from the name.
    group_name: Option<String>,
    feature_flags: Option<Vec<String>>,
}

impl WantedEventType {
    fn of(et: &SvixEventType) -> Self {
        let flags = et
            .feature_flags
            .clone()
            .or_else(|| et.feature_flag.clone().map(|f| vec![f]));
        Self {
            description: et.description.clone().unwrap_or_default(),
            archived: et.archived.unwrap_or(false),
            deprecated: et.deprecated.unwrap_or(false),
            schemas: no_empty_schemas(et.schemas.clone()),
            group_name: et.group_name.clone().filter(|g| !g.is_empty()),
            feature_flags: flags.filter(|f| !f.is_empty()),
        }
    }

    fn patch(self, existing: &EventTypeOut) -> (EventTypePatch, Vec<&'static str>) {
        let mut changes = Changes::default();
        let mut patch = EventTypePatch {
            description: changes.of("description", existing.description.clone(), self.description),
            archived: changes.of("archived", existing.archived, self.archived),
            deprecated: changes.of("deprecated", existing.deprecated, self.deprecated),
            schemas: changes.of("schemas", no_empty_schemas(existing.schemas.clone()), self.schemas),
            feature_flags: changes.of(
                "featureFlags",
                existing.feature_flags.clone().filter(|f| !f.is_empty()),
                self.feature_flags,
            ),
            ..Default::default()
        };
        // Svix may leave the group out; Herald then keeps the one it derived.
        if self.group_name.is_some() {
            patch.group_name = changes.of("groupName", existing.group_name.clone(), self.group_name);
        }
        (patch, changes.0)
    }
}

/// `{}` and `null` both mean "no schema".
fn no_empty_schemas(schemas: Option<serde_json::Value>) -> Option<serde_json::Value> {
    schemas.filter(|s| !s.is_null() && s.as_object().is_none_or(|m| !m.is_empty()))
}

async fn import_event_type(state: &AppState, et: &SvixEventType) -> Result<Change, Failure> {
    let wanted = WantedEventType::of(et);
    match event_type::get_event_type(state, &et.name).await {
        Ok(existing) => {
            let (patch, changed) = wanted.patch(&existing);
            if !changed.is_empty() {
                event_type::patch_event_type(state, &et.name, patch)
                    .await
                    .map_err(Failure::service)?;
            }
            Ok(Change::from_fields(changed))
        }
        Err(ServiceError::NotFound(_)) => {
            let input = EventTypeIn {
                name: et.name.clone(),
                description: wanted.description,
                archived: Some(wanted.archived),
                deprecated: Some(wanted.deprecated),
                schemas: wanted.schemas,
                group_name: wanted.group_name,
                feature_flags: wanted.feature_flags,
                feature_flag: None,
            };
            event_type::create_event_type(state, input)
                .await
                .map_err(Failure::service)?;
            Ok(Change::Created)
        }
        Err(e) => Err(Failure::service(e)),
    }
}

// ---- applications ----

async fn import_app(state: &AppState, app: &SvixApp, identity: &Identity<AppId>) -> Result<(Change, AppId), Failure> {
    let rate_limit = app.rate_limit.or(app.throttle_rate);
    let metadata = app.metadata.clone().unwrap_or_default();
    match app::find_app(state, &identity.key).await {
        Ok(existing) => {
            let (patch, changed) = app_patch(&existing, &app.name, rate_limit, &metadata);
            if !changed.is_empty() {
                app::patch_app(state, existing.id.as_str(), patch)
                    .await
                    .map_err(Failure::service)?;
            }
            Ok((Change::from_fields(changed), existing.id))
        }
        Err(ServiceError::NotFound(_)) => {
            let input = ApplicationIn {
                name: app.name.clone(),
                uid: identity.uid(),
                rate_limit,
                metadata: Some(metadata),
                ..Default::default()
            };
            let made = match &identity.kept {
                Some(id) => app::create_app_with_id(state, id.clone(), input).await,
                None => app::create_app(state, input, &QueryParams::from_pairs(Vec::<(String, String)>::new()))
                    .await
                    .map(|(_, out)| out),
            }
            .map_err(Failure::service)?;
            Ok((Change::Created, AppId::from_trusted(made.id)))
        }
        Err(e) => Err(Failure::service(e)),
    }
}

fn app_patch(
    existing: &Application,
    name: &str,
    rate_limit: Option<i64>,
    metadata: &Metadata,
) -> (ApplicationPatch, Vec<&'static str>) {
    let mut changes = Changes::default();
    let patch = ApplicationPatch {
        name: changes.of("name", existing.name.as_str(), name).map(str::to_owned),
        rate_limit: changes.of("rateLimit", existing.rate_limit, rate_limit),
        metadata: changes.of("metadata", &existing.metadata, metadata).cloned(),
        ..Default::default()
    };
    (patch, changes.0)
}

/// The fields an update changes, named as the summary prints them.
#[derive(Default)]
struct Changes(Vec<&'static str>);

impl Changes {
    /// `wanted` when it differs from `existing`, noting `field`; else `None`.
    fn of<T: PartialEq>(&mut self, field: &'static str, existing: T, wanted: T) -> Option<T> {
        if existing == wanted {
            return None;
        }
        self.0.push(field);
        Some(wanted)
    }
}

// ---- endpoints ----

/// An endpoint as Svix has it, in the form Herald stores.
struct WantedEndpoint {
    url: String,
    description: String,
    filter_types: Option<Vec<String>>,
    channels: Option<Vec<String>>,
    disabled: bool,
    rate_limit: Option<i64>,
    metadata: Metadata,
    headers: BTreeMap<String, String>,
    secret: String,
}

impl WantedEndpoint {
    /// Svix shows credential headers by name only: where Herald already has
    /// one (set by hand after an earlier run) it stays.
    fn of(ep: &SvixEndpoint, svix_headers: &SvixHeaders, secret: String, existing: Option<&Endpoint>) -> Self {
        let mut headers = svix_headers.headers.clone();
        if let Some(existing) = existing {
            for name in &svix_headers.sensitive {
                if let Some((kept, value)) = header(&existing.headers, name) {
                    headers.insert(kept.to_owned(), value.to_owned());
                }
            }
        }
        Self {
            url: ep.url.clone(),
            description: ep.description.clone().unwrap_or_default(),
            filter_types: ep.filter_types.clone().filter(|t| !t.is_empty()),
            channels: ep.channels.clone().filter(|c| !c.is_empty()),
            disabled: ep.disabled.unwrap_or(false),
            rate_limit: ep.rate_limit.or(ep.throttle_rate),
            metadata: ep.metadata.clone().unwrap_or_default(),
            headers,
            secret,
        }
    }

    fn input(self, uid: Option<String>) -> EndpointIn {
        EndpointIn {
            url: self.url,
            description: Some(self.description),
            filter_types: self.filter_types,
            channels: self.channels,
            disabled: Some(self.disabled),
            secret: Some(self.secret),
            uid,
            metadata: Some(self.metadata),
            headers: Some(self.headers),
            rate_limit: self.rate_limit,
            ..Default::default()
        }
    }

    fn patch(self, existing: &Endpoint) -> (EndpointPatch, Vec<&'static str>) {
        let mut changes = Changes::default();
        let patch = EndpointPatch {
            url: changes.of("url", existing.url.clone(), self.url),
            description: changes.of("description", existing.description.clone(), self.description),
            filter_types: changes.of("filterTypes", existing.filter_types.clone(), self.filter_types),
            channels: changes.of(
                "channels",
                existing.channels.clone().filter(|c| !c.is_empty()),
                self.channels,
            ),
            disabled: changes.of("disabled", existing.disabled, self.disabled),
            rate_limit: changes.of("rateLimit", existing.rate_limit, self.rate_limit),
            metadata: changes.of("metadata", existing.metadata.clone(), self.metadata),
            headers: changes.of("headers", existing.headers.clone(), self.headers),
            secret: changes
                .of("secret", existing.secret.expose(), self.secret.as_str())
                .map(str::to_owned),
            ..Default::default()
        };
        (patch, changes.0)
    }
}

/// A header by name, whatever its case.
fn header<'a>(headers: &'a BTreeMap<String, String>, name: &str) -> Option<(&'a str, &'a str)> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(n, v)| (n.as_str(), v.as_str()))
}

/// Matches, then creates or updates, one endpoint with its headers and
/// secret; answers also the credential headers Svix would not give out.
async fn import_endpoint(
    state: &AppState,
    svix: &Svix,
    app: &SvixApp,
    target: &AppId,
    ep: &SvixEndpoint,
    identity: &Identity<EndpointId>,
) -> Result<(Change, Vec<String>), Failure> {
    let (headers, secret) = tokio::join!(svix.headers(&app.id, &ep.id), svix.secret(&app.id, &ep.id));
    let headers = headers.map_err(Failure::source)?;
    let secret = secret.map_err(Failure::source)?;
    let existing = match endpoint::find_endpoint(state, target, &identity.key).await {
        Ok(existing) => Some(existing),
        Err(ServiceError::NotFound(_)) => None,
        Err(e) => return Err(Failure::service(e)),
    };
    let wanted = WantedEndpoint::of(ep, &headers, secret, existing.as_ref());
    // Credentials Svix named but Herald still lacks: a person sets them.
    let unknown: Vec<String> = (headers.sensitive.iter())
        .filter(|name| header(&wanted.headers, name).is_none())
        .cloned()
        .collect();
    let change = match existing {
        Some(existing) => {
            let (patch, changed) = wanted.patch(&existing);
            if !changed.is_empty() {
                endpoint::patch_endpoint(state, &Scope::Admin, target.as_str(), existing.id.as_str(), patch)
                    .await
                    .map_err(Failure::service)?;
            }
            Change::from_fields(changed)
        }
        None => {
            let input = wanted.input(identity.uid());
            match &identity.kept {
                Some(id) => endpoint::create_endpoint_with_id(state, target.as_str(), id.clone(), input).await,
                None => endpoint::create_endpoint(state, &Scope::Admin, target.as_str(), input).await,
            }
            .map_err(Failure::service)?;
            Change::Created
        }
    };
    Ok((change, unknown))
}

// ---- the summary ----

#[derive(Default)]
struct Tally {
    created: usize,
    updated: usize,
    unchanged: usize,
    refused: usize,
}

impl Tally {
    /// Counts one object's outcome; a failure that stops the import is passed on.
    fn note(&mut self, what: &str, outcome: Result<Change, Failure>, lines: &mut Lines) -> Result<(), ImportError> {
        match outcome {
            Ok(Change::Created) => self.created += 1,
            Ok(Change::Updated(fields)) => {
                self.updated += 1;
                lines.updated.push(format!("{what}: {}", fields.join(", ")));
            }
            Ok(Change::Unchanged) => self.unchanged += 1,
            Err(Failure::Refused(reason)) => {
                self.refused += 1;
                lines.refused.push(format!("{what}: {reason}"));
            }
            Err(Failure::Broken(reason)) => {
                return Err(ImportError::Herald {
                    what: what.to_owned(),
                    reason,
                });
            }
            Err(Failure::Fatal(e)) => return Err(e),
        }
        Ok(())
    }

    fn line(&self, kind: &str) -> String {
        let mut line = format!(
            "{kind}: {} created, {} updated, {} unchanged",
            self.created, self.updated, self.unchanged
        );
        if self.refused > 0 {
            let _ = write!(line, ", {} refused", self.refused);
        }
        line
    }

    fn changed(&self) -> bool {
        self.created + self.updated > 0
    }
}

/// The lines of the summary besides the counts.
#[derive(Default)]
struct Lines {
    /// Updated objects, with the fields that differed.
    updated: Vec<String>,
    /// Endpoints whose Svix signing secret was written.
    secrets: Vec<String>,
    /// What Svix does not give out, for a person to set.
    by_hand: Vec<String>,
    refused: Vec<String>,
}

#[derive(Default)]
struct Report {
    event_types: Tally,
    apps: Tally,
    endpoints: Tally,
    lines: Lines,
}

impl Report {
    fn render(&self, source: &str) -> String {
        let mut out = format!("From {source}:\n");
        for line in [
            self.event_types.line("event types"),
            self.apps.line("applications"),
            self.endpoints.line("endpoints"),
        ] {
            let _ = writeln!(out, "  {line}");
        }
        let sections = [
            ("Updated (only the fields that differed):", &self.lines.updated),
            (
                "Signing secrets copied from Svix (consumers keep verifying with the secret they have):",
                &self.lines.secrets,
            ),
            ("Not copied; set by hand:", &self.lines.by_hand),
            ("Refused by Herald (not imported):", &self.lines.refused),
        ];
        for (title, lines) in sections {
            if !lines.is_empty() {
                let _ = writeln!(out, "{title}");
                for line in lines {
                    let _ = writeln!(out, "  {line}");
                }
            }
        }
        let changed = self.event_types.changed() || self.apps.changed() || self.endpoints.changed();
        if !changed && self.lines.refused.is_empty() {
            out.push_str("nothing to change: Herald already holds what Svix has\n");
        }
        out
    }
}

// ---- progress ----

/// The progress line on stderr, drawn only for a person at a terminal.
struct Progress(ProgressBar);

impl Progress {
    fn start() -> Self {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(None, target);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        Self(bar)
    }

    fn say(&self, what: String) {
        self.0.set_message(what);
    }

    /// From here on, a bar over `total` objects.
    fn count(&self, total: usize) {
        self.0.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        self.0.set_length(total as u64);
        self.0.set_position(0);
    }

    /// Names the object being copied.
    fn step(&self, what: &str) {
        self.0.set_message(what.to_owned());
    }

    fn done(&self) {
        self.0.inc(1);
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uid_wins_then_a_svix_id_becomes_the_uid_and_a_herald_id_is_kept() {
        let with_uid = identity(Some("acme"), "app_2XzKSUIDbase62Example00001", AppId::parse);
        assert_eq!(with_uid.key, "acme");
        assert_eq!(with_uid.uid().as_deref(), Some("acme"));

        let svix = identity(None, "app_2XzKSUIDbase62Example00001", AppId::parse);
        assert_eq!(svix.kept, None);
        assert_eq!(svix.uid().as_deref(), Some("app_2XzKSUIDbase62Example00001"));

        let herald_id = AppId::generate();
        let herald = identity(Some(""), herald_id.as_str(), AppId::parse);
        assert_eq!(herald.kept, Some(herald_id.clone()));
        assert_eq!(herald.key, herald_id.as_str());
        assert_eq!(herald.uid(), None);
    }

    #[test]
    fn a_second_run_with_nothing_new_says_so() {
        let mut report = Report::default();
        report.apps.unchanged = 2;
        let text = report.render("http://svix.internal");
        assert!(
            text.contains("applications: 0 created, 0 updated, 2 unchanged"),
            "{text}"
        );
        assert!(text.contains("nothing to change"), "{text}");
        report.apps.updated = 1;
        assert!(!report.render("http://svix.internal").contains("nothing to change"));
    }

    #[test]
    fn refusals_name_the_fields_as_the_api_does() {
        let errors = vec![FieldError {
            loc: vec!["body".into(), "headers".into(), "Host".into()],
            msg: "is set by Herald and cannot be overridden".into(),
            kind: "value_error",
        }];
        assert_eq!(
            fields(&errors),
            "headers.Host: is set by Herald and cannot be overridden"
        );
    }

    #[test]
    fn empty_schemas_and_flags_mean_none() {
        assert_eq!(no_empty_schemas(Some(serde_json::json!({}))), None);
        assert_eq!(no_empty_schemas(Some(serde_json::Value::Null)), None);
        let one = serde_json::json!({"1": {"type": "object"}});
        assert_eq!(no_empty_schemas(Some(one.clone())), Some(one));
    }
}
