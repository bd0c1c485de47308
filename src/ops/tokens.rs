//! `herald token …`: tokens made, listed and revoked from the command line,
//! with the same rules as the API's `/api/v1/auth/token`.

use std::fmt::Write;

use crate::api::error::ApiError;
use crate::api::token::{TokenIn, TokenOut, make_token};
use crate::domain::ids::TokenId;
use crate::store::{Page, Store, StoreError};

pub enum Action {
    Create(TokenIn),
    List,
    Revoke(String),
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ApiError> for TokenError {
    fn from(e: ApiError) -> Self {
        let detail = match &e {
            ApiError::Validation(errors) => errors
                .iter()
                .map(|f| format!("{}: {}", f.loc.last().map_or("", String::as_str), f.msg))
                .collect::<Vec<_>>()
                .join("; "),
            other => other.to_string(),
        };
        Self::Refused(detail)
    }
}

/// Runs `action` and prints its outcome on stdout.
pub async fn run(store: &dyn Store, action: Action) -> Result<(), TokenError> {
    match action {
        Action::Create(input) => {
            let made = make_token(store, input, crate::store::now()).await?;
            println!(
                "Made token {} ({}). It is shown only now; Herald keeps only its hash.\n\n    {}\n",
                made.id,
                describe(&made),
                made.token.as_deref().unwrap_or_default()
            );
        }
        Action::List => print!("{}", table(store).await?),
        Action::Revoke(id) => {
            let id = TokenId::parse(&id).ok_or_else(|| TokenError::Refused(format!("'{id}' is not a tok_ id")))?;
            if store.get_token(&id).await?.is_none() {
                return Err(TokenError::Refused(format!("no token {id}")));
            }
            let revoked = store.revoke_token(&id, crate::store::now()).await?;
            println!("{id} {}", if revoked { "revoked" } else { "was already revoked" });
        }
    }
    Ok(())
}

fn describe(t: &TokenOut) -> String {
    let mut text = match (&t.app_id, &t.owner_id) {
        (None, _) => "administrator".to_owned(),
        (Some(app), None) => format!("application {app}"),
        (Some(app), Some(owner)) => format!("owner {owner} of application {app}"),
    };
    if let Some(until) = t.expires_at {
        let _ = write!(
            text,
            ", expires {}",
            until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
    }
    text
}

async fn table(store: &dyn Store) -> Result<String, TokenError> {
    let mut out = String::new();
    let mut page = Page::first(100);
    loop {
        let tokens = store.list_tokens(&page).await?;
        let Some(last) = tokens.last() else { break };
        page.beyond = Some(last.id.to_string());
        for t in tokens {
            let state = match (t.revoked_at, t.is_live(crate::store::now())) {
                (Some(_), _) => "revoked",
                (None, false) => "expired",
                (None, true) => "live",
            };
            let t = TokenOut::from(t);
            let _ = writeln!(out, "{}  {:<7}  {}  {}", t.id, state, t.name, describe(&t));
        }
    }
    if out.is_empty() {
        out.push_str("no tokens\n");
    }
    Ok(out)
}
