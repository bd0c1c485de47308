//! The embedded backend: one SQLite file in WAL mode, synchronous writes.
//!
//! SQLite allows one writer at a time, so writes go through a pool of one
//! connection (no lock contention, no SQLITE_BUSY) and reads through a
//! separate pool that WAL lets run beside it.

use std::fs::File;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::query::Query;
use sqlx::sqlite::{
    SqliteArguments, SqliteAutoVacuum, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteQueryResult,
    SqliteSynchronous,
};
use sqlx::{Executor, QueryBuilder, Sqlite, SqliteConnection, SqlitePool, Transaction};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::dialect::{Dialect, RowLock, RowsAffected};
use super::queue::Queue;
use super::sql::SqlStore;
use super::{Clock, Sealer, Storage, StoreError, StoreResult, Upkeep, UpkeepPlan};

/// Pages (4 KiB each) given back to the file system after one sweep batch:
/// about what a batch of messages with their history frees.
const VACUUM_PAGES: u32 = 4096;

/// SQLite's differences from the common SQL.
pub struct SqliteDialect;

/// The store on a SQLite file.
pub type SqliteStore = SqlStore<SqliteDialect>;

impl SqlStore<SqliteDialect> {
    /// Opens (or creates) the file at `path`, migrated, refusing it when
    /// another process holds it.
    pub async fn open(path: &Path, readers: u32, sealer: Sealer, clock: Clock) -> StoreResult<Self> {
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
        // Only the writer sets it: it counts only when the file is created.
        let writer_options = options.clone().auto_vacuum(SqliteAutoVacuum::Incremental);
        // A SQLite connection has nothing to rebalance, and a replaced one
        // starts on a new thread with a cold page cache: keep them for the
        // pool's life (sqlx would retire each after 30 minutes).
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .max_lifetime(None)
            .after_release(|conn, _| Box::pin(async move { Ok(still_outside_a_transaction(conn).await) }))
            .connect_with(writer_options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        hint_at_vacuum(&writer, path).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(readers.max(1))
            .max_lifetime(None)
            .connect_with(options.read_only(true))
            .await?;
        let batcher = Queue::<SqliteDialect>::start_writer(writer.clone(), clock, sealer.clone());
        Ok(Self::new(writer, reader, batcher, sealer, Some(lock)))
    }
}

/// Whether the writer connection going back to the pool is outside any
/// transaction (and syncing every commit). A COMMIT that fails on a full
/// disk can leave SQLite inside the transaction while sqlx counts it as
/// ended or still open; reused, that connection would run every later
/// write inside a transaction that never commits, answered as if durable.
/// Such a connection is closed and the pool opens a fresh one. Setting
/// `synchronous` is refused inside a transaction, so it is the probe.
async fn still_outside_a_transaction(conn: &mut SqliteConnection) -> bool {
    let ok = sqlx::query("PRAGMA synchronous = FULL").execute(conn).await.is_ok();
    if !ok {
        tracing::warn!("a failed commit left the writer connection inside its transaction; opening a new one");
    }
    ok
}

/// A file made before incremental vacuum keeps its size after a sweep
/// (freed pages are reused, not returned); says how to switch it once.
async fn hint_at_vacuum(writer: &SqlitePool, path: &Path) -> StoreResult<()> {
    let mode: i64 = sqlx::query_scalar("PRAGMA auto_vacuum").fetch_one(writer).await?;
    // 2: INCREMENTAL.
    if mode != 2 {
        tracing::info!(
            file = %path.display(),
            "this database does not shrink after the history sweep; to switch it once, stop Herald and run: \
             sqlite3 FILE 'PRAGMA auto_vacuum = INCREMENTAL; VACUUM;'"
        );
    }
    Ok(())
}

impl Dialect for SqliteDialect {
    type Db = Sqlite;

    /// The file lock proves no other process runs.
    const SHARED: bool = false;

    /// The rowid grows with each insert, and the one writer commits in that order.
    const QUEUE_ORDER: &'static str = "rowid";

    fn build<'q, 'a: 'q>(qb: &'q mut QueryBuilder<'a, Sqlite>) -> Query<'q, Sqlite, SqliteArguments<'q>> {
        qb.build()
    }

    fn exec<'c>(conn: &'c mut SqliteConnection) -> impl Executor<'c, Database = Sqlite> {
        conn
    }

    /// No row locks: the one writer already serializes every change.
    fn lock(_: RowLock) -> &'static str {
        ""
    }

    fn json_array_holds(column: &str) -> String {
        format!("EXISTS (SELECT 1 FROM json_each({column}) WHERE value = ")
    }

    /// Nothing to do: this process is the only one to wake.
    async fn wake_others(_tx: &mut Transaction<'_, Sqlite>) -> StoreResult<()> {
        Ok(())
    }

    /// Within one process the dispatcher is woken directly.
    async fn forward_wakeups(_pool: &SqlitePool, wake: Arc<Notify>, shutdown: CancellationToken) {
        let _ = wake;
        shutdown.cancelled().await;
    }

    /// Frees up to `VACUUM_PAGES` pages: a no-op on a file created before
    /// incremental vacuum was enabled, which keeps its free pages for reuse.
    async fn reclaim_space(conn: &mut SqliteConnection) -> StoreResult<()> {
        sqlx::query(&format!("PRAGMA incremental_vacuum({VACUUM_PAGES})"))
            .execute(conn)
            .await?;
        Ok(())
    }

    /// One table per kind: the history sweep deletes rows.
    async fn upkeep_partitions(_pool: &SqlitePool, _plan: &UpkeepPlan) -> StoreResult<Option<Upkeep>> {
        Ok(None)
    }

    async fn storage(pool: &SqlitePool) -> StoreResult<Storage> {
        let pages: i64 = sqlx::query_scalar("PRAGMA page_count").fetch_one(pool).await?;
        let page_size: i64 = sqlx::query_scalar("PRAGMA page_size").fetch_one(pool).await?;
        Ok(Storage {
            bytes: pages.saturating_mul(page_size),
            partitions: None,
        })
    }

    /// A claim need not survive a crash: every lease is released at the
    /// next start anyway. So it commits without waiting for the disk,
    /// sparing one fsync per claim; the next durable commit syncs it too.
    async fn before_claim(conn: &mut SqliteConnection) -> StoreResult<()> {
        sqlx::query("PRAGMA synchronous = NORMAL").execute(conn).await?;
        Ok(())
    }

    /// Never hand a connection that skips syncs to the next writer.
    async fn after_claim(conn: &mut SqliteConnection) -> bool {
        sqlx::query("PRAGMA synchronous = FULL").execute(conn).await.is_ok()
    }
}

impl RowsAffected for SqliteQueryResult {
    fn rows_affected(&self) -> u64 {
        SqliteQueryResult::rows_affected(self)
    }
}
