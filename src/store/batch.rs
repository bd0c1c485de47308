//! Group commit: publishes, attempt results and deferrals waiting at the
//! same time share one transaction, so one commit (one fsync, one round of
//! locks) makes many of them durable. Each backend writes a batch its own
//! way ([`BatchWriter`]); the queue and the answers are shared here.
//!
//! No caller is answered before the commit that makes its write durable;
//! when a batch cannot be committed, every caller in it gets `Unavailable`
//! (answered 503 with Retry-After, or retried by the dispatcher).

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use super::*;
use crate::domain::ids::DeliveryId;

/// Most operations committed together; bounds the time one batch holds the writer.
const MAX_BATCH: usize = 512;
/// Operations waiting for the writer before callers wait to enqueue.
const QUEUE: usize = 4096;

pub(super) type Answer<T> = oneshot::Sender<StoreResult<T>>;

enum Write {
    Publish(Message, Answer<usize>),
    Complete(Completion, Answer<()>),
    Defer(Deferral, Answer<()>),
}

/// A claimed delivery sent back to wait, without an attempt.
pub(super) struct Deferral {
    pub(super) delivery_id: DeliveryId,
    pub(super) lease_token: i64,
    pub(super) until: i64,
}

/// What recording an attempt needs of its job.
pub(super) struct Completion {
    pub(super) delivery_id: DeliveryId,
    pub(super) app_id: AppId,
    /// Its endpoint: a FIFO endpoint's next delivery comes due once it is finished.
    pub(super) endpoint_id: EndpointId,
    pub(super) lease_token: i64,
    pub(super) attempt: Attempt,
    pub(super) next: NextStep,
}

/// One batch, sorted by kind.
#[derive(Default)]
pub(super) struct Batch {
    /// Publishes with an eventId, which may collide: each needs a savepoint.
    pub(super) keyed: Vec<(Message, Answer<usize>)>,
    pub(super) plain: Vec<(Message, Answer<usize>)>,
    pub(super) completions: Vec<(Completion, Answer<()>)>,
    pub(super) deferrals: Vec<(Deferral, Answer<()>)>,
}

impl Batch {
    /// Answers every operation still in the batch with `Unavailable`.
    pub(super) fn fail_all(self, reason: &str) {
        for (_, answer) in self.keyed.into_iter().chain(self.plain) {
            let _ = answer.send(Err(unavailable(reason)));
        }
        let completions = self.completions.into_iter().map(|(_, a)| a);
        for answer in completions.chain(self.deferrals.into_iter().map(|(_, a)| a)) {
            let _ = answer.send(Err(unavailable(reason)));
        }
    }
}

/// The operations a transaction wrote, answered once it commits or fails.
#[derive(Default)]
pub(super) struct Written {
    pub(super) published: Vec<(Answer<usize>, usize)>,
    pub(super) done: Vec<Answer<()>>,
}

impl Written {
    pub(super) fn answer(self, committed: Result<(), String>) {
        match committed {
            Ok(()) => {
                for (answer, n) in self.published {
                    let _ = answer.send(Ok(n));
                }
                for answer in self.done {
                    let _ = answer.send(Ok(()));
                }
            }
            Err(reason) => {
                for (answer, _) in self.published {
                    let _ = answer.send(Err(unavailable(&reason)));
                }
                for answer in self.done {
                    let _ = answer.send(Err(unavailable(&reason)));
                }
            }
        }
    }
}

pub(super) fn unavailable(reason: &str) -> StoreError {
    StoreError::Unavailable(format!("the write was not committed: {reason}"))
}

/// Writes a batch in one transaction and answers every caller in it.
#[async_trait]
pub(super) trait BatchWriter: Send + Sync + 'static {
    async fn commit(&self, batch: Batch);
}

#[derive(Clone)]
pub(super) struct Batcher {
    queue: mpsc::Sender<Write>,
}

impl Batcher {
    /// Starts the writer task; it ends when the last `Batcher` is dropped.
    pub(super) fn start(writer: impl BatchWriter) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(writer, rx));
        Self { queue }
    }

    pub(super) async fn publish(&self, msg: Message) -> StoreResult<usize> {
        let (tx, rx) = oneshot::channel();
        self.submit(Write::Publish(msg, tx), rx).await
    }

    pub(super) async fn defer(&self, deferral: Deferral) -> StoreResult<()> {
        let (tx, rx) = oneshot::channel();
        self.submit(Write::Defer(deferral, tx), rx).await
    }

    pub(super) async fn complete(&self, completion: Completion) -> StoreResult<()> {
        let (tx, rx) = oneshot::channel();
        self.submit(Write::Complete(completion, tx), rx).await
    }

    async fn submit<T>(&self, write: Write, answer: oneshot::Receiver<StoreResult<T>>) -> StoreResult<T> {
        let stopped = || StoreError::Unavailable("the database writer has stopped".to_owned());
        self.queue.send(write).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run(writer: impl BatchWriter, mut rx: mpsc::Receiver<Write>) {
    let mut writes = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut writes, MAX_BATCH).await > 0 {
        let mut batch = Batch::default();
        for write in writes.drain(..) {
            match write {
                Write::Publish(msg, answer) if msg.event_id.is_some() => batch.keyed.push((msg, answer)),
                Write::Publish(msg, answer) => batch.plain.push((msg, answer)),
                Write::Complete(c, answer) => batch.completions.push((c, answer)),
                Write::Defer(d, answer) => batch.deferrals.push((d, answer)),
            }
        }
        writer.commit(batch).await;
    }
}

/// One backend's batch writer: the same statements, built with each
/// backend's `QueryBuilder`, and the backend's `after_batch` hook (PostgreSQL
/// wakes other nodes there). Expanded in `sqlite_batch.rs` and `pg_batch.rs`.
macro_rules! batch_writer {
    ($writer:ident, $db:ident, $pool:ty, $backend:ident) => {
        use std::collections::{BTreeSet, HashMap};

        use async_trait::async_trait;
        use sqlx::{QueryBuilder, Transaction};

        use super::batch::{Batch, BatchWriter, Completion, Deferral, Written};
        use super::rows::*;
        use super::*;
        use crate::domain::ids::DeliveryId;
        use crate::domain::status::{DeliveryStatus, TriggerType};

/// Rows per multi-row statement: well under either backend's bound-parameter limit.
const ROWS_PER_STATEMENT: usize = 400;

pub(super) struct $writer(pub(super) $pool);

#[async_trait]
impl BatchWriter for $writer {
    async fn commit(&self, batch: Batch) {
        let mut tx = match self.0.begin().await {
            Ok(tx) => tx,
            Err(e) => return batch.fail_all(&e.to_string()),
        };
        let mut targets: HashMap<AppId, Vec<TargetRow>> = HashMap::new();
        // FIFO queues first, locked before anything is queued in them.
        let fifo = match fifo_queues_of(&mut tx, &batch, &mut targets).await {
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
        } = batch;
        let mut written = Written::default();
        // Each publish with an eventId in a savepoint: a duplicate fails alone.
        for (msg, answer) in keyed {
            let result = match savepoint(&mut tx).await {
                Ok(()) => publish_one(&mut tx, &msg, &mut targets, &fifo).await,
                Err(e) => Err(e),
            };
            match end_savepoint(&mut tx, result).await {
                Ok(n) => written.published.push((answer, n)),
                Err(e) => drop(answer.send(Err(e))),
            }
        }
        // Everything else in a few multi-row statements; a failure there
        // fails the whole batch.
        let keyed_created: usize = written.published.iter().map(|(_, n)| *n).sum();
        let bulk = async {
            let counts = publish_many(&mut tx, plain.iter().map(|(m, _)| m), &mut targets, &fifo).await?;
            complete_many(&mut tx, completions.iter().map(|(c, _)| c)).await?;
            for (d, _) in &deferrals {
                defer_one(&mut tx, d).await?;
            }
            promote_heads(&mut tx, &fifo, ms(chrono::Utc::now())).await?;
            let created = keyed_created + counts.iter().sum::<usize>();
            super::$backend::after_batch(&mut tx, created).await?;
            Ok::<_, StoreError>(counts)
        }
        .await;
        let counts = match bulk {
            Ok(counts) => counts,
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
        written.answer(tx.commit().await.map_err(|e| e.to_string()));
    }
}

/// The FIFO endpoints this batch queues into or finishes a delivery of,
/// locked. Publishes count only endpoints read as FIFO with their targets;
/// completions count every endpoint, so a switch to FIFO while deliveries
/// were in flight still moves the queue on when they finish.
async fn fifo_queues_of(
    tx: &mut Transaction<'_, $db>,
    batch: &Batch,
    targets: &mut HashMap<AppId, Vec<TargetRow>>,
) -> StoreResult<BTreeSet<String>> {
    let mut candidates: BTreeSet<String> =
        batch.completions.iter().map(|(c, _)| c.endpoint_id.as_str().to_owned()).collect();
    for (msg, _) in batch.keyed.iter().chain(&batch.plain) {
        let rows = targets_of(tx, &msg.app_id, targets).await?;
        if !rows.iter().any(TargetRow::is_fifo) {
            continue;
        }
        let matched = matching_endpoints(msg, rows.to_vec())?;
        candidates.extend(matched.into_iter().filter(|t| t.fifo).map(|t| t.id));
    }
    lock_fifo(tx, &candidates).await
}

/// The endpoints among `candidates` that are FIFO now. On PostgreSQL their
/// rows stay locked until the transaction ends, so no other node queues
/// into or moves on their queues meanwhile; locked in id order, so two
/// transactions never wait on each other in a circle.
pub(super) async fn lock_fifo(
    tx: &mut Transaction<'_, $db>,
    candidates: &BTreeSet<String>,
) -> StoreResult<BTreeSet<String>> {
    let mut fifo = BTreeSet::new();
    let ids: Vec<&String> = candidates.iter().collect();
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let mut qb = QueryBuilder::<$db>::new("SELECT id FROM endpoints WHERE ordering = 'fifo' AND id IN (");
        let mut list = qb.separated(", ");
        for id in chunk {
            list.push_bind((*id).clone());
        }
        qb.push(") ORDER BY id");
        qb.push(super::$backend::LOCK_QUEUE);
        let found: Vec<String> = qb.build_query_scalar().fetch_all(&mut **tx).await?;
        fifo.extend(found);
    }
    Ok(fifo)
}

/// Locks one endpoint's queue if it is FIFO: answers it alone, or nothing.
pub(super) async fn lock_queue(tx: &mut Transaction<'_, $db>, endpoint: &str) -> StoreResult<BTreeSet<String>> {
    lock_fifo(tx, &BTreeSet::from([endpoint.to_owned()])).await
}

/// Makes each FIFO endpoint's oldest unfinished delivery due at `now` if it
/// is waiting: the head moves on only once the one before it is finished.
/// Needs the endpoints locked ([`lock_fifo`]).
pub(super) async fn promote_heads(
    tx: &mut Transaction<'_, $db>,
    fifo: &BTreeSet<String>,
    now: i64,
) -> StoreResult<u64> {
    let mut promoted = 0;
    for endpoint in fifo {
        let mut qb = QueryBuilder::<$db>::new("UPDATE deliveries SET next_attempt_at = ");
        qb.push_bind(now)
            .push(" WHERE id = (SELECT id FROM deliveries WHERE endpoint_id = ")
            .push_bind(endpoint.clone())
            .push(format_args!(
                " AND status IN (1, 3) ORDER BY {} LIMIT 1) AND status = 1 AND next_attempt_at IS NULL",
                super::$backend::QUEUE_ORDER
            ));
        promoted += qb.build().execute(&mut **tx).await?.rows_affected();
    }
    Ok(promoted)
}

/// Sends a claimed delivery back to wait until `until`, if the lease is still ours.
async fn defer_one(tx: &mut Transaction<'_, $db>, d: &Deferral) -> StoreResult<()> {
            let mut qb = QueryBuilder::<$db>::new("UPDATE deliveries SET status = 1, next_attempt_at = ");
            qb.push_bind(d.until)
                .push(", lease_token = NULL WHERE id = ")
                .push_bind(d.delivery_id.as_str().to_owned())
                .push(" AND lease_token = ")
                .push_bind(d.lease_token);
            qb.build().execute(&mut **tx).await?;
            Ok(())
        }

        /// Opens a savepoint, so the next operation can be undone alone.
async fn savepoint(tx: &mut Transaction<'_, $db>) -> StoreResult<()> {
    sqlx::query("SAVEPOINT op").execute(&mut **tx).await?;
    Ok(())
}

/// Keeps the operation since the savepoint, or undoes it if it failed.
async fn end_savepoint<T>(tx: &mut Transaction<'_, $db>, result: StoreResult<T>) -> StoreResult<T> {
    if result.is_err() {
        sqlx::query("ROLLBACK TO op").execute(&mut **tx).await?;
    }
    sqlx::query("RELEASE op").execute(&mut **tx).await?;
    result
}

/// The endpoints of `app`, read once per batch: they cannot change inside
/// this transaction, as every write goes through it.
async fn targets_of<'m>(
    tx: &mut Transaction<'_, $db>,
    app: &AppId,
    cache: &'m mut HashMap<AppId, Vec<TargetRow>>,
) -> StoreResult<&'m [TargetRow]> {
    if !cache.contains_key(app) {
        let mut qb = QueryBuilder::<$db>::new(format!("SELECT {TARGET_COLUMNS} FROM endpoints WHERE app_id = "));
        qb.push_bind(app.as_str().to_owned());
        let rows: Vec<TargetRow> = qb.build_query_as().fetch_all(&mut **tx).await?;
        cache.insert(app.clone(), rows);
    }
    Ok(cache.get(app).map(Vec::as_slice).unwrap_or_default())
}

async fn publish_one(
    tx: &mut Transaction<'_, $db>,
    msg: &Message,
    targets: &mut HashMap<AppId, Vec<TargetRow>>,
    fifo: &BTreeSet<String>,
) -> StoreResult<usize> {
    insert_message(tx, msg).await?;
    let rows = targets_of(tx, &msg.app_id, targets).await?.to_vec();
    let now = ms(msg.created_at);
    let matched = matching_endpoints(msg, rows)?;
    for target in &matched {
        let status = target.disposition.initial_status();
        let queued = fifo.contains(&target.id);
        let delivery = insert_delivery(tx, msg, &target.id, TriggerType::Scheduled, now, status, queued).await?;
        if target.disposition == Disposition::Drop {
            let attempt = Attempt::not_sent(msg, &target.id, &target.url, DROPPED_WHILE_DISABLED);
            insert_attempt(tx, &delivery, &msg.app_id, &attempt).await?;
        }
    }
    Ok(matched.iter().filter(|t| t.disposition != Disposition::Drop).count())
}

/// A delivery row to insert.
struct NewDelivery<'m> {
    msg: &'m Message,
    endpoint_id: String,
    status: DeliveryStatus,
    /// Waits behind its FIFO endpoint's head, not due until promoted.
    queued: bool,
}

/// Writes messages without an eventId, and their deliveries, in a few
/// statements. Answers how many deliveries each message got.
async fn publish_many<'m>(
    tx: &mut Transaction<'_, $db>,
    msgs: impl Iterator<Item = &'m Message>,
    targets: &mut HashMap<AppId, Vec<TargetRow>>,
    fifo: &BTreeSet<String>,
) -> StoreResult<Vec<usize>> {
    let msgs: Vec<&Message> = msgs.collect();
    for chunk in msgs.chunks(ROWS_PER_STATEMENT) {
        let mut qb = QueryBuilder::<$db>::new(
            "INSERT INTO messages (id, app_id, event_type, event_id, payload, channels, tags, created_at, audience, \
             expires_at) ",
        );
        qb.push_values(chunk, |mut row, msg| {
            row.push_bind(msg.id.as_str().to_owned())
                .push_bind(msg.app_id.as_str().to_owned())
                .push_bind(msg.event_type.clone())
                .push_bind(None::<String>)
                .push_bind(msg.payload.to_string())
                .push_bind(opt_json(&msg.channels))
                .push_bind(opt_json(&msg.tags))
                .push_bind(ms(msg.created_at))
                .push_bind(opt_json(&msg.audience))
                .push_bind(msg.expires_at.map(ms));
        });
        qb.build().execute(&mut **tx).await?;
    }
    let mut counts = Vec::with_capacity(msgs.len());
    let mut deliveries = Vec::new();
    let mut dropped = Vec::new();
    for msg in &msgs {
        let rows = targets_of(tx, &msg.app_id, targets).await?.to_vec();
        let matched = matching_endpoints(msg, rows)?;
        counts.push(matched.iter().filter(|t| t.disposition != Disposition::Drop).count());
        for target in matched {
            if target.disposition == Disposition::Drop {
                dropped.push((*msg, target.id.clone(), target.url.clone()));
            }
            deliveries.push(NewDelivery {
                msg,
                queued: fifo.contains(&target.id),
                endpoint_id: target.id,
                status: target.disposition.initial_status(),
            });
        }
    }
    let mut drop_ids = HashMap::new();
    for chunk in deliveries.chunks(ROWS_PER_STATEMENT) {
        let mut qb = QueryBuilder::<$db>::new(
            "INSERT INTO deliveries (id, msg_id, endpoint_id, app_id, status, trigger_type, attempts, \
             next_attempt_at, created_at, updated_at) ",
        );
        qb.push_values(chunk, |mut row, d| {
            let id = DeliveryId::generate();
            let now = ms(d.msg.created_at);
            if d.status == DeliveryStatus::Dropped {
                drop_ids.insert((d.msg.id.as_str().to_owned(), d.endpoint_id.clone()), id.clone());
            }
            row.push_bind(id.as_str().to_owned())
                .push_bind(d.msg.id.as_str().to_owned())
                .push_bind(d.endpoint_id.clone())
                .push_bind(d.msg.app_id.as_str().to_owned())
                .push_bind(d.status.code())
                .push_bind(TriggerType::Scheduled.code())
                .push_bind(0_i64)
                .push_bind((d.status == DeliveryStatus::Pending && !d.queued).then_some(now))
                .push_bind(now)
                .push_bind(now);
        });
        qb.build().execute(&mut **tx).await?;
    }
    for (msg, endpoint_id, url) in dropped {
        if let Some(delivery) = drop_ids.get(&(msg.id.as_str().to_owned(), endpoint_id.clone())) {
            let attempt = Attempt::not_sent(msg, &endpoint_id, &url, DROPPED_WHILE_DISABLED);
            insert_attempt(tx, delivery, &msg.app_id, &attempt).await?;
        }
    }
    Ok(counts)
}

/// Records attempts and moves their deliveries on, in a few statements.
/// As one at a time would: an attempt whose delivery was deleted meanwhile
/// is not recorded, and only the lease holder moves a delivery on.
async fn complete_many<'c>(
    tx: &mut Transaction<'_, $db>,
    completions: impl Iterator<Item = &'c Completion>,
) -> StoreResult<()> {
    let completions: Vec<&Completion> = completions.collect();
    for chunk in completions.chunks(ROWS_PER_STATEMENT / 2) {
        let rows: Vec<AttemptOf<'_>> = chunk.iter().map(|c| (&c.delivery_id, &c.app_id, &c.attempt)).collect();
        insert_attempts(tx, &rows).await?;

        let mut qb = QueryBuilder::<$db>::new("WITH v (id, status, next_at, updated_at, token) AS (");
        qb.push_values(chunk, |mut row, c| {
            let (status, next_at) = delivery_state(c.next);
            row.push_bind(c.delivery_id.as_str().to_owned())
                .push_bind(status.code())
                .push_bind(next_at)
                .push_bind(ms(c.attempt.created_at))
                .push_bind(c.lease_token);
        });
        qb.push(
            ") UPDATE deliveries SET status = v.status, next_attempt_at = v.next_at, attempts = attempts + 1, \
             lease_token = NULL, updated_at = v.updated_at FROM v \
             WHERE deliveries.id = v.id AND deliveries.lease_token = v.token",
        );
        qb.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// An attempt with the delivery and application it belongs to.
type AttemptOf<'a> = (&'a DeliveryId, &'a AppId, &'a Attempt);

/// Records attempts in one statement; those whose delivery was deleted
/// meanwhile are left out.
async fn insert_attempts(tx: &mut Transaction<'_, $db>, rows: &[AttemptOf<'_>]) -> StoreResult<()> {
    let mut qb = QueryBuilder::<$db>::new(
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
         status_class) SELECT * FROM v WHERE EXISTS (SELECT 1 FROM deliveries d WHERE d.id = v.delivery_id)",
    );
    qb.build().execute(&mut **tx).await?;
    Ok(())
}

/// Writes one message; a duplicate eventId is a conflict.
pub(super) async fn insert_message(tx: &mut Transaction<'_, $db>, msg: &Message) -> StoreResult<()> {
    let mut qb = QueryBuilder::<$db>::new(
        "INSERT INTO messages (id, app_id, event_type, event_id, payload, channels, tags, created_at, audience, \
         expires_at) ",
    );
    qb.push_values([msg], |mut row, msg| {
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
    qb.build()
        .execute(&mut **tx)
        .await
        .map_err(|e| uid_conflict(e, "a message with this eventId already exists in this application"))?;
    Ok(())
}

/// Writes one delivery of `msg` to an endpoint; due now only when pending
/// and not `queued` behind its FIFO endpoint's head.
pub(super) async fn insert_delivery(
    tx: &mut Transaction<'_, $db>,
    msg: &Message,
    endpoint_id: &str,
    trigger: TriggerType,
    now: i64,
    status: DeliveryStatus,
    queued: bool,
) -> StoreResult<DeliveryId> {
    let id = DeliveryId::generate();
    let mut qb = QueryBuilder::<$db>::new(
        "INSERT INTO deliveries (id, msg_id, endpoint_id, app_id, status, trigger_type, attempts, \
         next_attempt_at, created_at, updated_at) ",
    );
    qb.push_values([()], |mut row, ()| {
        row.push_bind(id.as_str().to_owned())
            .push_bind(msg.id.as_str().to_owned())
            .push_bind(endpoint_id.to_owned())
            .push_bind(msg.app_id.as_str().to_owned())
            .push_bind(status.code())
            .push_bind(trigger.code())
            .push_bind(0_i64)
            .push_bind((status == DeliveryStatus::Pending && !queued).then_some(now))
            .push_bind(now)
            .push_bind(now);
    });
    qb.build().execute(&mut **tx).await?;
    Ok(id)
}

/// Records one attempt, unless its delivery was deleted meanwhile (with
/// its endpoint or message).
pub(super) async fn insert_attempt(
    tx: &mut Transaction<'_, $db>,
    delivery: &DeliveryId,
    app: &AppId,
    attempt: &Attempt,
) -> StoreResult<()> {
    insert_attempts(tx, &[(delivery, app, attempt)]).await
}
    };
}
pub(super) use batch_writer;
