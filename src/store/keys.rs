//! The node's secret keys: loaded (or made) at start, checked against the
//! database, used to seal what was stored before sealing existed, and read
//! again while the node runs, so a key rotation reaches every node.
//!
//! The database decides which key seals: the setting `secret_key_check`
//! holds that key's fingerprint. A node holds a ring of keys (its key file,
//! one a line, or `HERALD_SECRET_KEY`, comma-separated); it seals with the
//! database's key and opens with any it holds. Each node reports what it
//! holds in `key_holders`, so a rotation can wait until every node has the
//! new key.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{KeyHolder, Store, StoreError, StoreResult};
use crate::config::SecretKeySource;
use crate::domain::clock::Clock;
use crate::domain::sealing::{SealedBy, Sealer, SecretKey, is_sealed, key_id};

/// Beside the data, the fingerprint of the key that seals.
pub const KEY_CHECK_SETTING: &str = "secret_key_check";
/// The fingerprint of the database's first key: `sealed:v1:` values are under it.
const FIRST_KEY_SETTING: &str = "secret_key_first";
/// Settings that hold secrets, sealed like endpoint secrets.
pub const SECRET_SETTINGS: &[&str] = &["grant_signing_key"];

/// The sealer for `source`. A missing key file is made with a fresh key,
/// readable by its owner only, and Herald says so: whoever runs Herald must
/// back it up, since sealed secrets cannot be read without it.
pub fn sealer(source: &SecretKeySource) -> StoreResult<Sealer> {
    let keys = match source {
        SecretKeySource::Keys(keys) => keys.clone(),
        SecretKeySource::File(path) => read_or_create(path)?,
    };
    Ok(Sealer::with_keys(&keys))
}

fn read_or_create(path: &Path) -> StoreResult<Vec<SecretKey>> {
    match read(path) {
        Err(StoreError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => create(path).map(|key| vec![key]),
        other => other,
    }
}

/// The keys in a key file: one a line; blank lines and `#` comments skipped.
fn read(path: &Path) -> StoreResult<Vec<SecretKey>> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => StoreError::Io(e),
        _ => StoreError::Key(format!("cannot read the secret key file {}: {e}", path.display())),
    })?;
    SecretKey::parse_ring(&text)
        .map_err(|e| StoreError::Key(format!("the secret key file {} {e} (one key a line)", path.display())))
}

fn create(path: &Path) -> StoreResult<SecretKey> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let key = SecretKey::generate();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = match options.open(path) {
        Ok(file) => file,
        // Another process made it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return read(path)?
                .into_iter()
                .next()
                .ok_or_else(|| StoreError::Key(format!("{} holds no key", path.display())));
        }
        Err(e) => return Err(StoreError::Key(format!("cannot create {}: {e}", path.display()))),
    };
    writeln!(file, "{}", key.to_base64())?;
    file.sync_all()?;
    tracing::warn!(
        file = %path.display(),
        "made a new secret key to seal endpoint secrets; back this file up (without it they cannot be read) \
         and give every node of this database the same key (HERALD_SECRET_KEY or HERALD_SECRET_KEY_FILE)"
    );
    Ok(key)
}

/// Binds the database to the first key of the ring on first start; later,
/// seals with the key the database names, and refuses to start without it,
/// or while any secret is sealed under a key this node does not hold. Then
/// seals secrets stored before sealing existed.
pub async fn adopt(store: &dyn Store) -> StoreResult<()> {
    let sealer = store.sealer();
    store
        .put_setting_if_absent(KEY_CHECK_SETTING, &sealer.check_value())
        .await?;
    let check = store.get_setting(KEY_CHECK_SETTING).await?.unwrap_or_default();
    if !sealer.seal_with(&check) {
        return Err(StoreError::Key(format!(
            "this node's secret key is not the key this database's secrets were sealed with (the database \
             seals with key {}; this node holds {}); give it the same HERALD_SECRET_KEY or key file as the \
             other nodes",
            key_id(&check),
            sealer.key_ids().join(", ")
        )));
    }
    // Until now there was one key per database: the one that seals names `sealed:v1:` values.
    store.put_setting_if_absent(FIRST_KEY_SETTING, &check).await?;
    if let Some(first) = store.get_setting(FIRST_KEY_SETTING).await? {
        sealer.set_first_key(&first);
    }
    let sealed = store.seal_plain_secrets().await?;
    for name in SECRET_SETTINGS {
        if let Some(value) = store.get_setting(name).await?
            && !is_sealed(&value)
        {
            let sealed_value = sealer.seal(&setting_context(name), &value);
            store.replace_setting(name, &value, &sealed_value).await?;
        }
    }
    if sealed > 0 {
        tracing::info!(
            endpoints = sealed,
            "sealed endpoint secrets stored before sealing existed"
        );
    }
    let missing = missing_keys(store).await?;
    if !missing.is_empty() {
        return Err(StoreError::Key(format!(
            "{}; put the key back in this node's key file (HERALD_SECRET_KEY_FILE or HERALD_SECRET_KEY), \
             finish `herald keys rotate`, and only then remove it",
            missing.join("; ")
        )));
    }
    Ok(())
}

/// What is sealed under a key this node does not hold, said per key.
pub async fn missing_keys(store: &dyn Store) -> StoreResult<Vec<String>> {
    let sealer = store.sealer();
    let held = |by: &SealedBy| match by {
        SealedBy::Plain => true,
        SealedBy::FirstKey => sealer.first_key_id().is_none_or(|id| sealer.holds(&id)),
        SealedBy::Key(id) => sealer.holds(id),
    };
    let name = |by: &SealedBy| match by {
        SealedBy::Key(id) => id.clone(),
        _ => sealer.first_key_id().unwrap_or_default(),
    };
    let mut missing: Vec<String> = store
        .secrets_by_key()
        .await?
        .into_iter()
        .filter(|(by, _)| !held(by))
        .map(|(by, n)| {
            format!(
                "{n} endpoint secrets are sealed under key {}, which this node does not hold",
                name(&by)
            )
        })
        .collect();
    for setting in SECRET_SETTINGS {
        if let Some(value) = store.get_setting(setting).await? {
            let by = SealedBy::of(&value);
            if !held(&by) {
                missing.push(format!(
                    "the setting {setting} is sealed under key {}, which this node does not hold",
                    name(&by)
                ));
            }
        }
    }
    Ok(missing)
}

pub fn setting_context(name: &str) -> String {
    format!("setting:{name}")
}

/// This node's name in `key_holders`: its host, process and start.
pub fn node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".to_owned());
    let start = ulid::Ulid::new().to_string();
    format!("{host}/{}/{}", std::process::id(), &start[start.len() - 6..])
}

/// Reads the key file again (when keys come from one), follows the
/// database's choice of sealing key, and reports this node's ring.
pub async fn refresh(store: &dyn Store, source: &SecretKeySource, node: &str, clock: &Clock) -> StoreResult<()> {
    let sealer = store.sealer();
    if let SecretKeySource::File(path) = source {
        let keys = read(path)?;
        if !sealer.install(&keys) {
            return Err(StoreError::Key(format!(
                "the key file {} no longer holds key {}, which this node seals with; keeping the keys read before",
                path.display(),
                sealer.sealing_id()
            )));
        }
    }
    if let Some(check) = store.get_setting(KEY_CHECK_SETTING).await?
        && !sealer.seal_with(&check)
    {
        return Err(StoreError::Key(format!(
            "the database now seals with key {}, which this node does not hold; add it to its key file",
            key_id(&check)
        )));
    }
    store
        .record_key_holder(&KeyHolder {
            node: node.to_owned(),
            key_ids: sealer.key_ids(),
            sealing: sealer.sealing_id(),
            seen_at: clock.now(),
        })
        .await
}

/// Refreshes every `interval` until `shutdown`; a failure is logged (once
/// until it changes) and the node keeps the keys it has.
pub async fn watch(
    store: Arc<dyn Store>,
    source: SecretKeySource,
    interval: Duration,
    clock: Clock,
    shutdown: CancellationToken,
) {
    let node = node_name();
    let mut last_error = None;
    loop {
        match refresh(store.as_ref(), &source, &node, &clock).await {
            Ok(()) => last_error = None,
            Err(e) => {
                let text = e.to_string();
                if last_error.as_ref() != Some(&text) {
                    tracing::error!(error = %text, "cannot refresh the secret keys");
                    last_error = Some(text);
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = shutdown.cancelled() => return,
        }
    }
}
