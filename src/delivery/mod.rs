//! Getting messages to endpoints: claim due deliveries, send them, record
//! what happened, schedule what comes next.

pub mod client;
pub mod dispatcher;
pub mod lanes;
pub mod render;
pub mod sender;
pub mod verify;

pub use dispatcher::Dispatcher;
