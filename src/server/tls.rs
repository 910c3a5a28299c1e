//! TLS: the server's rustls configuration (ring provider; TLS 1.2 and 1.3; ALPN h2 and
//! http/1.1; optional client certificates), the live server certificate ([`CertSlot`]: reloaded
//! from its files on change without touching established connections, a bad replacement refused
//! and the old one kept), and the development certificate authority behind `certs generate` and
//! the embedded default.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;

use crate::files::{FileError, write_private_file};

/// TLS setup errors.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: String,
        /// What is wrong.
        what: String,
    },
    /// rustls refused the certificate or key.
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
    /// Generating a certificate failed.
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    /// Writing generated files failed.
    #[error(transparent)]
    Write(#[from] FileError),
}

/// The rustls crypto provider used everywhere (ring; aws-lc is not compiled in).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server configuration from a PEM chain (leaf first) and a PEM private key, loaded once.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let slot = Arc::new(CertSlot::load(cert, key)?);
    server_config_with(slot, None)
}

/// A server configuration serving whatever `slot` holds at each handshake; with `client_ca`,
/// clients must present a certificate that chains to one of its certificates (mTLS).
pub fn server_config_with(slot: Arc<CertSlot>, client_ca: Option<&Path>) -> Result<Arc<ServerConfig>, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_chain(path)? {
                roots.add(cert)?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| TlsError::Pem {
                    path: path.display().to_string(),
                    what: format!("client CA: {e}"),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(slot);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The PEM certificates in `path` (at least one).
fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(pem_err(path))?
        .collect::<Result<_, _>>()
        .map_err(pem_err(path))?;
    if chain.is_empty() {
        return Err(TlsError::Pem {
            path: path.display().to_string(),
            what: "no certificate found".into(),
        });
    }
    Ok(chain)
}

fn pem_err(path: &Path) -> impl FnOnce(rustls::pki_types::pem::Error) -> TlsError + '_ {
    move |e| TlsError::Pem {
        path: path.display().to_string(),
        what: e.to_string(),
    }
}

/// A chain and its key from PEM files, checked to belong together.
fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = read_chain(cert)?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(pem_err(key))?;
    Ok(CertifiedKey::from_der(chain, key_der, &provider())?)
}

/// When a file was last changed, as far as a reload needs to know.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// The server certificate and key in use, from two files. New handshakes take whatever it holds;
/// established connections keep the certificate they were made with.
pub struct CertSlot {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' stamps when last read, good or bad (a bad pair is not retried until it changes).
    seen: Mutex<(Stamp, Stamp)>,
}

impl std::fmt::Debug for CertSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertSlot")
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

/// What [`CertSlot::reload`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// Neither file changed since the last look.
    Unchanged,
    /// A new certificate is served from now on.
    Replaced,
    /// The new files were refused (logged); the old certificate is still served.
    Refused,
}

impl CertSlot {
    /// Loads the pair; at startup a bad pair is an error.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let seen = (stamp(cert), stamp(key));
        let current = load_certified_key(cert, key)?;
        Ok(Self {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: RwLock::new(Arc::new(current)),
            seen: Mutex::new(seen),
        })
    }

    /// Re-reads the files if they changed (or always, with `force`: SIGHUP). A pair that does not
    /// load or does not match is refused with a warning and the old certificate kept.
    pub fn reload(&self, force: bool) -> Reload {
        let now = (stamp(&self.cert), stamp(&self.key));
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if !force && *seen == now {
                return Reload::Unchanged;
            }
            *seen = now;
        }
        match load_certified_key(&self.cert, &self.key) {
            Ok(new) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(new);
                tracing::info!(cert = %self.cert.display(), "tls certificate reloaded");
                Reload::Replaced
            }
            Err(e) => {
                tracing::warn!(
                    cert = %self.cert.display(),
                    error = %e,
                    "new tls certificate or key refused; still serving the previous one"
                );
                Reload::Refused
            }
        }
    }
}

impl ResolvesServerCert for CertSlot {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner())))
    }
}

/// The TLS side of a listener (the S3 one and the admin one alike): an acceptor whose
/// certificate follows its files ([`CertSlot`], polled every `every`, and at once on
/// [`LiveTls::reload_now`]), optionally requiring client certificates from a CA (mTLS). The
/// watcher stops when this is dropped.
pub struct LiveTls {
    acceptor: TlsAcceptor,
    reload: Arc<Notify>,
    watcher: tokio::task::JoinHandle<()>,
}

impl LiveTls {
    /// Loads `cert` and `key` (and `client_ca`), and starts watching the pair. Needs a runtime.
    pub fn start(cert: &Path, key: &Path, client_ca: Option<&Path>, every: Duration) -> Result<Self, TlsError> {
        let slot = Arc::new(CertSlot::load(cert, key)?);
        let config = server_config_with(Arc::clone(&slot), client_ca)?;
        let reload = Arc::new(Notify::new());
        let watcher = tokio::spawn(watch_certificate(slot, Arc::clone(&reload), every));
        Ok(Self {
            acceptor: TlsAcceptor::from(config),
            reload,
            watcher,
        })
    }

    /// The acceptor for new connections.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }

    /// Re-reads the certificate and key now (SIGHUP), changed or not; a bad pair is refused
    /// with a log line and the old one kept.
    pub fn reload_now(&self) {
        self.reload.notify_one();
    }
}

impl Drop for LiveTls {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

/// Polls the certificate files every `every` (and reloads at once when `now` is notified).
async fn watch_certificate(slot: Arc<CertSlot>, now: Arc<Notify>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        let force = tokio::select! {
            _ = tick.tick() => false,
            _ = now.notified() => true,
        };
        // Reading and parsing two small files: off the async workers all the same.
        let slot = Arc::clone(&slot);
        let _ = tokio::task::spawn_blocking(move || slot.reload(force)).await;
    }
}

/// Paths of a generated development certificate set.
pub struct DevCertFiles {
    /// The CA certificate clients trust.
    pub ca: std::path::PathBuf,
    /// Leaf then CA, for the server.
    pub chain: std::path::PathBuf,
    /// The server's private key (0600).
    pub key: std::path::PathBuf,
}

impl DevCertFiles {
    /// The file names used in `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            ca: dir.join("ca.pem"),
            chain: dir.join("server.pem"),
            key: dir.join("server-key.pem"),
        }
    }
}

/// Generates a development CA and a server certificate for `localhost`, `127.0.0.1`, `::1` and
/// `extra_hosts`, signed by it, into `dir`. The CA's key is not kept.
pub fn generate_dev_certs(dir: &Path, extra_hosts: &[String]) -> Result<DevCertFiles, TlsError> {
    let files = DevCertFiles::in_dir(dir);

    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "escrow-proxy development CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate()?;
    let ca = ca_params.self_signed(&ca_key)?;

    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    names.extend(extra_hosts.iter().cloned());
    let mut leaf_params = CertificateParams::new(names)?;
    leaf_params.distinguished_name.push(DnType::CommonName, "escrow-proxy");
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    let leaf_key = KeyPair::generate()?;
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key)?;

    std::fs::create_dir_all(dir).map_err(|e| TlsError::Pem {
        path: dir.display().to_string(),
        what: e.to_string(),
    })?;
    write_public(&files.ca, ca.pem().as_bytes())?;
    write_public(&files.chain, format!("{}{}", leaf.pem(), ca.pem()).as_bytes())?;
    write_private_file(&files.key, leaf_key.serialize_pem().as_bytes())?;
    Ok(files)
}

fn write_public(path: &Path, contents: &[u8]) -> Result<(), TlsError> {
    std::fs::write(path, contents).map_err(|e| TlsError::Pem {
        path: path.display().to_string(),
        what: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_certs_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = generate_dev_certs(dir.path(), &["proxy.internal".into()]).expect("generate");
        let config = server_config(&files.chain, &files.key).expect("loads");
        assert_eq!(config.alpn_protocols[0], b"h2");
        assert!(server_config(&files.ca, &dir.path().join("missing.pem")).is_err());
    }

    #[test]
    fn a_bad_replacement_is_refused_and_a_good_one_taken() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = generate_dev_certs(dir.path(), &[]).expect("generate");
        let slot = CertSlot::load(&files.chain, &files.key).expect("loads");
        let first = slot.current.read().expect("lock").cert[0].clone();
        assert_eq!(slot.reload(false), Reload::Unchanged);

        // A key that does not match the certificate: refused, the old pair kept.
        let other = tempfile::tempdir().expect("tempdir");
        let other_files = generate_dev_certs(other.path(), &[]).expect("generate");
        std::fs::copy(&other_files.key, &files.key).expect("copy key");
        assert_eq!(slot.reload(true), Reload::Refused);
        assert_eq!(slot.current.read().expect("lock").cert[0], first);
        // Garbage: refused too.
        std::fs::write(&files.chain, b"not a certificate").expect("write");
        assert_eq!(slot.reload(true), Reload::Refused);
        assert_eq!(slot.current.read().expect("lock").cert[0], first);

        // The matching new pair: taken.
        std::fs::copy(&other_files.chain, &files.chain).expect("copy chain");
        assert_eq!(slot.reload(true), Reload::Replaced);
        assert_ne!(slot.current.read().expect("lock").cert[0], first);
    }
}
