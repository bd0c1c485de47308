//! Who may do what. A token or a dashboard session grants a scope; every API
//! route names the rule it follows, and `decide` says what the scope must
//! still prove (that the application or endpoint in the path is its own).
//!
//! Routes not listed are for administrators: a new route is closed to
//! scoped tokens until someone decides otherwise here.

use axum::http::Method;
use serde::{Deserialize, Serialize};

use super::ids::AppId;

/// What a caller may reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "as", rename_all = "lowercase")]
pub enum Scope {
    /// Every application, endpoint and setting.
    Admin,
    /// One application; with an owner, only that owner's endpoints.
    #[serde(alias = "portal")]
    App {
        app: AppId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<String>,
    },
}

impl Scope {
    pub fn is_admin(&self) -> bool {
        *self == Self::Admin
    }

    /// The application a scoped caller is bound to.
    pub fn app(&self) -> Option<&AppId> {
        match self {
            Self::Admin => None,
            Self::App { app, .. } => Some(app),
        }
    }

    /// The owner an owner-scoped caller is bound to.
    pub fn owner(&self) -> Option<&str> {
        match self {
            Self::Admin => None,
            Self::App { owner, .. } => owner.as_deref(),
        }
    }

    /// An owner-scoped caller sees only endpoints of that owner.
    pub fn may_see_endpoint(&self, owner_id: Option<&str>) -> bool {
        self.owner().is_none_or(|mine| owner_id == Some(mine))
    }
}

/// What a route asks of a caller beyond a valid token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Administrators only: applications as a whole, the event catalog's
    /// writes, background tasks, tokens.
    Admin,
    /// Any valid token: reading the event catalog.
    Anyone,
    /// The caller's own application; not for owner-scoped callers, because
    /// the route reaches every owner's data (messages, all attempts).
    App,
    /// The caller's own application, owner-scoped callers included: the
    /// handler narrows what they see or make to their owner.
    AppNarrowed,
    /// The caller's own application; an owner-scoped caller only when the
    /// endpoint in the path is theirs.
    OwnEndpoint,
    /// The caller's own application; an owner-scoped caller only when the
    /// attempt in the path went to one of their endpoints.
    OwnAttempt,
}

/// The rule of the route `template` (axum's matched path) for `method`.
pub fn rule(method: &Method, template: &str) -> Rule {
    let Some(rest) = template.strip_prefix("/api/v1/") else {
        return Rule::Admin;
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let get = *method == Method::GET;
    match segments.as_slice() {
        ["app"] if get => Rule::AppNarrowed,
        ["app", "{app_id}"] if get => Rule::AppNarrowed,
        ["app", "{app_id}"] if *method == Method::PUT || *method == Method::PATCH => Rule::App,
        ["app", "{app_id}"] => Rule::Admin,
        ["event-type"] | ["event-type", _] if get => Rule::Anyone,
        ["auth", "app-portal-access", "{app_id}"] => Rule::AppNarrowed,
        // The handler lets only a portal token end itself.
        ["auth", "logout"] => Rule::Anyone,
        ["app", "{app_id}", "endpoint"] => Rule::AppNarrowed,
        // Replaying what an endpoint missed reaches messages never sent to
        // it, which may be another owner's.
        ["app", "{app_id}", "endpoint", "{endpoint_id}", "replay-missing"] => Rule::App,
        ["app", "{app_id}", "endpoint", "{endpoint_id}", ..] => Rule::OwnEndpoint,
        ["app", "{app_id}", "attempt", "endpoint", "{endpoint_id}"] => Rule::OwnEndpoint,
        [
            "app",
            "{app_id}",
            "msg",
            "{msg_id}",
            "endpoint",
            "{endpoint_id}",
            "resend",
        ] => Rule::OwnEndpoint,
        ["app", "{app_id}", "msg", "{msg_id}", "attempt", "{attempt_id}"] if get => Rule::OwnAttempt,
        ["app", "{app_id}", ..] => Rule::App,
        _ => Rule::Admin,
    }
}

/// What is left to check once a route's rule meets a caller's scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// The scope can never use this route.
    Forbidden(&'static str),
    /// Allowed when the application in the path is `app`, and, for an
    /// owner-scoped caller, when `then` holds too.
    SameApp {
        app: AppId,
        then: OwnerCheck,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerCheck {
    Nothing,
    /// The endpoint in the path belongs to this owner.
    Endpoint(String),
    /// The attempt in the path went to an endpoint of this owner.
    Attempt(String),
}

pub fn decide(scope: &Scope, rule: Rule) -> Decision {
    let Scope::App { app, owner } = scope else {
        return Decision::Allow;
    };
    let then = match (rule, owner) {
        (Rule::Admin, _) => return Decision::Forbidden("this route needs an administrator token"),
        (Rule::Anyone, _) => return Decision::Allow,
        (Rule::App, Some(_)) => {
            return Decision::Forbidden("an owner-scoped token cannot use this route: it reaches every owner's data");
        }
        (Rule::OwnEndpoint, Some(owner)) => OwnerCheck::Endpoint(owner.clone()),
        (Rule::OwnAttempt, Some(owner)) => OwnerCheck::Attempt(owner.clone()),
        _ => OwnerCheck::Nothing,
    };
    Decision::SameApp { app: app.clone(), then }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app_scope(owner: Option<&str>) -> Scope {
        Scope::App {
            app: AppId::parse("app_01J00000000000000000000000").unwrap(),
            owner: owner.map(str::to_owned),
        }
    }

    #[test]
    fn routes_follow_their_rules() {
        let cases = [
            (Method::GET, "/api/v1/app", Rule::AppNarrowed),
            (Method::POST, "/api/v1/app", Rule::Admin),
            (Method::DELETE, "/api/v1/app/{app_id}", Rule::Admin),
            (Method::PATCH, "/api/v1/app/{app_id}", Rule::App),
            (Method::GET, "/api/v1/event-type/{event_type_name}", Rule::Anyone),
            (Method::POST, "/api/v1/event-type", Rule::Admin),
            (Method::POST, "/api/v1/app/{app_id}/msg", Rule::App),
            (Method::GET, "/api/v1/app/{app_id}/attempt/msg/{msg_id}", Rule::App),
            (Method::POST, "/api/v1/app/{app_id}/endpoint", Rule::AppNarrowed),
            (
                Method::GET,
                "/api/v1/app/{app_id}/endpoint/{endpoint_id}/secret",
                Rule::OwnEndpoint,
            ),
            (
                Method::POST,
                "/api/v1/app/{app_id}/endpoint/{endpoint_id}/replay-missing",
                Rule::App,
            ),
            (
                Method::GET,
                "/api/v1/app/{app_id}/msg/{msg_id}/attempt/{attempt_id}",
                Rule::OwnAttempt,
            ),
            (
                Method::DELETE,
                "/api/v1/app/{app_id}/msg/{msg_id}/attempt/{attempt_id}/content",
                Rule::App,
            ),
            (Method::PATCH, "/api/v1/event-type/{event_type_name}", Rule::Admin),
            (
                Method::GET,
                "/api/v1/app/{app_id}/endpoint/{endpoint_id}/msg",
                Rule::OwnEndpoint,
            ),
            (Method::GET, "/api/v1/app/{app_id}/msg/{msg_id}/endpoint", Rule::App),
            (Method::GET, "/api/v1/background-task", Rule::Admin),
            (Method::POST, "/api/v1/auth/token", Rule::Admin),
            (Method::GET, "/api/v1/some-future-route", Rule::Admin),
        ];
        for (method, template, expected) in cases {
            assert_eq!(rule(&method, template), expected, "{method} {template}");
        }
    }

    #[test]
    fn admins_pass_every_rule() {
        for r in [Rule::Admin, Rule::App, Rule::OwnAttempt] {
            assert_eq!(decide(&Scope::Admin, r), Decision::Allow);
        }
    }

    #[test]
    fn scoped_callers_prove_their_application_and_owner() {
        let app = app_scope(None);
        assert!(matches!(decide(&app, Rule::Admin), Decision::Forbidden(_)));
        assert!(matches!(
            decide(&app, Rule::OwnEndpoint),
            Decision::SameApp {
                then: OwnerCheck::Nothing,
                ..
            }
        ));
        let owner = app_scope(Some("acme"));
        assert!(matches!(decide(&owner, Rule::App), Decision::Forbidden(_)));
        assert!(matches!(
            decide(&owner, Rule::OwnEndpoint),
            Decision::SameApp { then: OwnerCheck::Endpoint(o), .. } if o == "acme"
        ));
        assert!(matches!(
            decide(&owner, Rule::OwnAttempt),
            Decision::SameApp { then: OwnerCheck::Attempt(o), .. } if o == "acme"
        ));
        assert_eq!(decide(&owner, Rule::Anyone), Decision::Allow);
    }

    #[test]
    fn dashboard_sessions_signed_before_the_rename_still_read() {
        let old = r#"{"as":"portal","app":"app_01J00000000000000000000000","owner":"acme"}"#;
        let scope: Scope = serde_json::from_str(old).unwrap();
        assert_eq!(scope, app_scope(Some("acme")));
    }
}
