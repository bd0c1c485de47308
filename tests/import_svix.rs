//! `herald import svix`: a Herald serving Svix's API is the source; the real
//! binary copies it into a fresh database; a second run changes nothing; a
//! Herald started on that database delivers to the imported endpoints,
//! signed with the secrets the source gave out.

mod common;

use std::time::Duration;

use common::{Backend, Receiver, TOKEN, TestApp, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(15);

/// The shape of a Svix application id (`app_` and a 27-character KSUID),
/// which is no Herald id and so must be accepted as a uid.
const SVIX_STYLE_UID: &str = "app_2XzVHgnDp6nWbTLkKfgCE9bXC8A";

/// What one run of the command printed.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit ok: {}\n--- stdout\n{}--- stderr\n{}",
            self.ok, self.stdout, self.stderr
        )
    }
}

/// The database the import writes to: a fresh SQLite file, or a fresh
/// PostgreSQL database beside the source's.
struct Target {
    backend: Backend,
    data: tempfile::TempDir,
}

impl Target {
    async fn fresh(like: &Backend) -> Self {
        let backend = match like {
            Backend::Sqlite => Backend::Sqlite,
            Backend::Postgres(_) => Backend::postgres()
                .await
                .expect("PostgreSQL answered for the source, so it answers for the target"),
        };
        Self {
            backend,
            data: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// `herald import svix --url SOURCE --token TOKEN`, with loopback http
    /// endpoints allowed as the test receivers need.
    async fn import(&self, source: &str, token: &str) -> Run {
        self.import_with(source, token, true).await
    }

    async fn import_with(&self, source: &str, token: &str, allow_loopback_http: bool) -> Run {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"));
        cmd.args(["import", "svix", "--url", source, "--token", token])
            .env("HERALD_DATABASE_URL", self.backend.database_url(self.data.path()))
            .env("HERALD_ADMIN_TOKEN", TOKEN)
            .env("HERALD_LOG", "warn")
            .env_remove("SVIX_AUTH_TOKEN")
            .env_remove("HERALD_SECRET_KEY")
            .kill_on_drop(true);
        if let Some(key) = self.backend.secret_key() {
            cmd.env("HERALD_SECRET_KEY", key);
        }
        if allow_loopback_http {
            cmd.env("HERALD_ALLOW_HTTP", "true")
                .env("HERALD_ALLOWED_TARGET_NETWORKS", "127.0.0.0/8");
        } else {
            cmd.env_remove("HERALD_ALLOW_HTTP")
                .env_remove("HERALD_ALLOWED_TARGET_NETWORKS");
        }
        let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
            .await
            .expect("the import ends within two minutes")
            .expect("herald runs");
        Run {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Herald started on the imported database (on SQLite, its key file
    /// beside it), with the test settings.
    async fn serve(&self) -> TestApp {
        let url = self.backend.database_url(self.data.path());
        common::spawn_app_with(&self.backend, |s| s.database_url = Some(url)).await
    }

    async fn remove(self) {
        if let Backend::Postgres(url) = &self.backend {
            common::pg::drop_database(url).await;
        }
    }
}

fn ticket_schema() -> Value {
    json!({
        "type": "object",
        "properties": {"ticket": {"type": "integer"}},
        "required": ["ticket"]
    })
}

/// The source: a catalog of three event types (one archived), three
/// applications (with a uid, without one, and with a Svix-shaped uid), and
/// three endpoints (one with a uid and every setting, one disabled, one bare).
struct Svix {
    server: TestApp,
    globex: String,
    primary: Value,
    switched_off: Value,
    bare: Value,
    primary_rx: Receiver,
    switched_off_rx: Receiver,
    bare_rx: Receiver,
}

async fn seeded_source(backend: &Backend) -> Svix {
    let server = spawn_app(backend).await;
    for event_type in [
        json!({"name": "ticket.created", "description": "A ticket was opened",
               "schemas": {"1": ticket_schema()}, "groupName": "tickets", "featureFlag": "beta"}),
        json!({"name": "invoice.paid", "description": "An invoice was paid",
               "schemas": {"1": {"type": "object"}}}),
        json!({"name": "legacy.ping", "description": "Retired", "archived": true}),
    ] {
        let a = server.post("/api/v1/event-type", event_type).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    }
    let acme = server
        .post(
            "/api/v1/app",
            json!({"name": "Acme", "uid": "acme", "rateLimit": 100, "metadata": {"plan": "pro"}}),
        )
        .await;
    assert_eq!(acme.status, StatusCode::CREATED, "{}", acme.body);
    let globex = server.create_app("Globex").await;
    let initech = server
        .post("/api/v1/app", json!({"name": "Initech", "uid": SVIX_STYLE_UID}))
        .await;
    assert_eq!(
        initech.status,
        StatusCode::CREATED,
        "a Svix id is a valid uid: {}",
        initech.body
    );

    let (primary_rx, switched_off_rx, bare_rx) = (
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
    );
    let primary = server
        .create_endpoint(
            "acme",
            &primary_rx.url,
            json!({
                "uid": "primary",
                "description": "Acme's main hook",
                "filterTypes": ["ticket.created"],
                "channels": ["eu"],
                "rateLimit": 50,
                "metadata": {"team": "support"},
                "headers": {"X-Acme-Tenant": "acme", "X-Api-Key": "never-shown"}
            }),
        )
        .await;
    let switched_off = server
        .create_endpoint(
            "acme",
            &switched_off_rx.url,
            json!({"description": "switched off", "filterTypes": ["ticket.created"], "disabled": true}),
        )
        .await;
    let bare = server.create_endpoint(&globex, &bare_rx.url, json!({})).await;
    Svix {
        server,
        globex,
        primary,
        switched_off,
        bare,
        primary_rx,
        switched_off_rx,
        bare_rx,
    }
}

fn id(v: &Value) -> &str {
    v["id"].as_str().expect("id")
}

/// The delivery's signature verifies with `secret`, and only with it.
fn signed_with(secret: &str, delivery: &common::receiver::Received) {
    let valid = common::signature_entries_valid(
        secret,
        delivery.header("webhook-id"),
        delivery.header("webhook-timestamp"),
        &delivery.body,
        delivery.header("webhook-signature"),
    );
    assert_eq!(valid, vec![true], "signed with the source's secret");
}

async fn the_import_copies_everything_once_and_deliveries_verify_with_the_sources_secrets(backend: Backend) {
    let svix = seeded_source(&backend).await;
    let source = &svix.server;
    let primary_secret = source.secret("acme", "primary").await;
    let bare_secret = source.secret(&svix.globex, id(&svix.bare)).await;
    let target = Target::fresh(&backend).await;

    let first = target.import(&source.base, TOKEN).await;
    assert!(first.ok, "{first}");
    for line in [
        "event types: 3 created, 0 updated, 0 unchanged",
        "applications: 3 created, 0 updated, 0 unchanged",
        "endpoints: 3 created, 0 updated, 0 unchanged",
    ] {
        assert!(first.stdout.contains(line), "{line}\n{first}");
    }
    let secrets = first
        .stdout
        .split("Signing secrets copied")
        .nth(1)
        .expect("the endpoints whose secret was copied are listed");
    assert!(
        secrets.contains(&format!(
            "endpoint primary (Svix {}) of application acme",
            id(&svix.primary)
        )),
        "{first}"
    );
    assert!(secrets.contains(id(&svix.bare)), "{first}");
    assert!(
        first.stdout.contains("header X-Api-Key"),
        "a credential header is named for setting by hand: {first}"
    );
    assert!(!first.stdout.contains("never-shown"), "{first}");

    let second = target.import(&source.base, TOKEN).await;
    assert!(second.ok, "{second}");
    for line in [
        "event types: 0 created, 0 updated, 3 unchanged",
        "applications: 0 created, 0 updated, 3 unchanged",
        "endpoints: 0 created, 0 updated, 3 unchanged",
        "nothing to change",
    ] {
        assert!(second.stdout.contains(line), "{line}\n{second}");
    }

    // A change at the source is carried over, only the fields that differ.
    let renamed = source.patch("/api/v1/app/acme", json!({"name": "Acme Corp"})).await;
    assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.body);
    let described = source
        .patch(
            "/api/v1/app/acme/endpoint/primary",
            json!({"description": "Acme's only hook"}),
        )
        .await;
    assert_eq!(described.status, StatusCode::OK, "{}", described.body);
    let rotated = source
        .post("/api/v1/app/acme/endpoint/primary/secret/rotate", json!({}))
        .await;
    assert!(rotated.status.is_success(), "{}", rotated.body);
    let rotated_secret = source.secret("acme", "primary").await;
    assert_ne!(rotated_secret, primary_secret);
    let third = target.import(&source.base, TOKEN).await;
    assert!(third.ok, "{third}");
    let primary_named = format!("endpoint primary (Svix {}) of application acme", id(&svix.primary));
    for line in [
        "event types: 0 created, 0 updated, 3 unchanged",
        "applications: 0 created, 1 updated, 2 unchanged",
        "endpoints: 0 created, 1 updated, 2 unchanged",
        ": name\n",
        ": description, secret\n",
    ] {
        assert!(third.stdout.contains(line), "{line}\n{third}");
    }
    let copied = third.stdout.split("Signing secrets copied").nth(1).unwrap_or_default();
    assert!(copied.contains(&primary_named), "{third}");
    let source_primary = source.get("/api/v1/app/acme/endpoint/primary").await.body;

    let herald = target.serve().await;
    let acme = herald.get("/api/v1/app/acme").await;
    assert_eq!(acme.status, StatusCode::OK, "{}", acme.body);
    assert_eq!(
        (acme.body["name"].as_str(), acme.body["rateLimit"].as_i64()),
        (Some("Acme Corp"), Some(100))
    );
    assert_eq!(acme.body["metadata"], json!({"plan": "pro"}));
    // Without a uid, an application answers to the id it had at the source.
    let globex = herald.get(&format!("/api/v1/app/{}", svix.globex)).await;
    assert_eq!(globex.body["name"], "Globex", "{}", globex.body);
    let initech = herald.get(&format!("/api/v1/app/{SVIX_STYLE_UID}")).await;
    assert_eq!(initech.body["name"], "Initech", "{}", initech.body);

    let primary = herald.get("/api/v1/app/acme/endpoint/primary").await.body;
    for field in [
        "url",
        "description",
        "filterTypes",
        "channels",
        "rateLimit",
        "metadata",
        "disabled",
    ] {
        assert_eq!(primary[field], source_primary[field], "{field}: {primary}");
    }
    let headers = herald.get("/api/v1/app/acme/endpoint/primary/headers").await.body;
    assert_eq!(headers["headers"], json!({"X-Acme-Tenant": "acme"}), "{headers}");
    let switched_off = herald
        .get(&format!("/api/v1/app/acme/endpoint/{}", id(&svix.switched_off)))
        .await
        .body;
    assert_eq!(switched_off["disabled"], true, "{switched_off}");
    let ticket = herald.get("/api/v1/event-type/ticket.created").await.body;
    assert_eq!(ticket["schemas"], json!({"1": ticket_schema()}), "{ticket}");
    assert_eq!(
        (ticket["groupName"].as_str(), ticket["featureFlags"].clone()),
        (Some("tickets"), json!(["beta"]))
    );
    assert_eq!(
        herald.get("/api/v1/event-type/legacy.ping").await.body["archived"],
        true
    );

    // Deliveries verify with the secrets the source gave out.
    let msg = herald
        .post(
            "/api/v1/app/acme/msg",
            json!({"eventType": "ticket.created", "payload": {"ticket": 42}, "channels": ["eu"]}),
        )
        .await;
    assert_eq!(msg.status, StatusCode::ACCEPTED, "{}", msg.body);
    let got = svix.primary_rx.wait_for(1, WAIT).await;
    signed_with(&rotated_secret, &got[0]);
    assert_eq!(got[0].header("x-acme-tenant"), "acme");
    herald
        .publish(&svix.globex, "invoice.paid", json!({"invoice": 7}))
        .await;
    let got = svix.bare_rx.wait_for(1, WAIT).await;
    signed_with(&bare_secret, &got[0]);
    // The disabled endpoint was subscribed, and recorded the message as not sent.
    herald
        .wait_until(
            &format!("/api/v1/app/acme/endpoint/{}/stats", id(&svix.switched_off)),
            |s| s["dropped"] == 1,
        )
        .await;
    assert_eq!(svix.switched_off_rx.count(), 0);

    // While Herald runs: on SQLite the file is its own, on PostgreSQL the import works beside it.
    let beside = target.import(&source.base, TOKEN).await;
    match &backend {
        Backend::Sqlite => {
            assert!(!beside.ok, "{beside}");
            assert!(beside.stderr.contains("another Herald process is using"), "{beside}");
            assert!(beside.stderr.contains("stop it first"), "{beside}");
        }
        Backend::Postgres(_) => {
            assert!(beside.ok, "{beside}");
            assert!(beside.stdout.contains("nothing to change"), "{beside}");
        }
    }
    herald.stop().await;
    target.remove().await;
}

async fn a_wrong_token_or_address_is_refused_before_the_database_is_touched(backend: Backend) {
    let svix = seeded_source(&backend).await;
    let target = Target::fresh(&backend).await;

    let wrong = target.import(&svix.server.base, "not-the-token").await;
    assert!(!wrong.ok, "{wrong}");
    assert!(wrong.stderr.contains("401 Unauthorized"), "{wrong}");
    assert!(wrong.stderr.contains(&svix.server.base), "the URL is named: {wrong}");
    assert!(wrong.stderr.contains("check --token"), "{wrong}");
    assert!(wrong.stdout.is_empty(), "{wrong}");

    let nobody = target.import("http://127.0.0.1:1", TOKEN).await;
    assert!(!nobody.ok, "{nobody}");
    assert!(
        nobody
            .stderr
            .contains("cannot reach the Svix server at http://127.0.0.1:1/"),
        "{nobody}"
    );

    if let Backend::Sqlite = backend {
        assert!(!target.data.path().join("herald.db").exists(), "no database was made");
    }
    target.remove().await;
}

async fn an_endpoint_herald_refuses_is_named_and_the_rest_is_imported(backend: Backend) {
    let svix = seeded_source(&backend).await;
    let target = Target::fresh(&backend).await;

    // Without HERALD_ALLOW_HTTP, Herald refuses the receivers' http:// URLs.
    let run = target.import_with(&svix.server.base, TOKEN, false).await;
    assert!(!run.ok, "{run}");
    assert!(run.stdout.contains("applications: 3 created"), "{run}");
    assert!(
        run.stdout
            .contains("endpoints: 0 created, 0 updated, 0 unchanged, 3 refused"),
        "{run}"
    );
    let refused = run
        .stdout
        .split("Refused by Herald")
        .nth(1)
        .expect("the refusals are listed");
    assert!(refused.contains("endpoint primary (Svix "), "{run}");
    assert!(refused.contains("url: "), "the field is named: {run}");
    assert!(run.stderr.contains("3 objects were refused"), "{run}");
    target.remove().await;
}

on_both_backends!(
    the_import_copies_everything_once_and_deliveries_verify_with_the_sources_secrets,
    a_wrong_token_or_address_is_refused_before_the_database_is_touched,
    an_endpoint_herald_refuses_is_named_and_the_rest_is_imported,
);
