//! The dispatcher: claims due deliveries and runs each attempt as a task.
//!
//! It never polls: it sleeps until the earliest due delivery, and a publish,
//! a resend or a finished attempt wakes it early. In-flight attempts are
//! capped by a semaphore.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use rand::Rng;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::client::Outbound;
use super::lanes::{Admission, BUSY_RETRY, Lanes};
use super::sender;
use crate::config::Config;
use crate::domain::clock::Clock;
use crate::domain::ids::AttemptId;
use crate::domain::profile::DEFAULT_PROFILE;
use crate::domain::retry::Verdict;
use crate::domain::status::{DeliveryOrder, DeliveryStatus, WhileDisabled};
use crate::store::handoff::{HandOff, Handed};
use crate::store::{Attempt, DROPPED_WHILE_DISABLED, DeliveryJob, NextStep, Notices, Store, StoreResult};
use crate::telemetry::metrics::{Metrics, Outcome, Via};
use crate::telemetry::notify::{AttemptEvent, DisableTrigger, Notifier};

/// Longest nap between checks when nothing is due: a safety net, not the
/// mechanism (wake-ups are).
const IDLE_CHECK: Duration = Duration::from_secs(30);
/// Pause after a store error before trying again.
const ERROR_BACKOFF: Duration = Duration::from_secs(1);
/// Tries at recording an attempt while the database is unreachable.
const RECORD_TRIES: u32 = 4;
/// Most deliveries claimed in one transaction.
const CLAIM_BATCH: usize = 128;
/// How long a stopping dispatcher waits for publish batches still writing
/// to hand over what they leased, to make it due again at once.
const HANDOFF_DRAIN: Duration = Duration::from_secs(5);
/// The failed attempt, in a row, that reports a delivery as failing.
const FAILING_AT_ATTEMPT: u32 = 4;

#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    config: Arc<Config>,
    outbound: Outbound,
    wake: Arc<Notify>,
    slots: Arc<Semaphore>,
    notifier: Notifier,
    metrics: Arc<Metrics>,
    lanes: Lanes,
    clock: Clock,
    /// When the dispatcher means to look for due work next, in the clock's
    /// milliseconds: a retry due later need not wake it.
    looks_next: AtomicI64,
}

impl Dispatcher {
    pub fn new(
        store: Arc<dyn Store>,
        config: Arc<Config>,
        outbound: Outbound,
        notifier: Notifier,
        metrics: Arc<Metrics>,
        clock: Clock,
    ) -> Self {
        let slots = Arc::new(Semaphore::new(config.max_concurrent_deliveries));
        let lanes = Lanes::new(config.max_in_flight_per_endpoint);
        Self {
            inner: Arc::new(Inner {
                store,
                config,
                outbound,
                wake: Arc::new(Notify::new()),
                slots,
                notifier,
                metrics,
                lanes,
                clock,
                looks_next: AtomicI64::new(i64::MAX),
            }),
        }
    }

    /// Tells the dispatcher that new work may be due now.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// The time every delivery is judged by.
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// For sources of wake-ups outside this process (other nodes).
    pub fn wake_handle(&self) -> Arc<Notify> {
        self.inner.wake.clone()
    }

    /// Runs until `shutdown`; attempts are spawned on `tracker` so the caller
    /// can wait for them to finish.
    pub async fn run(self, shutdown: CancellationToken, tracker: TaskTracker) {
        tracing::info!(
            max_in_flight = self.inner.config.max_concurrent_deliveries,
            "dispatcher started"
        );
        let (handoff, inbox) = HandOff::new(self.inner.slots.clone(), self.inner.config.lease_duration);
        self.inner.store.hand_off_to(Some(handoff));
        tracker.spawn(self.clone().receive(inbox, shutdown.clone(), tracker.clone()));
        while !shutdown.is_cancelled() {
            let Some(permits) = self.reserve_slots(&shutdown).await else {
                break;
            };
            match self
                .inner
                .store
                .claim_due(
                    self.inner.clock.now(),
                    permits.len() as u32,
                    self.inner.config.lease_duration,
                )
                .await
            {
                Ok(jobs) if jobs.is_empty() => {
                    drop(permits);
                    self.sleep_until_due(&shutdown).await;
                }
                Ok(jobs) => {
                    self.inner.metrics.dispatched(Via::Claim, jobs.len());
                    for (job, permit) in jobs.into_iter().zip(permits) {
                        let this = self.clone();
                        let shutdown = shutdown.clone();
                        tracker.spawn(async move { this.attempt(job, permit, shutdown).await });
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "claiming deliveries failed; retrying");
                    drop(permits);
                    sleep_or_cancel(ERROR_BACKOFF, &shutdown).await;
                }
            }
        }
        tracing::info!("dispatcher stopped");
    }

    /// Sends what publish batches lease and hand over, each under the slot
    /// it took, until shutdown; what arrives after is made due again at
    /// once, for whichever node runs next, rather than at its lease's end.
    async fn receive(
        self,
        mut inbox: tokio::sync::mpsc::UnboundedReceiver<Handed>,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) {
        loop {
            let handed = tokio::select! {
                handed = inbox.recv() => handed,
                () = shutdown.cancelled() => None,
            };
            let Some(Handed { job, slot }) = handed else { break };
            self.inner.metrics.dispatched(Via::HandOff, 1);
            let this = self.clone();
            let shutdown = shutdown.clone();
            tracker.spawn(async move { this.attempt(job, slot, shutdown).await });
        }
        // No batch leases for this node from here on; one already writing
        // may still hand over, until it ends and drops its sender.
        self.inner.store.hand_off_to(None);
        let drain = async {
            while let Some(Handed { job, slot }) = inbox.recv().await {
                drop(slot);
                self.defer(&job, Duration::ZERO).await;
            }
        };
        if tokio::time::timeout(HANDOFF_DRAIN, drain).await.is_err() {
            tracing::warn!(
                "a publish batch was still writing at shutdown; what it leased comes back when its lease ends"
            );
        }
    }

    /// Waits for at least one free slot, then takes as many as are free.
    async fn reserve_slots(&self, shutdown: &CancellationToken) -> Option<Vec<OwnedSemaphorePermit>> {
        let slots = &self.inner.slots;
        let first = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.ok()?,
            () = shutdown.cancelled() => return None,
        };
        let mut permits = vec![first];
        while permits.len() < CLAIM_BATCH {
            match slots.clone().try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        Some(permits)
    }

    async fn sleep_until_due(&self, shutdown: &CancellationToken) {
        // From here until the nap is known, anything recorded wakes it: a
        // retry committed before the read below is seen by it, one after
        // sees this mark.
        self.inner.looks_next.store(i64::MAX, Ordering::SeqCst);
        let nap = match self.inner.store.next_due_at().await {
            Ok(Some(at)) => (at - self.inner.clock.now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(IDLE_CHECK),
            Ok(None) => IDLE_CHECK,
            Err(e) => {
                tracing::error!(error = %e, "reading the next due time failed");
                ERROR_BACKOFF
            }
        };
        if nap.is_zero() {
            return;
        }
        let wakes_at = self.inner.clock.now() + chrono::Duration::from_std(nap).unwrap_or_default();
        self.inner
            .looks_next
            .store(wakes_at.timestamp_millis(), Ordering::SeqCst);
        tokio::select! {
            () = self.inner.wake.notified() => {}
            () = tokio::time::sleep(nap) => {}
            () = shutdown.cancelled() => {}
        }
    }

    async fn attempt(&self, job: DeliveryJob, permit: OwnedSemaphorePermit, shutdown: CancellationToken) {
        if job.endpoint.disabled {
            return self.while_disabled(job).await;
        }
        let inner = &self.inner;
        let profiles = &inner.config.profiles;
        let profile = profiles.resolve(job.endpoint.profile.as_deref(), job.app_profile.as_deref());
        let timeout = profile.map_or(inner.config.request_timeout, |p| p.timeout);
        let Some((lane, permit)) = self.take_lane(&job, permit, timeout, &shutdown).await else {
            return;
        };
        let started_at = self.inner.clock.now();
        let result = match profile {
            None => sender::AttemptResult::not_sent(format!(
                "profile '{}' is not configured on this server",
                job.endpoint
                    .profile
                    .as_deref()
                    .or(job.app_profile.as_deref())
                    .unwrap_or_default()
            )),
            Some(profile) => sender::send(&inner.outbound, &job, profile, &inner.clock, started_at).await,
        };
        inner.lanes.took(&job.endpoint.id, result.duration);
        // The endpoint's slot covers the request only. The global slot is
        // held until the attempt is recorded: what a crash can send twice
        // stays bounded by the in-flight cap.
        drop(lane);
        let attempts_made = job.attempts_made + 1;
        // An unknown profile retries on the default schedule: fixing the
        // configuration and restarting lets it through.
        let rules = profile.or_else(|| profiles.get(DEFAULT_PROFILE));
        let verdict = match rules {
            None => Verdict::GiveUp,
            Some(rules) => rules.retry_schedule.judge(
                result.status_code,
                result.retry_after,
                attempts_made,
                rules.retry_on_4xx,
                rand::thread_rng().r#gen::<f64>(),
            ),
        };
        let next = match verdict {
            Verdict::Delivered => NextStep::Succeeded,
            Verdict::RetryIn(delay) => NextStep::RetryAt(self.inner.clock.now() + delay),
            Verdict::GiveUp | Verdict::Gone => NextStep::Exhausted,
        };
        let succeeded = verdict == Verdict::Delivered;
        let outcome = match verdict {
            Verdict::Delivered => Outcome::Delivered,
            Verdict::RetryIn(_) => Outcome::Retried,
            Verdict::GiveUp | Verdict::Gone => Outcome::Exhausted,
        };
        let answered = (result.status_code != 0).then_some(result.duration.as_secs_f64());
        inner.metrics.attempt(outcome, answered);
        tracing::debug!(
            msg_id = %job.msg_id, endpoint_id = %job.endpoint.id, attempt = attempts_made,
            status = result.status_code, outcome = ?next, "attempt finished"
        );
        let attempt = attempt_record(&job, result, succeeded, started_at);
        if let NextStep::Exhausted = next {
            tracing::warn!(msg_id = %job.msg_id, endpoint_id = %job.endpoint.id, attempts = attempts_made,
                "delivery exhausted its retries");
        }
        // What this attempt tells the operator is recorded with it.
        let notices = self.report(&job, &attempt, verdict, attempts_made).await;
        let noted = !notices.messages.is_empty();
        self.record(&job, &attempt, next, notices).await;
        if succeeded
            && !inner.config.retain_payloads
            && let Err(e) = inner
                .store
                .remove_payload_if_delivered(&job.msg_id, self.inner.clock.now())
                .await
        {
            tracing::warn!(error = %e, msg_id = %job.msg_id, "removing a delivered payload failed");
        }
        if verdict == Verdict::Gone {
            self.disable_gone(&job, started_at).await;
        } else {
            self.track_health(&job, verdict).await;
        }
        // A FIFO endpoint's next delivery, or the operator's notices, are
        // due now; a retry may be due sooner than the dispatcher's nap.
        if noted || job.endpoint.ordering == DeliveryOrder::Fifo {
            self.wake();
        } else if let NextStep::RetryAt(at) = next {
            self.wake_by(at);
        }
        drop(permit);
    }

    /// Wakes the dispatcher if `at` comes before it means to look again.
    fn wake_by(&self, at: chrono::DateTime<Utc>) {
        if at.timestamp_millis() < self.inner.looks_next.load(Ordering::SeqCst) {
            self.wake();
        }
    }

    /// The endpoint's slot for `job`, and the global slot it is sent under;
    /// `None` once the delivery has gone back to the store to wait there.
    async fn take_lane(
        &self,
        job: &DeliveryJob,
        permit: OwnedSemaphorePermit,
        timeout: Duration,
        shutdown: &CancellationToken,
    ) -> Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)> {
        let admission = self
            .inner
            .lanes
            .admit(&job.endpoint.id, job.endpoint.rate_limit, Instant::now());
        let waiter = match admission {
            Admission::Go(lane) => return Some((lane, permit)),
            Admission::Later(wait) => {
                drop(permit);
                self.defer(job, wait).await;
                return None;
            }
            Admission::Queue(waiter) => waiter,
        };
        // A queued delivery lets its global slot go, so a slow endpoint's
        // queue never holds back the other endpoints; it takes one again
        // before it is sent, which keeps what a crash can send twice bounded.
        drop(permit);
        let deadline = tokio::time::Instant::now() + self.queue_budget(timeout);
        let slots = self.inner.slots.clone();
        let taken = tokio::select! {
            taken = async {
                let lane = waiter.slot(deadline).await?;
                let permit = tokio::time::timeout_at(deadline, slots.acquire_owned()).await.ok()?.ok()?;
                Some((lane, permit))
            } => taken,
            () = shutdown.cancelled() => None,
        };
        if taken.is_none() {
            // Back to the store: due now when shutting down, so another node
            // need not wait for the lease to end.
            let wait = if shutdown.is_cancelled() {
                Duration::ZERO
            } else {
                BUSY_RETRY
            };
            self.defer(job, wait).await;
        }
        taken
    }

    /// How long a claimed delivery may queue for its endpoint's slot: half
    /// of what its lease leaves beyond the request, so it is sent and
    /// recorded before the lease ends and no other node claims it meanwhile.
    fn queue_budget(&self, timeout: Duration) -> Duration {
        let request = timeout + sender::BODY_READ_GRACE;
        self.inner.config.lease_duration.saturating_sub(request) / 2
    }

    /// Sends a delivery back to wait for its endpoint's lane; if that
    /// cannot be recorded, its lease expires and it comes back then.
    async fn defer(&self, job: &DeliveryJob, wait: Duration) {
        // Rounded up to the store's millisecond, so it never comes due early.
        let until = self.inner.clock.now()
            + chrono::Duration::from_std(wait).unwrap_or_default()
            + chrono::Duration::milliseconds(1);
        if let Err(e) = self.inner.store.defer(job, until).await {
            tracing::warn!(error = %e, msg_id = %job.msg_id, "deferring a delivery failed; it comes back when its lease ends");
        }
        self.inner.metrics.attempt(Outcome::Deferred, None);
        // It may now be the earliest due: the dispatcher's nap must not outlast it.
        self.wake();
    }

    /// A delivery claimed for an endpoint disabled since: held until it is
    /// enabled, or recorded as not sent.
    async fn while_disabled(&self, job: DeliveryJob) {
        let store = &self.inner.store;
        match job.endpoint.while_disabled {
            WhileDisabled::Hold => match store.hold_delivery(&job, self.inner.clock.now()).await {
                Ok(true) => {}
                // Enabled meanwhile: it is due again now.
                Ok(false) => self.wake(),
                Err(e) => tracing::error!(error = %e, msg_id = %job.msg_id,
                    "holding a delivery failed; it is tried again when its lease expires"),
            },
            WhileDisabled::Drop => {
                let result = sender::AttemptResult::recorded_as(DROPPED_WHILE_DISABLED.to_owned());
                let attempt = attempt_record(&job, result, false, self.inner.clock.now());
                self.record(&job, &attempt, NextStep::Dropped, Notices::default()).await;
                self.inner.metrics.attempt(Outcome::Dropped, None);
            }
        }
    }

    /// Operational webhooks (and an email) about this attempt, as the Svix
    /// API sends them, to be recorded with it.
    async fn report(&self, job: &DeliveryJob, attempt: &Attempt, verdict: Verdict, attempts_made: u32) -> Notices {
        let notifier = &self.inner.notifier;
        match verdict {
            Verdict::RetryIn(_) if attempts_made == FAILING_AT_ATTEMPT => {
                notifier.attempt(AttemptEvent::Failing, job, attempt, false).await
            }
            Verdict::GiveUp | Verdict::Gone => {
                let became_failing = job.endpoint.failing_since.is_none();
                notifier
                    .attempt(AttemptEvent::Exhausted, job, attempt, became_failing)
                    .await
            }
            Verdict::Delivered if attempts_made > FAILING_AT_ATTEMPT => {
                notifier.attempt(AttemptEvent::Recovered, job, attempt, false).await
            }
            _ => Notices::default(),
        }
    }

    /// Switches an endpoint off on Herald's own decision and tells the
    /// operator, in one transaction.
    async fn disable(&self, job: &DeliveryJob, reason: &str) -> StoreResult<()> {
        let store = &self.inner.store;
        let endpoint = match store.get_endpoint(&job.app_id, job.endpoint.id.as_str()).await {
            Ok(Some(ep)) => ep,
            _ => job.endpoint.clone(),
        };
        let notices = match store.get_app(job.app_id.as_str()).await {
            Ok(Some(app)) => {
                self.inner
                    .notifier
                    .endpoint_disabled(&app, &endpoint, DisableTrigger::Automatic, Some(reason))
            }
            _ => Notices::default(),
        };
        let now = self.inner.clock.now();
        if store
            .disable_endpoint_noting(&job.endpoint.id, reason, now, &notices)
            .await?
        {
            self.inner.notifier.written(&notices);
            // The operator's notices are due now.
            self.wake();
        }
        Ok(())
    }

    /// An exhausted delivery makes its endpoint failing; a success makes it
    /// healthy again; failing for `disable_after` switches it off. Only a
    /// change is written, so a healthy endpoint costs nothing here.
    async fn track_health(&self, job: &DeliveryJob, verdict: Verdict) {
        let store = &self.inner.store;
        let id = &job.endpoint.id;
        let now = self.inner.clock.now();
        let result = match (verdict, job.endpoint.failing_since) {
            (Verdict::Delivered, Some(_)) => {
                tracing::info!(endpoint_id = %id, "endpoint delivered again; it is healthy");
                store.set_endpoint_failing(id, None).await
            }
            (Verdict::GiveUp, None) => {
                tracing::warn!(endpoint_id = %id, "a delivery exhausted its retries; the endpoint is failing");
                store.set_endpoint_failing(id, Some(now)).await
            }
            (Verdict::GiveUp, Some(since))
                if (now - since).to_std().unwrap_or_default() >= self.inner.config.disable_after =>
            {
                let reason = format!(
                    "failing since {} with no successful delivery for {}",
                    since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    humantime::format_duration(self.inner.config.disable_after)
                );
                tracing::warn!(endpoint_id = %id, %reason, "disabling a failing endpoint");
                self.disable(job, &reason).await
            }
            _ => Ok(()),
        };
        if let Err(e) = result {
            tracing::error!(error = %e, endpoint_id = %id, "recording the endpoint's health failed");
        }
    }

    /// 410 Gone: the receiver asks never to be called again.
    async fn disable_gone(&self, job: &DeliveryJob, at: chrono::DateTime<Utc>) {
        let reason = format!(
            "the endpoint answered 410 Gone at {}",
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        tracing::warn!(endpoint_id = %job.endpoint.id, "endpoint answered 410 Gone; disabling it");
        if let Err(e) = self.disable(job, &reason).await {
            tracing::error!(error = %e, endpoint_id = %job.endpoint.id, "disabling a gone endpoint failed");
        }
    }

    /// Records an attempt, riding out a short database outage: if it cannot
    /// be recorded, the lease expires and the delivery is sent again.
    async fn record(&self, job: &DeliveryJob, attempt: &Attempt, next: NextStep, notices: Notices) {
        let mut pause = Duration::from_millis(100);
        for tries_left in (0..RECORD_TRIES).rev() {
            let written = self
                .inner
                .store
                .complete_attempt_noting(job, attempt, next, notices.clone())
                .await;
            match written {
                Ok(()) => return self.inner.notifier.written(&notices),
                Err(e) if e.is_unavailable() && tries_left > 0 => {
                    tracing::warn!(error = %e, msg_id = %job.msg_id, "recording an attempt failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                Err(e) => {
                    tracing::error!(error = %e, msg_id = %job.msg_id,
                        "recording an attempt failed; it will be sent again when its lease expires");
                    return;
                }
            }
        }
    }
}

/// The history's record of one attempt.
fn attempt_record(
    job: &DeliveryJob,
    result: sender::AttemptResult,
    succeeded: bool,
    started_at: chrono::DateTime<Utc>,
) -> Attempt {
    Attempt {
        id: AttemptId::generate(),
        msg_id: job.msg_id.clone(),
        endpoint_id: job.endpoint.id.clone(),
        url: job.endpoint.url.clone(),
        response: result.response,
        response_status_code: i64::from(result.status_code),
        response_duration_ms: i64::try_from(result.duration.as_millis()).unwrap_or(i64::MAX),
        status: if succeeded {
            DeliveryStatus::Success
        } else {
            DeliveryStatus::Fail
        },
        trigger_type: job.trigger_type,
        created_at: started_at,
        request_headers: result.request_headers,
        request_body: result.request_body,
        response_headers: result.response_headers,
        event: None,
    }
}

async fn sleep_or_cancel(d: Duration, shutdown: &CancellationToken) {
    tokio::select! {
        () = tokio::time::sleep(d) => {}
        () = shutdown.cancelled() => {}
    }
}
