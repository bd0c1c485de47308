//! Applications: one per customer of the product that publishes events.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, QueryParams, double_option};
use super::list::{Paging, list_response};
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

#[derive(Deserialize, ToSchema)]
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
}

#[derive(Deserialize, ToSchema)]
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
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

list_response!(ListResponseApplicationOut, ApplicationOut);

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
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

fn check(
    state: &AppState,
    name: &str,
    uid: Option<&str>,
    rate_limit: Option<i64>,
    profile: Option<&str>,
) -> ApiResult<()> {
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
    p.into_result().map_err(ApiError::Validation)
}

fn check_input(state: &AppState, input: &ApplicationIn) -> ApiResult<()> {
    check(
        state,
        &input.name,
        input.uid.as_deref(),
        input.rate_limit,
        input.profile.as_deref(),
    )
}

/// A new application from `input`; `uid` stands in when the input has none.
fn new_app(input: ApplicationIn, uid: Option<String>) -> Application {
    Application {
        rate_limit: input.rate_limit,
        metadata: input.metadata.unwrap_or_default(),
        profile: input.profile,
        validate_payloads: input.validate_payloads,
        ..Application::new(input.name, input.uid.or(uid), crate::store::now())
    }
}

/// Finds an application by id or uid, or answers 404.
pub async fn find_app(state: &AppState, id_or_uid: &str) -> ApiResult<Application> {
    state
        .store
        .get_app(id_or_uid)
        .await?
        .ok_or(ApiError::NotFound("application"))
}

#[utoipa::path(get, path = "/api/v1/app", tag = "Application",
    params(("limit" = Option<u32>, Query), ("iterator" = Option<String>, Query),
        ("search" = Option<String>, Query, description = "Herald: only applications whose name or uid contains this, or whose id it is")),
    responses((status = 200, body = ListResponseApplicationOut)))]
pub async fn list_apps(
    State(state): State<AppState>,
    Caller(caller): Caller,
    q: QueryParams,
) -> ApiResult<Json<ListResponseApplicationOut>> {
    let paging = Paging::from_query(&q, Order::Ascending)?;
    let rows = match caller.app() {
        None => state.store.list_apps(&paging.page, q.str("search")).await?,
        // A scoped caller's list is its own application, on one page.
        Some(mine) if paging.page.beyond.is_none() => state.store.get_app(mine.as_str()).await?.into_iter().collect(),
        Some(_) => Vec::new(),
    };
    let listed = paging.finish(rows.into_iter().map(ApplicationOut::from).collect(), |a| a.id.clone());
    Ok(Json(listed.into()))
}

#[utoipa::path(post, path = "/api/v1/app", tag = "Application",
    params(("get_if_exists" = Option<bool>, Query, description = "Answer the existing application when the uid is taken")),
    request_body = ApplicationIn,
    responses((status = 201, body = ApplicationOut), (status = 200, body = ApplicationOut, description = "Existing application (get_if_exists)")))]
pub async fn create_app(
    State(state): State<AppState>,
    q: QueryParams,
    ApiJson(input): ApiJson<ApplicationIn>,
) -> ApiResult<(StatusCode, Json<ApplicationOut>)> {
    check_input(&state, &input)?;
    if q.bool("get_if_exists")?
        && let Some(uid) = &input.uid
        && let Some(existing) = state.store.get_app(uid).await?
    {
        return Ok((StatusCode::OK, Json(existing.into())));
    }
    let app = new_app(input, None);
    state.store.create_app(&app).await?;
    Ok((StatusCode::CREATED, Json(app.into())))
}

#[utoipa::path(get, path = "/api/v1/app/{app_id}", tag = "Application",
    params(("app_id" = String, Path, description = "The application's id or uid")),
    responses((status = 200, body = ApplicationOut), (status = 404, body = super::error::HttpErrorOut)))]
pub async fn get_app(State(state): State<AppState>, Path(app_id): Path<String>) -> ApiResult<Json<ApplicationOut>> {
    Ok(Json(find_app(&state, &app_id).await?.into()))
}

/// Replaces an application; creates it (with the path as its uid) when absent.
#[utoipa::path(put, path = "/api/v1/app/{app_id}", tag = "Application",
    params(("app_id" = String, Path, description = "The application's id or uid")),
    request_body = ApplicationIn,
    responses((status = 200, body = ApplicationOut), (status = 201, body = ApplicationOut)))]
pub async fn put_app(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    ApiJson(input): ApiJson<ApplicationIn>,
) -> ApiResult<(StatusCode, Json<ApplicationOut>)> {
    check_input(&state, &input)?;
    let now = crate::store::now();
    match state.store.get_app(&app_id).await? {
        Some(mut app) => {
            app.name = input.name;
            app.uid = input.uid.or(app.uid);
            app.rate_limit = input.rate_limit;
            app.metadata = input.metadata.unwrap_or_default();
            app.profile = input.profile;
            app.validate_payloads = input.validate_payloads;
            app.updated_at = now;
            state.store.update_app(&app).await?;
            Ok((StatusCode::OK, Json(app.into())))
        }
        None => {
            if AppId::parse(&app_id).is_some() {
                return Err(ApiError::NotFound("application"));
            }
            let uid = input.uid.clone().unwrap_or(app_id);
            check(&state, "x", Some(&uid), None, None)?;
            let app = new_app(input, Some(uid));
            state.store.create_app(&app).await?;
            Ok((StatusCode::CREATED, Json(app.into())))
        }
    }
}

#[utoipa::path(patch, path = "/api/v1/app/{app_id}", tag = "Application",
    params(("app_id" = String, Path, description = "The application's id or uid")),
    request_body = ApplicationPatch,
    responses((status = 200, body = ApplicationOut)))]
pub async fn patch_app(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    ApiJson(patch): ApiJson<ApplicationPatch>,
) -> ApiResult<Json<ApplicationOut>> {
    let mut app = find_app(&state, &app_id).await?;
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
    check(
        &state,
        &app.name,
        app.uid.as_deref(),
        app.rate_limit,
        app.profile.as_deref(),
    )?;
    app.updated_at = crate::store::now();
    state.store.update_app(&app).await?;
    Ok(Json(app.into()))
}

#[utoipa::path(delete, path = "/api/v1/app/{app_id}", tag = "Application",
    params(("app_id" = String, Path, description = "The application's id or uid")),
    responses((status = 204, description = "Deleted with its endpoints, messages and history")))]
pub async fn delete_app(State(state): State<AppState>, Path(app_id): Path<String>) -> ApiResult<StatusCode> {
    let app = find_app(&state, &app_id).await?;
    state.store.delete_app(&app.id).await?;
    Ok(StatusCode::NO_CONTENT)
}
