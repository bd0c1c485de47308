//! The store contract. Every byte Herald keeps goes through `Store`, so a
//! second backend is one more implementation, tested by the same suite.

mod batch;
mod dialect;
pub mod handoff;
pub mod keys;
pub mod partitions;
pub mod postgres;
mod queue;
mod rows;
mod sql;
pub mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use tokio_util::sync::CancellationToken;

pub use crate::domain::model::*;
pub use crate::domain::operational::{ClaimedEmail, EmailCounts, EmailRecord, EmailState, Notices, OperatorEmail};

use crate::config::{Config, DatabaseUrl};
use crate::domain::clock::Clock;
use crate::domain::ids::{AppId, AttemptId, EndpointId, MessageId, TaskId, TokenId};
use crate::domain::sealing::{SealedBy, Sealer};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Conflict(String),
    #[error("another Herald process is using {0}; stop it first (one process per SQLite file)")]
    Locked(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("the database cannot take writes right now: {0}")]
    Unavailable(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("cannot prepare the data directory: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Key(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Page through a list by id (or name): `beyond` is the last key already seen.
#[derive(Debug, Clone)]
pub struct Page {
    pub limit: u32,
    pub beyond: Option<String>,
    pub order: Order,
}

impl Page {
    /// The first `limit` rows in ascending order.
    pub fn first(limit: u32) -> Self {
        Self {
            limit,
            beyond: None,
            order: Order::Ascending,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Ascending,
    Descending,
}

impl Order {
    pub fn reversed(self) -> Self {
        match self {
            Self::Ascending => Self::Descending,
            Self::Descending => Self::Ascending,
        }
    }
}

/// Filters for message lists.
#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    pub before: Option<DateTime<Utc>>,
    pub after: Option<DateTime<Utc>>,
    pub event_types: Vec<String>,
    pub channel: Option<String>,
}

/// Filters for attempt lists.
#[derive(Debug, Clone, Default)]
pub struct AttemptFilter {
    pub endpoint_id: Option<EndpointId>,
    pub msg_id: Option<MessageId>,
    pub status: Option<i64>,
    pub status_code_class: Option<i64>,
    pub before: Option<DateTime<Utc>>,
    pub after: Option<DateTime<Utc>>,
    pub event_types: Vec<String>,
    pub channel: Option<String>,
}

/// What to do with a delivery after an attempt.
#[derive(Debug, Clone, Copy)]
pub enum NextStep {
    RetryAt(DateTime<Utc>),
    Succeeded,
    Exhausted,
    /// Not sent and never will be: the endpoint is disabled and drops.
    Dropped,
}

/// What one node reported about its key ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyHolder {
    pub node: String,
    /// The ids of the keys it holds.
    pub key_ids: Vec<String>,
    /// The id of the key it seals with.
    pub sealing: String,
    pub seen_at: DateTime<Utc>,
}

/// What the database holds, for `/health` and `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Storage {
    /// Bytes on disk: `pg_database_size` on PostgreSQL, pages times page
    /// size on SQLite.
    pub bytes: i64,
    /// The days the history is partitioned into (PostgreSQL); `None` where
    /// it is one table.
    pub partitions: Option<PartitionDays>,
}

/// The daily partitions of the history that exist now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionDays {
    pub count: usize,
    pub oldest: Option<NaiveDate>,
    pub newest: Option<NaiveDate>,
}

/// What one partition upkeep is to do: make the days from `first_day` to
/// `last_day` that are missing, and drop each day that ended by `drop_before`.
#[derive(Debug, Clone)]
pub struct UpkeepPlan {
    pub first_day: NaiveDate,
    pub last_day: NaiveDate,
    pub drop_before: DateTime<Utc>,
}

/// What one partition upkeep did.
#[derive(Debug, Clone, Default)]
pub struct Upkeep {
    /// Another node held the upkeep lock: this one did nothing.
    pub busy: bool,
    pub created: Vec<NaiveDate>,
    pub dropped: Vec<NaiveDate>,
    /// Messages of dropped days still being delivered, kept in the
    /// default partition until the history sweep removes them.
    pub carried: u64,
    /// What failed (a day left for the next upkeep), in words.
    pub errors: Vec<String>,
    /// The longest a drop held the history tables locked (detaching a day
    /// and carrying over what is still being delivered): nothing is
    /// published, claimed or recorded meanwhile.
    pub longest_lock: Duration,
    /// The most tries a drop needed to get the tables' lock.
    pub lock_tries: u32,
    /// Partitions whose statistics were refreshed (today's, yesterday's
    /// and the default ones, when a tenth of them changed since).
    pub analyzed: Vec<String>,
}

/// The state of an idempotency key when a request arrives with it.
#[derive(Debug, Clone)]
pub enum IdempotencyState {
    /// First sight: the caller runs the request and records its answer.
    New,
    /// The same key is being handled right now by another request.
    InProgress,
    /// Already answered: replay this.
    Done { status: u16, body: Vec<u8> },
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    // Settings
    async fn get_setting(&self, name: &str) -> StoreResult<Option<String>>;
    /// Returns false when the setting already had a value (which is kept).
    async fn put_setting_if_absent(&self, name: &str, value: &str) -> StoreResult<bool>;
    /// Sets `name` to `new` if it still holds `old`.
    async fn replace_setting(&self, name: &str, old: &str, new: &str) -> StoreResult<bool>;

    /// Closes the connections and lets go of the database (on SQLite, its
    /// file lock), so that it can be opened again at once, by this process
    /// or another, even while a stray task still holds the store. Called
    /// once, when the server stops; calls after it fail as unavailable.
    async fn close(&self);

    /// Seals and opens the secrets this store keeps.
    fn sealer(&self) -> &Sealer;
    /// A setting that holds a secret, opened.
    async fn get_secret_setting(&self, name: &str) -> StoreResult<Option<String>> {
        let Some(stored) = self.get_setting(name).await? else {
            return Ok(None);
        };
        self.sealer()
            .open(&keys::setting_context(name), &stored)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("the setting {name} {e}")))
    }
    /// Stores a secret setting, sealed, unless one is there already.
    async fn put_secret_setting_if_absent(&self, name: &str, value: &str) -> StoreResult<bool> {
        let sealed = self.sealer().seal(&keys::setting_context(name), value);
        self.put_setting_if_absent(name, &sealed).await
    }
    /// Seals endpoint secrets stored in the clear (before sealing existed);
    /// answers how many endpoints it sealed.
    async fn seal_plain_secrets(&self) -> StoreResult<u64>;
    /// How many stored endpoint secrets (current and previous) each key
    /// sealed, as the values say.
    async fn secrets_by_key(&self) -> StoreResult<Vec<(SealedBy, u64)>>;
    /// Seals again, under the key that seals now, up to `limit` endpoints
    /// whose secrets are under another key; answers how many it changed.
    /// An endpoint saved meanwhile is left as saved (it is sealed under the
    /// sealing key then, or found again by the next call).
    async fn reseal_secrets(&self, limit: u32) -> StoreResult<u64>;
    /// Records what `holder.node` holds; forgets nodes silent for a day.
    async fn record_key_holder(&self, holder: &KeyHolder) -> StoreResult<()>;
    /// Every node that reported its keys lately, most recent first.
    async fn key_holders(&self) -> StoreResult<Vec<KeyHolder>>;

    // Applications
    async fn create_app(&self, app: &Application) -> StoreResult<()>;
    async fn get_app(&self, id_or_uid: &str) -> StoreResult<Option<Application>>;
    /// With `search`, only applications whose name or uid contains it
    /// (ignoring case), or whose id it is.
    async fn list_apps(&self, page: &Page, search: Option<&str>) -> StoreResult<Vec<Application>>;
    async fn update_app(&self, app: &Application) -> StoreResult<()>;
    /// Every profile name an application or endpoint refers to.
    async fn profile_names_in_use(&self) -> StoreResult<Vec<String>>;
    async fn delete_app(&self, id: &AppId) -> StoreResult<bool>;

    // Endpoints
    async fn create_endpoint(&self, ep: &Endpoint) -> StoreResult<()> {
        self.create_endpoint_noting(ep, &Notices::default()).await
    }
    /// Creates an endpoint and writes `notices` in the same transaction.
    async fn create_endpoint_noting(&self, ep: &Endpoint, notices: &Notices) -> StoreResult<()>;
    async fn get_endpoint(&self, app: &AppId, id_or_uid: &str) -> StoreResult<Option<Endpoint>>;
    /// With `owner`, only that owner's endpoints.
    async fn list_endpoints(&self, app: &AppId, page: &Page, owner: Option<&str>) -> StoreResult<Vec<Endpoint>>;
    /// Saves an endpoint; an enabled one gets its held deliveries due now,
    /// in the same transaction, so none stays held behind an enabled endpoint.
    async fn update_endpoint(&self, ep: &Endpoint) -> StoreResult<()> {
        self.update_endpoint_noting(ep, &Notices::default()).await
    }
    /// Saves an endpoint as [`Store::update_endpoint`] does and writes
    /// `notices` in the same transaction.
    async fn update_endpoint_noting(&self, ep: &Endpoint, notices: &Notices) -> StoreResult<()>;
    async fn delete_endpoint(&self, app: &AppId, id: &EndpointId) -> StoreResult<bool> {
        self.delete_endpoint_noting(app, id, &Notices::default()).await
    }
    /// Deletes an endpoint and, if it was there, writes `notices` in the
    /// same transaction.
    async fn delete_endpoint_noting(&self, app: &AppId, id: &EndpointId, notices: &Notices) -> StoreResult<bool>;
    /// Marks an endpoint failing since `since` (kept if already failing), or
    /// healthy again with `None`.
    async fn set_endpoint_failing(&self, id: &EndpointId, since: Option<DateTime<Utc>>) -> StoreResult<()>;
    /// Switches an endpoint off on Herald's own decision, saying why.
    async fn disable_endpoint(&self, id: &EndpointId, reason: &str, now: DateTime<Utc>) -> StoreResult<()> {
        self.disable_endpoint_noting(id, reason, now, &Notices::default())
            .await
            .map(|_| ())
    }
    /// Disables an endpoint that is still enabled and writes `notices` in
    /// the same transaction; answers false (writing nothing) when it was
    /// already disabled or is gone.
    async fn disable_endpoint_noting(
        &self,
        id: &EndpointId,
        reason: &str,
        now: DateTime<Utc>,
        notices: &Notices,
    ) -> StoreResult<bool>;
    /// Enabled endpoints whose check is due by `now`, with their
    /// application's profile, most overdue first.
    async fn endpoints_to_reverify(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<(Endpoint, Option<String>)>>;
    /// Takes the repeat check of one endpoint and sets when the next one is
    /// due: true for the one node whose `seen` due time was still current,
    /// so each check runs once however many nodes look.
    async fn claim_reverify(
        &self,
        id: &EndpointId,
        seen: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
    ) -> StoreResult<bool>;

    // Event types
    async fn create_event_type(&self, et: &EventType) -> StoreResult<()>;
    async fn get_event_type(&self, name: &str) -> StoreResult<Option<EventType>>;
    async fn list_event_types(&self, page: &Page, include_archived: bool) -> StoreResult<Vec<EventType>>;
    /// Inserts or replaces.
    async fn upsert_event_type(&self, et: &EventType) -> StoreResult<()>;
    async fn delete_event_type(&self, name: &str) -> StoreResult<bool>;

    // Messages
    /// Writes the message and one delivery per matching enabled endpoint in
    /// one transaction: once this returns, the message cannot be lost.
    /// Returns how many deliveries it left due for a claim: those not
    /// dropped, nor leased and handed to the dispatcher (see [`handoff`]).
    async fn publish(&self, msg: &Message) -> StoreResult<usize>;
    /// Hands the fresh deliveries of later publishes to this process's
    /// running dispatcher through `handoff`, or to none.
    fn hand_off_to(&self, handoff: Option<handoff::HandOff>);
    /// Writes a message with one delivery, to `endpoint` only (test events).
    async fn publish_to(&self, msg: &Message, endpoint: &EndpointId) -> StoreResult<()>;
    async fn get_message(&self, app: &AppId, id_or_event_id: &str) -> StoreResult<Option<Message>>;
    async fn list_messages(&self, app: &AppId, filter: &MessageFilter, page: &Page) -> StoreResult<Vec<Message>>;
    /// Up to `limit` messages of any application whose id or eventId is
    /// `id_or_event_id`, newest first.
    async fn find_messages(&self, id_or_event_id: &str, limit: u32) -> StoreResult<Vec<Message>>;

    // Deliveries
    /// Reserves up to `limit` due deliveries for `lease`, marking them sending.
    async fn claim_due(&self, now: DateTime<Utc>, limit: u32, lease: Duration) -> StoreResult<Vec<DeliveryJob>>;
    /// Records an attempt and moves the delivery on, if the lease is still ours.
    async fn complete_attempt(&self, job: &DeliveryJob, attempt: &Attempt, next: NextStep) -> StoreResult<()> {
        self.complete_attempt_noting(job, attempt, next, Notices::default())
            .await
    }
    /// Records an attempt as [`Store::complete_attempt`] does and writes
    /// `notices` (what the attempt tells the operator) in the same transaction.
    async fn complete_attempt_noting(
        &self,
        job: &DeliveryJob,
        attempt: &Attempt,
        next: NextStep,
        notices: Notices,
    ) -> StoreResult<()>;
    /// Sends a claimed delivery back to wait until `until`, without an
    /// attempt (its endpoint is at its limit).
    async fn defer(&self, job: &DeliveryJob, until: DateTime<Utc>) -> StoreResult<()>;
    /// Parks a claimed delivery until its endpoint is enabled. Answers false
    /// (and makes it due now) when the endpoint was enabled meanwhile.
    async fn hold_delivery(&self, job: &DeliveryJob, now: DateTime<Utc>) -> StoreResult<bool>;
    /// When the earliest pending delivery comes due, if any.
    async fn next_due_at(&self) -> StoreResult<Option<DateTime<Utc>>>;
    /// At start: makes due now every lease that can only belong to a dead
    /// process. On SQLite that is every lease (the file lock proves no other
    /// process runs); on PostgreSQL other nodes may be alive, so leases are
    /// left to expire.
    async fn release_orphaned_leases(&self, now: DateTime<Utc>) -> StoreResult<u64>;
    /// Calls `wake` whenever another process publishes or resends, until
    /// `shutdown`. Within one process the dispatcher is woken directly.
    async fn forward_wakeups(&self, wake: Arc<tokio::sync::Notify>, shutdown: CancellationToken) {
        let _ = wake;
        shutdown.cancelled().await;
    }
    /// Queue depth and endpoint states, for the metrics.
    async fn gauges(&self) -> StoreResult<Gauges>;
    /// Whether this backend lets several processes share the database.
    fn is_shared(&self) -> bool;
    /// Schedules a manual resend of a message to an endpoint.
    async fn resend(&self, msg: &Message, endpoint: &Endpoint, now: DateTime<Utc>) -> StoreResult<()>;
    /// Schedules manual resends of many messages of the endpoint's
    /// application in one transaction; ids not found are skipped. Answers
    /// how many were scheduled.
    async fn resend_many(&self, endpoint: &Endpoint, msgs: &[MessageId], now: DateTime<Utc>) -> StoreResult<u64>;
    /// Up to `limit` messages of the endpoint's application created in
    /// `window` after `after`, oldest first, that a recovery of `kind` would
    /// send again. Messages whose payload was removed are left out.
    async fn recovery_batch(
        &self,
        endpoint: &Endpoint,
        kind: Recovery,
        window: &Window,
        after: Option<&MessageId>,
        limit: u32,
    ) -> StoreResult<Vec<Message>>;
    /// Deliveries of a FIFO endpoint waiting behind its head (the one being
    /// sent or retried), whenever they were created.
    async fn waiting_behind_head(&self, endpoint: &EndpointId) -> StoreResult<i64>;
    /// Deliveries of an endpoint created in `window`, counted by state.
    async fn endpoint_stats(&self, endpoint: &EndpointId, window: &Window) -> StoreResult<DeliveryCounts>;
    /// Attempts to `endpoints` since `since`, counted per `period`; periods
    /// without attempts are absent.
    async fn endpoint_activity(
        &self,
        endpoints: &[EndpointId],
        since: DateTime<Utc>,
        period: std::time::Duration,
    ) -> StoreResult<Vec<ActivityBucket>>;
    /// Attempts to every endpoint since `since`, counted per `period` by
    /// outcome; periods without attempts are absent.
    async fn traffic(&self, since: DateTime<Utc>, period: std::time::Duration) -> StoreResult<Vec<TrafficBucket>>;
    /// Up to `limit` endpoints of any application that are failing or
    /// disabled, in id order.
    async fn troubled_endpoints(&self, limit: u32) -> StoreResult<Vec<Endpoint>>;

    // Retention
    /// Removes up to `limit` payloads whose retention ended by `now` and
    /// whose deliveries are all finished. Answers how many were removed.
    async fn remove_expired_payloads(&self, now: DateTime<Utc>, limit: u32) -> StoreResult<u64>;
    /// Removes a message's payload and the bodies sent with it; deliveries
    /// not yet made are dropped, as there is nothing left to send.
    async fn remove_payload(&self, app: &AppId, msg: &MessageId, now: DateTime<Utc>) -> StoreResult<bool>;
    /// With `retain_payloads = false`: removes the payload once every
    /// delivery of the message has succeeded.
    async fn remove_payload_if_delivered(&self, msg: &MessageId, now: DateTime<Utc>) -> StoreResult<()>;
    /// Removes what an attempt sent and received (bodies and headers).
    async fn remove_attempt_content(&self, app: &AppId, msg: &MessageId, attempt: &AttemptId) -> StoreResult<bool>;
    /// Forgets idempotency keys older than `oldest`.
    async fn remove_idempotency_keys(&self, oldest: DateTime<Utc>) -> StoreResult<u64>;
    /// Applications keeping their history for fewer days than the server.
    async fn history_windows(&self) -> StoreResult<Vec<(AppId, i64)>>;
    /// Removes up to `limit` messages created before `before` (of `app`
    /// only, if given), with their deliveries and attempts, in one short
    /// transaction. A message with a delivery not yet finished stays until
    /// it ends. Answers what went.
    async fn remove_old_messages(&self, app: Option<&AppId>, before: DateTime<Utc>, limit: u32)
    -> StoreResult<Removed>;
    /// When the oldest message kept was created, if any is.
    async fn oldest_message_at(&self) -> StoreResult<Option<DateTime<Utc>>>;
    /// Where history is partitioned by day (PostgreSQL): makes the days
    /// ahead and drops whole days past the window, on one node at a time.
    /// Answers `None` where it is not (SQLite, whose sweep deletes rows).
    async fn upkeep_partitions(&self, plan: &UpkeepPlan) -> StoreResult<Option<Upkeep>>;
    /// The database's size and its history partitions.
    async fn storage(&self) -> StoreResult<Storage>;

    // Background tasks
    async fn create_task(&self, task: &BackgroundTask) -> StoreResult<()>;
    async fn update_task(&self, task: &BackgroundTask) -> StoreResult<()>;
    async fn get_task(&self, id: &TaskId) -> StoreResult<Option<BackgroundTask>>;
    async fn list_tasks(&self, page: &Page) -> StoreResult<Vec<BackgroundTask>>;
    /// Running tasks nobody has moved on since `stale_before`, taken over by
    /// the caller (their `updated_at` set to `now`). Tasks are idempotent,
    /// so resuming one after a crash sends nothing twice.
    async fn take_over_tasks(
        &self,
        stale_before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<BackgroundTask>>;

    // Attempts
    async fn list_attempts(&self, app: &AppId, filter: &AttemptFilter, page: &Page) -> StoreResult<Vec<Attempt>>;
    /// An attempt of message `msg`, which names the day it is kept in.
    async fn get_attempt(&self, app: &AppId, msg: &MessageId, id: &AttemptId) -> StoreResult<Option<Attempt>>;

    // Operator emails
    /// Reserves up to `limit` emails due by `now` for `lease`: each counts
    /// a try and is not due again before the lease ends.
    async fn claim_emails(&self, now: DateTime<Utc>, limit: u32, lease: Duration) -> StoreResult<Vec<ClaimedEmail>>;
    /// Marks a claimed email sent, if the lease is still ours.
    async fn email_sent(&self, email: &ClaimedEmail, now: DateTime<Utc>) -> StoreResult<bool>;
    /// Records a failed try: due again at `retry_at`, or failed for good
    /// with `None`. Only while the lease is ours.
    async fn email_not_sent(
        &self,
        email: &ClaimedEmail,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// When the earliest pending email comes due, if any.
    async fn next_email_due(&self) -> StoreResult<Option<DateTime<Utc>>>;
    /// Emails newest first (paged by id), of one state if given.
    async fn list_emails(&self, page: &Page, state: Option<EmailState>) -> StoreResult<Vec<EmailRecord>>;
    async fn email_counts(&self) -> StoreResult<EmailCounts>;
    /// Removes sent and failed emails queued before `before` (pending ones
    /// stay until they end). Answers how many went.
    async fn remove_old_emails(&self, before: DateTime<Utc>) -> StoreResult<u64>;

    // Idempotency
    // API tokens.
    async fn create_token(&self, token: &ApiToken) -> StoreResult<()>;
    /// The token with this hex SHA-256, revoked and expired ones included.
    async fn find_token(&self, token_hash: &str) -> StoreResult<Option<ApiToken>>;
    async fn get_token(&self, id: &TokenId) -> StoreResult<Option<ApiToken>>;
    async fn list_tokens(&self, page: &Page) -> StoreResult<Vec<ApiToken>>;
    /// True when the token was live and is now revoked.
    async fn revoke_token(&self, id: &TokenId, now: DateTime<Utc>) -> StoreResult<bool>;
    /// Notes that the token authenticated at `now`.
    async fn touch_token(&self, id: &TokenId, now: DateTime<Utc>) -> StoreResult<()>;

    async fn idempotency_begin(&self, key: &str, now: DateTime<Utc>, ttl: Duration) -> StoreResult<IdempotencyState>;
    async fn idempotency_finish(&self, key: &str, status: u16, body: &[u8]) -> StoreResult<()>;
    async fn idempotency_abandon(&self, key: &str) -> StoreResult<()>;
}

/// Opens the store the configuration names, running migrations first. The
/// store reads `clock` only for what it decides itself (when a FIFO
/// endpoint's next message comes due after a group commit).
pub async fn open(config: &Config, clock: &Clock) -> StoreResult<Arc<dyn Store>> {
    let sealer = keys::sealer(&config.secret_key)?;
    let clock = clock.clone();
    let store: Arc<dyn Store> = match &config.database {
        DatabaseUrl::Sqlite(path) => {
            Arc::new(sqlite::SqliteStore::open(path, config.db_pool_size, sealer, clock).await?)
        }
        DatabaseUrl::Postgres(url) => Arc::new(postgres::PgStore::open(url, config, sealer, clock).await?),
    };
    keys::adopt(store.as_ref()).await?;
    Ok(store)
}

const FIRST_RETRY: Duration = Duration::from_secs(1);
const LAST_RETRY: Duration = Duration::from_secs(30);

/// Opens the store, waiting out a database that is not reachable yet (a
/// node often starts before its database). Answers `None` on shutdown.
pub async fn open_when_reachable(
    config: &Config,
    clock: &Clock,
    shutdown: &CancellationToken,
) -> StoreResult<Option<Arc<dyn Store>>> {
    let mut delay = FIRST_RETRY;
    loop {
        match open(config, clock).await {
            Ok(store) => return Ok(Some(store)),
            Err(e) if e.is_unavailable() => {
                tracing::warn!(error = %e, retry_in = ?delay, "the database is unreachable; retrying");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.cancelled() => return Ok(None),
                }
                delay = (delay * 2).min(LAST_RETRY);
            }
            Err(e) => return Err(e),
        }
    }
}

impl StoreError {
    /// True when the database is out of reach or out of room rather than
    /// refusing: the request may succeed if retried later.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Database(e) | Self::Migrate(sqlx::migrate::MigrateError::Execute(e)) => is_connection_error(e),
            Self::Unavailable(_) => true,
            _ => false,
        }
    }
}

fn is_connection_error(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) => true,
        // SQLSTATE class 08 (connection exception) and 57P (operator intervention:
        // shutdown, terminated backend) mean the server went away, not that it said no.
        // Class 53 (insufficient resources: disk full, out of memory, too many
        // connections) and SQLite's SQLITE_FULL (13) pass once space is made.
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P") || c.starts_with("53") || c == "13"),
        _ => false,
    }
}
