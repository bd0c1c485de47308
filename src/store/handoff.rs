//! The direct hand-off: a publish batch leases the fresh deliveries this
//! node has room for inside its own transaction, and hands them to the
//! dispatcher built from what it wrote (only their endpoints are read).
//! They are never claimed, so a fresh delivery costs no claim transaction;
//! claims remain for retries, for what another node wrote and for what was
//! left when room ran out.
//!
//! Room is the dispatcher's own in-flight semaphore: a handed delivery
//! holds one of its slots from the lease on, exactly as a claimed one
//! does, so what a crash can send twice stays bounded by the same cap.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::{DeliveryJob, Endpoint};
use crate::domain::ids::{AppId, DeliveryId, MessageId};
use crate::domain::status::TriggerType;

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
    taken: Vec<(Leased, OwnedSemaphorePermit)>,
}

/// A fresh delivery a batch leased, as the batch wrote it: its job but for
/// the endpoint, read once per batch for all of them.
pub(super) struct Leased {
    pub(super) delivery_id: DeliveryId,
    pub(super) msg_id: MessageId,
    pub(super) app_id: AppId,
    pub(super) endpoint_id: String,
    pub(super) event_type: String,
    pub(super) event_id: Option<String>,
    pub(super) msg_created_at: DateTime<Utc>,
    pub(super) payload: Arc<str>,
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

    /// Notes a delivery leased under `slot`.
    pub(super) fn leased(&mut self, delivery: Leased, slot: OwnedSemaphorePermit) {
        self.taken.push((delivery, slot));
    }

    /// How many deliveries are leased so far: a mark to go back to.
    pub(super) fn mark(&self) -> usize {
        self.taken.len()
    }

    /// Forgets the deliveries leased since `mark` (their writes were rolled
    /// back), freeing their slots.
    pub(super) fn forget_since(&mut self, mark: usize) {
        self.taken.truncate(mark);
    }

    /// The endpoints of the leased deliveries, each once.
    pub(super) fn endpoint_ids(&self) -> Vec<String> {
        let ids: BTreeSet<&String> = self.taken.iter().map(|(d, _)| &d.endpoint_id).collect();
        ids.into_iter().cloned().collect()
    }

    /// Hands the leased deliveries to the dispatcher once their batch is
    /// committed, each with its endpoint (opened) and its application's
    /// profile. One whose endpoint is missing, or a dispatcher that has
    /// stopped, leaves the delivery to come back when its lease ends.
    pub(super) fn hand(self, endpoints: &HashMap<String, (Endpoint, Option<String>)>) {
        let Some(handoff) = self.handoff else { return };
        for (d, slot) in self.taken {
            let Some((endpoint, app_profile)) = endpoints.get(&d.endpoint_id) else {
                continue;
            };
            let job = DeliveryJob {
                delivery_id: d.delivery_id,
                lease_token: self.token,
                msg_id: d.msg_id,
                app_id: d.app_id,
                endpoint: endpoint.clone(),
                app_profile: app_profile.clone(),
                event_type: d.event_type,
                event_id: d.event_id,
                msg_created_at: d.msg_created_at,
                payload: d.payload,
                attempts_made: 0,
                trigger_type: TriggerType::Scheduled,
            };
            if handoff.inbox.send(Handed { job, slot }).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leased_to(endpoint_id: &str) -> Leased {
        Leased {
            delivery_id: DeliveryId::generate(),
            msg_id: MessageId::generate(),
            app_id: AppId::generate(),
            endpoint_id: endpoint_id.to_owned(),
            event_type: "ticket.created".to_owned(),
            event_id: None,
            msg_created_at: Utc::now(),
            payload: Arc::from("{}"),
        }
    }

    #[test]
    fn what_a_rolled_back_publish_leased_is_forgotten_and_its_slot_freed() {
        let slots = Arc::new(Semaphore::new(3));
        let (handoff, _inbox) = HandOff::new(slots.clone(), Duration::from_secs(30));
        let mut leases = Leases::new(Some(handoff), 0);
        let slot = leases.try_take().expect("room");
        leases.leased(leased_to("ep_kept"), slot);
        let mark = leases.mark();
        let slot = leases.try_take().expect("room");
        leases.leased(leased_to("ep_rolled_back"), slot);
        assert_eq!(slots.available_permits(), 1);

        leases.forget_since(mark);
        assert_eq!(slots.available_permits(), 2);
        assert_eq!(leases.endpoint_ids(), vec!["ep_kept".to_owned()]);
    }
}
