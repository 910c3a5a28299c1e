//! TLS: the server's rustls configuration (ring provider; TLS 1.2 and 1.3; ALPN h2 and
//! http/1.1) and the development certificate authority behind `certs generate` and the
//! embedded default.

use std::path::Path;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

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

/// A server configuration from a PEM chain (leaf first) and a PEM private key.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let pem_err = |path: &Path| {
        let path = path.display().to_string();
        move |e: rustls::pki_types::pem::Error| TlsError::Pem {
            path,
            what: e.to_string(),
        }
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(pem_err(cert))?
        .collect::<Result<_, _>>()
        .map_err(pem_err(cert))?;
    if chain.is_empty() {
        return Err(TlsError::Pem {
            path: cert.display().to_string(),
            what: "no certificate found".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(pem_err(key))?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
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
}
