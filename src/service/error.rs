//! Why a workflow refused or failed, in words an adapter can pass on: the
//! API maps each variant to its HTTP answer (src/api/error.rs), the
//! dashboard to a page, a broker source to ack, dead letter or retry.

use std::time::Duration;

use crate::domain::validate::{FieldError, Problems};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Input that breaks a rule, each problem with the field it is about.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// Input that could not be read at all (not JSON, say).
    #[error("{0}")]
    Malformed(String),
    /// The caller's scope does not allow this.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The state of things refuses it: a taken name, a disabled endpoint.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    /// The caller spent its request budget; it may come back after the wait.
    #[error("this token has made too many requests; retry after the time in Retry-After")]
    RateLimited(Duration),
    /// Too many failed authentications came from the caller's address; a
    /// token from there is not even looked up until the wait is over.
    #[error("too many failed authentications from this address; retry after the time in Retry-After")]
    TooManyFailures(Duration),
    #[error("the database is unavailable; retry shortly")]
    Unavailable,
    /// A fault of Herald's own; the cause is logged, not shown.
    #[error("internal error")]
    Internal(String),
}

pub type ServiceResult<T> = Result<T, ServiceError>;

impl ServiceError {
    /// A single-field problem at `loc` as given (e.g. `["body", "url"]`).
    pub fn field(loc: &[&str], msg: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError {
            loc: loc.iter().map(|s| (*s).to_owned()).collect(),
            msg: msg.into(),
            kind: "value_error",
        }])
    }

    /// A problem with one field of the input body.
    pub fn body_field(loc: &[&str], msg: impl Into<String>) -> Self {
        let mut p = Problems::default();
        p.add(loc, msg);
        Self::Validation(p.into_errors())
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => Self::Conflict(what),
            e if e.is_unavailable() => Self::Unavailable,
            other => Self::Internal(other.to_string()),
        }
    }
}
