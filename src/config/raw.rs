//! The raw (serde) form of the configuration file: what TOML and the environment overlay
//! deserialize into (`deny_unknown_fields`), before `parse` checks it.

use std::path::PathBuf;

use serde::Deserialize;

use crate::secret::SecretString;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) server: RawServer,
    #[serde(default)]
    pub(super) clients: Vec<RawClient>,
    pub(super) primary: Option<RawStore>,
    pub(super) mirror: Option<RawStore>,
    pub(super) keys: Option<RawKeys>,
    pub(super) admin: Option<RawAdmin>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub(super) listen: Option<String>,
    pub(super) token_file: Option<PathBuf>,
    pub(super) tls_cert: Option<PathBuf>,
    pub(super) tls_key: Option<PathBuf>,
    pub(super) tls_client_ca: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) listen: Option<String>,
    pub(super) tls_cert: Option<PathBuf>,
    pub(super) tls_key: Option<PathBuf>,
    pub(super) region: Option<String>,
    pub(super) header_timeout_secs: Option<toml::Value>,
    pub(super) idle_timeout_secs: Option<toml::Value>,
    pub(super) body_timeout_secs: Option<toml::Value>,
    pub(super) h2_keepalive_secs: Option<toml::Value>,
    pub(super) max_connections: Option<toml::Value>,
    pub(super) h2_max_streams: Option<toml::Value>,
    pub(super) allow_plaintext_non_loopback: Option<bool>,
    pub(super) refuse_sse_kms: Option<bool>,
    pub(super) drain_delay_secs: Option<toml::Value>,
    pub(super) shutdown_grace_secs: Option<toml::Value>,
    pub(super) tls_reload_secs: Option<toml::Value>,
    pub(super) tls_client_ca: Option<PathBuf>,
    pub(super) shutdown_endpoint: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClient {
    pub(super) access_key: Option<String>,
    pub(super) secret_key: Option<SecretString>,
    pub(super) secret_key_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    #[serde(rename = "type")]
    pub(super) kind: Option<String>,
    pub(super) path: Option<PathBuf>,
    pub(super) endpoint: Option<String>,
    pub(super) region: Option<String>,
    pub(super) access_key: Option<String>,
    pub(super) secret_key: Option<SecretString>,
    pub(super) secret_key_file: Option<PathBuf>,
    pub(super) path_style: Option<bool>,
    pub(super) conditional_writes: Option<bool>,
    pub(super) ca_file: Option<PathBuf>,
    pub(super) write: Option<String>,
    pub(super) read: Option<String>,
    pub(super) first_byte_timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKeys {
    pub(super) keyring: Option<PathBuf>,
    pub(super) root_key_file: Option<PathBuf>,
    pub(super) mirror_bucket: Option<String>,
}
