//! Pages come only from templates compiled into the binary, and minijinja
//! escapes every value in them for HTML.

use std::sync::LazyLock;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use minijinja::{Environment, Value};
use serde::Serialize;

use super::session::Viewer;

macro_rules! templates {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("templates/", $name)))),*]
    };
}

const TEMPLATES: &[(&str, &str)] = templates![
    "base.html",
    "macros.html",
    "login.html",
    "apps.html",
    "app.html",
    "endpoint.html",
    "endpoint_form.html",
    "secret.html",
    "delete.html",
    "history.html",
    "attempt.html",
    "catalog.html",
    "error.html",
    "overview.html",
    "app_form.html",
    "app_delete.html",
    "event_type_form.html",
    "tokens.html",
    "token_made.html",
    "find.html",
    "message.html",
];

static TEMPLATE_ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
    // For query values and path segments (ids, event type names).
    env.add_filter("urlencode", |value: String| {
        url::form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>()
    });
    for (name, source) in TEMPLATES {
        // The templates are part of the binary; a broken one fails every test.
        if let Err(e) = env.add_template(name, source) {
            panic!("template {name} does not compile: {e}");
        }
    }
    env
});

/// What the layout shows on every page.
#[derive(Serialize, Default)]
pub struct Layout {
    pub title: String,
    pub csrf: String,
    pub admin: bool,
    pub signed_in: bool,
    /// The application a portal viewer is scoped to.
    pub portal_app: Option<String>,
    pub owner: Option<String>,
    /// A read-only portal session: pages leave out what would change things.
    pub read_only: bool,
}

impl Layout {
    pub fn for_viewer(viewer: &Viewer, title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            csrf: viewer.csrf.clone(),
            admin: viewer.is_admin(),
            signed_in: true,
            portal_app: match &viewer.scope {
                super::session::Scope::App { app, .. } => Some(app.to_string()),
                super::session::Scope::Admin => None,
            },
            owner: viewer.owner().map(str::to_owned),
            read_only: viewer.read_only,
        }
    }
}

fn render(template: &str, layout: &Layout, values: &impl Serialize) -> Result<String, minijinja::Error> {
    let context = minijinja::context! { layout => Value::from_serialize(layout), ..Value::from_serialize(values) };
    TEMPLATE_ENV.get_template(template)?.render(context)
}

/// Renders `template` with `layout` and the page's own values.
pub fn page(status: StatusCode, template: &str, layout: Layout, values: impl Serialize) -> Response {
    match render(template, &layout, &values) {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(template, error = %e, "a dashboard page failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page failed to render").into_response()
        }
    }
}

pub fn ok(template: &str, layout: Layout, values: impl Serialize) -> Response {
    page(StatusCode::OK, template, layout, values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles_and_values_are_escaped() {
        LazyLock::force(&TEMPLATE_ENV);
        let layout = Layout {
            title: "<script>alert(1)</script>".into(),
            ..Layout::default()
        };
        let html = render(
            "error.html",
            &layout,
            &minijinja::context! { message => "<b onclick=x>" },
        )
        .unwrap();
        assert!(html.contains("&lt;script&gt;alert(1)"), "{html}");
        assert!(html.contains("&lt;b onclick=x&gt;"), "{html}");
        assert!(!html.contains("<script>alert") && !html.contains("<b onclick"));
    }

    #[test]
    fn links_carry_their_values_encoded() {
        let html = render(
            "apps.html",
            &Layout::default(),
            &minijinja::context! { q => "a b&c", apps => minijinja::context! { data => vec![minijinja::context! { id => "app_1", name => "A", createdAt => "2026-11-26T10:00:00Z" }], done => false, iterator => "app_1" } },
        )
        .unwrap();
        assert!(html.contains("q=a+b%26c&amp;iterator=app_1"), "{html}");
    }
}
