//! What Herald tells its operators: metrics, operational notices and the
//! email outbox. Below delivery, so the dispatcher reports without knowing
//! who listens.

pub mod email;
pub mod metrics;
pub mod notify;
pub mod outbox;
