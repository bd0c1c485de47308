//! SQLite's side of group commit: a batch in one transaction, written with
//! a few multi-row statements.
//!
//! SQLite has one writer, and `synchronous = FULL` syncs on every commit;
//! committing each message alone caps throughput at the disk's sync rate
//! and at one round trip to the database thread per statement.

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::{QueryBuilder, Sqlite, SqlitePool, Transaction};

use super::batch::{Batch, BatchWriter, Completion, Deferral, Written};
use super::rows::*;
use super::*;
use crate::domain::ids::DeliveryId;
use crate::domain::status::{DeliveryStatus, TriggerType};

/// Rows per multi-row statement: well under SQLite's bound-variable limit.
const ROWS_PER_STATEMENT: usize = 400;

pub(super) struct SqliteWriter(pub(super) SqlitePool);

#[async_trait]
impl BatchWriter for SqliteWriter {
    async fn commit(&self, batch: Batch) {
        let mut tx = match self.0.begin().await {
            Ok(tx) => tx,
            Err(e) => return batch.fail_all(&e.to_string()),
        };
        let Batch {
            keyed,
            plain,
            completions,
            deferrals,
        } = batch;
        let mut targets: HashMap<AppId, Vec<TargetRow>> = HashMap::new();
        let mut written = Written::default();
        // Each publish with an eventId in a savepoint: a duplicate fails alone.
        for (msg, answer) in keyed {
            let result = match savepoint(&mut tx).await {
                Ok(()) => publish_one(&mut tx, &msg, &mut targets).await,
                Err(e) => Err(e),
            };
            match end_savepoint(&mut tx, result).await {
                Ok(n) => written.published.push((answer, n)),
                Err(e) => drop(answer.send(Err(e))),
            }
        }
        // Everything else in a few multi-row statements; a failure there
        // fails the whole batch.
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

/// Sends a claimed delivery back to wait until `until`, if the lease is still ours.
async fn defer_one(tx: &mut Transaction<'_, Sqlite>, d: &Deferral) -> StoreResult<()> {
    sqlx::query(
        "UPDATE deliveries SET status = 1, next_attempt_at = ?, lease_token = NULL WHERE id = ? AND lease_token = ?",
    )
    .bind(d.until)
    .bind(d.delivery_id.as_str())
    .bind(d.lease_token)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

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
