//! Portal links: a customer's way into the dashboard.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;

use super::auth::Caller;
use super::error::ApiResult;
use crate::service::AppState;
use crate::service::portal::{self, AppPortalAccessIn, AppPortalAccessOut};

/// A link that signs a customer into the dashboard, scoped to one application
/// (and with `ownerId`, to that owner's endpoints).
#[utoipa::path(post, path = "/api/v1/auth/app-portal-access/{app_id}", tag = "Authentication",
    params(("app_id" = String, Path, description = "The application's id or uid")),
    request_body = AppPortalAccessIn,
    responses((status = 200, body = AppPortalAccessOut)))]
pub async fn app_portal_access(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(app_id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Json<AppPortalAccessOut>> {
    let input: AppPortalAccessIn = super::extract::parse_json_or_default(&body)?;
    let out = portal::portal_access(
        &state,
        &caller,
        &app_id,
        input,
        &portal::RequestOrigin::from_headers(&headers),
    )
    .await?;
    Ok(Json(out))
}
