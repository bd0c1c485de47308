//! The one place where errors become HTTP answers.
//!
//! Shapes follow the Svix API: `{"code", "detail"}`, and for validation
//! `422 {"detail": [{"loc", "msg", "type"}]}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::domain::validate::FieldError;
use crate::service::ServiceError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("the database is unavailable; retry shortly")]
    Unavailable,
    #[error("this token has made too many requests; retry after the time in Retry-After")]
    TooManyRequests(std::time::Duration),
    #[error("too many failed authentications from this address; retry after the time in Retry-After")]
    TooManyFailures(std::time::Duration),
    #[error("internal error")]
    Internal(String),
}

/// The error body of every non-422 failure.
#[derive(Serialize, ToSchema)]
pub struct HttpErrorOut {
    pub code: String,
    pub detail: String,
}

/// One entry of a 422 answer.
#[derive(Serialize, ToSchema)]
pub struct ValidationErrorOut {
    pub loc: Vec<String>,
    pub msg: String,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Serialize, ToSchema)]
pub struct HttpValidationErrorOut {
    pub detail: Vec<ValidationErrorOut>,
}

impl ApiError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        self.status_and_code().0
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Validation(_) => (StatusCode::UNPROCESSABLE_ENTITY, "validation"),
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "authentication_failed"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::TooManyRequests(_) | Self::TooManyFailures(_) => {
                (StatusCode::TOO_MANY_REQUESTS, "rate_limit_exceeded")
            }
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => Self::Conflict(what),
            e if e.is_unavailable() => Self::Unavailable,
            other => Self::Internal(other.to_string()),
        }
    }
}

/// Each workflow error answers as the API always has.
impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Validation(errors) => Self::Validation(errors),
            ServiceError::Malformed(why) => Self::BadRequest(why),
            ServiceError::Forbidden(why) => Self::Forbidden(why),
            ServiceError::NotFound(what) => Self::NotFound(what),
            ServiceError::Conflict(why) => Self::Conflict(why),
            ServiceError::TooLarge(why) => Self::PayloadTooLarge(why),
            ServiceError::RateLimited(wait) => Self::TooManyRequests(wait),
            ServiceError::TooManyFailures(wait) => Self::TooManyFailures(wait),
            ServiceError::Unavailable => Self::Unavailable,
            ServiceError::Internal(cause) => Self::Internal(cause),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        match self {
            Self::Validation(errors) => {
                let detail: Vec<ValidationErrorOut> = errors
                    .into_iter()
                    .map(|e| ValidationErrorOut {
                        loc: e.loc,
                        msg: e.msg,
                        kind: e.kind.to_owned(),
                    })
                    .collect();
                (status, Json(HttpValidationErrorOut { detail })).into_response()
            }
            Self::Internal(ref cause) => {
                tracing::error!(error = %cause, "internal error");
                (status, Json(json!({"code": code, "detail": self.to_string()}))).into_response()
            }
            Self::Unavailable => {
                let mut resp = (status, Json(json!({"code": code, "detail": self.to_string()}))).into_response();
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                resp
            }
            Self::TooManyRequests(wait) | Self::TooManyFailures(wait) => {
                let mut resp = (status, Json(json!({"code": code, "detail": self.to_string()}))).into_response();
                // Whole seconds, rounded up: a client that waits that long gets in.
                let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
                resp
            }
            other => (status, Json(json!({"code": code, "detail": other.to_string()}))).into_response(),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn each_workflow_error_answers_with_the_status_the_api_always_gave() {
        let cases = [
            (ServiceError::body_field(&["url"], "is not https"), 422),
            (ServiceError::Malformed("not JSON".into()), 400),
            (ServiceError::Forbidden("another owner".into()), 403),
            (ServiceError::NotFound("endpoint"), 404),
            (ServiceError::Conflict("eventId taken".into()), 409),
            (ServiceError::TooLarge("2 MiB".into()), 413),
            (ServiceError::RateLimited(Duration::from_millis(1500)), 429),
            (ServiceError::Unavailable, 503),
            (ServiceError::Internal("disk on fire".into()), 500),
        ];
        for (e, status) in cases {
            let shown = e.to_string();
            let api = ApiError::from(e);
            assert_eq!(api.status().as_u16(), status, "{shown}");
            assert_eq!(api.to_string(), shown, "the detail reads the same");
        }
    }

    #[test]
    fn waits_are_told_in_retry_after() {
        let busy = ApiError::from(ServiceError::Unavailable).into_response();
        assert_eq!(busy.headers()[header::RETRY_AFTER], "5");
        let limited = ApiError::from(ServiceError::RateLimited(Duration::from_millis(1500))).into_response();
        assert_eq!(limited.headers()[header::RETRY_AFTER], "2");
    }
}
