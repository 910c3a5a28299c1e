//! The public configuration: [`Config`] and its sections, as the rest of the proxy uses them,
//! and the embedded default ([`Config::embedded_default`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::ConfigError;
use crate::mirror::{ReadMode, WriteMode};
use crate::secret::SecretString;

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

impl Config {
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
}
