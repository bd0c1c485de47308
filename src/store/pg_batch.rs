//! PostgreSQL's side of group commit: a batch in one transaction, written
//! with a few multi-row statements, and one wake-up for the other nodes.
//!
//! Per message, a transaction of its own cost six round trips and a commit;
//! the server's CPU, not the disk, was the limit.

use sqlx::{PgPool, Postgres};

super::batch::batch_writer!(PgWriter, Postgres, PgPool, postgres);
