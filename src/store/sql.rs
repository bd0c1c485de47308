//! The one SQL store: every statement of the store contract, written once
//! over a [`Dialect`]. A backend adds only how it opens its database.

use std::collections::BTreeSet;
use std::fs::File;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::pool::PoolConnection;
use sqlx::{ColumnIndex, FromRow, Pool, QueryBuilder};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::batch::{Batcher, Completion, Deferral};
use super::dialect::{
    Column, Connection, Dialect, QUEUED, RowLock, RowOf, RowsAffected, UNFINISHED, UNSENT, execute, rows_as, state,
};
use super::queue::Queue;
use super::rows::*;
use super::*;
use crate::domain::ids::DeliveryId;
use crate::domain::status::{DeliveryOrder, DeliveryStatus, TriggerType};

/// The store over one SQL backend.
pub struct SqlStore<D: Dialect> {
    writer: Pool<D::Db>,
    /// Where reads go: beside the writer on SQLite, the same pool elsewhere.
    reader: Pool<D::Db>,
    /// Publishes, attempt results and deferrals, committed in groups.
    batcher: Batcher,
    sealer: Sealer,
    /// Held until the store closes: a second process on a SQLite file is refused.
    lock: std::sync::Mutex<Option<File>>,
}

impl<D: Dialect> SqlStore<D> {
    /// A store writing through `writer` (migrated, and committing groups
    /// through `batcher`) and reading through `reader`.
    pub(super) fn new(
        writer: Pool<D::Db>,
        reader: Pool<D::Db>,
        batcher: Batcher,
        sealer: Sealer,
        lock: Option<File>,
    ) -> Self {
        Self {
            writer,
            reader,
            batcher,
            sealer,
            lock: std::sync::Mutex::new(lock),
        }
    }

    async fn read(&self) -> StoreResult<PoolConnection<D::Db>> {
        Ok(self.reader.acquire().await?)
    }

    async fn write(&self) -> StoreResult<PoolConnection<D::Db>> {
        Ok(self.writer.acquire().await?)
    }
}

/// Keeps the rows whose JSON array in `column` holds `channel`, if one is given.
fn push_channel<D>(qb: &mut QueryBuilder<'_, D::Db>, column: &str, channel: Option<&String>)
where
    D: Dialect,
    String: Column<D::Db>,
{
    if let Some(channel) = channel {
        qb.push(" AND ")
            .push(D::json_array_holds(column))
            .push_bind(channel.clone())
            .push(")");
    }
}

/// Up to `limit` messages created before `before` (of `app`, if given)
/// with no delivery left to make, oldest first. Both the id and the
/// creation time must be old: the id keeps the scan on the key's index, the
/// time is the truth when the clock is not the system's.
fn old_messages_query<'a, D>(app: Option<&AppId>, before: DateTime<Utc>, limit: u32) -> QueryBuilder<'a, D::Db>
where
    D: Dialect,
    String: Column<D::Db>,
    i64: Column<D::Db>,
{
    let mut qb = QueryBuilder::new("SELECT m.id FROM messages m WHERE m.id < ");
    qb.push_bind(MessageId::lowest_at(before))
        .push(" AND m.created_at < ")
        .push_bind(ms(before));
    if let Some(app) = app {
        qb.push(" AND m.app_id = ").push_bind(app.as_str().to_owned());
    }
    qb.push(format_args!(
        " AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.msg_id = m.id AND d.status IN ({UNFINISHED})) \
         ORDER BY m.id LIMIT "
    ))
    .push_bind(i64::from(limit))
    // Claim: nodes sweeping at once share the work. A resend holding the
    // message (for share) keeps it; one coming after waits, then finds none.
    .push(D::lock(RowLock::Claim));
    qb
}

/// The row `sql` finds by `key` (bound as `$1`), as a model.
async fn find<D, R, T>(conn: &mut Connection<D>, sql: &str, key: &str) -> StoreResult<Option<T>>
where
    D: Dialect,
    String: Column<D::Db>,
    R: for<'r> FromRow<'r, RowOf<D::Db>> + Send + Unpin,
    T: TryFrom<R, Error = StoreError>,
{
    let row: Option<R> = sqlx::query_as(sql)
        .bind(key.to_owned())
        .fetch_optional(D::exec(conn))
        .await?;
    row.map(T::try_from).transpose()
}

#[async_trait]
impl<D: Dialect> Store for SqlStore<D>
where
    i64: Column<D::Db>,
    String: Column<D::Db>,
    bool: Column<D::Db>,
    Vec<u8>: Column<D::Db>,
    Option<i64>: Column<D::Db>,
    Option<String>: Column<D::Db>,
    Option<bool>: Column<D::Db>,
    usize: ColumnIndex<RowOf<D::Db>>,
    for<'s> &'s str: ColumnIndex<RowOf<D::Db>>,
{
    async fn get_setting(&self, name: &str) -> StoreResult<Option<String>> {
        Ok(sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
            .bind(name.to_owned())
            .fetch_optional(D::exec(&mut *self.read().await?))
            .await?)
    }

    async fn put_setting_if_absent(&self, name: &str, value: &str) -> StoreResult<bool> {
        let done = sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(name.to_owned())
            .bind(value.to_owned())
            .execute(D::exec(&mut *self.write().await?))
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn replace_setting(&self, name: &str, old: &str, new: &str) -> StoreResult<bool> {
        let mut qb = replace_setting_query(name, old, new);
        let done = execute::<D>(&mut qb, &mut *self.write().await?).await?;
        Ok(done == 1)
    }

    async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
        let mut lock = self.lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        drop(lock.take());
    }

    fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    async fn seal_plain_secrets(&self) -> StoreResult<u64> {
        let rows: Vec<PlainSecretRow> = rows_as::<D, _>(&mut plain_secrets_query())
            .fetch_all(D::exec(&mut *self.read().await?))
            .await?;
        let mut sealed = 0;
        for row in rows {
            let mut qb = reseal_query(&self.sealer, &row);
            sealed += execute::<D>(&mut qb, &mut *self.write().await?).await?;
        }
        Ok(sealed)
    }

    async fn secrets_by_key(&self) -> StoreResult<Vec<(SealedBy, u64)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(SECRETS_BY_KEY)
            .fetch_all(D::exec(&mut *self.read().await?))
            .await?;
        Ok(rows
            .into_iter()
            .map(|(label, n)| (sealed_by_label(label), u64::try_from(n).unwrap_or(0)))
            .collect())
    }

    async fn reseal_secrets(&self, limit: u32) -> StoreResult<u64> {
        let prefix = self.sealer.sealing_prefix();
        let rows: Vec<PlainSecretRow> = rows_as::<D, _>(&mut resealable_query(&prefix, limit))
            .fetch_all(D::exec(&mut *self.read().await?))
            .await?;
        let mut changed = 0;
        for row in rows {
            let mut qb = rotate_query(&self.sealer, &row)?;
            changed += execute::<D>(&mut qb, &mut *self.write().await?).await?;
        }
        Ok(changed)
    }

    async fn record_key_holder(&self, holder: &KeyHolder) -> StoreResult<()> {
        let mut conn = self.write().await?;
        sqlx::query(
            "INSERT INTO key_holders (node, key_ids, sealing, seen_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (node) DO UPDATE SET key_ids = $2, sealing = $3, seen_at = $4",
        )
        .bind(holder.node.clone())
        .bind(holder.key_ids.join(","))
        .bind(holder.sealing.clone())
        .bind(ms(holder.seen_at))
        .execute(D::exec(&mut *conn))
        .await?;
        sqlx::query("DELETE FROM key_holders WHERE seen_at < $1")
            .bind(ms(holder.seen_at - chrono::Duration::days(1)))
            .execute(D::exec(&mut *conn))
            .await?;
        Ok(())
    }

    async fn key_holders(&self) -> StoreResult<Vec<KeyHolder>> {
        let rows: Vec<(String, String, String, i64)> =
            sqlx::query_as("SELECT node, key_ids, sealing, seen_at FROM key_holders ORDER BY seen_at DESC, node")
                .fetch_all(D::exec(&mut *self.read().await?))
                .await?;
        Ok(rows
            .into_iter()
            .map(|(node, key_ids, sealing, seen_at)| KeyHolder {
                node,
                key_ids: key_ids
                    .split(',')
                    .filter(|k| !k.is_empty())
                    .map(str::to_owned)
                    .collect(),
                sealing,
                seen_at: from_ms(seen_at),
            })
            .collect())
    }

    async fn create_app(&self, app: &Application) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO applications (id, uid, name, rate_limit, metadata, created_at, updated_at, profile, \
             validate_payloads, history_retention_days) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(app.id.as_str().to_owned())
        .bind(app.uid.clone())
        .bind(app.name.clone())
        .bind(app.rate_limit)
        .bind(to_json(&app.metadata))
        .bind(ms(app.created_at))
        .bind(ms(app.updated_at))
        .bind(app.profile.clone())
        .bind(app.validate_payloads)
        .bind(app.history_retention_days)
        .execute(D::exec(&mut *self.write().await?))
        .await
        .map_err(|e| uid_conflict(e, "an application with this uid already exists"))?;
        Ok(())
    }

    async fn get_app(&self, id_or_uid: &str) -> StoreResult<Option<Application>> {
        let sql = "SELECT * FROM applications WHERE id = $1 OR uid = $1";
        find::<D, AppRow, _>(&mut *self.read().await?, sql, id_or_uid).await
    }

    async fn list_apps(&self, page: &Page, search: Option<&str>) -> StoreResult<Vec<Application>> {
        let mut qb = apps_query(page, search);
        collect(
            rows_as::<D, AppRow>(&mut qb)
                .fetch_all(D::exec(&mut *self.read().await?))
                .await?,
        )
    }

    async fn update_app(&self, app: &Application) -> StoreResult<()> {
        sqlx::query(
            "UPDATE applications SET uid = $1, name = $2, rate_limit = $3, metadata = $4, updated_at = $5, \
             profile = $6, validate_payloads = $7, history_retention_days = $8 WHERE id = $9",
        )
        .bind(app.uid.clone())
        .bind(app.name.clone())
        .bind(app.rate_limit)
        .bind(to_json(&app.metadata))
        .bind(ms(app.updated_at))
        .bind(app.profile.clone())
        .bind(app.validate_payloads)
        .bind(app.history_retention_days)
        .bind(app.id.as_str().to_owned())
        .execute(D::exec(&mut *self.write().await?))
        .await
        .map_err(|e| uid_conflict(e, "an application with this uid already exists"))?;
        Ok(())
    }

    async fn profile_names_in_use(&self) -> StoreResult<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT profile FROM applications WHERE profile IS NOT NULL \
             UNION SELECT profile FROM endpoints WHERE profile IS NOT NULL",
        )
        .fetch_all(D::exec(&mut *self.read().await?))
        .await?)
    }

    async fn delete_app(&self, id: &AppId) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM applications WHERE id = $1")
            .bind(id.as_str().to_owned())
            .execute(D::exec(&mut *self.write().await?))
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn create_endpoint_noting(&self, ep: &Endpoint, notices: &Notices) -> StoreResult<()> {
        let insert = sqlx::query(
            "INSERT INTO endpoints (uid, url, description, filter_types, channels, disabled, \
             rate_limit, metadata, headers, secret, previous_secret, previous_secret_expires_at, profile, verify_token, \
             format, template, disabled_reason, reverify_at, owner_id, while_disabled, tls_verify, ordering, updated_at, id, \
             app_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
             $18, $19, $20, $21, $22, $23, $24, $25, $26)",
        );
        let mut tx = self.writer.begin().await?;
        bind_endpoint(insert, ep, &self.sealer)
            .bind(ms(ep.created_at))
            .execute(D::exec(&mut *tx))
            .await
            .map_err(|e| uid_conflict(e, "an endpoint with this uid already exists in this application"))?;
        Queue::<D>::note(&mut tx, notices).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_endpoint(&self, app: &AppId, id_or_uid: &str) -> StoreResult<Option<Endpoint>> {
        let row: Option<EndpointRow> =
            sqlx::query_as("SELECT * FROM endpoints WHERE app_id = $1 AND (id = $2 OR uid = $2)")
                .bind(app.as_str().to_owned())
                .bind(id_or_uid.to_owned())
                .fetch_optional(D::exec(&mut *self.read().await?))
                .await?;
        row.map(|r| r.into_endpoint(&self.sealer)).transpose()
    }

    async fn list_endpoints(&self, app: &AppId, page: &Page, owner: Option<&str>) -> StoreResult<Vec<Endpoint>> {
        let mut qb = endpoints_query(app, page, owner);
        let rows: Vec<EndpointRow> = rows_as::<D, _>(&mut qb)
            .fetch_all(D::exec(&mut *self.read().await?))
            .await?;
        rows.into_iter().map(|r| r.into_endpoint(&self.sealer)).collect()
    }

    async fn update_endpoint_noting(&self, ep: &Endpoint, notices: &Notices) -> StoreResult<()> {
        let update = sqlx::query(
            "UPDATE endpoints SET uid = $1, url = $2, description = $3, filter_types = $4, channels = $5, \
             disabled = $6, rate_limit = $7, metadata = $8, headers = $9, secret = $10, previous_secret = $11, \
             previous_secret_expires_at = $12, profile = $13, verify_token = $14, format = $15, template = $16, \
             disabled_reason = $17, reverify_at = $18, owner_id = $19, while_disabled = $20, tls_verify = $21, ordering = $22, \
             updated_at = $23 WHERE id = $24 AND app_id = $25",
        );
        let mut tx = self.writer.begin().await?;
        bind_endpoint(update, ep, &self.sealer)
            .execute(D::exec(&mut *tx))
            .await
            .map_err(|e| uid_conflict(e, "an endpoint with this uid already exists in this application"))?;
        // The row is locked by the update: no batch moves this queue meanwhile.
        let now = ms(ep.updated_at);
        let fifo = ep.ordering == DeliveryOrder::Fifo;
        let mut due_now = 0;
        if !ep.disabled {
            // Held deliveries are released; a FIFO endpoint's wait in its queue again.
            let sql = format!(
                "UPDATE deliveries SET status = {}, next_attempt_at = $1, updated_at = $2 \
                 WHERE endpoint_id = $3 AND status = {}",
                state(DeliveryStatus::Pending),
                state(DeliveryStatus::Held),
            );
            let released = sqlx::query(&sql)
                .bind((!fifo).then_some(now))
                .bind(now)
                .bind(ep.id.as_str().to_owned())
                .execute(D::exec(&mut *tx))
                .await?;
            due_now += released.rows_affected();
        }
        if fifo {
            due_now += Queue::<D>::promote_heads(&mut tx, &BTreeSet::from([ep.id.to_string()]), now).await?;
        } else {
            // A queue left by FIFO ordering goes out at once.
            let sql = format!(
                "UPDATE deliveries SET next_attempt_at = $1 WHERE endpoint_id = $2 AND status IN ({QUEUED}) \
                 AND next_attempt_at IS NULL"
            );
            let freed = sqlx::query(&sql)
                .bind(now)
                .bind(ep.id.as_str().to_owned())
                .execute(D::exec(&mut *tx))
                .await?;
            due_now += freed.rows_affected();
        }
        if due_now > 0 {
            D::wake_others(&mut tx).await?;
        }
        Queue::<D>::note(&mut tx, notices).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_endpoint_noting(&self, app: &AppId, id: &EndpointId, notices: &Notices) -> StoreResult<bool> {
        let mut tx = self.writer.begin().await?;
        let done = sqlx::query("DELETE FROM endpoints WHERE id = $1 AND app_id = $2")
            .bind(id.as_str().to_owned())
            .bind(app.as_str().to_owned())
            .execute(D::exec(&mut *tx))
            .await?;
        let deleted = done.rows_affected() == 1;
        if deleted {
            Queue::<D>::note(&mut tx, notices).await?;
        }
        tx.commit().await?;
        Ok(deleted)
    }

    async fn set_endpoint_failing(&self, id: &EndpointId, since: Option<DateTime<Utc>>) -> StoreResult<()> {
        let sql = match since {
            Some(_) => "UPDATE endpoints SET failing_since = COALESCE(failing_since, $1) WHERE id = $2",
            None => "UPDATE endpoints SET failing_since = $1 WHERE id = $2",
        };
        sqlx::query(sql)
            .bind(since.map(ms))
            .bind(id.as_str().to_owned())
            .execute(D::exec(&mut *self.write().await?))
            .await?;
        Ok(())
    }

    async fn disable_endpoint_noting(
        &self,
        id: &EndpointId,
        reason: &str,
        now: DateTime<Utc>,
        notices: &Notices,
    ) -> StoreResult<bool> {
        let mut tx = self.writer.begin().await?;
        let done = sqlx::query(
            "UPDATE endpoints SET disabled = TRUE, disabled_reason = $1, updated_at = $2 WHERE id = $3 \
             AND disabled = FALSE",
        )
        .bind(reason.to_owned())
        .bind(ms(now))
        .bind(id.as_str().to_owned())
        .execute(D::exec(&mut *tx))
        .await?;
        let disabled = done.rows_affected() == 1;
        if disabled {
            Queue::<D>::note(&mut tx, notices).await?;
        }
        tx.commit().await?;
        Ok(disabled)
    }

    async fn endpoints_to_reverify(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<(Endpoint, Option<String>)>> {
        let sql = format!(
            "SELECT {ENDPOINT_COLUMNS}, a.profile AS app_profile FROM endpoints e \
             JOIN applications a ON a.id = e.app_id \
             WHERE e.disabled = FALSE AND e.reverify_at <= $1 ORDER BY e.reverify_at LIMIT $2"
        );
        let rows: Vec<ProfiledEndpointRow> = sqlx::query_as(&sql)
            .bind(ms(now))
            .bind(i64::from(limit))
            .fetch_all(D::exec(&mut *self.read().await?))
            .await?;
        rows.into_iter().map(|r| r.into_pair(&self.sealer)).collect()
    }

    async fn claim_reverify(
        &self,
        id: &EndpointId,
        seen: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
    ) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE endpoints SET reverify_at = $1 WHERE id = $2 AND reverify_at = $3")
            .bind(next.map(ms))
            .bind(id.as_str().to_owned())
            .bind(ms(seen))
            .execute(D::exec(&mut *self.write().await?))
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn create_event_type(&self, et: &EventType) -> StoreResult<()> {
        let mut qb = insert_event_type_query(et, false);
        execute::<D>(&mut qb, &mut *self.write().await?)
            .await
            .map_err(|e| uid_conflict(e, "an event type with this name already exists"))?;
        Ok(())
    }

    async fn get_event_type(&self, name: &str) -> StoreResult<Option<EventType>> {
        let sql = "SELECT * FROM event_types WHERE name = $1";
        find::<D, EventTypeRow, _>(&mut *self.read().await?, sql, name).await
    }

    async fn list_event_types(&self, page: &Page, include_archived: bool) -> StoreResult<Vec<EventType>> {
        let mut qb = QueryBuilder::new("SELECT * FROM event_types WHERE TRUE");
        if !include_archived {
            qb.push(" AND NOT archived");
        }
        push_page(&mut qb, "name", page);
        collect(
            rows_as::<D, EventTypeRow>(&mut qb)
                .fetch_all(D::exec(&mut *self.read().await?))
                .await?,
        )
    }

    async fn upsert_event_type(&self, et: &EventType) -> StoreResult<()> {
        let mut qb = insert_event_type_query(et, true);
        execute::<D>(&mut qb, &mut *self.write().await?).await?;
        Ok(())
    }

    async fn delete_event_type(&self, name: &str) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM event_types WHERE name = $1")
            .bind(name.to_owned())
            .execute(D::exec(&mut *self.write().await?))
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn publish(&self, msg: &Message) -> StoreResult<usize> {
        self.batcher.publish(msg.clone()).await
    }

    fn hand_off_to(&self, handoff: Option<super::handoff::HandOff>) {
        self.batcher.hand_off_to(handoff);
    }

    async fn publish_to(&self, msg: &Message, endpoint: &EndpointId) -> StoreResult<()> {
        let mut tx = self.writer.begin().await?;
        let fifo = Queue::<D>::lock_queue(&mut tx, endpoint.as_str()).await?;
        Queue::<D>::insert_message(&mut tx, msg).await?;
        let now = ms(msg.created_at);
        let queued = !fifo.is_empty();
        let pending = DeliveryStatus::Pending;
        Queue::<D>::insert_delivery(
            &mut tx,
            msg,
            endpoint.as_str(),
            TriggerType::Manual,
            now,
            pending,
            queued,
        )
        .await?;
        Queue::<D>::promote_heads(&mut tx, &fifo, now).await?;
        D::wake_others(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_message(&self, app: &AppId, id_or_event_id: &str) -> StoreResult<Option<Message>> {
        let row: Option<MessageRow> =
            sqlx::query_as("SELECT * FROM messages WHERE app_id = $1 AND (id = $2 OR event_id = $2)")
                .bind(app.as_str().to_owned())
                .bind(id_or_event_id.to_owned())
                .fetch_optional(D::exec(&mut *self.read().await?))
                .await?;
        row.map(Message::try_from).transpose()
    }

    async fn find_messages(&self, id_or_event_id: &str, limit: u32) -> StoreResult<Vec<Message>> {
        let rows: Vec<MessageRow> =
            sqlx::query_as("SELECT * FROM messages WHERE id = $1 OR event_id = $1 ORDER BY id DESC LIMIT $2")
                .bind(id_or_event_id.to_owned())
                .bind(i64::from(limit))
                .fetch_all(D::exec(&mut *self.read().await?))
                .await?;
        rows.into_iter().map(Message::try_from).collect()
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
        push_message_id_window(&mut qb, filter.before, filter.after);
        push_in(&mut qb, "event_type", &filter.event_types);
        push_channel::<D>(&mut qb, "messages.channels", filter.channel.as_ref());
        push_page(&mut qb, "id", page);
        collect(
            rows_as::<D, MessageRow>(&mut qb)
                .fetch_all(D::exec(&mut *self.read().await?))
                .await?,
        )
    }

    async fn claim_due(&self, now: DateTime<Utc>, limit: u32, lease: Duration) -> StoreResult<Vec<DeliveryJob>> {
        let mut conn = self.writer.acquire().await?;
        D::before_claim(&mut conn).await?;
        let claimed = Queue::<D>::claim(&mut conn, now, limit, lease).await;
        if !D::after_claim(&mut conn).await {
            conn.close_on_drop();
        }
        open_jobs(claimed?, &self.sealer).into_iter().collect()
    }

    async fn defer(&self, job: &DeliveryJob, until: DateTime<Utc>) -> StoreResult<()> {
        self.batcher
            .defer(Deferral {
                msg_id: job.msg_id.clone(),
                delivery_id: job.delivery_id.clone(),
                lease_token: job.lease_token,
                until: ms(until),
            })
            .await
    }

    async fn complete_attempt_noting(
        &self,
        job: &DeliveryJob,
        attempt: &Attempt,
        next: NextStep,
        notices: Notices,
    ) -> StoreResult<()> {
        self.batcher
            .complete(Completion {
                delivery_id: job.delivery_id.clone(),
                app_id: job.app_id.clone(),
                endpoint_id: job.endpoint.id.clone(),
                lease_token: job.lease_token,
                attempt: attempt.clone(),
                next,
                notices,
            })
            .await
    }

    async fn hold_delivery(&self, job: &DeliveryJob, now: DateTime<Utc>) -> StoreResult<bool> {
        let mut tx = self.writer.begin().await?;
        // Share: waits for an enabling transaction, whose release of held
        // deliveries would otherwise miss this one.
        let sql = format!(
            "SELECT disabled FROM endpoints WHERE id = $1{}",
            D::lock(RowLock::Share)
        );
        let disabled: Option<bool> = sqlx::query_scalar(&sql)
            .bind(job.endpoint.id.as_str().to_owned())
            .fetch_optional(D::exec(&mut *tx))
            .await?;
        let held = disabled.unwrap_or(true);
        let (status, due) = if held {
            (DeliveryStatus::Held, None)
        } else {
            (DeliveryStatus::Pending, Some(ms(now)))
        };
        sqlx::query(
            "UPDATE deliveries SET status = $1, next_attempt_at = $2, lease_token = NULL, updated_at = $3 \
             WHERE msg_id = $4 AND id = $5 AND lease_token = $6",
        )
        .bind(status.code())
        .bind(due)
        .bind(ms(now))
        .bind(job.msg_id.as_str().to_owned())
        .bind(job.delivery_id.as_str().to_owned())
        .bind(job.lease_token)
        .execute(D::exec(&mut *tx))
        .await?;
        tx.commit().await?;
        Ok(held)
    }

    async fn next_due_at(&self) -> StoreResult<Option<DateTime<Utc>>> {
        let sql = format!("SELECT MIN(next_attempt_at) FROM deliveries WHERE status IN ({QUEUED})");
        let next: Option<i64> = sqlx::query_scalar(&sql)
            .fetch_one(D::exec(&mut *self.read().await?))
            .await?;
        Ok(next.map(from_ms))
    }

    async fn gauges(&self) -> StoreResult<Gauges> {
        let mut conn = self.read().await?;
        let queue: (i64, Option<i64>) = sqlx::query_as(&queue_gauges()).fetch_one(D::exec(&mut *conn)).await?;
        let endpoints: (i64, i64, i64) = sqlx::query_as(ENDPOINT_GAUGES).fetch_one(D::exec(&mut *conn)).await?;
        Ok(gauges_from(queue, endpoints))
    }

    fn is_shared(&self) -> bool {
        D::SHARED
    }

    async fn release_orphaned_leases(&self, now: DateTime<Utc>) -> StoreResult<u64> {
        if D::SHARED {
            // Other nodes may be alive and holding these; expiry hands them over.
            return Ok(0);
        }
        let sql = format!(
            "UPDATE deliveries SET status = {}, next_attempt_at = $1, lease_token = NULL WHERE status = {}",
            state(DeliveryStatus::Pending),
            state(DeliveryStatus::Sending),
        );
        let done = sqlx::query(&sql)
            .bind(ms(now))
            .execute(D::exec(&mut *self.write().await?))
            .await?;
        Ok(done.rows_affected())
    }

    async fn forward_wakeups(&self, wake: Arc<Notify>, shutdown: CancellationToken) {
        D::forward_wakeups(&self.writer, wake, shutdown).await;
    }

    async fn resend(&self, msg: &Message, endpoint: &Endpoint, now: DateTime<Utc>) -> StoreResult<()> {
        let mut tx = self.writer.begin().await?;
        let fifo = Queue::<D>::lock_queue(&mut tx, endpoint.id.as_str()).await?;
        // Share: the history sweep skips a message being resent, or has
        // removed it by the time this reads.
        let sql = format!("SELECT id FROM messages WHERE id = $1{}", D::lock(RowLock::Share));
        let kept: Option<String> = sqlx::query_scalar(&sql)
            .bind(msg.id.as_str().to_owned())
            .fetch_optional(D::exec(&mut *tx))
            .await?;
        if kept.is_none() {
            return Err(StoreError::Conflict("the message is no longer kept".to_owned()));
        }
        let queued = !fifo.is_empty();
        let (manual, pending) = (TriggerType::Manual, DeliveryStatus::Pending);
        Queue::<D>::insert_delivery(&mut tx, msg, endpoint.id.as_str(), manual, ms(now), pending, queued).await?;
        Queue::<D>::promote_heads(&mut tx, &fifo, ms(now)).await?;
        D::wake_others(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn resend_many(&self, endpoint: &Endpoint, msgs: &[MessageId], now: DateTime<Utc>) -> StoreResult<u64> {
        let mut tx = self.writer.begin().await?;
        let fifo = Queue::<D>::lock_queue(&mut tx, endpoint.id.as_str()).await?;
        // Behind a FIFO endpoint's queue, in the order given.
        let due = fifo.is_empty().then_some(ms(now));
        let sql = format!(
            "INSERT INTO deliveries (id, msg_id, endpoint_id, app_id, status, trigger_type, attempts, \
             next_attempt_at, created_at, updated_at) SELECT $1, id, $2, app_id, {}, {}, 0, $6, $3, $3 FROM messages \
             WHERE id = $4 AND app_id = $5 AND payload_removed_at IS NULL{}",
            state(DeliveryStatus::Pending),
            TriggerType::Manual.code(),
            // As in `resend`: never a delivery of a message the sweep removes.
            D::lock(RowLock::Share),
        );
        let mut scheduled = 0;
        for msg in msgs {
            let done = sqlx::query(&sql)
                .bind(DeliveryId::generate().as_str().to_owned())
                .bind(endpoint.id.as_str().to_owned())
                .bind(ms(now))
                .bind(msg.as_str().to_owned())
                .bind(endpoint.app_id.as_str().to_owned())
                .bind(due)
                .execute(D::exec(&mut *tx))
                .await?;
            scheduled += done.rows_affected();
        }
        Queue::<D>::promote_heads(&mut tx, &fifo, ms(now)).await?;
        if scheduled > 0 {
            D::wake_others(&mut tx).await?;
        }
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
        collect(
            rows_as::<D, MessageRow>(&mut qb)
                .fetch_all(D::exec(&mut *self.read().await?))
                .await?,
        )
    }

    async fn waiting_behind_head(&self, endpoint: &EndpointId) -> StoreResult<i64> {
        let sql = format!(
            "SELECT COUNT(*) FROM deliveries WHERE endpoint_id = $1 AND status IN ({QUEUED}) \
             AND next_attempt_at IS NULL"
        );
        Ok(sqlx::query_scalar(&sql)
            .bind(endpoint.as_str().to_owned())
            .fetch_one(D::exec(&mut *self.read().await?))
            .await?)
    }

    async fn endpoint_stats(&self, endpoint: &EndpointId, window: &Window) -> StoreResult<DeliveryCounts> {
        let mut qb = stats_query(endpoint, window);
        let rows: Vec<(i64, i64)> = rows_as::<D, _>(&mut qb)
            .fetch_all(D::exec(&mut *self.read().await?))
            .await?;
        Ok(count_by_status(rows))
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
        Ok(activity_rows(
            rows_as::<D, _>(&mut qb)
                .fetch_all(D::exec(&mut *self.read().await?))
                .await?,
        ))
    }

    async fn traffic(&self, since: DateTime<Utc>, period: std::time::Duration) -> StoreResult<Vec<TrafficBucket>> {
        let mut qb = traffic_query(since, period);
        Ok(traffic_rows(
            rows_as::<D, _>(&mut qb)
                .fetch_all(D::exec(&mut *self.read().await?))
                .await?,
        ))
    }

    async fn troubled_endpoints(&self, limit: u32) -> StoreResult<Vec<Endpoint>> {
        let rows: Vec<EndpointRow> =
            sqlx::query_as("SELECT * FROM endpoints WHERE disabled OR failing_since IS NOT NULL ORDER BY id LIMIT $1")
                .bind(i64::from(limit))
                .fetch_all(D::exec(&mut *self.read().await?))
                .await?;
        rows.into_iter().map(|r| r.into_endpoint(&self.sealer)).collect()
    }

    async fn remove_expired_payloads(&self, now: DateTime<Utc>, limit: u32) -> StoreResult<u64> {
        let mut tx = self.writer.begin().await?;
        // Claim: nodes cleaning at once share the work instead of waiting.
        let sql = format!(
            "SELECT id FROM messages m WHERE payload_removed_at IS NULL AND expires_at <= $1 \
             AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.msg_id = m.id AND d.status IN ({UNFINISHED})) \
             LIMIT $2{}",
            D::lock(RowLock::Claim),
        );
        let ids: Vec<String> = sqlx::query_scalar(&sql)
            .bind(ms(now))
            .bind(i64::from(limit))
            .fetch_all(D::exec(&mut *tx))
            .await?;
        for id in &ids {
            Queue::<D>::clear_payload(&mut tx, id, ms(now)).await?;
        }
        tx.commit().await?;
        Ok(ids.len() as u64)
    }

    async fn remove_payload(&self, app: &AppId, msg: &MessageId, now: DateTime<Utc>) -> StoreResult<bool> {
        let mut tx = self.writer.begin().await?;
        // FIFO queues first, in the order every writer locks them: a head
        // dropped here lets the next one go.
        let sql = format!("SELECT endpoint_id FROM deliveries WHERE msg_id = $1 AND status IN ({UNSENT})");
        let endpoints: BTreeSet<String> = sqlx::query_scalar(&sql)
            .bind(msg.as_str().to_owned())
            .fetch_all(D::exec(&mut *tx))
            .await?
            .into_iter()
            .collect();
        let fifo = Queue::<D>::lock_fifo(&mut tx, &endpoints).await?;
        let sql = format!(
            "SELECT id FROM messages WHERE id = $1 AND app_id = $2{}",
            D::lock(RowLock::Update)
        );
        let found: Option<String> = sqlx::query_scalar(&sql)
            .bind(msg.as_str().to_owned())
            .bind(app.as_str().to_owned())
            .fetch_optional(D::exec(&mut *tx))
            .await?;
        if found.is_none() {
            return Ok(false);
        }
        Queue::<D>::clear_payload(&mut tx, msg.as_str(), ms(now)).await?;
        let sql = format!(
            "UPDATE deliveries SET status = {}, next_attempt_at = NULL, lease_token = NULL, updated_at = $1 \
             WHERE msg_id = $2 AND status IN ({UNSENT})",
            state(DeliveryStatus::Dropped),
        );
        sqlx::query(&sql)
            .bind(ms(now))
            .bind(msg.as_str().to_owned())
            .execute(D::exec(&mut *tx))
            .await?;
        if Queue::<D>::promote_heads(&mut tx, &fifo, ms(now)).await? > 0 {
            D::wake_others(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn remove_payload_if_delivered(&self, msg: &MessageId, now: DateTime<Utc>) -> StoreResult<()> {
        let mut tx = self.writer.begin().await?;
        let sql = format!(
            "SELECT COUNT(*) FROM deliveries WHERE msg_id = $1 AND status <> {}",
            state(DeliveryStatus::Success)
        );
        let unfinished: i64 = sqlx::query_scalar(&sql)
            .bind(msg.as_str().to_owned())
            .fetch_one(D::exec(&mut *tx))
            .await?;
        if unfinished == 0 {
            Queue::<D>::clear_payload(&mut tx, msg.as_str(), ms(now)).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn remove_attempt_content(&self, app: &AppId, msg: &MessageId, attempt: &AttemptId) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE attempts SET request_body = '', response = '', request_headers = NULL, response_headers = NULL \
             WHERE id = $1 AND app_id = $2 AND msg_id = $3",
        )
        .bind(attempt.as_str().to_owned())
        .bind(app.as_str().to_owned())
        .bind(msg.as_str().to_owned())
        .execute(D::exec(&mut *self.write().await?))
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn remove_idempotency_keys(&self, oldest: DateTime<Utc>) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(ms(oldest))
            .execute(D::exec(&mut *self.write().await?))
            .await?;
        Ok(done.rows_affected())
    }

    async fn history_windows(&self) -> StoreResult<Vec<(AppId, i64)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT id, history_retention_days FROM applications WHERE history_retention_days IS NOT NULL",
        )
        .fetch_all(D::exec(&mut *self.read().await?))
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, days)| (AppId::from_trusted(id), days))
            .collect())
    }

    async fn remove_old_messages(
        &self,
        app: Option<&AppId>,
        before: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Removed> {
        let mut tx = self.writer.begin().await?;
        let mut qb = old_messages_query::<D>(app, before, limit);
        let ids: Vec<String> = rows_as::<D, (String,)>(&mut qb)
            .fetch_all(D::exec(&mut *tx))
            .await?
            .into_iter()
            .map(|(id,)| id)
            .collect();
        if ids.is_empty() {
            tx.commit().await?;
            return Ok(Removed::default());
        }
        // Children first: counting each table is what the metrics report
        // (PostgreSQL's partitioned history has no foreign keys to cascade).
        let mut removed = Removed::default();
        let mut event_ids = 0;
        for (table, key, count) in [
            ("attempts", "msg_id", &mut removed.attempts),
            ("deliveries", "msg_id", &mut removed.deliveries),
            ("message_event_ids", "msg_id", &mut event_ids),
            ("messages", "id", &mut removed.messages),
        ] {
            let mut qb = QueryBuilder::new(format!("DELETE FROM {table} WHERE {key} IN ("));
            let mut list = qb.separated(", ");
            for id in &ids {
                list.push_bind(id.clone());
            }
            list.push_unseparated(")");
            *count = execute::<D>(&mut qb, &mut *tx).await?;
        }
        tx.commit().await?;
        if let Err(e) = D::reclaim_space(&mut *self.write().await?).await {
            tracing::warn!(error = %e, "could not give freed space back after the history sweep");
        }
        Ok(removed)
    }

    async fn oldest_message_at(&self) -> StoreResult<Option<DateTime<Utc>>> {
        // Ids sort by creation: the first by id is the oldest, read off the key's index.
        let oldest: Option<i64> = sqlx::query_scalar("SELECT created_at FROM messages ORDER BY id LIMIT 1")
            .fetch_optional(D::exec(&mut *self.read().await?))
            .await?;
        Ok(oldest.map(from_ms))
    }

    async fn upkeep_partitions(&self, plan: &UpkeepPlan) -> StoreResult<Option<Upkeep>> {
        D::upkeep_partitions(&self.writer, plan).await
    }

    async fn storage(&self) -> StoreResult<Storage> {
        D::storage(&self.reader).await
    }

    async fn create_task(&self, task: &BackgroundTask) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO background_tasks (id, task, status, app_id, endpoint_id, params, data, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(task.id.as_str().to_owned())
        .bind(task.kind.name().to_owned())
        .bind(task.status.name().to_owned())
        .bind(task.app_id.as_str().to_owned())
        .bind(task.endpoint_id.as_ref().map(|e| e.as_str().to_owned()))
        .bind(to_json(&task.params))
        .bind(to_json(&task.data))
        .bind(ms(task.created_at))
        .bind(ms(task.updated_at))
        .execute(D::exec(&mut *self.write().await?))
        .await?;
        Ok(())
    }

    async fn update_task(&self, task: &BackgroundTask) -> StoreResult<()> {
        sqlx::query("UPDATE background_tasks SET status = $1, data = $2, updated_at = $3 WHERE id = $4")
            .bind(task.status.name().to_owned())
            .bind(to_json(&task.data))
            .bind(ms(task.updated_at))
            .bind(task.id.as_str().to_owned())
            .execute(D::exec(&mut *self.write().await?))
            .await?;
        Ok(())
    }

    async fn get_task(&self, id: &TaskId) -> StoreResult<Option<BackgroundTask>> {
        let sql = "SELECT * FROM background_tasks WHERE id = $1";
        find::<D, TaskRow, _>(&mut *self.read().await?, sql, id.as_str()).await
    }

    async fn list_tasks(&self, page: &Page) -> StoreResult<Vec<BackgroundTask>> {
        let mut qb = QueryBuilder::new("SELECT * FROM background_tasks WHERE TRUE");
        push_page(&mut qb, "id", page);
        collect(
            rows_as::<D, TaskRow>(&mut qb)
                .fetch_all(D::exec(&mut *self.read().await?))
                .await?,
        )
    }

    async fn take_over_tasks(
        &self,
        stale_before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<BackgroundTask>> {
        let mut qb = QueryBuilder::new("UPDATE background_tasks SET updated_at = ");
        qb.push_bind(ms(now));
        if D::SHARED {
            // Other nodes may be alive: only tasks nobody moved on lately are orphans.
            qb.push(" WHERE id IN (SELECT id FROM background_tasks WHERE status = 'running' AND updated_at < ")
                .push_bind(ms(stale_before))
                .push(D::lock(RowLock::Claim))
                .push(")");
        } else {
            // No other process runs: every running task is orphaned.
            qb.push(" WHERE status = 'running'");
        }
        qb.push(" RETURNING *");
        let rows: Vec<TaskRow> = rows_as::<D, _>(&mut qb)
            .fetch_all(D::exec(&mut *self.write().await?))
            .await?;
        collect(rows)
    }

    async fn list_attempts(&self, app: &AppId, filter: &AttemptFilter, page: &Page) -> StoreResult<Vec<Attempt>> {
        let mut qb = QueryBuilder::new(format!(
            "SELECT {ATTEMPT_COLUMNS} FROM attempts a JOIN messages m ON m.id = a.msg_id WHERE a.app_id = "
        ));
        qb.push_bind(app.as_str().to_owned());
        push_attempt_filter(&mut qb, filter);
        push_channel::<D>(&mut qb, "m.channels", filter.channel.as_ref());
        push_page(&mut qb, "a.id", page);
        collect(
            rows_as::<D, AttemptRow>(&mut qb)
                .fetch_all(D::exec(&mut *self.read().await?))
                .await?,
        )
    }

    async fn get_attempt(&self, app: &AppId, msg: &MessageId, id: &AttemptId) -> StoreResult<Option<Attempt>> {
        // The message's id on both tables picks one day's partitions.
        let sql = format!(
            "SELECT {ATTEMPT_COLUMNS} FROM attempts a JOIN messages m ON m.id = a.msg_id \
             WHERE a.app_id = $1 AND a.id = $2 AND a.msg_id = $3 AND m.id = $3"
        );
        let row: Option<AttemptRow> = sqlx::query_as(&sql)
            .bind(app.as_str().to_owned())
            .bind(id.as_str().to_owned())
            .bind(msg.as_str().to_owned())
            .fetch_optional(D::exec(&mut *self.read().await?))
            .await?;
        row.map(Attempt::try_from).transpose()
    }

    async fn create_token(&self, token: &ApiToken) -> StoreResult<()> {
        execute::<D>(&mut insert_token_query(token), &mut *self.write().await?).await?;
        Ok(())
    }

    async fn find_token(&self, token_hash: &str) -> StoreResult<Option<ApiToken>> {
        let mut qb = tokens_query(&Page::first(1), Some(("token_hash", token_hash)));
        let row: Option<TokenRow> = rows_as::<D, _>(&mut qb)
            .fetch_optional(D::exec(&mut *self.read().await?))
            .await?;
        row.map(ApiToken::try_from).transpose()
    }

    async fn get_token(&self, id: &TokenId) -> StoreResult<Option<ApiToken>> {
        let mut qb = tokens_query(&Page::first(1), Some(("id", id.as_str())));
        let row: Option<TokenRow> = rows_as::<D, _>(&mut qb)
            .fetch_optional(D::exec(&mut *self.read().await?))
            .await?;
        row.map(ApiToken::try_from).transpose()
    }

    async fn list_tokens(&self, page: &Page) -> StoreResult<Vec<ApiToken>> {
        let mut qb = tokens_query(page, None);
        collect(
            rows_as::<D, TokenRow>(&mut qb)
                .fetch_all(D::exec(&mut *self.read().await?))
                .await?,
        )
    }

    async fn revoke_token(&self, id: &TokenId, now: DateTime<Utc>) -> StoreResult<bool> {
        let mut qb = revoke_token_query(id, now);
        let done = execute::<D>(&mut qb, &mut *self.write().await?).await?;
        Ok(done > 0)
    }

    async fn touch_token(&self, id: &TokenId, now: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
            .bind(ms(now))
            .bind(id.as_str().to_owned())
            .execute(D::exec(&mut *self.write().await?))
            .await?;
        Ok(())
    }

    async fn claim_emails(&self, now: DateTime<Utc>, limit: u32, lease: Duration) -> StoreResult<Vec<ClaimedEmail>> {
        let lease_until = ms(now) + i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2);
        let token: i64 = rand::Rng::gen_range(&mut rand::thread_rng(), 1..i64::MAX);
        // Claim: nodes claiming at once each get different emails, and the
        // due time moves to the lease's end, so an email whose sender died
        // comes due again then, and not before.
        let sql = format!(
            "UPDATE operator_emails SET next_attempt_at = $1, lease_token = $2, tries = tries + 1, updated_at = $3 \
             WHERE id IN (SELECT id FROM operator_emails WHERE state = 'pending' AND next_attempt_at <= $3 \
                          ORDER BY next_attempt_at LIMIT $4{}) \
             RETURNING id, subject, body, tries, created_at, lease_token",
            D::lock(RowLock::Claim),
        );
        let rows: Vec<(String, String, String, i64, i64, i64)> = sqlx::query_as(&sql)
            .bind(lease_until)
            .bind(token)
            .bind(ms(now))
            .bind(i64::from(limit))
            .fetch_all(D::exec(&mut *self.write().await?))
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, subject, body, tries, created_at, lease_token)| ClaimedEmail {
                id: crate::domain::ids::EmailId::from_trusted(id),
                subject,
                body,
                tries: u32::try_from(tries).unwrap_or(u32::MAX),
                created_at: from_ms(created_at),
                lease_token,
            })
            .collect())
    }

    async fn email_sent(&self, email: &ClaimedEmail, now: DateTime<Utc>) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE operator_emails SET state = 'sent', sent_at = $1, updated_at = $1, next_attempt_at = NULL, \
             lease_token = NULL WHERE id = $2 AND lease_token = $3 AND state = 'pending'",
        )
        .bind(ms(now))
        .bind(email.id.as_str().to_owned())
        .bind(email.lease_token)
        .execute(D::exec(&mut *self.write().await?))
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn email_not_sent(
        &self,
        email: &ClaimedEmail,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let state = if retry_at.is_some() {
            EmailState::Pending
        } else {
            EmailState::Failed
        };
        let done = sqlx::query(
            "UPDATE operator_emails SET state = $1, next_attempt_at = $2, last_error = $3, updated_at = $4, \
             lease_token = NULL WHERE id = $5 AND lease_token = $6 AND state = 'pending'",
        )
        .bind(state.name().to_owned())
        .bind(retry_at.map(ms))
        .bind(error.to_owned())
        .bind(ms(now))
        .bind(email.id.as_str().to_owned())
        .bind(email.lease_token)
        .execute(D::exec(&mut *self.write().await?))
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn next_email_due(&self) -> StoreResult<Option<DateTime<Utc>>> {
        let next: Option<i64> =
            sqlx::query_scalar("SELECT MIN(next_attempt_at) FROM operator_emails WHERE state = 'pending'")
                .fetch_one(D::exec(&mut *self.read().await?))
                .await?;
        Ok(next.map(from_ms))
    }

    async fn list_emails(&self, page: &Page, state: Option<EmailState>) -> StoreResult<Vec<EmailRecord>> {
        let mut qb = QueryBuilder::new(
            "SELECT id, subject, body, state, tries, next_attempt_at, last_error, created_at, sent_at \
             FROM operator_emails WHERE TRUE",
        );
        if let Some(state) = state {
            qb.push(" AND state = ").push_bind(state.name().to_owned());
        }
        push_page(&mut qb, "id", page);
        let rows: Vec<EmailRow> = rows_as::<D, _>(&mut qb)
            .fetch_all(D::exec(&mut *self.read().await?))
            .await?;
        collect(rows)
    }

    async fn email_counts(&self) -> StoreResult<EmailCounts> {
        let rows: Vec<(String, i64)> = sqlx::query_as("SELECT state, COUNT(*) FROM operator_emails GROUP BY state")
            .fetch_all(D::exec(&mut *self.read().await?))
            .await?;
        let mut counts = EmailCounts::default();
        for (state, n) in rows {
            match EmailState::parse(&state) {
                Some(EmailState::Pending) => counts.pending = n,
                Some(EmailState::Sent) => counts.sent = n,
                Some(EmailState::Failed) => counts.failed = n,
                None => return Err(StoreError::Corrupt(format!("unknown email state {state:?}"))),
            }
        }
        Ok(counts)
    }

    async fn remove_old_emails(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM operator_emails WHERE state <> 'pending' AND created_at < $1")
            .bind(ms(before))
            .execute(D::exec(&mut *self.write().await?))
            .await?;
        Ok(done.rows_affected())
    }

    async fn idempotency_begin(&self, key: &str, now: DateTime<Utc>, ttl: Duration) -> StoreResult<IdempotencyState> {
        let oldest = ms(now) - i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
        let mut tx = self.writer.begin().await?;
        sqlx::query("DELETE FROM idempotency_keys WHERE key = $1 AND created_at < $2")
            .bind(key.to_owned())
            .bind(oldest)
            .execute(D::exec(&mut *tx))
            .await?;
        // A concurrent first sight of the key waits here until the other commits.
        let inserted =
            sqlx::query("INSERT INTO idempotency_keys (key, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(key.to_owned())
                .bind(ms(now))
                .execute(D::exec(&mut *tx))
                .await?;
        let state = if inserted.rows_affected() == 1 {
            IdempotencyState::New
        } else {
            let existing: Option<(Option<i64>, Option<Vec<u8>>)> =
                sqlx::query_as("SELECT status_code, body FROM idempotency_keys WHERE key = $1")
                    .bind(key.to_owned())
                    .fetch_optional(D::exec(&mut *tx))
                    .await?;
            idempotency_state(existing)
        };
        tx.commit().await?;
        Ok(state)
    }

    async fn idempotency_finish(&self, key: &str, status: u16, body: &[u8]) -> StoreResult<()> {
        sqlx::query("UPDATE idempotency_keys SET status_code = $1, body = $2 WHERE key = $3")
            .bind(i64::from(status))
            .bind(body.to_vec())
            .bind(key.to_owned())
            .execute(D::exec(&mut *self.write().await?))
            .await?;
        Ok(())
    }

    async fn idempotency_abandon(&self, key: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM idempotency_keys WHERE key = $1 AND status_code IS NULL")
            .bind(key.to_owned())
            .execute(D::exec(&mut *self.write().await?))
            .await?;
        Ok(())
    }
}
