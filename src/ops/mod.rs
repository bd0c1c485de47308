//! Operator workflows: notifications, recovery tasks, retention.

pub mod email;
pub mod notify;
pub mod recovery;
pub mod retention;
