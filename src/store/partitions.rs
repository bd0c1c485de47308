//! PostgreSQL's daily history partitions (migration 0013): the days ahead
//! are made before any row needs them, and a day wholly past the history
//! window is detached and dropped, messages, deliveries and attempts
//! together, instead of deleting its rows one by one.
//!
//! A message of a dropped day that is still being delivered (pending,
//! sending or held) is not lost: in the transaction that detaches its day
//! it is copied, with its deliveries and attempts, into the default
//! partition, where the history sweep removes it by rows once it ends.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, NaiveTime, TimeDelta, Utc};
use sqlx::{Connection, PgConnection, PgPool};

use super::dialect::UNFINISHED;
use super::{PartitionDays, Storage, StoreError, StoreResult, Upkeep, UpkeepPlan};

/// The session advisory lock the node doing the upkeep holds ("herald" and
/// a 1): an operator may take it to hold the upkeep off.
pub const UPKEEP_LOCK: i64 = 0x6865_7261_6c64_0001;
/// How long one try at locking the tables for a detach waits: while it
/// waits, new queries on them queue behind it (and a claim holding the
/// deliveries while it reads messages waits on it in a circle), so a try
/// gives up early and the next comes a moment later.
const LOCK_TIMEOUT: &str = "100ms";
/// Tries at locking the tables for one day's detach before it is left for
/// the next upkeep, and the pause between two.
const LOCK_TRIES: u32 = 20;
const LOCK_PAUSE: Duration = Duration::from_millis(50);
/// PostgreSQL's SQLSTATE for a lock not granted in time.
const LOCK_NOT_AVAILABLE: &str = "55P03";
/// The partitioned tables, parents first.
const TABLES: [&str; 3] = ["messages", "deliveries", "attempts"];
/// eventIds forgotten per statement after a day is dropped.
const EVENT_ID_BATCH: i64 = 10_000;

/// Runs one upkeep if no other node is running one.
pub async fn upkeep(pool: &PgPool, plan: &UpkeepPlan) -> StoreResult<Upkeep> {
    let mut conn = pool.acquire().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(UPKEEP_LOCK)
        .fetch_one(&mut *conn)
        .await?;
    if !locked {
        return Ok(Upkeep {
            busy: true,
            ..Upkeep::default()
        });
    }
    let done = upkeep_locked(&mut conn, plan).await;
    let unlocked: Result<bool, _> = sqlx::query_scalar("SELECT pg_advisory_unlock($1)")
        .bind(UPKEEP_LOCK)
        .fetch_one(&mut *conn)
        .await;
    if !matches!(unlocked, Ok(true)) {
        // A session lock must not go back to the pool with its connection.
        conn.close_on_drop();
    }
    done
}

async fn upkeep_locked(conn: &mut PgConnection, plan: &UpkeepPlan) -> StoreResult<Upkeep> {
    let mut upkeep = Upkeep::default();
    for (name, day) in detached_leftovers(conn).await? {
        // A crash between detaching a day and dropping it.
        if let Err(e) = drop_detached(conn, &[name.as_str()], day).await {
            upkeep.errors.push(format!("dropping {name}, detached earlier: {e}"));
        }
    }
    let days = attached_days(conn).await?;
    let mut day = plan.first_day;
    while day <= plan.last_day {
        if !days.contains(&day) {
            match create_day(conn, day).await {
                Ok(()) => upkeep.created.push(day),
                Err(e) => upkeep.errors.push(format!("making the partitions of {day}: {e}")),
            }
        }
        let Some(next) = day.succ_opt() else { break };
        day = next;
    }
    for day in days.into_iter().filter(|d| day_end(*d) <= plan.drop_before) {
        match drop_day(conn, day).await {
            Ok(dropped) => {
                upkeep.dropped.push(day);
                upkeep.carried += dropped.carried;
                upkeep.longest_lock = upkeep.longest_lock.max(dropped.locked);
                upkeep.lock_tries = upkeep.lock_tries.max(dropped.tries);
            }
            Err(e) => upkeep.errors.push(format!("dropping the partitions of {day}: {e}")),
        }
    }
    Ok(upkeep)
}

/// The database's size and its days.
pub async fn storage(pool: &PgPool) -> StoreResult<Storage> {
    let mut conn = pool.acquire().await?;
    let bytes: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
        .fetch_one(&mut *conn)
        .await?;
    let days = attached_days(&mut conn).await?;
    Ok(Storage {
        bytes,
        partitions: Some(PartitionDays {
            count: days.len(),
            oldest: days.first().copied(),
            newest: days.last().copied(),
        }),
    })
}

/// The days the history has partitions for, by the messages' partitions.
async fn attached_days(conn: &mut PgConnection) -> StoreResult<BTreeSet<NaiveDate>> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = 'messages'::regclass",
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(names.iter().filter_map(|n| day_of("messages", n)).collect())
}

/// Day tables no longer attached to their parent, with their days.
async fn detached_leftovers(conn: &mut PgConnection) -> StoreResult<Vec<(String, NaiveDate)>> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c WHERE c.relkind = 'r' AND NOT c.relispartition \
         AND pg_table_is_visible(c.oid) AND c.relname ~ '^(messages|deliveries|attempts)_p[0-9]{8}$'",
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(names
        .into_iter()
        .filter_map(|n| {
            let day = TABLES.iter().find_map(|t| day_of(t, &n))?;
            Some((n, day))
        })
        .collect())
}

/// The day of a partition named `{table}_pYYYYMMDD`.
fn day_of(table: &str, name: &str) -> Option<NaiveDate> {
    let digits = name.strip_prefix(table)?.strip_prefix("_p")?;
    NaiveDate::parse_from_str(digits, "%Y%m%d").ok()
}

/// The partition of `table` for `day`.
fn partition(table: &str, day: NaiveDate) -> String {
    format!("{table}_p{}", day.format("%Y%m%d"))
}

/// When `day` ends (UTC): every id of its partitions was made before.
fn day_end(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(NaiveTime::MIN).and_utc() + TimeDelta::days(1)
}

/// Makes the three partitions of `day` (the migration's function).
async fn create_day(conn: &mut PgConnection, day: NaiveDate) -> StoreResult<()> {
    let mut tx = conn.begin().await?;
    sqlx::query(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        .execute(&mut *tx)
        .await?;
    sqlx::query("SELECT herald_create_day($1::date)")
        .bind(day.to_string())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// What dropping one day took.
struct Dropped {
    /// Messages carried over to the default partition.
    carried: u64,
    /// How long the tables were locked.
    locked: Duration,
    /// Tries at the lock, the one that got it included.
    tries: u32,
}

/// Detaches `day` from the three tables, carrying its unfinished messages
/// over to the default partition, then drops it.
async fn drop_day(conn: &mut PgConnection, day: NaiveDate) -> StoreResult<Dropped> {
    let mut tries = 1;
    loop {
        match detach_day(conn, day).await {
            Err(StoreError::Database(e)) if is_lock_timeout(&e) && tries < LOCK_TRIES => {
                tries += 1;
                tokio::time::sleep(LOCK_PAUSE).await;
            }
            Err(e) => return Err(e),
            Ok((carried, locked)) => {
                let names: Vec<String> = TABLES.iter().map(|t| partition(t, day)).collect();
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                drop_detached(conn, &names, day).await?;
                return Ok(Dropped { carried, locked, tries });
            }
        }
    }
}

fn is_lock_timeout(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some(LOCK_NOT_AVAILABLE))
}

/// One try at detaching `day` and carrying its unfinished messages over,
/// in one transaction that holds the three tables.
async fn detach_day(conn: &mut PgConnection, day: NaiveDate) -> StoreResult<(u64, Duration)> {
    let mut tx = conn.begin().await?;
    sqlx::query(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        .execute(&mut *tx)
        .await?;
    // All three at once; nothing is published, claimed or recorded until
    // this commits.
    sqlx::query("LOCK TABLE messages, deliveries, attempts IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    let locked = Instant::now();
    let sql = format!(
        "SELECT DISTINCT msg_id FROM {} WHERE status IN ({UNFINISHED})",
        partition("deliveries", day)
    );
    let unfinished: Vec<String> = sqlx::query_scalar(&sql).fetch_all(&mut *tx).await?;
    for table in TABLES {
        let sql = format!("ALTER TABLE {table} DETACH PARTITION {}", partition(table, day));
        sqlx::query(&sql).execute(&mut *tx).await?;
    }
    // Detached, the day's ids belong to the default partition.
    if !unfinished.is_empty() {
        for (table, key) in [("messages", "id"), ("deliveries", "msg_id"), ("attempts", "msg_id")] {
            let sql = format!(
                "INSERT INTO {table} SELECT * FROM {} WHERE {key} = ANY($1)",
                partition(table, day)
            );
            sqlx::query(&sql).bind(&unfinished).execute(&mut *tx).await?;
        }
    }
    tx.commit().await?;
    Ok((unfinished.len() as u64, locked.elapsed()))
}

/// Drops detached day tables (children first), then forgets the eventIds
/// of the messages that went with them.
async fn drop_detached(conn: &mut PgConnection, names: &[&str], day: NaiveDate) -> StoreResult<()> {
    for name in names.iter().rev() {
        drop_foreign_keys(conn, name).await?;
        sqlx::query(&format!("DROP TABLE IF EXISTS {name}"))
            .execute(&mut *conn)
            .await?;
    }
    forget_event_ids(conn, day).await
}

/// Drops a detached table's foreign keys (to its endpoints) first, each a
/// short statement: a DROP TABLE would hold the endpoints locked while it
/// unlinks the table's files (a second on the scale run), and every claim
/// and publish reads the endpoints.
async fn drop_foreign_keys(conn: &mut PgConnection, name: &str) -> StoreResult<()> {
    let keys: Vec<String> = sqlx::query_scalar(
        "SELECT conname::text FROM pg_constraint WHERE contype = 'f' AND conrelid = to_regclass($1)",
    )
    .bind(name.to_owned())
    .fetch_all(&mut *conn)
    .await?;
    for key in keys {
        let mut tries = 1;
        loop {
            let mut tx = conn.begin().await?;
            sqlx::query(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
                .execute(&mut *tx)
                .await?;
            let sql = format!("ALTER TABLE {name} DROP CONSTRAINT \"{}\"", key.replace('"', "\"\""));
            match sqlx::query(&sql).execute(&mut *tx).await {
                Ok(_) => {
                    tx.commit().await?;
                    break;
                }
                Err(e) if is_lock_timeout(&e) && tries < LOCK_TRIES => {
                    drop(tx);
                    tries += 1;
                    tokio::time::sleep(LOCK_PAUSE).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// Frees the eventIds of `day`'s messages that are gone, in short batches.
async fn forget_event_ids(conn: &mut PgConnection, day: NaiveDate) -> StoreResult<()> {
    loop {
        let done = sqlx::query(
            "DELETE FROM message_event_ids WHERE ctid = ANY(ARRAY( \
               SELECT e.ctid FROM message_event_ids e \
               WHERE e.msg_id >= herald_day_bound($1::date) AND e.msg_id < herald_day_bound($1::date + 1) \
               AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = e.msg_id) LIMIT $2))",
        )
        .bind(day.to_string())
        .bind(EVENT_ID_BATCH)
        .execute(&mut *conn)
        .await?;
        if done.rows_affected() < EVENT_ID_BATCH as u64 {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_is_named_by_its_table_and_day() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        assert_eq!(partition("attempts", day), "attempts_p20261127");
        assert_eq!(day_of("attempts", "attempts_p20261127"), Some(day));
        assert_eq!(day_of("messages", "attempts_p20261127"), None);
        assert_eq!(day_of("messages", "messages_default"), None);
    }

    #[test]
    fn a_day_ends_at_the_next_midnight_utc() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        assert_eq!(day_end(day).to_rfc3339(), "2026-11-28T00:00:00+00:00");
    }
}
