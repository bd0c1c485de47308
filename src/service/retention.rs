//! The cleaner: removes payloads whose retention period ended, messages
//! (with their deliveries and attempts) past their history window, and
//! idempotency keys past their day. Where the history is partitioned by day
//! (PostgreSQL) it also makes the days ahead, and the server's window is
//! kept by dropping whole days; the row sweep then serves the shorter
//! windows of applications and the messages a dropped day carried over.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Days, NaiveTime, TimeDelta, Utc};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::domain::clock::Clock;
use crate::domain::ids::AppId;
use crate::store::{Removed, Store, Upkeep, UpkeepPlan};
use crate::telemetry::metrics::Metrics;

/// Payloads (or messages, with their history) removed per transaction, so
/// the writer is never held long.
const BATCH: u32 = 1000;
/// How long an idempotency key replays its answer.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);
/// Days made ahead of today, so a node that cannot reach the database for
/// a while still finds its rows' days made.
const DAYS_AHEAD: u64 = 3;

/// Cleans every `cleanup_interval` until `shutdown`.
pub async fn run_cleaner(
    store: Arc<dyn Store>,
    config: Arc<Config>,
    clock: Clock,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    // At start too: the days ahead exist before the first interval ends.
    upkeep_partitions(store.as_ref(), &config, &clock, &metrics).await;
    loop {
        tokio::select! {
            () = tokio::time::sleep(config.cleanup_interval) => {}
            () = shutdown.cancelled() => return,
        }
        clean_once(store.as_ref(), &clock).await;
        upkeep_partitions(store.as_ref(), &config, &clock, &metrics).await;
        sweep_history(store.as_ref(), &config, &clock, &metrics).await;
    }
}

/// Makes the days ahead and drops the days past the server's window, where
/// the history is partitioned; one node does it at a time.
pub async fn upkeep_partitions(store: &dyn Store, config: &Config, clock: &Clock, metrics: &Metrics) {
    let now = clock.now();
    let today = now.date_naive();
    let plan = UpkeepPlan {
        first_day: today,
        last_day: today.checked_add_days(Days::new(DAYS_AHEAD)).unwrap_or(today),
        drop_before: before(now, server_window(config)),
    };
    let started = std::time::Instant::now();
    match store.upkeep_partitions(&plan).await {
        Ok(Some(upkeep)) => report_upkeep(&upkeep, started.elapsed(), metrics),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "the history partitions' upkeep failed; trying again later"),
    }
}

fn report_upkeep(upkeep: &Upkeep, took: Duration, metrics: &Metrics) {
    metrics.partitions_upkept(upkeep);
    if !upkeep.created.is_empty() {
        tracing::info!(days = ?upkeep.created, "history partitions made ahead");
    }
    if !upkeep.dropped.is_empty() {
        tracing::info!(
            days = ?upkeep.dropped,
            carried_over = upkeep.carried,
            longest_lock_ms = upkeep.longest_lock.as_millis(),
            lock_tries = upkeep.lock_tries,
            took_ms = took.as_millis(),
            "history partitions past the retention dropped; messages still being delivered were carried over \
             to the default partition and go once they end"
        );
    }
    if !upkeep.analyzed.is_empty() {
        tracing::debug!(partitions = ?upkeep.analyzed, "history partitions' statistics refreshed");
    }
    for error in &upkeep.errors {
        tracing::warn!(%error, "a history partition was left for the next upkeep");
    }
}

fn server_window(config: &Config) -> TimeDelta {
    TimeDelta::from_std(config.history_retention).unwrap_or(TimeDelta::MAX)
}

/// Where the row sweep stops for the server's window: on partitioned
/// history, below the oldest day, as whole days go by upkeep; what is
/// below it (in the default partition) is the sweep's.
async fn server_sweep_before(store: &dyn Store, cutoff: DateTime<Utc>) -> DateTime<Utc> {
    match store.storage().await {
        Ok(storage) => storage
            .partitions
            .and_then(|p| p.oldest)
            .map(|day| day.and_time(NaiveTime::MIN).and_utc().min(cutoff))
            .unwrap_or(cutoff),
        Err(e) => {
            tracing::warn!(error = %e, "reading the history partitions failed; sweeping by rows meanwhile");
            cutoff
        }
    }
}

/// Removes every message older than its application's window whose
/// deliveries are all done: first the server's window over all
/// applications, then each shorter window an application chose.
async fn sweep_history(store: &dyn Store, config: &Config, clock: &Clock, metrics: &Metrics) {
    let now = clock.now();
    let server = server_window(config);
    let mut removed = Removed::default();
    let server_before = server_sweep_before(store, before(now, server)).await;
    sweep_window(store, None, server_before, metrics, &mut removed).await;
    match store.history_windows().await {
        Ok(windows) => {
            for (app, days) in windows {
                let window = TimeDelta::try_days(days).unwrap_or(TimeDelta::MAX);
                if window < server {
                    sweep_window(store, Some(&app), before(now, window), metrics, &mut removed).await;
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "reading applications' history windows failed; trying again later"),
    }
    // Operator emails that ended keep as long as the server's history.
    match store.remove_old_emails(before(now, server)).await {
        Ok(0) => {}
        Ok(emails) => tracing::info!(emails, "operator emails past the history retention removed"),
        Err(e) => tracing::warn!(error = %e, "removing old operator emails failed; trying again later"),
    }
    if removed.messages > 0 {
        tracing::info!(
            messages = removed.messages,
            deliveries = removed.deliveries,
            attempts = removed.attempts,
            "history past its retention removed"
        );
    }
}

/// The start of a window of `length` ending `now`.
fn before(now: DateTime<Utc>, length: TimeDelta) -> DateTime<Utc> {
    now.checked_sub_signed(length).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Removes the messages created before `before`, batch after batch, until
/// none is left.
async fn sweep_window(
    store: &dyn Store,
    app: Option<&AppId>,
    before: DateTime<Utc>,
    metrics: &Metrics,
    removed: &mut Removed,
) {
    loop {
        match store.remove_old_messages(app, before, BATCH).await {
            Ok(batch) => {
                metrics.history_removed(batch);
                removed.add(batch);
                if batch.messages < u64::from(BATCH) {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "removing old history failed; trying again later");
                break;
            }
        }
    }
}

async fn clean_once(store: &dyn Store, clock: &Clock) {
    let mut removed = 0;
    loop {
        match store.remove_expired_payloads(clock.now(), BATCH).await {
            Ok(n) => {
                removed += n;
                if n < u64::from(BATCH) {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "removing expired payloads failed; trying again later");
                break;
            }
        }
    }
    if removed > 0 {
        tracing::info!(removed, "expired payloads removed");
    }
    let oldest = clock.now() - chrono::Duration::from_std(IDEMPOTENCY_TTL).unwrap_or_default();
    if let Err(e) = store.remove_idempotency_keys(oldest).await {
        tracing::warn!(error = %e, "removing old idempotency keys failed");
    }
}
