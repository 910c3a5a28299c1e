//! Configuration: one TOML file, every setting also from the environment, secrets from files or
//! the environment. `RawConfig` is what serde reads; [`Config`] is what the rest of the proxy
//! uses, built by [`Config::from_raw`], which reports every problem at once.
//!
//! Environment: `ESCROW_<SECTION>__<KEY>` sets `[section] key`, e.g. `ESCROW_SERVER__LISTEN`,
//! `ESCROW_PRIMARY__SECRET_KEY_FILE`, `ESCROW_CLIENTS__0__ACCESS_KEY` (array index as a path
//! segment). Values are strings, except `true`/`false` for boolean settings.
//! Environment values override the file.
//!
//! Files: `types` (the public sections and the embedded default), `raw` (the serde form),
//! `parse` (`RawConfig` → [`Config`], every check), `env` (the `ESCROW_*` overlay).

use std::collections::BTreeMap;
use std::path::Path;

mod env;
mod parse;
mod raw;
mod types;

pub use self::env::{ENV_PREFIX, env_has_config};
pub use self::types::{
    AdminConfig, ClientConfig, Config, ConnectionLimits, KeysConfig, MirrorConfig, ServerConfig, StoreConfig, TlsFiles,
};

use self::env::overlay_env;
use self::raw::RawConfig;

/// Every problem found in a configuration, one per line.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

impl Config {
    /// Loads `file` (if any) with environment overrides from `env`. Relative paths in a file are
    /// relative to the file's directory; in the environment, to the working directory.
    pub fn load(file: Option<&Path>, env: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let mut value = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError(vec![format!("cannot read {}: {e}", path.display())]))?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError(vec![format!("{}: {}", path.display(), e.message())]))?
            }
            None => toml::Table::new(),
        };
        let mut problems = Vec::new();
        overlay_env(&mut value, env, &mut problems);
        let raw: RawConfig = match toml::Value::Table(value).try_into() {
            Ok(raw) => raw,
            Err(e) => {
                problems.push(e.message().to_string());
                return Err(ConfigError(problems));
            }
        };
        let base = file.and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default();
        Self::from_raw(raw, &base, problems)
    }
}

#[cfg(test)]
mod tests;
