//! A fresh PostgreSQL database per test, so tests run in parallel without
//! seeing each other's rows or wake-ups.
//!
//! The server is found at HERALD_TEST_POSTGRES_URL (default
//! postgres://postgres@127.0.0.1:5432/test). When it is not reachable the
//! PostgreSQL variants are skipped with a printed notice, unless
//! HERALD_REQUIRE_POSTGRES=1 (as in CI), where that is a failure.

use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::{Connection, PgConnection};

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// Databases left by killed test runs are dropped once this old.
const STALE_AFTER_SECS: u64 = 3600;

pub fn admin_url() -> String {
    std::env::var("HERALD_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// Creates an empty database and answers its URL, or `None` to skip.
pub async fn fresh_database() -> Option<String> {
    let admin = admin_url();
    let mut conn = match PgConnection::connect(&admin).await {
        Ok(c) => c,
        Err(e) => {
            if std::env::var("HERALD_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                panic!("PostgreSQL is required (HERALD_REQUIRE_POSTGRES=1) but {admin} is unreachable: {e}");
            }
            static ONCE: std::sync::Once = std::sync::Once::new();
            ONCE.call_once(|| {
                super::report(&format!(
                    "SKIPPED: the PostgreSQL variants of these tests: {admin} is unreachable ({e}). \
                     README, 'PostgreSQL', says how to start one."
                ))
            });
            return None;
        }
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
    drop_stale(&mut conn, now).await;
    let name = format!("herald_t_{now}_{:016x}", rand::random::<u64>());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let mut url = url::Url::parse(&admin).expect("admin URL");
    url.set_path(&format!("/{name}"));
    Some(url.to_string())
}

async fn drop_stale(conn: &mut PgConnection, now: u64) {
    let names: Vec<String> = sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'herald_t_%'")
        .fetch_all(&mut *conn)
        .await
        .unwrap_or_default();
    for name in names {
        let created: u64 = name.split('_').nth(2).and_then(|s| s.parse().ok()).unwrap_or(now);
        if now.saturating_sub(created) > STALE_AFTER_SECS {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut *conn)
                .await;
        }
    }
}

/// Drops a test database, cutting any connection still open to it.
pub async fn drop_database(url: &str) {
    let name = url::Url::parse(url)
        .expect("url")
        .path()
        .trim_start_matches('/')
        .to_owned();
    if let Ok(mut conn) = PgConnection::connect(&admin_url()).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await;
    }
}
