//! The statements that write the delivery queue, over any [`Dialect`]: the
//! group commit's batch in one transaction, and the single writes (a
//! delivery, a message, a FIFO head) the store shares with it.

use std::collections::{BTreeSet, HashMap};
use std::marker::PhantomData;

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use sqlx::{ColumnIndex, Pool, QueryBuilder, Transaction};

use super::batch::{Batch, Batcher, Completion, Deferral, Written};
use super::dialect::{Column, Connection, Dialect, QUEUED, RowLock, RowOf, execute, rows_as, state};
use super::handoff::{Leased, Leases};
use super::rows::*;
use super::*;
use crate::domain::fanout::{Disposition, Target, matching_endpoints};
use crate::domain::ids::DeliveryId;
use crate::domain::sealing::Sealer;
use crate::domain::status::{DeliveryStatus, TriggerType};

/// Rows per multi-row statement: well under either backend's bound-parameter limit.
const ROWS_PER_STATEMENT: usize = 400;

const EVENT_ID_TAKEN: &str = "a message with this eventId already exists in this application";

/// The endpoints of each application a batch publishes to, read once.
type TargetCache = HashMap<AppId, Vec<Target>>;

/// The queue's statements for dialect `D`.
pub struct Queue<D>(PhantomData<D>);

/// A delivery row to insert.
struct NewDelivery<'m> {
    id: DeliveryId,
    msg: &'m Message,
    endpoint_id: String,
    status: DeliveryStatus,
    trigger: TriggerType,
    /// When it was made, in the store's milliseconds.
    at: i64,
    /// Waits behind its FIFO endpoint's head, not due until promoted.
    queued: bool,
    /// Leased in this batch and handed to the dispatcher.
    leased: bool,
}

impl NewDelivery<'_> {
    /// The state it is written in, when it is next due, and its lease.
    fn state(&self, leases: &Leases) -> (DeliveryStatus, Option<i64>, Option<i64>) {
        if self.leased {
            return (DeliveryStatus::Sending, Some(leases.until), Some(leases.token));
        }
        let due = self.status == DeliveryStatus::Pending && !self.queued;
        (self.status, due.then_some(self.at), None)
    }
}

/// An attempt with the delivery and application it belongs to.
type AttemptOf<'a> = (&'a DeliveryId, &'a AppId, &'a Attempt);

impl<D: Dialect> Queue<D>
where
    i64: Column<D::Db>,
    String: Column<D::Db>,
    bool: Column<D::Db>,
    Option<i64>: Column<D::Db>,
    Option<String>: Column<D::Db>,
    usize: ColumnIndex<RowOf<D::Db>>,
    for<'s> &'s str: ColumnIndex<RowOf<D::Db>>,
{
    /// Starts the group-commit writer on `pool`; `sealer` opens the
    /// secrets of the jobs it hands to the dispatcher.
    pub fn start_writer(pool: Pool<D::Db>, clock: Clock, sealer: Sealer) -> Batcher {
        Batcher::start(move |batch| Self::commit(pool.clone(), clock.now(), batch, sealer.clone()))
    }

    /// Reserves up to `limit` due deliveries for `lease`, marking them
    /// sending, in one transaction on `conn`; answers them read to be sent.
    pub async fn claim(
        conn: &mut Connection<D>,
        now: DateTime<Utc>,
        limit: u32,
        lease: Duration,
    ) -> StoreResult<Vec<JobRow>> {
        let lease_until = ms(now) + i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2);
        let token: i64 = rand::thread_rng().gen_range(1..i64::MAX);
        let mut tx = sqlx::Connection::begin(conn).await?;
        // Claim: on a shared database, nodes claiming at once each get
        // different rows, without waiting. RETURNING: the claimed rows are
        // then read by their keys, not found by their token. Joined on the
        // message's id too, which picks the day's partition on PostgreSQL.
        let sql = format!(
            "UPDATE deliveries SET status = {}, next_attempt_at = $1, lease_token = $2, updated_at = $3 \
             FROM (SELECT msg_id, id FROM deliveries WHERE status IN ({QUEUED}) AND next_attempt_at <= $3 \
                   ORDER BY next_attempt_at LIMIT $4{}) due \
             WHERE deliveries.msg_id = due.msg_id AND deliveries.id = due.id \
             RETURNING deliveries.msg_id, deliveries.id",
            state(DeliveryStatus::Sending),
            D::lock(RowLock::Claim),
        );
        let claimed: Vec<(String, String)> = sqlx::query_as(&sql)
            .bind(lease_until)
            .bind(token)
            .bind(ms(now))
            .bind(i64::from(limit))
            .fetch_all(D::exec(&mut *tx))
            .await?;
        if claimed.is_empty() {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        let rows: Vec<JobRow> = rows_as::<D, _>(&mut claimed_jobs_query(&claimed))
            .fetch_all(D::exec(&mut *tx))
            .await?;
        tx.commit().await?;
        Ok(rows)
    }

    /// Writes `notices` inside `tx`: the operational messages with their
    /// deliveries (queued behind FIFO heads like any publish) and the
    /// emails. Wakes other nodes when a delivery was created.
    pub async fn note(tx: &mut Transaction<'_, D::Db>, notices: &Notices) -> StoreResult<()> {
        if notices.is_empty() {
            return Ok(());
        }
        let mut targets = TargetCache::new();
        let mut candidates = BTreeSet::new();
        for msg in &notices.messages {
            let publication = publication(msg);
            let matched = matching_endpoints(&publication, Self::targets_of(tx, &msg.app_id, &mut targets).await?);
            candidates.extend(matched.filter(|(t, _)| t.is_fifo()).map(|(t, _)| t.id.clone()));
        }
        let fifo = Self::lock_fifo(tx, &candidates).await?;
        let mut leases = Leases::new(None, 0);
        let created: usize = Self::publish_many(tx, notices.messages.iter(), &mut targets, &fifo, &mut leases)
            .await?
            .iter()
            .sum();
        if let Some(first) = notices.messages.first() {
            Self::promote_heads(tx, &fifo, ms(first.created_at)).await?;
        }
        let emails: Vec<&OperatorEmail> = notices.emails.iter().collect();
        Self::insert_emails(tx, &emails).await?;
        if created > 0 {
            D::wake_others(tx).await?;
        }
        Ok(())
    }

    /// Queues operator emails, due now.
    async fn insert_emails(tx: &mut Transaction<'_, D::Db>, emails: &[&OperatorEmail]) -> StoreResult<()> {
        for chunk in emails.chunks(ROWS_PER_STATEMENT) {
            let mut qb = QueryBuilder::new(
                "INSERT INTO operator_emails (id, subject, body, state, tries, next_attempt_at, created_at, updated_at) ",
            );
            qb.push_values(chunk, |mut row, e| {
                let now = ms(e.created_at);
                row.push_bind(e.id.as_str().to_owned())
                    .push_bind(e.subject.clone())
                    .push_bind(e.body.clone())
                    .push_bind(EmailState::Pending.name().to_owned())
                    .push_bind(0_i64)
                    .push_bind(now)
                    .push_bind(now)
                    .push_bind(now);
            });
            execute::<D>(&mut qb, &mut **tx).await?;
        }
        Ok(())
    }

    /// Removes a message's payload and every body rendered from it.
    pub async fn clear_payload(tx: &mut Transaction<'_, D::Db>, msg: &str, now: i64) -> StoreResult<()> {
        sqlx::query("UPDATE messages SET payload = '{}', payload_removed_at = $1 WHERE id = $2")
            .bind(now)
            .bind(msg.to_owned())
            .execute(D::exec(&mut **tx))
            .await?;
        sqlx::query("UPDATE attempts SET request_body = '' WHERE msg_id = $1 AND request_body IS NOT NULL")
            .bind(msg.to_owned())
            .execute(D::exec(&mut **tx))
            .await?;
        Ok(())
    }

    /// Writes a batch in one transaction and answers every caller in it.
    /// `now` is when the batch is written: FIFO heads freed by it come due
    /// then, and the fresh deliveries it leases are leased from then.
    pub async fn commit(pool: Pool<D::Db>, now: DateTime<Utc>, batch: Batch, sealer: Sealer) {
        let mut tx = match pool.begin().await {
            Ok(tx) => tx,
            Err(e) => return batch.fail_all(&e.to_string()),
        };
        let mut targets = TargetCache::new();
        // FIFO queues first, locked before anything is queued in them.
        let fifo = match Self::fifo_queues_of(&mut tx, &batch, &mut targets).await {
            Ok(fifo) => fifo,
            Err(e) => {
                let _ = tx.rollback().await;
                return batch.fail_all(&e.to_string());
            }
        };
        let Batch {
            keyed,
            plain,
            completions,
            deferrals,
            handoff,
        } = batch;
        let mut leases = Leases::new(handoff, ms(now));
        let mut written = Written::default();
        // Each publish with an eventId in a savepoint: a duplicate fails alone.
        for (msg, answer) in keyed {
            let mark = leases.mark();
            let result = match Self::savepoint(&mut tx).await {
                Ok(()) => Self::publish_one(&mut tx, &msg, &mut targets, &fifo, &mut leases).await,
                Err(e) => Err(e),
            };
            match Self::end_savepoint(&mut tx, result).await {
                Ok(n) => written.published.push((answer, n)),
                Err(e) => {
                    // Rolled back: what it leased was never written.
                    leases.forget_since(mark);
                    drop(answer.send(Err(e)));
                }
            }
        }
        // Everything else in a few multi-row statements; a failure there
        // fails the whole batch.
        let keyed_created: usize = written.published.iter().map(|(_, n)| *n).sum();
        let bulk = async {
            // The operator's notices of the attempts ride with the publishes.
            let noted = completions.iter().flat_map(|(c, _)| &c.notices.messages);
            let published = plain.iter().map(|(m, _)| m).chain(noted);
            let mut counts = Self::publish_many(&mut tx, published, &mut targets, &fifo, &mut leases).await?;
            let noted_created: usize = counts.split_off(plain.len()).iter().sum();
            Self::complete_many(&mut tx, completions.iter().map(|(c, _)| c)).await?;
            let emails: Vec<&OperatorEmail> = completions.iter().flat_map(|(c, _)| &c.notices.emails).collect();
            Self::insert_emails(&mut tx, &emails).await?;
            for (d, _) in &deferrals {
                Self::defer_one(&mut tx, d).await?;
            }
            Self::promote_heads(&mut tx, &fifo, ms(now)).await?;
            if keyed_created + noted_created + counts.iter().sum::<usize>() > 0 {
                D::wake_others(&mut tx).await?;
            }
            let handed = Self::leased_endpoints(&mut tx, &leases).await?;
            Ok::<_, StoreError>((counts, handed))
        }
        .await;
        let (counts, handed) = match bulk {
            Ok(done) => done,
            Err(e) => {
                let _ = tx.rollback().await;
                let reason = e.to_string();
                written.answer(Err(reason.clone()));
                let rest = Batch {
                    plain,
                    completions,
                    deferrals,
                    ..Batch::default()
                };
                return rest.fail_all(&reason);
            }
        };
        written.published.extend(plain.into_iter().map(|(_, a)| a).zip(counts));
        written.done.extend(completions.into_iter().map(|(_, a)| a));
        written.done.extend(deferrals.into_iter().map(|(_, a)| a));
        let committed = tx.commit().await.map_err(|e| e.to_string());
        if committed.is_ok() {
            leases.hand(&open_endpoints(handed, &sealer));
        }
        written.answer(committed);
    }

    /// The endpoints of the deliveries this batch leased, with their
    /// applications' profiles, read in its transaction: the rest of each
    /// job is what the batch wrote.
    async fn leased_endpoints(
        tx: &mut Transaction<'_, D::Db>,
        leases: &Leases,
    ) -> StoreResult<Vec<ProfiledEndpointRow>> {
        let ids = leases.endpoint_ids();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut qb = QueryBuilder::new(format!(
            "SELECT {ENDPOINT_COLUMNS}, a.profile AS app_profile \
             FROM endpoints e JOIN applications a ON a.id = e.app_id WHERE TRUE"
        ));
        push_in(&mut qb, "e.id", &ids);
        Ok(rows_as::<D, _>(&mut qb).fetch_all(D::exec(&mut **tx)).await?)
    }

    /// The FIFO endpoints this batch queues into or finishes a delivery of,
    /// locked. Publishes count only endpoints read as FIFO with their targets;
    /// completions count every endpoint, so a switch to FIFO while deliveries
    /// were in flight still moves the queue on when they finish.
    async fn fifo_queues_of(
        tx: &mut Transaction<'_, D::Db>,
        batch: &Batch,
        cache: &mut TargetCache,
    ) -> StoreResult<BTreeSet<String>> {
        let mut candidates: BTreeSet<String> = batch
            .completions
            .iter()
            .map(|(c, _)| c.endpoint_id.as_str().to_owned())
            .collect();
        let noted = batch.completions.iter().flat_map(|(c, _)| &c.notices.messages);
        for msg in batch.keyed.iter().chain(&batch.plain).map(|(m, _)| m).chain(noted) {
            let targets = Self::targets_of(tx, &msg.app_id, cache).await?;
            if !targets.iter().any(Target::is_fifo) {
                continue;
            }
            let publication = publication(msg);
            let matched = matching_endpoints(&publication, targets);
            candidates.extend(matched.filter(|(t, _)| t.is_fifo()).map(|(t, _)| t.id.clone()));
        }
        Self::lock_fifo(tx, &candidates).await
    }

    /// The endpoints among `candidates` that are FIFO now. On a shared
    /// database their rows stay locked until the transaction ends, so no
    /// other node queues into or moves on their queues meanwhile; locked in
    /// id order, so two transactions never wait on each other in a circle.
    pub async fn lock_fifo(
        tx: &mut Transaction<'_, D::Db>,
        candidates: &BTreeSet<String>,
    ) -> StoreResult<BTreeSet<String>> {
        let mut fifo = BTreeSet::new();
        let ids: Vec<&String> = candidates.iter().collect();
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            let mut qb = QueryBuilder::new("SELECT id FROM endpoints WHERE ordering = 'fifo' AND id IN (");
            let mut list = qb.separated(", ");
            for id in chunk {
                list.push_bind((*id).clone());
            }
            qb.push(") ORDER BY id");
            qb.push(D::lock(RowLock::Queue));
            let found: Vec<(String,)> = rows_as::<D, _>(&mut qb).fetch_all(D::exec(&mut **tx)).await?;
            fifo.extend(found.into_iter().map(|(id,)| id));
        }
        Ok(fifo)
    }

    /// Locks one endpoint's queue if it is FIFO: answers it alone, or nothing.
    pub async fn lock_queue(tx: &mut Transaction<'_, D::Db>, endpoint: &str) -> StoreResult<BTreeSet<String>> {
        Self::lock_fifo(tx, &BTreeSet::from([endpoint.to_owned()])).await
    }

    /// Makes each FIFO endpoint's oldest unfinished delivery due at `now` if
    /// it is waiting: the head moves on only once the one before it is
    /// finished. Needs the endpoints locked ([`Self::lock_fifo`]).
    pub async fn promote_heads(tx: &mut Transaction<'_, D::Db>, fifo: &BTreeSet<String>, now: i64) -> StoreResult<u64> {
        let mut promoted = 0;
        for endpoint in fifo {
            let mut qb = QueryBuilder::new("UPDATE deliveries SET next_attempt_at = ");
            qb.push_bind(now)
                .push(" WHERE (msg_id, id) = (SELECT msg_id, id FROM deliveries WHERE endpoint_id = ")
                .push_bind(endpoint.clone())
                .push(format_args!(
                    " AND status IN ({QUEUED}) ORDER BY {} LIMIT 1) AND status = {} AND next_attempt_at IS NULL",
                    D::QUEUE_ORDER,
                    state(DeliveryStatus::Pending),
                ));
            promoted += execute::<D>(&mut qb, &mut **tx).await?;
        }
        Ok(promoted)
    }

    /// Sends a claimed delivery back to wait until `until`, if the lease is still ours.
    async fn defer_one(tx: &mut Transaction<'_, D::Db>, d: &Deferral) -> StoreResult<()> {
        let mut qb = QueryBuilder::new(format!(
            "UPDATE deliveries SET status = {}, next_attempt_at = ",
            state(DeliveryStatus::Pending)
        ));
        qb.push_bind(d.until)
            .push(", lease_token = NULL WHERE msg_id = ")
            .push_bind(d.msg_id.as_str().to_owned())
            .push(" AND id = ")
            .push_bind(d.delivery_id.as_str().to_owned())
            .push(" AND lease_token = ")
            .push_bind(d.lease_token);
        execute::<D>(&mut qb, &mut **tx).await?;
        Ok(())
    }

    /// Opens a savepoint, so the next operation can be undone alone.
    async fn savepoint(tx: &mut Transaction<'_, D::Db>) -> StoreResult<()> {
        sqlx::query("SAVEPOINT op").execute(D::exec(&mut **tx)).await?;
        Ok(())
    }

    /// Keeps the operation since the savepoint, or undoes it if it failed.
    async fn end_savepoint<T>(tx: &mut Transaction<'_, D::Db>, result: StoreResult<T>) -> StoreResult<T> {
        if result.is_err() {
            sqlx::query("ROLLBACK TO op").execute(D::exec(&mut **tx)).await?;
        }
        sqlx::query("RELEASE op").execute(D::exec(&mut **tx)).await?;
        result
    }

    /// The endpoints of `app`, read once per batch: they cannot change inside
    /// this transaction, as every write goes through it.
    async fn targets_of<'m>(
        tx: &mut Transaction<'_, D::Db>,
        app: &AppId,
        cache: &'m mut TargetCache,
    ) -> StoreResult<&'m [Target]> {
        if !cache.contains_key(app) {
            let mut qb = QueryBuilder::new(format!("SELECT {TARGET_COLUMNS} FROM endpoints WHERE app_id = "));
            qb.push_bind(app.as_str().to_owned());
            let rows: Vec<TargetRow> = rows_as::<D, _>(&mut qb).fetch_all(D::exec(&mut **tx)).await?;
            let targets = rows
                .into_iter()
                .map(TargetRow::into_target)
                .collect::<StoreResult<_>>()?;
            cache.insert(app.clone(), targets);
        }
        Ok(cache.get(app).map(Vec::as_slice).unwrap_or_default())
    }

    /// Writes a message with an eventId and its deliveries. Answers how
    /// many deliveries it left due for a claim.
    async fn publish_one(
        tx: &mut Transaction<'_, D::Db>,
        msg: &Message,
        cache: &mut TargetCache,
        fifo: &BTreeSet<String>,
        leases: &mut Leases,
    ) -> StoreResult<usize> {
        Self::insert_message(tx, msg).await?;
        let mut counts = Self::write_deliveries(tx, &[msg], cache, fifo, leases).await?;
        Ok(counts.pop().unwrap_or_default())
    }

    /// Writes messages without an eventId, and their deliveries, in a few
    /// statements. Answers how many deliveries each message left due for
    /// a claim: those not dropped, nor leased and handed to the dispatcher.
    async fn publish_many<'m>(
        tx: &mut Transaction<'_, D::Db>,
        msgs: impl Iterator<Item = &'m Message>,
        cache: &mut TargetCache,
        fifo: &BTreeSet<String>,
        leases: &mut Leases,
    ) -> StoreResult<Vec<usize>> {
        let msgs: Vec<&Message> = msgs.collect();
        for chunk in msgs.chunks(ROWS_PER_STATEMENT) {
            Self::insert_messages(tx, chunk).await?;
        }
        Self::write_deliveries(tx, &msgs, cache, fifo, leases).await
    }

    /// Writes the deliveries of messages already written: one per matching
    /// endpoint, leased where the dispatcher has room, and an attempt for
    /// each dropped one. Answers, per message, how many it left due.
    async fn write_deliveries(
        tx: &mut Transaction<'_, D::Db>,
        msgs: &[&Message],
        cache: &mut TargetCache,
        fifo: &BTreeSet<String>,
        leases: &mut Leases,
    ) -> StoreResult<Vec<usize>> {
        let mut counts = Vec::with_capacity(msgs.len());
        let mut deliveries = Vec::new();
        let mut dropped = Vec::new();
        for msg in msgs {
            let publication = publication(msg);
            let mut left_due = 0;
            for (target, disposition) in
                matching_endpoints(&publication, Self::targets_of(tx, &msg.app_id, cache).await?)
            {
                let id = DeliveryId::generate();
                let queued = fifo.contains(&target.id);
                let status = disposition.initial_status();
                let mut leased = false;
                if disposition == Disposition::Drop {
                    dropped.push((*msg, id.clone(), target.id.clone(), target.url.clone()));
                } else if status == DeliveryStatus::Pending
                    && !queued
                    && let Some(slot) = leases.try_take()
                {
                    let delivery = Leased {
                        delivery_id: id.clone(),
                        msg_id: msg.id.clone(),
                        app_id: msg.app_id.clone(),
                        endpoint_id: target.id.clone(),
                        event_type: msg.event_type.clone(),
                        event_id: msg.event_id.clone(),
                        msg_created_at: msg.created_at,
                        payload: msg.payload.clone(),
                    };
                    leases.leased(delivery, slot);
                    leased = true;
                } else {
                    left_due += 1;
                }
                deliveries.push(NewDelivery {
                    id,
                    msg,
                    queued,
                    leased,
                    endpoint_id: target.id.clone(),
                    status,
                    trigger: TriggerType::Scheduled,
                    at: ms(msg.created_at),
                });
            }
            counts.push(left_due);
        }
        Self::insert_deliveries(tx, &deliveries, leases).await?;
        for (msg, delivery, endpoint_id, url) in dropped {
            let attempt = Attempt::not_sent(msg, &endpoint_id, &url, DROPPED_WHILE_DISABLED);
            Self::insert_attempt(tx, &delivery, &msg.app_id, &attempt).await?;
        }
        Ok(counts)
    }

    /// Records attempts and moves their deliveries on, in a few statements.
    /// As one at a time would: an attempt whose delivery was deleted meanwhile
    /// is not recorded, and only the lease holder moves a delivery on.
    async fn complete_many<'c>(
        tx: &mut Transaction<'_, D::Db>,
        completions: impl Iterator<Item = &'c Completion>,
    ) -> StoreResult<()> {
        let completions: Vec<&Completion> = completions.collect();
        for chunk in completions.chunks(ROWS_PER_STATEMENT / 2) {
            let rows: Vec<AttemptOf<'_>> = chunk.iter().map(|c| (&c.delivery_id, &c.app_id, &c.attempt)).collect();
            Self::insert_attempts(tx, &rows).await?;

            let mut qb = QueryBuilder::new("WITH v (msg_id, id, status, next_at, updated_at, token) AS (");
            qb.push_values(chunk, |mut row, c| {
                let (status, next_at) = delivery_state(c.next);
                row.push_bind(c.attempt.msg_id.as_str().to_owned())
                    .push_bind(c.delivery_id.as_str().to_owned())
                    .push_bind(status.code())
                    .push_bind(next_at)
                    .push_bind(ms(c.attempt.created_at))
                    .push_bind(c.lease_token);
            });
            qb.push(
                ") UPDATE deliveries SET status = v.status, next_attempt_at = v.next_at, attempts = attempts + 1, \
                 lease_token = NULL, updated_at = v.updated_at FROM v \
                 WHERE deliveries.msg_id = v.msg_id AND deliveries.id = v.id AND deliveries.lease_token = v.token",
            );
            push_msg_ids(&mut qb, "deliveries.msg_id", chunk.iter().map(|c| &c.attempt.msg_id));
            execute::<D>(&mut qb, &mut **tx).await?;
        }
        Ok(())
    }

    /// Records attempts in one statement; those whose delivery was deleted
    /// meanwhile are left out.
    async fn insert_attempts(tx: &mut Transaction<'_, D::Db>, rows: &[AttemptOf<'_>]) -> StoreResult<()> {
        let mut qb = QueryBuilder::new(
            "WITH v (id, delivery_id, msg_id, endpoint_id, app_id, url, status, response_status_code, response, \
             response_duration_ms, trigger_type, created_at, request_headers, request_body, response_headers, \
             status_class) AS (",
        );
        qb.push_values(rows, |mut row, (delivery, app, a)| {
            row.push_bind(a.id.as_str().to_owned())
                .push_bind(delivery.as_str().to_owned())
                .push_bind(a.msg_id.as_str().to_owned())
                .push_bind(a.endpoint_id.as_str().to_owned())
                .push_bind(app.as_str().to_owned())
                .push_bind(a.url.clone())
                .push_bind(a.status.code())
                .push_bind(a.response_status_code)
                .push_bind(a.response.clone())
                .push_bind(a.response_duration_ms)
                .push_bind(a.trigger_type.code())
                .push_bind(ms(a.created_at))
                .push_bind(opt_json(&a.request_headers))
                .push_bind(a.request_body.clone())
                .push_bind(opt_json(&a.response_headers))
                .push_bind(a.status_class());
        });
        qb.push(
            ") INSERT INTO attempts (id, delivery_id, msg_id, endpoint_id, app_id, url, status, response_status_code, \
             response, response_duration_ms, trigger_type, created_at, request_headers, request_body, response_headers, \
             status_class) SELECT * FROM v \
             WHERE EXISTS (SELECT 1 FROM deliveries d WHERE d.msg_id = v.msg_id AND d.id = v.delivery_id",
        );
        // Planned over the messages' days only, not over every day kept
        // (1.5 ms a statement with 30 days on PostgreSQL, against 0.1 ms).
        push_msg_ids(&mut qb, "d.msg_id", rows.iter().map(|(_, _, a)| &a.msg_id));
        qb.push(")");
        execute::<D>(&mut qb, &mut **tx).await?;
        Ok(())
    }

    /// Writes messages in one statement: the batch's without an eventId, or
    /// one; a duplicate eventId is a conflict.
    async fn insert_messages(tx: &mut Transaction<'_, D::Db>, msgs: &[&Message]) -> StoreResult<()> {
        let mut qb = QueryBuilder::new(
            "INSERT INTO messages (id, app_id, event_type, event_id, payload, channels, tags, created_at, audience, \
             expires_at) ",
        );
        qb.push_values(msgs, |mut row, msg| {
            row.push_bind(msg.id.as_str().to_owned())
                .push_bind(msg.app_id.as_str().to_owned())
                .push_bind(msg.event_type.clone())
                .push_bind(msg.event_id.clone())
                .push_bind(msg.payload.to_string())
                .push_bind(opt_json(&msg.channels))
                .push_bind(opt_json(&msg.tags))
                .push_bind(ms(msg.created_at))
                .push_bind(opt_json(&msg.audience))
                .push_bind(msg.expires_at.map(ms));
        });
        execute::<D>(&mut qb, &mut **tx)
            .await
            .map_err(|e| uid_conflict(e, EVENT_ID_TAKEN))?;
        Self::insert_event_ids(tx, msgs).await
    }

    /// Takes each message's eventId in its application: its own table keeps
    /// it unique across every day of a partitioned history.
    async fn insert_event_ids(tx: &mut Transaction<'_, D::Db>, msgs: &[&Message]) -> StoreResult<()> {
        let keyed: Vec<(&Message, &String)> = msgs
            .iter()
            .filter_map(|m| m.event_id.as_ref().map(|e| (*m, e)))
            .collect();
        if keyed.is_empty() {
            return Ok(());
        }
        let mut qb = QueryBuilder::new("INSERT INTO message_event_ids (app_id, event_id, msg_id) ");
        qb.push_values(keyed, |mut row, (msg, event_id)| {
            row.push_bind(msg.app_id.as_str().to_owned())
                .push_bind(event_id.clone())
                .push_bind(msg.id.as_str().to_owned());
        });
        execute::<D>(&mut qb, &mut **tx)
            .await
            .map_err(|e| uid_conflict(e, EVENT_ID_TAKEN))?;
        Ok(())
    }

    /// Writes one message; a duplicate eventId is a conflict.
    pub async fn insert_message(tx: &mut Transaction<'_, D::Db>, msg: &Message) -> StoreResult<()> {
        Self::insert_messages(tx, &[msg]).await
    }

    /// Writes one delivery of `msg` to an endpoint; due now only when pending
    /// and not `queued` behind its FIFO endpoint's head.
    pub async fn insert_delivery(
        tx: &mut Transaction<'_, D::Db>,
        msg: &Message,
        endpoint_id: &str,
        trigger: TriggerType,
        now: i64,
        status: DeliveryStatus,
        queued: bool,
    ) -> StoreResult<DeliveryId> {
        let delivery = NewDelivery {
            id: DeliveryId::generate(),
            msg,
            endpoint_id: endpoint_id.to_owned(),
            status,
            trigger,
            at: now,
            queued,
            leased: false,
        };
        Self::insert_deliveries(tx, std::slice::from_ref(&delivery), &Leases::new(None, 0)).await?;
        Ok(delivery.id)
    }

    /// Writes delivery rows in a few multi-row statements; a leased one is
    /// written sending, under the batch's lease.
    async fn insert_deliveries(
        tx: &mut Transaction<'_, D::Db>,
        deliveries: &[NewDelivery<'_>],
        leases: &Leases,
    ) -> StoreResult<()> {
        for chunk in deliveries.chunks(ROWS_PER_STATEMENT) {
            let mut qb = QueryBuilder::new(
                "INSERT INTO deliveries (id, msg_id, endpoint_id, app_id, status, trigger_type, attempts, \
                 next_attempt_at, lease_token, created_at, updated_at) ",
            );
            qb.push_values(chunk, |mut row, d| {
                let (status, next_at, lease_token) = d.state(leases);
                row.push_bind(d.id.as_str().to_owned())
                    .push_bind(d.msg.id.as_str().to_owned())
                    .push_bind(d.endpoint_id.clone())
                    .push_bind(d.msg.app_id.as_str().to_owned())
                    .push_bind(status.code())
                    .push_bind(d.trigger.code())
                    .push_bind(0_i64)
                    .push_bind(next_at)
                    .push_bind(lease_token)
                    .push_bind(d.at)
                    .push_bind(d.at);
            });
            execute::<D>(&mut qb, &mut **tx).await?;
        }
        Ok(())
    }

    /// Records one attempt, unless its delivery was deleted meanwhile (with
    /// its endpoint or message).
    async fn insert_attempt(
        tx: &mut Transaction<'_, D::Db>,
        delivery: &DeliveryId,
        app: &AppId,
        attempt: &Attempt,
    ) -> StoreResult<()> {
        Self::insert_attempts(tx, &[(delivery, app, attempt)]).await
    }
}

/// Opens the endpoints a batch leased deliveries to. One that cannot be
/// opened leaves its deliveries to their lease's end and then to a claim,
/// which reports it as a claim does.
fn open_endpoints(rows: Vec<ProfiledEndpointRow>, sealer: &Sealer) -> HashMap<String, (Endpoint, Option<String>)> {
    rows.into_iter()
        .filter_map(|row| {
            let id = row.endpoint.id.clone();
            row.into_pair(sealer)
                .map_err(|e| tracing::error!(error = %e, endpoint = %id, "opening a leased delivery's endpoint failed"))
                .ok()
                .map(|opened| (id, opened))
        })
        .collect()
}
