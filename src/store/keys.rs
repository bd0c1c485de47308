//! The node's secret key: loaded (or made) at start, checked against the
//! database, and used to seal what was stored before sealing existed.

use std::io::Write;
use std::path::Path;

use super::{Store, StoreError, StoreResult};
use crate::config::SecretKeySource;
use crate::domain::sealing::{Sealer, SecretKey, is_sealed};

/// Beside the data, a fingerprint of the key that sealed it.
const KEY_CHECK_SETTING: &str = "secret_key_check";
/// Settings that hold secrets, sealed like endpoint secrets.
pub const SECRET_SETTINGS: &[&str] = &["grant_signing_key"];

/// The sealer for `source`. A missing key file is made with a fresh key,
/// readable by its owner only, and Herald says so: whoever runs Herald must
/// back it up, since sealed secrets cannot be read without it.
pub fn sealer(source: &SecretKeySource) -> StoreResult<Sealer> {
    let key = match source {
        SecretKeySource::Key(key) => key.clone(),
        SecretKeySource::File(path) => read_or_create(path)?,
    };
    Ok(Sealer::new(&key))
}

fn read_or_create(path: &Path) -> StoreResult<SecretKey> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            SecretKey::parse(&text).map_err(|e| StoreError::Key(format!("the secret key file {} {e}", path.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(path),
        Err(e) => Err(StoreError::Key(format!(
            "cannot read the secret key file {}: {e}",
            path.display()
        ))),
    }
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
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return read_or_create(path),
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

/// Binds the database to the store's key on first start and refuses
/// another key later; then seals secrets stored before sealing existed.
pub async fn adopt(store: &dyn Store) -> StoreResult<()> {
    let check = store.sealer().check_value().to_owned();
    store.put_setting_if_absent(KEY_CHECK_SETTING, &check).await?;
    if store.get_setting(KEY_CHECK_SETTING).await?.as_deref() != Some(check.as_str()) {
        return Err(StoreError::Key(
            "this node's secret key is not the key this database's secrets were sealed with; \
             give it the same HERALD_SECRET_KEY or key file as the other nodes"
                .into(),
        ));
    }
    let sealed = store.seal_plain_secrets().await?;
    for name in SECRET_SETTINGS {
        if let Some(value) = store.get_setting(name).await?
            && !is_sealed(&value)
        {
            let sealed_value = store.sealer().seal(&setting_context(name), &value);
            store.replace_setting(name, &value, &sealed_value).await?;
        }
    }
    if sealed > 0 {
        tracing::info!(
            endpoints = sealed,
            "sealed endpoint secrets stored before sealing existed"
        );
    }
    Ok(())
}

pub fn setting_context(name: &str) -> String {
    format!("setting:{name}")
}
