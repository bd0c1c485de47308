//! Endpoints: where an application's messages go, and how they are signed.

use std::collections::BTreeMap;

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use reqwest::header::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::app::{Created, find_app};
use super::error::{ServiceError, ServiceResult};
use super::input::{QueryParams, double_option};
use super::list::{Listed, Paging};
use crate::config::Failpoint;
use crate::domain::access::Scope;
use crate::domain::filter::every_event_if_empty;
use crate::domain::format::PayloadFormat;
use crate::domain::headers::{is_reserved, is_sensitive};
use crate::domain::ids::{AppId, EndpointId};
use crate::domain::profile::{Profile, SecretReveal, VerifyMethod};
use crate::domain::secret::{EndpointSecret, SecretKind};
use crate::domain::signature::SignatureStyle;
use crate::domain::status::{DeliveryOrder, WhileDisabled};
use crate::domain::validate::{Problems, check_channels, check_name, check_subscriptions, check_uid};
use crate::store::{Application, Endpoint, Metadata, Notices, Order};
use crate::telemetry::notify::{DisableTrigger, EndpointEvent};

#[derive(Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct EndpointIn {
    pub url: String,
    pub description: Option<String>,
    /// Event types this endpoint receives; omit (or `[]`) for all. `eventTypes` is accepted too.
    #[serde(alias = "eventTypes")]
    pub filter_types: Option<Vec<String>>,
    pub channels: Option<Vec<String>>,
    pub disabled: Option<bool>,
    /// Generated when omitted. Its form follows the profile: `whsec_` +
    /// base64 of 24–64 bytes (Standard Webhooks HMAC), a `whsk_` Ed25519 key,
    /// or plain text of 16+ characters (a product's own HMAC header).
    pub secret: Option<String>,
    pub uid: Option<String>,
    pub metadata: Option<Metadata>,
    /// Extra headers sent with every request to this endpoint.
    pub headers: Option<BTreeMap<String, String>>,
    #[serde(alias = "throttleRate")]
    pub rate_limit: Option<i64>,
    /// Accepted for compatibility; ignored.
    pub version: Option<i64>,
    /// Herald: the delivery profile; omit to follow the application's.
    pub profile: Option<String>,
    /// Herald: sent as `verifyToken` by the `get-challenge` check.
    pub verify_token: Option<String>,
    /// Herald: `raw` (default), `slack` or `template`.
    pub format: Option<String>,
    /// Herald: with `format: template`, a template rendered to the JSON body.
    pub template: Option<String>,
    /// Herald: the owner (e.g. a user of your product); the endpoint then
    /// receives only messages whose `audience` is empty or names this owner.
    pub owner_id: Option<String>,
    /// Herald: what happens to messages while the endpoint is disabled:
    /// `drop` (default; recorded as not sent, see replay-missing) or `hold`
    /// (kept, and sent in order once it is enabled).
    #[schema(value_type = Option<String>)]
    pub while_disabled: Option<WhileDisabled>,
    /// Herald: `false` skips checking the endpoint's TLS certificate (a
    /// self-signed receiver). Refused unless the server sets
    /// `HERALD_ALLOW_INSECURE_TLS=true`. Default `true`.
    pub tls_verify: Option<bool>,
    /// Herald: `parallel` (default) or `fifo`: one message at a time, in
    /// publish order; a failing message holds back those behind it until it
    /// succeeds or exhausts its retries.
    #[schema(value_type = Option<String>)]
    pub ordering: Option<DeliveryOrder>,
}

#[derive(Deserialize, ToSchema, Default)]
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
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub profile: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub verify_token: Option<Option<String>>,
    pub format: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub template: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub owner_id: Option<Option<String>>,
    #[schema(value_type = Option<String>)]
    pub while_disabled: Option<WhileDisabled>,
    /// Herald: see `EndpointIn.tlsVerify`.
    pub tls_verify: Option<bool>,
    #[schema(value_type = Option<String>)]
    pub ordering: Option<DeliveryOrder>,
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
    /// Herald: the delivery profile; `null` follows the application's.
    pub profile: Option<String>,
    pub verify_token: Option<String>,
    pub format: String,
    pub template: Option<String>,
    /// Herald: why Herald disabled the endpoint (410 Gone, a failed check).
    pub disabled_reason: Option<String>,
    pub owner_id: Option<String>,
    /// Herald: `healthy`, `failing` (deliveries exhausted their retries with
    /// no success since `failingSince`) or `disabled`.
    pub status: EndpointStatus,
    pub failing_since: Option<DateTime<Utc>>,
    /// Herald: `drop` or `hold`.
    pub while_disabled: String,
    /// Herald: `false` when Herald skips checking the endpoint's TLS
    /// certificate. If the server stops allowing that, the certificate is
    /// checked all the same and failures say so.
    pub tls_verify: bool,
    /// Herald: `parallel` or `fifo`.
    pub ordering: String,
    /// Herald: only in the answer that creates the endpoint, so that a
    /// secret shown once is shown at all (the public key for Ed25519).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EndpointStatus {
    Healthy,
    Failing,
    Disabled,
}

/// Custom headers, as read back: credentials are named, never shown.
#[derive(Serialize, ToSchema)]
pub struct EndpointHeadersOut {
    pub headers: BTreeMap<String, String>,
    pub sensitive: Vec<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct EndpointHeadersIn {
    pub headers: BTreeMap<String, String>,
}

/// Sets the given headers; a `null` value removes one.
#[derive(Deserialize, ToSchema)]
pub struct EndpointHeadersPatchIn {
    #[schema(value_type = BTreeMap<String, Option<String>>)]
    pub headers: BTreeMap<String, Option<String>>,
}

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
            profile: e.profile,
            verify_token: e.verify_token,
            format: e.format.name().to_owned(),
            template: e.format.template().map(str::to_owned),
            disabled_reason: e.disabled_reason,
            while_disabled: e.while_disabled.name().to_owned(),
            tls_verify: e.tls_verify,
            ordering: e.ordering.name().to_owned(),
            owner_id: e.owner_id,
            status: match (e.disabled, e.failing_since) {
                (true, _) => EndpointStatus::Disabled,
                (false, Some(_)) => EndpointStatus::Failing,
                (false, None) => EndpointStatus::Healthy,
            },
            failing_since: e.failing_since,
            secret: None,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

const MAX_VERIFY_TOKEN_LEN: usize = 256;

/// Checks every field of an endpoint as it will be stored, under `profile`.
fn check(state: &AppState, ep: &Endpoint, before: Option<&Endpoint>, profile: &Profile) -> ServiceResult<()> {
    let mut p = Problems::default();
    // Only a change is refused: an endpoint saved while the server allowed
    // it stays editable, and is verified all the same.
    let newly_unverified = !ep.tls_verify && before.is_none_or(|old| old.tls_verify);
    if newly_unverified && !state.config.allow_insecure_tls {
        p.add(
            &["tlsVerify"],
            "can be false only when the server sets HERALD_ALLOW_INSECURE_TLS=true; \
             trust a private CA with HERALD_CA_FILE instead",
        );
    }
    if let Err(e) = state.config.target_policy.check_url(&ep.url) {
        p.add(&["url"], format!("'{}' {e}", ep.url));
    }
    if let Some(types) = &ep.filter_types {
        check_subscriptions(&mut p, "filterTypes", types);
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
    check_headers(&mut p, &ep.headers, profile);
    if let Some(owner) = &ep.owner_id {
        check_name(&mut p, "ownerId", owner);
    }
    if let Some(token) = &ep.verify_token
        && (token.is_empty() || token.len() > MAX_VERIFY_TOKEN_LEN)
    {
        p.add(
            &["verifyToken"],
            format!("must be 1 to {MAX_VERIFY_TOKEN_LEN} characters long"),
        );
    }
    if profile.verify == VerifyMethod::GetChallenge && ep.verify_token.is_none() {
        p.add(
            &["verifyToken"],
            format!(
                "is required: profile '{}' checks the endpoint with a GET challenge that carries it",
                profile.name
            ),
        );
    }
    p.into_result().map_err(ServiceError::Validation)
}

fn check_headers(p: &mut Problems, headers: &BTreeMap<String, String>, profile: &Profile) {
    let signature = match &profile.signature {
        SignatureStyle::BodyHmac { header, .. } => Some(header.as_str()),
        SignatureStyle::StandardWebhooks { .. } => None,
    };
    let profile_headers: Vec<&str> = signature.into_iter().chain(profile.event_header.as_deref()).collect();
    for (name, value) in headers {
        if HeaderName::try_from(name.as_str()).is_err() {
            p.add(&["headers", name], "is not a valid header name");
        } else if is_reserved(name) || profile_headers.iter().any(|h| h.eq_ignore_ascii_case(name)) {
            p.add(&["headers", name], "is set by Herald and cannot be overridden");
        }
        if HeaderValue::try_from(value.as_str()).is_err() {
            p.add(&["headers", name], "has a value that is not a valid header value");
        }
    }
}

/// The profile an endpoint delivers with, or a 422 naming the missing one.
fn profile_for(state: &AppState, ep: &Endpoint, app: &Application) -> ServiceResult<Arc<Profile>> {
    let name = ep.profile.as_deref().or(app.profile.as_deref());
    state.config.profiles.resolve(name, None).cloned().ok_or_else(|| {
        let known: Vec<&str> = state.config.profiles.names().collect();
        ServiceError::field(
            &["body", "profile"],
            format!(
                "'{}' is not a configured profile (configured: {})",
                name.unwrap_or_default(),
                known.join(", ")
            ),
        )
    })
}

/// Parses a given secret, which must suit the profile, or makes one that does.
fn secret_for(field: &str, text: Option<String>, profile: &Profile) -> ServiceResult<EndpointSecret> {
    let Some(text) = text else {
        return Ok(EndpointSecret::generate(profile.signature.secret_kind()));
    };
    let secret = EndpointSecret::parse(&text).map_err(|e| ServiceError::field(&["body", field], e.to_string()))?;
    if !profile.signature.accepts(&secret) {
        return Err(ServiceError::field(
            &["body", field],
            format!(
                "profile '{}' signs with {}",
                profile.name,
                profile.signature.secret_kind().describe()
            ),
        ));
    }
    Ok(secret)
}

/// A profile change may call for another kind of secret: the old one could
/// not sign any more, so a new one is made (read it with `GET …/secret`, or
/// rotate when the profile shows secrets once).
fn fit_secret(ep: &mut Endpoint, profile: &Profile) {
    if !profile.signature.accepts(&ep.secret) {
        ep.secret = EndpointSecret::generate(profile.signature.secret_kind());
        ep.previous_secret = None;
    }
}

fn parse_format(format: Option<&str>, template: Option<&str>) -> ServiceResult<PayloadFormat> {
    PayloadFormat::parse(format, template).map_err(|(field, e)| ServiceError::field(&["body", field], e.to_string()))
}

/// Runs the profile's endpoint check when the URL is new, changed, or
/// switched back on, and sets when it is next repeated.
async fn verify(
    state: &AppState,
    ep: &mut Endpoint,
    before: Option<&Endpoint>,
    profile: &Profile,
) -> ServiceResult<()> {
    if profile.verify == VerifyMethod::None {
        ep.reverify_at = None;
        return Ok(());
    }
    let needed = match before {
        None => true,
        Some(old) => {
            old.url != ep.url
                || old.profile != ep.profile
                || old.verify_token != ep.verify_token
                || old.tls_verify != ep.tls_verify
                || (old.disabled && !ep.disabled)
        }
    };
    if !needed || ep.disabled {
        return Ok(());
    }
    let outcome = crate::delivery::verify::check(&state.outbound, profile, ep).await;
    if let Err(reason) = outcome {
        return Err(ServiceError::field(
            &["body", "url"],
            format!("the endpoint check failed: {reason}"),
        ));
    }
    ep.reverify_at = profile
        .reverify_every
        .and_then(|every| Duration::from_std(every).ok())
        .map(|every| state.clock.now() + every);
    Ok(())
}

fn build(
    app_id: AppId,
    input: EndpointIn,
    secret: EndpointSecret,
    format: PayloadFormat,
    now: DateTime<Utc>,
) -> Endpoint {
    Endpoint {
        uid: input.uid,
        description: input.description.unwrap_or_default(),
        filter_types: every_event_if_empty(input.filter_types),
        channels: input.channels,
        disabled: input.disabled.unwrap_or(false),
        while_disabled: input.while_disabled.unwrap_or_default(),
        ordering: input.ordering.unwrap_or_default(),
        rate_limit: input.rate_limit,
        metadata: input.metadata.unwrap_or_default(),
        headers: input.headers.unwrap_or_default(),
        profile: input.profile,
        verify_token: input.verify_token,
        format,
        owner_id: input.owner_id,
        tls_verify: input.tls_verify.unwrap_or(true),
        ..Endpoint::new(app_id, input.url, secret, now)
    }
}

/// How a new endpoint is known besides what its input says.
enum NewIdentity {
    /// A fresh id; the uid, when the input has none.
    Fresh(Option<String>),
    /// The id it has in another Herald.
    Kept(EndpointId),
}

/// Creates an endpoint from `input`: the secret follows its profile, and
/// the profile's check must pass first.
async fn create_from(
    state: &AppState,
    app: &Application,
    input: EndpointIn,
    identity: NewIdentity,
) -> ServiceResult<EndpointOut> {
    let format = parse_format(input.format.as_deref(), input.template.as_deref())?;
    let secret_text = input.secret.clone();
    let placeholder = EndpointSecret::generate(SecretKind::StandardHmac);
    let mut ep = build(app.id.clone(), input, placeholder, format, state.clock.now());
    match identity {
        NewIdentity::Fresh(uid) => ep.uid = ep.uid.or(uid),
        NewIdentity::Kept(id) => ep.id = id,
    }
    let profile = profile_for(state, &ep, app)?;
    ep.secret = secret_for("secret", secret_text, &profile)?;
    check(state, &ep, None, &profile)?;
    verify(state, &mut ep, None, &profile).await?;
    let notices = state.notifier.endpoint_changed(EndpointEvent::Created, app, &ep);
    state.store.create_endpoint_noting(&ep, &notices).await?;
    committed(state, &notices);
    let shown = ep.secret.for_consumer();
    let mut out = EndpointOut::from(ep);
    out.secret = Some(shown);
    Ok(out)
}

/// Saves changes to an existing endpoint under its (possibly new) profile.
async fn save_changes(
    state: &AppState,
    app: &Application,
    before: &Endpoint,
    mut ep: Endpoint,
    new_secret: Option<String>,
) -> ServiceResult<Endpoint> {
    let profile = profile_for(state, &ep, app)?;
    match new_secret {
        Some(text) => {
            ep.secret = secret_for("secret", Some(text), &profile)?;
            ep.previous_secret = None;
        }
        None => fit_secret(&mut ep, &profile),
    }
    check(state, &ep, Some(before), &profile)?;
    if ep.disabled != before.disabled {
        // A switch flipped by a person replaces Herald's own reason.
        ep.disabled_reason = None;
    }
    verify(state, &mut ep, Some(before), &profile).await?;
    ep.updated_at = state.clock.now();
    let mut notices = state.notifier.endpoint_changed(EndpointEvent::Updated, app, &ep);
    if ep.disabled && !before.disabled {
        notices = notices.and(state.notifier.endpoint_disabled(app, &ep, DisableTrigger::Manual, None));
    } else if !ep.disabled && before.disabled {
        notices = notices.and(state.notifier.endpoint_enabled(app, &ep));
    }
    state.store.update_endpoint_noting(&ep, &notices).await?;
    committed(state, &notices);
    if !ep.disabled || ep.ordering != before.ordering {
        // Held deliveries were released with the update, or a queue's head
        // came due.
        state.dispatcher.wake();
    }
    Ok(ep)
}

/// Finds an endpoint of the application by id or uid.
pub async fn find_endpoint(state: &AppState, app_id: &AppId, id_or_uid: &str) -> ServiceResult<Endpoint> {
    state
        .store
        .get_endpoint(app_id, id_or_uid)
        .await?
        .ok_or(ServiceError::NotFound("endpoint"))
}

/// An owner-scoped caller's endpoints always belong to its owner; naming
/// another owner is refused rather than silently changed.
pub fn pin_owner(caller: &Scope, requested: Option<String>) -> ServiceResult<Option<String>> {
    match (caller.owner(), requested) {
        (Some(mine), Some(other)) if mine != other => Err(ServiceError::Forbidden(format!(
            "this token is scoped to owner '{mine}' and cannot reach owner '{other}'"
        ))),
        (Some(mine), _) => Ok(Some(mine.to_owned())),
        (None, requested) => Ok(requested),
    }
}

/// Templates run on the server with only a fuel limit on instructions, not
/// on memory, so a product's customers (owner-scoped callers) may pick the
/// raw or Slack format but not write templates.
fn refuse_owner_template(caller: &Scope, format: Option<&str>, has_template: bool) -> ServiceResult<()> {
    if caller.owner().is_some() && (format == Some("template") || has_template) {
        return Err(ServiceError::Forbidden(
            "an owner-scoped token cannot set a payload template; raw and slack formats are open to it".into(),
        ));
    }
    Ok(())
}

/// The application's endpoints; an owner-scoped caller sees only its owner's.
pub async fn list_endpoints(
    state: &AppState,
    caller: &Scope,
    app_id: &str,
    q: &QueryParams,
) -> ServiceResult<Listed<EndpointOut>> {
    let app = find_app(state, app_id).await?;
    let paging = Paging::from_query(q, Order::Ascending)?;
    let owner = pin_owner(caller, q.str("owner_id").map(str::to_owned))?;
    let rows = state
        .store
        .list_endpoints(&app.id, &paging.page, owner.as_deref())
        .await?;
    Ok(paging.finish(rows.into_iter().map(EndpointOut::from).collect(), |e| e.id.clone()))
}

/// Creates an endpoint; the answer carries its secret, once.
pub async fn create_endpoint(
    state: &AppState,
    caller: &Scope,
    app_id: &str,
    mut input: EndpointIn,
) -> ServiceResult<EndpointOut> {
    let app = find_app(state, app_id).await?;
    input.owner_id = pin_owner(caller, input.owner_id)?;
    refuse_owner_template(caller, input.format.as_deref(), input.template.is_some())?;
    create_from(state, &app, input, NewIdentity::Fresh(None)).await
}

/// Creates an endpoint under the id it has in another Herald (see
/// `app::create_app_with_id`); an administrator's workflow.
pub async fn create_endpoint_with_id(
    state: &AppState,
    app_id: &str,
    id: EndpointId,
    input: EndpointIn,
) -> ServiceResult<EndpointOut> {
    let app = find_app(state, app_id).await?;
    create_from(state, &app, input, NewIdentity::Kept(id)).await
}

pub async fn get_endpoint(state: &AppState, app_id: &str, endpoint_id: &str) -> ServiceResult<EndpointOut> {
    let app = find_app(state, app_id).await?;
    Ok(find_endpoint(state, &app.id, endpoint_id).await?.into())
}

/// Replaces an endpoint's settings (not its secret); creates it (with
/// `endpoint_id` as its uid) when absent.
pub async fn put_endpoint(
    state: &AppState,
    caller: &Scope,
    app_id: &str,
    endpoint_id: &str,
    mut input: EndpointIn,
) -> ServiceResult<(Created, EndpointOut)> {
    let app = find_app(state, app_id).await?;
    input.owner_id = pin_owner(caller, input.owner_id)?;
    refuse_owner_template(caller, input.format.as_deref(), input.template.is_some())?;
    match state.store.get_endpoint(&app.id, endpoint_id).await? {
        Some(existing) => {
            let format = parse_format(input.format.as_deref(), input.template.as_deref())?;
            let mut ep = build(
                app.id.clone(),
                input,
                existing.secret.clone(),
                format,
                existing.created_at,
            );
            ep.id = existing.id.clone();
            ep.uid = ep.uid.or(existing.uid.clone());
            ep.previous_secret = existing.previous_secret.clone();
            ep.disabled_reason = existing.disabled_reason.clone();
            ep.reverify_at = existing.reverify_at;
            ep.failing_since = existing.failing_since;
            let ep = save_changes(state, &app, &existing, ep, None).await?;
            Ok((false, ep.into()))
        }
        None => {
            if EndpointId::parse(endpoint_id).is_some() {
                return Err(ServiceError::NotFound("endpoint"));
            }
            let out = create_from(state, &app, input, NewIdentity::Fresh(Some(endpoint_id.to_owned()))).await?;
            Ok((true, out))
        }
    }
}

/// Changes the fields `patch` names; `null` clears one.
pub async fn patch_endpoint(
    state: &AppState,
    caller: &Scope,
    app_id: &str,
    endpoint_id: &str,
    mut patch: EndpointPatch,
) -> ServiceResult<EndpointOut> {
    if caller.owner().is_some()
        && let Some(owner) = patch.owner_id.take()
    {
        patch.owner_id = Some(pin_owner(caller, owner)?);
    }
    refuse_owner_template(caller, patch.format.as_deref(), matches!(patch.template, Some(Some(_))))?;
    let app = find_app(state, app_id).await?;
    let before = find_endpoint(state, &app.id, endpoint_id).await?;
    let mut ep = before.clone();
    let new_secret = patch.secret.take();
    apply_patch(&mut ep, patch)?;
    let ep = save_changes(state, &app, &before, ep, new_secret).await?;
    Ok(ep.into())
}

/// Copies the fields a patch names onto `ep`.
fn apply_patch(ep: &mut Endpoint, patch: EndpointPatch) -> ServiceResult<()> {
    if let Some(url) = patch.url {
        ep.url = url;
    }
    if let Some(d) = patch.description {
        ep.description = d;
    }
    if let Some(t) = patch.filter_types {
        ep.filter_types = every_event_if_empty(t);
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
    if let Some(profile) = patch.profile {
        ep.profile = profile;
    }
    if let Some(owner) = patch.owner_id {
        ep.owner_id = owner;
    }
    if let Some(w) = patch.while_disabled {
        ep.while_disabled = w;
    }
    if let Some(verify) = patch.tls_verify {
        ep.tls_verify = verify;
    }
    if let Some(o) = patch.ordering {
        ep.ordering = o;
    }
    if let Some(token) = patch.verify_token {
        ep.verify_token = token;
    }
    if patch.format.is_some() || patch.template.is_some() {
        let format = patch.format.as_deref().or(Some(ep.format.name()));
        // The stored template carries over only while the format stays `template`.
        let template = match &patch.template {
            Some(t) => t.clone(),
            None if format == Some("template") => ep.format.template().map(str::to_owned),
            None => None,
        };
        ep.format = parse_format(format, template.as_deref())?;
    }
    Ok(())
}

/// Deletes an endpoint with its pending deliveries and history.
pub async fn delete_endpoint(state: &AppState, app_id: &str, endpoint_id: &str) -> ServiceResult<()> {
    let app = find_app(state, app_id).await?;
    let ep = find_endpoint(state, &app.id, endpoint_id).await?;
    let notices = state.notifier.endpoint_changed(EndpointEvent::Deleted, &app, &ep);
    if state.store.delete_endpoint_noting(&app.id, &ep.id, &notices).await? {
        committed(state, &notices);
    }
    Ok(())
}

/// After an endpoint change committed with its notices: their deliveries
/// and emails are due now. The `endpoint-committed` failpoint stops the
/// process here, to show that nothing after the commit is needed for them.
fn committed(state: &AppState, notices: &Notices) {
    if state.config.failpoint == Some(Failpoint::EndpointCommitted) {
        tracing::error!("HERALD_FAILPOINT=endpoint-committed: aborting right after the commit");
        std::process::abort();
    }
    state.notifier.written(notices);
    if !notices.messages.is_empty() {
        state.dispatcher.wake();
    }
}

/// The secret as a consumer verifies with it, where the profile shows it.
pub async fn get_secret(state: &AppState, app_id: &str, endpoint_id: &str) -> ServiceResult<EndpointSecretOut> {
    let app = find_app(state, app_id).await?;
    let ep = find_endpoint(state, &app.id, endpoint_id).await?;
    let profile = profile_for(state, &ep, &app)?;
    // An Ed25519 endpoint answers its public key, which is no secret.
    if profile.secret_reveal == SecretReveal::Once && ep.secret.kind() != SecretKind::Ed25519 {
        return Err(ServiceError::Forbidden(format!(
            "profile '{}' shows an endpoint's secret only once, in the answer that creates or rotates it; \
             rotate the secret to get a new one",
            profile.name
        )));
    }
    Ok(EndpointSecretOut {
        key: ep.secret.for_consumer(),
    })
}

const DEFAULT_GRACE_SECONDS: i64 = 24 * 3600;
const MAX_GRACE_SECONDS: i64 = 7 * 24 * 3600;

/// Replaces the secret; the old one keeps signing (a second `v1,` entry)
/// through the grace period so consumers can switch without losing events.
pub async fn rotate_secret(
    state: &AppState,
    app_id: &str,
    endpoint_id: &str,
    input: EndpointSecretRotateIn,
) -> ServiceResult<EndpointSecretOut> {
    let grace = input.grace_period_seconds.unwrap_or(DEFAULT_GRACE_SECONDS);
    if !(0..=MAX_GRACE_SECONDS).contains(&grace) {
        return Err(ServiceError::field(
            &["body", "gracePeriodSeconds"],
            "must be between 0 and 604800 (7 days)",
        ));
    }
    let app = find_app(state, app_id).await?;
    let mut ep = find_endpoint(state, &app.id, endpoint_id).await?;
    let profile = profile_for(state, &ep, &app)?;
    let new_secret = secret_for("key", input.key, &profile)?;
    let now = state.clock.now();
    let old = std::mem::replace(&mut ep.secret, new_secret);
    ep.previous_secret = (grace > 0).then(|| (old, now + Duration::seconds(grace)));
    ep.updated_at = now;
    state.store.update_endpoint(&ep).await?;
    Ok(EndpointSecretOut {
        key: ep.secret.for_consumer(),
    })
}

/// Custom headers as read back: credentials are named, never shown.
pub async fn get_headers(state: &AppState, app_id: &str, endpoint_id: &str) -> ServiceResult<EndpointHeadersOut> {
    let app = find_app(state, app_id).await?;
    let ep = find_endpoint(state, &app.id, endpoint_id).await?;
    let (sensitive, shown): (BTreeMap<_, _>, BTreeMap<_, _>) =
        ep.headers.into_iter().partition(|(name, _)| is_sensitive(name));
    Ok(EndpointHeadersOut {
        headers: shown,
        sensitive: sensitive.into_keys().collect(),
    })
}

/// Replaces every custom header.
pub async fn update_headers(
    state: &AppState,
    app_id: &str,
    endpoint_id: &str,
    input: EndpointHeadersIn,
) -> ServiceResult<()> {
    change_headers(state, app_id, endpoint_id, |headers| *headers = input.headers).await
}

/// Sets the given headers; a `null` value removes one.
pub async fn patch_headers(
    state: &AppState,
    app_id: &str,
    endpoint_id: &str,
    input: EndpointHeadersPatchIn,
) -> ServiceResult<()> {
    change_headers(state, app_id, endpoint_id, |headers| {
        for (name, value) in input.headers {
            match value {
                Some(value) => headers.insert(name, value),
                None => headers.remove(&name),
            };
        }
    })
    .await
}

/// Applies `change` to an endpoint's headers and saves them, checked like any edit.
async fn change_headers(
    state: &AppState,
    app_id: &str,
    endpoint_id: &str,
    change: impl FnOnce(&mut BTreeMap<String, String>),
) -> ServiceResult<()> {
    let app = find_app(state, app_id).await?;
    let before = find_endpoint(state, &app.id, endpoint_id).await?;
    let mut ep = before.clone();
    change(&mut ep.headers);
    save_changes(state, &app, &before, ep, None).await?;
    Ok(())
}
