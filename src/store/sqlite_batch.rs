//! Group commit for SQLite: publishes and attempt results waiting at the
//! same time share one transaction, so one fsync makes many of them durable.
//!
//! SQLite has one writer and `synchronous = FULL` syncs on every commit;
//! committing each message alone caps throughput at the disk's sync rate.
//! Each operation runs in its own savepoint, so one that fails (a duplicate
//! eventId) is rolled back alone, and its caller alone gets the error. No
//! caller is answered before the commit that makes its write durable.

use std::collections::HashMap;

use sqlx::{QueryBuilder, Sqlite, SqlitePool, Transaction};
use tokio::sync::{mpsc, oneshot};

use super::rows::*;
use super::*;
use crate::domain::ids::DeliveryId;
use crate::domain::status::{DeliveryStatus, TriggerType};

/// Most operations committed together; bounds the time one batch holds the writer.
const MAX_BATCH: usize = 512;
/// Operations waiting for the writer before callers wait to enqueue.
const QUEUE: usize = 4096;

pub(super) enum Write {
    Publish(Message, oneshot::Sender<StoreResult<usize>>),
    Complete(Completion, oneshot::Sender<StoreResult<()>>),
    Defer(Deferral, oneshot::Sender<StoreResult<()>>),
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
    pub(super) lease_token: i64,
    pub(super) attempt: Attempt,
    pub(super) next: NextStep,
}

#[derive(Clone)]
pub(super) struct Batcher {
    queue: mpsc::Sender<Write>,
}

impl Batcher {
    /// Starts the writer task; it ends when the last `Batcher` is dropped.
    pub(super) fn start(writer: SqlitePool) -> Self {
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
        let stopped = || StoreError::Unavailable("the SQLite writer has stopped".to_owned());
        self.queue.send(write).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run(writer: SqlitePool, mut rx: mpsc::Receiver<Write>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        commit_batch(&writer, std::mem::take(&mut batch)).await;
    }
}

/// A publish written in bulk, awaiting the commit.
struct Pending<T> {
    answer: oneshot::Sender<StoreResult<T>>,
    value: T,
}

/// Rows per multi-row statement: well under SQLite's bound-variable limit.
const ROWS_PER_STATEMENT: usize = 400;

async fn commit_batch(writer: &SqlitePool, batch: Vec<Write>) {
    let mut keyed = Vec::new();
    let mut plain = Vec::new();
    let mut completions = Vec::new();
    let mut deferrals = Vec::new();
    for write in batch {
        match write {
            // An eventId may collide: such a publish gets a savepoint of its own.
            Write::Publish(msg, answer) if msg.event_id.is_some() => keyed.push((msg, answer)),
            Write::Publish(msg, answer) => plain.push((msg, answer)),
            Write::Complete(c, answer) => completions.push((c, answer)),
            Write::Defer(d, answer) => deferrals.push((d, answer)),
        }
    }
    let mut tx = match writer.begin().await {
        Ok(tx) => tx,
        Err(e) => return fail_all(keyed, plain, completions, deferrals, &e.to_string()),
    };
    let mut targets: HashMap<AppId, Vec<TargetRow>> = HashMap::new();
    let mut published: Vec<Pending<usize>> = Vec::with_capacity(keyed.len() + plain.len());
    for (msg, answer) in keyed {
        let result = match savepoint(&mut tx).await {
            Ok(()) => publish_one(&mut tx, &msg, &mut targets).await,
            Err(e) => Err(e),
        };
        match end_savepoint(&mut tx, result).await {
            Ok(value) => published.push(Pending { answer, value }),
            Err(e) => drop(answer.send(Err(e))),
        }
    }
    // Everything else is written with a few multi-row statements; a failure
    // there fails the whole batch (callers see 503 and retry).
    let bulk = async {
        let counts = publish_many(&mut tx, plain.iter().map(|(m, _)| m), &mut targets).await?;
        complete_many(&mut tx, completions.iter().map(|(c, _)| c)).await?;
        for (d, _) in &deferrals {
            defer_one(&mut tx, d).await?;
        }
        Ok::<_, StoreError>(counts)
    }
    .await;
    let counts = match bulk {
        Ok(counts) => counts,
        Err(e) => {
            let _ = tx.rollback().await;
            let published = published.into_iter().map(|p| p.answer);
            let reason = e.to_string();
            for answer in published {
                let _ = answer.send(Err(unavailable(&reason)));
            }
            return fail_all(Vec::new(), plain, completions, deferrals, &reason);
        }
    };
    for ((_, answer), value) in plain.into_iter().zip(counts) {
        published.push(Pending { answer, value });
    }
    match tx.commit().await {
        Ok(()) => {
            for p in published {
                let _ = p.answer.send(Ok(p.value));
            }
            let answers = completions.into_iter().map(|(_, a)| a);
            for answer in answers.chain(deferrals.into_iter().map(|(_, a)| a)) {
                let _ = answer.send(Ok(()));
            }
        }
        Err(e) => {
            let reason = e.to_string();
            for p in published {
                let _ = p.answer.send(Err(unavailable(&reason)));
            }
            fail_all(Vec::new(), Vec::new(), completions, deferrals, &reason);
        }
    }
}

type Answer<T> = oneshot::Sender<StoreResult<T>>;

fn unavailable(reason: &str) -> StoreError {
    StoreError::Unavailable(format!("the write was not committed: {reason}"))
}

fn fail_all(
    keyed: Vec<(Message, Answer<usize>)>,
    plain: Vec<(Message, Answer<usize>)>,
    completions: Vec<(Completion, Answer<()>)>,
    deferrals: Vec<(Deferral, Answer<()>)>,
    reason: &str,
) {
    for (_, answer) in keyed.into_iter().chain(plain) {
        let _ = answer.send(Err(unavailable(reason)));
    }
    for answer in completions
        .into_iter()
        .map(|(_, a)| a)
        .chain(deferrals.into_iter().map(|(_, a)| a))
    {
        let _ = answer.send(Err(unavailable(reason)));
    }
}

/// Sends a claimed delivery back to wait until `until`, if the lease is still ours.
async fn defer_one(tx: &mut Transaction<'_, Sqlite>, d: &Deferral) -> StoreResult<()> {
    sqlx::query(DEFER_SQL_SQLITE)
        .bind(d.until)
        .bind(d.delivery_id.as_str())
        .bind(d.lease_token)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

const DEFER_SQL_SQLITE: &str = "UPDATE deliveries SET status = 1, next_attempt_at = ?, lease_token = NULL \
     WHERE id = ? AND lease_token = ?";

/// Opens a savepoint, so the next operation can be undone alone.
async fn savepoint(tx: &mut Transaction<'_, Sqlite>) -> StoreResult<()> {
    sqlx::query("SAVEPOINT op").execute(&mut **tx).await?;
    Ok(())
}

/// Keeps the operation since the savepoint, or undoes it if it failed.
async fn end_savepoint<T>(tx: &mut Transaction<'_, Sqlite>, result: StoreResult<T>) -> StoreResult<T> {
    if result.is_err() {
        sqlx::query("ROLLBACK TO op").execute(&mut **tx).await?;
    }
    sqlx::query("RELEASE op").execute(&mut **tx).await?;
    result
}

/// The endpoints of `app`, read once per batch: they cannot change inside
/// this transaction, as every write goes through it.
async fn targets_of<'m>(
    tx: &mut Transaction<'_, Sqlite>,
    app: &AppId,
    cache: &'m mut HashMap<AppId, Vec<TargetRow>>,
) -> StoreResult<&'m [TargetRow]> {
    if !cache.contains_key(app) {
        let rows: Vec<TargetRow> = sqlx::query_as(&format!("SELECT {TARGET_COLUMNS} FROM endpoints WHERE app_id = ?"))
            .bind(app.as_str())
            .fetch_all(&mut **tx)
            .await?;
        cache.insert(app.clone(), rows);
    }
    Ok(cache.get(app).map(Vec::as_slice).unwrap_or_default())
}

async fn publish_one(
    tx: &mut Transaction<'_, Sqlite>,
    msg: &Message,
    targets: &mut HashMap<AppId, Vec<TargetRow>>,
) -> StoreResult<usize> {
    super::sqlite::insert_message(tx, msg).await?;
    let rows = targets_of(tx, &msg.app_id, targets).await?.to_vec();
    let now = ms(msg.created_at);
    let matched = matching_endpoints(msg, rows)?;
    for target in &matched {
        let status = target.disposition.initial_status();
        let delivery = super::sqlite::insert_delivery(tx, msg, &target.id, TriggerType::Scheduled, now, status).await?;
        if target.disposition == Disposition::Drop {
            let attempt = Attempt::not_sent(msg, &target.id, &target.url, DROPPED_WHILE_DISABLED);
            super::sqlite::insert_attempt(tx, &delivery, &msg.app_id, &attempt).await?;
        }
    }
    Ok(matched.iter().filter(|t| t.disposition != Disposition::Drop).count())
}

/// A delivery row to insert.
struct NewDelivery<'m> {
    msg: &'m Message,
    endpoint_id: String,
    status: DeliveryStatus,
}

/// Writes messages without an eventId, and their deliveries, in a few
/// statements. Answers how many deliveries each message got.
async fn publish_many<'m>(
    tx: &mut Transaction<'_, Sqlite>,
    msgs: impl Iterator<Item = &'m Message>,
    targets: &mut HashMap<AppId, Vec<TargetRow>>,
) -> StoreResult<Vec<usize>> {
    let msgs: Vec<&Message> = msgs.collect();
    for chunk in msgs.chunks(ROWS_PER_STATEMENT) {
        let mut qb = QueryBuilder::<Sqlite>::new(
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
                endpoint_id: target.id,
                status: target.disposition.initial_status(),
            });
        }
    }
    let mut drop_ids = HashMap::new();
    for chunk in deliveries.chunks(ROWS_PER_STATEMENT) {
        let mut qb = QueryBuilder::<Sqlite>::new(
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
                .push_bind((d.status == DeliveryStatus::Pending).then_some(now))
                .push_bind(now)
                .push_bind(now);
        });
        qb.build().execute(&mut **tx).await?;
    }
    for (msg, endpoint_id, url) in dropped {
        if let Some(delivery) = drop_ids.get(&(msg.id.as_str().to_owned(), endpoint_id.clone())) {
            let attempt = Attempt::not_sent(msg, &endpoint_id, &url, DROPPED_WHILE_DISABLED);
            super::sqlite::insert_attempt(tx, delivery, &msg.app_id, &attempt).await?;
        }
    }
    Ok(counts)
}

/// Records attempts and moves their deliveries on, in a few statements.
/// As one at a time would: an attempt whose delivery was deleted meanwhile
/// is not recorded, and only the lease holder moves a delivery on.
async fn complete_many<'c>(
    tx: &mut Transaction<'_, Sqlite>,
    completions: impl Iterator<Item = &'c Completion>,
) -> StoreResult<()> {
    let completions: Vec<&Completion> = completions.collect();
    for chunk in completions.chunks(ROWS_PER_STATEMENT / 2) {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "WITH v (id, delivery_id, msg_id, endpoint_id, app_id, url, status, response_status_code, response, \
             response_duration_ms, trigger_type, created_at, request_headers, request_body, response_headers) AS (",
        );
        qb.push_values(chunk, |mut row, c| {
            let a = &c.attempt;
            row.push_bind(a.id.as_str().to_owned())
                .push_bind(c.delivery_id.as_str().to_owned())
                .push_bind(a.msg_id.as_str().to_owned())
                .push_bind(a.endpoint_id.as_str().to_owned())
                .push_bind(c.app_id.as_str().to_owned())
                .push_bind(a.url.clone())
                .push_bind(a.status.code())
                .push_bind(a.response_status_code)
                .push_bind(a.response.clone())
                .push_bind(a.response_duration_ms)
                .push_bind(a.trigger_type.code())
                .push_bind(ms(a.created_at))
                .push_bind(opt_json(&a.request_headers))
                .push_bind(a.request_body.clone())
                .push_bind(opt_json(&a.response_headers));
        });
        qb.push(
            ") INSERT INTO attempts (id, delivery_id, msg_id, endpoint_id, app_id, url, status, response_status_code, \
             response, response_duration_ms, trigger_type, created_at, request_headers, request_body, response_headers) \
             SELECT * FROM v WHERE EXISTS (SELECT 1 FROM deliveries d WHERE d.id = v.delivery_id)",
        );
        qb.build().execute(&mut **tx).await?;

        let mut qb = QueryBuilder::<Sqlite>::new("WITH v (id, status, next_at, updated_at, token) AS (");
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
