//! What truly differs between the SQL backends. Everything else — every
//! statement, the group-commit writer, the queue — is written once in
//! [`super::sql`] over a [`Dialect`].
//!
//! Not here because it does not differ: placeholders (sqlx numbers `$n` on
//! both), booleans (SQLite understands `TRUE`/`FALSE`), `RETURNING`, and
//! error classification (sqlx reports unique violations and connection
//! errors alike for both).

use std::fmt;
use std::sync::Arc;

use sqlx::query::{Map, Query};
use sqlx::{Database, Decode, Encode, Executor, FromRow, IntoArguments, Pool, QueryBuilder, Transaction, Type};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Storage, StoreResult, Upkeep, UpkeepPlan};
use crate::domain::status::DeliveryStatus;

/// One SQL backend's differences from the common SQL.
pub trait Dialect: Send + Sync + Sized + 'static {
    type Db: for<'q> Database<Arguments<'q>: IntoArguments<'q, Self::Db>, QueryResult: RowsAffected>;

    /// Whether several Herald processes share the database: leases and
    /// running tasks may then belong to another live process.
    const SHARED: bool;

    /// What orders a FIFO endpoint's queue, oldest first.
    const QUEUE_ORDER: &'static str;

    /// The statement `qb` built, its arguments living as long as the
    /// borrow (sqlx's own `build` ties them to the builder's lifetime,
    /// which generic code cannot shorten).
    fn build<'q, 'a: 'q>(qb: &'q mut QueryBuilder<'a, Self::Db>) -> Query<'q, Self::Db, Arguments<'q, Self>>;

    /// A connection as the executor sqlx runs statements on.
    fn exec<'c>(conn: &'c mut Connection<Self>) -> impl Executor<'c, Database = Self::Db>;

    /// The clause that ends a `SELECT` taking rows for `lock`.
    fn lock(lock: RowLock) -> &'static str;

    /// An SQL condition opened on whether the JSON array in `column` holds
    /// the value bound next; the caller binds it and closes with `)`.
    fn json_array_holds(column: &str) -> String;

    /// Tells other processes, once `tx` commits, that work came due.
    fn wake_others(tx: &mut Transaction<'_, Self::Db>) -> impl Future<Output = StoreResult<()>> + Send;

    /// Calls `wake` whenever another process wakes this one, until `shutdown`.
    fn forward_wakeups(
        pool: &Pool<Self::Db>,
        wake: Arc<Notify>,
        shutdown: CancellationToken,
    ) -> impl Future<Output = ()> + Send;

    /// Gives space freed by a sweep batch back to the file system, in a
    /// bounded step, so the writer is not held long.
    fn reclaim_space(conn: &mut Connection<Self>) -> impl Future<Output = StoreResult<()>> + Send;

    /// Makes and drops the history's daily partitions, where it has them.
    fn upkeep_partitions(
        pool: &Pool<Self::Db>,
        plan: &UpkeepPlan,
    ) -> impl Future<Output = StoreResult<Option<Upkeep>>> + Send;

    /// The database's size, and its partitions where it has them.
    fn storage(pool: &Pool<Self::Db>) -> impl Future<Output = StoreResult<Storage>> + Send;

    /// Claims commit on `conn` between these two calls: a backend may make
    /// them cheaper, as a claim need not survive a crash.
    fn before_claim(conn: &mut Connection<Self>) -> impl Future<Output = StoreResult<()>> + Send;
    /// Answers false when `conn` must not be used again.
    fn after_claim(conn: &mut Connection<Self>) -> impl Future<Output = bool> + Send;
}

/// Why a `SELECT` takes rows: on a shared database, each names the row lock
/// that keeps two processes from doing the same work.
#[derive(Debug, Clone, Copy)]
pub enum RowLock {
    /// Queueing into, or moving on, a FIFO endpoint's queue.
    Queue,
    /// Taking work that any process may do: others take other rows.
    Claim,
    /// Changing the row.
    Update,
    /// Reading a row that must not change until the transaction ends.
    Share,
}

/// How many rows a statement changed, which sqlx answers per backend.
pub trait RowsAffected {
    fn rows_affected(&self) -> u64;
}

/// A Rust type both stored in and read from the backend's columns.
pub trait Column<DB: Database>: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB> + Send {}
impl<DB: Database, T> Column<DB> for T where T: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB> + Send {}

/// A connection to dialect `D`'s database.
pub type Connection<D> = <<D as Dialect>::Db as Database>::Connection;

/// The bound arguments of one statement to dialect `D`'s database.
pub type Arguments<'q, D> = <<D as Dialect>::Db as Database>::Arguments<'q>;

/// A row of `DB`, read by column name or position.
pub type RowOf<DB> = <DB as Database>::Row;

/// Runs `qb` on `conn`; answers how many rows it changed.
pub async fn execute<D: Dialect>(qb: &mut QueryBuilder<'_, D::Db>, conn: &mut Connection<D>) -> sqlx::Result<u64> {
    Ok(D::build(qb).execute(D::exec(conn)).await?.rows_affected())
}

/// A statement whose rows `F` reads.
pub type Rows<'q, D, F> = Map<'q, <D as Dialect>::Db, F, Arguments<'q, D>>;

/// The statement `qb` built, each row it answers read as `O`.
pub fn rows_as<'q, D, O>(
    qb: &'q mut QueryBuilder<'_, D::Db>,
) -> Rows<'q, D, impl FnMut(RowOf<D::Db>) -> sqlx::Result<O> + Send>
where
    D: Dialect,
    O: for<'r> FromRow<'r, RowOf<D::Db>> + Send + Unpin,
{
    D::build(qb).try_map(|row| O::from_row(&row))
}

/// Delivery states as SQL text, from the one enum: `status IN ({})`.
/// Written into the statement, not bound, so the partial indexes on the
/// state still serve it.
#[derive(Debug, Clone, Copy)]
pub struct States(pub &'static [DeliveryStatus]);

impl fmt::Display for States {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, status) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}", status.code())?;
        }
        Ok(())
    }
}

/// Waiting or being sent: the queue.
pub const QUEUED: States = States(&[DeliveryStatus::Pending, DeliveryStatus::Sending]);
/// Not sent yet, and not being sent.
pub const UNSENT: States = States(&[DeliveryStatus::Pending, DeliveryStatus::Held]);
/// Not finished: waiting, being sent or held.
pub const UNFINISHED: States = States(&[DeliveryStatus::Pending, DeliveryStatus::Sending, DeliveryStatus::Held]);

/// One state as SQL text: `status = {}`.
pub fn state(status: DeliveryStatus) -> States {
    States(match status {
        DeliveryStatus::Success => &[DeliveryStatus::Success],
        DeliveryStatus::Pending => &[DeliveryStatus::Pending],
        DeliveryStatus::Fail => &[DeliveryStatus::Fail],
        DeliveryStatus::Sending => &[DeliveryStatus::Sending],
        DeliveryStatus::Held => &[DeliveryStatus::Held],
        DeliveryStatus::Dropped => &[DeliveryStatus::Dropped],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_as_their_codes() {
        assert_eq!(QUEUED.to_string(), "1, 3");
        assert_eq!(UNSENT.to_string(), "1, 4");
        assert_eq!(UNFINISHED.to_string(), "1, 3, 4");
        assert_eq!(state(DeliveryStatus::Dropped).to_string(), "5");
    }
}
