//! `keys list` and `keys rotate`: the offline keyring commands (bootstrap and recovery).

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::CliError;
use crate::config::Config;
use crate::crypto::keyring::Keyring;
use crate::keys::{load_keyring, load_root_key, now_rfc3339, update_keyring_file};
use crate::secret::Key256;

/// Where the keyring and its root key are.
pub enum KeySource {
    /// The `[keys]` of a configuration file (or of `ESCROW_*` variables when `None`).
    Config(Option<PathBuf>),
    /// The two files named directly.
    Files {
        /// The sealed keyring.
        keyring: PathBuf,
        /// The root key (0600).
        root_key: PathBuf,
    },
}

impl KeySource {
    /// Opens the keyring; returns it with its path and root key (for saving it back).
    pub(super) fn open(&self, env: &BTreeMap<String, String>) -> Result<(Keyring, PathBuf, Key256), CliError> {
        let (keyring, root) = match self {
            Self::Files { keyring, root_key } => (keyring.clone(), root_key.clone()),
            Self::Config(file) => {
                let config = Config::load(file.as_deref(), env)?;
                (config.keys.keyring, config.keys.root_key_file)
            }
        };
        if !keyring.exists() {
            return Err(CliError::Usage(format!("{}: no keyring here", keyring.display())));
        }
        let root_key = load_root_key(&root)?;
        let ring = load_keyring(&keyring, &root_key)?;
        Ok((ring, keyring, root_key))
    }
}

/// `keys list`: one line per version (number, state, creation time), never key material.
pub fn keys_list(source: &KeySource, env: &BTreeMap<String, String>) -> Result<(), CliError> {
    let (ring, _, _) = source.open(env)?;
    for v in ring.versions() {
        let active = if v.version == ring.active().0 { " (active)" } else { "" };
        println!("{}\t{:?}\t{}{active}", v.version, v.state, v.created);
    }
    Ok(())
}

/// `keys rotate`: a new version, active for new writes; old versions keep decrypting. Written
/// under the keyring's lock like the admin API's changes, so running proxies sharing the file
/// lose nothing and pick it up within seconds.
pub fn keys_rotate(source: &KeySource, env: &BTreeMap<String, String>) -> Result<(), CliError> {
    let (_, keyring_path, root) = source.open(env)?;
    let (_, version) = update_keyring_file(&keyring_path, &root, |ring| Ok(ring.rotate(&now_rfc3339())?))
        .map_err(|e| CliError::Usage(format!("{}: {e}", keyring_path.display())))?;
    println!("key version {version} is now active; running proxies sharing this keyring use it within seconds");
    Ok(())
}
