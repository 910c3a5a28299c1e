//! Configuration: one TOML file, every setting also from the environment, secrets from files or
//! the environment. `RawConfig` is what serde reads; [`Config`] is what the rest of the proxy
//! uses, built by [`Config::from_raw`], which reports every problem at once.
//!
//! Environment: `ESCROW_<SECTION>__<KEY>` sets `[section] key`, e.g. `ESCROW_SERVER__LISTEN`,
//! `ESCROW_PRIMARY__SECRET_KEY_FILE`, `ESCROW_CLIENTS__0__ACCESS_KEY` (array index as a path
//! segment). Values are strings, except `true`/`false` for boolean settings.
//! Environment values override the file.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::mirror::{ReadMode, WriteMode};
use crate::secret::SecretString;

/// Prefix of configuration environment variables.
pub const ENV_PREFIX: &str = "ESCROW_";
/// Settings whose environment values are booleans; every other value is a string.
const BOOL_KEYS: &[&str] = &[
    "path_style",
    "conditional_writes",
    "allow_plaintext_non_loopback",
    "refuse_sse_kms",
    "shutdown_endpoint",
];
/// Separator of path segments in environment variable names.
const ENV_SEPARATOR: &str = "__";
/// Largest array index an environment variable may name (`ESCROW_CLIENTS__<i>__…`).
const MAX_ENV_INDEX: usize = 999;

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The S3 endpoint.
    pub server: ServerConfig,
    /// Client credentials (SigV4).
    pub clients: Vec<ClientConfig>,
    /// The (foreign) primary store.
    pub primary: StoreConfig,
    /// The (domestic) mirror store, if any.
    pub mirror: Option<MirrorConfig>,
    /// Keyring location and root key.
    pub keys: KeysConfig,
    /// The admin listener, if configured.
    pub admin: Option<AdminConfig>,
}

/// `[admin]`: the admin listener (health, metrics, operator API).
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Address. Default: `127.0.0.1:8444`.
    pub listen: SocketAddr,
    /// The bearer token's file (0600, at least 32 bytes).
    pub token_file: PathBuf,
    /// Certificate and key; required when `listen` is not a loopback address.
    pub tls: Option<TlsFiles>,
    /// `tls_client_ca`: PEM CA certificates; when set, admin clients must present a
    /// certificate signed by one of them (mTLS), and still send the token. Needs `tls_cert`.
    pub tls_client_ca: Option<PathBuf>,
}

/// `[server]`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on. Default: `127.0.0.1:8443`.
    pub listen: SocketAddr,
    /// Certificate chain and key (PEM); both absent means plain HTTP (a loopback sidecar).
    pub tls: Option<TlsFiles>,
    /// Region clients sign for. Default: `us-east-1`.
    pub region: String,
    /// Timeouts and caps of client connections.
    pub limits: ConnectionLimits,
    /// Serve plain HTTP on a non-loopback address. Default: false: without TLS the proxy only
    /// listens on loopback (a sidecar's pod or host), since requests carry plaintext.
    pub allow_plaintext_non_loopback: bool,
    /// Refuse requests that ask for SSE-KMS (`x-amz-server-side-encryption: aws:kms`) with
    /// `NotImplemented`, for users who want to be told that their KMS key is not what protects
    /// the object. Default: false: such requests are accepted, and every object is encrypted by
    /// the proxy under its own keyring, as the answers say (`AES256`).
    pub refuse_sse_kms: bool,
}

impl ServerConfig {
    /// The rules between settings that a literal `ServerConfig` can break too: plain HTTP only
    /// on loopback unless allowed.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.tls.is_none() && !self.listen.ip().is_loopback() && !self.allow_plaintext_non_loopback {
            return Err(ConfigError(vec![format!(
                "server.listen: {} is not a loopback address and no tls_cert/tls_key is set: plain HTTP \
                 would carry plaintext objects and signatures over the network. Set tls_cert and tls_key, \
                 listen on 127.0.0.1/::1, or set allow_plaintext_non_loopback = true (e.g. behind a \
                 TLS-terminating mesh)",
                self.listen
            )]));
        }
        Ok(())
    }
}

/// `[server]` connection limits. Every field is a setting of the same name (`*_secs` in
/// seconds); see `limits.rs` for the defaults and the README for what each bounds.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// `header_timeout_secs`: time to send a whole request header block (HTTP/1.1).
    pub header_timeout: Duration,
    /// `idle_timeout_secs`: a connection with no request in flight and no traffic is closed.
    pub idle_timeout: Duration,
    /// `body_timeout_secs`: a request body that makes no progress this long is abandoned.
    pub body_timeout: Duration,
    /// `h2_keepalive_secs`: h2 ping interval, and how long an unanswered ping is tolerated.
    pub h2_keepalive: Duration,
    /// `max_connections`: concurrent connections.
    pub max_connections: usize,
    /// `h2_max_streams`: concurrent streams per h2 connection.
    pub h2_max_streams: u32,
    /// `drain_delay_secs`: after SIGTERM, how long the listener keeps accepting (readiness
    /// already failing) so load balancers and the pod's app stop sending first. May be 0.
    pub drain_delay: Duration,
    /// `shutdown_grace_secs`: after the drain delay, how long in-flight requests get to finish.
    /// `drain_delay + shutdown_grace` must fit in Kubernetes' `terminationGracePeriodSeconds`.
    pub shutdown_grace: Duration,
    /// `tls_reload_secs`: how often the certificate and key files are checked for changes.
    pub tls_reload: Duration,
    /// `tls_client_ca`: PEM CA certificates; when set, clients must present a certificate
    /// signed by one of them (mTLS) in addition to signing requests. Needs `tls_cert`.
    pub tls_client_ca: Option<PathBuf>,
    /// `shutdown_endpoint`: the admin listener takes `POST /shutdown` from loopback (a batch
    /// Job's app ends its sidecar). Default: false.
    pub shutdown_endpoint: bool,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        use crate::limits::*;
        Self {
            header_timeout: Duration::from_secs(DEFAULT_HEADER_TIMEOUT_SECS),
            idle_timeout: Duration::from_secs(DEFAULT_IDLE_TIMEOUT_SECS),
            body_timeout: Duration::from_secs(DEFAULT_BODY_TIMEOUT_SECS),
            h2_keepalive: Duration::from_secs(DEFAULT_H2_KEEPALIVE_SECS),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            h2_max_streams: DEFAULT_H2_MAX_STREAMS,
            drain_delay: Duration::from_secs(DEFAULT_DRAIN_DELAY_SECS),
            shutdown_grace: Duration::from_secs(DEFAULT_SHUTDOWN_GRACE_SECS),
            tls_reload: Duration::from_secs(DEFAULT_TLS_RELOAD_SECS),
            tls_client_ca: None,
            shutdown_endpoint: false,
        }
    }
}

/// PEM files of the server certificate.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

/// One `[[clients]]` entry.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Access key id.
    pub access_key: String,
    /// Secret key.
    pub secret_key: SecretString,
}

/// A store section (`[primary]`, `[mirror]`).
#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// A local directory.
    Fs {
        /// Root directory.
        path: PathBuf,
    },
    /// An S3-compatible endpoint.
    S3(crate::backend::s3::S3StoreConfig),
}

/// `[mirror]`.
#[derive(Debug, Clone)]
pub struct MirrorConfig {
    /// The store.
    pub store: StoreConfig,
    /// Write mode. Default: sync.
    pub write: WriteMode,
    /// Read mode. Default: primary.
    pub read: ReadMode,
    /// How long a read waits for a store's first answer before failing over.
    pub first_byte_timeout: Duration,
}

/// `[keys]`.
#[derive(Debug, Clone)]
pub struct KeysConfig {
    /// Sealed keyring file; created on first start.
    pub keyring: PathBuf,
    /// Root key file (0600); created on first start.
    pub root_key_file: PathBuf,
    /// Keep the shared keyring in the mirror store, in this bucket (under the reserved
    /// `.escrow-mpu/keyring`), written with conditional writes; `keyring` then seeds it and is
    /// kept as its local copy. Needs `[mirror]`.
    pub mirror_bucket: Option<String>,
}

// === raw (serde) form ===

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    clients: Vec<RawClient>,
    primary: Option<RawStore>,
    mirror: Option<RawStore>,
    keys: Option<RawKeys>,
    admin: Option<RawAdmin>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Option<String>,
    token_file: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    region: Option<String>,
    header_timeout_secs: Option<toml::Value>,
    idle_timeout_secs: Option<toml::Value>,
    body_timeout_secs: Option<toml::Value>,
    h2_keepalive_secs: Option<toml::Value>,
    max_connections: Option<toml::Value>,
    h2_max_streams: Option<toml::Value>,
    allow_plaintext_non_loopback: Option<bool>,
    refuse_sse_kms: Option<bool>,
    drain_delay_secs: Option<toml::Value>,
    shutdown_grace_secs: Option<toml::Value>,
    tls_reload_secs: Option<toml::Value>,
    tls_client_ca: Option<PathBuf>,
    shutdown_endpoint: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    access_key: Option<String>,
    secret_key: Option<SecretString>,
    secret_key_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    #[serde(rename = "type")]
    kind: Option<String>,
    path: Option<PathBuf>,
    endpoint: Option<String>,
    region: Option<String>,
    access_key: Option<String>,
    secret_key: Option<SecretString>,
    secret_key_file: Option<PathBuf>,
    path_style: Option<bool>,
    conditional_writes: Option<bool>,
    ca_file: Option<PathBuf>,
    write: Option<String>,
    read: Option<String>,
    first_byte_timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeys {
    keyring: Option<PathBuf>,
    root_key_file: Option<PathBuf>,
    mirror_bucket: Option<String>,
}

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

    /// The embedded default, rooted at `data` (normally `./data`): both stores as local
    /// directories, keyring and root key beside them, a dev certificate. `client` is the
    /// generated credential pair.
    pub fn embedded_default(data: &Path, client: ClientConfig) -> Self {
        Self {
            server: ServerConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
                tls: Some(TlsFiles {
                    cert: data.join("certs/server.pem"),
                    key: data.join("certs/server-key.pem"),
                }),
                region: crate::limits::DEFAULT_REGION.into(),
                limits: ConnectionLimits::default(),
                allow_plaintext_non_loopback: false,
                refuse_sse_kms: false,
            },
            clients: vec![client],
            primary: StoreConfig::Fs {
                path: data.join("primary"),
            },
            mirror: Some(MirrorConfig {
                store: StoreConfig::Fs {
                    path: data.join("mirror"),
                },
                write: WriteMode::Sync,
                read: ReadMode::Primary,
                first_byte_timeout: Duration::from_millis(crate::limits::DEFAULT_FIRST_BYTE_TIMEOUT_MS),
            }),
            keys: KeysConfig {
                keyring: data.join("keyring"),
                root_key_file: data.join("root.key"),
                mirror_bucket: None,
            },
            admin: Some(AdminConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 8444)),
                token_file: data.join("admin-token"),
                tls: None,
                tls_client_ca: None,
            }),
        }
    }

    fn from_raw(mut raw: RawConfig, base: &Path, mut problems: Vec<String>) -> Result<Self, ConfigError> {
        let abs = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };

        let listen = raw.server.listen.as_deref().unwrap_or(crate::limits::DEFAULT_LISTEN);
        let listen = listen.parse().unwrap_or_else(|_| {
            problems.push(format!(
                "server.listen: `{listen}` is not an address like 127.0.0.1:8443"
            ));
            SocketAddr::from(([127, 0, 0, 1], 8443))
        });
        let mut limits = connection_limits(&raw.server, &mut problems);
        limits.tls_client_ca = raw.server.tls_client_ca.take().map(&abs);
        let tls = tls_files("server", raw.server.tls_cert, raw.server.tls_key, &abs, &mut problems);
        let server = ServerConfig {
            listen,
            tls,
            region: raw
                .server
                .region
                .unwrap_or_else(|| crate::limits::DEFAULT_REGION.into()),
            limits,
            allow_plaintext_non_loopback: raw.server.allow_plaintext_non_loopback.unwrap_or(false),
            refuse_sse_kms: raw.server.refuse_sse_kms.unwrap_or(false),
        };
        if server.limits.tls_client_ca.is_some() && server.tls.is_none() {
            problems.push("server.tls_client_ca needs tls_cert and tls_key (mTLS is part of TLS)".into());
        }
        if let Err(e) = server.check() {
            problems.extend(e.0);
        }

        let mut clients = Vec::new();
        for (i, c) in raw.clients.into_iter().enumerate() {
            let at = format!("clients[{i}]");
            let Some(access_key) = c.access_key.filter(|k| !k.is_empty()) else {
                problems.push(format!("{at}.access_key is required"));
                continue;
            };
            if let Some(secret_key) = secret(
                &at,
                "secret_key",
                c.secret_key,
                c.secret_key_file.map(&abs),
                &mut problems,
            ) {
                clients.push(ClientConfig { access_key, secret_key });
            }
        }
        if clients.is_empty() {
            problems
                .push("at least one [[clients]] entry (access_key, secret_key or secret_key_file) is required".into());
        }

        let primary = match raw.primary {
            Some(s) => store("primary", s, &abs, &mut problems),
            None => {
                problems.push("[primary] is required".into());
                None
            }
        };
        let mirror = raw.mirror.and_then(|m| {
            let write = match m.write.as_deref() {
                None | Some("sync") => WriteMode::Sync,
                Some("async") => WriteMode::Async,
                Some("both") => WriteMode::Both,
                Some(other) => {
                    problems.push(format!("mirror.write: `{other}` is not sync, async or both"));
                    WriteMode::Sync
                }
            };
            let read = match m.read.as_deref() {
                None | Some("primary") => ReadMode::Primary,
                Some("mirror") => ReadMode::Mirror,
                Some(other) => {
                    problems.push(format!("mirror.read: `{other}` is not primary or mirror"));
                    ReadMode::Primary
                }
            };
            let first_byte_timeout = match m.first_byte_timeout_ms {
                None => Duration::from_millis(crate::limits::DEFAULT_FIRST_BYTE_TIMEOUT_MS),
                Some(ms) if (1..=600_000).contains(&ms) => Duration::from_millis(ms),
                Some(_) => {
                    problems.push("mirror.first_byte_timeout_ms: expected 1 to 600000".into());
                    Duration::from_millis(crate::limits::DEFAULT_FIRST_BYTE_TIMEOUT_MS)
                }
            };
            store("mirror", m, &abs, &mut problems).map(|store| MirrorConfig {
                store,
                write,
                read,
                first_byte_timeout,
            })
        });
        let keys = match raw.keys {
            Some(RawKeys {
                keyring: Some(keyring),
                root_key_file: Some(root),
                mirror_bucket,
            }) => {
                if mirror_bucket.is_some() && mirror.is_none() {
                    problems.push("[keys] mirror_bucket needs a [mirror] store".into());
                }
                Some(KeysConfig {
                    keyring: abs(keyring),
                    root_key_file: abs(root),
                    mirror_bucket,
                })
            }
            _ => {
                problems.push("[keys] needs keyring and root_key_file".into());
                None
            }
        };

        let admin = raw.admin.and_then(|a| admin(a, &abs, &mut problems));

        match (primary, keys) {
            (Some(primary), Some(keys)) if problems.is_empty() => Ok(Self {
                server,
                clients,
                primary,
                mirror,
                keys,
                admin,
            }),
            _ => Err(ConfigError(problems)),
        }
    }
}

/// A section's `tls_cert` and `tls_key`: both or neither (plain HTTP).
fn tls_files(
    section: &str,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    abs: &dyn Fn(PathBuf) -> PathBuf,
    problems: &mut Vec<String>,
) -> Option<TlsFiles> {
    match (cert, key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: abs(cert),
            key: abs(key),
        }),
        (None, None) => None,
        _ => {
            problems.push(format!(
                "{section}: set both tls_cert and tls_key, or neither (plain HTTP)"
            ));
            None
        }
    }
}

/// `[admin]`: a token file is required; TLS off loopback.
fn admin(raw: RawAdmin, abs: &dyn Fn(PathBuf) -> PathBuf, problems: &mut Vec<String>) -> Option<AdminConfig> {
    let listen = raw.listen.as_deref().unwrap_or(crate::limits::DEFAULT_ADMIN_LISTEN);
    let Ok(listen) = listen.parse::<SocketAddr>() else {
        problems.push(format!(
            "admin.listen: `{listen}` is not an address like 127.0.0.1:8444"
        ));
        return None;
    };
    let tls = tls_files("admin", raw.tls_cert, raw.tls_key, abs, problems);
    if tls.is_none() && !listen.ip().is_loopback() {
        problems.push(format!(
            "admin.listen: {listen} is not a loopback address: the admin API carries its token and \
             key operations, so it needs tls_cert and tls_key there"
        ));
        return None;
    }
    if raw.tls_client_ca.is_some() && tls.is_none() {
        problems.push("admin.tls_client_ca needs tls_cert and tls_key (mTLS is part of TLS)".into());
        return None;
    }
    let Some(token_file) = raw.token_file else {
        problems.push("admin.token_file is required (a 0600 file holding at least 32 bytes)".into());
        return None;
    };
    Some(AdminConfig {
        listen,
        token_file: abs(token_file),
        tls,
        tls_client_ca: raw.tls_client_ca.map(abs),
    })
}

/// `[server]`'s limits: each a positive whole number (from TOML or, as a string, from the
/// environment), else its default.
fn connection_limits(raw: &RawServer, problems: &mut Vec<String>) -> ConnectionLimits {
    let mut number = |name: &str, value: &Option<toml::Value>, default: u64, min: u64| -> u64 {
        let parsed = match value {
            None => return default,
            Some(toml::Value::Integer(n)) => u64::try_from(*n).ok(),
            Some(toml::Value::String(s)) => s.trim().parse::<u64>().ok(),
            Some(_) => None,
        };
        match parsed {
            Some(n) if n >= min && n <= u64::from(u32::MAX) => n,
            _ => {
                problems.push(format!(
                    "server.{name}: expected a whole number from {min} to {}",
                    u32::MAX
                ));
                default
            }
        }
    };
    let d = ConnectionLimits::default();
    let secs = |n: u64| Duration::from_secs(n);
    ConnectionLimits {
        header_timeout: secs(number(
            "header_timeout_secs",
            &raw.header_timeout_secs,
            d.header_timeout.as_secs(),
            1,
        )),
        idle_timeout: secs(number(
            "idle_timeout_secs",
            &raw.idle_timeout_secs,
            d.idle_timeout.as_secs(),
            1,
        )),
        body_timeout: secs(number(
            "body_timeout_secs",
            &raw.body_timeout_secs,
            d.body_timeout.as_secs(),
            1,
        )),
        h2_keepalive: secs(number(
            "h2_keepalive_secs",
            &raw.h2_keepalive_secs,
            d.h2_keepalive.as_secs(),
            1,
        )),
        // Invariant (both): `number` returns at most u32::MAX.
        max_connections: number("max_connections", &raw.max_connections, d.max_connections as u64, 1) as usize,
        h2_max_streams: number("h2_max_streams", &raw.h2_max_streams, u64::from(d.h2_max_streams), 1) as u32,
        drain_delay: secs(number(
            "drain_delay_secs",
            &raw.drain_delay_secs,
            d.drain_delay.as_secs(),
            0,
        )),
        shutdown_grace: secs(number(
            "shutdown_grace_secs",
            &raw.shutdown_grace_secs,
            d.shutdown_grace.as_secs(),
            1,
        )),
        tls_reload: secs(number(
            "tls_reload_secs",
            &raw.tls_reload_secs,
            d.tls_reload.as_secs(),
            1,
        )),
        tls_client_ca: None,
        shutdown_endpoint: raw.shutdown_endpoint.unwrap_or(false),
    }
}

fn store(
    section: &str,
    s: RawStore,
    abs: &dyn Fn(PathBuf) -> PathBuf,
    problems: &mut Vec<String>,
) -> Option<StoreConfig> {
    if section == "primary" && (s.write.is_some() || s.read.is_some() || s.first_byte_timeout_ms.is_some()) {
        problems.push("primary: write, read and first_byte_timeout_ms belong to [mirror]".into());
    }
    match s.kind.as_deref() {
        Some("fs") => match s.path {
            Some(path) => Some(StoreConfig::Fs { path: abs(path) }),
            None => {
                problems.push(format!("{section}.path is required for type = \"fs\""));
                None
            }
        },
        Some("s3") => {
            let at = section.to_string();
            let secret_key = secret(&at, "secret_key", s.secret_key, s.secret_key_file.map(abs), problems);
            let access_key = s.access_key.filter(|k| !k.is_empty());
            if access_key.is_none() {
                problems.push(format!("{section}.access_key is required for type = \"s3\""));
            }
            let endpoint = s.endpoint.filter(|e| !e.is_empty());
            if let Some(e) = &endpoint
                && !(e.starts_with("http://") || e.starts_with("https://"))
            {
                problems.push(format!("{section}.endpoint: `{e}` must start with http:// or https://"));
            }
            Some(StoreConfig::S3(crate::backend::s3::S3StoreConfig {
                endpoint,
                region: s.region.unwrap_or_else(|| crate::limits::DEFAULT_REGION.into()),
                access_key: access_key?,
                secret_key: secret_key?,
                path_style: s.path_style.unwrap_or(true),
                ca_file: s.ca_file.map(abs),
                conditional_writes: s.conditional_writes.unwrap_or(true),
            }))
        }
        Some(other) => {
            problems.push(format!("{section}.type: `{other}` is not \"s3\" or \"fs\""));
            None
        }
        None => {
            problems.push(format!("{section}.type is required (\"s3\" or \"fs\")"));
            None
        }
    }
}

/// A secret from an inline value or a file (refused if others can read it).
fn secret(
    at: &str,
    name: &str,
    inline: Option<SecretString>,
    file: Option<PathBuf>,
    problems: &mut Vec<String>,
) -> Option<SecretString> {
    match (inline, file) {
        (Some(_), Some(_)) => {
            problems.push(format!("{at}: set {name} or {name}_file, not both"));
            None
        }
        (Some(v), None) if !v.expose().is_empty() => Some(v),
        (None, Some(path)) => match crate::files::read_secret_file(&path) {
            Ok(mut v) => {
                let secret = SecretString::new(v.trim_end_matches(['\n', '\r']).to_string());
                zeroize::Zeroize::zeroize(&mut v);
                Some(secret)
            }
            Err(e) => {
                problems.push(format!("{at}.{name}_file: {e}"));
                None
            }
        },
        _ => {
            problems.push(format!("{at}: {name} or {name}_file is required"));
            None
        }
    }
}

/// Applies `ESCROW_*` variables to the TOML table.
fn overlay_env(table: &mut toml::Table, env: &BTreeMap<String, String>, problems: &mut Vec<String>) {
    for (name, value) in env {
        let Some(path) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let segments: Vec<String> = path.split(ENV_SEPARATOR).map(str::to_lowercase).collect();
        // Values stay strings (a numeric secret must not become an integer), except for the
        // settings that are booleans.
        let is_bool = segments.last().is_some_and(|k| BOOL_KEYS.contains(&k.as_str()));
        let parsed = match (is_bool, value.as_str()) {
            (true, "true") => toml::Value::Boolean(true),
            (true, "false") => toml::Value::Boolean(false),
            (true, _) => {
                problems.push(format!("{name}: expected true or false"));
                continue;
            }
            (false, _) => toml::Value::String(value.clone()),
        };
        if let Err(e) = set_path(table, &segments, parsed) {
            problems.push(format!("{name}: {e}"));
        }
    }
}

fn set_path(table: &mut toml::Table, segments: &[String], value: toml::Value) -> Result<(), String> {
    let (first, rest) = segments.split_first().ok_or("empty variable name")?;
    if rest.is_empty() {
        table.insert(first.clone(), value);
        return Ok(());
    }
    let entry = table.entry(first.clone());
    if let Ok(index) = rest[0].parse::<usize>() {
        // The array grows to `index + 1` entries: bound it before allocating.
        if index > MAX_ENV_INDEX {
            return Err(format!("array index {index} is above {MAX_ENV_INDEX}"));
        }
        let array = entry.or_insert_with(|| toml::Value::Array(Vec::new()));
        let toml::Value::Array(items) = array else {
            return Err(format!("{first} is not an array"));
        };
        while items.len() <= index {
            items.push(toml::Value::Table(toml::Table::new()));
        }
        let toml::Value::Table(inner) = &mut items[index] else {
            return Err(format!("{first}[{index}] is not a table"));
        };
        return set_path(inner, &rest[1..], value);
    }
    let inner = entry.or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let toml::Value::Table(inner) = inner else {
        return Err(format!("{first} is not a table"));
    };
    set_path(inner, rest, value)
}

/// Whether any configuration variable is set.
pub fn env_has_config(env: &BTreeMap<String, String>) -> bool {
    env.keys()
        .any(|k| k.starts_with(ENV_PREFIX) && k.contains(ENV_SEPARATOR))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn env_alone_makes_a_config() {
        let cfg = Config::load(
            None,
            &env(&[
                ("ESCROW_SERVER__LISTEN", "127.0.0.1:9000"),
                ("ESCROW_CLIENTS__0__ACCESS_KEY", "app"),
                ("ESCROW_CLIENTS__0__SECRET_KEY", "s3cr3t"),
                ("ESCROW_PRIMARY__TYPE", "s3"),
                ("ESCROW_PRIMARY__ENDPOINT", "http://127.0.0.1:9001"),
                ("ESCROW_PRIMARY__ACCESS_KEY", "a"),
                ("ESCROW_PRIMARY__SECRET_KEY", "b"),
                ("ESCROW_PRIMARY__PATH_STYLE", "true"),
                ("ESCROW_PRIMARY__CONDITIONAL_WRITES", "false"),
                ("ESCROW_KEYS__KEYRING", "k"),
                ("ESCROW_KEYS__ROOT_KEY_FILE", "r"),
            ]),
        )
        .expect("valid");
        assert_eq!(cfg.server.listen.port(), 9000);
        assert_eq!(cfg.clients[0].access_key, "app");
        assert!(matches!(cfg.primary, StoreConfig::S3(ref s) if s.path_style && !s.conditional_writes));
        assert!(cfg.server.tls.is_none());
    }

    #[test]
    fn numeric_env_secrets_stay_strings() {
        let base = [
            ("ESCROW_CLIENTS__0__ACCESS_KEY", "app"),
            ("ESCROW_CLIENTS__0__SECRET_KEY", "83920174"),
            ("ESCROW_PRIMARY__TYPE", "fs"),
            ("ESCROW_PRIMARY__PATH", "p"),
            ("ESCROW_KEYS__KEYRING", "k"),
            ("ESCROW_KEYS__ROOT_KEY_FILE", "r"),
        ];
        let cfg = Config::load(None, &env(&base)).expect("valid");
        assert_eq!(cfg.clients[0].secret_key.expose(), "83920174");
        // A bad boolean is reported by name, without echoing anything secret.
        let mut bad = base.to_vec();
        bad.push(("ESCROW_PRIMARY__PATH_STYLE", "yes"));
        let err = Config::load(None, &env(&bad)).unwrap_err().to_string();
        assert!(
            err.contains("ESCROW_PRIMARY__PATH_STYLE") && !err.contains("83920174"),
            "{err}"
        );
    }

    #[test]
    fn every_problem_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "[server]\nlisten = \"nope\"\ntls_cert = \"a.pem\"\n[primary]\ntype = \"ftp\"\n[[clients]]\naccess_key = \"x\"\n",
        )
        .expect("write");
        let err = Config::load(Some(&file), &BTreeMap::new()).unwrap_err();
        let text = err.to_string();
        for needle in ["server.listen", "tls_key", "primary.type", "secret_key", "[keys]"] {
            assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
        }
    }

    #[test]
    fn server_limits_from_file_and_env_and_plaintext_only_on_loopback() {
        let base = [
            ("ESCROW_CLIENTS__0__ACCESS_KEY", "app"),
            ("ESCROW_CLIENTS__0__SECRET_KEY", "s"),
            ("ESCROW_PRIMARY__TYPE", "fs"),
            ("ESCROW_PRIMARY__PATH", "p"),
            ("ESCROW_KEYS__KEYRING", "k"),
            ("ESCROW_KEYS__ROOT_KEY_FILE", "r"),
        ];
        let cfg = Config::load(None, &env(&base)).expect("valid");
        assert_eq!(
            cfg.server.limits.max_connections,
            crate::limits::DEFAULT_MAX_CONNECTIONS
        );
        let mut set = base.to_vec();
        set.extend([
            ("ESCROW_SERVER__BODY_TIMEOUT_SECS", "7"),
            ("ESCROW_SERVER__H2_MAX_STREAMS", "9"),
        ]);
        let cfg = Config::load(None, &env(&set)).expect("valid");
        assert_eq!(cfg.server.limits.body_timeout, Duration::from_secs(7));
        assert_eq!(cfg.server.limits.h2_max_streams, 9);
        let mut bad = base.to_vec();
        bad.extend([
            ("ESCROW_SERVER__IDLE_TIMEOUT_SECS", "0"),
            ("ESCROW_SERVER__LISTEN", "0.0.0.0:8080"),
        ]);
        let err = Config::load(None, &env(&bad)).unwrap_err().to_string();
        assert!(
            err.contains("idle_timeout_secs") && err.contains("not a loopback"),
            "{err}"
        );
        bad.push(("ESCROW_SERVER__ALLOW_PLAINTEXT_NON_LOOPBACK", "true"));
        bad.retain(|(k, _)| !k.ends_with("IDLE_TIMEOUT_SECS"));
        assert!(Config::load(None, &env(&bad)).is_ok());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[server]\nlisten_on = \"127.0.0.1:1\"\n").expect("write");
        assert!(
            Config::load(Some(&file), &BTreeMap::new())
                .unwrap_err()
                .to_string()
                .contains("listen_on")
        );
    }

    #[test]
    fn world_readable_secret_files_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = dir.path().join("s");
        std::fs::write(&secret, "x\n").expect("write");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "[[clients]]\naccess_key = \"a\"\nsecret_key_file = \"s\"\n[primary]\ntype = \"fs\"\npath = \"p\"\n[keys]\nkeyring = \"k\"\nroot_key_file = \"r\"\n",
        )
        .expect("write");
        let err = Config::load(Some(&file), &BTreeMap::new()).unwrap_err().to_string();
        assert!(err.contains("readable"), "{err}");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let cfg = Config::load(Some(&file), &BTreeMap::new()).expect("valid");
        assert_eq!(cfg.clients[0].secret_key.expose(), "x");
    }
}
