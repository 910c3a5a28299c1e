//! The in-process test harness: the proxy (`escrow_proxy::start`) on `127.0.0.1:0` over real TLS
//! with freshly generated certificates, in front of either its own fs store or a real S3 server
//! (s3s-fs, in process on `127.0.0.1:0`), and `aws-sdk-s3` clients that trust the generated CA.
//!
//! Besides clients, the harness gives tests the store's side of the wire: the files where stored
//! objects end up (to scan them for plaintext) and a way to read and rewrite one object's stored
//! bytes and stored metadata (to tamper with them). Readiness needs no waiting: both servers are
//! bound before their start functions return.
//!
//! s3s-fs runs behind a thin wrapper ([`AwsLike`]) that restores the few AWS behaviours s3s-fs
//! 0.14.1 lacks and the proxy relies on from a store (bucket checks, `encoding-type=url`, the
//! 2 KB user-metadata limit); storage itself is s3s-fs's, untouched.
#![allow(dead_code)] // Each test crate uses a different part of this module.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use aws_credential_types::Credentials;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::{BehaviorVersion, Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_http_client::tls::rustls_provider::CryptoMode;
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
use aws_smithy_types::body::SdkBody;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64_URL};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use md5::{Digest as _, Md5};
use s3s::dto;
use s3s::{S3, S3Request, S3Response, S3Result, s3_error};
use sha2::Sha256;
use tempfile::TempDir;

use escrow_proxy::Service;
use escrow_proxy::backend::s3::S3StoreConfig;
use escrow_proxy::config::{ClientConfig, Config, KeysConfig, MirrorConfig, ServerConfig, StoreConfig, TlsFiles};
use escrow_proxy::mirror::{ReadMode, WriteMode};
use escrow_proxy::secret::SecretString;

#[path = "../shared/mod.rs"]
pub mod shared;

use shared::Vanished;

/// The access key S3 clients sign with (the proxy's only `[[clients]]` entry).
pub const ACCESS_KEY: &str = "AKIAESCROWHARNESS01";
/// Secret of [`ACCESS_KEY`].
pub const SECRET_KEY: &str = "escrow-harness-secret-key-0001";
/// Region of the proxy and the upstream.
pub const REGION: &str = "us-east-1";
/// Credentials the proxy uses toward the s3s-fs upstream.
pub const UPSTREAM_ACCESS_KEY: &str = "UPSTREAMHARNESS0001";
pub const UPSTREAM_SECRET_KEY: &str = "upstream-harness-secret-0001";

/// Distinctive bytes planted throughout every test plaintext; no stored file may contain them.
pub const MARKER: &[u8] = b"ESCROW-HARNESS-PLAINTEXT-MARKER/must-never-reach-the-store/42";
/// How often [`data_with_marker`] plants [`MARKER`].
const MARKER_EVERY: usize = 16 * 1024;

/// Plaintext segment size of the stored format (format version 1 default).
pub const SEGMENT: usize = 64 * 1024;
/// AES-GCM tag after each stored segment.
pub const TAG: usize = 16;
/// Stored stream header length.
pub const HEADER: usize = 32;
/// Stored stream trailer length.
pub const TRAILER: usize = 124;

/// Which store the proxy's primary is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    /// The proxy's own fs store (`StoreConfig::Fs`).
    Fs,
    /// A real S3 server: s3s-fs in process (`StoreConfig::S3`).
    S3sFs,
    /// s3s-fs as the primary, mirrored (`write = "sync"`) to the proxy's fs store.
    Mirrored,
}

/// Whether a client sends the SDK's default flexible checksums.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checksums {
    /// The SDK default: aws-chunked bodies with a CRC32 trailer on uploads, and response
    /// checksum validation on downloads.
    Default,
    /// Only when an operation requires them: plain bodies with `Content-Length`.
    WhenRequired,
}

/// A proxy in front of a store, with clients.
pub struct Harness {
    /// Which store is behind the proxy.
    pub kind: StoreKind,
    /// `https://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The PEM CA certificate the clients trust.
    pub ca_pem: Vec<u8>,
    /// Where the store keeps its files (fs store root, or s3s-fs root; the primary's when
    /// mirrored).
    pub store_dir: PathBuf,
    /// The mirror's fs store root, when mirrored.
    pub mirror_dir: Option<PathBuf>,
    /// SDK defaults: aws-chunked uploads with a CRC32 trailer.
    pub client: Client,
    /// `RequestChecksumCalculation::WhenRequired` and `ResponseChecksumValidation::WhenRequired`:
    /// plain bodies, and no checksum validation in the client (so what a test sees is what the
    /// proxy sent).
    pub plain_client: Client,
    proxy: Option<Service>,
    config: Config,
    upstream: Option<tokio::task::JoinHandle<()>>,
    outage: shared::Outage,
    dir: TempDir,
}

/// A second proxy in front of a harness's store ([`Harness::start_peer`]), with its clients.
pub struct Peer {
    /// `https://127.0.0.1:PORT` of this proxy.
    pub endpoint: String,
    /// SDK defaults (aws-chunked uploads with a CRC32 trailer).
    pub client: Client,
    /// Plain bodies, no checksum validation.
    pub plain_client: Client,
    proxy: Service,
}

impl Peer {
    /// Stops this proxy, waiting for its accept loop to end.
    pub async fn stop(self) {
        self.proxy.stop().await;
    }
}

/// One object as the store holds it: the stored stream and the stored user metadata (names
/// without `x-amz-meta-`).
#[derive(Clone, Debug)]
pub struct StoredObject {
    /// The stored bytes (header ‖ segments ‖ trailer).
    pub body: Vec<u8>,
    /// `escrow-v`, `escrow-kek`, `escrow-dek`, `escrow-meta`, ….
    pub metadata: BTreeMap<String, String>,
}

// === impl Harness ===

impl Harness {
    /// Starts the store (for s3s-fs) and the proxy, and builds the clients.
    pub async fn new(kind: StoreKind) -> Self {
        Self::build(kind, ReadMode::Primary, WriteMode::Sync).await
    }

    /// s3s-fs mirrored to an fs store, with the given modes.
    pub async fn mirrored(read: ReadMode, write: WriteMode) -> Self {
        Self::build(StoreKind::Mirrored, read, write).await
    }

    /// Switches an outage of the s3s-fs primary on or off (connections refused or cut).
    pub fn primary_outage(&self, on: bool) {
        self.outage.set(on);
    }

    async fn build(kind: StoreKind, read: ReadMode, write: WriteMode) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let dir = tempfile::Builder::new()
            .prefix("escrow-harness-")
            .tempdir()
            .expect("create tempdir");
        let certs =
            escrow_proxy::server::tls::generate_dev_certs(&dir.path().join("certs"), &[]).expect("generate dev certs");
        let ca_pem = std::fs::read(&certs.ca).expect("read ca.pem");

        let outage = shared::Outage::default();
        let (primary, store_dir, upstream) = match kind {
            StoreKind::Fs => {
                let path = dir.path().join("fs-store");
                (StoreConfig::Fs { path: path.clone() }, path, None)
            }
            StoreKind::S3sFs | StoreKind::Mirrored => {
                let path = dir.path().join("s3s-fs");
                std::fs::create_dir_all(&path).expect("mkdir s3s-fs root");
                let (addr, task) = start_s3s_fs(&path, outage.clone()).await;
                let cfg = S3StoreConfig {
                    endpoint: Some(format!("http://{addr}")),
                    region: REGION.into(),
                    access_key: UPSTREAM_ACCESS_KEY.into(),
                    secret_key: SecretString::new(UPSTREAM_SECRET_KEY.into()),
                    path_style: true,
                    ca_file: None,
                    conditional_writes: true,
                };
                (StoreConfig::S3(cfg), path, Some(task))
            }
        };
        let config = Config {
            server: ServerConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                tls: Some(TlsFiles {
                    cert: certs.chain.clone(),
                    key: certs.key.clone(),
                }),
                region: REGION.into(),
                limits: Default::default(),
                allow_plaintext_non_loopback: false,
                refuse_sse_kms: false,
            },
            clients: vec![ClientConfig {
                access_key: ACCESS_KEY.into(),
                secret_key: SecretString::new(SECRET_KEY.into()),
            }],
            primary,
            mirror: (kind == StoreKind::Mirrored).then(|| MirrorConfig {
                store: StoreConfig::Fs {
                    path: dir.path().join("mirror-fs"),
                },
                write,
                read,
                first_byte_timeout: std::time::Duration::from_millis(1500),
            }),
            keys: KeysConfig {
                keyring: dir.path().join("keys/keyring"),
                root_key_file: dir.path().join("keys/root.key"),
                mirror_bucket: None,
            },
            admin: None,
        };
        std::fs::create_dir_all(dir.path().join("keys")).expect("mkdir keys");
        let proxy = escrow_proxy::start(&config).await.expect("start the proxy");
        let endpoint = proxy.url();
        assert!(endpoint.starts_with("https://"), "proxy must serve TLS: {endpoint}");

        let client = sdk_client(&endpoint, &ca_pem, ACCESS_KEY, SECRET_KEY, Checksums::Default);
        let plain_client = sdk_client(&endpoint, &ca_pem, ACCESS_KEY, SECRET_KEY, Checksums::WhenRequired);
        Self {
            kind,
            endpoint,
            ca_pem,
            store_dir,
            mirror_dir: (kind == StoreKind::Mirrored).then(|| dir.path().join("mirror-fs")),
            client,
            plain_client,
            proxy: Some(proxy),
            config,
            upstream,
            outage,
            dir,
        }
    }

    /// The proxy's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A client of this proxy with any credentials.
    pub fn client_with(&self, access_key: &str, secret_key: &str, checksums: Checksums) -> Client {
        sdk_client(&self.endpoint, &self.ca_pem, access_key, secret_key, checksums)
    }

    /// Both clients, labelled, for tests that run a case through each.
    pub fn clients(&self) -> [(&'static str, &Client); 2] {
        [("chunked+crc32", &self.client), ("plain", &self.plain_client)]
    }

    /// A reqwest client trusting only the generated CA.
    pub fn http(&self) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(&self.ca_pem).expect("parse ca.pem");
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .build()
            .expect("reqwest client")
    }

    /// Like [`Harness::http`], but speaking HTTP/1.1 only (the SDK clients negotiate h2).
    pub fn http1(&self) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(&self.ca_pem).expect("parse ca.pem");
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .http1_only()
            .build()
            .expect("reqwest client")
    }

    /// Stops the proxy and starts a new one on the same store and keyring (a fresh process
    /// state: no caches), and points the clients at it.
    pub async fn restart_proxy(&mut self) {
        if let Some(proxy) = self.proxy.take() {
            proxy.stop().await;
        }
        let proxy = escrow_proxy::start(&self.config).await.expect("restart the proxy");
        self.endpoint = proxy.url();
        self.client = sdk_client(&self.endpoint, &self.ca_pem, ACCESS_KEY, SECRET_KEY, Checksums::Default);
        self.plain_client = sdk_client(
            &self.endpoint,
            &self.ca_pem,
            ACCESS_KEY,
            SECRET_KEY,
            Checksums::WhenRequired,
        );
        self.proxy = Some(proxy);
    }

    /// Starts another proxy with this one's configuration: the same store and keyring, its own
    /// listener and process state (as a second instance behind a load balancer would be).
    pub async fn start_peer(&self) -> Peer {
        let proxy = escrow_proxy::start(&self.config).await.expect("start a second proxy");
        let endpoint = proxy.url();
        Peer {
            client: sdk_client(&endpoint, &self.ca_pem, ACCESS_KEY, SECRET_KEY, Checksums::Default),
            plain_client: sdk_client(&endpoint, &self.ca_pem, ACCESS_KEY, SECRET_KEY, Checksums::WhenRequired),
            endpoint,
            proxy,
        }
    }

    /// Stops the proxy (and the upstream), waiting for the accept loop to end.
    pub async fn stop(mut self) {
        if let Some(proxy) = self.proxy.take() {
            proxy.stop().await;
        }
        if let Some(task) = self.upstream.take() {
            task.abort();
        }
    }

    // --- common client calls ---

    /// Creates a bucket through the proxy.
    pub async fn create_bucket(&self, bucket: &str) {
        create_bucket(&self.client, bucket).await;
    }

    /// Uploads `data` with `client`; returns the ETag the proxy answered.
    pub async fn put_with(&self, client: &Client, bucket: &str, key: &str, data: &[u8]) -> String {
        put_object(client, bucket, key, data).await
    }

    /// Uploads `data` with the plain client.
    pub async fn put(&self, bucket: &str, key: &str, data: &[u8]) -> String {
        self.put_with(&self.plain_client, bucket, key, data).await
    }

    /// Downloads a whole object with `client`.
    pub async fn get_with(&self, client: &Client, bucket: &str, key: &str) -> Vec<u8> {
        get_object(client, bucket, key).await
    }

    /// Downloads a whole object with the plain client.
    pub async fn get(&self, bucket: &str, key: &str) -> Vec<u8> {
        self.get_with(&self.plain_client, bucket, key).await
    }

    // --- the store's side ---

    /// Every file under the store's directory.
    pub fn stored_files(&self) -> Vec<PathBuf> {
        shared::files_under(&self.store_dir)
    }

    /// Asserts that no stored file contains `needle`; `what` names it in the failure. Returns
    /// how many bytes were scanned.
    pub fn assert_store_lacks(&self, needle: &[u8], what: &str) -> u64 {
        assert!(!needle.is_empty(), "empty needle");
        // A file removed between listing and reading (a temp file renamed into place) is skipped.
        let mut bytes = 0;
        for dir in std::iter::once(&self.store_dir).chain(self.mirror_dir.as_ref()) {
            let scanned = shared::assert_files_lack(dir, needle, Vanished::Skip, |file| {
                format!(
                    "{what} IN THE STORE IN CLEAR: {} contains {:?}",
                    file.display(),
                    String::from_utf8_lossy(needle)
                )
            });
            bytes += scanned.bytes;
        }
        bytes
    }

    /// Asserts that no stored file contains `marker`, and that the store is not empty (so the
    /// scan is not vacuous).
    pub fn assert_no_plaintext(&self, marker: &[u8]) {
        let scanned = self.assert_store_lacks(marker, "PLAINTEXT");
        assert!(
            scanned > 0,
            "the store at {} is empty: nothing was scanned",
            self.store_dir.display()
        );
    }

    /// The file holding the stored bytes of `bucket`/`key`.
    pub fn object_path(&self, bucket: &str, key: &str) -> PathBuf {
        match self.kind {
            StoreKind::Fs => self
                .store_dir
                .join(bucket)
                .join(hex::encode(Sha256::digest(key.as_bytes()))),
            StoreKind::S3sFs | StoreKind::Mirrored => self.store_dir.join(bucket).join(key),
        }
    }

    /// The stored bytes of `bucket`/`key` in the mirror's fs store, if it has the object.
    pub fn mirror_stored_body(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let dir = self.mirror_dir.as_ref().expect("a mirrored harness");
        let path = dir.join(bucket).join(hex::encode(Sha256::digest(key.as_bytes())));
        let file = std::fs::read(path).ok()?;
        Some(split_fs_object(&file).1.to_vec())
    }

    /// The stored bytes of `bucket`/`key` in the primary (s3s-fs), if it has the object.
    pub fn primary_stored_body(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.object_path(bucket, key)).ok()
    }

    /// s3s-fs's metadata sidecar of an object (`<root>/.bucket-<b64>.object-<b64>.metadata.json`).
    fn s3s_fs_metadata_path(&self, bucket: &str, key: &str) -> PathBuf {
        self.store_dir.join(format!(
            ".bucket-{}.object-{}.metadata.json",
            B64_URL.encode(bucket),
            B64_URL.encode(key)
        ))
    }

    /// Reads an object as the store holds it.
    pub fn stored_object(&self, bucket: &str, key: &str) -> StoredObject {
        let path = self.object_path(bucket, key);
        let file = std::fs::read(&path).unwrap_or_else(|e| panic!("read stored object {}: {e}", path.display()));
        match self.kind {
            StoreKind::Fs => {
                let (header, body) = split_fs_object(&file);
                let metadata = header["metadata"]
                    .as_object()
                    .expect("fs header has metadata")
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().expect("string metadata").to_string()))
                    .collect();
                StoredObject {
                    body: body.to_vec(),
                    metadata,
                }
            }
            StoreKind::S3sFs | StoreKind::Mirrored => {
                let sidecar = self.s3s_fs_metadata_path(bucket, key);
                let attrs: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&sidecar).expect("read s3s-fs metadata sidecar"))
                        .expect("s3s-fs metadata is JSON");
                let metadata = attrs["user_metadata"]
                    .as_object()
                    .expect("s3s-fs sidecar has user_metadata")
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().expect("string metadata").to_string()))
                    .collect();
                StoredObject { body: file, metadata }
            }
        }
    }

    /// Replaces what the store holds for `bucket`/`key` with `object`, keeping everything else
    /// the store records (the fs store's header fields, s3s-fs's other attributes) so the store
    /// itself serves it without complaint. The store's own ETag of the object is kept as it was:
    /// a store that lies about it too is the stronger attack.
    pub fn write_stored_object(&self, bucket: &str, key: &str, object: &StoredObject) {
        let path = self.object_path(bucket, key);
        match self.kind {
            StoreKind::Fs => write_fs_object(&path, object),
            StoreKind::S3sFs | StoreKind::Mirrored => {
                std::fs::write(&path, &object.body).expect("write stored body");
                let sidecar = self.s3s_fs_metadata_path(bucket, key);
                let mut attrs: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&sidecar).expect("read s3s-fs metadata sidecar"))
                        .expect("s3s-fs metadata is JSON");
                attrs["user_metadata"] = serde_json::to_value(&object.metadata).expect("metadata to JSON");
                std::fs::write(&sidecar, serde_json::to_vec(&attrs).expect("JSON")).expect("write sidecar");
            }
        }
        // Mirrored: the same change in the mirror too, so a test's tampering is not simply
        // answered by the other store's intact copy (tests/s3_api/mirror.rs covers that).
        if let Some(dir) = &self.mirror_dir {
            write_fs_object(
                &dir.join(bucket).join(hex::encode(Sha256::digest(key.as_bytes()))),
                object,
            );
        }
    }

    /// Rewrites the stored bytes of an object in place.
    pub fn rewrite_body(&self, bucket: &str, key: &str, f: impl FnOnce(&mut Vec<u8>)) {
        let mut object = self.stored_object(bucket, key);
        f(&mut object.body);
        self.write_stored_object(bucket, key, &object);
    }

    /// Rewrites the stored metadata of an object in place.
    pub fn rewrite_metadata(&self, bucket: &str, key: &str, f: impl FnOnce(&mut BTreeMap<String, String>)) {
        let mut object = self.stored_object(bucket, key);
        f(&mut object.metadata);
        self.write_stored_object(bucket, key, &object);
    }
}

/// First bytes of an fs-store object file, and the length of magic plus header length.
const FS_MAGIC: &[u8; 8] = b"EPFSOBJ1";
const FS_PREAMBLE: usize = 12;

/// Replaces the body and metadata of the fs-store object file at `path`, keeping its other
/// header fields.
fn write_fs_object(path: &Path, object: &StoredObject) {
    let file = std::fs::read(path).expect("read stored object");
    let (mut header, _) = split_fs_object(&file);
    header["metadata"] = serde_json::to_value(&object.metadata).expect("metadata to JSON");
    header["size"] = serde_json::Value::from(object.body.len() as u64);
    let json = serde_json::to_vec(&header).expect("header to JSON");
    let mut out = Vec::with_capacity(FS_PREAMBLE + json.len() + object.body.len());
    out.extend_from_slice(FS_MAGIC);
    out.extend_from_slice(&u32::try_from(json.len()).expect("header fits u32").to_be_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&object.body);
    std::fs::write(path, out).expect("write stored object");
}

/// Splits an fs-store object file into its JSON header and the stored body.
fn split_fs_object(file: &[u8]) -> (serde_json::Value, &[u8]) {
    assert!(
        file.len() >= FS_PREAMBLE && &file[..8] == FS_MAGIC,
        "not an fs-store object file"
    );
    let len = u32::from_be_bytes(file[8..12].try_into().expect("4 bytes")) as usize;
    let header = serde_json::from_slice(&file[FS_PREAMBLE..FS_PREAMBLE + len]).expect("fs header is JSON");
    (header, &file[FS_PREAMBLE + len..])
}

/// An `aws-sdk-s3` client of `endpoint`: path style, TLS trusting `ca_pem` only, no retries (a
/// test sees every answer as it is).
pub fn sdk_client(endpoint: &str, ca_pem: &[u8], access_key: &str, secret_key: &str, checksums: Checksums) -> Client {
    let tls_context = TlsContext::builder()
        .with_trust_store(TrustStore::empty().with_pem_certificate(ca_pem.to_vec()))
        .build()
        .expect("tls context");
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .tls_context(tls_context)
        .build_https();
    let (request, response) = match checksums {
        Checksums::Default => (
            RequestChecksumCalculation::WhenSupported,
            ResponseChecksumValidation::WhenSupported,
        ),
        Checksums::WhenRequired => (
            RequestChecksumCalculation::WhenRequired,
            ResponseChecksumValidation::WhenRequired,
        ),
    };
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(access_key, secret_key, None, None, "harness"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .http_client(http)
        .retry_config(RetryConfig::disabled())
        .request_checksum_calculation(request)
        .response_checksum_validation(response)
        .build();
    Client::from_conf(config)
}

// === client calls that must succeed ===

/// CreateBucket with `client`.
pub async fn create_bucket(client: &Client, bucket: &str) {
    client
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .unwrap_or_else(|e| panic!("create bucket {bucket}: {}", DisplayErrorContext(&e)));
}

/// PutObject of `data` (a plain body) with `client`; returns the ETag the proxy answered.
pub async fn put_object(client: &Client, bucket: &str, key: &str, data: &[u8]) -> String {
    let out = client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(data.to_vec()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {bucket}/{key} ({} bytes): {}", data.len(), DisplayErrorContext(&e)));
    out.e_tag().expect("PutObject answers an ETag").to_string()
}

/// GetObject's whole body with `client`.
pub async fn get_object(client: &Client, bucket: &str, key: &str) -> Vec<u8> {
    let out = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("get {bucket}/{key}: {}", DisplayErrorContext(&e)));
    out.body.collect().await.expect("read GET body").to_vec()
}

// === multipart ===

/// S3's smallest part other than the last.
pub const MIN_PART: usize = 5 << 20;

/// The ETag S3 answers for a multipart object of `parts`: the quoted hex MD5 of the parts' MD5s,
/// `-`, the part count.
pub fn multipart_etag(parts: &[&[u8]]) -> String {
    let mut md5 = Md5::new();
    for part in parts {
        md5.update(Md5::digest(part));
    }
    format!("\"{}-{}\"", hex::encode(md5.finalize()), parts.len())
}

/// Uploads `parts` as parts 1..=n of one multipart upload with `client`, in order, and completes
/// it; returns the ETag the proxy answered.
pub async fn upload_multipart(client: &Client, bucket: &str, key: &str, parts: &[&[u8]]) -> String {
    let what = |e: &dyn std::fmt::Display| format!("multipart {bucket}/{key}: {e}");
    let id = client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{}", what(&DisplayErrorContext(&e))))
        .upload_id()
        .expect("CreateMultipartUpload answers an upload id")
        .to_string();
    let mut completed = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        let number = i as i32 + 1;
        let out = client
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(&id)
            .part_number(number)
            .body(ByteStream::from(part.to_vec()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}", what(&DisplayErrorContext(&e))));
        completed.push(
            aws_sdk_s3::types::CompletedPart::builder()
                .part_number(number)
                .e_tag(out.e_tag().expect("UploadPart answers an ETag"))
                .build(),
        );
    }
    client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(&id)
        .multipart_upload(
            aws_sdk_s3::types::CompletedMultipartUpload::builder()
                .set_parts(Some(completed))
                .build(),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("{}", what(&DisplayErrorContext(&e))))
        .e_tag()
        .expect("CompleteMultipartUpload answers an ETag")
        .to_string()
}

/// Where each part's stream lies in a stored multipart object whose parts have plaintext lengths
/// `part_lens` (FORMAT.md §5.1); the sealed manifest and its length follow the last one.
pub fn part_streams(part_lens: &[usize]) -> Vec<std::ops::Range<usize>> {
    let mut at = 0;
    part_lens
        .iter()
        .map(|&len| {
            let range = at..at + stored_len(len);
            at = range.end;
            range
        })
        .collect()
}

/// Starts s3s-fs (behind [`AwsLike`]) over `root` on `127.0.0.1:0` in the current runtime.
pub async fn start_s3s_fs(root: &Path, outage: shared::Outage) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let fs = s3s_fs::FileSystem::new(root).expect("s3s-fs FileSystem::new");
    let aws_like = AwsLike {
        fs,
        root: root.to_path_buf(),
    };
    let (addr, accept) =
        shared::bind_s3_server_with_switch(aws_like, UPSTREAM_ACCESS_KEY, UPSTREAM_SECRET_KEY, outage).await;
    (addr, tokio::spawn(accept))
}

/// s3s-fs with the few AWS behaviours that s3s-fs 0.14.1 lacks and the proxy relies on from its
/// store (the same corrections as the unit tests' wrapper in `src/backend/s3.rs`). Raw s3s-fs:
/// - answers GET in a missing bucket with `NoSuchKey` (AWS: `NoSuchBucket`);
/// - creates a missing bucket on PUT (AWS: `NoSuchBucket`);
/// - deletes a non-empty bucket with everything in it (AWS: `BucketNotEmpty`);
/// - echoes `encoding-type=url` in listings without encoding the keys, so a client that decodes
///   (the proxy, like botocore) turns `+` into a space and fails on `%`;
/// - ignores `If-Match` on GET;
/// - fails a suffix range longer than the object with 500 (AWS: the whole object, as a 206);
/// - accepts any amount of user metadata (AWS: at most 2 KB of names and values, else
///   `400 MetadataTooLarge`).
///
/// Storage is untouched: bodies stay plain files at `<root>/<bucket>/<key>`, metadata in the
/// sidecar JSON files.
/// AWS's limit on the user metadata of one object: bytes of every name and value.
pub const S3_USER_METADATA_LIMIT: usize = 2048;

struct AwsLike {
    fs: s3s_fs::FileSystem,
    root: PathBuf,
}

impl AwsLike {
    fn bucket_exists(&self, bucket: &str) -> bool {
        self.root.join(bucket).is_dir()
    }
}

#[async_trait::async_trait]
impl S3 for AwsLike {
    async fn list_buckets(
        &self,
        req: S3Request<dto::ListBucketsInput>,
    ) -> S3Result<S3Response<dto::ListBucketsOutput>> {
        self.fs.list_buckets(req).await
    }

    async fn create_bucket(
        &self,
        req: S3Request<dto::CreateBucketInput>,
    ) -> S3Result<S3Response<dto::CreateBucketOutput>> {
        self.fs.create_bucket(req).await
    }

    async fn head_bucket(&self, req: S3Request<dto::HeadBucketInput>) -> S3Result<S3Response<dto::HeadBucketOutput>> {
        self.fs.head_bucket(req).await
    }

    async fn delete_bucket(
        &self,
        req: S3Request<dto::DeleteBucketInput>,
    ) -> S3Result<S3Response<dto::DeleteBucketOutput>> {
        let dir = self.root.join(&req.input.bucket);
        if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
            return Err(s3_error!(BucketNotEmpty));
        }
        self.fs.delete_bucket(req).await
    }

    async fn put_object(&self, req: S3Request<dto::PutObjectInput>) -> S3Result<S3Response<dto::PutObjectOutput>> {
        if !self.bucket_exists(&req.input.bucket) {
            return Err(s3_error!(NoSuchBucket));
        }
        let metadata: usize = req
            .input
            .metadata
            .iter()
            .flatten()
            .map(|(k, v)| k.len() + v.len())
            .sum();
        if metadata > S3_USER_METADATA_LIMIT {
            return Err(s3_error!(MetadataTooLarge));
        }
        self.fs.put_object(req).await
    }

    async fn get_object(&self, mut req: S3Request<dto::GetObjectInput>) -> S3Result<S3Response<dto::GetObjectOutput>> {
        if !self.bucket_exists(&req.input.bucket) {
            return Err(s3_error!(NoSuchBucket));
        }
        let if_match = req.input.if_match.clone();
        if let Some(dto::Range::Suffix { length }) = req.input.range {
            let path = self.root.join(&req.input.bucket).join(&req.input.key);
            if std::fs::metadata(&path).is_ok_and(|m| length >= m.len()) {
                req.input.range = Some(dto::Range::Int { first: 0, last: None });
            }
        }
        let resp = self.fs.get_object(req).await?;
        if let Some(dto::ETagCondition::ETag(expected)) = if_match
            && !resp.output.e_tag.as_ref().is_some_and(|t| t.strong_cmp(&expected))
        {
            return Err(s3_error!(PreconditionFailed));
        }
        Ok(resp)
    }

    async fn head_object(&self, req: S3Request<dto::HeadObjectInput>) -> S3Result<S3Response<dto::HeadObjectOutput>> {
        self.fs.head_object(req).await
    }

    async fn delete_object(
        &self,
        req: S3Request<dto::DeleteObjectInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectOutput>> {
        self.fs.delete_object(req).await
    }

    // The server-side copy operations the proxy's S3 store composes objects with.
    async fn copy_object(&self, req: S3Request<dto::CopyObjectInput>) -> S3Result<S3Response<dto::CopyObjectOutput>> {
        self.fs.copy_object(req).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<dto::CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CreateMultipartUploadOutput>> {
        self.fs.create_multipart_upload(req).await
    }

    async fn upload_part(&self, req: S3Request<dto::UploadPartInput>) -> S3Result<S3Response<dto::UploadPartOutput>> {
        self.fs.upload_part(req).await
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<dto::UploadPartCopyInput>,
    ) -> S3Result<S3Response<dto::UploadPartCopyOutput>> {
        self.fs.upload_part_copy(req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<dto::CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CompleteMultipartUploadOutput>> {
        self.fs.complete_multipart_upload(req).await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<dto::AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::AbortMultipartUploadOutput>> {
        self.fs.abort_multipart_upload(req).await
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<dto::ListObjectsV2Input>,
    ) -> S3Result<S3Response<dto::ListObjectsV2Output>> {
        let url = req
            .input
            .encoding_type
            .as_ref()
            .is_some_and(|e| e.as_str() == dto::EncodingType::URL);
        let mut resp = self.fs.list_objects_v2(req).await?;
        if url {
            let out = &mut resp.output;
            for o in out.contents.iter_mut().flatten() {
                o.key = o.key.as_deref().map(s3_url_encode);
            }
            for p in out.common_prefixes.iter_mut().flatten() {
                p.prefix = p.prefix.as_deref().map(s3_url_encode);
            }
        }
        Ok(resp)
    }
}

/// S3's `encoding-type=url` form: unreserved characters and `/` as they are, `+` for a space,
/// `%XX` for every other byte.
fn s3_url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b' ' => "+".to_owned(),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// === data ===

/// `len` random bytes with [`MARKER`] planted at the start, every 16 KiB and at the end (as far
/// as it fits).
pub fn data_with_marker(len: usize) -> Vec<u8> {
    shared::random_with_marker(len, MARKER, MARKER_EVERY)
}

/// Hex MD5.
pub fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

/// The ETag S3 answers for a single-part object: the quoted hex MD5.
pub fn etag_of(data: &[u8]) -> String {
    format!("\"{}\"", md5_hex(data))
}

/// Base64 of a digest (the form of `x-amz-checksum-*` and `Content-MD5`).
pub fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// Decodes standard base64.
pub fn unb64(s: &str) -> Vec<u8> {
    B64.decode(s).expect("valid base64")
}

// === stored layout ===

/// Stored (ciphertext) length of a plaintext of `len` bytes.
pub fn stored_len(len: usize) -> usize {
    let segments = len.div_ceil(SEGMENT).max(1);
    HEADER + len + segments * TAG + TRAILER
}

/// Where segment `i` (with its tag) lies in the stored stream of a `len`-byte plaintext.
pub fn segment_range(len: usize, i: usize) -> std::ops::Range<usize> {
    let start = HEADER + i * (SEGMENT + TAG);
    let plain = (len - i * SEGMENT).min(SEGMENT);
    start..start + plain + TAG
}

// === a large object without holding it ===

/// A large plaintext produced on the fly: 64 KiB blocks, each a shared random block stamped with
/// its index (so no two blocks are equal) and [`MARKER`].
#[derive(Clone)]
pub struct BigObject {
    base: Arc<[u8]>,
    /// Length in bytes.
    pub len: u64,
}

/// Bytes per frame of a [`BigObject`] body.
const BIG_CHUNK: usize = 4 * SEGMENT;

impl BigObject {
    /// A fresh object of `len` bytes.
    pub fn new(len: u64) -> Self {
        let mut base = vec![0u8; SEGMENT];
        rand::fill(&mut base[..]);
        Self { base: base.into(), len }
    }

    /// Bytes `offset..offset+n` where `offset` is a multiple of [`SEGMENT`].
    fn chunk(&self, offset: u64, n: usize) -> Vec<u8> {
        debug_assert_eq!(offset % SEGMENT as u64, 0);
        let mut out = Vec::with_capacity(n);
        let mut block = offset / SEGMENT as u64;
        while out.len() < n {
            let start = out.len();
            out.extend_from_slice(&self.base);
            out[start..start + 8].copy_from_slice(&block.to_le_bytes());
            out[start + 8..start + 8 + MARKER.len()].copy_from_slice(MARKER);
            block += 1;
        }
        out.truncate(n);
        out
    }

    /// The whole plaintext's SHA-256 and MD5 (hex), computed block by block.
    pub fn digests(&self) -> (String, String) {
        let mut sha = Sha256::new();
        let mut md5 = Md5::new();
        let mut offset = 0;
        while offset < self.len {
            let n = (self.len - offset).min(BIG_CHUNK as u64) as usize;
            let chunk = self.chunk(offset, n);
            sha.update(&chunk);
            md5.update(&chunk);
            offset += n as u64;
        }
        (hex::encode(sha.finalize()), hex::encode(md5.finalize()))
    }

    /// Plaintext bytes `range`.
    pub fn slice(&self, range: std::ops::Range<u64>) -> Vec<u8> {
        let aligned = range.start - range.start % SEGMENT as u64;
        let chunk = self.chunk(aligned, (range.end - aligned) as usize);
        chunk[(range.start - aligned) as usize..].to_vec()
    }

    /// A streaming, retryable SDK body of the whole object, with an exact size hint.
    pub fn byte_stream(&self) -> ByteStream {
        let this = self.clone();
        ByteStream::new(SdkBody::retryable(move || {
            SdkBody::from_body_1_x(BigBody {
                object: this.clone(),
                offset: 0,
            })
        }))
    }
}

struct BigBody {
    object: BigObject,
    offset: u64,
}

impl http_body::Body for BigBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        if this.offset >= this.object.len {
            return Poll::Ready(None);
        }
        let n = (this.object.len - this.offset).min(BIG_CHUNK as u64) as usize;
        let chunk = this.object.chunk(this.offset, n);
        this.offset += n as u64;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
    }

    fn is_end_stream(&self) -> bool {
        self.offset >= self.object.len
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.object.len - self.offset)
    }
}

// === errors and outcomes ===

/// What a test wants to know about a failed SDK call.
pub trait ErrorExt {
    /// The HTTP status, 0 without a response.
    fn http_status(&self) -> u16;
    /// The S3 error code, "" when the response had none (HEAD, 304).
    fn s3_code(&self) -> String;
    /// The S3 error message, "" when none.
    fn s3_message(&self) -> String;
    /// Everything, for failure messages.
    fn describe(&self) -> String;
}

impl<E> ErrorExt for SdkError<E, HttpResponse>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    fn http_status(&self) -> u16 {
        self.raw_response().map_or(0, |r| r.status().as_u16())
    }

    fn s3_code(&self) -> String {
        self.code().unwrap_or_default().to_string()
    }

    fn s3_message(&self) -> String {
        self.message().unwrap_or_default().to_string()
    }

    fn describe(&self) -> String {
        format!(
            "status {} code {:?}: {}",
            self.http_status(),
            self.s3_code(),
            DisplayErrorContext(self)
        )
    }
}

/// Asserts that `result` failed with `status` and (unless `code` is empty) `code`.
#[track_caller]
pub fn assert_s3_error<T: std::fmt::Debug, E: ErrorExt>(
    result: Result<T, E>,
    status: u16,
    code: &str,
    what: &str,
) -> E {
    match result {
        Ok(v) => panic!("{what}: expected {status} {code}, got success: {v:?}"),
        Err(e) => {
            assert_eq!(e.http_status(), status, "{what}: {}", e.describe());
            if !code.is_empty() {
                assert_eq!(e.s3_code(), code, "{what}: {}", e.describe());
            }
            e
        }
    }
}

/// How a GET ended, as the client saw it.
#[derive(Debug)]
pub enum GetOutcome {
    /// An S3 error before any body byte.
    Refused {
        /// HTTP status.
        status: u16,
        /// S3 error code.
        code: String,
        /// S3 error message.
        message: String,
    },
    /// The connection failed before a complete response head arrived (the server hung up).
    NoResponse {
        /// The transport error.
        error: String,
    },
    /// Headers arrived, then the body broke off.
    Aborted {
        /// Bytes received before the break.
        received: Vec<u8>,
        /// Declared `Content-Length`.
        content_length: i64,
        /// The body error.
        error: String,
    },
    /// A complete response.
    Complete {
        /// The body.
        body: Vec<u8>,
        /// `Content-Length`.
        content_length: i64,
        /// `Content-Range`, for ranged reads.
        content_range: Option<String>,
        /// ETag.
        etag: Option<String>,
    },
}

/// GETs `bucket`/`key` (optionally a `Range`), reading the body to its end or its failure.
pub async fn try_get(client: &Client, bucket: &str, key: &str, range: Option<&str>) -> GetOutcome {
    let mut req = client.get_object().bucket(bucket).key(key);
    if let Some(r) = range {
        req = req.range(r);
    }
    let out = match req.send().await {
        Ok(out) => out,
        Err(e) if e.raw_response().is_none() => {
            return GetOutcome::NoResponse {
                error: DisplayErrorContext(&e).to_string(),
            };
        }
        Err(e) => {
            return GetOutcome::Refused {
                status: e.http_status(),
                code: e.s3_code(),
                message: e.s3_message(),
            };
        }
    };
    let content_length = out.content_length().unwrap_or(-1);
    let content_range = out.content_range().map(str::to_string);
    let etag = out.e_tag().map(str::to_string);
    let mut body = out.body;
    let mut received = Vec::new();
    loop {
        match body.next().await {
            None => break,
            Some(Ok(chunk)) => received.extend_from_slice(&chunk),
            Some(Err(e)) => {
                return GetOutcome::Aborted {
                    received,
                    content_length,
                    error: DisplayErrorContext(&e).to_string(),
                };
            }
        }
    }
    GetOutcome::Complete {
        body: received,
        content_length,
        content_range,
        etag,
    }
}

// === URL decoding (encoding-type=url answers) ===

/// Decodes `%XX` escapes and `+` (as S3's `encoding-type=url` may use either for a space).
pub fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ascii escape");
                out.push(u8::from_str_radix(hex, 16).expect("hex escape"));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).expect("decoded key is UTF-8")
}

// === SigV4 by hand (aws-chunked tests build signed bodies chunk by chunk) ===

/// SigV4 signing for one request time with the harness's credentials: the timestamp, the
/// credential scope and the signing key.
pub struct Signer {
    /// `YYYYMMDDTHHMMSSZ`.
    pub timestamp: String,
    /// `YYYYMMDD/region/s3/aws4_request`.
    pub scope: String,
    key: ring::hmac::Key,
}

impl Signer {
    /// The signer for requests made at `now`.
    pub fn new(now: time::OffsetDateTime) -> Self {
        let timestamp = now
            .format(time::macros::format_description!(
                "[year][month][day]T[hour][minute][second]Z"
            ))
            .expect("format x-amz-date");
        let date = &timestamp[..8];
        let mut key = hmac_sha256(format!("AWS4{SECRET_KEY}").as_bytes(), date.as_bytes());
        for part in [REGION, "s3", "aws4_request"] {
            key = hmac_sha256(&key, part.as_bytes());
        }
        Self {
            scope: format!("{date}/{REGION}/s3/aws4_request"),
            timestamp,
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key),
        }
    }

    /// Hex HMAC-SHA256 of `string_to_sign` under the signing key.
    pub fn sign(&self, string_to_sign: &str) -> String {
        hex::encode(ring::hmac::sign(&self.key, string_to_sign.as_bytes()).as_ref())
    }
}

/// HMAC-SHA256 of `msg` under `key`.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key), msg)
        .as_ref()
        .to_vec()
}

/// Lowercase hex SHA-256, as SigV4 writes payload hashes.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}
