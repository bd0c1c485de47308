//! The direct hand-off: a publish batch leases the fresh deliveries this
//! node has room for inside its own transaction, and hands them to the
//! dispatcher with the rows already read. They are never claimed, so a
//! fresh delivery costs no claim transaction; claims remain for retries,
//! for what another node wrote and for what was left when room ran out.
//!
//! Room is the dispatcher's own in-flight semaphore: a handed delivery
//! holds one of its slots from the lease on, exactly as a claimed one
//! does, so what a crash can send twice stays bounded by the same cap.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::DeliveryJob;

/// A leased delivery and the in-flight slot it is sent under.
pub struct Handed {
    pub job: DeliveryJob,
    pub slot: OwnedSemaphorePermit,
}

/// Where a publish batch hands what it leased: the running dispatcher's
/// slots and inbox.
#[derive(Clone)]
pub struct HandOff {
    slots: Arc<Semaphore>,
    lease: Duration,
    inbox: mpsc::UnboundedSender<Handed>,
}

impl HandOff {
    /// A hand-off into `slots`, leasing for `lease`; the receiver is the
    /// dispatcher's inbox. Unbounded, as the slots already bound it.
    pub fn new(slots: Arc<Semaphore>, lease: Duration) -> (Self, mpsc::UnboundedReceiver<Handed>) {
        let (inbox, received) = mpsc::unbounded_channel();
        (Self { slots, lease, inbox }, received)
    }
}

/// Where the store finds the hand-off, if a dispatcher runs in this process.
#[derive(Clone, Default)]
pub(super) struct HandOffSlot(Arc<Mutex<Option<HandOff>>>);

impl HandOffSlot {
    pub(super) fn set(&self, handoff: Option<HandOff>) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = handoff;
    }

    /// The hand-off as things stand when a batch starts.
    pub(super) fn current(&self) -> Option<HandOff> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// The fresh deliveries one batch leases, each with the slot it took.
pub(super) struct Leases {
    handoff: Option<HandOff>,
    /// One lease token for the batch, as a claim has one for its rows.
    pub(super) token: i64,
    /// When the leases end, in the store's milliseconds.
    pub(super) until: i64,
    taken: Vec<((String, String), OwnedSemaphorePermit)>,
}

impl Leases {
    /// The leases a batch written at `now_ms` may take through `handoff`.
    pub(super) fn new(handoff: Option<HandOff>, now_ms: i64) -> Self {
        let until = handoff.as_ref().map_or(0, |h| {
            now_ms + i64::try_from(h.lease.as_millis()).unwrap_or(i64::MAX / 2)
        });
        Leases {
            handoff,
            token: rand::thread_rng().gen_range(1..i64::MAX),
            until,
            taken: Vec::new(),
        }
    }

    /// Takes a free in-flight slot for one more delivery, if there is one.
    /// Never waits: a delivery without room is left due for a claim.
    pub(super) fn try_take(&mut self) -> Option<OwnedSemaphorePermit> {
        self.handoff.as_ref()?.slots.clone().try_acquire_owned().ok()
    }

    /// Notes the delivery `(msg_id, id)` leased under `slot`.
    pub(super) fn leased(&mut self, msg_id: String, delivery_id: String, slot: OwnedSemaphorePermit) {
        self.taken.push(((msg_id, delivery_id), slot));
    }

    /// The leased deliveries' keys, to read their jobs back.
    pub(super) fn keys(&self) -> Vec<(String, String)> {
        self.taken.iter().map(|(key, _)| key.clone()).collect()
    }

    /// Hands the jobs read back to the dispatcher, once their batch is
    /// committed. A job whose slot cannot be matched, or a dispatcher that
    /// has stopped, leaves the delivery to come back when its lease ends.
    pub(super) fn hand(self, jobs: Vec<DeliveryJob>) {
        let Some(handoff) = self.handoff else { return };
        let mut slots: std::collections::HashMap<(String, String), OwnedSemaphorePermit> =
            self.taken.into_iter().collect();
        for job in jobs {
            let key = (job.msg_id.as_str().to_owned(), job.delivery_id.as_str().to_owned());
            if let Some(slot) = slots.remove(&key)
                && handoff.inbox.send(Handed { job, slot }).is_err()
            {
                return;
            }
        }
    }
}
