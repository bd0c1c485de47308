//! The official `svix` Rust crate (a dev-dependency, over plain http to a
//! loopback Herald) drives Herald through the product flow of
//! tests/sdk/svix_flow.py and tests/sdk/svix_flow.mjs, and every
//! delivery verifies with the Standard Webhooks reference library for Rust
//! (the `standardwebhooks` crate), as a Rust consumer would check it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::receiver::{Received, Reply};
use common::{Backend, Receiver, TOKEN, spawn_app};
use serde_json::{Value, json};
use standardwebhooks::Webhook;
use svix::api::{
    ApplicationListOptions, MessageAttemptListByEndpointOptions, MessageAttemptListByMsgOptions, MessageGetOptions,
    MessageListOptions, Svix, SvixOptions,
};
use svix::error::Error as SvixError;
use svix::models::{
    AppPortalAccessIn, ApplicationIn, EndpointHeadersIn, EndpointIn, EndpointOut, EndpointSecretRotateIn,
    EventExampleIn, EventTypeIn, EventTypePatch, EventTypeUpsertIn, MessageAttemptOut, MessageIn, MessageStatus,
    RecoverIn,
};

const WAIT: Duration = Duration::from_secs(15);

/// A loopback receiver that accepts deliveries, or refuses them (500) while
/// `refusing` is set, and keeps the two apart.
struct Hook {
    receiver: Receiver,
    refusing: Arc<AtomicBool>,
    accepted: Arc<Mutex<Vec<Received>>>,
    refused: Arc<Mutex<Vec<Received>>>,
}

impl Hook {
    async fn start() -> Self {
        let refusing = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(Mutex::new(Vec::new()));
        let (flag, ok, not_ok) = (refusing.clone(), accepted.clone(), refused.clone());
        let receiver = Receiver::answering(move |got| {
            if got.method != "POST" {
                return Reply::status(200);
            }
            if flag.load(Ordering::SeqCst) {
                not_ok.lock().expect("lock").push(got.clone());
                return Reply::status(500);
            }
            ok.lock().expect("lock").push(got.clone());
            Reply::status(200)
        })
        .await;
        Self {
            receiver,
            refusing,
            accepted,
            refused,
        }
    }

    /// The accepted deliveries, once there are at least `n`.
    async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let got = self.accepted.lock().expect("lock").clone();
            if got.len() >= n {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "expected {n} deliveries, got {}",
                got.len()
            );
            self.receiver.next_arrival(Duration::from_millis(100)).await;
        }
    }

    fn refused(&self) -> Vec<Received> {
        self.refused.lock().expect("lock").clone()
    }
}

/// The delivery is message `msg_id` carrying `payload`, signed with each of `secrets`.
fn verify(delivery: &Received, msg_id: &str, payload: &Value, secrets: &[&str]) {
    assert_eq!(delivery.header("webhook-id"), msg_id);
    for secret in secrets {
        let hook = Webhook::new(secret).expect("a whsec_ secret");
        hook.verify(&delivery.body, &delivery.headers)
            .expect("the signature verifies");
    }
    let body: Value = serde_json::from_slice(&delivery.body).expect("a JSON body");
    assert_eq!(&body, payload);
    let mut changed = delivery.body.to_vec();
    changed.push(b' ');
    let hook = Webhook::new(secrets[0]).expect("secret");
    assert!(
        hook.verify(&changed, &delivery.headers).is_err(),
        "a changed body still verified"
    );
}

fn http_status(result: Result<impl std::fmt::Debug, SvixError>) -> u16 {
    match result {
        Err(SvixError::Http(e)) => e.status.as_u16(),
        other => panic!("expected an HTTP error, got {other:?}"),
    }
}

/// Polls `fetch` until `done` holds for its answer.
async fn wait_until<T: std::fmt::Debug, F: std::future::Future<Output = T>>(
    fetch: impl Fn() -> F,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = fetch().await;
        if done(&got) {
            return got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met in time; last answer: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn example() -> Value {
    json!({"ticket": 7, "subject": "An example ticket"})
}

/// Five customers with uids, listed two at a time by following the iterator.
async fn applications(svix: &Svix) -> String {
    let mut ids = Vec::new();
    for i in 0..5 {
        let app = ApplicationIn {
            uid: Some(format!("customer-{i}")),
            ..ApplicationIn::new(format!("Customer {i}"))
        };
        ids.push(svix.application().create(app, None).await.expect("create app").id);
    }
    let again = ApplicationIn {
        uid: Some("customer-0".into()),
        ..ApplicationIn::new("Customer 0".into())
    };
    let same = svix
        .application()
        .get_or_create(again, None)
        .await
        .expect("get_or_create");
    assert_eq!(same.id, ids[0]);
    let by_uid = svix.application().get("customer-3".into()).await.expect("get by uid");
    assert_eq!(by_uid.id, ids[3]);
    let (mut listed, mut iterator, mut pages) = (Vec::new(), None, 0);
    loop {
        let options = ApplicationListOptions {
            limit: Some(2),
            iterator: iterator.take(),
            ..Default::default()
        };
        let page = svix.application().list(Some(options)).await.expect("list apps");
        listed.extend(page.data.into_iter().map(|a| a.id));
        pages += 1;
        if page.done {
            break;
        }
        iterator = page.iterator;
    }
    listed.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!((listed, pages), (want, 3));
    ids.swap_remove(0)
}

async fn event_types(svix: &Svix) {
    let types = svix.event_type();
    types
        .create(
            EventTypeIn::new("ticket.created".into(), "A ticket was opened".into()),
            None,
        )
        .await
        .expect("create event type");
    types
        .create(
            EventTypeIn::new("ticket.closed".into(), "A ticket was closed".into()),
            None,
        )
        .await
        .expect("create event type");
    let names: BTreeSet<String> = types
        .list(None)
        .await
        .expect("list")
        .data
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["ticket.closed".to_owned(), "ticket.created".to_owned()])
    );
    let replacement = EventTypeUpsertIn {
        schemas: Some(json!({"1": {"type": "object", "examples": [example()]}})),
        ..EventTypeUpsertIn::new("Opened by a customer".into())
    };
    types
        .upsert("ticket.created".into(), replacement)
        .await
        .expect("upsert event type");
    let got = types.get("ticket.created".into()).await.expect("get event type");
    assert_eq!(got.description, "Opened by a customer");
    let patch = EventTypePatch {
        description: Some("Closed by support".into()),
        ..Default::default()
    };
    let patched = types
        .patch("ticket.closed".into(), patch)
        .await
        .expect("patch event type");
    assert_eq!(patched.description, "Closed by support");
}

async fn create_endpoint(svix: &Svix, app: &str, url: &str) -> EndpointOut {
    let input = EndpointIn {
        uid: Some("tickets".into()),
        event_types: Some(BTreeSet::from(["ticket.created".to_owned()])),
        description: Some("Ticket events".into()),
        ..EndpointIn::new(url.to_owned())
    };
    let ep = svix
        .endpoint()
        .create(app.to_owned(), input, None)
        .await
        .expect("create endpoint");
    assert_eq!(ep.event_types, Some(BTreeSet::from(["ticket.created".to_owned()])));
    let by_uid = svix
        .endpoint()
        .get(app.to_owned(), "tickets".into())
        .await
        .expect("get endpoint");
    assert_eq!(by_uid.id, ep.id);
    let headers = BTreeMap::from([("X-Customer".to_owned(), "acme".to_owned())]);
    svix.endpoint()
        .set_headers(app.to_owned(), ep.id.clone(), EndpointHeadersIn::new(headers.clone()))
        .await
        .expect("set headers");
    let got = svix
        .endpoint()
        .get_headers(app.to_owned(), ep.id.clone())
        .await
        .expect("get headers");
    assert_eq!(got.headers, headers);
    ep
}

async fn publish(svix: &Svix, app: &str, event_type: &str, payload: Value) -> String {
    let msg = MessageIn::new(event_type.to_owned(), payload);
    svix.message()
        .create(app.to_owned(), msg, None)
        .await
        .expect("publish")
        .id
}

async fn attempts_by_endpoint(svix: &Svix, app: &str, ep: &str, status: MessageStatus) -> Vec<MessageAttemptOut> {
    let options = MessageAttemptListByEndpointOptions {
        status: Some(status),
        ..Default::default()
    };
    svix.message_attempt()
        .list_by_endpoint(app.to_owned(), ep.to_owned(), Some(options))
        .await
        .expect("attempts by endpoint")
        .data
}

async fn attempts_by_msg(svix: &Svix, app: &str, msg: &str, status: Option<MessageStatus>) -> Vec<MessageAttemptOut> {
    let options = MessageAttemptListByMsgOptions {
        status,
        ..Default::default()
    };
    svix.message_attempt()
        .list_by_msg(app.to_owned(), msg.to_owned(), Some(options))
        .await
        .expect("attempts by message")
        .data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_svix_rust_crate_drives_herald() {
    let herald = spawn_app(&Backend::Sqlite).await;
    let hook = Hook::start().await;
    let options = || SvixOptions {
        server_url: Some(herald.base.clone()),
        ..Default::default()
    };
    let svix = Svix::new(TOKEN.to_owned(), Some(options()));
    let started = chrono::Utc::now();

    let app = applications(&svix).await;
    event_types(&svix).await;
    let ep = create_endpoint(&svix, &app, &hook.receiver.url).await;
    let (app, ep) = (app.as_str(), ep.id.as_str());
    let secret = svix
        .endpoint()
        .get_secret(app.into(), ep.into())
        .await
        .expect("secret")
        .key;

    // One message the endpoint wants, one it filtered out.
    let created = publish(&svix, app, "ticket.created", json!({"ticket": 42})).await;
    let closed = publish(&svix, app, "ticket.closed", json!({"ticket": 42})).await;
    let got = hook.wait_for(1).await;
    verify(&got[0], &created, &json!({"ticket": 42}), &[&secret]);
    assert_eq!(got[0].header("x-customer"), "acme");

    // This crate asks for no payloads unless told to (with_content=false).
    let with_content = MessageGetOptions {
        with_content: Some(true),
    };
    let read = svix
        .message()
        .get(app.into(), created.clone(), Some(with_content))
        .await
        .expect("get message");
    assert_eq!(read.payload, json!({"ticket": 42}));
    let bare = svix
        .message()
        .get(app.into(), created.clone(), None)
        .await
        .expect("get message");
    assert_eq!(bare.payload, json!({}));
    let all = svix.message().list(app.into(), None).await.expect("list messages");
    assert_eq!(
        all.data.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        [&closed, &created]
    );
    let only_closed = MessageListOptions {
        event_types: Some(BTreeSet::from(["ticket.closed".to_owned()])),
        ..Default::default()
    };
    let listed = svix
        .message()
        .list(app.into(), Some(only_closed))
        .await
        .expect("list by type");
    assert_eq!(listed.data.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), [&closed]);

    let ok = wait_until(
        || attempts_by_endpoint(&svix, app, ep, MessageStatus::Success),
        |a| !a.is_empty(),
    )
    .await;
    assert_eq!(ok.iter().map(|a| a.msg_id.as_str()).collect::<Vec<_>>(), [&created]);
    let by_msg = attempts_by_msg(&svix, app, &created, Some(MessageStatus::Success)).await;
    assert_eq!(by_msg.iter().map(|a| a.endpoint_id.as_str()).collect::<Vec<_>>(), [ep]);
    assert!(
        attempts_by_msg(&svix, app, &created, Some(MessageStatus::Fail))
            .await
            .is_empty()
    );
    assert!(attempts_by_msg(&svix, app, &closed, None).await.is_empty());

    // A delivery the receiver refuses until it fails for good, then recovered.
    hook.refusing.store(true, Ordering::SeqCst);
    let failing = publish(&svix, app, "ticket.created", json!({"ticket": 43})).await;
    let stats = wait_until(
        || async {
            svix.endpoint()
                .get_stats(app.into(), ep.into(), None)
                .await
                .expect("stats")
        },
        |s| s.fail == 1,
    )
    .await;
    assert_eq!(
        (stats.success, stats.pending, stats.sending, stats.canceled),
        (1, 0, 0, 0)
    );
    hook.refusing.store(false, Ordering::SeqCst);
    let refused = hook.refused();
    assert!(!refused.is_empty() && refused.iter().all(|d| d.header("webhook-id") == failing));
    let failed = attempts_by_endpoint(&svix, app, ep, MessageStatus::Fail).await;
    assert!(
        !failed.is_empty() && failed.iter().all(|a| a.msg_id == failing),
        "{failed:?}"
    );
    assert!(
        attempts_by_msg(&svix, app, &failing, Some(MessageStatus::Success))
            .await
            .is_empty()
    );
    let task = svix
        .endpoint()
        .recover(app.into(), ep.into(), RecoverIn::new(started), None)
        .await
        .expect("recover");
    assert!(!task.id.is_empty());
    let got = hook.wait_for(2).await;
    verify(&got[1], &failing, &json!({"ticket": 43}), &[&secret]);

    // After a rotation deliveries verify with the new secret (and the old one
    // through the grace period); this crate reads the new secret from the answer.
    let rotated = svix
        .endpoint()
        .rotate_secret(app.into(), ep.into(), EndpointSecretRotateIn::new(), None)
        .await
        .expect("rotate");
    let new_secret = svix
        .endpoint()
        .get_secret(app.into(), ep.into())
        .await
        .expect("secret")
        .key;
    assert_eq!(rotated.key, new_secret);
    assert_ne!(new_secret, secret);
    let after = publish(&svix, app, "ticket.created", json!({"ticket": 44})).await;
    let got = hook.wait_for(3).await;
    verify(&got[2], &after, &json!({"ticket": 44}), &[&new_secret, &secret]);

    svix.message_attempt()
        .resend(app.into(), created.clone(), ep.into(), None)
        .await
        .expect("resend");
    let got = hook.wait_for(4).await;
    verify(&got[3], &created, &json!({"ticket": 42}), &[&new_secret]);

    let sent = svix
        .endpoint()
        .send_example(
            app.into(),
            ep.into(),
            EventExampleIn::new("ticket.created".into()),
            None,
        )
        .await
        .expect("send example");
    let got = hook.wait_for(5).await;
    verify(&got[4], &sent.id, &example(), &[&new_secret]);

    // Every delivery carried the endpoint's headers; the filtered-out message never came.
    assert!(got.iter().all(|d| d.header("x-customer") == "acme"));
    assert!(
        hook.receiver
            .deliveries()
            .iter()
            .all(|d| d.header("webhook-id") != closed)
    );

    let access = svix
        .authentication()
        .app_portal_access(app.into(), AppPortalAccessIn::new(), None)
        .await
        .expect("app portal access");
    assert!(access.url.starts_with("http") && !access.token.is_empty());
    let portal = Svix::new(access.token, Some(options()));
    let seen = portal
        .endpoint()
        .list(app.into(), None)
        .await
        .expect("list as the portal");
    assert_eq!(seen.data.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), [ep]);

    svix.endpoint()
        .delete(app.into(), ep.into())
        .await
        .expect("delete endpoint");
    assert_eq!(http_status(svix.endpoint().get(app.into(), ep.into()).await), 404);
    svix.application().delete(app.into()).await.expect("delete app");
    assert_eq!(http_status(svix.application().get(app.into()).await), 404);
}
