//! The store contract: every backend must pass these, in the same words.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use common::Backend;
use common::records::{attempt, message};
use herald::config::{Config, Settings};
use herald::domain::access::Scope;
use herald::domain::clock::Clock;
use herald::domain::format::PayloadFormat;
use herald::domain::ids::{AppId, MessageId, TokenId};
use herald::domain::operational::{DisableTrigger, Listeners};
use herald::domain::secret::{EndpointSecret, SecretKind};
use herald::domain::status::{DeliveryOrder, WhileDisabled};
use herald::store::{
    ApiToken, Application, DeliveryJob, EmailState, Endpoint, IdempotencyState, NextStep, Notices, Order, Page,
    Recovery, Store, StoreError, Window,
};

/// A store on `backend`, with the temp dir that holds its file (if any).
async fn open(backend: &Backend) -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        database_url: Some(backend.database_url(dir.path())),
        secret_key: backend.secret_key(),
        ..Default::default()
    };
    let config = Config::load(&settings, None).unwrap();
    (herald::store::open(&config, &Clock::system()).await.unwrap(), dir)
}

fn app(uid: Option<&str>) -> Application {
    Application::new("Acme".into(), uid.map(str::to_owned), Clock::system().now())
}

fn endpoint(app: &AppId, types: Option<&[&str]>) -> Endpoint {
    let secret = EndpointSecret::generate(SecretKind::StandardHmac);
    let mut ep = Endpoint::new(
        app.clone(),
        "https://example.com/hook".into(),
        secret,
        Clock::system().now(),
    );
    ep.filter_types = types.map(|t| t.iter().map(|s| s.to_string()).collect());
    ep
}

const LEASE: Duration = Duration::from_secs(30);

/// An app with one endpoint that takes everything.
async fn app_with_endpoint(store: &dyn Store) -> (Application, Endpoint) {
    let a = app(None);
    store.create_app(&a).await.unwrap();
    let e = endpoint(&a.id, None);
    store.create_endpoint(&e).await.unwrap();
    (a, e)
}

async fn applications_are_found_by_id_or_uid_and_uids_are_unique(backend: Backend) {
    let (store, _dir) = open(&backend).await;
    let a = app(Some("acme"));
    store.create_app(&a).await.unwrap();
    assert_eq!(store.get_app("acme").await.unwrap().unwrap().id, a.id);
    assert_eq!(store.get_app(a.id.as_str()).await.unwrap().unwrap().name, "Acme");
    let clash = store.create_app(&app(Some("acme"))).await.unwrap_err();
    assert!(matches!(clash, StoreError::Conflict(_)), "{clash:?}");
    assert!(store.delete_app(&a.id).await.unwrap());
    assert!(store.get_app("acme").await.unwrap().is_none());
}

async fn lists_page_in_either_order(backend: Backend) {
    let (store, _dir) = open(&backend).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let a = app(None);
        store.create_app(&a).await.unwrap();
        ids.push(a.id);
    }
    let page = |beyond: Option<&AppId>, order| Page {
        limit: 2,
        beyond: beyond.map(|b| b.to_string()),
        order,
    };
    let got: Vec<AppId> = store
        .list_apps(&page(Some(&ids[1]), Order::Ascending), None)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(got, ids[2..4]);
    let got: Vec<AppId> = store
        .list_apps(&page(Some(&ids[3]), Order::Descending), None)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(got, vec![ids[2].clone(), ids[1].clone()]);
}

async fn publishing_creates_one_delivery_per_matching_endpoint(backend: Backend) {
    let (store, _dir) = open(&backend).await;
    let a = app(None);
    store.create_app(&a).await.unwrap();
    store.create_endpoint(&endpoint(&a.id, None)).await.unwrap();
    store
        .create_endpoint(&endpoint(&a.id, Some(&["ticket.created"])))
        .await
        .unwrap();
    store
        .create_endpoint(&endpoint(&a.id, Some(&["sla.at_risk"])))
        .await
        .unwrap();
    let mut off = endpoint(&a.id, None);
    off.disabled = true;
    store.create_endpoint(&off).await.unwrap();

    assert_eq!(
        store
            .publish(&message(&a.id, "ticket.created", Some("evt-1")))
            .await
            .unwrap(),
        2
    );
    // A duplicate eventId is refused and leaves nothing behind.
    let dup = store
        .publish(&message(&a.id, "ticket.created", Some("evt-1")))
        .await
        .unwrap_err();
    assert!(matches!(dup, StoreError::Conflict(_)), "{dup:?}");
    let jobs = store.claim_due(Utc::now(), 100, LEASE).await.unwrap();
    assert_eq!(jobs.len(), 2);
    assert_eq!(&*jobs[0].payload, r#"{"a": 1}"#, "the payload is kept byte for byte");
    assert!(
        store.get_message(&a.id, "evt-1").await.unwrap().is_some(),
        "found by eventId"
    );
}

async fn a_claimed_delivery_is_leased_until_it_completes_or_the_lease_ends(backend: Backend) {
    let (store, _dir) = open(&backend).await;
    let (a, _) = app_with_endpoint(store.as_ref()).await;
    store.publish(&message(&a.id, "ticket.created", None)).await.unwrap();

    let now = Utc::now();
    let jobs = store.claim_due(now, 10, LEASE).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert!(
        store.claim_due(now, 10, LEASE).await.unwrap().is_empty(),
        "leased: nobody else gets it"
    );

    // The lease ends (its holder died): another claimer takes it over.
    let later = now + LEASE + Duration::from_millis(1);
    let taken_over = store.claim_due(later, 10, LEASE).await.unwrap();
    assert_eq!(taken_over.len(), 1);
    assert_eq!(taken_over[0].delivery_id, jobs[0].delivery_id);

    // The first holder's late result is recorded but moves nothing on.
    let retry_at = later + Duration::from_secs(60);
    store
        .complete_attempt(&jobs[0], &attempt(&jobs[0], false), NextStep::RetryAt(retry_at))
        .await
        .unwrap();
    store
        .complete_attempt(&taken_over[0], &attempt(&taken_over[0], true), NextStep::Succeeded)
        .await
        .unwrap();
    assert_eq!(
        store.next_due_at().await.unwrap(),
        None,
        "succeeded: nothing left to do"
    );
    let history = store
        .list_attempts(
            &a.id,
            &Default::default(),
            &Page {
                limit: 10,
                beyond: None,
                order: Order::Ascending,
            },
        )
        .await
        .unwrap();
    assert_eq!(history.len(), 2, "both attempts are in the history");
}

async fn applications_are_found_by_part_of_their_name_or_uid(backend: Backend) {
    let (store, _dir) = open(&backend).await;
    let named = |name: &str, uid: Option<&str>| {
        let mut a = app(uid);
        a.name = name.to_owned();
        a
    };
    let acme = named("Acme Help Desk", Some("acme-prod"));
    let globex = named("Globex 100%_Docs", None);
    for a in [&acme, &globex] {
        store.create_app(a).await.unwrap();
    }
    let page = Page {
        limit: 10,
        beyond: None,
        order: Order::Ascending,
    };
    let found = |text: &str| {
        let (store, page, text) = (store.clone(), page.clone(), text.to_owned());
        async move {
            store
                .list_apps(&page, Some(&text))
                .await
                .unwrap()
                .into_iter()
                .map(|a| a.name)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        found("help").await,
        ["Acme Help Desk"],
        "any case, any part of the name"
    );
    assert_eq!(found("PROD").await, ["Acme Help Desk"], "or of the uid");
    assert_eq!(
        found("100%_").await,
        ["Globex 100%_Docs"],
        "% and _ match only themselves"
    );
    assert!(found("1%0").await.is_empty());
    assert_eq!(found(globex.id.as_str()).await, ["Globex 100%_Docs"], "or the id");
    assert_eq!(found("  ").await.len(), 2, "blank searches nothing out");
}

async fn endpoints_are_listed_for_one_owner(backend: Backend) {
    let (store, _dir) = open(&backend).await;
    let a = app(None);
    store.create_app(&a).await.unwrap();
    for owner in [Some("acme"), Some("globex"), None, Some("acme")] {
        let mut ep = endpoint(&a.id, None);
        ep.owner_id = owner.map(str::to_owned);
        store.create_endpoint(&ep).await.unwrap();
    }
    let page = Page {
        limit: 10,
        beyond: None,
        order: Order::Ascending,
    };
    let owners = |list: Vec<Endpoint>| list.into_iter().map(|e| e.owner_id).collect::<Vec<_>>();
    let acme = store.list_endpoints(&a.id, &page, Some("acme")).await.unwrap();
    assert_eq!(owners(acme), [Some("acme".to_owned()), Some("acme".to_owned())]);
    assert_eq!(store.list_endpoints(&a.id, &page, None).await.unwrap().len(), 4);
    assert!(
        store
            .list_endpoints(&a.id, &page, Some("nobody"))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn attempts_are_counted_per_endpoint_and_hour(backend: Backend) {
    let (store, _dir) = open(&backend).await;
    let (a, ep) = app_with_endpoint(store.as_ref()).await;
    for _ in 0..3 {
        store.publish(&message(&a.id, "ticket.created", None)).await.unwrap();
    }
    let jobs = store.claim_due(Utc::now(), 10, LEASE).await.unwrap();
    for (n, job) in jobs.iter().enumerate() {
        let next = if n == 0 {
            NextStep::Exhausted
        } else {
            NextStep::Succeeded
        };
        store.complete_attempt(job, &attempt(job, n > 0), next).await.unwrap();
    }
    let other = endpoint(&a.id, None);
    store.create_endpoint(&other).await.unwrap();
    // The last 24 hours, as the dashboard asks.
    let since = Utc::now() - chrono::Duration::hours(24);
    let buckets = store
        .endpoint_activity(&[ep.id.clone(), other.id.clone()], since, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(buckets.len(), 1, "only the endpoint with attempts: {buckets:?}");
    assert_eq!(buckets[0].endpoint_id, ep.id);
    assert_eq!(buckets[0].period, 23, "the last of 24 hours");
    assert_eq!((buckets[0].succeeded, buckets[0].attempts), (2, 3));
    let later = store
        .endpoint_activity(
            std::slice::from_ref(&ep.id),
            Utc::now() + chrono::Duration::hours(1),
            Duration::from_secs(3600),
        )
        .await
        .unwrap();
    assert!(later.is_empty(), "nothing before the window's start counts");
}

async fn a_failed_attempt_comes_due_again_at_its_retry_time(backend: Backend) {
    let (store, _dir) = open(&backend).await;
    let (a, _) = app_with_endpoint(store.as_ref()).await;
    store.publish(&message(&a.id, "ticket.created", None)).await.unwrap();
    let now = Utc::now();
    let job = store.claim_due(now, 10, LEASE).await.unwrap().remove(0);
    let retry_at = Clock::system().now() + Duration::from_secs(300);
    store
        .complete_attempt(&job, &attempt(&job, false), NextStep::RetryAt(retry_at))
        .await
        .unwrap();
    assert_eq!(store.next_due_at().await.unwrap(), Some(retry_at));
    assert!(store.claim_due(now, 10, LEASE).await.unwrap().is_empty());
    let again = store.claim_due(retry_at, 10, LEASE).await.unwrap();
    assert_eq!(again[0].attempts_made, 1);
    store
        .complete_attempt(&again[0], &attempt(&again[0], false), NextStep::Exhausted)
        .await
        .unwrap();
    assert_eq!(store.next_due_at().await.unwrap(), None, "exhausted: not due again");
}

async fn concurrent_claimers_never_get_the_same_delivery(backend: Backend) {
    let (store, _dir) = open(&backend).await;
    let (a, _) = app_with_endpoint(store.as_ref()).await;
    for _ in 0..200 {
        store.publish(&message(&a.id, "ticket.created", None)).await.unwrap();
    }
    let now = Utc::now();
    let claimers: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let jobs = store.claim_due(now, 7, LEASE).await.unwrap();
                    if jobs.is_empty() {
                        return mine;
                    }
                    mine.extend(jobs.into_iter().map(|j| j.delivery_id));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for c in claimers {
        all.extend(c.await.unwrap());
    }
    let unique: HashSet<_> = all.iter().cloned().collect();
    assert_eq!(all.len(), 200, "every delivery claimed");
    assert_eq!(unique.len(), 200, "none claimed twice");
}

async fn idempotency_keys_replay_the_first_answer(backend: Backend) {
    let (store, _dir) = open(&backend).await;
    let now = Utc::now();
    let ttl = Duration::from_secs(3600);
    assert!(matches!(
        store.idempotency_begin("k", now, ttl).await.unwrap(),
        IdempotencyState::New
    ));
    assert!(matches!(
        store.idempotency_begin("k", now, ttl).await.unwrap(),
        IdempotencyState::InProgress
    ));
    store.idempotency_finish("k", 202, b"{\"id\":1}").await.unwrap();
    match store.idempotency_begin("k", now, ttl).await.unwrap() {
        IdempotencyState::Done { status, body } => assert_eq!((status, body.as_slice()), (202, &b"{\"id\":1}"[..])),
        other => panic!("expected a replay, got {other:?}"),
    }
    // Expired keys start over; abandoned keys can be retried.
    let later = now + ttl + Duration::from_secs(1);
    assert!(matches!(
        store.idempotency_begin("k", later, ttl).await.unwrap(),
        IdempotencyState::New
    ));
    store.idempotency_abandon("k").await.unwrap();
    assert!(matches!(
        store.idempotency_begin("k", later, ttl).await.unwrap(),
        IdempotencyState::New
    ));
}

async fn only_a_private_database_releases_every_lease_at_start(backend: Backend) {
    let (store, _dir) = open(&backend).await;
    let (a, _) = app_with_endpoint(store.as_ref()).await;
    store.publish(&message(&a.id, "ticket.created", None)).await.unwrap();
    let now = Utc::now();
    store.claim_due(now, 10, LEASE).await.unwrap();
    let released = store.release_orphaned_leases(now).await.unwrap();
    let reclaimed = store.claim_due(now, 10, LEASE).await.unwrap();
    if store.is_shared() {
        assert_eq!(
            (released, reclaimed.len()),
            (0, 0),
            "other nodes may hold leases: leave them"
        );
    } else {
        assert_eq!(
            (released, reclaimed.len()),
            (1, 1),
            "no other process can hold a lease on SQLite"
        );
    }
}

async fn delivery_settings_round_trip_and_reach_the_claimed_job(backend: Backend) {
    let (store, _dir) = open(&backend).await;
    let mut a = app(None);
    a.profile = Some("acme".into());
    store.create_app(&a).await.unwrap();
    let mut e = endpoint(&a.id, None);
    e.secret = EndpointSecret::generate(SecretKind::Ed25519);
    e.verify_token = Some("tok-123".into());
    e.format = PayloadFormat::Template(r#"{"t": {{ event_type }}}"#.into());
    store.create_endpoint(&e).await.unwrap();
    let mut plain = endpoint(&a.id, None);
    plain.profile = Some("slack".into());
    plain.format = PayloadFormat::Slack;
    store.create_endpoint(&plain).await.unwrap();

    let back = store.get_endpoint(&a.id, e.id.as_str()).await.unwrap().unwrap();
    assert_eq!(back.secret, e.secret);
    assert_eq!(back.secret.kind(), SecretKind::Ed25519);
    assert_eq!(back.verify_token.as_deref(), Some("tok-123"));
    assert_eq!(back.format, e.format);
    assert_eq!(
        store.get_app(a.id.as_str()).await.unwrap().unwrap().profile.as_deref(),
        Some("acme")
    );
    let mut names = store.profile_names_in_use().await.unwrap();
    names.sort();
    assert_eq!(names, ["acme", "slack"]);

    let mut msg = message(&a.id, "ticket.created", Some("evt-7"));
    msg.created_at = Clock::system().now();
    store.publish(&msg).await.unwrap();
    let jobs = store.claim_due(Utc::now(), 10, LEASE).await.unwrap();
    let job = jobs.iter().find(|j| j.endpoint.id == e.id).unwrap();
    assert_eq!(job.event_type, "ticket.created");
    assert_eq!(job.event_id.as_deref(), Some("evt-7"));
    assert_eq!(job.msg_created_at, msg.created_at);
    assert_eq!(job.app_profile.as_deref(), Some("acme"));
    assert_eq!(job.endpoint.format, e.format);
}

async fn herald_can_disable_an_endpoint_with_a_reason(backend: Backend) {
    let (store, _dir) = open(&backend).await;
    let (a, e) = app_with_endpoint(store.as_ref()).await;
    store
        .disable_endpoint(&e.id, "answered 410 Gone", Utc::now())
        .await
        .unwrap();
    let back = store.get_endpoint(&a.id, e.id.as_str()).await.unwrap().unwrap();
    assert!(back.disabled);
    assert_eq!(back.disabled_reason.as_deref(), Some("answered 410 Gone"));
    assert_eq!(
        store.publish(&message(&a.id, "ticket.created", None)).await.unwrap(),
        0,
        "a disabled endpoint gets no new deliveries"
    );
}

async fn each_repeat_check_is_claimed_once(backend: Backend) {
    let (store, _dir) = open(&backend).await;
    let a = app(None);
    store.create_app(&a).await.unwrap();
    let now = Clock::system().now();
    let mut due = endpoint(&a.id, None);
    due.reverify_at = Some(now - chrono::Duration::seconds(5));
    store.create_endpoint(&due).await.unwrap();
    let mut later = endpoint(&a.id, None);
    later.reverify_at = Some(now + chrono::Duration::hours(1));
    store.create_endpoint(&later).await.unwrap();
    let mut never = endpoint(&a.id, None);
    never.reverify_at = None;
    store.create_endpoint(&never).await.unwrap();

    let found = store.endpoints_to_reverify(now, 10).await.unwrap();
    assert_eq!(
        found.iter().map(|(e, _)| e.id.clone()).collect::<Vec<_>>(),
        [due.id.clone()]
    );
    let seen = due.reverify_at.unwrap();
    let next = Some(now + chrono::Duration::hours(24));
    assert!(store.claim_reverify(&due.id, seen, next).await.unwrap());
    assert!(
        !store.claim_reverify(&due.id, seen, next).await.unwrap(),
        "a second node loses"
    );
    assert!(store.endpoints_to_reverify(now, 10).await.unwrap().is_empty());
}

async fn a_held_delivery_comes_due_when_its_endpoint_is_enabled(backend: Backend) {
    let (store, _dir) = open(&backend).await;
    let (a, mut ep) = app_with_endpoint(store.as_ref()).await;
    store.publish(&message(&a.id, "ticket.created", None)).await.unwrap();
    let job = store.claim_due(Utc::now(), 10, LEASE).await.unwrap().remove(0);
    ep.disabled = true;
    ep.while_disabled = WhileDisabled::Hold;
    store.update_endpoint(&ep).await.unwrap();
    assert!(store.hold_delivery(&job, Utc::now()).await.unwrap(), "held");
    assert_eq!(store.next_due_at().await.unwrap(), None, "held: not due");
    let window = Window {
        since: Utc::now() - chrono::Duration::hours(1),
        until: None,
    };
    assert_eq!(store.endpoint_stats(&ep.id, &window).await.unwrap().held, 1);

    ep.disabled = false;
    store.update_endpoint(&ep).await.unwrap();
    let again = store.claim_due(Utc::now(), 10, LEASE).await.unwrap();
    assert_eq!(again.len(), 1, "released by the enabling update");
    assert_eq!(again[0].delivery_id, job.delivery_id);
}

async fn recovery_finds_what_failed_and_what_was_never_sent(backend: Backend) {
    let (store, _dir) = open(&backend).await;
    let (a, ep) = app_with_endpoint(store.as_ref()).await;
    let window = Window {
        since: Utc::now() - chrono::Duration::hours(1),
        until: None,
    };
    let ok = message(&a.id, "ticket.created", None);
    let bad = message(&a.id, "ticket.created", None);
    store.publish(&ok).await.unwrap();
    store.publish(&bad).await.unwrap();
    for job in store.claim_due(Utc::now(), 10, LEASE).await.unwrap() {
        let (worked, next) = if job.msg_id == ok.id {
            (true, NextStep::Succeeded)
        } else {
            (false, NextStep::Exhausted)
        };
        store
            .complete_attempt(&job, &attempt(&job, worked), next)
            .await
            .unwrap();
    }
    // Published before this endpoint existed: missing for it.
    let late = endpoint(&a.id, None);
    store.create_endpoint(&late).await.unwrap();

    let failed = store
        .recovery_batch(&ep, Recovery::Failed, &window, None, 10)
        .await
        .unwrap();
    assert_eq!(failed.iter().map(|m| &m.id).collect::<Vec<_>>(), [&bad.id]);
    let missing = store
        .recovery_batch(&ep, Recovery::Missing, &window, None, 10)
        .await
        .unwrap();
    assert!(missing.is_empty(), "the first endpoint had both");
    let missing = store
        .recovery_batch(&late, Recovery::Missing, &window, None, 10)
        .await
        .unwrap();
    assert_eq!(missing.len(), 2);

    assert_eq!(
        store
            .resend_many(&ep, std::slice::from_ref(&bad.id), Utc::now())
            .await
            .unwrap(),
        1
    );
    let failed = store
        .recovery_batch(&ep, Recovery::Failed, &window, None, 10)
        .await
        .unwrap();
    assert!(failed.is_empty(), "a pending resend is not recovered twice");
}

async fn a_duplicate_among_concurrent_publishes_fails_alone(backend: Backend) {
    let (store, _dir) = open(&backend).await;
    let (a, _) = app_with_endpoint(store.as_ref()).await;
    // Published at once, these share transactions where the backend groups
    // commits; the duplicate eventId must fail without taking others along.
    let mut tasks = Vec::new();
    for i in 0..60 {
        let store = store.clone();
        let event_id = match i {
            7 | 42 => Some("order-1".to_owned()),
            i if i % 3 == 0 => Some(format!("e-{i}")),
            _ => None,
        };
        let msg = message(&a.id, "ticket.created", event_id.as_deref());
        tasks.push(tokio::spawn(async move { store.publish(&msg).await }));
    }
    let mut stored = 0;
    let mut conflicts = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(1) => stored += 1,
            Err(StoreError::Conflict(_)) => conflicts += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((stored, conflicts), (59, 1));
    let jobs = store.claim_due(Utc::now(), 100, LEASE).await.unwrap();
    assert_eq!(jobs.len(), 59, "one delivery per stored message");
}

/// An app with a FIFO endpoint and a parallel one, both taking everything.
async fn app_with_fifo_and_parallel(store: &dyn Store) -> (Application, Endpoint, Endpoint) {
    let a = app(None);
    store.create_app(&a).await.unwrap();
    let mut fifo = endpoint(&a.id, None);
    fifo.ordering = DeliveryOrder::Fifo;
    store.create_endpoint(&fifo).await.unwrap();
    let parallel = endpoint(&a.id, None);
    store.create_endpoint(&parallel).await.unwrap();
    (a, fifo, parallel)
}

/// Publishes `n` messages one after the other; answers their ids in order.
async fn publish_in_order(store: &dyn Store, app: &AppId, n: usize) -> Vec<MessageId> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let msg = message(app, "ticket.created", None);
        store.publish(&msg).await.unwrap();
        ids.push(msg.id);
    }
    ids
}

/// Claims everything due at `at`; answers the jobs of `endpoint` and how many others.
async fn claim_for(store: &dyn Store, endpoint: &Endpoint, at: chrono::DateTime<Utc>) -> (Vec<DeliveryJob>, usize) {
    let jobs = store.claim_due(at, 100, LEASE).await.unwrap();
    let total = jobs.len();
    let mine: Vec<DeliveryJob> = jobs.into_iter().filter(|j| j.endpoint.id == endpoint.id).collect();
    let others = total - mine.len();
    (mine, others)
}

async fn a_fifo_endpoint_offers_only_its_oldest_unfinished_delivery(backend: Backend) {
    let (store, _dir) = open(&backend).await;
    let (a, fifo, parallel) = app_with_fifo_and_parallel(store.as_ref()).await;
    let ids = publish_in_order(store.as_ref(), &a.id, 3).await;
    assert_eq!(store.waiting_behind_head(&fifo.id).await.unwrap(), 2);

    let now = Utc::now();
    let jobs = store.claim_due(now, 100, LEASE).await.unwrap();
    let to_parallel = jobs.iter().filter(|j| j.endpoint.id == parallel.id).count();
    let to_fifo: Vec<&DeliveryJob> = jobs.iter().filter(|j| j.endpoint.id == fifo.id).collect();
    assert_eq!(to_parallel, 3, "the parallel endpoint gets everything at once");
    assert_eq!(to_fifo.len(), 1, "the FIFO endpoint gets its head only");
    assert_eq!(to_fifo[0].msg_id, ids[0]);
    let head = to_fifo[0].clone();
    for job in jobs.iter().filter(|j| j.endpoint.id == parallel.id) {
        store
            .complete_attempt(job, &attempt(job, true), NextStep::Succeeded)
            .await
            .unwrap();
    }
    assert!(
        claim_for(store.as_ref(), &fifo, now).await.0.is_empty(),
        "one at a time"
    );

    // A retry keeps its place: nothing behind it comes due, even at the retry time.
    let retry_at = Clock::system().now() + Duration::from_secs(60);
    store
        .complete_attempt(&head, &attempt(&head, false), NextStep::RetryAt(retry_at))
        .await
        .unwrap();
    assert!(
        claim_for(store.as_ref(), &fifo, Utc::now()).await.0.is_empty(),
        "held behind the retry"
    );
    assert_eq!(
        store.next_due_at().await.unwrap(),
        Some(retry_at),
        "nothing waiting is due"
    );
    let (again, _) = claim_for(store.as_ref(), &fifo, retry_at).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].msg_id, ids[0], "the same message is retried");

    // Exhausted: the next one goes.
    store
        .complete_attempt(&again[0], &attempt(&again[0], false), NextStep::Exhausted)
        .await
        .unwrap();
    let (second, _) = claim_for(store.as_ref(), &fifo, Utc::now()).await;
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].msg_id, ids[1]);
    assert_eq!(store.waiting_behind_head(&fifo.id).await.unwrap(), 1);
    store
        .complete_attempt(&second[0], &attempt(&second[0], true), NextStep::Succeeded)
        .await
        .unwrap();
    let (third, _) = claim_for(store.as_ref(), &fifo, Utc::now()).await;
    assert_eq!(third.len(), 1);
    assert_eq!(third[0].msg_id, ids[2]);
    assert_eq!(store.waiting_behind_head(&fifo.id).await.unwrap(), 0);
}

async fn a_fifo_head_whose_lease_ended_is_taken_over_not_skipped(backend: Backend) {
    let (store, _dir) = open(&backend).await;
    let (a, fifo, _) = app_with_fifo_and_parallel(store.as_ref()).await;
    let ids = publish_in_order(store.as_ref(), &a.id, 2).await;
    let now = Utc::now();
    let (first, _) = claim_for(store.as_ref(), &fifo, now).await;
    assert_eq!(first[0].msg_id, ids[0]);
    // Its holder died: the same head comes back, and only it.
    let later = now + LEASE + Duration::from_millis(1);
    let (taken_over, _) = claim_for(store.as_ref(), &fifo, later).await;
    assert_eq!(taken_over.len(), 1);
    assert_eq!(taken_over[0].delivery_id, first[0].delivery_id);
    // The dead holder's late result moves nothing on; the new holder's does.
    store
        .complete_attempt(&first[0], &attempt(&first[0], true), NextStep::Succeeded)
        .await
        .unwrap();
    assert!(claim_for(store.as_ref(), &fifo, later).await.0.is_empty());
    store
        .complete_attempt(&taken_over[0], &attempt(&taken_over[0], true), NextStep::Succeeded)
        .await
        .unwrap();
    let (next, _) = claim_for(store.as_ref(), &fifo, later).await;
    assert_eq!(next[0].msg_id, ids[1]);
}

async fn a_resend_to_a_fifo_endpoint_queues_behind_what_waits(backend: Backend) {
    let (store, _dir) = open(&backend).await;
    let (a, fifo, _) = app_with_fifo_and_parallel(store.as_ref()).await;
    let ids = publish_in_order(store.as_ref(), &a.id, 2).await;
    let (head, _) = claim_for(store.as_ref(), &fifo, Utc::now()).await;
    let old = store.get_message(&a.id, ids[0].as_str()).await.unwrap().unwrap();
    store.resend(&old, &fifo, Clock::system().now()).await.unwrap();
    assert_eq!(
        store
            .resend_many(&fifo, &ids[..1], Clock::system().now())
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.waiting_behind_head(&fifo.id).await.unwrap(), 3);

    let mut order = vec![head[0].msg_id.clone()];
    let mut job = head.into_iter().next().unwrap();
    loop {
        store
            .complete_attempt(&job, &attempt(&job, true), NextStep::Succeeded)
            .await
            .unwrap();
        let (next, _) = claim_for(store.as_ref(), &fifo, Utc::now()).await;
        assert!(next.len() <= 1, "one at a time");
        let Some(next) = next.into_iter().next() else { break };
        order.push(next.msg_id.clone());
        job = next;
    }
    assert_eq!(order, [ids[0].clone(), ids[1].clone(), ids[0].clone(), ids[0].clone()]);
}

async fn held_deliveries_of_a_fifo_endpoint_come_back_in_order(backend: Backend) {
    let (store, _dir) = open(&backend).await;
    let (a, mut fifo, _) = app_with_fifo_and_parallel(store.as_ref()).await;
    fifo.disabled = true;
    fifo.while_disabled = WhileDisabled::Hold;
    store.update_endpoint(&fifo).await.unwrap();
    let ids = publish_in_order(store.as_ref(), &a.id, 3).await;
    assert!(claim_for(store.as_ref(), &fifo, Utc::now()).await.0.is_empty(), "held");

    fifo.disabled = false;
    fifo.updated_at = Clock::system().now();
    store.update_endpoint(&fifo).await.unwrap();
    let (head, _) = claim_for(store.as_ref(), &fifo, Utc::now()).await;
    assert_eq!(head.len(), 1, "released into the queue, not all at once");
    assert_eq!(head[0].msg_id, ids[0]);
    assert_eq!(store.waiting_behind_head(&fifo.id).await.unwrap(), 2);
}

async fn switching_ordering_frees_or_forms_the_queue(backend: Backend) {
    let (store, _dir) = open(&backend).await;
    let (a, mut fifo, _) = app_with_fifo_and_parallel(store.as_ref()).await;
    publish_in_order(store.as_ref(), &a.id, 3).await;
    // Back to parallel: everything waiting is due at once.
    fifo.ordering = DeliveryOrder::Parallel;
    store.update_endpoint(&fifo).await.unwrap();
    assert_eq!(store.waiting_behind_head(&fifo.id).await.unwrap(), 0);
    let (all, _) = claim_for(store.as_ref(), &fifo, Utc::now()).await;
    assert_eq!(all.len(), 3);

    // To FIFO with deliveries in flight: what comes after waits for them all.
    fifo.ordering = DeliveryOrder::Fifo;
    store.update_endpoint(&fifo).await.unwrap();
    let later = publish_in_order(store.as_ref(), &a.id, 2).await;
    for job in &all {
        assert!(claim_for(store.as_ref(), &fifo, Utc::now()).await.0.is_empty());
        store
            .complete_attempt(job, &attempt(job, true), NextStep::Succeeded)
            .await
            .unwrap();
    }
    let (next, _) = claim_for(store.as_ref(), &fifo, Utc::now()).await;
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].msg_id, later[0]);
}

async fn removing_the_payload_of_a_fifo_head_lets_the_next_go(backend: Backend) {
    let (store, _dir) = open(&backend).await;
    let (a, fifo, _) = app_with_fifo_and_parallel(store.as_ref()).await;
    let ids = publish_in_order(store.as_ref(), &a.id, 2).await;
    let (head, _) = claim_for(store.as_ref(), &fifo, Utc::now()).await;
    store
        .complete_attempt(
            &head[0],
            &attempt(&head[0], false),
            NextStep::RetryAt(Utc::now() + chrono::Duration::hours(1)),
        )
        .await
        .unwrap();
    assert!(
        store
            .remove_payload(&a.id, &ids[0], Clock::system().now())
            .await
            .unwrap()
    );
    let (next, _) = claim_for(store.as_ref(), &fifo, Utc::now()).await;
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].msg_id, ids[1]);
}

/// The history sweep takes an old message whose deliveries are done, with
/// its deliveries and attempts; one still to be delivered stays, and so do
/// young ones and other applications'.
async fn the_history_sweep_removes_old_finished_messages_with_their_history(backend: Backend) {
    let (store, _dir) = open(&backend).await;
    let (a, _) = app_with_endpoint(store.as_ref()).await;
    let done = message(&a.id, "ticket.created", None);
    store.publish(&done).await.unwrap();
    let jobs = store.claim_due(Utc::now(), 10, LEASE).await.unwrap();
    assert_eq!(jobs.len(), 1);
    store
        .complete_attempt(&jobs[0], &attempt(&jobs[0], true), NextStep::Succeeded)
        .await
        .unwrap();
    let waiting = message(&a.id, "ticket.created", None);
    store.publish(&waiting).await.unwrap();
    let cutoff = Clock::system().now() + chrono::Duration::seconds(1);
    let mut young = message(&a.id, "ticket.created", None);
    young.created_at = cutoff + chrono::Duration::hours(1);
    store.publish(&young).await.unwrap();
    let (other, _) = app_with_endpoint(store.as_ref()).await;

    let untouched = store.remove_old_messages(Some(&other.id), cutoff, 1000).await.unwrap();
    assert_eq!(
        untouched.messages, 0,
        "another application's window takes nothing of this one"
    );
    let removed = store.remove_old_messages(None, cutoff, 1000).await.unwrap();
    assert_eq!((removed.messages, removed.deliveries, removed.attempts), (1, 1, 1));

    assert!(store.get_message(&a.id, done.id.as_str()).await.unwrap().is_none());
    let page = Page::first(10);
    let attempts = store.list_attempts(&a.id, &Default::default(), &page).await.unwrap();
    assert!(attempts.is_empty(), "its attempts went with it: {attempts:?}");
    assert!(
        store.get_message(&a.id, waiting.id.as_str()).await.unwrap().is_some(),
        "still pending"
    );
    assert!(
        store.get_message(&a.id, young.id.as_str()).await.unwrap().is_some(),
        "inside the window"
    );
    let later = young.created_at + chrono::Duration::minutes(1);
    let due = store.claim_due(later, 10, LEASE).await.unwrap();
    assert_eq!(due.len(), 2, "the kept messages' deliveries are still there");
    assert_eq!(
        store.oldest_message_at().await.unwrap(),
        Some(waiting.created_at),
        "the oldest kept"
    );
    let again = store.remove_old_messages(None, cutoff, 1000).await.unwrap();
    assert_eq!(again.messages, 0, "nothing old and finished is left");
}

/// What the operator's overview, search and tokens page read.
async fn the_console_reads_traffic_trouble_messages_and_token_use(backend: Backend) {
    let (store, _dir) = open(&backend).await;
    let (a, ep) = app_with_endpoint(store.as_ref()).await;
    store
        .publish(&message(&a.id, "ticket.created", Some("evt-1")))
        .await
        .unwrap();
    store.publish(&message(&a.id, "ticket.created", None)).await.unwrap();
    store.publish(&message(&a.id, "ticket.created", None)).await.unwrap();
    let jobs = store.claim_due(Utc::now(), 10, LEASE).await.unwrap();
    assert_eq!(jobs.len(), 3);
    let later = Utc::now() + chrono::Duration::minutes(5);
    let steps = [
        (false, NextStep::RetryAt(later)),
        (false, NextStep::Exhausted),
        (true, NextStep::Succeeded),
    ];
    for (job, (ok, next)) in jobs.iter().zip(steps) {
        store.complete_attempt(job, &attempt(job, ok), next).await.unwrap();
    }
    let since = Utc::now() - chrono::Duration::hours(1);
    let traffic = store.traffic(since, Duration::from_secs(60)).await.unwrap();
    let sum = traffic.iter().fold((0, 0, 0), |(s, f, r), b| {
        (s + b.succeeded, f + b.failed, r + b.retrying)
    });
    assert_eq!(sum, (1, 1, 1), "succeeded, failed for good, retrying: {traffic:?}");
    // Bucket 60 is the minute now running: an attempt recorded in the same
    // millisecond as `since` was taken falls in it.
    assert!(traffic.iter().all(|b| (55..=60).contains(&b.period)), "{traffic:?}");
    let future = store
        .traffic(Utc::now() + chrono::Duration::hours(1), Duration::from_secs(60))
        .await
        .unwrap();
    assert!(future.is_empty());

    // Endpoints in trouble, across applications; healthy ones are left out.
    assert!(store.troubled_endpoints(10).await.unwrap().is_empty());
    let other = app(Some("globex"));
    store.create_app(&other).await.unwrap();
    let off = endpoint(&other.id, None);
    store.create_endpoint(&off).await.unwrap();
    let fine = endpoint(&other.id, None);
    store.create_endpoint(&fine).await.unwrap();
    store.set_endpoint_failing(&ep.id, Some(Utc::now())).await.unwrap();
    store.disable_endpoint(&off.id, "410 Gone", Utc::now()).await.unwrap();
    let troubled: HashSet<_> = store
        .troubled_endpoints(10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.id.to_string(), e.disabled, e.failing_since.is_some()))
        .collect();
    let expected: HashSet<_> = [(ep.id.to_string(), false, true), (off.id.to_string(), true, false)].into();
    assert_eq!(troubled, expected);
    assert_eq!(store.troubled_endpoints(1).await.unwrap().len(), 1);

    // A message by id or eventId, in any application.
    let theirs = message(&other.id, "ticket.created", Some("evt-1"));
    store.publish(&theirs).await.unwrap();
    assert_eq!(store.find_messages("evt-1", 10).await.unwrap().len(), 2);
    let by_id = store.find_messages(theirs.id.as_str(), 10).await.unwrap();
    assert_eq!(by_id.len(), 1);
    assert_eq!(by_id[0].app_id, other.id);
    assert!(store.find_messages("evt-none", 10).await.unwrap().is_empty());

    // A token's last use.
    let token = ApiToken {
        id: TokenId::generate(),
        name: "ops".into(),
        token_hash: "00".repeat(32),
        scope: Scope::Admin,
        rate_limit: None,
        created_at: Utc::now(),
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
    };
    store.create_token(&token).await.unwrap();
    assert_eq!(store.get_token(&token.id).await.unwrap().unwrap().last_used_at, None);
    let used = Clock::system().now();
    store.touch_token(&token.id, used).await.unwrap();
    let read = store.get_token(&token.id).await.unwrap().unwrap();
    assert_eq!(
        read.last_used_at.map(|t| t.timestamp_millis()),
        Some(used.timestamp_millis())
    );
}

/// Operational notices built for an operational application `ops`.
fn notices_for(ops: &AppId, about: &Application, ep: &Endpoint, now: chrono::DateTime<Utc>) -> Notices {
    let listeners = Listeners {
        operational_app: Some(ops.clone()),
        email: true,
    };
    listeners.endpoint_disabled(about, ep, DisableTrigger::Automatic, Some("410 Gone"), now)
}

async fn notices_commit_with_the_change_they_report(backend: Backend) {
    let (store, _dir) = open(&backend).await;
    let (ops, ops_ep) = app_with_endpoint(store.as_ref()).await;
    let (a, e) = app_with_endpoint(store.as_ref()).await;
    let now = Clock::system().now();
    let notices = notices_for(&ops.id, &a, &e, now);
    assert_eq!((notices.messages.len(), notices.emails.len()), (1, 1));

    assert!(
        store
            .disable_endpoint_noting(&e.id, "410 Gone", now, &notices)
            .await
            .unwrap()
    );
    // Already disabled: nothing changes, nothing is reported again.
    assert!(
        !store
            .disable_endpoint_noting(&e.id, "410 Gone", now, &notices)
            .await
            .unwrap()
    );
    let jobs = store.claim_due(now, 10, LEASE).await.unwrap();
    assert_eq!(jobs.len(), 1, "one delivery of the event: {jobs:?}");
    assert_eq!(jobs[0].endpoint.id, ops_ep.id);
    assert_eq!(jobs[0].event_type, "endpoint.disabled");
    let emails = store.list_emails(&Page::first(10), None).await.unwrap();
    assert_eq!(emails.len(), 1);
    assert_eq!(emails[0].state, EmailState::Pending);
    assert_eq!(store.email_counts().await.unwrap().pending, 1);

    // A delete that finds nothing writes no notice.
    let gone = endpoint(&a.id, None);
    let more = notices_for(&ops.id, &a, &gone, now);
    assert!(!store.delete_endpoint_noting(&a.id, &gone.id, &more).await.unwrap());
    assert!(store.claim_due(now, 10, LEASE).await.unwrap().is_empty());
    assert_eq!(store.list_emails(&Page::first(10), None).await.unwrap().len(), 1);

    // Notices ride with an attempt's record, in its group commit.
    let msg = message(&a.id, "ticket.created", None);
    let other = endpoint(&a.id, None);
    store
        .create_endpoint_noting(&other, &notices_for(&ops.id, &a, &other, now))
        .await
        .unwrap();
    store.publish(&msg).await.unwrap();
    let jobs = store.claim_due(Clock::system().now(), 10, LEASE).await.unwrap();
    let job = jobs
        .iter()
        .find(|j| j.msg_id == msg.id)
        .expect("the message's delivery");
    let noted = notices_for(&ops.id, &a, &other, now);
    store
        .complete_attempt_noting(job, &attempt(job, false), NextStep::Exhausted, noted)
        .await
        .unwrap();
    let ops_jobs = store.claim_due(Clock::system().now(), 10, LEASE).await.unwrap();
    assert_eq!(
        ops_jobs.iter().filter(|j| j.endpoint.id == ops_ep.id).count(),
        1,
        "{ops_jobs:?}"
    );
    assert_eq!(store.email_counts().await.unwrap().pending, 3);
}

async fn an_email_is_claimed_by_one_sender_and_marked_by_its_lease_holder(backend: Backend) {
    let (store, _dir) = open(&backend).await;
    let (ops, _) = app_with_endpoint(store.as_ref()).await;
    let (a, e) = app_with_endpoint(store.as_ref()).await;
    let t0 = Clock::system().now();
    let at = |ms: i64| t0 + chrono::Duration::milliseconds(ms);
    store
        .disable_endpoint_noting(&e.id, "410 Gone", t0, &notices_for(&ops.id, &a, &e, t0))
        .await
        .unwrap();

    let first = store.claim_emails(at(0), 10, LEASE).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].tries, 1);
    assert!(store.claim_emails(at(0), 10, LEASE).await.unwrap().is_empty(), "leased");
    assert_eq!(store.next_email_due().await.unwrap(), Some(at(30_000)));

    // The server refused it: due again at the retry time, by anyone.
    assert!(
        store
            .email_not_sent(&first[0], "connection refused", Some(at(1_000)), at(10))
            .await
            .unwrap()
    );
    assert!(store.claim_emails(at(500), 10, LEASE).await.unwrap().is_empty());
    let second = store.claim_emails(at(1_000), 10, LEASE).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].tries, 2);
    // The old claim marks nothing.
    assert!(!store.email_sent(&first[0], at(1_001)).await.unwrap());

    // Its holder died: once the lease ends another sender takes it, and
    // only the new holder's mark counts.
    let third = store.claim_emails(at(1_000 + 30_000), 10, LEASE).await.unwrap();
    assert_eq!(third.len(), 1);
    assert_eq!(third[0].tries, 3);
    assert!(!store.email_sent(&second[0], at(31_001)).await.unwrap());
    assert!(store.email_sent(&third[0], at(31_002)).await.unwrap());
    assert!(
        store.claim_emails(at(999_999), 10, LEASE).await.unwrap().is_empty(),
        "sent for good"
    );
    assert_eq!(store.next_email_due().await.unwrap(), None);
    let listed = store
        .list_emails(&Page::first(10), Some(EmailState::Sent))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].sent_at, Some(at(31_002)));
    assert_eq!(listed[0].next_attempt_at, None);
    assert_eq!(listed[0].last_error.as_deref(), Some("connection refused"));
    let counts = store.email_counts().await.unwrap();
    assert_eq!((counts.pending, counts.sent, counts.failed), (0, 1, 0));
}

async fn an_email_given_up_is_failed_for_good(backend: Backend) {
    let (store, _dir) = open(&backend).await;
    let (ops, _) = app_with_endpoint(store.as_ref()).await;
    let (a, e) = app_with_endpoint(store.as_ref()).await;
    let now = Clock::system().now();
    store
        .disable_endpoint_noting(&e.id, "410 Gone", now, &notices_for(&ops.id, &a, &e, now))
        .await
        .unwrap();
    let claimed = store.claim_emails(now, 10, LEASE).await.unwrap();
    assert!(store.email_not_sent(&claimed[0], "refused", None, now).await.unwrap());
    assert!(
        store
            .claim_emails(now + chrono::Duration::days(2), 10, LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    let failed = store
        .list_emails(&Page::first(10), Some(EmailState::Failed))
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(store.email_counts().await.unwrap().failed, 1);

    // The history sweep removes emails that ended, never a pending one.
    let other = endpoint(&a.id, None);
    store.create_endpoint(&other).await.unwrap();
    let notices = notices_for(&ops.id, &a, &other, now);
    store
        .disable_endpoint_noting(&other.id, "410 Gone", now, &notices)
        .await
        .unwrap();
    assert_eq!(store.remove_old_emails(now).await.unwrap(), 0, "none queued before now");
    let later = now + chrono::Duration::days(1);
    assert_eq!(store.remove_old_emails(later).await.unwrap(), 1);
    let counts = store.email_counts().await.unwrap();
    assert_eq!((counts.pending, counts.failed), (1, 0));
}

on_both_backends!(
    the_console_reads_traffic_trouble_messages_and_token_use,
    notices_commit_with_the_change_they_report,
    an_email_is_claimed_by_one_sender_and_marked_by_its_lease_holder,
    an_email_given_up_is_failed_for_good,
    the_history_sweep_removes_old_finished_messages_with_their_history,
    a_fifo_endpoint_offers_only_its_oldest_unfinished_delivery,
    a_fifo_head_whose_lease_ended_is_taken_over_not_skipped,
    a_resend_to_a_fifo_endpoint_queues_behind_what_waits,
    held_deliveries_of_a_fifo_endpoint_come_back_in_order,
    switching_ordering_frees_or_forms_the_queue,
    removing_the_payload_of_a_fifo_head_lets_the_next_go,
    applications_are_found_by_part_of_their_name_or_uid,
    attempts_are_counted_per_endpoint_and_hour,
    endpoints_are_listed_for_one_owner,
    a_duplicate_among_concurrent_publishes_fails_alone,
    a_held_delivery_comes_due_when_its_endpoint_is_enabled,
    recovery_finds_what_failed_and_what_was_never_sent,
    delivery_settings_round_trip_and_reach_the_claimed_job,
    herald_can_disable_an_endpoint_with_a_reason,
    each_repeat_check_is_claimed_once,
    applications_are_found_by_id_or_uid_and_uids_are_unique,
    lists_page_in_either_order,
    publishing_creates_one_delivery_per_matching_endpoint,
    a_claimed_delivery_is_leased_until_it_completes_or_the_lease_ends,
    a_failed_attempt_comes_due_again_at_its_retry_time,
    concurrent_claimers_never_get_the_same_delivery,
    idempotency_keys_replay_the_first_answer,
    only_a_private_database_releases_every_lease_at_start,
);

#[tokio::test]
async fn a_second_process_on_the_same_sqlite_file_is_refused() {
    let (_store, dir) = open(&Backend::Sqlite).await;
    let settings = Settings {
        database_url: Some(Backend::Sqlite.database_url(dir.path())),
        ..Default::default()
    };
    let config = Config::load(&settings, None).unwrap();
    let err = herald::store::open(&config, &Clock::system())
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, StoreError::Locked(_)), "{err:?}");
    assert!(err.to_string().contains("another Herald process"), "{err}");
}

/// A stopping server closes its store: the file is free again at once, even
/// while some task still holds the closed store.
#[tokio::test]
async fn a_closed_store_lets_go_of_its_sqlite_file() {
    let (store, dir) = open(&Backend::Sqlite).await;
    store.close().await;
    let settings = Settings {
        database_url: Some(Backend::Sqlite.database_url(dir.path())),
        secret_key: Backend::Sqlite.secret_key(),
        ..Default::default()
    };
    let config = Config::load(&settings, None).unwrap();
    let reopened = herald::store::open(&config, &Clock::system()).await;
    assert!(reopened.is_ok(), "{:?}", reopened.err());
    assert!(
        store.get_app("anything").await.is_err(),
        "the closed store answers no more"
    );
    drop(store);
}
