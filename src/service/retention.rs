//! The cleaner: removes payloads whose retention period ended, and
//! idempotency keys past their day.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::domain::clock::Clock;
use crate::store::Store;

/// Payloads removed per transaction, so the writer is never held long.
const BATCH: u32 = 1000;
/// How long an idempotency key replays its answer.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);

/// Cleans every `cleanup_interval` until `shutdown`.
pub async fn run_cleaner(store: Arc<dyn Store>, config: Arc<Config>, clock: Clock, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(config.cleanup_interval) => {}
            () = shutdown.cancelled() => return,
        }
        clean_once(store.as_ref(), &clock).await;
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
