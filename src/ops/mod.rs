//! Operator workflows: recovery tasks, retention, tokens.

pub mod recovery;
pub mod retention;
pub mod tokens;
