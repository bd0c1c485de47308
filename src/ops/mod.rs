//! Operator telemetry: notifications, metrics and email.

pub mod email;
pub mod metrics;
pub mod notify;
