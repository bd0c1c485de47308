//! Applications: one per customer of the product that publishes events.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::error::{ServiceError, ServiceResult};
use super::input::{QueryParams, double_option};
use super::list::{Listed, Paging};
use crate::domain::access::Scope;
use crate::domain::ids::AppId;
use crate::domain::validate::{Problems, check_uid};
use crate::store::{Application, Metadata, Order};

/// A named profile must be configured on this server.
pub fn check_profile_name(p: &mut Problems, state: &AppState, name: &str) {
    if state.config.profiles.get(name).is_none() {
        let known: Vec<&str> = state.config.profiles.names().collect();
        p.add(
            &["profile"],
            format!(
                "'{name}' is not a configured profile (configured: {})",
                known.join(", ")
            ),
        );
    }
}

#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationIn {
    pub name: String,
    pub uid: Option<String>,
    #[serde(alias = "throttleRate")]
    pub rate_limit: Option<i64>,
    pub metadata: Option<Metadata>,
    /// Herald: the delivery profile of this application's endpoints that name none.
    pub profile: Option<String>,
    /// Herald: check payloads against their event type's schema; omit to
    /// follow the server's HERALD_VALIDATE_PAYLOADS.
    pub validate_payloads: Option<bool>,
    /// Herald: days this application's messages and their history are
    /// kept; at most the server's HERALD_HISTORY_RETENTION, which applies
    /// when omitted.
    pub history_retention_days: Option<i64>,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationPatch {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub uid: Option<Option<String>>,
    #[serde(default, alias = "throttleRate", deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>)]
    pub rate_limit: Option<Option<i64>>,
    pub metadata: Option<Metadata>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub profile: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<bool>)]
    pub validate_payloads: Option<Option<bool>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>)]
    pub history_retention_days: Option<Option<i64>>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationOut {
    pub id: String,
    pub name: String,
    pub uid: Option<String>,
    pub rate_limit: Option<i64>,
    pub throttle_rate: Option<i64>,
    pub metadata: Metadata,
    /// Herald: the delivery profile; `null` means `default`.
    pub profile: Option<String>,
    /// Herald: `null` follows the server's setting.
    pub validate_payloads: Option<bool>,
    /// Herald: `null` keeps history as long as the server does.
    pub history_retention_days: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Application> for ApplicationOut {
    fn from(a: Application) -> Self {
        Self {
            id: a.id.to_string(),
            name: a.name,
            uid: a.uid,
            rate_limit: a.rate_limit,
            throttle_rate: a.rate_limit,
            metadata: a.metadata,
            profile: a.profile,
            validate_payloads: a.validate_payloads,
            history_retention_days: a.history_retention_days,
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

/// What an application may set besides its name and uid.
#[derive(Clone, Copy, Default)]
struct Settings<'a> {
    rate_limit: Option<i64>,
    profile: Option<&'a str>,
    history_retention_days: Option<i64>,
}

fn check(state: &AppState, name: &str, uid: Option<&str>, settings: Settings<'_>) -> ServiceResult<()> {
    let Settings {
        rate_limit,
        profile,
        history_retention_days,
    } = settings;
    let mut p = Problems::default();
    if let Some(profile) = profile {
        check_profile_name(&mut p, state, profile);
    }
    if name.trim().is_empty() || name.len() > 256 {
        p.add(&["name"], "must be 1 to 256 characters long");
    }
    if let Some(uid) = uid {
        check_uid(&mut p, uid, AppId::PREFIX);
    }
    if let Some(r) = rate_limit
        && r < 1
    {
        p.add(&["rateLimit"], "must be at least 1 (omit it for no limit)");
    }
    if let Some(days) = history_retention_days {
        check_history_days(&mut p, state, days);
    }
    p.into_result().map_err(ServiceError::Validation)
}

/// An application may keep its history for less time than the server, never longer.
fn check_history_days(p: &mut Problems, state: &AppState, days: i64) {
    let server_days = state.config.history_retention.as_secs() / (24 * 3600);
    if days < 1 {
        p.add(
            &["historyRetentionDays"],
            "must be at least 1 (omit it to follow the server)",
        );
    } else if u64::try_from(days).map_or(true, |d| d > server_days) {
        p.add(
            &["historyRetentionDays"],
            format!(
                "must be at most {server_days}: the server keeps history for {} (HERALD_HISTORY_RETENTION)",
                crate::config::format_window(state.config.history_retention)
            ),
        );
    }
}

fn check_input(state: &AppState, input: &ApplicationIn) -> ServiceResult<()> {
    let settings = Settings {
        rate_limit: input.rate_limit,
        profile: input.profile.as_deref(),
        history_retention_days: input.history_retention_days,
    };
    check(state, &input.name, input.uid.as_deref(), settings)
}

/// A new application from `input`; `uid` stands in when the input has none.
fn new_app(state: &AppState, input: ApplicationIn, uid: Option<String>) -> Application {
    Application {
        rate_limit: input.rate_limit,
        metadata: input.metadata.unwrap_or_default(),
        profile: input.profile,
        validate_payloads: input.validate_payloads,
        history_retention_days: input.history_retention_days,
        ..Application::new(input.name, input.uid.or(uid), state.clock.now())
    }
}

/// Finds an application by id or uid.
pub async fn find_app(state: &AppState, id_or_uid: &str) -> ServiceResult<Application> {
    state
        .store
        .get_app(id_or_uid)
        .await?
        .ok_or(ServiceError::NotFound("application"))
}

/// The application `id_or_uid`, or, when there is none and `implicit` is
/// given, a new one made from it (Svix's "create the application alongside
/// the message"). Its uid must be the one in the path, so a retried call
/// finds what the first made. Only an administrator reaches a path whose
/// application does not exist, so only one can make it this way.
pub async fn find_or_make_app(
    state: &AppState,
    id_or_uid: &str,
    implicit: Option<ApplicationIn>,
) -> ServiceResult<Application> {
    let found = state.store.get_app(id_or_uid).await?;
    match (found, implicit) {
        (Some(app), _) => Ok(app),
        (None, None) => Err(ServiceError::NotFound("application")),
        (None, Some(input)) => {
            let mut p = Problems::default();
            match input.uid.as_deref() {
                None => p.add(
                    &["application", "uid"],
                    "must be set to the uid in the path to make the application",
                ),
                Some(uid) if uid != id_or_uid => p.add(
                    &["application", "uid"],
                    format!("must match the uid in the path ('{id_or_uid}')"),
                ),
                Some(_) => {}
            }
            p.into_result().map_err(ServiceError::Validation)?;
            check_input(state, &input)?;
            let app = new_app(state, input, None);
            state.store.create_app(&app).await?;
            Ok(app)
        }
    }
}

/// The applications `caller` may see: every one (matching `search`) for an
/// administrator, its own for a scoped caller.
pub async fn list_apps(state: &AppState, caller: &Scope, q: &QueryParams) -> ServiceResult<Listed<ApplicationOut>> {
    let paging = Paging::from_query(q, Order::Ascending)?;
    let rows = match caller.app() {
        None => state.store.list_apps(&paging.page, q.str("search")).await?,
        // A scoped caller's list is its own application, on one page.
        Some(mine) if paging.page.beyond.is_none() => state.store.get_app(mine.as_str()).await?.into_iter().collect(),
        Some(_) => Vec::new(),
    };
    Ok(paging.finish(rows.into_iter().map(ApplicationOut::from).collect(), |a| a.id.clone()))
}

/// Whether a save made the object (true) or found and changed it (false).
pub type Created = bool;

/// Creates an application; with `get_if_exists`, a taken uid answers the
/// existing one instead.
pub async fn create_app(
    state: &AppState,
    input: ApplicationIn,
    q: &QueryParams,
) -> ServiceResult<(Created, ApplicationOut)> {
    check_input(state, &input)?;
    if q.bool("get_if_exists")?
        && let Some(uid) = &input.uid
        && let Some(existing) = state.store.get_app(uid).await?
    {
        return Ok((false, existing.into()));
    }
    let app = new_app(state, input, None);
    state.store.create_app(&app).await?;
    Ok((true, app.into()))
}

/// Creates an application under the id it has in another Herald, so a
/// Herald moved to another database (`herald import svix` pointed at a
/// Herald) keeps its ids.
pub async fn create_app_with_id(state: &AppState, id: AppId, input: ApplicationIn) -> ServiceResult<ApplicationOut> {
    check_input(state, &input)?;
    let app = Application {
        id,
        ..new_app(state, input, None)
    };
    state.store.create_app(&app).await?;
    Ok(app.into())
}

pub async fn get_app(state: &AppState, app_id: &str) -> ServiceResult<ApplicationOut> {
    Ok(find_app(state, app_id).await?.into())
}

/// Replaces an application; creates it (with `app_id` as its uid) when absent.
pub async fn put_app(state: &AppState, app_id: &str, input: ApplicationIn) -> ServiceResult<(Created, ApplicationOut)> {
    check_input(state, &input)?;
    let now = state.clock.now();
    match state.store.get_app(app_id).await? {
        Some(mut app) => {
            app.name = input.name;
            app.uid = input.uid.or(app.uid);
            app.rate_limit = input.rate_limit;
            app.metadata = input.metadata.unwrap_or_default();
            app.profile = input.profile;
            app.validate_payloads = input.validate_payloads;
            app.history_retention_days = input.history_retention_days;
            app.updated_at = now;
            state.store.update_app(&app).await?;
            Ok((false, app.into()))
        }
        None => {
            if AppId::parse(app_id).is_some() {
                return Err(ServiceError::NotFound("application"));
            }
            let uid = input.uid.clone().unwrap_or_else(|| app_id.to_owned());
            check(state, "x", Some(&uid), Settings::default())?;
            let app = new_app(state, input, Some(uid));
            state.store.create_app(&app).await?;
            Ok((true, app.into()))
        }
    }
}

pub async fn patch_app(state: &AppState, app_id: &str, patch: ApplicationPatch) -> ServiceResult<ApplicationOut> {
    let mut app = find_app(state, app_id).await?;
    if let Some(name) = patch.name {
        app.name = name;
    }
    if let Some(uid) = patch.uid {
        app.uid = uid;
    }
    if let Some(rate) = patch.rate_limit {
        app.rate_limit = rate;
    }
    if let Some(metadata) = patch.metadata {
        app.metadata = metadata;
    }
    if let Some(profile) = patch.profile {
        app.profile = profile;
    }
    if let Some(validate) = patch.validate_payloads {
        app.validate_payloads = validate;
    }
    // Checked only when given: a window the server shortened since stays
    // (the sweep keeps the shorter of the two) and blocks no other change.
    let days_given = patch.history_retention_days;
    if let Some(days) = days_given {
        app.history_retention_days = days;
    }
    let settings = Settings {
        rate_limit: app.rate_limit,
        profile: app.profile.as_deref(),
        history_retention_days: days_given.flatten(),
    };
    check(state, &app.name, app.uid.as_deref(), settings)?;
    app.updated_at = state.clock.now();
    state.store.update_app(&app).await?;
    Ok(app.into())
}

/// Deletes an application with its endpoints, messages and history.
pub async fn delete_app(state: &AppState, app_id: &str) -> ServiceResult<()> {
    let app = find_app(state, app_id).await?;
    state.store.delete_app(&app.id).await?;
    Ok(())
}
