//! The embedded backend: one SQLite file in WAL mode, synchronous writes.
//!
//! SQLite allows one writer at a time, so writes go through a pool of one
//! connection (no lock contention, no SQLITE_BUSY) and reads through a
//! separate pool that WAL lets run beside it.

use std::fs::File;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rand::Rng;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Sqlite, SqlitePool};

use super::batch::{Batcher, Completion, Deferral};
use super::rows::*;
use super::sqlite_batch::{SqliteWriter, insert_delivery, insert_message, lock_fifo, lock_queue, promote_heads};
use super::*;
use crate::domain::ids::DeliveryId;
use crate::domain::status::DeliveryStatus;
use crate::domain::status::{DeliveryOrder, TriggerType};

/// What orders a FIFO endpoint's queue: the rowid grows with each insert,
/// and the one writer commits in that order.
pub(super) const QUEUE_ORDER: &str = "rowid";
/// No row locks: the one writer already serializes every queue change.
pub(super) const LOCK_QUEUE: &str = "";

pub struct SqliteStore {
    writer: SqlitePool,
    /// Publishes and attempt results, committed in groups.
    batcher: Batcher,
    reader: SqlitePool,
    /// Held for the life of the store: a second process on the file is refused.
    _lock: File,
    sealer: Sealer,
}

impl SqliteStore {
    pub async fn open(path: &Path, readers: u32, sealer: Sealer) -> StoreResult<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let lock_path = path.with_extension("lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)?;
        if lock.try_lock().is_err() {
            return Err(StoreError::Locked(path.display().to_string()));
        }

        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a 2xx answer means the message is on disk, power loss included.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(readers.max(1))
            .connect_with(options.read_only(true))
            .await?;
        Ok(Self {
            batcher: Batcher::start(SqliteWriter(writer.clone())),
            writer,
            reader,
            _lock: lock,
            sealer,
        })
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn get_setting(&self, name: &str) -> StoreResult<Option<String>> {
        Ok(sqlx::query_scalar("SELECT value FROM settings WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.reader)
            .await?)
    }

    async fn put_setting_if_absent(&self, name: &str, value: &str) -> StoreResult<bool> {
        let done = sqlx::query("INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(value)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn replace_setting(&self, name: &str, old: &str, new: &str) -> StoreResult<bool> {
        let mut qb = replace_setting_query(name, old, new);
        Ok(qb.build().execute(&self.writer).await?.rows_affected() == 1)
    }

    fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    async fn seal_plain_secrets(&self) -> StoreResult<u64> {
        let rows: Vec<PlainSecretRow> = plain_secrets_query().build_query_as().fetch_all(&self.reader).await?;
        let mut sealed = 0;
        for row in rows {
            let mut qb = reseal_query(&self.sealer, &row);
            sealed += qb.build().execute(&self.writer).await?.rows_affected();
        }
        Ok(sealed)
    }

    async fn create_app(&self, app: &Application) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO applications (id, uid, name, rate_limit, metadata, created_at, updated_at, profile, \
             validate_payloads) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(app.id.as_str())
        .bind(&app.uid)
        .bind(&app.name)
        .bind(app.rate_limit)
        .bind(to_json(&app.metadata))
        .bind(ms(app.created_at))
        .bind(ms(app.updated_at))
        .bind(&app.profile)
        .bind(app.validate_payloads)
        .execute(&self.writer)
        .await
        .map_err(|e| uid_conflict(e, "an application with this uid already exists"))?;
        Ok(())
    }

    async fn get_app(&self, id_or_uid: &str) -> StoreResult<Option<Application>> {
        let row: Option<AppRow> = sqlx::query_as("SELECT * FROM applications WHERE id = ?1 OR uid = ?1")
            .bind(id_or_uid)
            .fetch_optional(&self.reader)
            .await?;
        row.map(Application::try_from).transpose()
    }

    async fn list_apps(&self, page: &Page, search: Option<&str>) -> StoreResult<Vec<Application>> {
        let mut qb = apps_query(page, search);
        collect(qb.build_query_as::<AppRow>().fetch_all(&self.reader).await?)
    }

    async fn update_app(&self, app: &Application) -> StoreResult<()> {
        sqlx::query(
            "UPDATE applications SET uid = ?, name = ?, rate_limit = ?, metadata = ?, updated_at = ?, profile = ?, \
             validate_payloads = ? WHERE id = ?",
        )
        .bind(&app.uid)
        .bind(&app.name)
        .bind(app.rate_limit)
        .bind(to_json(&app.metadata))
        .bind(ms(app.updated_at))
        .bind(&app.profile)
        .bind(app.validate_payloads)
        .bind(app.id.as_str())
        .execute(&self.writer)
        .await
        .map_err(|e| uid_conflict(e, "an application with this uid already exists"))?;
        Ok(())
    }

    async fn profile_names_in_use(&self) -> StoreResult<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT profile FROM applications WHERE profile IS NOT NULL \
             UNION SELECT profile FROM endpoints WHERE profile IS NOT NULL",
        )
        .fetch_all(&self.reader)
        .await?)
    }

    async fn delete_app(&self, id: &AppId) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM applications WHERE id = ?")
            .bind(id.as_str())
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn create_endpoint(&self, ep: &Endpoint) -> StoreResult<()> {
        let insert = sqlx::query(
            "INSERT INTO endpoints (uid, url, description, filter_types, channels, disabled, \
             rate_limit, metadata, headers, secret, previous_secret, previous_secret_expires_at, profile, verify_token, \
             format, template, disabled_reason, reverify_at, owner_id, while_disabled, tls_verify, ordering, updated_at, id, \
             app_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        );
        bind_endpoint(insert, ep, &self.sealer)
            .bind(ms(ep.created_at))
            .execute(&self.writer)
            .await
            .map_err(|e| uid_conflict(e, "an endpoint with this uid already exists in this application"))?;
        Ok(())
    }

    async fn get_endpoint(&self, app: &AppId, id_or_uid: &str) -> StoreResult<Option<Endpoint>> {
        let row: Option<EndpointRow> =
            sqlx::query_as("SELECT * FROM endpoints WHERE app_id = ?1 AND (id = ?2 OR uid = ?2)")
                .bind(app.as_str())
                .bind(id_or_uid)
                .fetch_optional(&self.reader)
                .await?;
        row.map(|r| r.into_endpoint(&self.sealer)).transpose()
    }

    async fn list_endpoints(&self, app: &AppId, page: &Page, owner: Option<&str>) -> StoreResult<Vec<Endpoint>> {
        let mut qb = endpoints_query(app, page, owner);
        let rows: Vec<EndpointRow> = qb.build_query_as().fetch_all(&self.reader).await?;
        rows.into_iter().map(|r| r.into_endpoint(&self.sealer)).collect()
    }

    async fn update_endpoint(&self, ep: &Endpoint) -> StoreResult<()> {
        let update = sqlx::query(
            "UPDATE endpoints SET uid = ?, url = ?, description = ?, filter_types = ?, channels = ?, disabled = ?, \
             rate_limit = ?, metadata = ?, headers = ?, secret = ?, previous_secret = ?, previous_secret_expires_at = ?, \
             profile = ?, verify_token = ?, format = ?, template = ?, disabled_reason = ?, reverify_at = ?, \
             owner_id = ?, while_disabled = ?, tls_verify = ?, ordering = ?, updated_at = ? WHERE id = ? AND app_id = ?",
        );
        let mut tx = self.writer.begin().await?;
        bind_endpoint(update, ep, &self.sealer)
            .execute(&mut *tx)
            .await
            .map_err(|e| uid_conflict(e, "an endpoint with this uid already exists in this application"))?;
        let now = ms(ep.updated_at);
        let fifo = ep.ordering == DeliveryOrder::Fifo;
        if !ep.disabled {
            // Held deliveries are released; a FIFO endpoint's wait in its queue again.
            sqlx::query("UPDATE deliveries SET status = 1, next_attempt_at = ?, updated_at = ? WHERE endpoint_id = ? AND status = 4")
                .bind((!fifo).then_some(now))
                .bind(now)
                .bind(ep.id.as_str())
                .execute(&mut *tx)
                .await?;
        }
        if fifo {
            promote_heads(&mut tx, &std::collections::BTreeSet::from([ep.id.to_string()]), now).await?;
        } else {
            // A queue left by FIFO ordering goes out at once.
            sqlx::query(
                "UPDATE deliveries SET next_attempt_at = ? WHERE endpoint_id = ? AND status IN (1, 3) \
                 AND next_attempt_at IS NULL",
            )
            .bind(now)
            .bind(ep.id.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn delete_endpoint(&self, app: &AppId, id: &EndpointId) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM endpoints WHERE id = ? AND app_id = ?")
            .bind(id.as_str())
            .bind(app.as_str())
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_endpoint_failing(&self, id: &EndpointId, since: Option<DateTime<Utc>>) -> StoreResult<()> {
        let sql = match since {
            Some(_) => "UPDATE endpoints SET failing_since = COALESCE(failing_since, ?) WHERE id = ?",
            None => "UPDATE endpoints SET failing_since = ? WHERE id = ?",
        };
        sqlx::query(sql)
            .bind(since.map(ms))
            .bind(id.as_str())
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn disable_endpoint(&self, id: &EndpointId, reason: &str, now: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query("UPDATE endpoints SET disabled = 1, disabled_reason = ?, updated_at = ? WHERE id = ?")
            .bind(reason)
            .bind(ms(now))
            .bind(id.as_str())
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn endpoints_to_reverify(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<(Endpoint, Option<String>)>> {
        let sql = format!(
            "SELECT {ENDPOINT_COLUMNS}, a.profile AS app_profile FROM endpoints e \
             JOIN applications a ON a.id = e.app_id \
             WHERE e.disabled = 0 AND e.reverify_at <= ? ORDER BY e.reverify_at LIMIT ?"
        );
        let rows: Vec<ReverifyRow> = sqlx::query_as(&sql)
            .bind(ms(now))
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await?;
        rows.into_iter().map(|r| r.into_pair(&self.sealer)).collect()
    }

    async fn claim_reverify(
        &self,
        id: &EndpointId,
        seen: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
    ) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE endpoints SET reverify_at = ? WHERE id = ? AND reverify_at = ?")
            .bind(next.map(ms))
            .bind(id.as_str())
            .bind(ms(seen))
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn create_event_type(&self, et: &EventType) -> StoreResult<()> {
        insert_event_type(&self.writer, et, false)
            .await
            .map_err(|e| uid_conflict(e, "an event type with this name already exists"))
    }

    async fn get_event_type(&self, name: &str) -> StoreResult<Option<EventType>> {
        let row: Option<EventTypeRow> = sqlx::query_as("SELECT * FROM event_types WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.reader)
            .await?;
        row.map(EventType::try_from).transpose()
    }

    async fn list_event_types(&self, page: &Page, include_archived: bool) -> StoreResult<Vec<EventType>> {
        let mut qb = QueryBuilder::new("SELECT * FROM event_types WHERE 1 = 1");
        if !include_archived {
            qb.push(" AND archived = 0");
        }
        push_page(&mut qb, "name", page);
        collect(qb.build_query_as::<EventTypeRow>().fetch_all(&self.reader).await?)
    }

    async fn upsert_event_type(&self, et: &EventType) -> StoreResult<()> {
        Ok(insert_event_type(&self.writer, et, true).await?)
    }

    async fn delete_event_type(&self, name: &str) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM event_types WHERE name = ?")
            .bind(name)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn publish(&self, msg: &Message) -> StoreResult<usize> {
        self.batcher.publish(msg.clone()).await
    }

    async fn publish_to(&self, msg: &Message, endpoint: &EndpointId) -> StoreResult<()> {
        let mut tx = self.writer.begin().await?;
        let fifo = lock_queue(&mut tx, endpoint.as_str()).await?;
        insert_message(&mut tx, msg).await?;
        let now = ms(msg.created_at);
        insert_delivery(
            &mut tx,
            msg,
            endpoint.as_str(),
            TriggerType::Manual,
            now,
            DeliveryStatus::Pending,
            !fifo.is_empty(),
        )
        .await?;
        promote_heads(&mut tx, &fifo, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_message(&self, app: &AppId, id_or_event_id: &str) -> StoreResult<Option<Message>> {
        let row: Option<MessageRow> =
            sqlx::query_as("SELECT * FROM messages WHERE app_id = ?1 AND (id = ?2 OR event_id = ?2)")
                .bind(app.as_str())
                .bind(id_or_event_id)
                .fetch_optional(&self.reader)
                .await?;
        row.map(Message::try_from).transpose()
    }

    async fn list_messages(&self, app: &AppId, filter: &MessageFilter, page: &Page) -> StoreResult<Vec<Message>> {
        let mut qb = QueryBuilder::new("SELECT * FROM messages WHERE app_id = ");
        qb.push_bind(app.as_str().to_owned());
        if let Some(before) = filter.before {
            qb.push(" AND created_at < ").push_bind(ms(before));
        }
        if let Some(after) = filter.after {
            qb.push(" AND created_at > ").push_bind(ms(after));
        }
        push_in(&mut qb, "event_type", &filter.event_types);
        if let Some(channel) = &filter.channel {
            qb.push(" AND EXISTS (SELECT 1 FROM json_each(messages.channels) WHERE value = ")
                .push_bind(channel.clone())
                .push(")");
        }
        push_page(&mut qb, "id", page);
        collect(qb.build_query_as::<MessageRow>().fetch_all(&self.reader).await?)
    }

    async fn claim_due(&self, now: DateTime<Utc>, limit: u32, lease: Duration) -> StoreResult<Vec<DeliveryJob>> {
        // A claim need not survive a crash: every lease is released at the
        // next start anyway. So it commits without waiting for the disk,
        // sparing one fsync per claim; the next durable commit syncs it too.
        let mut conn = self.writer.acquire().await?;
        sqlx::query("PRAGMA synchronous = NORMAL").execute(&mut *conn).await?;
        let claimed = claim_on(&mut conn, now, limit, lease, &self.sealer).await;
        if sqlx::query("PRAGMA synchronous = FULL")
            .execute(&mut *conn)
            .await
            .is_err()
        {
            // Never hand a connection that skips syncs to the next writer.
            conn.close_on_drop();
        }
        claimed
    }

    async fn defer(&self, job: &DeliveryJob, until: DateTime<Utc>) -> StoreResult<()> {
        self.batcher
            .defer(Deferral {
                delivery_id: job.delivery_id.clone(),
                lease_token: job.lease_token,
                until: ms(until),
            })
            .await
    }

    async fn complete_attempt(&self, job: &DeliveryJob, attempt: &Attempt, next: NextStep) -> StoreResult<()> {
        self.batcher
            .complete(Completion {
                delivery_id: job.delivery_id.clone(),
                app_id: job.app_id.clone(),
                endpoint_id: job.endpoint.id.clone(),
                lease_token: job.lease_token,
                attempt: attempt.clone(),
                next,
            })
            .await
    }

    async fn hold_delivery(&self, job: &DeliveryJob, now: DateTime<Utc>) -> StoreResult<bool> {
        let mut tx = self.writer.begin().await?;
        let disabled: Option<bool> = sqlx::query_scalar("SELECT disabled FROM endpoints WHERE id = ?")
            .bind(job.endpoint.id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let held = disabled.unwrap_or(true);
        let (status, due) = if held { (4, None) } else { (1, Some(ms(now))) };
        sqlx::query(
            "UPDATE deliveries SET status = ?, next_attempt_at = ?, lease_token = NULL, updated_at = ? \
             WHERE id = ? AND lease_token = ?",
        )
        .bind(status)
        .bind(due)
        .bind(ms(now))
        .bind(job.delivery_id.as_str())
        .bind(job.lease_token)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(held)
    }

    async fn next_due_at(&self) -> StoreResult<Option<DateTime<Utc>>> {
        let next: Option<i64> =
            sqlx::query_scalar("SELECT MIN(next_attempt_at) FROM deliveries WHERE status IN (1, 3)")
                .fetch_one(&self.reader)
                .await?;
        Ok(next.map(from_ms))
    }

    async fn gauges(&self) -> StoreResult<Gauges> {
        let queue: (i64, Option<i64>) = sqlx::query_as(QUEUE_GAUGES).fetch_one(&self.reader).await?;
        let endpoints: (i64, i64, i64) = sqlx::query_as(ENDPOINT_GAUGES).fetch_one(&self.reader).await?;
        Ok(gauges_from(queue, endpoints))
    }

    fn is_shared(&self) -> bool {
        false
    }

    async fn release_orphaned_leases(&self, now: DateTime<Utc>) -> StoreResult<u64> {
        let done =
            sqlx::query("UPDATE deliveries SET status = 1, next_attempt_at = ?, lease_token = NULL WHERE status = 3")
                .bind(ms(now))
                .execute(&self.writer)
                .await?;
        Ok(done.rows_affected())
    }

    async fn resend(&self, msg: &Message, endpoint: &Endpoint, now: DateTime<Utc>) -> StoreResult<()> {
        let mut tx = self.writer.begin().await?;
        let fifo = lock_queue(&mut tx, endpoint.id.as_str()).await?;
        insert_delivery(
            &mut tx,
            msg,
            endpoint.id.as_str(),
            TriggerType::Manual,
            ms(now),
            DeliveryStatus::Pending,
            !fifo.is_empty(),
        )
        .await?;
        promote_heads(&mut tx, &fifo, ms(now)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn resend_many(&self, endpoint: &Endpoint, msgs: &[MessageId], now: DateTime<Utc>) -> StoreResult<u64> {
        let mut tx = self.writer.begin().await?;
        let fifo = lock_queue(&mut tx, endpoint.id.as_str()).await?;
        // Behind a FIFO endpoint's queue, in the order given.
        let due = fifo.is_empty().then_some(ms(now));
        let mut scheduled = 0;
        for msg in msgs {
            let done = sqlx::query(
                "INSERT INTO deliveries (id, msg_id, endpoint_id, app_id, status, trigger_type, attempts, \
                 next_attempt_at, created_at, updated_at) SELECT ?, id, ?, app_id, 1, 1, 0, ?, ?, ? FROM messages \
                 WHERE id = ? AND app_id = ? AND payload_removed_at IS NULL",
            )
            .bind(DeliveryId::generate().as_str())
            .bind(endpoint.id.as_str())
            .bind(due)
            .bind(ms(now))
            .bind(ms(now))
            .bind(msg.as_str())
            .bind(endpoint.app_id.as_str())
            .execute(&mut *tx)
            .await?;
            scheduled += done.rows_affected();
        }
        promote_heads(&mut tx, &fifo, ms(now)).await?;
        tx.commit().await?;
        Ok(scheduled)
    }

    async fn recovery_batch(
        &self,
        endpoint: &Endpoint,
        kind: Recovery,
        window: &Window,
        after: Option<&MessageId>,
        limit: u32,
    ) -> StoreResult<Vec<Message>> {
        let mut qb = recovery_query(endpoint, kind, window, after, limit);
        collect(qb.build_query_as::<MessageRow>().fetch_all(&self.reader).await?)
    }

    async fn endpoint_activity(
        &self,
        endpoints: &[EndpointId],
        since: DateTime<Utc>,
        period: std::time::Duration,
    ) -> StoreResult<Vec<ActivityBucket>> {
        let Some(mut qb) = activity_query(endpoints, since, period) else {
            return Ok(Vec::new());
        };
        Ok(activity_rows(qb.build_query_as().fetch_all(&self.reader).await?))
    }

    async fn waiting_behind_head(&self, endpoint: &EndpointId) -> StoreResult<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM deliveries WHERE endpoint_id = ? AND status IN (1, 3) AND next_attempt_at IS NULL",
        )
        .bind(endpoint.as_str())
        .fetch_one(&self.reader)
        .await?)
    }

    async fn endpoint_stats(&self, endpoint: &EndpointId, window: &Window) -> StoreResult<DeliveryCounts> {
        let mut qb = stats_query(endpoint, window);
        let rows: Vec<(i64, i64)> = qb.build_query_as().fetch_all(&self.reader).await?;
        Ok(count_by_status(rows))
    }

    async fn remove_expired_payloads(&self, now: DateTime<Utc>, limit: u32) -> StoreResult<u64> {
        let mut tx = self.writer.begin().await?;
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM messages m WHERE payload_removed_at IS NULL AND expires_at <= ? \
             AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.msg_id = m.id AND d.status IN (1, 3, 4)) LIMIT ?",
        )
        .bind(ms(now))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        for id in &ids {
            clear_payload(&mut tx, id, ms(now)).await?;
        }
        tx.commit().await?;
        Ok(ids.len() as u64)
    }

    async fn remove_payload(&self, app: &AppId, msg: &MessageId, now: DateTime<Utc>) -> StoreResult<bool> {
        let mut tx = self.writer.begin().await?;
        let found: Option<String> = sqlx::query_scalar("SELECT id FROM messages WHERE id = ? AND app_id = ?")
            .bind(msg.as_str())
            .bind(app.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if found.is_none() {
            return Ok(false);
        }
        // A FIFO head dropped here lets the next one go.
        let endpoints: std::collections::BTreeSet<String> =
            sqlx::query_scalar("SELECT endpoint_id FROM deliveries WHERE msg_id = ? AND status IN (1, 4)")
                .bind(msg.as_str())
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .collect();
        let fifo = lock_fifo(&mut tx, &endpoints).await?;
        clear_payload(&mut tx, msg.as_str(), ms(now)).await?;
        sqlx::query(
            "UPDATE deliveries SET status = 5, next_attempt_at = NULL, lease_token = NULL, updated_at = ? \
             WHERE msg_id = ? AND status IN (1, 4)",
        )
        .bind(ms(now))
        .bind(msg.as_str())
        .execute(&mut *tx)
        .await?;
        promote_heads(&mut tx, &fifo, ms(now)).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn remove_payload_if_delivered(&self, msg: &MessageId, now: DateTime<Utc>) -> StoreResult<()> {
        let mut tx = self.writer.begin().await?;
        let unfinished: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE msg_id = ? AND status <> 0")
            .bind(msg.as_str())
            .fetch_one(&mut *tx)
            .await?;
        if unfinished == 0 {
            clear_payload(&mut tx, msg.as_str(), ms(now)).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn remove_attempt_content(&self, app: &AppId, attempt: &AttemptId) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE attempts SET request_body = '', response = '', request_headers = NULL, response_headers = NULL \
             WHERE id = ? AND app_id = ?",
        )
        .bind(attempt.as_str())
        .bind(app.as_str())
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn remove_idempotency_keys(&self, oldest: DateTime<Utc>) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < ?")
            .bind(ms(oldest))
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected())
    }

    async fn create_task(&self, task: &BackgroundTask) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO background_tasks (id, task, status, app_id, endpoint_id, params, data, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(task.id.as_str())
        .bind(task.kind.name())
        .bind(task.status.name())
        .bind(task.app_id.as_str())
        .bind(task.endpoint_id.as_ref().map(|e| e.as_str().to_owned()))
        .bind(to_json(&task.params))
        .bind(to_json(&task.data))
        .bind(ms(task.created_at))
        .bind(ms(task.updated_at))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn update_task(&self, task: &BackgroundTask) -> StoreResult<()> {
        sqlx::query("UPDATE background_tasks SET status = ?, data = ?, updated_at = ? WHERE id = ?")
            .bind(task.status.name())
            .bind(to_json(&task.data))
            .bind(ms(task.updated_at))
            .bind(task.id.as_str())
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn get_task(&self, id: &TaskId) -> StoreResult<Option<BackgroundTask>> {
        let row: Option<TaskRow> = sqlx::query_as("SELECT * FROM background_tasks WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(&self.reader)
            .await?;
        row.map(BackgroundTask::try_from).transpose()
    }

    async fn list_tasks(&self, page: &Page) -> StoreResult<Vec<BackgroundTask>> {
        let mut qb = QueryBuilder::new("SELECT * FROM background_tasks WHERE 1 = 1");
        push_page(&mut qb, "id", page);
        collect(qb.build_query_as::<TaskRow>().fetch_all(&self.reader).await?)
    }

    async fn take_over_tasks(
        &self,
        _stale_before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<BackgroundTask>> {
        // The file lock proves no other process runs: every running task is orphaned.
        let rows: Vec<TaskRow> =
            sqlx::query_as("UPDATE background_tasks SET updated_at = ? WHERE status = 'running' RETURNING *")
                .bind(ms(now))
                .fetch_all(&self.writer)
                .await?;
        collect(rows)
    }

    async fn list_attempts(&self, app: &AppId, filter: &AttemptFilter, page: &Page) -> StoreResult<Vec<Attempt>> {
        let mut qb = QueryBuilder::new(format!(
            "SELECT {ATTEMPT_COLUMNS} FROM attempts a JOIN messages m ON m.id = a.msg_id WHERE a.app_id = "
        ));
        qb.push_bind(app.as_str().to_owned());
        push_attempt_filter(&mut qb, filter);
        if let Some(channel) = &filter.channel {
            qb.push(" AND EXISTS (SELECT 1 FROM json_each(m.channels) WHERE value = ")
                .push_bind(channel.clone())
                .push(")");
        }
        push_page(&mut qb, "a.id", page);
        collect(qb.build_query_as::<AttemptRow>().fetch_all(&self.reader).await?)
    }

    async fn get_attempt(&self, app: &AppId, id: &AttemptId) -> StoreResult<Option<Attempt>> {
        let sql = format!(
            "SELECT {ATTEMPT_COLUMNS} FROM attempts a JOIN messages m ON m.id = a.msg_id WHERE a.app_id = ? AND a.id = ?"
        );
        let row: Option<AttemptRow> = sqlx::query_as(&sql)
            .bind(app.as_str())
            .bind(id.as_str())
            .fetch_optional(&self.reader)
            .await?;
        row.map(Attempt::try_from).transpose()
    }

    async fn create_token(&self, token: &ApiToken) -> StoreResult<()> {
        insert_token_query(token).build().execute(&self.writer).await?;
        Ok(())
    }

    async fn find_token(&self, token_hash: &str) -> StoreResult<Option<ApiToken>> {
        let mut qb = tokens_query(&Page::first(1), Some(("token_hash", token_hash)));
        let row: Option<TokenRow> = qb.build_query_as().fetch_optional(&self.reader).await?;
        row.map(ApiToken::try_from).transpose()
    }

    async fn get_token(&self, id: &TokenId) -> StoreResult<Option<ApiToken>> {
        let mut qb = tokens_query(&Page::first(1), Some(("id", id.as_str())));
        let row: Option<TokenRow> = qb.build_query_as().fetch_optional(&self.reader).await?;
        row.map(ApiToken::try_from).transpose()
    }

    async fn list_tokens(&self, page: &Page) -> StoreResult<Vec<ApiToken>> {
        let mut qb = tokens_query(page, None);
        collect(qb.build_query_as::<TokenRow>().fetch_all(&self.reader).await?)
    }

    async fn revoke_token(&self, id: &TokenId, now: DateTime<Utc>) -> StoreResult<bool> {
        let done = revoke_token_query(id, now).build().execute(&self.writer).await?;
        Ok(done.rows_affected() > 0)
    }

    async fn idempotency_begin(&self, key: &str, now: DateTime<Utc>, ttl: Duration) -> StoreResult<IdempotencyState> {
        let oldest = ms(now) - i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
        let mut tx = self.writer.begin().await?;
        sqlx::query("DELETE FROM idempotency_keys WHERE key = ? AND created_at < ?")
            .bind(key)
            .bind(oldest)
            .execute(&mut *tx)
            .await?;
        let existing: Option<(Option<i64>, Option<Vec<u8>>)> =
            sqlx::query_as("SELECT status_code, body FROM idempotency_keys WHERE key = ?")
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?;
        let state = match existing {
            None => {
                sqlx::query("INSERT INTO idempotency_keys (key, created_at) VALUES (?, ?)")
                    .bind(key)
                    .bind(ms(now))
                    .execute(&mut *tx)
                    .await?;
                IdempotencyState::New
            }
            found => idempotency_state(found),
        };
        tx.commit().await?;
        Ok(state)
    }

    async fn idempotency_finish(&self, key: &str, status: u16, body: &[u8]) -> StoreResult<()> {
        sqlx::query("UPDATE idempotency_keys SET status_code = ?, body = ? WHERE key = ?")
            .bind(i64::from(status))
            .bind(body)
            .bind(key)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn idempotency_abandon(&self, key: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM idempotency_keys WHERE key = ? AND status_code IS NULL")
            .bind(key)
            .execute(&self.writer)
            .await?;
        Ok(())
    }
}

/// Removes a message's payload and every body rendered from it.
async fn clear_payload(tx: &mut sqlx::Transaction<'_, Sqlite>, msg: &str, now: i64) -> StoreResult<()> {
    sqlx::query("UPDATE messages SET payload = '{}', payload_removed_at = ? WHERE id = ?")
        .bind(now)
        .bind(msg)
        .execute(&mut **tx)
        .await?;
    sqlx::query("UPDATE attempts SET request_body = '' WHERE msg_id = ? AND request_body IS NOT NULL")
        .bind(msg)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn insert_event_type(pool: &SqlitePool, et: &EventType, replace: bool) -> Result<(), sqlx::Error> {
    let conflict = if replace {
        " ON CONFLICT (name) DO UPDATE SET description = excluded.description, archived = excluded.archived, \
         deprecated = excluded.deprecated, schemas = excluded.schemas, group_name = excluded.group_name, \
         feature_flags = excluded.feature_flags, updated_at = excluded.updated_at"
    } else {
        ""
    };
    sqlx::query(&format!(
        "INSERT INTO event_types (name, description, archived, deprecated, schemas, group_name, feature_flags, \
         created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?){conflict}"
    ))
    .bind(&et.name)
    .bind(&et.description)
    .bind(et.archived)
    .bind(et.deprecated)
    .bind(opt_json(&et.schemas))
    .bind(&et.group_name)
    .bind(opt_json(&et.feature_flags))
    .bind(ms(et.created_at))
    .bind(ms(et.updated_at))
    .execute(pool)
    .await?;
    Ok(())
}

async fn claim_on(
    conn: &mut sqlx::SqliteConnection,
    now: DateTime<Utc>,
    limit: u32,
    lease: Duration,
    sealer: &Sealer,
) -> StoreResult<Vec<DeliveryJob>> {
    use sqlx::Connection;
    let lease_until = ms(now) + i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2);
    let token: i64 = rand::thread_rng().gen_range(1..i64::MAX);
    let mut tx = conn.begin().await?;
    // RETURNING: the claimed rows are then read by id, not found by their token.
    let claimed: Vec<String> = sqlx::query_scalar(
        "UPDATE deliveries SET status = 3, next_attempt_at = ?1, lease_token = ?2, updated_at = ?3 \
         WHERE id IN (SELECT id FROM deliveries WHERE status IN (1, 3) AND next_attempt_at <= ?3 \
                      ORDER BY next_attempt_at LIMIT ?4) RETURNING id",
    )
    .bind(lease_until)
    .bind(token)
    .bind(ms(now))
    .bind(i64::from(limit))
    .fetch_all(&mut *tx)
    .await?;
    if claimed.is_empty() {
        tx.commit().await?;
        return Ok(Vec::new());
    }
    let rows: Vec<JobRow> = claimed_jobs_query(&claimed)
        .build_query_as()
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    rows.into_iter().map(|r| r.into_job(sealer)).collect()
}

/// Nothing to do after a batch: this process is the only one to wake.
pub(super) async fn after_batch(_tx: &mut sqlx::Transaction<'_, Sqlite>, _created: usize) -> StoreResult<()> {
    Ok(())
}
