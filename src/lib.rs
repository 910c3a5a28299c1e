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

pub mod backend;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod decrypt;
pub mod files;
pub mod keys;
pub mod limits;
pub mod logging;
pub mod mirror;
pub mod object;
pub mod s3;
pub mod secret;
pub mod server;

use std::sync::Arc;

use crate::backend::ObjectStore;
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
    /// A store could not be set up.
    #[error("store: {0}")]
    Store(String),
    /// The configuration asks for something this version does not do yet.
    #[error("{0}")]
    Unsupported(&'static str),
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
    match store {
        StoreConfig::Fs { path } => {
            let fs = backend::fs::FsStore::new(name, path)
                .map_err(|e| RunError::Store(format!("{name}: {}: {e}", path.display())))?;
            Ok(Arc::new(fs))
        }
        StoreConfig::S3(cfg) => {
            let s3 = backend::s3::S3Store::new(name, cfg).map_err(|e| RunError::Store(e.to_string()))?;
            Ok(Arc::new(s3))
        }
    }
}

/// Starts the S3 listener for `config`: keys, store, TLS, bind.
pub async fn start(config: &Config) -> Result<server::Running, RunError> {
    config.server.check()?;
    let keyring = Arc::new(open_keyring(config)?);
    let primary = build_store("primary", &config.primary)?;
    let store: Arc<dyn ObjectStore> = match &config.mirror {
        None => primary,
        Some(m) if m.write == mirror::WriteMode::Async => {
            return Err(RunError::Unsupported(
                "mirror.write = \"async\" is not supported by this version yet; use \"sync\"",
            ));
        }
        Some(m) => Arc::new(mirror::Mirror::new(primary, build_store("mirror", &m.store)?, m.read)),
    };
    Ok(server::start(&config.server, &config.clients, store, keyring).await?)
}
