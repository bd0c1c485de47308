//! The shared backend: several Herald nodes on one PostgreSQL database.
//!
//! Nodes coordinate only through the database: deliveries are claimed with
//! `FOR UPDATE SKIP LOCKED` and leased, so each is attempted by one node at a
//! time and taken over when a node dies; `NOTIFY` wakes every node when work
//! is published.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgArguments, PgConnectOptions, PgListener, PgPoolOptions, PgQueryResult};
use sqlx::query::Query;
use sqlx::{Executor, PgConnection, PgPool, Postgres, QueryBuilder, Transaction};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::dialect::{Dialect, RowLock, RowsAffected};
use super::queue::Queue;
use super::sql::SqlStore;
use super::{Clock, Config, Sealer, Storage, StoreResult, Upkeep, UpkeepPlan, partitions};

/// The channel nodes use to wake each other. Per database, so separate
/// deployments on one server never wake each other.
const WAKE_CHANNEL: &str = "herald_work";
/// How long a request waits for a pooled connection before answering 503.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// PostgreSQL's differences from the common SQL.
pub struct PgDialect;

/// The store on a PostgreSQL database.
pub type PgStore = SqlStore<PgDialect>;

impl SqlStore<PgDialect> {
    /// Connects to the database at `url`, migrated.
    pub async fn open(url: &str, config: &Config, sealer: Sealer, clock: Clock) -> StoreResult<Self> {
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
        let batcher = Queue::<PgDialect>::start_writer(pool.clone(), clock, sealer.clone());
        Ok(Self::new(pool.clone(), pool, batcher, sealer, None))
    }
}

impl Dialect for PgDialect {
    type Db = Postgres;

    const SHARED: bool = true;

    /// A sequence drawn while the endpoint's row is locked, so it follows
    /// commit order across nodes.
    const QUEUE_ORDER: &'static str = "seq";

    fn build<'q, 'a: 'q>(qb: &'q mut QueryBuilder<'a, Postgres>) -> Query<'q, Postgres, PgArguments> {
        qb.build()
    }

    fn exec<'c>(conn: &'c mut PgConnection) -> impl Executor<'c, Database = Postgres> {
        conn
    }

    fn lock(lock: RowLock) -> &'static str {
        match lock {
            // Whoever queues into or moves on a FIFO endpoint's queue holds
            // its row: two nodes never promote two heads. NO KEY: the
            // deliveries' foreign-key checks (KEY SHARE) do not wait for it.
            RowLock::Queue => " FOR NO KEY UPDATE",
            RowLock::Claim => " FOR UPDATE SKIP LOCKED",
            RowLock::Update => " FOR UPDATE",
            RowLock::Share => " FOR SHARE",
        }
    }

    fn json_array_holds(column: &str) -> String {
        format!("jsonb_exists({column}::jsonb, ")
    }

    /// Wakes every node's dispatcher once the transaction commits.
    async fn wake_others(tx: &mut Transaction<'_, Postgres>) -> StoreResult<()> {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(WAKE_CHANNEL)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    async fn forward_wakeups(pool: &PgPool, wake: Arc<Notify>, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(200);
        loop {
            let listener = async {
                let mut listener = PgListener::connect_with(pool).await?;
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

    /// Autovacuum makes deleted rows' space reusable; nothing to do here.
    async fn reclaim_space(_conn: &mut PgConnection) -> StoreResult<()> {
        Ok(())
    }

    async fn upkeep_partitions(pool: &PgPool, plan: &UpkeepPlan) -> StoreResult<Option<Upkeep>> {
        partitions::upkeep(pool, plan).await.map(Some)
    }

    async fn storage(pool: &PgPool) -> StoreResult<Storage> {
        partitions::storage(pool).await
    }

    /// Claims commit like any write: other nodes rely on them.
    async fn before_claim(_conn: &mut PgConnection) -> StoreResult<()> {
        Ok(())
    }

    async fn after_claim(_conn: &mut PgConnection) -> bool {
        true
    }
}

impl RowsAffected for PgQueryResult {
    fn rows_affected(&self) -> u64 {
        PgQueryResult::rows_affected(self)
    }
}
