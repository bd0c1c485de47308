//! Secret key rotation: every stored secret sealed again under a new key
//! while Herald runs. The API's `/api/v1/keys` and `herald keys …` come
//! here.
//!
//! A rotation is a series of steps, each safe to repeat and to interrupt:
//! 1. every node seen lately must hold the new key (nodes report their key
//!    ring every `HERALD_KEY_RELOAD_INTERVAL`), else the step is refused;
//! 2. the database's sealing key becomes the new key (one compare-and-set),
//!    and the step waits until every node seen lately seals with it;
//! 3. each step then seals one batch of secrets again, each only if it is
//!    unchanged since read, and says how many remain under other keys.
//!
//! Nothing is lost if it stops anywhere: old values open with the old key,
//! which every node keeps until the rotation says `done`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::error::{ServiceError, ServiceResult};
use crate::domain::sealing::{SealedBy, key_id};
use crate::store::keys::{KEY_CHECK_SETTING, SECRET_SETTINGS, setting_context};
use crate::store::{KeyHolder, Store, StoreError};

const DEFAULT_BATCH: u32 = 500;
const MAX_BATCH: u32 = 10_000;

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeysOut {
    /// The key the database seals with (its id).
    pub sealing: String,
    /// The keys the node that answers holds, the first being the one a
    /// rotation moves to by default.
    pub keys: Vec<String>,
    /// Stored endpoint secrets by the key that sealed them (`plain`: stored
    /// before sealing existed).
    pub secrets: BTreeMap<String, u64>,
    /// Nodes that reported their keys in the last day, most recent first.
    pub nodes: Vec<NodeOut>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeOut {
    /// Host, process id and a start tag.
    pub node: String,
    pub keys: Vec<String>,
    pub sealing: String,
    pub seen_at: DateTime<Utc>,
    /// Seen within three reload intervals: a rotation waits for it.
    pub live: bool,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RotateIn {
    /// The key to rotate to (its id); default: the first key of the
    /// answering node's key file.
    pub key: Option<String>,
    /// Endpoints sealed again by this step (1 to 10,000; default 500).
    pub batch_size: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RotateOut {
    /// `waiting` (nodes still seal with the old key: ask again shortly),
    /// `resealing` (ask again for the next batch) or `done` (every secret
    /// is under `key`: the old key may be removed from every node).
    pub state: String,
    /// The key rotated to.
    pub key: String,
    /// Endpoints sealed again by this step.
    pub resealed: u64,
    /// Stored secrets still under another key.
    pub remaining: u64,
    /// Live nodes this step waits for.
    pub waiting_for: Vec<String>,
}

/// What is sealed under which key, and what every node holds.
pub async fn status(state: &AppState) -> ServiceResult<KeysOut> {
    let store = state.store.as_ref();
    let sealer = store.sealer();
    let now = state.clock.now();
    let secrets = store
        .secrets_by_key()
        .await?
        .into_iter()
        .map(|(by, n)| (label(store, &by), n))
        .fold(BTreeMap::new(), |mut counts, (key, n)| {
            *counts.entry(key).or_insert(0) += n;
            counts
        });
    let nodes = store
        .key_holders()
        .await?
        .into_iter()
        .map(|h| NodeOut {
            live: is_live(state, &h, now),
            node: h.node,
            keys: h.key_ids,
            sealing: h.sealing,
            seen_at: h.seen_at,
        })
        .collect();
    Ok(KeysOut {
        sealing: sealing_id(store).await?,
        keys: sealer.key_ids(),
        secrets,
        nodes,
    })
}

/// One step of a rotation to `input.key` (see the module's text).
pub async fn rotate(state: &AppState, input: RotateIn) -> ServiceResult<RotateOut> {
    let store = state.store.as_ref();
    let sealer = store.sealer();
    let batch = input.batch_size.unwrap_or(DEFAULT_BATCH);
    if !(1..=MAX_BATCH).contains(&batch) {
        return Err(ServiceError::field(
            &["body", "batchSize"],
            format!("must be between 1 and {MAX_BATCH}"),
        ));
    }
    let target = match input.key {
        Some(key) => key,
        None => sealer.key_ids().into_iter().next().unwrap_or_default(),
    };
    let Some(target_check) = sealer.check_of(&target) else {
        return Err(ServiceError::field(
            &["body", "key"],
            format!(
                "this node holds no key {target}; it holds {} (add the new key to every node's key file first)",
                sealer.key_ids().join(", ")
            ),
        ));
    };
    let now = state.clock.now();
    let live: Vec<KeyHolder> = store
        .key_holders()
        .await?
        .into_iter()
        .filter(|h| is_live(state, h, now))
        .collect();
    let current = store.get_setting(KEY_CHECK_SETTING).await?.unwrap_or_default();
    if current != target_check {
        let lacking: Vec<&str> = live
            .iter()
            .filter(|h| !h.key_ids.contains(&target))
            .map(|h| h.node.as_str())
            .collect();
        if !lacking.is_empty() {
            return Err(ServiceError::Conflict(format!(
                "not every node holds key {target} yet: {} (add it to their key files; they read them every {})",
                lacking.join(", "),
                humantime::format_duration(state.config.key_reload_interval)
            )));
        }
        // Another node's step may have switched it first: either way it is the target now.
        store
            .replace_setting(KEY_CHECK_SETTING, &current, &target_check)
            .await?;
        tracing::info!(from = %key_id(&current), to = %target, "the database now seals secrets with the new key");
    }
    sealer.seal_with(&target_check);
    let waiting_for: Vec<String> = live
        .iter()
        .filter(|h| h.sealing != target)
        .map(|h| h.node.clone())
        .collect();
    if !waiting_for.is_empty() {
        let remaining = remaining(store, &target).await?;
        return Ok(RotateOut {
            state: "waiting".to_owned(),
            key: target,
            resealed: 0,
            remaining,
            waiting_for,
        });
    }
    reseal_settings(store).await?;
    let resealed = store.reseal_secrets(batch).await.map_err(refusal)?;
    let remaining = remaining(store, &target).await?;
    Ok(RotateOut {
        state: if remaining == 0 { "done" } else { "resealing" }.to_owned(),
        key: target,
        resealed,
        remaining,
        waiting_for,
    })
}

/// A secret that no key of this node opens stops the rotation, named.
fn refusal(e: StoreError) -> ServiceError {
    match e {
        StoreError::Corrupt(reason) | StoreError::Key(reason) => ServiceError::Conflict(reason),
        other => other.into(),
    }
}

async fn reseal_settings(store: &dyn Store) -> ServiceResult<()> {
    let sealer = store.sealer();
    let prefix = sealer.sealing_prefix();
    for name in SECRET_SETTINGS {
        let Some(stored) = store.get_setting(name).await? else {
            continue;
        };
        if stored.starts_with(&prefix) {
            continue;
        }
        let context = setting_context(name);
        let plain = sealer
            .open(&context, &stored)
            .map_err(|e| ServiceError::Conflict(format!("the setting {name} {e}")))?;
        store
            .replace_setting(name, &stored, &sealer.seal(&context, &plain))
            .await?;
    }
    Ok(())
}

/// Stored secrets not under `target`.
async fn remaining(store: &dyn Store, target: &str) -> ServiceResult<u64> {
    let first = store.sealer().first_key_id();
    let under_target = |by: &SealedBy| match by {
        SealedBy::Key(id) => id == target,
        SealedBy::FirstKey => first.as_deref() == Some(target),
        SealedBy::Plain => false,
    };
    let mut left: u64 = store
        .secrets_by_key()
        .await?
        .into_iter()
        .filter(|(by, _)| !under_target(by))
        .map(|(_, n)| n)
        .sum();
    for name in SECRET_SETTINGS {
        if let Some(stored) = store.get_setting(name).await?
            && !under_target(&SealedBy::of(&stored))
        {
            left += 1;
        }
    }
    Ok(left)
}

async fn sealing_id(store: &dyn Store) -> ServiceResult<String> {
    Ok(key_id(&store.get_setting(KEY_CHECK_SETTING).await?.unwrap_or_default()))
}

fn label(store: &dyn Store, by: &SealedBy) -> String {
    match by {
        SealedBy::Plain => "plain".to_owned(),
        SealedBy::FirstKey => store.sealer().first_key_id().unwrap_or_else(|| "v1".to_owned()),
        SealedBy::Key(id) => id.clone(),
    }
}

/// Seen within three reload intervals (and two seconds for slow writes).
fn is_live(state: &AppState, holder: &KeyHolder, now: DateTime<Utc>) -> bool {
    let window = state.config.key_reload_interval * 3 + std::time::Duration::from_secs(2);
    chrono::Duration::from_std(window).is_ok_and(|w| holder.seen_at >= now - w)
}
