//! Rows as both backends store them, and their conversion to domain models.
//!
//! Both schemas use the same column types (TEXT for JSON, BIGINT/INTEGER for
//! Unix milliseconds), so one set of row types serves SQLite and PostgreSQL.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, TimeZone, Utc};
use sqlx::{FromRow, QueryBuilder};

use super::dialect::{QUEUED, UNFINISHED, state};
use super::*;
use crate::domain::access::Scope;
use crate::domain::fanout::Target;
use crate::domain::filter::Publication;
use crate::domain::format::PayloadFormat;
use crate::domain::ids::{AttemptId, DeliveryId, TaskId, TokenId};
use crate::domain::sealing::{SealedBy, Sealer, is_sealed};
use crate::domain::secret::EndpointSecret;
use crate::domain::status::{DeliveryOrder, DeliveryStatus, TaskKind, TaskStatus, TriggerType, WhileDisabled};

pub(super) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(super) fn from_ms(v: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(v).single().unwrap_or_default()
}

pub(super) fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_owned())
}

pub(super) fn opt_json<T: serde::Serialize>(v: &Option<T>) -> Option<String> {
    v.as_ref().map(to_json)
}

pub(super) fn parse_json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

pub(super) fn parse_opt_json<T: serde::de::DeserializeOwned>(
    what: &str,
    text: Option<String>,
) -> StoreResult<Option<T>> {
    text.map(|t| parse_json(what, &t)).transpose()
}

pub(super) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Adds `AND key > ?` (or `<`) and the ORDER BY / LIMIT of a page.
pub(super) fn push_page<'a, DB>(qb: &mut QueryBuilder<'a, DB>, key: &str, page: &Page)
where
    DB: sqlx::Database,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let (cmp, dir) = match page.order {
        Order::Ascending => (">", "ASC"),
        Order::Descending => ("<", "DESC"),
    };
    if let Some(beyond) = &page.beyond {
        qb.push(format_args!(" AND {key} {cmp} ")).push_bind(beyond.clone());
    }
    qb.push(format_args!(" ORDER BY {key} {dir} LIMIT "))
        .push_bind(i64::from(page.limit));
}

#[derive(FromRow)]
pub(super) struct AppRow {
    pub(super) id: String,
    pub(super) uid: Option<String>,
    pub(super) name: String,
    pub(super) rate_limit: Option<i64>,
    pub(super) metadata: String,
    pub(super) profile: Option<String>,
    pub(super) validate_payloads: Option<bool>,
    pub(super) history_retention_days: Option<i64>,
    pub(super) created_at: i64,
    pub(super) updated_at: i64,
}

impl TryFrom<AppRow> for Application {
    type Error = StoreError;
    fn try_from(r: AppRow) -> StoreResult<Self> {
        Ok(Self {
            id: AppId::from_trusted(r.id),
            uid: r.uid,
            name: r.name,
            rate_limit: r.rate_limit,
            metadata: parse_json("application metadata", &r.metadata)?,
            profile: r.profile,
            validate_payloads: r.validate_payloads,
            history_retention_days: r.history_retention_days,
            created_at: from_ms(r.created_at),
            updated_at: from_ms(r.updated_at),
        })
    }
}

#[derive(FromRow)]
pub(super) struct EndpointRow {
    pub(super) id: String,
    pub(super) app_id: String,
    pub(super) uid: Option<String>,
    pub(super) url: String,
    pub(super) description: String,
    pub(super) filter_types: Option<String>,
    pub(super) channels: Option<String>,
    pub(super) disabled: bool,
    pub(super) while_disabled: String,
    pub(super) ordering: String,
    pub(super) rate_limit: Option<i64>,
    pub(super) metadata: String,
    pub(super) headers: String,
    pub(super) secret: String,
    pub(super) previous_secret: Option<String>,
    pub(super) previous_secret_expires_at: Option<i64>,
    pub(super) profile: Option<String>,
    pub(super) verify_token: Option<String>,
    pub(super) format: String,
    pub(super) template: Option<String>,
    pub(super) disabled_reason: Option<String>,
    pub(super) reverify_at: Option<i64>,
    pub(super) owner_id: Option<String>,
    pub(super) failing_since: Option<i64>,
    pub(super) tls_verify: bool,
    pub(super) created_at: i64,
    pub(super) updated_at: i64,
}

/// What an endpoint's secrets are sealed for: that endpoint and nothing else.
pub(super) fn secret_context(endpoint_id: &str) -> String {
    format!("endpoint-secret:{endpoint_id}")
}

/// An endpoint secret as stored: sealed under the node's key.
pub(super) fn seal_secret(sealer: &Sealer, endpoint_id: &EndpointId, secret: &EndpointSecret) -> String {
    sealer.seal(&secret_context(endpoint_id.as_str()), secret.expose())
}

fn open_secret(sealer: &Sealer, endpoint_id: &str, stored: &str) -> StoreResult<EndpointSecret> {
    let text = sealer
        .open(&secret_context(endpoint_id), stored)
        .map_err(|e| StoreError::Corrupt(format!("the secret of endpoint {endpoint_id} {e}")))?;
    EndpointSecret::parse(&text).map_err(|e| StoreError::Corrupt(format!("endpoint secret {e}")))
}

impl EndpointRow {
    pub(super) fn into_endpoint(self, sealer: &Sealer) -> StoreResult<Endpoint> {
        let r = self;
        let previous_secret = match (&r.previous_secret, r.previous_secret_expires_at) {
            (Some(s), Some(until)) => Some((open_secret(sealer, &r.id, s)?, from_ms(until))),
            _ => None,
        };
        let secret = open_secret(sealer, &r.id, &r.secret)?;
        Ok(Endpoint {
            id: EndpointId::from_trusted(r.id),
            app_id: AppId::from_trusted(r.app_id),
            uid: r.uid,
            url: r.url,
            description: r.description,
            filter_types: parse_opt_json("endpoint filterTypes", r.filter_types)?,
            channels: parse_opt_json("endpoint channels", r.channels)?,
            disabled: r.disabled,
            while_disabled: WhileDisabled::parse(&r.while_disabled)
                .ok_or_else(|| StoreError::Corrupt(format!("endpoint whileDisabled {}", r.while_disabled)))?,
            ordering: DeliveryOrder::parse(&r.ordering)
                .ok_or_else(|| StoreError::Corrupt(format!("endpoint ordering {}", r.ordering)))?,
            rate_limit: r.rate_limit,
            metadata: parse_json("endpoint metadata", &r.metadata)?,
            headers: parse_json("endpoint headers", &r.headers)?,
            secret,
            previous_secret,
            profile: r.profile,
            verify_token: r.verify_token,
            format: PayloadFormat::parse(Some(&r.format), r.template.as_deref())
                .map_err(|(field, e)| StoreError::Corrupt(format!("endpoint {field} {e}")))?,
            disabled_reason: r.disabled_reason,
            reverify_at: r.reverify_at.map(from_ms),
            owner_id: r.owner_id,
            failing_since: r.failing_since.map(from_ms),
            tls_verify: r.tls_verify,
            created_at: from_ms(r.created_at),
            updated_at: from_ms(r.updated_at),
        })
    }
}

#[derive(FromRow)]
pub(super) struct EventTypeRow {
    pub(super) name: String,
    pub(super) description: String,
    pub(super) archived: bool,
    pub(super) deprecated: bool,
    pub(super) schemas: Option<String>,
    pub(super) group_name: Option<String>,
    pub(super) feature_flags: Option<String>,
    pub(super) created_at: i64,
    pub(super) updated_at: i64,
}

impl TryFrom<EventTypeRow> for EventType {
    type Error = StoreError;
    fn try_from(r: EventTypeRow) -> StoreResult<Self> {
        Ok(Self {
            name: r.name,
            description: r.description,
            archived: r.archived,
            deprecated: r.deprecated,
            schemas: parse_opt_json("event type schemas", r.schemas)?,
            group_name: r.group_name,
            feature_flags: parse_opt_json("event type featureFlags", r.feature_flags)?,
            created_at: from_ms(r.created_at),
            updated_at: from_ms(r.updated_at),
        })
    }
}

#[derive(FromRow)]
pub(super) struct MessageRow {
    pub(super) id: String,
    pub(super) app_id: String,
    pub(super) event_type: String,
    pub(super) event_id: Option<String>,
    pub(super) payload: String,
    pub(super) channels: Option<String>,
    pub(super) tags: Option<String>,
    pub(super) audience: Option<String>,
    pub(super) expires_at: Option<i64>,
    pub(super) payload_removed_at: Option<i64>,
    pub(super) created_at: i64,
}

impl TryFrom<MessageRow> for Message {
    type Error = StoreError;
    fn try_from(r: MessageRow) -> StoreResult<Self> {
        Ok(Self {
            id: MessageId::from_trusted(r.id),
            app_id: AppId::from_trusted(r.app_id),
            event_type: r.event_type,
            event_id: r.event_id,
            payload: r.payload.into(),
            channels: parse_opt_json("message channels", r.channels)?,
            tags: parse_opt_json("message tags", r.tags)?,
            audience: parse_opt_json("message audience", r.audience)?,
            expires_at: r.expires_at.map(from_ms),
            payload_removed_at: r.payload_removed_at.map(from_ms),
            created_at: from_ms(r.created_at),
        })
    }
}

#[derive(FromRow)]
pub(super) struct AttemptRow {
    pub(super) id: String,
    pub(super) msg_id: String,
    pub(super) endpoint_id: String,
    pub(super) url: String,
    pub(super) status: i64,
    pub(super) response_status_code: i64,
    pub(super) response: String,
    pub(super) response_duration_ms: i64,
    pub(super) trigger_type: i64,
    pub(super) created_at: i64,
    pub(super) request_headers: Option<String>,
    pub(super) request_body: Option<String>,
    pub(super) response_headers: Option<String>,
    pub(super) event_type: String,
    pub(super) event_id: Option<String>,
    pub(super) msg_created_at: i64,
}

/// An attempt's columns with its message's, for [`AttemptRow`]; needs
/// `attempts a JOIN messages m`.
pub(super) const ATTEMPT_COLUMNS: &str = "a.id, a.msg_id, a.endpoint_id, a.url, a.status, \
     a.response_status_code, a.response, a.response_duration_ms, a.trigger_type, a.created_at, a.request_headers, \
     COALESCE(a.request_body, m.payload) AS request_body, a.response_headers, m.event_type, m.event_id, \
     m.created_at AS msg_created_at";

impl TryFrom<AttemptRow> for Attempt {
    type Error = StoreError;
    fn try_from(r: AttemptRow) -> StoreResult<Self> {
        Ok(Self {
            id: AttemptId::from_trusted(r.id),
            msg_id: MessageId::from_trusted(r.msg_id),
            endpoint_id: EndpointId::from_trusted(r.endpoint_id),
            url: r.url,
            status: DeliveryStatus::from_code(r.status)
                .ok_or_else(|| StoreError::Corrupt(format!("attempt status {}", r.status)))?,
            response_status_code: r.response_status_code,
            response: r.response,
            response_duration_ms: r.response_duration_ms,
            trigger_type: TriggerType::from_code(r.trigger_type),
            created_at: from_ms(r.created_at),
            request_headers: parse_opt_json("attempt request headers", r.request_headers)?,
            request_body: r.request_body,
            response_headers: parse_opt_json("attempt response headers", r.response_headers)?,
            event: Some(AttemptEvent {
                event_type: r.event_type,
                event_id: r.event_id,
                msg_created_at: from_ms(r.msg_created_at),
            }),
        })
    }
}

#[derive(FromRow)]
pub(super) struct JobRow {
    #[sqlx(flatten)]
    pub(super) job: JobFields,
    #[sqlx(flatten)]
    pub(super) endpoint: EndpointRow,
}

/// What a job reads besides its endpoint.
#[derive(FromRow)]
pub(super) struct JobFields {
    pub(super) delivery_id: String,
    pub(super) lease_token: i64,
    pub(super) msg_id: String,
    pub(super) app_id: String,
    pub(super) attempts: i64,
    pub(super) trigger_type: i64,
    pub(super) payload: String,
    pub(super) event_type: String,
    pub(super) event_id: Option<String>,
    pub(super) msg_created_at: i64,
    pub(super) app_profile: Option<String>,
}

impl JobFields {
    /// The job, with its endpoint already opened.
    fn with_endpoint(self, endpoint: Endpoint) -> DeliveryJob {
        DeliveryJob {
            delivery_id: DeliveryId::from_trusted(self.delivery_id),
            lease_token: self.lease_token,
            msg_id: MessageId::from_trusted(self.msg_id),
            app_id: AppId::from_trusted(self.app_id),
            endpoint,
            app_profile: self.app_profile,
            event_type: self.event_type,
            event_id: self.event_id,
            msg_created_at: from_ms(self.msg_created_at),
            payload: self.payload.into(),
            attempts_made: u32::try_from(self.attempts).unwrap_or(0),
            trigger_type: TriggerType::from_code(self.trigger_type),
        }
    }
}

/// Opens claimed jobs, each endpoint once (its secret unsealed,
/// its JSON parsed): a batch is mostly a few endpoints' deliveries, and
/// the rows of one read show each endpoint the same.
pub(super) fn open_jobs(rows: Vec<JobRow>, sealer: &Sealer) -> Vec<StoreResult<DeliveryJob>> {
    let mut opened: HashMap<String, Endpoint> = HashMap::new();
    rows.into_iter()
        .map(|JobRow { job, endpoint }| {
            let endpoint = match opened.get(&endpoint.id) {
                Some(known) => known.clone(),
                None => {
                    let id = endpoint.id.clone();
                    let endpoint = endpoint.into_endpoint(sealer)?;
                    opened.insert(id, endpoint.clone());
                    endpoint
                }
            };
            Ok(job.with_endpoint(endpoint))
        })
        .collect()
}

/// An endpoint with its application's profile: one due for its repeat
/// check, or one a publish batch leased deliveries to.
#[derive(FromRow)]
pub(super) struct ProfiledEndpointRow {
    #[sqlx(flatten)]
    pub(super) endpoint: EndpointRow,
    pub(super) app_profile: Option<String>,
}

impl ProfiledEndpointRow {
    pub(super) fn into_pair(self, sealer: &Sealer) -> StoreResult<(Endpoint, Option<String>)> {
        Ok((self.endpoint.into_endpoint(sealer)?, self.app_profile))
    }
}

pub(super) fn collect<R, T>(rows: Vec<R>) -> StoreResult<Vec<T>>
where
    T: TryFrom<R, Error = StoreError>,
{
    rows.into_iter().map(T::try_from).collect()
}

pub(super) fn uid_conflict(e: sqlx::Error, what: &str) -> StoreError {
    if is_unique_violation(&e) {
        StoreError::Conflict(what.to_owned())
    } else {
        StoreError::Database(e)
    }
}

pub(super) const ENDPOINT_COLUMNS: &str = "e.id, e.app_id, e.uid, e.url, e.description, e.filter_types, e.channels, \
     e.disabled, e.while_disabled, e.rate_limit, e.metadata, e.headers, e.secret, e.previous_secret, \
     e.previous_secret_expires_at, e.profile, e.verify_token, e.format, e.template, e.disabled_reason, \
     e.reverify_at, e.owner_id, e.failing_since, e.tls_verify, e.ordering, e.created_at, e.updated_at";

/// What a claimed delivery reads besides the endpoint, in both backends' claim queries.
pub(super) const JOB_COLUMNS: &str = "d.id AS delivery_id, d.lease_token, d.msg_id, d.app_id, d.attempts, \
     d.trigger_type, m.payload, m.event_type, m.event_id, m.created_at AS msg_created_at, a.profile AS app_profile";

pub(super) fn push_in<'a, DB>(qb: &mut QueryBuilder<'a, DB>, column: &str, values: &[String])
where
    DB: sqlx::Database,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    if values.is_empty() {
        return;
    }
    qb.push(format_args!(" AND {column} IN ("));
    let mut list = qb.separated(", ");
    for v in values {
        list.push_bind(v.clone());
    }
    list.push_unseparated(")");
}

/// The attempt-list filters, shared by both backends' queries.
pub(super) fn push_attempt_filter<'a, DB>(qb: &mut QueryBuilder<'a, DB>, filter: &'a AttemptFilter)
where
    DB: sqlx::Database,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    if let Some(ep) = &filter.endpoint_id {
        qb.push(" AND a.endpoint_id = ").push_bind(ep.as_str().to_owned());
    }
    if let Some(msg) = &filter.msg_id {
        qb.push(" AND a.msg_id = ").push_bind(msg.as_str().to_owned());
    }
    if let Some(status) = filter.status {
        qb.push(" AND a.status = ").push_bind(status);
    }
    if let Some(class) = filter.status_code_class {
        // An equality on the indexed class keeps the rows in id order.
        qb.push(" AND a.status_class = ").push_bind(status_class(class));
    }
    if let Some(before) = filter.before {
        qb.push(" AND a.created_at < ").push_bind(ms(before));
        // An attempt comes after its message: on PostgreSQL the days after
        // `before` are not read at all.
        if let Some(bound) = later_by_slack(before) {
            let (msg, attempt) = (MessageId::lowest_at(bound), AttemptId::lowest_at(bound));
            qb.push(" AND a.msg_id < ").push_bind(msg);
            qb.push(" AND a.id < ").push_bind(attempt);
        }
    }
    if let Some(after) = filter.after {
        qb.push(" AND a.created_at > ").push_bind(ms(after));
        qb.push(" AND a.id >= ")
            .push_bind(AttemptId::lowest_at(earlier_by_slack(after)));
    }
    push_in(qb, "m.event_type", &filter.event_types);
}

/// How far an id's time may be from its row's `created_at`: both are read
/// from the same clock when the row is made, a moment apart. Bounds on ids
/// derived from a time window keep index scans (and, on PostgreSQL, the
/// days read) to that window; the time itself still decides.
pub(super) const ID_SLACK: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// `AND id < …` / `AND id >= …` for a message time window, beside the
/// filters on `created_at` that decide.
pub(super) fn push_message_id_window<'a, DB>(
    qb: &mut QueryBuilder<'a, DB>,
    before: Option<DateTime<Utc>>,
    after: Option<DateTime<Utc>>,
) where
    DB: sqlx::Database,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    if let Some(bound) = before.and_then(later_by_slack) {
        qb.push(" AND id < ").push_bind(MessageId::lowest_at(bound));
    }
    if let Some(after) = after {
        qb.push(" AND id >= ")
            .push_bind(MessageId::lowest_at(earlier_by_slack(after)));
    }
}

/// `time` plus [`ID_SLACK`], if an id can be made at that time (a ULID's
/// clock ends in the year 10889; a time from a request may be later).
fn later_by_slack(time: DateTime<Utc>) -> Option<DateTime<Utc>> {
    const ULID_TIME_END: i64 = 1 << 48;
    time.checked_add_signed(ID_SLACK)
        .filter(|t| (0..ULID_TIME_END).contains(&t.timestamp_millis()))
}

fn earlier_by_slack(time: DateTime<Utc>) -> DateTime<Utc> {
    time.checked_sub_signed(ID_SLACK).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Reads a stored idempotency row: answered, or still being handled.
pub(super) fn idempotency_state(row: Option<(Option<i64>, Option<Vec<u8>>)>) -> IdempotencyState {
    match row {
        Some((Some(status), body)) => IdempotencyState::Done {
            status: u16::try_from(status).unwrap_or(500),
            body: body.unwrap_or_default(),
        },
        // Vanished between the insert and the read: treat as in progress, the client retries.
        _ => IdempotencyState::InProgress,
    }
}

/// An endpoint's subscription, as read inside the publish transaction.
#[derive(FromRow)]
pub(super) struct TargetRow {
    id: String,
    url: String,
    filter_types: Option<String>,
    channels: Option<String>,
    owner_id: Option<String>,
    disabled: bool,
    while_disabled: String,
    ordering: String,
}

impl TargetRow {
    /// The endpoint as the fan-out sees it. An unknown `whileDisabled` or
    /// ordering reads as the default (drop, parallel), as it always has.
    pub(super) fn into_target(self) -> StoreResult<Target> {
        Ok(Target {
            filter_types: parse_opt_json("endpoint filterTypes", self.filter_types)?,
            channels: parse_opt_json("endpoint channels", self.channels)?,
            while_disabled: WhileDisabled::parse(&self.while_disabled).unwrap_or_default(),
            ordering: DeliveryOrder::parse(&self.ordering).unwrap_or_default(),
            id: self.id,
            url: self.url,
            owner_id: self.owner_id,
            disabled: self.disabled,
        })
    }
}

/// The columns of a [`TargetRow`], in the publish queries.
pub(super) const TARGET_COLUMNS: &str = "id, url, filter_types, channels, owner_id, disabled, while_disabled, ordering";

/// What the fan-out reads of a message.
pub(super) fn publication(msg: &Message) -> Publication<'_> {
    Publication {
        event_type: &msg.event_type,
        channels: msg.channels.as_deref(),
        audience: msg.audience.as_deref(),
    }
}

/// The delivery's next state and due time after an attempt.
pub(super) fn delivery_state(next: NextStep) -> (DeliveryStatus, Option<i64>) {
    match next {
        NextStep::RetryAt(at) => (DeliveryStatus::Pending, Some(ms(at))),
        NextStep::Succeeded => (DeliveryStatus::Success, None),
        NextStep::Exhausted => (DeliveryStatus::Fail, None),
        NextStep::Dropped => (DeliveryStatus::Dropped, None),
    }
}

type BoundQuery<'q, DB> = sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>;

/// Binds an endpoint's settings, then its `id` and `app_id`, in the column
/// order both backends' INSERT and UPDATE statements list them.
pub(super) fn bind_endpoint<'q, DB>(q: BoundQuery<'q, DB>, ep: &Endpoint, sealer: &Sealer) -> BoundQuery<'q, DB>
where
    DB: sqlx::Database,
    String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    bool: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    q.bind(ep.uid.clone())
        .bind(ep.url.clone())
        .bind(ep.description.clone())
        .bind(opt_json(&ep.filter_types))
        .bind(opt_json(&ep.channels))
        .bind(ep.disabled)
        .bind(ep.rate_limit)
        .bind(to_json(&ep.metadata))
        .bind(to_json(&ep.headers))
        .bind(seal_secret(sealer, &ep.id, &ep.secret))
        .bind(ep.previous_secret.as_ref().map(|(s, _)| seal_secret(sealer, &ep.id, s)))
        .bind(ep.previous_secret.as_ref().map(|(_, t)| ms(*t)))
        .bind(ep.profile.clone())
        .bind(ep.verify_token.clone())
        .bind(ep.format.name().to_owned())
        .bind(ep.format.template().map(str::to_owned))
        .bind(ep.disabled_reason.clone())
        .bind(ep.reverify_at.map(ms))
        .bind(ep.owner_id.clone())
        .bind(ep.while_disabled.name().to_owned())
        .bind(ep.tls_verify)
        .bind(ep.ordering.name().to_owned())
        .bind(ms(ep.updated_at))
        .bind(ep.id.to_string())
        .bind(ep.app_id.to_string())
}

#[derive(FromRow)]
pub(super) struct TaskRow {
    pub(super) id: String,
    pub(super) task: String,
    pub(super) status: String,
    pub(super) app_id: String,
    pub(super) endpoint_id: Option<String>,
    pub(super) params: String,
    pub(super) data: String,
    pub(super) created_at: i64,
    pub(super) updated_at: i64,
}

impl TryFrom<TaskRow> for BackgroundTask {
    type Error = StoreError;
    fn try_from(r: TaskRow) -> StoreResult<Self> {
        Ok(Self {
            kind: TaskKind::parse(&r.task).ok_or_else(|| StoreError::Corrupt(format!("task kind {}", r.task)))?,
            status: TaskStatus::parse(&r.status)
                .ok_or_else(|| StoreError::Corrupt(format!("task status {}", r.status)))?,
            id: TaskId::from_trusted(r.id),
            app_id: AppId::from_trusted(r.app_id),
            endpoint_id: r.endpoint_id.map(EndpointId::from_trusted),
            params: parse_json("task params", &r.params)?,
            data: parse_json("task data", &r.data)?,
            created_at: from_ms(r.created_at),
            updated_at: from_ms(r.updated_at),
        })
    }
}

/// The SQL condition, on `messages m`, of a recovery of `kind` for the
/// endpoint bound as the next parameter(s): pushed by both backends.
fn push_recovery_condition<'a, DB>(qb: &mut QueryBuilder<'a, DB>, endpoint: &EndpointId, kind: Recovery)
where
    DB: sqlx::Database,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let id = endpoint.as_str().to_owned();
    match kind {
        Recovery::Failed => {
            qb.push(format_args!(
                " AND EXISTS (SELECT 1 FROM deliveries d WHERE d.msg_id = m.id AND d.status = {} AND d.endpoint_id = ",
                state(DeliveryStatus::Fail)
            ))
            .push_bind(id.clone())
            .push(format_args!(
                ") AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.msg_id = m.id AND d.status IN ({}, {UNFINISHED}) \
                 AND d.endpoint_id = ",
                state(DeliveryStatus::Success)
            ))
            .push_bind(id)
            .push(")");
        }
        Recovery::Missing => {
            qb.push(format_args!(
                " AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.msg_id = m.id AND d.status <> {} AND d.endpoint_id = ",
                state(DeliveryStatus::Dropped)
            ))
            .push_bind(id)
            .push(")");
        }
    }
}

/// Folds `(status, count)` rows into counts by delivery state.
pub(super) fn count_by_status(rows: Vec<(i64, i64)>) -> DeliveryCounts {
    let mut counts = DeliveryCounts::default();
    for (status, n) in rows {
        let slot = match DeliveryStatus::from_code(status) {
            Some(DeliveryStatus::Success) => &mut counts.success,
            Some(DeliveryStatus::Pending) => &mut counts.pending,
            Some(DeliveryStatus::Sending) => &mut counts.sending,
            Some(DeliveryStatus::Fail) => &mut counts.fail,
            Some(DeliveryStatus::Held) => &mut counts.held,
            Some(DeliveryStatus::Dropped) => &mut counts.dropped,
            None => continue,
        };
        *slot += n;
    }
    counts
}

/// The messages a recovery of `kind` looks at next, in both backends' SQL.
pub(super) fn recovery_query<'a, DB>(
    endpoint: &Endpoint,
    kind: Recovery,
    window: &Window,
    after: Option<&MessageId>,
    limit: u32,
) -> QueryBuilder<'a, DB>
where
    DB: sqlx::Database,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut qb = QueryBuilder::new("SELECT m.* FROM messages m WHERE m.payload_removed_at IS NULL AND m.app_id = ");
    qb.push_bind(endpoint.app_id.as_str().to_owned());
    qb.push(" AND m.created_at >= ").push_bind(ms(window.since));
    if let Some(until) = window.until {
        qb.push(" AND m.created_at < ").push_bind(ms(until));
    }
    if let Some(after) = after {
        qb.push(" AND m.id > ").push_bind(after.as_str().to_owned());
    }
    push_recovery_condition(&mut qb, &endpoint.id, kind);
    qb.push(" ORDER BY m.id LIMIT ").push_bind(i64::from(limit));
    qb
}

/// An application's endpoints in id order; with `owner`, only that owner's.
pub(super) fn endpoints_query<'a, DB>(app: &AppId, page: &Page, owner: Option<&str>) -> QueryBuilder<'a, DB>
where
    DB: sqlx::Database,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut qb = QueryBuilder::new("SELECT * FROM endpoints WHERE app_id = ");
    qb.push_bind(app.as_str().to_owned());
    if let Some(owner) = owner {
        qb.push(" AND owner_id = ").push_bind(owner.to_owned());
    }
    push_page(&mut qb, "id", page);
    qb
}

/// Applications in id order; with `search`, those whose name or uid
/// contains it, or whose id it is.
pub(super) fn apps_query<'a, DB>(page: &Page, search: Option<&str>) -> QueryBuilder<'a, DB>
where
    DB: sqlx::Database,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut qb = QueryBuilder::new("SELECT * FROM applications WHERE 1 = 1");
    if let Some(text) = search.map(str::trim).filter(|t| !t.is_empty()) {
        let pattern = format!("%{}%", escape_like(&text.to_lowercase()));
        qb.push(" AND (LOWER(name) LIKE ").push_bind(pattern.clone());
        qb.push(" ESCAPE '\\' OR LOWER(COALESCE(uid, '')) LIKE ")
            .push_bind(pattern);
        qb.push(" ESCAPE '\\' OR id = ").push_bind(text.to_owned()).push(")");
    }
    push_page(&mut qb, "id", page);
    qb
}

/// `%`, `_` and the escape itself match only themselves.
fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Attempts per endpoint and period since `since`: `(endpoint, period,
/// succeeded, attempts)` rows; none to ask for without endpoints. The id
/// floor lets the (endpoint, id) index skip older history.
pub(super) fn activity_query<'a, DB>(
    endpoints: &[EndpointId],
    since: DateTime<Utc>,
    period: std::time::Duration,
) -> Option<QueryBuilder<'a, DB>>
where
    DB: sqlx::Database,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    if endpoints.is_empty() {
        return None;
    }
    let period_ms = i64::try_from(period.as_millis()).unwrap_or(i64::MAX).max(1);
    let mut qb = QueryBuilder::new("SELECT endpoint_id, (created_at - ");
    qb.push_bind(ms(since)).push(") / ").push_bind(period_ms);
    qb.push(format_args!(
        " AS period, SUM(CASE WHEN status = {} THEN 1 ELSE 0 END), COUNT(*) FROM attempts WHERE endpoint_id IN (",
        state(DeliveryStatus::Success)
    ));
    let mut list = qb.separated(", ");
    for id in endpoints {
        list.push_bind(id.as_str().to_owned());
    }
    qb.push(") AND id >= ").push_bind(AttemptId::lowest_at(since));
    qb.push(" AND created_at >= ").push_bind(ms(since));
    qb.push(" GROUP BY endpoint_id, period");
    Some(qb)
}

pub(super) fn activity_rows(rows: Vec<(String, i64, i64, i64)>) -> Vec<ActivityBucket> {
    rows.into_iter()
        .map(|(endpoint, period, succeeded, attempts)| ActivityBucket {
            endpoint_id: EndpointId::from_trusted(endpoint),
            period,
            succeeded,
            attempts,
        })
        .collect()
}

/// Attempts to every endpoint since `since` per period, by outcome: a
/// failed attempt counts as `retrying` unless its delivery gave up.
pub(super) fn traffic_query<'a, DB>(since: DateTime<Utc>, period: std::time::Duration) -> QueryBuilder<'a, DB>
where
    DB: sqlx::Database,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let period_ms = i64::try_from(period.as_millis()).unwrap_or(i64::MAX).max(1);
    let (ok, fail) = (state(DeliveryStatus::Success), state(DeliveryStatus::Fail));
    let mut qb = QueryBuilder::new("SELECT (a.created_at - ");
    qb.push_bind(ms(since)).push(") / ").push_bind(period_ms);
    qb.push(format_args!(
        " AS period, SUM(CASE WHEN a.status = {ok} THEN 1 ELSE 0 END), \
         SUM(CASE WHEN a.status <> {ok} AND d.status = {fail} THEN 1 ELSE 0 END), \
         SUM(CASE WHEN a.status <> {ok} AND (d.status IS NULL OR d.status <> {fail}) THEN 1 ELSE 0 END) \
         FROM attempts a LEFT JOIN deliveries d ON d.msg_id = a.msg_id AND d.id = a.delivery_id WHERE a.id >= "
    ));
    qb.push_bind(AttemptId::lowest_at(since));
    qb.push(" AND a.created_at >= ").push_bind(ms(since));
    qb.push(" GROUP BY period");
    qb
}

pub(super) fn traffic_rows(rows: Vec<(i64, i64, i64, i64)>) -> Vec<TrafficBucket> {
    rows.into_iter()
        .map(|(period, succeeded, failed, retrying)| TrafficBucket {
            period,
            succeeded,
            failed,
            retrying,
        })
        .collect()
}

/// An endpoint's deliveries in a window, counted by state: `(status, count)` rows.
pub(super) fn stats_query<'a, DB>(endpoint: &EndpointId, window: &Window) -> QueryBuilder<'a, DB>
where
    DB: sqlx::Database,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut qb = QueryBuilder::new("SELECT status, COUNT(*) FROM deliveries WHERE endpoint_id = ");
    qb.push_bind(endpoint.as_str().to_owned());
    qb.push(" AND created_at >= ").push_bind(ms(window.since));
    if let Some(until) = window.until {
        qb.push(" AND created_at < ").push_bind(ms(until));
    }
    qb.push(" GROUP BY status");
    qb
}

/// The claimed deliveries `keys` (message id, delivery id) with everything
/// needed to send them.
pub(super) fn claimed_jobs_query<'a, DB>(keys: &[(String, String)]) -> QueryBuilder<'a, DB>
where
    DB: sqlx::Database,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut qb = QueryBuilder::new(format!(
        "SELECT {JOB_COLUMNS}, {ENDPOINT_COLUMNS} \
         FROM deliveries d JOIN messages m ON m.id = d.msg_id JOIN endpoints e ON e.id = d.endpoint_id \
         JOIN applications a ON a.id = d.app_id WHERE TRUE"
    ));
    // Delivery ids are unique, so the two lists find exactly these rows;
    // the message ids pick their days' partitions on PostgreSQL, of both
    // tables (a join alone reads every day of messages).
    let msgs: Vec<String> = keys
        .iter()
        .map(|(m, _)| m.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let ids: Vec<String> = keys.iter().map(|(_, d)| d.clone()).collect();
    push_in(&mut qb, "d.msg_id", &msgs);
    push_in(&mut qb, "m.id", &msgs);
    push_in(&mut qb, "d.id", &ids);
    qb.push(" ORDER BY d.id");
    qb
}

/// `AND column IN (…)` over the distinct ids of some messages, beside a
/// join on them: on PostgreSQL the planner then reads only their days.
pub(super) fn push_msg_ids<'a, 'm, DB>(
    qb: &mut QueryBuilder<'a, DB>,
    column: &str,
    ids: impl Iterator<Item = &'m MessageId>,
) where
    DB: sqlx::Database,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let ids: BTreeSet<String> = ids.map(|id| id.as_str().to_owned()).collect();
    push_in(qb, column, &ids.into_iter().collect::<Vec<_>>());
}

/// Queue depth and the most overdue due time, over the partial due index.
pub(super) fn queue_gauges() -> String {
    format!("SELECT COUNT(*), MIN(next_attempt_at) FROM deliveries WHERE status IN ({QUEUED})")
}

/// Endpoints by state: healthy, failing, disabled.
pub(super) const ENDPOINT_GAUGES: &str = "SELECT \
     COALESCE(SUM(CASE WHEN NOT disabled AND failing_since IS NULL THEN 1 ELSE 0 END), 0), \
     COALESCE(SUM(CASE WHEN NOT disabled AND failing_since IS NOT NULL THEN 1 ELSE 0 END), 0), \
     COALESCE(SUM(CASE WHEN disabled THEN 1 ELSE 0 END), 0) FROM endpoints";

pub(super) fn gauges_from(queue: (i64, Option<i64>), endpoints: (i64, i64, i64)) -> Gauges {
    Gauges {
        queued: queue.0,
        most_overdue: queue.1.map(from_ms),
        endpoints_healthy: endpoints.0,
        endpoints_failing: endpoints.1,
        endpoints_disabled: endpoints.2,
    }
}

#[derive(FromRow)]
pub(super) struct TokenRow {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) token_hash: String,
    pub(super) app_id: Option<String>,
    pub(super) owner_id: Option<String>,
    pub(super) rate_limit: Option<i64>,
    pub(super) created_at: i64,
    pub(super) expires_at: Option<i64>,
    pub(super) revoked_at: Option<i64>,
    pub(super) last_used_at: Option<i64>,
}

impl TryFrom<TokenRow> for ApiToken {
    type Error = StoreError;
    fn try_from(r: TokenRow) -> StoreResult<Self> {
        let scope = match (r.app_id, r.owner_id) {
            (None, None) => Scope::Admin,
            (Some(app), owner) => Scope::App {
                app: AppId::from_trusted(app),
                owner,
            },
            (None, Some(_)) => {
                return Err(StoreError::Corrupt(format!(
                    "token {} has an owner but no application",
                    r.id
                )));
            }
        };
        Ok(Self {
            id: TokenId::from_trusted(r.id),
            name: r.name,
            token_hash: r.token_hash,
            scope,
            rate_limit: r.rate_limit.and_then(|v| u32::try_from(v).ok()),
            created_at: from_ms(r.created_at),
            expires_at: r.expires_at.map(from_ms),
            revoked_at: r.revoked_at.map(from_ms),
            last_used_at: r.last_used_at.map(from_ms),
        })
    }
}

/// Inserts `token`: the same statement on both backends.
pub(super) fn insert_token_query<'a, DB>(token: &ApiToken) -> QueryBuilder<'a, DB>
where
    DB: sqlx::Database,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<i64>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut qb = QueryBuilder::new(
        "INSERT INTO api_tokens (id, name, token_hash, app_id, owner_id, rate_limit, created_at, expires_at) ",
    );
    qb.push_values([token], |mut row, t| {
        row.push_bind(t.id.as_str().to_owned())
            .push_bind(t.name.clone())
            .push_bind(t.token_hash.clone())
            .push_bind(t.scope.app().map(|a| a.as_str().to_owned()))
            .push_bind(t.scope.owner().map(str::to_owned))
            .push_bind(t.rate_limit.map(i64::from))
            .push_bind(ms(t.created_at))
            .push_bind(t.expires_at.map(ms));
    });
    qb
}

/// Tokens in id order; `key` and `value` pick one (`id` or `token_hash`).
pub(super) fn tokens_query<'a, DB>(page: &Page, only: Option<(&str, &str)>) -> QueryBuilder<'a, DB>
where
    DB: sqlx::Database,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut qb = QueryBuilder::new("SELECT * FROM api_tokens WHERE 1 = 1");
    if let Some((key, value)) = only {
        qb.push(format_args!(" AND {key} = ")).push_bind(value.to_owned());
    }
    push_page(&mut qb, "id", page);
    qb
}

/// Marks a live token revoked; nothing when it already was.
pub(super) fn revoke_token_query<'a, DB>(id: &TokenId, now: DateTime<Utc>) -> QueryBuilder<'a, DB>
where
    DB: sqlx::Database,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut qb = QueryBuilder::new("UPDATE api_tokens SET revoked_at = ");
    qb.push_bind(ms(now))
        .push(" WHERE revoked_at IS NULL AND id = ")
        .push_bind(id.as_str().to_owned());
    qb
}

/// An endpoint with a secret stored in the clear.
#[derive(FromRow)]
pub(super) struct PlainSecretRow {
    id: String,
    secret: String,
    previous_secret: Option<String>,
}

pub(super) fn plain_secrets_query<'a, DB: sqlx::Database>() -> QueryBuilder<'a, DB> {
    QueryBuilder::new(
        "SELECT id, secret, previous_secret FROM endpoints \
         WHERE secret NOT LIKE 'sealed:%' OR previous_secret NOT LIKE 'sealed:%'",
    )
}

/// Seals one endpoint's secrets, unless they changed since they were read.
pub(super) fn reseal_query<'a, DB>(sealer: &Sealer, row: &PlainSecretRow) -> QueryBuilder<'a, DB>
where
    DB: sqlx::Database,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let context = secret_context(&row.id);
    let seal = |text: &str| {
        if is_sealed(text) {
            text.to_owned()
        } else {
            sealer.seal(&context, text)
        }
    };
    let mut qb = QueryBuilder::new("UPDATE endpoints SET secret = ");
    qb.push_bind(seal(&row.secret))
        .push(", previous_secret = ")
        .push_bind(row.previous_secret.as_deref().map(seal))
        .push(" WHERE id = ")
        .push_bind(row.id.clone())
        .push(" AND secret = ")
        .push_bind(row.secret.clone());
    qb
}

/// Stored endpoint secrets counted by the key that sealed them: its id,
/// `v1` for the database's first key, or empty for a secret in the clear.
pub(super) const SECRETS_BY_KEY: &str = "SELECT sealed_by, COUNT(*) FROM (\
     SELECT CASE WHEN substr(v, 1, 10) = 'sealed:v2:' THEN substr(v, 11, 8) \
     WHEN substr(v, 1, 10) = 'sealed:v1:' THEN 'v1' ELSE '' END AS sealed_by FROM (\
     SELECT secret AS v FROM endpoints UNION ALL \
     SELECT previous_secret AS v FROM endpoints WHERE previous_secret IS NOT NULL) AS stored) AS labelled \
     GROUP BY sealed_by";

pub(super) fn sealed_by_label(label: String) -> SealedBy {
    match label.as_str() {
        "" => SealedBy::Plain,
        "v1" => SealedBy::FirstKey,
        _ => SealedBy::Key(label),
    }
}

/// Endpoints with a secret that does not begin with `prefix` (the form the
/// sealing key writes), in id order.
pub(super) fn resealable_query<'a, DB>(prefix: &str, limit: u32) -> QueryBuilder<'a, DB>
where
    DB: sqlx::Database,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    // substr, not LIKE: a key id may hold `_`, which LIKE reads as a wildcard.
    let len = prefix.len();
    let mut qb = QueryBuilder::new(format!(
        "SELECT id, secret, previous_secret FROM endpoints WHERE substr(secret, 1, {len}) <> "
    ));
    qb.push_bind(prefix.to_owned())
        .push(format!(
            " OR (previous_secret IS NOT NULL AND substr(previous_secret, 1, {len}) <> "
        ))
        .push_bind(prefix.to_owned())
        .push(format!(") ORDER BY id LIMIT {limit}"));
    qb
}

/// Seals one endpoint's secrets again under the sealing key, unless they
/// changed since they were read.
pub(super) fn rotate_query<'a, DB>(sealer: &Sealer, row: &PlainSecretRow) -> StoreResult<QueryBuilder<'a, DB>>
where
    DB: sqlx::Database,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let context = secret_context(&row.id);
    let reseal = |stored: &str| {
        sealer
            .open(&context, stored)
            .map(|plain| sealer.seal(&context, &plain))
            .map_err(|e| StoreError::Corrupt(format!("the secret of endpoint {} {e}", row.id)))
    };
    let secret = reseal(&row.secret)?;
    let previous = row.previous_secret.as_deref().map(reseal).transpose()?;
    let mut qb = QueryBuilder::new("UPDATE endpoints SET secret = ");
    qb.push_bind(secret)
        .push(", previous_secret = ")
        .push_bind(previous)
        .push(" WHERE id = ")
        .push_bind(row.id.clone())
        .push(" AND secret = ")
        .push_bind(row.secret.clone())
        .push(" AND COALESCE(previous_secret, '') = ")
        .push_bind(row.previous_secret.clone().unwrap_or_default());
    Ok(qb)
}

pub(super) fn replace_setting_query<'a, DB>(name: &str, old: &str, new: &str) -> QueryBuilder<'a, DB>
where
    DB: sqlx::Database,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut qb = QueryBuilder::new("UPDATE settings SET value = ");
    qb.push_bind(new.to_owned())
        .push(" WHERE name = ")
        .push_bind(name.to_owned())
        .push(" AND value = ")
        .push_bind(old.to_owned());
    qb
}

/// Inserts an event type; with `replace`, over the one of the same name.
pub(super) fn insert_event_type_query<'a, DB>(et: &EventType, replace: bool) -> QueryBuilder<'a, DB>
where
    DB: sqlx::Database,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    bool: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut qb = QueryBuilder::new(
        "INSERT INTO event_types (name, description, archived, deprecated, schemas, group_name, feature_flags, \
         created_at, updated_at) ",
    );
    qb.push_values([et], |mut row, et| {
        row.push_bind(et.name.clone())
            .push_bind(et.description.clone())
            .push_bind(et.archived)
            .push_bind(et.deprecated)
            .push_bind(opt_json(&et.schemas))
            .push_bind(et.group_name.clone())
            .push_bind(opt_json(&et.feature_flags))
            .push_bind(ms(et.created_at))
            .push_bind(ms(et.updated_at));
    });
    if replace {
        qb.push(
            " ON CONFLICT (name) DO UPDATE SET description = excluded.description, archived = excluded.archived, \
             deprecated = excluded.deprecated, schemas = excluded.schemas, group_name = excluded.group_name, \
             feature_flags = excluded.feature_flags, updated_at = excluded.updated_at",
        );
    }
    qb
}

#[derive(FromRow)]
pub(super) struct EmailRow {
    pub(super) id: String,
    pub(super) subject: String,
    pub(super) body: String,
    pub(super) state: String,
    pub(super) tries: i64,
    pub(super) next_attempt_at: Option<i64>,
    pub(super) last_error: Option<String>,
    pub(super) created_at: i64,
    pub(super) sent_at: Option<i64>,
}

impl TryFrom<EmailRow> for EmailRecord {
    type Error = StoreError;
    fn try_from(r: EmailRow) -> StoreResult<Self> {
        let state = EmailState::parse(&r.state)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown email state {:?}", r.state)))?;
        Ok(EmailRecord {
            id: crate::domain::ids::EmailId::from_trusted(r.id),
            subject: r.subject,
            body: r.body,
            state,
            tries: u32::try_from(r.tries).unwrap_or(u32::MAX),
            next_attempt_at: r.next_attempt_at.filter(|_| state == EmailState::Pending).map(from_ms),
            last_error: r.last_error,
            created_at: from_ms(r.created_at),
            sent_at: r.sent_at.map(from_ms),
        })
    }
}
