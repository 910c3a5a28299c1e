//! `RawConfig` → [`Config`]: every section's checks and defaults, each problem reported
//! (none stops the others from being found).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::ConfigError;
use super::raw::{RawAdmin, RawConfig, RawKeys, RawServer, RawStore};
use super::types::{
    AdminConfig, ClientConfig, Config, ConnectionLimits, KeysConfig, MirrorConfig, ServerConfig, StoreConfig, TlsFiles,
};
use crate::mirror::{ReadMode, WriteMode};
use crate::secret::SecretString;

impl Config {
    pub(super) fn from_raw(mut raw: RawConfig, base: &Path, mut problems: Vec<String>) -> Result<Self, ConfigError> {
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
    // Invariant (both): `number` returns at most u32::MAX.
    let max_connections = number("max_connections", &raw.max_connections, d.max_connections as u64, 1) as usize;
    let h2_max_streams = number("h2_max_streams", &raw.h2_max_streams, u64::from(d.h2_max_streams), 1) as u32;
    let mut secs = |name: &str, value: &Option<toml::Value>, default: Duration, min: u64| {
        Duration::from_secs(number(name, value, default.as_secs(), min))
    };
    ConnectionLimits {
        header_timeout: secs("header_timeout_secs", &raw.header_timeout_secs, d.header_timeout, 1),
        idle_timeout: secs("idle_timeout_secs", &raw.idle_timeout_secs, d.idle_timeout, 1),
        body_timeout: secs("body_timeout_secs", &raw.body_timeout_secs, d.body_timeout, 1),
        h2_keepalive: secs("h2_keepalive_secs", &raw.h2_keepalive_secs, d.h2_keepalive, 1),
        max_connections,
        h2_max_streams,
        drain_delay: secs("drain_delay_secs", &raw.drain_delay_secs, d.drain_delay, 0),
        shutdown_grace: secs("shutdown_grace_secs", &raw.shutdown_grace_secs, d.shutdown_grace, 1),
        tls_reload: secs("tls_reload_secs", &raw.tls_reload_secs, d.tls_reload, 1),
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
