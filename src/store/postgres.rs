//! The shared backend: several Herald nodes on one PostgreSQL database.
//!
//! Nodes coordinate only through the database: deliveries are claimed with
//! `FOR UPDATE SKIP LOCKED` and leased, so each is attempted by one node at a
//! time and taken over when a node dies; `NOTIFY` wakes every node when work
//! is published.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rand::Rng;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{PgPool, Postgres, QueryBuilder};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::batch::{Batcher, Completion, Deferral};
use super::pg_batch::{PgWriter, insert_delivery, insert_message, lock_fifo, lock_queue, promote_heads};
use super::rows::*;
use super::*;
use crate::domain::ids::DeliveryId;
use crate::domain::status::{DeliveryOrder, DeliveryStatus, TriggerType};

/// The channel nodes use to wake each other. Per database, so separate
/// deployments on one server never wake each other.
const WAKE_CHANNEL: &str = "herald_work";
/// What orders a FIFO endpoint's queue: a sequence drawn while the
/// endpoint's row is locked, so it follows commit order across nodes.
pub(super) const QUEUE_ORDER: &str = "seq";
/// Whoever queues into or moves on a FIFO endpoint's queue holds its row:
/// two nodes never promote two heads. NO KEY: the deliveries' foreign-key
/// checks (KEY SHARE) do not wait for it.
pub(super) const LOCK_QUEUE: &str = " FOR NO KEY UPDATE";
/// How long a request waits for a pooled connection before answering 503.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct PgStore {
    pool: PgPool,
    /// Publishes, attempt results and deferrals, committed in groups.
    batcher: Batcher,
    sealer: Sealer,
}

impl PgStore {
    pub async fn open(url: &str, config: &Config, sealer: Sealer) -> StoreResult<Self> {
        let timeout_ms = config.db_statement_timeout.as_millis().to_string();
        let options = PgConnectOptions::from_str(url)?
            .application_name("herald")
            .options([("statement_timeout", timeout_ms.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(config.db_pool_size)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        // sqlx takes an advisory lock, so nodes starting together migrate once.
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self {
            batcher: Batcher::start(PgWriter(pool.clone())),
            pool,
            sealer,
        })
    }
}

#[async_trait]
impl Store for PgStore {
    async fn get_setting(&self, name: &str) -> StoreResult<Option<String>> {
        Ok(sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn put_setting_if_absent(&self, name: &str, value: &str) -> StoreResult<bool> {
        let done = sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn replace_setting(&self, name: &str, old: &str, new: &str) -> StoreResult<bool> {
        let mut qb = replace_setting_query(name, old, new);
        Ok(qb.build().execute(&self.pool).await?.rows_affected() == 1)
    }

    fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    async fn seal_plain_secrets(&self) -> StoreResult<u64> {
        let rows: Vec<PlainSecretRow> = plain_secrets_query().build_query_as().fetch_all(&self.pool).await?;
        let mut sealed = 0;
        for row in rows {
            let mut qb = reseal_query(&self.sealer, &row);
            sealed += qb.build().execute(&self.pool).await?.rows_affected();
        }
        Ok(sealed)
    }

    async fn create_app(&self, app: &Application) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO applications (id, uid, name, rate_limit, metadata, created_at, updated_at, profile, \
             validate_payloads) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
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
        .execute(&self.pool)
        .await
        .map_err(|e| uid_conflict(e, "an application with this uid already exists"))?;
        Ok(())
    }

    async fn get_app(&self, id_or_uid: &str) -> StoreResult<Option<Application>> {
        let row: Option<AppRow> = sqlx::query_as("SELECT * FROM applications WHERE id = $1 OR uid = $1")
            .bind(id_or_uid)
            .fetch_optional(&self.pool)
            .await?;
        row.map(Application::try_from).transpose()
    }

    async fn list_apps(&self, page: &Page, search: Option<&str>) -> StoreResult<Vec<Application>> {
        let mut qb = apps_query(page, search);
        collect(qb.build_query_as::<AppRow>().fetch_all(&self.pool).await?)
    }

    async fn update_app(&self, app: &Application) -> StoreResult<()> {
        sqlx::query(
            "UPDATE applications SET uid = $1, name = $2, rate_limit = $3, metadata = $4, updated_at = $5, \
             profile = $6, validate_payloads = $7 WHERE id = $8",
        )
        .bind(&app.uid)
        .bind(&app.name)
        .bind(app.rate_limit)
        .bind(to_json(&app.metadata))
        .bind(ms(app.updated_at))
        .bind(&app.profile)
        .bind(app.validate_payloads)
        .bind(app.id.as_str())
        .execute(&self.pool)
        .await
        .map_err(|e| uid_conflict(e, "an application with this uid already exists"))?;
        Ok(())
    }

    async fn profile_names_in_use(&self) -> StoreResult<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT profile FROM applications WHERE profile IS NOT NULL \
             UNION SELECT profile FROM endpoints WHERE profile IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn delete_app(&self, id: &AppId) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM applications WHERE id = $1")
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn create_endpoint(&self, ep: &Endpoint) -> StoreResult<()> {
        let insert = sqlx::query(
            "INSERT INTO endpoints (uid, url, description, filter_types, channels, disabled, \
             rate_limit, metadata, headers, secret, previous_secret, previous_secret_expires_at, profile, verify_token, \
             format, template, disabled_reason, reverify_at, owner_id, while_disabled, tls_verify, ordering, updated_at, id, \
             app_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
             $18, $19, $20, $21, $22, $23, $24, $25, $26)",
        );
        bind_endpoint(insert, ep, &self.sealer)
            .bind(ms(ep.created_at))
            .execute(&self.pool)
            .await
            .map_err(|e| uid_conflict(e, "an endpoint with this uid already exists in this application"))?;
        Ok(())
    }

    async fn get_endpoint(&self, app: &AppId, id_or_uid: &str) -> StoreResult<Option<Endpoint>> {
        let row: Option<EndpointRow> =
            sqlx::query_as("SELECT * FROM endpoints WHERE app_id = $1 AND (id = $2 OR uid = $2)")
                .bind(app.as_str())
                .bind(id_or_uid)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|r| r.into_endpoint(&self.sealer)).transpose()
    }

    async fn list_endpoints(&self, app: &AppId, page: &Page, owner: Option<&str>) -> StoreResult<Vec<Endpoint>> {
        let mut qb = endpoints_query(app, page, owner);
        let rows: Vec<EndpointRow> = qb.build_query_as().fetch_all(&self.pool).await?;
        rows.into_iter().map(|r| r.into_endpoint(&self.sealer)).collect()
    }

    async fn update_endpoint(&self, ep: &Endpoint) -> StoreResult<()> {
        let update = sqlx::query(
            "UPDATE endpoints SET uid = $1, url = $2, description = $3, filter_types = $4, channels = $5, \
             disabled = $6, rate_limit = $7, metadata = $8, headers = $9, secret = $10, previous_secret = $11, \
             previous_secret_expires_at = $12, profile = $13, verify_token = $14, format = $15, template = $16, \
             disabled_reason = $17, reverify_at = $18, owner_id = $19, while_disabled = $20, tls_verify = $21, ordering = $22, \
             updated_at = $23 WHERE id = $24 AND app_id = $25",
        );
        let mut tx = self.pool.begin().await?;
        bind_endpoint(update, ep, &self.sealer)
            .execute(&mut *tx)
            .await
            .map_err(|e| uid_conflict(e, "an endpoint with this uid already exists in this application"))?;
        // The row is locked by the update: no batch moves this queue meanwhile.
        let now = ms(ep.updated_at);
        let fifo = ep.ordering == DeliveryOrder::Fifo;
        let mut due_now = 0;
        if !ep.disabled {
            // Held deliveries are released; a FIFO endpoint's wait in its queue again.
            let released = sqlx::query(
                "UPDATE deliveries SET status = 1, next_attempt_at = $1, updated_at = $2 \
                 WHERE endpoint_id = $3 AND status = 4",
            )
            .bind((!fifo).then_some(now))
            .bind(now)
            .bind(ep.id.as_str())
            .execute(&mut *tx)
            .await?;
            due_now += released.rows_affected();
        }
        if fifo {
            due_now += promote_heads(&mut tx, &std::collections::BTreeSet::from([ep.id.to_string()]), now).await?;
        } else {
            // A queue left by FIFO ordering goes out at once.
            let freed = sqlx::query(
                "UPDATE deliveries SET next_attempt_at = $1 WHERE endpoint_id = $2 AND status IN (1, 3) \
                 AND next_attempt_at IS NULL",
            )
            .bind(now)
            .bind(ep.id.as_str())
            .execute(&mut *tx)
            .await?;
            due_now += freed.rows_affected();
        }
        if due_now > 0 {
            notify(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn delete_endpoint(&self, app: &AppId, id: &EndpointId) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM endpoints WHERE id = $1 AND app_id = $2")
            .bind(id.as_str())
            .bind(app.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_endpoint_failing(&self, id: &EndpointId, since: Option<DateTime<Utc>>) -> StoreResult<()> {
        let sql = match since {
            Some(_) => "UPDATE endpoints SET failing_since = COALESCE(failing_since, $1) WHERE id = $2",
            None => "UPDATE endpoints SET failing_since = $1 WHERE id = $2",
        };
        sqlx::query(sql)
            .bind(since.map(ms))
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn disable_endpoint(&self, id: &EndpointId, reason: &str, now: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query("UPDATE endpoints SET disabled = TRUE, disabled_reason = $1, updated_at = $2 WHERE id = $3")
            .bind(reason)
            .bind(ms(now))
            .bind(id.as_str())
            .execute(&self.pool)
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
             WHERE e.disabled = FALSE AND e.reverify_at <= $1 ORDER BY e.reverify_at LIMIT $2"
        );
        let rows: Vec<ReverifyRow> = sqlx::query_as(&sql)
            .bind(ms(now))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
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
            .bind(id.as_str())
            .bind(ms(seen))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn create_event_type(&self, et: &EventType) -> StoreResult<()> {
        insert_event_type(&self.pool, et, false)
            .await
            .map_err(|e| uid_conflict(e, "an event type with this name already exists"))
    }

    async fn get_event_type(&self, name: &str) -> StoreResult<Option<EventType>> {
        let row: Option<EventTypeRow> = sqlx::query_as("SELECT * FROM event_types WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(EventType::try_from).transpose()
    }

    async fn list_event_types(&self, page: &Page, include_archived: bool) -> StoreResult<Vec<EventType>> {
        let mut qb = QueryBuilder::new("SELECT * FROM event_types WHERE TRUE");
        if !include_archived {
            qb.push(" AND NOT archived");
        }
        push_page(&mut qb, "name", page);
        collect(qb.build_query_as::<EventTypeRow>().fetch_all(&self.pool).await?)
    }

    async fn upsert_event_type(&self, et: &EventType) -> StoreResult<()> {
        Ok(insert_event_type(&self.pool, et, true).await?)
    }

    async fn delete_event_type(&self, name: &str) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM event_types WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn publish(&self, msg: &Message) -> StoreResult<usize> {
        self.batcher.publish(msg.clone()).await
    }

    async fn publish_to(&self, msg: &Message, endpoint: &EndpointId) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
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
        notify(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_message(&self, app: &AppId, id_or_event_id: &str) -> StoreResult<Option<Message>> {
        let row: Option<MessageRow> =
            sqlx::query_as("SELECT * FROM messages WHERE app_id = $1 AND (id = $2 OR event_id = $2)")
                .bind(app.as_str())
                .bind(id_or_event_id)
                .fetch_optional(&self.pool)
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
            qb.push(" AND jsonb_exists(channels::jsonb, ")
                .push_bind(channel.clone())
                .push(")");
        }
        push_page(&mut qb, "id", page);
        collect(qb.build_query_as::<MessageRow>().fetch_all(&self.pool).await?)
    }

    async fn claim_due(&self, now: DateTime<Utc>, limit: u32, lease: Duration) -> StoreResult<Vec<DeliveryJob>> {
        let lease_until = ms(now) + i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2);
        let token: i64 = rand::thread_rng().gen_range(1..i64::MAX);
        let mut tx = self.pool.begin().await?;
        // SKIP LOCKED: nodes claiming at once each get different rows, without waiting.
        // RETURNING: the claimed rows are then read by id, not found by their token.
        let claimed: Vec<String> = sqlx::query_scalar(
            "UPDATE deliveries SET status = 3, next_attempt_at = $1, lease_token = $2, updated_at = $3 \
             WHERE id IN (SELECT id FROM deliveries WHERE status IN (1, 3) AND next_attempt_at <= $3 \
                          ORDER BY next_attempt_at LIMIT $4 FOR UPDATE SKIP LOCKED) RETURNING id",
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
        rows.into_iter().map(|r| r.into_job(&self.sealer)).collect()
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
        let mut tx = self.pool.begin().await?;
        // FOR SHARE waits for an enabling transaction, whose release of held
        // deliveries would otherwise miss this one.
        let disabled: Option<bool> = sqlx::query_scalar("SELECT disabled FROM endpoints WHERE id = $1 FOR SHARE")
            .bind(job.endpoint.id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let held = disabled.unwrap_or(true);
        let (status, due) = if held { (4_i64, None) } else { (1_i64, Some(ms(now))) };
        sqlx::query(
            "UPDATE deliveries SET status = $1, next_attempt_at = $2, lease_token = NULL, updated_at = $3 \
             WHERE id = $4 AND lease_token = $5",
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
                .fetch_one(&self.pool)
                .await?;
        Ok(next.map(from_ms))
    }

    async fn gauges(&self) -> StoreResult<Gauges> {
        let queue: (i64, Option<i64>) = sqlx::query_as(QUEUE_GAUGES).fetch_one(&self.pool).await?;
        let endpoints: (i64, i64, i64) = sqlx::query_as(ENDPOINT_GAUGES).fetch_one(&self.pool).await?;
        Ok(gauges_from(queue, endpoints))
    }

    fn is_shared(&self) -> bool {
        true
    }

    async fn release_orphaned_leases(&self, _now: DateTime<Utc>) -> StoreResult<u64> {
        // Other nodes may be alive and holding these; expiry hands them over.
        Ok(0)
    }

    async fn forward_wakeups(&self, wake: Arc<Notify>, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(200);
        loop {
            let listener = async {
                let mut listener = PgListener::connect_with(&self.pool).await?;
                listener.listen(WAKE_CHANNEL).await?;
                Ok::<_, sqlx::Error>(listener)
            };
            let mut listener = tokio::select! {
                l = listener => l,
                () = shutdown.cancelled() => return,
            };
            match &mut listener {
                Ok(listener) => {
                    backoff = Duration::from_millis(200);
                    // Whatever was published while we were not listening is due now.
                    wake.notify_one();
                    loop {
                        let next = tokio::select! {
                            n = listener.try_recv() => n,
                            () = shutdown.cancelled() => return,
                        };
                        match next {
                            Ok(Some(_)) => wake.notify_one(),
                            // Connection lost: reconnect; a missed notification is made up by the wake above.
                            Ok(None) => break,
                            Err(e) => {
                                tracing::warn!(error = %e, "lost the PostgreSQL wake-up channel; reconnecting");
                                break;
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot listen for wake-ups; retrying"),
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = shutdown.cancelled() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }

    async fn resend(&self, msg: &Message, endpoint: &Endpoint, now: DateTime<Utc>) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
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
        notify(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn resend_many(&self, endpoint: &Endpoint, msgs: &[MessageId], now: DateTime<Utc>) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await?;
        let fifo = lock_queue(&mut tx, endpoint.id.as_str()).await?;
        // Behind a FIFO endpoint's queue, in the order given.
        let due = fifo.is_empty().then_some(ms(now));
        let mut scheduled = 0;
        for msg in msgs {
            let done = sqlx::query(
                "INSERT INTO deliveries (id, msg_id, endpoint_id, app_id, status, trigger_type, attempts, \
                 next_attempt_at, created_at, updated_at) SELECT $1, id, $2, app_id, 1, 1, 0, $6, $3, $3 FROM messages \
                 WHERE id = $4 AND app_id = $5 AND payload_removed_at IS NULL",
            )
            .bind(DeliveryId::generate().as_str())
            .bind(endpoint.id.as_str())
            .bind(ms(now))
            .bind(msg.as_str())
            .bind(endpoint.app_id.as_str())
            .bind(due)
            .execute(&mut *tx)
            .await?;
            scheduled += done.rows_affected();
        }
        promote_heads(&mut tx, &fifo, ms(now)).await?;
        if scheduled > 0 {
            notify(&mut tx).await?;
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
        collect(qb.build_query_as::<MessageRow>().fetch_all(&self.pool).await?)
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
        Ok(activity_rows(qb.build_query_as().fetch_all(&self.pool).await?))
    }

    async fn waiting_behind_head(&self, endpoint: &EndpointId) -> StoreResult<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM deliveries WHERE endpoint_id = $1 AND status IN (1, 3) AND next_attempt_at IS NULL",
        )
        .bind(endpoint.as_str())
        .fetch_one(&self.pool)
        .await?)
    }

    async fn endpoint_stats(&self, endpoint: &EndpointId, window: &Window) -> StoreResult<DeliveryCounts> {
        let mut qb = stats_query(endpoint, window);
        let rows: Vec<(i64, i64)> = qb.build_query_as().fetch_all(&self.pool).await?;
        Ok(count_by_status(rows))
    }

    async fn remove_expired_payloads(&self, now: DateTime<Utc>, limit: u32) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await?;
        // SKIP LOCKED: nodes cleaning at once share the work instead of waiting.
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM messages m WHERE payload_removed_at IS NULL AND expires_at <= $1 \
             AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.msg_id = m.id AND d.status IN (1, 3, 4)) \
             LIMIT $2 FOR UPDATE SKIP LOCKED",
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
        let mut tx = self.pool.begin().await?;
        // FIFO queues first, in the order every writer locks them: a head
        // dropped here lets the next one go.
        let endpoints: std::collections::BTreeSet<String> =
            sqlx::query_scalar("SELECT endpoint_id FROM deliveries WHERE msg_id = $1 AND status IN (1, 4)")
                .bind(msg.as_str())
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .collect();
        let fifo = lock_fifo(&mut tx, &endpoints).await?;
        let found: Option<String> =
            sqlx::query_scalar("SELECT id FROM messages WHERE id = $1 AND app_id = $2 FOR UPDATE")
                .bind(msg.as_str())
                .bind(app.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        if found.is_none() {
            return Ok(false);
        }
        clear_payload(&mut tx, msg.as_str(), ms(now)).await?;
        sqlx::query(
            "UPDATE deliveries SET status = 5, next_attempt_at = NULL, lease_token = NULL, updated_at = $1 \
             WHERE msg_id = $2 AND status IN (1, 4)",
        )
        .bind(ms(now))
        .bind(msg.as_str())
        .execute(&mut *tx)
        .await?;
        if promote_heads(&mut tx, &fifo, ms(now)).await? > 0 {
            notify(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn remove_payload_if_delivered(&self, msg: &MessageId, now: DateTime<Utc>) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let unfinished: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE msg_id = $1 AND status <> 0")
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
             WHERE id = $1 AND app_id = $2",
        )
        .bind(attempt.as_str())
        .bind(app.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn remove_idempotency_keys(&self, oldest: DateTime<Utc>) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(ms(oldest))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn create_task(&self, task: &BackgroundTask) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO background_tasks (id, task, status, app_id, endpoint_id, params, data, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
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
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn update_task(&self, task: &BackgroundTask) -> StoreResult<()> {
        sqlx::query("UPDATE background_tasks SET status = $1, data = $2, updated_at = $3 WHERE id = $4")
            .bind(task.status.name())
            .bind(to_json(&task.data))
            .bind(ms(task.updated_at))
            .bind(task.id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn get_task(&self, id: &TaskId) -> StoreResult<Option<BackgroundTask>> {
        let row: Option<TaskRow> = sqlx::query_as("SELECT * FROM background_tasks WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(BackgroundTask::try_from).transpose()
    }

    async fn list_tasks(&self, page: &Page) -> StoreResult<Vec<BackgroundTask>> {
        let mut qb = QueryBuilder::new("SELECT * FROM background_tasks WHERE TRUE");
        push_page(&mut qb, "id", page);
        collect(qb.build_query_as::<TaskRow>().fetch_all(&self.pool).await?)
    }

    async fn take_over_tasks(
        &self,
        stale_before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<BackgroundTask>> {
        // Other nodes may be alive: only tasks nobody moved on lately are orphans.
        let rows: Vec<TaskRow> = sqlx::query_as(
            "UPDATE background_tasks SET updated_at = $1 WHERE id IN (SELECT id FROM background_tasks \
             WHERE status = 'running' AND updated_at < $2 FOR UPDATE SKIP LOCKED) RETURNING *",
        )
        .bind(ms(now))
        .bind(ms(stale_before))
        .fetch_all(&self.pool)
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
            qb.push(" AND jsonb_exists(m.channels::jsonb, ")
                .push_bind(channel.clone())
                .push(")");
        }
        push_page(&mut qb, "a.id", page);
        collect(qb.build_query_as::<AttemptRow>().fetch_all(&self.pool).await?)
    }

    async fn get_attempt(&self, app: &AppId, id: &AttemptId) -> StoreResult<Option<Attempt>> {
        let sql = format!(
            "SELECT {ATTEMPT_COLUMNS} FROM attempts a JOIN messages m ON m.id = a.msg_id WHERE a.app_id = $1 AND a.id = $2"
        );
        let row: Option<AttemptRow> = sqlx::query_as(&sql)
            .bind(app.as_str())
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(Attempt::try_from).transpose()
    }

    async fn create_token(&self, token: &ApiToken) -> StoreResult<()> {
        insert_token_query(token).build().execute(&self.pool).await?;
        Ok(())
    }

    async fn find_token(&self, token_hash: &str) -> StoreResult<Option<ApiToken>> {
        let mut qb = tokens_query(&Page::first(1), Some(("token_hash", token_hash)));
        let row: Option<TokenRow> = qb.build_query_as().fetch_optional(&self.pool).await?;
        row.map(ApiToken::try_from).transpose()
    }

    async fn get_token(&self, id: &TokenId) -> StoreResult<Option<ApiToken>> {
        let mut qb = tokens_query(&Page::first(1), Some(("id", id.as_str())));
        let row: Option<TokenRow> = qb.build_query_as().fetch_optional(&self.pool).await?;
        row.map(ApiToken::try_from).transpose()
    }

    async fn list_tokens(&self, page: &Page) -> StoreResult<Vec<ApiToken>> {
        let mut qb = tokens_query(page, None);
        collect(qb.build_query_as::<TokenRow>().fetch_all(&self.pool).await?)
    }

    async fn revoke_token(&self, id: &TokenId, now: DateTime<Utc>) -> StoreResult<bool> {
        let done = revoke_token_query(id, now).build().execute(&self.pool).await?;
        Ok(done.rows_affected() > 0)
    }

    async fn idempotency_begin(&self, key: &str, now: DateTime<Utc>, ttl: Duration) -> StoreResult<IdempotencyState> {
        let oldest = ms(now) - i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
        sqlx::query("DELETE FROM idempotency_keys WHERE key = $1 AND created_at < $2")
            .bind(key)
            .bind(oldest)
            .execute(&self.pool)
            .await?;
        let inserted =
            sqlx::query("INSERT INTO idempotency_keys (key, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(key)
                .bind(ms(now))
                .execute(&self.pool)
                .await?;
        if inserted.rows_affected() == 1 {
            return Ok(IdempotencyState::New);
        }
        let existing: Option<(Option<i64>, Option<Vec<u8>>)> =
            sqlx::query_as("SELECT status_code, body FROM idempotency_keys WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
        Ok(idempotency_state(existing))
    }

    async fn idempotency_finish(&self, key: &str, status: u16, body: &[u8]) -> StoreResult<()> {
        sqlx::query("UPDATE idempotency_keys SET status_code = $1, body = $2 WHERE key = $3")
            .bind(i64::from(status))
            .bind(body)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn idempotency_abandon(&self, key: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM idempotency_keys WHERE key = $1 AND status_code IS NULL")
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// Wakes every node's dispatcher once the transaction commits.
pub(super) async fn notify(tx: &mut sqlx::Transaction<'_, Postgres>) -> StoreResult<()> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(WAKE_CHANNEL)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Removes a message's payload and every body rendered from it.
async fn clear_payload(tx: &mut sqlx::Transaction<'_, Postgres>, msg: &str, now: i64) -> StoreResult<()> {
    sqlx::query("UPDATE messages SET payload = '{}', payload_removed_at = $1 WHERE id = $2")
        .bind(now)
        .bind(msg)
        .execute(&mut **tx)
        .await?;
    sqlx::query("UPDATE attempts SET request_body = '' WHERE msg_id = $1 AND request_body IS NOT NULL")
        .bind(msg)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn insert_event_type(pool: &PgPool, et: &EventType, replace: bool) -> Result<(), sqlx::Error> {
    let conflict = if replace {
        " ON CONFLICT (name) DO UPDATE SET description = excluded.description, archived = excluded.archived, \
         deprecated = excluded.deprecated, schemas = excluded.schemas, group_name = excluded.group_name, \
         feature_flags = excluded.feature_flags, updated_at = excluded.updated_at"
    } else {
        ""
    };
    sqlx::query(&format!(
        "INSERT INTO event_types (name, description, archived, deprecated, schemas, group_name, feature_flags, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9){conflict}"
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

/// Wakes every node's dispatcher once the batch commits, if it created work.
pub(super) async fn after_batch(tx: &mut sqlx::Transaction<'_, Postgres>, created: usize) -> StoreResult<()> {
    if created > 0 {
        notify(tx).await?;
    }
    Ok(())
}
