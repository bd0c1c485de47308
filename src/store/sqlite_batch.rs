//! SQLite's side of group commit: a batch in one transaction, written with
//! a few multi-row statements.
//!
//! SQLite has one writer, and `synchronous = FULL` syncs on every commit;
//! committing each message alone caps throughput at the disk's sync rate
//! and at one round trip to the database thread per statement.

use sqlx::{Sqlite, SqlitePool};

super::batch::batch_writer!(SqliteWriter, Sqlite, SqlitePool, sqlite);
