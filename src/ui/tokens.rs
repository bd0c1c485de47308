//! API tokens kept by an operator: listed, made (shown once) and revoked,
//! through the same workflows as `/api/v1/auth/token` and `herald token`.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};

use super::forms::field_errors;
use super::render::{self, Layout};
use super::session::{Submitted, Viewer};
use super::{UiError, UiResult, status_of};
use crate::service::input::QueryParams;
use crate::service::tokens::{TokenIn, TokenOut, list_tokens, make_token, revoke_token};
use crate::service::{AppState, ServiceError};

/// Tokens listed on one page.
const PAGE_SIZE: &str = "100";

/// The token form, as posted.
#[derive(Deserialize, Serialize, Default)]
#[serde(default)]
pub struct TokenForm {
    pub name: String,
    /// `admin` or `app`.
    pub scope: String,
    /// With `app`: the application's id or uid.
    pub app_id: String,
    pub owner_id: String,
    /// Days until it expires; empty for never.
    pub expires_days: String,
}

impl TokenForm {
    fn to_input(&self) -> Result<TokenIn, ServiceError> {
        let text = |s: &str| Some(s.trim()).filter(|s| !s.is_empty()).map(str::to_owned);
        let expires_in = match self.expires_days.trim() {
            "" => None,
            days => Some(
                days.parse::<i64>()
                    .ok()
                    .filter(|d| *d > 0)
                    .and_then(|d| d.checked_mul(24 * 3600))
                    .ok_or_else(|| ServiceError::body_field(&["expiresIn"], "must be a whole number of days"))?,
            ),
        };
        let app_scoped = self.scope == "app";
        if app_scoped && text(&self.app_id).is_none() {
            return Err(ServiceError::body_field(
                &["appId"],
                "name the application the token is for",
            ));
        }
        Ok(TokenIn {
            name: self.name.trim().to_owned(),
            app_id: if app_scoped { text(&self.app_id) } else { None },
            owner_id: if app_scoped { text(&self.owner_id) } else { None },
            expires_in,
            rate_limit: None,
        })
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ListQuery {
    iterator: String,
    notice: String,
}

fn operator(viewer: &Viewer) -> UiResult<()> {
    if viewer.is_admin() {
        Ok(())
    } else {
        Err(UiError::NotFound)
    }
}

async fn page(
    state: &AppState,
    viewer: &Viewer,
    status: StatusCode,
    iterator: &str,
    form: &TokenForm,
    errors: BTreeMap<String, String>,
    extra: minijinja::Value,
) -> UiResult<Response> {
    let tokens = list_tokens(
        state,
        &QueryParams::from_pairs([("limit", PAGE_SIZE), ("iterator", iterator)]),
    )
    .await?;
    let now = state.clock.now();
    let rows: Vec<_> = tokens
        .data
        .iter()
        .map(|t| {
            let state = match (t.revoked_at, t.expires_at) {
                (Some(_), _) => "revoked",
                (None, Some(until)) if until <= now => "expired",
                _ => "live",
            };
            minijinja::context! { token => t, state }
        })
        .collect();
    let next = (!tokens.done).then_some(tokens.iterator).flatten();
    Ok(render::page(
        status,
        "tokens.html",
        Layout::for_viewer(viewer, "API tokens"),
        minijinja::context! { tokens => rows, next, form, errors, ..extra },
    ))
}

pub async fn list(State(state): State<AppState>, viewer: Viewer, Query(q): Query<ListQuery>) -> UiResult<Response> {
    operator(&viewer)?;
    let form = TokenForm {
        scope: "admin".into(),
        ..Default::default()
    };
    page(
        &state,
        &viewer,
        StatusCode::OK,
        &q.iterator,
        &form,
        BTreeMap::new(),
        minijinja::context! { notice => q.notice },
    )
    .await
}

pub async fn make(
    State(state): State<AppState>,
    Submitted { viewer, form }: Submitted<TokenForm>,
) -> UiResult<Response> {
    operator(&viewer)?;
    let made = async { make_token(state.store.as_ref(), form.to_input()?, state.clock.now()).await }.await;
    match made {
        Ok(token) => Ok(made_page(&viewer, &token)),
        Err(e) => {
            let status = status_of(&e);
            page(
                &state,
                &viewer,
                status,
                "",
                &form,
                field_errors(&e),
                minijinja::context! {},
            )
            .await
        }
    }
}

fn made_page(viewer: &Viewer, token: &TokenOut) -> Response {
    render::ok(
        "token_made.html",
        Layout::for_viewer(viewer, "Token made"),
        minijinja::context! { token },
    )
}

#[derive(Deserialize, Default)]
pub struct RevokeForm {}

pub async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Submitted {
        viewer,
        form: RevokeForm {},
    }: Submitted<RevokeForm>,
) -> UiResult<Response> {
    operator(&viewer)?;
    revoke_token(&state, &id).await?;
    Ok(Redirect::to("/ui/tokens?notice=revoked").into_response())
}
