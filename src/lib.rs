//! Escrow Proxy: an HTTPS, S3-compatible endpoint that encrypts every object before it reaches
//! the object store behind it.
//!
//! # Request flow
//!
//! 1. [`server`] accepts a connection (TLS through rustls, HTTP/1.1 or h2 through hyper).
//! 2. s3s routes the request, checks its SigV4 signature against `[[clients]]`
//!    ([`s3::ClientAuth`]) and decodes aws-chunked bodies.
//! 3. [`s3::Proxy`] serves the operation with plaintext semantics: a PUT draws a fresh data key,
//!    wraps it under the keyring's active KEK ([`crypto`]) and streams the body through
//!    [`body::EncryptBody`] into the store; a GET reads the object's trailer, evaluates
//!    conditions and streams only the needed segments back through [`body::DecryptBody`].
//! 4. The store ([`backend::ObjectStore`]: S3 or a local directory) holds only ciphertext and
//!    sealed metadata. The keyring and its root key stay at home ([`keys`]).
//!
//! The binary's commands (serve, keys, decrypt, certs) live in [`cli`]; `main.rs` only parses
//! arguments and maps errors to exit codes.
#![forbid(unsafe_code)]

pub mod admin;
pub mod backend;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod decrypt;
pub mod files;
pub mod keys;
pub mod limits;
pub mod logging;
pub mod markup;
pub mod mirror;
pub mod object;
pub mod s3;
pub mod secret;
pub mod server;

use std::sync::Arc;
use std::time::Duration;

use crate::backend::ObjectStore;
use crate::backend::health::StoreHealth;
use crate::config::{Config, StoreConfig};
use crate::crypto::keyring::Keyring;

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// A key file could not be used.
    #[error(transparent)]
    Keys(#[from] keys::KeyFileError),
    /// The S3 listener could not start (TLS files, bind).
    #[error(transparent)]
    Server(#[from] server::ServerError),
    /// The admin listener could not start (token, TLS files, bind).
    #[error(transparent)]
    Admin(#[from] admin::AdminError),
    /// A store could not be set up.
    #[error("store: {0}")]
    Store(String),
}

/// Opens the root key and the keyring; on a first start (neither exists) creates them.
pub fn open_keyring(config: &Config) -> Result<Keyring, RunError> {
    let (keyring, created) = keys::load_or_init(&config.keys.root_key_file, &config.keys.keyring)?;
    if created {
        tracing::warn!(
            root_key = %config.keys.root_key_file.display(),
            keyring = %config.keys.keyring.display(),
            "first start: created a new root key and keyring (0600); back both up, they are the only way to read the data"
        );
    }
    Ok(keyring)
}

/// Builds a store from its configuration.
pub fn build_store(name: &str, store: &StoreConfig) -> Result<Arc<dyn ObjectStore>, RunError> {
    build_store_with(name, store, true)
}

/// Builds a store; `retries: false` for a mirrored store, whose retry is the other store.
fn build_store_with(name: &str, store: &StoreConfig, retries: bool) -> Result<Arc<dyn ObjectStore>, RunError> {
    match store {
        StoreConfig::Fs { path } => {
            let fs = backend::fs::FsStore::new(name, path)
                .map_err(|e| RunError::Store(format!("{name}: {}: {e}", path.display())))?;
            Ok(Arc::new(fs))
        }
        StoreConfig::S3(cfg) => {
            let s3 = backend::s3::S3Store::new(name, cfg).map_err(|e| RunError::Store(e.to_string()))?;
            Ok(Arc::new(if retries { s3 } else { s3.without_retries() }))
        }
    }
}

/// How often each store is probed for the breaker and `/ready`, and how long a probe may take.
const STORE_PROBE_EVERY: Duration = Duration::from_secs(2);
const STORE_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A running proxy: the S3 listener, the admin listener (when configured) and their shared
/// health.
pub struct Service {
    s3: server::Running,
    admin: Option<admin::Running>,
    health: Arc<admin::Health>,
    /// Store probes and the mirror's drainer: stopped with the service.
    probes: Vec<tokio::task::JoinHandle<()>>,
    keyring_watch: tokio::task::JoinHandle<()>,
}

impl Service {
    /// The S3 endpoint URL clients use.
    pub fn url(&self) -> String {
        self.s3.url()
    }

    /// The admin API's base URL, when the admin listener runs.
    pub fn admin_url(&self) -> Option<String> {
        self.admin.as_ref().map(admin::Running::url)
    }

    /// The shared health (`/ready`, draining).
    pub fn health(&self) -> &Arc<admin::Health> {
        &self.health
    }

    /// Re-reads the TLS certificates and keys of the S3 and admin listeners now (SIGHUP); see
    /// [`server::Running::reload_tls`].
    pub fn reload_tls(&self) {
        self.s3.reload_tls();
        if let Some(admin) = &self.admin {
            admin.reload_tls();
        }
    }

    /// Stops accepting, lets in-flight S3 requests finish (up to a grace period), and returns.
    pub async fn stop(self) {
        self.health.set_draining();
        self.s3.stop().await;
        if let Some(admin) = self.admin {
            admin.stop();
        }
        self.keyring_watch.abort();
        for probe in self.probes {
            probe.abort();
        }
    }
}

/// Starts the proxy for `config`: keys, stores, TLS, the S3 listener and the admin listener.
pub async fn start(config: &Config) -> Result<Service, RunError> {
    config.server.check()?;
    // The mirror's store is built first: the shared keyring may live in it.
    let mirror_raw = match &config.mirror {
        Some(m) => Some(build_store_with("mirror", &m.store, false)?),
        None => None,
    };
    let (keyring, created) = match (&config.keys.mirror_bucket, &mirror_raw) {
        (Some(bucket), Some(store)) => {
            let home = keys::StoreHome {
                store: Arc::clone(store),
                bucket: bucket.clone(),
            };
            keys::open_shared_in_store(&config.keys.root_key_file, &config.keys.keyring, home).await?
        }
        _ => keys::open_shared(&config.keys.root_key_file, &config.keys.keyring)?,
    };
    if created {
        tracing::warn!(
            root_key = %config.keys.root_key_file.display(),
            keyring = %config.keys.keyring.display(),
            "first start: created a new root key and keyring (0600); back both up, they are the only way to read the data"
        );
    }
    let keyring_watch = keyring.watch(keys::KEYRING_POLL);
    let primary = build_store_with("primary", &config.primary, config.mirror.is_none())?;
    let mut stores = vec![(Arc::clone(&primary), StoreHealth::new("primary"))];
    let mut drainer = None;
    let mut pair_for_admin = None;
    let (store, mirror_store): (Arc<dyn ObjectStore>, _) = match &config.mirror {
        None => (Arc::clone(&primary), None),
        Some(m) => {
            let Some(second) = mirror_raw else {
                return Err(RunError::Store("mirror: not built".into()));
            };
            stores.push((Arc::clone(&second), StoreHealth::new("mirror")));
            let mut settings = mirror::MirrorSettings::new(m.write, m.read);
            settings.first_byte_timeout = m.first_byte_timeout;
            let pair = mirror::Mirror::new(
                (Arc::clone(&primary), Arc::clone(&stores[0].1)),
                (Arc::clone(&second), Arc::clone(&stores[1].1)),
                settings,
                Arc::new(object::KeyringSealer::new(Arc::clone(&keyring))),
            );
            drainer = Some(mirror::repair::spawn_drainer(&pair));
            pair_for_admin = Some(Arc::clone(&pair));
            (pair as Arc<dyn ObjectStore>, Some(second))
        }
    };
    if store.conditional_writes() {
        tracing::info!(
            mirrored = config.mirror.is_some(),
            "conditional writes (If-None-Match: *, If-Match): evaluated atomically by the primary store"
        );
    } else {
        tracing::warn!(
            "conditional writes (If-None-Match: *, If-Match) are refused: the primary store is configured with conditional_writes = false"
        );
    }
    // With `write = "both"` every write needs both stores; otherwise one suffices.
    let rule = match &config.mirror {
        Some(m) if m.write == mirror::WriteMode::Both => admin::ReadyRule::All,
        _ => admin::ReadyRule::Any,
    };
    let health = admin::Health::new(stores.iter().map(|(_, h)| Arc::clone(h)).collect(), rule);
    let mut probes: Vec<_> = stores
        .into_iter()
        .map(|(store, h)| tokio::spawn(backend::health::probe(store, h, STORE_PROBE_EVERY, STORE_PROBE_TIMEOUT)))
        .collect();
    probes.extend(drainer);
    let admin = match &config.admin {
        Some(admin_config) => {
            let ctx = admin::AdminContext::new(
                admin_config,
                Arc::clone(&health),
                Arc::clone(&keyring),
                primary,
                mirror_store,
            )?
            .with_mirror(pair_for_admin);
            Some(admin::start(admin_config, ctx).await?)
        }
        None => None,
    };
    let s3 = server::start(&config.server, &config.clients, store, keyring).await?;
    Ok(Service {
        s3,
        admin,
        health,
        probes,
        keyring_watch,
    })
}
