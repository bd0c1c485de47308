//! The operator email outbox over HTTP (Herald only). The rules are
//! `service::operational`.

use axum::Json;
use axum::extract::State;

use super::error::ApiResult;
use super::extract::QueryParams;
use super::list::list_response;
use crate::service::AppState;
use crate::service::operational::{self, OperatorEmailOut};

list_response!(ListResponseOperatorEmailOut, OperatorEmailOut);

/// Herald: the emails queued for the operators (HERALD_NOTIFY_EMAIL),
/// newest first, with whether each was sent, is still being retried, or
/// was given up. Administrators only.
#[utoipa::path(get, path = "/api/v1/operator-email", tag = "Operator Email",
    params(("limit" = Option<u32>, Query), ("iterator" = Option<String>, Query),
        ("state" = Option<String>, Query, description = "pending, sent or failed")),
    responses((status = 200, body = ListResponseOperatorEmailOut)))]
pub async fn list_emails(
    State(state): State<AppState>,
    q: QueryParams,
) -> ApiResult<Json<ListResponseOperatorEmailOut>> {
    Ok(Json(operational::list_emails(&state, &q).await?.into()))
}
