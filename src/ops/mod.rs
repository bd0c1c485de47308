//! Operator workflows: notifications, metrics, recovery tasks, retention.

pub mod email;
pub mod metrics;
pub mod notify;
pub mod recovery;
pub mod retention;
pub mod tokens;
