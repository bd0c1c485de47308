//! The soak's publisher: messages at a steady rate to a target's nodes in
//! turn, each with its own eventId. A publish that gets no answer (a node
//! killed, the database down) or a 503 (a full disk) is sent again, to the
//! next node, as a product would; a 409 on the eventId means an earlier try
//! was accepted. What was never answered is looked up by eventId at the end.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// What became of the publishes of one target.
#[derive(Debug, Default, Serialize)]
pub struct Published {
    /// Seqs the API accepted (202, or 409 on a retry of an accepted one).
    #[serde(skip)]
    pub accepted: BTreeSet<u64>,
    pub accepted_count: u64,
    /// Answered 409 on a retry: an earlier try had been accepted.
    pub accepted_on_retry: u64,
    /// Never answered before the end, then found by eventId.
    pub found_at_end: u64,
    /// Never answered, and not found by eventId: not accepted.
    pub not_accepted: u64,
    /// Refused for good (4xx other than 409 and 429): a failure.
    pub rejected: BTreeMap<String, u64>,
    /// Tries sent again, by reason ("503", "connection", "timeout"…).
    pub retried: BTreeMap<String, u64>,
    /// Publishes started.
    pub attempted: u64,
    /// Publishes the pace could not start on time (all publishers busy).
    pub behind_pace: u64,
}

pub struct Publisher {
    pub http: reqwest::Client,
    pub nodes: Vec<String>,
    pub token: String,
    pub app_id: String,
    pub target: String,
    pub published: Mutex<Published>,
    unresolved: Mutex<BTreeSet<u64>>,
    next: AtomicU64,
}

fn event_id(target: &str, seq: u64) -> String {
    format!("soak-{target}-{seq}")
}

impl Publisher {
    pub fn new(http: reqwest::Client, nodes: Vec<String>, token: String, app_id: String, target: &str) -> Arc<Self> {
        Arc::new(Self {
            http,
            nodes,
            token,
            app_id,
            target: target.to_owned(),
            published: Mutex::new(Published::default()),
            unresolved: Mutex::new(BTreeSet::new()),
            next: AtomicU64::new(0),
        })
    }

    fn note(&self, f: impl FnOnce(&mut Published)) {
        if let Ok(mut p) = self.published.lock() {
            f(&mut p);
        }
    }

    fn retried(&self, reason: String) {
        self.note(|p| *p.retried.entry(reason).or_default() += 1);
    }

    /// Publishes `rate` messages a second until `stop`; tries still
    /// unanswered are abandoned at `give_up`.
    pub async fn run(
        self: Arc<Self>,
        rate: f64,
        concurrency: usize,
        stop: CancellationToken,
        give_up: CancellationToken,
    ) {
        let permits = Arc::new(Semaphore::new(concurrency));
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.cancelled() => break,
            }
            let permit = match permits.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    self.note(|p| p.behind_pace += 1);
                    continue;
                }
            };
            let seq = self.next.fetch_add(1, Ordering::Relaxed);
            self.note(|p| p.attempted += 1);
            let (me, give_up) = (self.clone(), give_up.clone());
            tasks.spawn(async move {
                me.publish(seq, &give_up).await;
                drop(permit);
            });
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
    }

    async fn publish(&self, seq: u64, give_up: &CancellationToken) {
        let body = json!({
            "eventType": "soak.event",
            "eventId": event_id(&self.target, seq),
            "payload": {"seq": seq, "target": self.target},
        });
        let path = format!("/api/v1/app/{}/msg", self.app_id);
        let mut attempt = 0usize;
        loop {
            let node = &self.nodes[(seq as usize + attempt) % self.nodes.len()];
            attempt += 1;
            let answer = self
                .http
                .post(format!("{node}{path}"))
                .bearer_auth(&self.token)
                .timeout(Duration::from_secs(10))
                .json(&body)
                .send()
                .await;
            let reason = match answer {
                Ok(r) if r.status().is_success() => {
                    self.note(|p| {
                        p.accepted.insert(seq);
                    });
                    return;
                }
                Ok(r) if r.status().as_u16() == 409 => {
                    self.note(|p| {
                        p.accepted.insert(seq);
                        p.accepted_on_retry += 1;
                    });
                    return;
                }
                Ok(r) if r.status().is_client_error() && r.status().as_u16() != 429 => {
                    let status = r.status().as_u16();
                    let text = r.text().await.unwrap_or_default();
                    let key = format!("{status} {}", text.chars().take(120).collect::<String>());
                    self.note(|p| *p.rejected.entry(key).or_default() += 1);
                    return;
                }
                Ok(r) => r.status().as_u16().to_string(),
                Err(e) if e.is_timeout() => "timeout".to_owned(),
                Err(e) if e.is_connect() => "connection refused".to_owned(),
                Err(_) => "connection lost".to_owned(),
            };
            self.retried(reason);
            // The answer may have been lost after the message was stored:
            // the next try finds out (409).
            if let Ok(mut u) = self.unresolved.lock() {
                u.insert(seq);
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
                () = give_up.cancelled() => return,
            }
            if let Ok(mut u) = self.unresolved.lock() {
                u.remove(&seq);
            }
        }
    }

    /// Looks up, by eventId, each publish abandoned without an answer.
    pub async fn resolve(&self) {
        let pending: Vec<u64> = self
            .unresolved
            .lock()
            .map(|u| u.iter().copied().collect())
            .unwrap_or_default();
        for seq in pending {
            let mut found = None;
            for node in &self.nodes {
                let url = format!("{node}/api/v1/app/{}/msg/{}", self.app_id, event_id(&self.target, seq));
                match self.http.get(url).bearer_auth(&self.token).send().await {
                    Ok(r) if r.status().is_success() => found = Some(true),
                    Ok(r) if r.status().as_u16() == 404 => found = Some(false),
                    _ => continue,
                }
                break;
            }
            self.note(|p| match found {
                Some(true) => {
                    p.accepted.insert(seq);
                    p.found_at_end += 1;
                }
                _ => p.not_accepted += 1,
            });
        }
        self.note(|p| p.accepted_count = p.accepted.len() as u64);
    }
}
