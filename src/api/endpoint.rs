//! Endpoints: where an application's messages go, and how they are signed.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::app::find_app;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, QueryParams, double_option};
use super::list::{Paging, list_response};
use crate::domain::ids::{AppId, EndpointId};
use crate::domain::secret::EndpointSecret;
use crate::domain::validate::{Problems, check_channels, check_event_types, check_uid};
use crate::store::{Endpoint, Metadata, Order};

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointIn {
    pub url: String,
    pub description: Option<String>,
    /// Event types this endpoint receives; omit for all. `eventTypes` is accepted too.
    #[serde(alias = "eventTypes")]
    pub filter_types: Option<Vec<String>>,
    pub channels: Option<Vec<String>>,
    pub disabled: Option<bool>,
    /// `whsec_` + base64 of 24–64 bytes; generated when omitted.
    pub secret: Option<String>,
    pub uid: Option<String>,
    pub metadata: Option<Metadata>,
    /// Extra headers sent with every request to this endpoint.
    pub headers: Option<BTreeMap<String, String>>,
    #[serde(alias = "throttleRate")]
    pub rate_limit: Option<i64>,
    /// Accepted for compatibility; ignored.
    pub version: Option<i64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointPatch {
    pub url: Option<String>,
    pub description: Option<String>,
    #[serde(default, alias = "eventTypes", deserialize_with = "double_option")]
    #[schema(value_type = Option<Vec<String>>)]
    pub filter_types: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Vec<String>>)]
    pub channels: Option<Option<Vec<String>>>,
    pub disabled: Option<bool>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub uid: Option<Option<String>>,
    pub metadata: Option<Metadata>,
    pub headers: Option<BTreeMap<String, String>>,
    #[serde(default, alias = "throttleRate", deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>)]
    pub rate_limit: Option<Option<i64>>,
    pub secret: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointOut {
    pub id: String,
    pub url: String,
    pub description: String,
    pub filter_types: Option<Vec<String>>,
    /// The same list as `filterTypes`, under the name newer clients read.
    pub event_types: Option<Vec<String>>,
    pub channels: Option<Vec<String>>,
    pub disabled: bool,
    pub uid: Option<String>,
    pub metadata: Metadata,
    pub rate_limit: Option<i64>,
    pub throttle_rate: Option<i64>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

list_response!(ListResponseEndpointOut, EndpointOut);

#[derive(Serialize, ToSchema)]
pub struct EndpointSecretOut {
    pub key: String,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSecretRotateIn {
    /// The new secret; generated when omitted.
    pub key: Option<String>,
    /// How long the old secret keeps signing (0 to 7 days; default 24 h).
    pub grace_period_seconds: Option<i64>,
}

impl From<Endpoint> for EndpointOut {
    fn from(e: Endpoint) -> Self {
        Self {
            id: e.id.to_string(),
            url: e.url,
            description: e.description,
            event_types: e.filter_types.clone(),
            filter_types: e.filter_types,
            channels: e.channels,
            disabled: e.disabled,
            uid: e.uid,
            metadata: e.metadata,
            rate_limit: e.rate_limit,
            throttle_rate: e.rate_limit,
            version: 1,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

/// Headers Herald sets itself; an endpoint may not override them.
const RESERVED_HEADERS: &[&str] = &[
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "content-type",
    "content-length",
    "host",
    "connection",
    "transfer-encoding",
    "user-agent",
    "te",
    "upgrade",
    "keep-alive",
];

/// Checks every field of an endpoint as it will be stored.
fn check(state: &AppState, ep: &Endpoint) -> ApiResult<()> {
    let mut p = Problems::default();
    if let Err(e) = state.config.target_policy.check_url(&ep.url) {
        p.add(&["url"], format!("'{}' {e}", ep.url));
    }
    if let Some(types) = &ep.filter_types {
        if types.is_empty() {
            p.add(
                &["filterTypes"],
                "must name at least one event type (omit it to receive all)",
            );
        }
        check_event_types(&mut p, "filterTypes", types);
    }
    if let Some(channels) = &ep.channels {
        check_channels(&mut p, channels);
    }
    if let Some(uid) = &ep.uid {
        check_uid(&mut p, uid, EndpointId::PREFIX);
    }
    if ep.description.len() > 1024 {
        p.add(&["description"], "must be at most 1024 characters long");
    }
    if let Some(r) = ep.rate_limit
        && r < 1
    {
        p.add(&["rateLimit"], "must be at least 1 (omit it for no limit)");
    }
    for (name, value) in &ep.headers {
        let lower = name.to_ascii_lowercase();
        if HeaderName::try_from(name.as_str()).is_err() {
            p.add(&["headers", name], "is not a valid header name");
        } else if RESERVED_HEADERS.contains(&lower.as_str()) {
            p.add(&["headers", name], "is set by Herald and cannot be overridden");
        }
        if HeaderValue::try_from(value.as_str()).is_err() {
            p.add(&["headers", name], "has a value that is not a valid header value");
        }
    }
    p.into_result().map_err(ApiError::Validation)
}

fn parse_secret(field: &str, text: Option<String>) -> ApiResult<EndpointSecret> {
    match text {
        None => Ok(EndpointSecret::generate()),
        Some(t) => EndpointSecret::parse(&t).map_err(|e| ApiError::field(&["body", field], e.to_string())),
    }
}

fn build(app_id: AppId, input: EndpointIn, secret: EndpointSecret, now: DateTime<Utc>) -> Endpoint {
    Endpoint {
        id: EndpointId::generate(),
        app_id,
        uid: input.uid,
        url: input.url,
        description: input.description.unwrap_or_default(),
        filter_types: input.filter_types,
        channels: input.channels,
        disabled: input.disabled.unwrap_or(false),
        rate_limit: input.rate_limit,
        metadata: input.metadata.unwrap_or_default(),
        headers: input.headers.unwrap_or_default(),
        secret,
        previous_secret: None,
        created_at: now,
        updated_at: now,
    }
}

pub async fn find_endpoint(state: &AppState, app_id: &AppId, id_or_uid: &str) -> ApiResult<Endpoint> {
    state
        .store
        .get_endpoint(app_id, id_or_uid)
        .await?
        .ok_or(ApiError::NotFound("endpoint"))
}

#[utoipa::path(get, path = "/api/v1/app/{app_id}/endpoint", tag = "Endpoint",
    params(("app_id" = String, Path), ("limit" = Option<u32>, Query), ("iterator" = Option<String>, Query)),
    responses((status = 200, body = ListResponseEndpointOut)))]
pub async fn list_endpoints(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    q: QueryParams,
) -> ApiResult<Json<ListResponseEndpointOut>> {
    let app = find_app(&state, &app_id).await?;
    let paging = Paging::from_query(&q, Order::Ascending)?;
    let rows = state.store.list_endpoints(&app.id, &paging.page).await?;
    let listed = paging.finish(rows.into_iter().map(EndpointOut::from).collect(), |e| e.id.clone());
    Ok(Json(listed.into()))
}

#[utoipa::path(post, path = "/api/v1/app/{app_id}/endpoint", tag = "Endpoint",
    params(("app_id" = String, Path)), request_body = EndpointIn,
    responses((status = 201, body = EndpointOut), (status = 422, body = super::error::HttpValidationErrorOut)))]
pub async fn create_endpoint(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    ApiJson(input): ApiJson<EndpointIn>,
) -> ApiResult<(StatusCode, Json<EndpointOut>)> {
    let app = find_app(&state, &app_id).await?;
    let secret = parse_secret("secret", input.secret.clone())?;
    let ep = build(app.id, input, secret, crate::store::now());
    check(&state, &ep)?;
    state.store.create_endpoint(&ep).await?;
    Ok((StatusCode::CREATED, Json(ep.into())))
}

#[utoipa::path(get, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}", tag = "Endpoint",
    params(("app_id" = String, Path), ("endpoint_id" = String, Path, description = "The endpoint's id or uid")),
    responses((status = 200, body = EndpointOut), (status = 404, body = super::error::HttpErrorOut)))]
pub async fn get_endpoint(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
) -> ApiResult<Json<EndpointOut>> {
    let app = find_app(&state, &app_id).await?;
    Ok(Json(find_endpoint(&state, &app.id, &endpoint_id).await?.into()))
}

/// Replaces an endpoint's settings (not its secret); creates it when absent.
#[utoipa::path(put, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}", tag = "Endpoint",
    params(("app_id" = String, Path), ("endpoint_id" = String, Path)), request_body = EndpointIn,
    responses((status = 200, body = EndpointOut), (status = 201, body = EndpointOut)))]
pub async fn put_endpoint(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    ApiJson(input): ApiJson<EndpointIn>,
) -> ApiResult<(StatusCode, Json<EndpointOut>)> {
    let app = find_app(&state, &app_id).await?;
    let now = crate::store::now();
    match state.store.get_endpoint(&app.id, &endpoint_id).await? {
        Some(existing) => {
            let mut ep = build(app.id, input, existing.secret.clone(), now);
            ep.id = existing.id;
            ep.uid = ep.uid.or(existing.uid);
            ep.previous_secret = existing.previous_secret;
            ep.created_at = existing.created_at;
            check(&state, &ep)?;
            state.store.update_endpoint(&ep).await?;
            Ok((StatusCode::OK, Json(ep.into())))
        }
        None => {
            if EndpointId::parse(&endpoint_id).is_some() {
                return Err(ApiError::NotFound("endpoint"));
            }
            let secret = parse_secret("secret", input.secret.clone())?;
            let mut ep = build(app.id, input, secret, now);
            ep.uid = ep.uid.or(Some(endpoint_id));
            check(&state, &ep)?;
            state.store.create_endpoint(&ep).await?;
            Ok((StatusCode::CREATED, Json(ep.into())))
        }
    }
}

#[utoipa::path(patch, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}", tag = "Endpoint",
    params(("app_id" = String, Path), ("endpoint_id" = String, Path)), request_body = EndpointPatch,
    responses((status = 200, body = EndpointOut)))]
pub async fn patch_endpoint(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    ApiJson(patch): ApiJson<EndpointPatch>,
) -> ApiResult<Json<EndpointOut>> {
    let app = find_app(&state, &app_id).await?;
    let mut ep = find_endpoint(&state, &app.id, &endpoint_id).await?;
    if let Some(url) = patch.url {
        ep.url = url;
    }
    if let Some(d) = patch.description {
        ep.description = d;
    }
    if let Some(t) = patch.filter_types {
        ep.filter_types = t;
    }
    if let Some(c) = patch.channels {
        ep.channels = c;
    }
    if let Some(d) = patch.disabled {
        ep.disabled = d;
    }
    if let Some(uid) = patch.uid {
        ep.uid = uid;
    }
    if let Some(m) = patch.metadata {
        ep.metadata = m;
    }
    if let Some(h) = patch.headers {
        ep.headers = h;
    }
    if let Some(r) = patch.rate_limit {
        ep.rate_limit = r;
    }
    if let Some(secret) = patch.secret {
        ep.secret = parse_secret("secret", Some(secret))?;
    }
    check(&state, &ep)?;
    ep.updated_at = crate::store::now();
    state.store.update_endpoint(&ep).await?;
    Ok(Json(ep.into()))
}

#[utoipa::path(delete, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}", tag = "Endpoint",
    params(("app_id" = String, Path), ("endpoint_id" = String, Path)),
    responses((status = 204, description = "Deleted with its pending deliveries and history")))]
pub async fn delete_endpoint(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let app = find_app(&state, &app_id).await?;
    let ep = find_endpoint(&state, &app.id, &endpoint_id).await?;
    state.store.delete_endpoint(&app.id, &ep.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/secret", tag = "Endpoint",
    params(("app_id" = String, Path), ("endpoint_id" = String, Path)),
    responses((status = 200, body = EndpointSecretOut)))]
pub async fn get_secret(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
) -> ApiResult<Json<EndpointSecretOut>> {
    let app = find_app(&state, &app_id).await?;
    let ep = find_endpoint(&state, &app.id, &endpoint_id).await?;
    Ok(Json(EndpointSecretOut {
        key: ep.secret.expose().to_owned(),
    }))
}

const DEFAULT_GRACE_SECONDS: i64 = 24 * 3600;
const MAX_GRACE_SECONDS: i64 = 7 * 24 * 3600;

/// Replaces the secret; the old one keeps signing (a second `v1,` entry)
/// through the grace period so consumers can switch without losing events.
#[utoipa::path(post, path = "/api/v1/app/{app_id}/endpoint/{endpoint_id}/secret/rotate", tag = "Endpoint",
    params(("app_id" = String, Path), ("endpoint_id" = String, Path)), request_body = EndpointSecretRotateIn,
    responses((status = 200, body = EndpointSecretOut, description = "The new secret")))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult<Json<EndpointSecretOut>> {
    let input: EndpointSecretRotateIn = if body.iter().all(u8::is_ascii_whitespace) {
        EndpointSecretRotateIn::default()
    } else {
        super::extract::parse_json(&body)?
    };
    let grace = input.grace_period_seconds.unwrap_or(DEFAULT_GRACE_SECONDS);
    if !(0..=MAX_GRACE_SECONDS).contains(&grace) {
        return Err(ApiError::field(
            &["body", "gracePeriodSeconds"],
            "must be between 0 and 604800 (7 days)",
        ));
    }
    let app = find_app(&state, &app_id).await?;
    let mut ep = find_endpoint(&state, &app.id, &endpoint_id).await?;
    let new_secret = parse_secret("key", input.key)?;
    let now = crate::store::now();
    let old = std::mem::replace(&mut ep.secret, new_secret);
    ep.previous_secret = (grace > 0).then(|| (old, now + Duration::seconds(grace)));
    ep.updated_at = now;
    state.store.update_endpoint(&ep).await?;
    Ok(Json(EndpointSecretOut {
        key: ep.secret.expose().to_owned(),
    }))
}
