//! The SDK client of one store: [`S3StoreConfig`], the client built from it (TLS trust,
//! credentials, timeouts, retries, stalled-stream protection), and the per-request timeout
//! overrides.

use std::path::PathBuf;
use std::time::Duration;

use aws_credential_types::Credentials;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Region, RequestChecksumCalculation, ResponseChecksumValidation, StalledStreamProtectionConfig,
};
use aws_smithy_http_client::tls::rustls_provider::CryptoMode;
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::S3Store;
use crate::backend::BackendError;
use crate::secret::SecretString;

/// Time to establish a TCP (and TLS) connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time from sending a request to the response headers, for requests without a streamed body.
/// Not applied to PUT: there it would also cover uploading the whole body.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Time to response headers of a server-side copy or a multipart completion: the store answers
/// only when it has copied (S3 keeps such a connection alive with whitespace; s3s-fs took over
/// 60 s for one 4 GiB `UploadPartCopy`).
const COPY_READ_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// How long a body transfer may stall (zero throughput) before it fails.
const STALL_GRACE: Duration = Duration::from_secs(30);
/// Attempts for requests without a streamed body (the SDK's standard retry with backoff): one
/// retry, quickly, so a client's own retry policy stays in charge of longer waits. A mirrored
/// store makes one attempt ([`S3Store::without_retries`]): the other store is the retry.
pub(super) const MAX_ATTEMPTS: u32 = 2;
/// The SDK's first backoff before a retry.
const RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// How to reach and authenticate to one S3-compatible store.
#[derive(Debug, Clone)]
pub struct S3StoreConfig {
    /// Endpoint URL, `https://…` or `http://…` (tests, loopback). `None`: AWS's regional endpoint.
    pub endpoint: Option<String>,
    /// Region to sign for (`us-east-1`, `oss-cn-hangzhou`, …).
    pub region: String,
    /// Access key id.
    pub access_key: String,
    /// Secret access key.
    pub secret_key: SecretString,
    /// Path-style addressing (`endpoint/bucket/key`) instead of virtual hosts; MinIO and s3s need it.
    pub path_style: bool,
    /// Extra PEM CA certificates to trust besides the system roots (a private store's CA).
    pub ca_file: Option<PathBuf>,
    /// Whether the store honours `If-None-Match: *` and `If-Match` on PutObject and
    /// CompleteMultipartUpload atomically (AWS S3 does since 2024). `false`: conditional writes
    /// through the proxy are refused instead of being sent to a store that might ignore them.
    pub conditional_writes: bool,
}

impl S3Store {
    /// The same store making one attempt per request: for a mirrored store, where failing over
    /// to the other store replaces retrying this one (retries would multiply with the client's).
    pub fn without_retries(self) -> Self {
        let config = self
            .client
            .config()
            .to_builder()
            .retry_config(RetryConfig::disabled())
            .build();
        Self {
            client: Client::from_conf(config),
            ..self
        }
    }

    /// Builds the client (synchronously: no request is made). Fails if `ca_file` cannot be read or
    /// holds no valid PEM certificate.
    pub fn new(name: impl Into<String>, cfg: &S3StoreConfig) -> Result<Self, BackendError> {
        let name = name.into();
        let config_err = |message: String| BackendError::Upstream {
            store: name.clone(),
            message,
            retryable: false,
        };

        let mut trust = TrustStore::default(); // the system roots
        if let Some(path) = &cfg.ca_file {
            let pem =
                std::fs::read(path).map_err(|e| config_err(format!("cannot read ca_file {}: {e}", path.display())))?;
            check_pem(&pem).map_err(|e| config_err(format!("ca_file {}: {e}", path.display())))?;
            trust = trust.with_pem_certificate(pem);
        }
        let tls_context = TlsContext::builder()
            .with_trust_store(trust)
            .build()
            .map_err(|e| config_err(format!("tls setup: {e}")))?;
        let http_client = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .tls_context(tls_context)
            .build_https();

        let credentials = Credentials::new(
            &cfg.access_key,
            cfg.secret_key.expose(),
            None,
            None,
            "escrow-proxy-config",
        );
        let mut builder = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(cfg.region.clone()))
            .credentials_provider(credentials)
            .force_path_style(cfg.path_style)
            .http_client(http_client)
            .timeout_config(timeouts(Some(READ_TIMEOUT)))
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(MAX_ATTEMPTS)
                    .with_initial_backoff(RETRY_BACKOFF),
            )
            .stalled_stream_protection(
                StalledStreamProtectionConfig::enabled()
                    .grace_period(STALL_GRACE)
                    .build(),
            )
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(endpoint) = &cfg.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        Ok(Self {
            name,
            region: cfg.region.clone(),
            client: Client::from_conf(builder.build()),
            encodings: Default::default(),
            conditional_writes: cfg.conditional_writes,
        })
    }
}

/// The per-request override for server-side copies and completions ([`COPY_READ_TIMEOUT`]).
pub(super) fn copy_timeouts() -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::Config::builder().timeout_config(timeouts(Some(COPY_READ_TIMEOUT)))
}

/// Connect timeout always; `read` (time to response headers) unless `None`; never a timeout on
/// the whole operation or attempt, which would cut long transfers.
pub(super) fn timeouts(read: Option<Duration>) -> TimeoutConfig {
    let b = TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .disable_operation_timeout()
        .disable_operation_attempt_timeout();
    match read {
        Some(d) => b.read_timeout(d),
        None => b.disable_read_timeout(),
    }
    .build()
}

/// Checks that a CA file holds at least one certificate that rustls accepts as a root, so the
/// SDK (which only parses it lazily, and panics on failure) never sees a bad one.
fn check_pem(pem: &[u8]) -> Result<(), String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no PEM certificate found".to_owned());
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| e.to_string())?;
    }
    Ok(())
}
