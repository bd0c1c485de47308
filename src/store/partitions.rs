//! PostgreSQL's daily history partitions (migration 0013): the days ahead
//! are made before any row needs them, and a day wholly past the history
//! window is detached and dropped, messages, deliveries and attempts
//! together, instead of deleting its rows one by one.
//!
//! A message of a dropped day that is still being delivered (pending,
//! sending or held) is not lost: as its day is detached it is copied, with
//! its deliveries and attempts, into the default partition, where the
//! history sweep removes it by rows once it ends.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, NaiveTime, TimeDelta, Utc};
use sqlx::{Connection, PgConnection, PgPool};

use super::dialect::UNFINISHED;
use super::{PartitionDays, Storage, StoreError, StoreResult, Upkeep, UpkeepPlan};

/// The session advisory lock the node doing the upkeep holds ("herald" and
/// a 1): an operator may take it to hold the upkeep off.
pub const UPKEEP_LOCK: i64 = 0x6865_7261_6c64_0001;
/// How long one try at locking a table for a detach waits: while it waits,
/// new queries on the table queue behind it, so a try gives up early and
/// the next comes a moment later.
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
    match analyze_recent(conn, plan.first_day).await {
        Ok(analyzed) => upkeep.analyzed = analyzed,
        Err(e) => upkeep
            .errors
            .push(format!("refreshing the statistics of the days being written: {e}")),
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

/// Refreshes the statistics of the partitions being written (`today`'s,
/// the day before's, and the default ones) where a tenth of the rows or
/// more changed since they were last gathered, autovacuum's own rule.
///
/// Every day starts a new, empty partition, and until it is analyzed
/// PostgreSQL plans it as if any message id matched hundreds of rows: on
/// the scale run, reading 32 jobs by their ids became a scan of the whole
/// day (11 ms instead of 0.3). Autovacuum analyzes it in time only where it
/// is on and not busy elsewhere, so the upkeep does it too; the one node
/// that holds the upkeep lock, once a cleanup interval at most.
async fn analyze_recent(conn: &mut PgConnection, today: NaiveDate) -> StoreResult<Vec<String>> {
    let mut names: Vec<String> = TABLES.iter().map(|t| format!("{t}_default")).collect();
    for day in [today.pred_opt(), Some(today)].into_iter().flatten() {
        names.extend(TABLES.iter().map(|t| partition(t, day)));
    }
    let stale: Vec<String> = sqlx::query_scalar(
        "SELECT s.relname::text FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid \
         WHERE s.relname = ANY($1) AND s.schemaname = current_schema() \
         AND s.n_mod_since_analyze > 50 + 0.1 * greatest(c.reltuples, 0) ORDER BY 1",
    )
    .bind(&names)
    .fetch_all(&mut *conn)
    .await?;
    for name in &stale {
        sqlx::query(&format!("ANALYZE {name}")).execute(&mut *conn).await?;
    }
    Ok(stale)
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
    /// The longest any one table was locked.
    locked: Duration,
    /// The most tries at one table's lock, the one that got it included.
    tries: u32,
}

/// Detaches `day` from the three tables, carrying its unfinished messages
/// over to the default partition, then drops it.
///
/// Each table is detached in a transaction of its own that locks only that
/// table. A transaction locking all three would wait, while holding the
/// first, on a claim that holds the deliveries while it reads the messages,
/// and the claim on it: under steady load such a detach rarely got its
/// locks at all. Locking one table, it waits only for the statements
/// already running on it.
///
/// Deliveries go first: what is unfinished is decided there, under its
/// lock, so a resend of one of the day's messages either lands before (and
/// is carried) or after (in the default partition, as the day's range is no
/// longer attached). The attempts and the message follow whatever has a
/// delivery in the default partition, carried or new.
async fn drop_day(conn: &mut PgConnection, day: NaiveDate) -> StoreResult<Dropped> {
    let mut dropped = Dropped {
        carried: 0,
        locked: Duration::ZERO,
        tries: 0,
    };
    for table in ["deliveries", "attempts", "messages"] {
        let name = partition(table, day);
        if !is_attached(conn, &name).await? {
            // Detached by an upkeep that stopped before it finished the day.
            continue;
        }
        let mut tries = 1;
        loop {
            match detach(conn, table, day).await {
                Err(StoreError::Database(e)) if is_lock_timeout(&e) && tries < LOCK_TRIES => {
                    tries += 1;
                    tokio::time::sleep(LOCK_PAUSE).await;
                }
                Err(e) => return Err(e),
                Ok((carried, locked)) => {
                    tracing::debug!(%day, table, tries, locked_ms = locked.as_millis(), carried, "day detached");
                    if table == "messages" {
                        dropped.carried = carried;
                    }
                    dropped.locked = dropped.locked.max(locked);
                    dropped.tries = dropped.tries.max(tries);
                    break;
                }
            }
        }
    }
    let names: Vec<String> = TABLES.iter().map(|t| partition(t, day)).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    drop_detached(conn, &names, day).await?;
    Ok(dropped)
}

fn is_lock_timeout(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some(LOCK_NOT_AVAILABLE))
}

/// Whether `name` is a partition attached to its table.
async fn is_attached(conn: &mut PgConnection, name: &str) -> StoreResult<bool> {
    let attached: Option<bool> = sqlx::query_scalar("SELECT relispartition FROM pg_class WHERE oid = to_regclass($1)")
        .bind(name.to_owned())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(attached == Some(true))
}

/// One try at detaching `day` from `table` and carrying what is still
/// being delivered over to the default partition, in one transaction that
/// holds `table` alone. Answers how many messages were carried and how
/// long the table was locked.
async fn detach(conn: &mut PgConnection, table: &str, day: NaiveDate) -> StoreResult<(u64, Duration)> {
    let name = partition(table, day);
    let mut tx = conn.begin().await?;
    sqlx::query(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
        .execute(&mut *tx)
        .await?;
    let locked = Instant::now();
    let carried: Vec<String> = if table == "deliveries" {
        let sql = format!("SELECT DISTINCT msg_id FROM {name} WHERE status IN ({UNFINISHED})");
        sqlx::query_scalar(&sql).fetch_all(&mut *tx).await?
    } else {
        // The day's messages with a delivery in the default partition:
        // carried there when the deliveries were detached, or made since.
        sqlx::query_scalar(
            "SELECT DISTINCT msg_id FROM deliveries_default \
             WHERE msg_id >= herald_day_bound($1::date) AND msg_id < herald_day_bound($1::date + 1)",
        )
        .bind(day.to_string())
        .fetch_all(&mut *tx)
        .await?
    };
    sqlx::query(&format!("ALTER TABLE {table} DETACH PARTITION {name}"))
        .execute(&mut *tx)
        .await?;
    if !carried.is_empty() {
        // Detached, the day's ids belong to the default partition.
        let key = if table == "messages" { "id" } else { "msg_id" };
        let sql = format!("INSERT INTO {table} SELECT * FROM {name} WHERE {key} = ANY($1)");
        sqlx::query(&sql).bind(&carried).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok((carried.len() as u64, locked.elapsed()))
}

/// Drops detached day tables (children first), then forgets the eventIds
/// of the messages that went with them.
async fn drop_detached(conn: &mut PgConnection, names: &[&str], day: NaiveDate) -> StoreResult<()> {
    let dropping = Instant::now();
    for name in names.iter().rev() {
        drop_foreign_keys(conn, name).await?;
        sqlx::query(&format!("DROP TABLE IF EXISTS {name}"))
            .execute(&mut *conn)
            .await?;
    }
    let forgetting = Instant::now();
    // An upkeep that stopped midway may have left the messages attached:
    // their eventIds are freed once they go too.
    if !is_attached(conn, &partition("messages", day)).await? {
        forget_event_ids(conn, day).await?;
    }
    tracing::debug!(
        %day,
        dropping_ms = (forgetting - dropping).as_millis(),
        forgetting_event_ids_ms = forgetting.elapsed().as_millis(),
        "detached day dropped"
    );
    Ok(())
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
/// The day's own partitions are gone, so a message of it still kept was
/// carried over: only the default partition is looked in.
async fn forget_event_ids(conn: &mut PgConnection, day: NaiveDate) -> StoreResult<()> {
    loop {
        let done = sqlx::query(
            "DELETE FROM message_event_ids WHERE ctid = ANY(ARRAY( \
               SELECT e.ctid FROM message_event_ids e \
               WHERE e.msg_id >= herald_day_bound($1::date) AND e.msg_id < herald_day_bound($1::date + 1) \
               AND NOT EXISTS (SELECT 1 FROM messages_default m WHERE m.id = e.msg_id) LIMIT $2))",
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
