//! Several nodes on one PostgreSQL: they share the work, survive the death of
//! one of them, and lose nothing when the database connection is cut.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::process::Node;
use common::{Backend, Receiver, TOKEN};
use reqwest::StatusCode;
use serde_json::json;
use tokio::sync::mpsc;

/// What happened to the publishes: accepted ids, and every refusal's status.
struct Published {
    accepted: Vec<String>,
    refusals: HashMap<String, usize>,
}

/// Publishes `total` messages from `publishers` concurrent tasks, spread over
/// `bases`; `on_accepted` sees the running count of accepted messages.
async fn publish(
    http: &reqwest::Client,
    bases: &[String],
    app_id: &str,
    total: usize,
    publishers: usize,
    mut on_accepted: impl FnMut(usize),
) -> Published {
    let next = Arc::new(AtomicUsize::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel::<Result<String, String>>();
    let mut tasks = Vec::new();
    for p in 0..publishers {
        let (http, base, app_id, tx, next) = (
            http.clone(),
            bases[p % bases.len()].clone(),
            app_id.to_owned(),
            tx.clone(),
            next.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    return;
                }
                let sent = http
                    .post(format!("{base}/api/v1/app/{app_id}/msg"))
                    .bearer_auth(TOKEN)
                    .json(&json!({"eventType": "ticket.created", "payload": {"n": n, "pad": "x".repeat(900)}}))
                    .send()
                    .await;
                let outcome = match sent {
                    Ok(resp) if resp.status() == StatusCode::ACCEPTED => {
                        let body: serde_json::Value = resp.json().await.unwrap_or_default();
                        Ok(body["id"].as_str().unwrap_or_default().to_owned())
                    }
                    Ok(resp) if resp.status() == StatusCode::SERVICE_UNAVAILABLE => {
                        let retry_after = resp.headers().contains_key("retry-after");
                        Err(format!("503 retry-after={retry_after}"))
                    }
                    Ok(resp) => Err(format!(
                        "{}: {}",
                        resp.status().as_u16(),
                        resp.text().await.unwrap_or_default()
                    )),
                    Err(_) => Err("connection failed".to_owned()),
                };
                let _ = tx.send(outcome);
            }
        }));
    }
    drop(tx);
    let mut out = Published {
        accepted: Vec::new(),
        refusals: HashMap::new(),
    };
    while let Some(outcome) = rx.recv().await {
        match outcome {
            Ok(id) => {
                out.accepted.push(id);
                on_accepted(out.accepted.len());
            }
            Err(why) => *out.refusals.entry(why).or_default() += 1,
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    out
}

/// Waits until every id has reached the receiver; answers receipts per id.
async fn wait_until_all_delivered(receiver: &Receiver, ids: &[String], limit: Duration) -> HashMap<String, usize> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for r in receiver.received() {
            *counts.entry(r.header("webhook-id").to_owned()).or_default() += 1;
        }
        let missing = ids.iter().filter(|id| !counts.contains_key(*id)).count();
        if missing == 0 {
            return counts;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{missing} of {} accepted messages never arrived",
            ids.len()
        );
        receiver.next_arrival(Duration::from_millis(200)).await;
    }
}

const MAX_IN_FLIGHT: usize = 16;
/// How long after its death a killed node's last writes may still be read
/// by the receiver: bytes already in the loopback socket, not yet handled.
const SENT_BEFORE_DEATH: Duration = Duration::from_millis(50);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_the_work_and_survive_the_death_of_one() {
    let Some(Backend::Postgres(db)) = Backend::postgres().await else {
        return;
    };
    let receiver = Receiver::slow(Duration::from_millis(5)).await;
    let in_flight = MAX_IN_FLIGHT.to_string();
    let env = [
        ("HERALD_REQUEST_TIMEOUT", "2s"),
        ("HERALD_LEASE_DURATION", "3s"),
        ("HERALD_MAX_CONCURRENT_DELIVERIES", in_flight.as_str()),
    ];
    let nodes: Vec<Node> = (0..3).map(|_| Node::start(&db, &env)).collect();
    let mut victim = nodes.into_iter();
    let (survivor_a, survivor_b, mut doomed) = (victim.next().unwrap(), victim.next().unwrap(), victim.next().unwrap());
    let http = reqwest::Client::new();
    let app_id = common::create_app_and_endpoint(&http, &survivor_a.base, &receiver).await;

    // Publish through the survivors; the doomed node delivers until it dies.
    let bases = vec![survivor_a.base.clone(), survivor_b.base.clone()];
    let mut killed_at = None;
    let mut received_at_kill = 0;
    let published = publish(&http, &bases, &app_id, 5000, 32, |accepted| {
        if accepted == 2500 && killed_at.is_none() {
            doomed.kill_9();
            killed_at = Some(tokio::time::Instant::now());
            received_at_kill = receiver.count();
        }
    })
    .await;
    assert_eq!(published.accepted.len(), 5000, "refused: {:?}", published.refusals);
    let killed_at = killed_at.expect("the node was killed");

    let counts = wait_until_all_delivered(&receiver, &published.accepted, Duration::from_secs(120)).await;
    let duplicated: Vec<&String> = counts.iter().filter(|(_, n)| **n > 1).map(|(id, _)| id).collect();
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    common::report(&format!(
        "3 nodes, 5000 messages, node killed after 2500 accepted ({received_at_kill} received by then): \
         all delivered, {duplicates} duplicates"
    ));
    // A duplicate can only be a delivery the dead node had in flight: its first
    // copy arrived before the kill, and there were at most MAX_IN_FLIGHT of them.
    assert!(
        duplicates <= MAX_IN_FLIGHT,
        "{duplicates} duplicates; the dead node had at most {MAX_IN_FLIGHT} in flight"
    );
    for id in duplicated {
        let first = receiver
            .received()
            .into_iter()
            .find(|r| r.header("webhook-id") == id)
            .unwrap();
        // Its first copy had reached the receiver by the kill: what the node
        // wrote before it died can still take a moment to be read, and the
        // receiver answers 5 ms later, so arrival is what counts.
        assert!(
            first.began <= killed_at + SENT_BEFORE_DEATH,
            "{id} was sent twice, but not because of the kill"
        );
    }
    drop((survivor_a, survivor_b));
    common::pg::drop_database(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutting_the_database_connections_under_load_loses_nothing() {
    let Some(Backend::Postgres(db)) = Backend::postgres().await else {
        return;
    };
    let receiver = Receiver::start().await;
    let node = Node::start(
        &db,
        &[("HERALD_REQUEST_TIMEOUT", "2s"), ("HERALD_LEASE_DURATION", "3s")],
    );
    let http = reqwest::Client::new();
    let app_id = common::create_app_and_endpoint(&http, &node.base, &receiver).await;

    // Every 200 accepted messages, every connection Herald holds is terminated.
    let db_name = url::Url::parse(&db).unwrap().path().trim_start_matches('/').to_owned();
    let (cut_tx, mut cut_rx) = mpsc::unbounded_channel::<()>();
    let cutter = tokio::spawn(async move {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&common::pg::admin_url()).await.unwrap();
        let mut cuts = 0;
        while cut_rx.recv().await.is_some() {
            let killed: Vec<bool> = sqlx::query_scalar(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND application_name = 'herald'",
            )
            .bind(&db_name)
            .fetch_all(&mut admin)
            .await
            .unwrap();
            cuts += killed.len();
        }
        cuts
    });
    let published = publish(&http, std::slice::from_ref(&node.base), &app_id, 1000, 16, |accepted| {
        if accepted % 200 == 0 {
            let _ = cut_tx.send(());
        }
    })
    .await;
    drop(cut_tx);
    let connections_cut = cutter.await.unwrap();
    assert!(connections_cut > 0, "no connection was cut: the test proved nothing");

    // Refusals are allowed, but only as 503 with Retry-After: never a 500, never a silent loss.
    for why in published.refusals.keys() {
        assert_eq!(why, "503 retry-after=true", "a publish was refused with {why}");
    }
    let counts = wait_until_all_delivered(&receiver, &published.accepted, Duration::from_secs(60)).await;
    common::report(&format!(
        "connection cuts: {connections_cut} connections terminated; {} accepted, {} answered 503; all delivered, {} duplicates",
        published.accepted.len(),
        published.refusals.values().sum::<usize>(),
        counts.values().map(|n| n - 1).sum::<usize>()
    ));
    drop(node);
    common::pg::drop_database(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_and_worker_nodes_scale_apart() {
    let Some(Backend::Postgres(db)) = Backend::postgres().await else {
        return;
    };
    let receiver = Receiver::start().await;
    let api = Node::start(&db, &[("HERALD_ROLE", "api")]);
    let worker = Node::start(&db, &[("HERALD_ROLE", "worker")]);
    let http = reqwest::Client::new();

    // The worker serves health checks only.
    let health = http.get(format!("{}/health", worker.base)).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let api_on_worker = http
        .get(format!("{}/api/v1/app", worker.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(api_on_worker.status(), StatusCode::NOT_FOUND);

    // Published on the API node, delivered by the worker, woken by NOTIFY.
    let app_id = common::create_app_and_endpoint(&http, &api.base, &receiver).await;
    let published = publish(&http, std::slice::from_ref(&api.base), &app_id, 20, 4, |_| {}).await;
    assert_eq!(published.accepted.len(), 20);
    let started = tokio::time::Instant::now();
    wait_until_all_delivered(&receiver, &published.accepted, Duration::from_secs(20)).await;
    // Well under the 30 s idle check: the worker was woken, not polling.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    drop((api, worker));
    common::pg::drop_database(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_before_its_database_waits_for_it() {
    let Some(Backend::Postgres(db)) = Backend::postgres().await else {
        return;
    };
    // A port where nothing listens yet; later a proxy to PostgreSQL opens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut via_proxy = url::Url::parse(&db).unwrap();
    via_proxy.set_port(Some(port)).unwrap();
    let mut node = Node::spawn(via_proxy.as_str(), &[]);
    node.wait_for_log("the database is unreachable; retrying");

    let real = url::Url::parse(&db).unwrap();
    let upstream = format!("{}:{}", real.host_str().unwrap(), real.port().unwrap_or(5432));
    let proxy = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = proxy.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    let node = tokio::task::spawn_blocking(move || {
        node.wait_until_listening();
        node
    })
    .await
    .unwrap();
    let health = reqwest::get(format!("{}/health", node.base)).await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    drop(node);
    common::pg::drop_database(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_keep_a_fifo_endpoint_in_order_one_request_at_a_time() {
    use rand::{Rng, SeedableRng};
    let Some(Backend::Postgres(db)) = Backend::postgres().await else {
        return;
    };
    // Both nodes deliver; 30% of answers are 500s, from a seeded generator.
    let rng = std::sync::Mutex::new(rand::rngs::StdRng::seed_from_u64(11));
    let receiver = common::ordered::OrderedReceiver::start(Duration::from_millis(15), move |_| {
        if rng.lock().expect("lock").gen_bool(0.3) {
            500
        } else {
            200
        }
    })
    .await;
    let nodes = [Node::start(&db, &[]), Node::start(&db, &[])];
    let http = reqwest::Client::new();
    let app_id = common::create_app_and_endpoint_with(
        &http,
        &nodes[0].base,
        json!({"name": "Acme"}),
        json!({"url": receiver.url, "ordering": "fifo"}),
    )
    .await;

    // Published one after the other, through either node in turn.
    const TOTAL: u64 = 40;
    for n in 0..TOTAL {
        let node = &nodes[(n % 2) as usize];
        let sent = http
            .post(format!("{}/api/v1/app/{app_id}/msg", node.base))
            .bearer_auth(TOKEN)
            .json(&json!({"eventType": "ticket.created", "payload": {"n": n}}))
            .send()
            .await
            .unwrap();
        assert_eq!(sent.status(), StatusCode::ACCEPTED);
    }
    // The nodes' schedule: five attempts in all.
    const ATTEMPTS: usize = 5;
    let log = receiver
        .wait_until(Duration::from_secs(90), |log| {
            (0..TOTAL).all(|k| {
                let mine: Vec<_> = log.iter().filter(|r| r.n == k).collect();
                mine.iter().any(|r| r.status == 200) || mine.len() >= ATTEMPTS
            })
        })
        .await;
    let (delivered, exhausted) = common::ordered::assert_fifo(&log, TOTAL, ATTEMPTS);
    assert_eq!(receiver.most_in_flight(), 1, "two requests were in flight at once");
    assert!(
        log.iter().filter(|r| r.status != 200).count() > 5,
        "too few failures to prove much"
    );
    common::report(&format!(
        "two nodes, one FIFO endpoint: {} requests, {delivered} delivered in order, {exhausted} exhausted, never two at once",
        log.len()
    ));
    drop(nodes);
    common::pg::drop_database(&db).await;
}
