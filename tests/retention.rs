//! History retention, walked as an operator would see it: old messages go
//! with their deliveries and attempts once nothing is left to send, an
//! application may keep its history for less time than the server, and the
//! window is told where operators look (`/health`, `/metrics`). Days pass on
//! tokio's paused time, never slept. On PostgreSQL the server's window is
//! kept by dropping whole days of history (partitions); a message still
//! being delivered when its day goes is carried over and stays.

mod common;

use std::time::Duration;

use common::{Backend, Receiver, TestApp, spawn_app_on_clock, spawn_app_with};
use herald::domain::clock::Clock;
use reqwest::StatusCode;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(15);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// Moves Herald's clock (and every timer) on by `by`, then lets time run again.
async fn pass(by: Duration) {
    tokio::time::pause();
    tokio::time::advance(by).await;
    tokio::time::resume();
}

fn msg_path(app: &str, msg: &Value) -> String {
    format!("/api/v1/app/{app}/msg/{}", msg["id"].as_str().unwrap())
}

/// Waits until the message answers 404, as an unknown id does.
async fn wait_until_gone(app: &TestApp, path: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let status = app.get(path).await.status;
        if status == StatusCode::NOT_FOUND {
            return;
        }
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(tokio::time::Instant::now() < deadline, "{path} was never removed");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

fn time(v: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("a time: {v}"))).unwrap()
}

/// One sample of `/metrics`, by its full name with labels.
async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = app.metrics_text().await;
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("{name} not in:\n{text}"))
        .parse()
        .unwrap()
}

/// An hour before the end of today (UTC), or now if that has passed. Ids
/// carry the system's time, so a story starting there sees today's
/// partition wholly past a three-day window after three days and three hours.
fn late_today() -> chrono::DateTime<chrono::Utc> {
    let now = chrono::Utc::now();
    let tomorrow = now
        .date_naive()
        .succ_opt()
        .unwrap()
        .and_time(chrono::NaiveTime::MIN)
        .and_utc();
    now.max(tomorrow - chrono::TimeDelta::hours(1))
}

async fn old_history_goes_once_nothing_is_left_to_send(backend: Backend) {
    let partitioned = matches!(backend, Backend::Postgres(_));
    let clock = Clock::following_tokio(late_today());
    let app = spawn_app_on_clock(&backend, clock, |s| {
        s.history_retention = Some("3d".into());
        s.payload_retention = Some("1d".into());
        s.retry_schedule = Some("1d,1d,1d,1d".into());
        s.cleanup_interval = Some("100ms".into());
    })
    .await;
    let health = app.get("/health").await.body;
    assert_eq!(health["historyRetention"], "3d", "{health}");
    assert!(health["databaseSizeBytes"].as_i64().unwrap() > 0, "{health}");
    let today = chrono::Utc::now().date_naive();
    if partitioned {
        // Today and the three days ahead exist from the start.
        assert!(health["partitions"]["days"].as_u64().unwrap() >= 4, "{health}");
        let newest: chrono::NaiveDate = health["partitions"]["newestDay"].as_str().unwrap().parse().unwrap();
        assert!(newest >= today + chrono::Days::new(3), "{health}");
        assert_eq!(metric(&app, "herald_history_partitions").await, 4.0);
    } else {
        assert!(health.get("partitions").is_none(), "{health}");
    }

    let healthy = Receiver::start().await;
    let kept = app.create_app("Kept for the server's window").await;
    app.create_endpoint(&kept, &healthy.url, json!({})).await;
    let short = app
        .post(
            "/api/v1/app",
            json!({"name": "Kept one day", "historyRetentionDays": 1}),
        )
        .await;
    assert_eq!(short.status, StatusCode::CREATED, "{}", short.body);
    assert_eq!(short.body["historyRetentionDays"], 1);
    let short = short.body["id"].as_str().unwrap().to_owned();
    app.create_endpoint(&short, &healthy.url, json!({})).await;
    // Fails three times, then takes it: the last try comes after the window.
    let flaky_receiver = Receiver::scripted(&[500, 500, 500]).await;
    let flaky = app.create_app("Retrying").await;
    app.create_endpoint(&flaky, &flaky_receiver.url, json!({})).await;

    let delivered = app.publish(&kept, "ticket.created", json!({"id": 1})).await;
    let short_lived = app.publish(&short, "ticket.created", json!({"id": 2})).await;
    let retrying = app.publish(&flaky, "ticket.created", json!({"id": 3})).await;
    assert_eq!(healthy.wait_for(2, WAIT).await.len(), 2);
    let retrying_attempts = format!("/api/v1/app/{flaky}/attempt/msg/{}", retrying["id"].as_str().unwrap());
    app.wait_for_attempts(&retrying_attempts, |a| a.len() == 1).await;

    // A day and a bit (retries wait up to 10% longer): the one-day
    // application's message goes; the server's window keeps the rest.
    pass(DAY + 3 * HOUR).await;
    wait_until_gone(&app, &msg_path(&short, &short_lived)).await;
    // Its second try is over before time moves again, so no lease ends mid-flight.
    app.wait_for_attempts(&retrying_attempts, |a| a.len() == 2).await;
    assert_eq!(app.get(&msg_path(&kept, &delivered)).await.status, StatusCode::OK);
    let health = app.get("/health").await.body;
    assert_eq!(
        time(&health["oldestRecord"]),
        time(&delivered["timestamp"]),
        "the oldest kept: {health}"
    );

    // Past three days: the delivered message goes with its attempts; the
    // one still retrying stays. On PostgreSQL today's partition is wholly
    // past the window now: it is dropped and the retrying message carried over.
    pass(2 * DAY).await;
    let gone = msg_path(&kept, &delivered);
    wait_until_gone(&app, &gone).await;
    let attempts = app
        .get(&format!(
            "/api/v1/app/{kept}/attempt/msg/{}",
            delivered["id"].as_str().unwrap()
        ))
        .await;
    assert!(
        attempts.status == StatusCode::NOT_FOUND || ids(&attempts.body).is_empty(),
        "{}",
        attempts.body
    );
    let list = app.get(&format!("/api/v1/app/{kept}/msg")).await.body;
    assert!(ids(&list).is_empty(), "the list simply ends: {list}");
    assert_eq!(list["done"], true, "{list}");
    assert_eq!(
        app.get(&msg_path(&flaky, &retrying)).await.status,
        StatusCode::OK,
        "still being delivered"
    );
    app.wait_for_attempts(&retrying_attempts, |a| a.len() == 3).await;

    // Its last retry succeeds: then it goes at the next sweep.
    pass(2 * DAY).await;
    assert_eq!(flaky_receiver.wait_for(4, WAIT).await.len(), 4);
    wait_until_gone(&app, &msg_path(&flaky, &retrying)).await;
    let health = app.get("/health").await.body;
    assert!(health.get("oldestRecord").is_none(), "nothing is kept: {health}");

    let removed = |table: &str| format!("herald_history_removed_rows_total{{table=\"{table}\"}}");
    if partitioned {
        // The row sweep removed the one-day application's message and,
        // from the default partition, the one carried over; the delivered
        // one went with its day.
        assert_eq!(metric(&app, &removed("messages")).await, 2.0);
        assert_eq!(metric(&app, &removed("deliveries")).await, 2.0);
        assert_eq!(metric(&app, &removed("attempts")).await, 5.0);
        assert!(metric(&app, "herald_history_partitions_dropped_total").await >= 1.0);
        assert_eq!(
            metric(&app, "herald_history_partition_carried_messages_total").await,
            1.0
        );
        let health = app.get("/health").await.body;
        let oldest: chrono::NaiveDate = health["partitions"]["oldestDay"].as_str().unwrap().parse().unwrap();
        assert!(oldest > today, "today's partition is gone: {health}");
    } else {
        assert_eq!(metric(&app, &removed("messages")).await, 3.0);
        assert_eq!(metric(&app, &removed("deliveries")).await, 3.0);
        assert_eq!(metric(&app, &removed("attempts")).await, 6.0);
    }
    assert_eq!(metric(&app, "herald_oldest_message_age_seconds").await, 0.0);
}

/// Pausing tokio's time needs the single-threaded runtime.
mod paused_time {
    use super::*;

    #[tokio::test]
    async fn sqlite() {
        old_history_goes_once_nothing_is_left_to_send(Backend::Sqlite).await;
    }

    #[tokio::test]
    async fn postgres() {
        if let Some(backend) = Backend::postgres().await {
            old_history_goes_once_nothing_is_left_to_send(backend.clone()).await;
            if let Backend::Postgres(url) = backend {
                common::pg::drop_database(&url).await;
            }
        }
    }
}

/// An application may shorten the server's window, never lengthen it.
async fn an_application_window_longer_than_the_servers_is_refused(backend: Backend) {
    let app = spawn_app_with(&backend, |s| {
        s.history_retention = Some("30d".into());
        s.payload_retention = Some("7d".into());
    })
    .await;
    let refused = app
        .post("/api/v1/app", json!({"name": "Acme", "historyRetentionDays": 31}))
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.body);
    assert_eq!(
        refused.body["detail"][0]["loc"],
        json!(["body", "historyRetentionDays"])
    );
    let msg = refused.body["detail"][0]["msg"].as_str().unwrap();
    assert!(msg.contains("30"), "{msg}");

    let acme = app.create_app("Acme").await;
    let path = format!("/api/v1/app/{acme}");
    let refused = app.patch(&path, json!({"historyRetentionDays": 0})).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.body);
    assert_eq!(
        refused.body["detail"][0]["loc"],
        json!(["body", "historyRetentionDays"])
    );
    let shortened = app.patch(&path, json!({"historyRetentionDays": 30})).await;
    assert_eq!(shortened.status, StatusCode::OK, "{}", shortened.body);
    assert_eq!(app.get(&path).await.body["historyRetentionDays"], 30);
    let cleared = app.patch(&path, json!({"historyRetentionDays": null})).await;
    assert_eq!(cleared.body["historyRetentionDays"], Value::Null, "{}", cleared.body);
    assert_eq!(app.get("/health").await.body["historyRetention"], "30d");
}

on_both_backends!(an_application_window_longer_than_the_servers_is_refused);

/// Payloads are part of the message: keeping them longer than the message
/// is refused at start, with both settings named.
#[test]
fn payload_retention_longer_than_the_history_is_refused_at_start() {
    let mut settings = common::test_settings(&Backend::Sqlite, std::path::Path::new("/tmp/unused"));
    settings.payload_retention = Some("60d".into());
    settings.history_retention = Some("30d".into());
    let error = herald::Config::load(&settings, None).expect_err("refused").to_string();
    assert!(error.contains("HERALD_PAYLOAD_RETENTION"), "{error}");
    assert!(error.contains("HERALD_HISTORY_RETENTION"), "{error}");

    settings.payload_retention = Some("30d".into());
    assert!(herald::Config::load(&settings, None).is_ok(), "equal windows are fine");
}

/// A new SQLite file is made to give pages freed by the sweep back to the
/// file system (the sweep runs `PRAGMA incremental_vacuum` after each batch).
#[tokio::test]
async fn a_new_sqlite_file_shrinks_after_the_sweep() {
    use sqlx::Connection;
    let app = common::spawn_app(&Backend::Sqlite).await;
    // Answering means the file is made and migrated.
    app.create_app("Acme").await;
    let url = format!("sqlite://{}", app.data.path().join("herald.db").display());
    let mut db = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("a direct connection");
    let mode: i64 = sqlx::query_scalar("PRAGMA auto_vacuum")
        .fetch_one(&mut db)
        .await
        .expect("the pragma answers");
    assert_eq!(mode, 2, "INCREMENTAL");
}

/// PostgreSQL's daily partitions, through the store: a day past the window
/// goes whole, a message still being delivered is carried over and stays
/// until it ends, and two nodes upkeeping at once never collide.
mod partitions {
    use std::sync::Arc;

    use chrono::{DateTime, Days, NaiveDate, NaiveTime, TimeDelta, Utc};
    use common::records::{attempt, message};
    use herald::config::{Config, Settings};
    use herald::domain::ids::MessageId;
    use herald::domain::secret::{EndpointSecret, SecretKind};
    use herald::store::partitions::UPKEEP_LOCK;
    use herald::store::{
        Application, AttemptFilter, Endpoint, Message, MessageFilter, NextStep, Page, Store, StoreError, UpkeepPlan,
    };
    use sqlx::Connection;

    use super::*;

    async fn open(url: &str) -> Arc<dyn Store> {
        let backend = Backend::Postgres(url.to_owned());
        let settings = Settings {
            database_url: Some(url.to_owned()),
            secret_key: backend.secret_key(),
            ..Default::default()
        };
        let config = Config::load(&settings, None).unwrap();
        herald::store::open(&config, &Clock::system()).await.unwrap()
    }

    /// A store on a fresh PostgreSQL database, with its URL; none where
    /// no PostgreSQL answers.
    async fn fresh_store() -> Option<(String, Arc<dyn Store>)> {
        let Some(Backend::Postgres(url)) = Backend::postgres().await else {
            return None;
        };
        let store = open(&url).await;
        Some((url, store))
    }

    /// Closes `store` and drops its database.
    async fn finish(store: Arc<dyn Store>, url: &str) {
        store.close().await;
        common::pg::drop_database(url).await;
    }

    fn midnight(day: NaiveDate) -> DateTime<Utc> {
        day.and_time(NaiveTime::MIN).and_utc()
    }

    /// A message made at `at`, its id of that time.
    fn message_at(app: &Application, at: DateTime<Utc>, event_id: &str) -> Message {
        let id = MessageId::lowest_at(at).replace("0000000000000000", "00000000000000AA");
        Message {
            id: MessageId::parse(&id).unwrap(),
            created_at: at,
            ..message(&app.id, "ticket.created", Some(event_id))
        }
    }

    /// A message made now, with `event_id`.
    fn message_now(app: &Application, event_id: &str) -> Message {
        Message {
            id: MessageId::generate(),
            ..message_at(app, Utc::now(), event_id)
        }
    }

    /// Whether the message named by id or eventId is no longer found.
    async fn gone(store: &dyn Store, app: &Application, id_or_event_id: &str) -> bool {
        store.get_message(&app.id, id_or_event_id).await.unwrap().is_none()
    }

    async fn app_with_endpoint(store: &dyn Store) -> Application {
        let app = Application::new("Acme".into(), None, Utc::now());
        store.create_app(&app).await.unwrap();
        let secret = EndpointSecret::generate(SecretKind::StandardHmac);
        let ep = Endpoint::new(app.id.clone(), "https://example.com/hook".into(), secret, Utc::now());
        store.create_endpoint(&ep).await.unwrap();
        app
    }

    /// Publishes `msgs` and answers one attempt each: `failing` is retried
    /// an hour later, the others are delivered.
    async fn publish_and_answer(store: &dyn Store, msgs: &[&Message], failing: &Message) {
        for msg in msgs {
            assert_eq!(store.publish(msg).await.unwrap(), 1);
        }
        let jobs = store.claim_due(Utc::now(), 10, Duration::from_secs(30)).await.unwrap();
        assert_eq!(jobs.len(), msgs.len());
        for job in &jobs {
            let (ok, next) = if job.msg_id == failing.id {
                (false, NextStep::RetryAt(Utc::now() + TimeDelta::hours(1)))
            } else {
                (true, NextStep::Succeeded)
            };
            store.complete_attempt(job, &attempt(job, ok), next).await.unwrap();
        }
    }

    async fn attempts_of(store: &dyn Store, app: &Application, msg: &Message) -> usize {
        let filter = AttemptFilter {
            msg_id: Some(msg.id.clone()),
            ..Default::default()
        };
        store
            .list_attempts(&app.id, &filter, &Page::first(50))
            .await
            .unwrap()
            .len()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_day_past_the_window_goes_whole_and_what_is_still_sent_stays() {
        let Some((url, store)) = fresh_store().await else {
            return;
        };
        let today = Utc::now().date_naive();
        let old = today - Days::new(10);
        let plan = |drop_before| UpkeepPlan {
            first_day: old,
            last_day: old + Days::new(1),
            drop_before,
        };
        let made = store
            .upkeep_partitions(&plan(DateTime::<Utc>::MIN_UTC))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(made.created, vec![old, old + Days::new(1)]);

        let app = app_with_endpoint(store.as_ref()).await;
        let delivered = message_at(&app, midnight(old) + TimeDelta::hours(1), "delivered");
        let retrying = message_at(&app, midnight(old) + TimeDelta::hours(2), "retrying");
        let next_day = message_at(&app, midnight(old + Days::new(1)) + TimeDelta::hours(1), "next-day");
        publish_and_answer(store.as_ref(), &[&delivered, &retrying, &next_day], &retrying).await;

        // The old day ended more than the window ago; the next one did not.
        let upkeep = store
            .upkeep_partitions(&plan(midnight(old + Days::new(1)) + TimeDelta::hours(1)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(upkeep.dropped, vec![old], "{upkeep:?}");
        assert_eq!(upkeep.carried, 1, "{upkeep:?}");
        assert!(upkeep.errors.is_empty(), "{upkeep:?}");

        assert!(gone(store.as_ref(), &app, delivered.id.as_str()).await);
        assert!(gone(store.as_ref(), &app, "delivered").await);
        assert_eq!(attempts_of(store.as_ref(), &app, &delivered).await, 0);
        let listed = store
            .list_messages(&app.id, &MessageFilter::default(), &Page::first(50))
            .await
            .unwrap();
        let listed: Vec<&MessageId> = listed.iter().map(|m| &m.id).collect();
        assert_eq!(listed, vec![&retrying.id, &next_day.id], "the list simply ends");
        assert_eq!(attempts_of(store.as_ref(), &app, &retrying).await, 1);
        // The dropped message's eventId is free again; the kept one's is not.
        assert_eq!(store.publish(&message_now(&app, "delivered")).await.unwrap(), 1);
        let clash = store.publish(&message_now(&app, "retrying")).await.unwrap_err();
        assert!(matches!(clash, StoreError::Conflict(_)), "{clash:?}");

        // The carried-over message is still sent; once it ends, the row
        // sweep removes it from the default partition.
        let later = Utc::now() + TimeDelta::hours(2);
        let jobs = store.claim_due(later, 10, Duration::from_secs(30)).await.unwrap();
        let job = jobs
            .iter()
            .find(|j| j.msg_id == retrying.id)
            .expect("the retry comes due");
        store
            .complete_attempt(job, &attempt(job, true), NextStep::Succeeded)
            .await
            .unwrap();
        assert_eq!(attempts_of(store.as_ref(), &app, &retrying).await, 2);
        let removed = store
            .remove_old_messages(None, midnight(old + Days::new(1)), 100)
            .await
            .unwrap();
        assert_eq!((removed.messages, removed.deliveries, removed.attempts), (1, 1, 2));
        assert!(gone(store.as_ref(), &app, retrying.id.as_str()).await);
        finish(store, &url).await;
    }

    /// An upkeep stopped after detaching a day's deliveries (each table
    /// goes in a transaction of its own) leaves the rest to the next one,
    /// which carries the same messages over and drops the day.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_day_left_half_detached_is_finished_by_the_next_upkeep() {
        let Some((url, store)) = fresh_store().await else {
            return;
        };
        let old = Utc::now().date_naive() - Days::new(10);
        let plan = |drop_before| UpkeepPlan {
            first_day: old,
            last_day: old,
            drop_before,
        };
        store.upkeep_partitions(&plan(DateTime::<Utc>::MIN_UTC)).await.unwrap();
        let app = app_with_endpoint(store.as_ref()).await;
        let delivered = message_at(&app, midnight(old) + TimeDelta::hours(1), "delivered");
        let retrying = message_at(&app, midnight(old) + TimeDelta::hours(2), "retrying");
        publish_and_answer(store.as_ref(), &[&delivered, &retrying], &retrying).await;

        // What the first of the three steps commits: the deliveries
        // detached, the retrying message's carried over.
        let deliveries = format!("deliveries_p{}", old.format("%Y%m%d"));
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        let mut tx = conn.begin().await.unwrap();
        for sql in [
            format!("ALTER TABLE deliveries DETACH PARTITION {deliveries}"),
            format!("INSERT INTO deliveries SELECT * FROM {deliveries} WHERE status IN (1, 3, 4)"),
        ] {
            sqlx::query(&sql).execute(&mut *tx).await.unwrap();
        }
        tx.commit().await.unwrap();

        let upkeep = store
            .upkeep_partitions(&plan(midnight(old + Days::new(1))))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(upkeep.dropped, vec![old], "{upkeep:?}");
        assert_eq!(upkeep.carried, 1, "{upkeep:?}");
        assert!(upkeep.errors.is_empty(), "{upkeep:?}");
        assert!(gone(store.as_ref(), &app, delivered.id.as_str()).await);
        assert!(!gone(store.as_ref(), &app, retrying.id.as_str()).await);
        assert_eq!(attempts_of(store.as_ref(), &app, &retrying).await, 1);
        assert_eq!(
            store.publish(&message_now(&app, "delivered")).await.unwrap(),
            1,
            "its eventId is free"
        );
        let clash = store.publish(&message_now(&app, "retrying")).await.unwrap_err();
        assert!(matches!(clash, StoreError::Conflict(_)), "{clash:?}");
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_class WHERE relname LIKE '%_p' || $1")
            .bind(old.format("%Y%m%d").to_string())
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(left, 0, "none of the day's tables is left");
        conn.close().await.unwrap();
        finish(store, &url).await;
    }

    /// Today's partitions start empty, without statistics; the upkeep
    /// gathers them once enough was written, and not again until a tenth
    /// of the rows changed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_upkeep_gives_the_day_being_written_its_statistics() {
        let Some((url, store)) = fresh_store().await else {
            return;
        };
        let today = Utc::now().date_naive();
        let plan = UpkeepPlan {
            first_day: today,
            last_day: today,
            drop_before: DateTime::<Utc>::MIN_UTC,
        };
        let app = app_with_endpoint(store.as_ref()).await;
        for n in 0..100 {
            store.publish(&message_now(&app, &format!("ticket-{n}"))).await.unwrap();
        }
        let suffix = today.format("%Y%m%d");
        let deliveries = format!("deliveries_p{suffix}");
        let messages = format!("messages_p{suffix}");
        // PostgreSQL counts a session's writes once that session reports
        // them, up to a second later.
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let counted: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_user_tables WHERE relname = ANY($1) AND n_mod_since_analyze >= 100",
            )
            .bind(vec![deliveries.clone(), messages.clone()])
            .fetch_one(&mut conn)
            .await
            .unwrap();
            if counted == 2 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the writes are never counted");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let upkeep = store.upkeep_partitions(&plan).await.unwrap().unwrap();
        assert!(upkeep.analyzed.contains(&deliveries), "{upkeep:?}");
        assert!(upkeep.analyzed.contains(&messages), "{upkeep:?}");
        let known: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stats WHERE tablename = $1 AND attname = 'msg_id'")
                .bind(&deliveries)
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert_eq!(known, 1, "the planner knows the day's message ids");
        let again = store.upkeep_partitions(&plan).await.unwrap().unwrap();
        assert!(again.analyzed.is_empty(), "nothing changed since: {again:?}");
        conn.close().await.unwrap();
        finish(store, &url).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_nodes_upkeeping_at_once_never_collide() {
        let Some(Backend::Postgres(url)) = Backend::postgres().await else {
            return;
        };
        let (a, b) = (open(&url).await, open(&url).await);
        let today = Utc::now().date_naive();
        let plan = UpkeepPlan {
            first_day: today,
            last_day: today + Days::new(20),
            drop_before: DateTime::<Utc>::MIN_UTC,
        };
        let (x, y) = tokio::join!(a.upkeep_partitions(&plan), b.upkeep_partitions(&plan));
        let (x, y) = (x.unwrap().unwrap(), y.unwrap().unwrap());
        assert!(x.errors.is_empty() && y.errors.is_empty(), "{x:?} {y:?}");
        let mut created = [x.created, y.created].concat();
        created.sort();
        // The migration made today and three days ahead.
        let expected: Vec<NaiveDate> = (4..=20).map(|n| today + Days::new(n)).collect();
        assert_eq!(created, expected, "each day made once");

        // While another session holds the lock, an upkeep stands aside.
        let mut holder = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(UPKEEP_LOCK)
            .execute(&mut holder)
            .await
            .unwrap();
        let later = UpkeepPlan {
            last_day: today + Days::new(25),
            ..plan
        };
        let stood_aside = a.upkeep_partitions(&later).await.unwrap().unwrap();
        assert!(stood_aside.busy && stood_aside.created.is_empty(), "{stood_aside:?}");
        let released: bool = sqlx::query_scalar("SELECT pg_advisory_unlock($1)")
            .bind(UPKEEP_LOCK)
            .fetch_one(&mut holder)
            .await
            .unwrap();
        assert!(released);
        holder.close().await.unwrap();
        let done = b.upkeep_partitions(&later).await.unwrap().unwrap();
        assert_eq!(done.created.len(), 5, "{done:?}");
        a.close().await;
        b.close().await;
        common::pg::drop_database(&url).await;
    }
}
