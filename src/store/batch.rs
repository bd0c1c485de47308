//! Group commit: publishes, attempt results and deferrals waiting at the
//! same time share one transaction, so one commit (one fsync, one round of
//! locks) makes many of them durable. The queue and the answers live here;
//! [`super::queue::Queue::commit`] writes a batch.
//!
//! No caller is answered before the commit that makes its write durable;
//! when a batch cannot be committed, every caller in it gets `Unavailable`
//! (answered 503 with Retry-After, or retried by the dispatcher).

use tokio::sync::{mpsc, oneshot};

use super::handoff::{HandOff, HandOffSlot};
use super::*;
use crate::domain::ids::DeliveryId;

/// Most operations committed together; bounds the time one batch holds the writer.
const MAX_BATCH: usize = 512;
/// Operations waiting for the writer before callers wait to enqueue.
const QUEUE: usize = 4096;

pub(super) type Answer<T> = oneshot::Sender<StoreResult<T>>;

enum Write {
    Publish(Message, Answer<usize>),
    /// Boxed: an attempt is far larger than the other writes.
    Complete(Box<Completion>, Answer<()>),
    Defer(Deferral, Answer<()>),
}

/// A claimed delivery sent back to wait, without an attempt.
pub(super) struct Deferral {
    pub(super) msg_id: MessageId,
    pub(super) delivery_id: DeliveryId,
    pub(super) lease_token: i64,
    pub(super) until: i64,
}

/// What recording an attempt needs of its job.
pub(super) struct Completion {
    pub(super) delivery_id: DeliveryId,
    pub(super) app_id: AppId,
    /// Its endpoint: a FIFO endpoint's next delivery comes due once it is finished.
    pub(super) endpoint_id: EndpointId,
    pub(super) lease_token: i64,
    pub(super) attempt: Attempt,
    pub(super) next: NextStep,
    /// What the attempt tells the operator, written with it.
    pub(super) notices: Notices,
}

/// One batch, sorted by kind.
#[derive(Default)]
pub(super) struct Batch {
    /// Publishes with an eventId, which may collide: each needs a savepoint.
    pub(super) keyed: Vec<(Message, Answer<usize>)>,
    pub(super) plain: Vec<(Message, Answer<usize>)>,
    pub(super) completions: Vec<(Completion, Answer<()>)>,
    pub(super) deferrals: Vec<(Deferral, Answer<()>)>,
    /// Where its fresh deliveries may be handed, if a dispatcher runs here.
    pub(super) handoff: Option<HandOff>,
}

impl Batch {
    /// Answers every operation still in the batch with `Unavailable`.
    pub(super) fn fail_all(self, reason: &str) {
        for (_, answer) in self.keyed.into_iter().chain(self.plain) {
            let _ = answer.send(Err(unavailable(reason)));
        }
        let completions = self.completions.into_iter().map(|(_, a)| a);
        for answer in completions.chain(self.deferrals.into_iter().map(|(_, a)| a)) {
            let _ = answer.send(Err(unavailable(reason)));
        }
    }
}

/// The operations a transaction wrote, answered once it commits or fails.
#[derive(Default)]
pub(super) struct Written {
    pub(super) published: Vec<(Answer<usize>, usize)>,
    pub(super) done: Vec<Answer<()>>,
}

impl Written {
    pub(super) fn answer(self, committed: Result<(), String>) {
        match committed {
            Ok(()) => {
                for (answer, n) in self.published {
                    let _ = answer.send(Ok(n));
                }
                for answer in self.done {
                    let _ = answer.send(Ok(()));
                }
            }
            Err(reason) => {
                for (answer, _) in self.published {
                    let _ = answer.send(Err(unavailable(&reason)));
                }
                for answer in self.done {
                    let _ = answer.send(Err(unavailable(&reason)));
                }
            }
        }
    }
}

pub(super) fn unavailable(reason: &str) -> StoreError {
    StoreError::Unavailable(format!("the write was not committed: {reason}"))
}

#[derive(Clone)]
pub(super) struct Batcher {
    queue: mpsc::Sender<Write>,
    handoff: HandOffSlot,
}

impl Batcher {
    /// Starts the writer task, which hands each batch to `commit` (it
    /// writes the batch in one transaction and answers every caller in it);
    /// the task ends when the last `Batcher` is dropped.
    pub(super) fn start<F, C>(commit: C) -> Self
    where
        C: Fn(Batch) -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let (queue, rx) = mpsc::channel(QUEUE);
        let handoff = HandOffSlot::default();
        tokio::spawn(run(commit, rx, handoff.clone()));
        Self { queue, handoff }
    }

    /// Hands later batches' fresh deliveries to `handoff`, or to nobody.
    pub(super) fn hand_off_to(&self, handoff: Option<HandOff>) {
        self.handoff.set(handoff);
    }

    pub(super) async fn publish(&self, msg: Message) -> StoreResult<usize> {
        let (tx, rx) = oneshot::channel();
        self.submit(Write::Publish(msg, tx), rx).await
    }

    pub(super) async fn defer(&self, deferral: Deferral) -> StoreResult<()> {
        let (tx, rx) = oneshot::channel();
        self.submit(Write::Defer(deferral, tx), rx).await
    }

    pub(super) async fn complete(&self, completion: Completion) -> StoreResult<()> {
        let (tx, rx) = oneshot::channel();
        self.submit(Write::Complete(Box::new(completion), tx), rx).await
    }

    async fn submit<T>(&self, write: Write, answer: oneshot::Receiver<StoreResult<T>>) -> StoreResult<T> {
        let stopped = || StoreError::Unavailable("the database writer has stopped".to_owned());
        self.queue.send(write).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run<F: Future<Output = ()>>(commit: impl Fn(Batch) -> F, mut rx: mpsc::Receiver<Write>, handoff: HandOffSlot) {
    let mut writes = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut writes, MAX_BATCH).await > 0 {
        let mut batch = Batch {
            handoff: handoff.current(),
            ..Batch::default()
        };
        for write in writes.drain(..) {
            match write {
                Write::Publish(msg, answer) if msg.event_id.is_some() => batch.keyed.push((msg, answer)),
                Write::Publish(msg, answer) => batch.plain.push((msg, answer)),
                Write::Complete(c, answer) => batch.completions.push((*c, answer)),
                Write::Defer(d, answer) => batch.deferrals.push((d, answer)),
            }
        }
        commit(batch).await;
    }
}
