//! A store behind any S3-compatible endpoint (AWS, Alibaba OSS, MinIO, s3s-fs), through
//! `aws-sdk-s3`.
//!
//! This module owns the SDK client for one store and the translation of SDK errors into
//! [`BackendError`]s that say whether a retry is safe. It must never:
//! - load configuration from the environment or profiles: everything comes from
//!   [`S3StoreConfig`], so what the operator configured is what runs;
//! - send aws-chunked bodies, trailers or checksums the store did not ask for: every PUT carries a
//!   plain body with an exact `Content-Length` (Alibaba OSS rejects aws-chunked);
//! - retry a PUT whose body is a stream, or cut a long transfer with a total-operation timeout
//!   (stalls are caught by the SDK's stalled-stream protection instead);
//! - put credentials, object bodies or the store's free-text error messages into errors.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_credential_types::Credentials;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Region, RequestChecksumCalculation, ResponseChecksumValidation, StalledStreamProtectionConfig,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream as SdkByteStream, DateTime};
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration, EncodingType};
use aws_smithy_http_client::tls::rustls_provider::CryptoMode;
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;
use futures::{Stream, TryStreamExt};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::backend::{
    BackendError, BackendResult, BucketInfo, ByteRange, ByteStream, GetObject, ListEntry, ListPage, ListQuery,
    Metadata, ObjectHead, ObjectStore,
};
use crate::secret::SecretString;

/// Time to establish a TCP (and TLS) connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time from sending a request to the response headers, for requests without a streamed body.
/// Not applied to PUT: there it would also cover uploading the whole body.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a body transfer may stall (zero throughput) before it fails.
const STALL_GRACE: Duration = Duration::from_secs(30);
/// Attempts for requests without a streamed body (the SDK's standard retry with backoff).
const MAX_ATTEMPTS: u32 = 3;
/// Largest listing page S3 returns.
const MAX_LIST_KEYS: i32 = 1000;
/// The one region where CreateBucket must not carry a location constraint.
const DEFAULT_REGION: &str = "us-east-1";

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
}

/// An [`ObjectStore`] on an S3-compatible endpoint.
#[derive(Clone)]
pub struct S3Store {
    name: String,
    region: String,
    client: Client,
}

impl fmt::Debug for S3Store {
    /// Name and region only: the client's own `Debug` would print its whole configuration.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("name", &self.name)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// Which resource a bare 404 (no error code, as for HEAD) refers to.
#[derive(Clone, Copy)]
enum Missing {
    Bucket,
    Key,
}

// === impl S3Store ===

impl S3Store {
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
            .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
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
        })
    }

    /// Maps an SDK error to a [`BackendError`]; `op` names the operation in messages.
    fn error<E>(&self, op: &str, missing: Missing, err: SdkError<E, HttpResponse>) -> BackendError
    where
        E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    {
        let upstream = |message: String, retryable: bool| BackendError::Upstream {
            store: self.name.clone(),
            message: format!("{op}: {message}"),
            retryable,
        };
        let (code, status) = match &err {
            SdkError::ServiceError(e) => (e.err().code().map(str::to_owned), e.raw().status().as_u16()),
            // An answer we could not read: cut off or garbled in transit unless the store
            // refused the request (4xx), whose code we then map below.
            SdkError::ResponseError(e) if !e.raw().status().is_client_error() => {
                return upstream(describe(&err), true);
            }
            SdkError::ResponseError(e) => (None, e.raw().status().as_u16()),
            // Timeouts and connection failures: the store may be back later. (A streamed PUT is
            // never retried by us nor the SDK; the caller decides.)
            SdkError::TimeoutError(_) => return upstream(describe(&err), true),
            // A dispatch failure caused by the request itself, or a TLS handshake the store
            // failed (untrusted certificate, wrong name), will fail the same way again.
            SdkError::DispatchFailure(e) => {
                let retryable = !e.is_user() && !has_tls_error(&err);
                return upstream(describe(&err), retryable);
            }
            _ => return upstream(describe(&err), false),
        };
        match (code.as_deref(), status) {
            (Some("NoSuchBucket"), _) => BackendError::NoSuchBucket,
            (Some("NoSuchKey"), _) => BackendError::NoSuchKey,
            (Some("BucketAlreadyExists" | "BucketAlreadyOwnedByYou"), _) => BackendError::BucketAlreadyExists,
            (Some("BucketNotEmpty"), _) => BackendError::BucketNotEmpty,
            (Some("PreconditionFailed"), _) | (_, 412) => BackendError::PreconditionFailed,
            (Some("InvalidRange"), _) | (_, 416) => BackendError::InvalidRange,
            // The client's own argument, passed through (a continuation token, a bucket name).
            (Some("InvalidArgument"), 400) => BackendError::InvalidArgument("refused by the store"),
            (Some("InvalidBucketName"), 400) => BackendError::InvalidArgument("invalid bucket name"),
            (Some("NotFound") | None, 404) => match missing {
                Missing::Bucket => BackendError::NoSuchBucket,
                Missing::Key => BackendError::NoSuchKey,
            },
            (code, status) => {
                let code = code.unwrap_or("no error code");
                let retryable = status >= 500
                    || status == 429
                    || matches!(
                        code,
                        "RequestTimeout" | "SlowDown" | "Throttling" | "ThrottlingException"
                    );
                upstream(format!("{code} (HTTP {status})"), retryable)
            }
        }
    }

    fn protocol_error(&self, message: &str) -> BackendError {
        BackendError::Upstream {
            store: self.name.clone(),
            message: message.to_owned(),
            retryable: false,
        }
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    fn name(&self) -> &str {
        &self.name
    }

    async fn list_buckets(&self) -> BackendResult<Vec<BucketInfo>> {
        let mut buckets = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .client
                .list_buckets()
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| self.error("ListBuckets", Missing::Bucket, e))?;
            for b in out.buckets() {
                let Some(name) = b.name() else { continue };
                buckets.push(BucketInfo {
                    name: name.to_owned(),
                    created: b.creation_date().and_then(system_time),
                });
            }
            token = out.continuation_token().filter(|t| !t.is_empty()).map(str::to_owned);
            if token.is_none() {
                buckets.sort_by(|a, b| a.name.cmp(&b.name));
                return Ok(buckets);
            }
        }
    }

    async fn create_bucket(&self, bucket: &str) -> BackendResult<()> {
        let location = (self.region != DEFAULT_REGION).then(|| {
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(self.region.as_str()))
                .build()
        });
        self.client
            .create_bucket()
            .bucket(bucket)
            .set_create_bucket_configuration(location)
            .send()
            .await
            .map_err(|e| self.error("CreateBucket", Missing::Bucket, e))?;
        Ok(())
    }

    async fn head_bucket(&self, bucket: &str) -> BackendResult<()> {
        self.client
            .head_bucket()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| self.error("HeadBucket", Missing::Bucket, e))?;
        Ok(())
    }

    async fn delete_bucket(&self, bucket: &str) -> BackendResult<()> {
        self.client
            .delete_bucket()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| self.error("DeleteBucket", Missing::Bucket, e))?;
        Ok(())
    }

    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: ByteStream,
        len: u64,
        metadata: Metadata,
    ) -> BackendResult<String> {
        let content_length = i64::try_from(len).map_err(|_| self.protocol_error("PutObject: body too large"))?;
        let failure = Arc::new(Mutex::new(None));
        let checked = ExactBody {
            inner: body,
            remaining: len,
            failure: Arc::clone(&failure),
            done: false,
        };
        // A body built from a stream cannot be rebuilt, so the SDK cannot retry it either; the
        // override says so explicitly and drops the read timeout, which would cover the upload.
        let sent = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(SdkByteStream::new(SdkBody::from_body_1_x(StreamBody::new(checked))))
            .content_length(content_length)
            .content_type("application/octet-stream")
            .set_metadata(Some(metadata.into_iter().collect::<HashMap<_, _>>()))
            .customize()
            .config_override(
                aws_sdk_s3::Config::builder()
                    .timeout_config(timeouts(None))
                    .retry_config(RetryConfig::disabled()),
            )
            .send()
            .await;
        match sent {
            Ok(out) => Ok(strip_quotes(out.e_tag().unwrap_or_default())),
            Err(err) => {
                let body_error = failure.lock().unwrap_or_else(PoisonError::into_inner).take();
                Err(match body_error {
                    Some(e) => BackendError::Body(e),
                    None => self.error("PutObject", Missing::Bucket, err),
                })
            }
        }
    }

    async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        range: Option<ByteRange>,
        if_match: Option<&str>,
    ) -> BackendResult<GetObject> {
        let mut req = self.client.get_object().bucket(bucket).key(key);
        match &range {
            None => {}
            Some(ByteRange::Bounded(r)) if r.start < r.end => {
                req = req.range(format!("bytes={}-{}", r.start, r.end - 1))
            }
            Some(ByteRange::Suffix(n)) if *n > 0 => req = req.range(format!("bytes=-{n}")),
            Some(_) => return Err(BackendError::InvalidRange),
        }
        if let Some(etag) = if_match {
            req = req.if_match(format!("\"{}\"", etag.trim_matches('"')));
        }
        let out = req.send().await.map_err(|e| self.error("GetObject", Missing::Key, e))?;
        let size = match (&range, out.content_range()) {
            (Some(_), Some(content_range)) => content_range_total(content_range),
            // A 200 with the whole object: some stores (Alibaba OSS by default) answer an
            // unsatisfiable range so. Streaming it as the range would be wrong bytes.
            (Some(r), None) => {
                let start_beyond_end = match (r, object_size(out.content_length())) {
                    (ByteRange::Bounded(r), Some(size)) => r.start >= size,
                    (ByteRange::Suffix(_), Some(size)) => size == 0,
                    (_, None) => false,
                };
                return Err(if start_beyond_end {
                    BackendError::InvalidRange
                } else {
                    self.protocol_error("GetObject: store ignored the Range header")
                });
            }
            (None, _) => object_size(out.content_length()),
        }
        .ok_or_else(|| self.protocol_error("GetObject: response without a valid object size"))?;
        let head = ObjectHead {
            size,
            etag: strip_quotes(out.e_tag().unwrap_or_default()),
            last_modified: out.last_modified().and_then(system_time),
            metadata: out
                .metadata()
                .map(|m| m.clone().into_iter().collect())
                .unwrap_or_default(),
        };
        let body: ByteStream = Box::pin(out.body.into_inner().into_data_stream().map_err(io::Error::other));
        Ok(GetObject { head, body })
    }

    async fn head_object(&self, bucket: &str, key: &str) -> BackendResult<ObjectHead> {
        let out = self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.error("HeadObject", Missing::Key, e))?;
        let size = object_size(out.content_length())
            .ok_or_else(|| self.protocol_error("HeadObject: response without a valid size"))?;
        Ok(ObjectHead {
            size,
            etag: strip_quotes(out.e_tag().unwrap_or_default()),
            last_modified: out.last_modified().and_then(system_time),
            metadata: out
                .metadata()
                .map(|m| m.clone().into_iter().collect())
                .unwrap_or_default(),
        })
    }

    async fn delete_object(&self, bucket: &str, key: &str) -> BackendResult<()> {
        self.client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.error("DeleteObject", Missing::Bucket, e))?;
        Ok(())
    }

    async fn list_objects(&self, bucket: &str, query: &ListQuery) -> BackendResult<ListPage> {
        let non_empty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
        let out = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .encoding_type(EncodingType::Url)
            .max_keys(query.max_keys.clamp(0, MAX_LIST_KEYS))
            .set_prefix(non_empty(&query.prefix))
            .set_delimiter(non_empty(&query.delimiter))
            .set_start_after(non_empty(&query.start_after))
            .set_continuation_token(non_empty(&query.continuation_token))
            .send()
            .await
            .map_err(|e| self.error("ListObjectsV2", Missing::Bucket, e))?;
        // Like botocore: decode only when the store says it encoded.
        let encoded = out.encoding_type() == Some(&EncodingType::Url);
        let decode = |s: &str| {
            if encoded {
                url_decode(s).ok_or_else(|| self.protocol_error("ListObjectsV2: bad URL encoding in a key"))
            } else {
                Ok(s.to_owned())
            }
        };
        let mut page = ListPage::default();
        for o in out.contents() {
            page.objects.push(ListEntry {
                key: decode(o.key().unwrap_or_default())?,
                size: o.size().and_then(|n| u64::try_from(n).ok()).unwrap_or_default(),
                etag: strip_quotes(o.e_tag().unwrap_or_default()),
                last_modified: o.last_modified().and_then(system_time),
                metadata: None,
            });
        }
        for p in out.common_prefixes() {
            page.common_prefixes.push(decode(p.prefix().unwrap_or_default())?);
        }
        page.is_truncated = out.is_truncated().unwrap_or(false);
        page.next_continuation_token = out.next_continuation_token().map(str::to_owned);
        if page.is_truncated && page.next_continuation_token.is_none() {
            return Err(self.protocol_error("ListObjectsV2: truncated page without a continuation token"));
        }
        Ok(page)
    }
}

// === ExactBody ===

/// The request body: passes chunks through, and fails the request unless exactly `remaining`
/// bytes arrive. The stream's own error is parked in `failure` (the SDK would only hand it back
/// wrapped several layers deep) and reported as [`BackendError::Body`].
struct ExactBody {
    inner: ByteStream,
    remaining: u64,
    failure: Arc<Mutex<Option<io::Error>>>,
    done: bool,
}

/// What the SDK sees when the body fails; the real error is in `ExactBody::failure`.
#[derive(Debug)]
struct BodyFailed;

impl fmt::Display for BodyFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("request body failed")
    }
}

impl StdError for BodyFailed {}

impl Stream for ExactBody {
    type Item = Result<Frame<Bytes>, BodyFailed>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let error = match ready!(self.inner.as_mut().poll_next(cx)) {
            Some(Ok(chunk)) if chunk.len() as u64 <= self.remaining => {
                self.remaining -= chunk.len() as u64;
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
            Some(Ok(_)) => io::Error::new(io::ErrorKind::InvalidData, "body longer than its declared length"),
            Some(Err(e)) => e,
            None if self.remaining == 0 => {
                self.done = true;
                return Poll::Ready(None);
            }
            None => io::Error::new(io::ErrorKind::UnexpectedEof, "body shorter than its declared length"),
        };
        self.done = true;
        *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(error);
        Poll::Ready(Some(Err(BodyFailed)))
    }
}

// === helpers ===

/// Connect timeout always; `read` (time to response headers) unless `None`; never a timeout on
/// the whole operation or attempt, which would cut long transfers.
fn timeouts(read: Option<Duration>) -> TimeoutConfig {
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

/// The error and its causes, `Display` only: `Debug` output of SDK errors would carry whole
/// responses.
fn describe(err: &(dyn StdError + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        out.push_str(": ");
        out.push_str(&e.to_string());
        next = e.source();
    }
    out
}

/// Whether a `rustls::Error` is somewhere in the error's cause chain, including in `io::Error`
/// payloads (whose `source()` skips the payload itself).
fn has_tls_error(err: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if e.is::<rustls::Error>() {
            return true;
        }
        if let Some(payload) = e.downcast_ref::<io::Error>().and_then(io::Error::get_ref)
            && has_tls_error(payload)
        {
            return true;
        }
        next = e.source();
    }
    false
}

fn object_size(content_length: Option<i64>) -> Option<u64> {
    content_length.and_then(|n| u64::try_from(n).ok())
}

/// The total size from `Content-Range: bytes a-b/TOTAL`.
fn content_range_total(value: &str) -> Option<u64> {
    let (_, total) = value.strip_prefix("bytes ")?.split_once('/')?;
    total.trim().parse().ok()
}

fn strip_quotes(etag: &str) -> String {
    etag.trim_matches('"').to_owned()
}

fn system_time(t: &DateTime) -> Option<SystemTime> {
    SystemTime::try_from(*t).ok()
}

/// Decodes S3's `encoding-type=url` form: `%XX` escapes, and `+` for a space.
fn url_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        out.push(match b {
            b'+' => b' ',
            b'%' => {
                let hi = char::from(bytes.next()?).to_digit(16)?;
                let lo = char::from(bytes.next()?).to_digit(16)?;
                u8::try_from(hi * 16 + lo).ok()?
            }
            other => other,
        });
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder as ConnBuilder;
    use s3s::dto as s3dto;
    use s3s::{S3, S3Request, S3Response, S3Result, s3_error};
    use tokio::net::TcpListener;

    const AK: &str = "test-access-key";
    const SK: &str = "test-secret-key-which-must-not-leak";

    /// PUTs to `fail-500`, over all test servers (only `failed_put_is_not_retried` makes them).
    static FAILED_PUTS: std::sync::LazyLock<Arc<std::sync::atomic::AtomicUsize>> =
        std::sync::LazyLock::new(Default::default);

    /// s3s-fs plus what AWS does and s3s-fs 0.14.1 does not: `If-Match` on GET, `NoSuchBucket`
    /// on GET and PUT in a missing bucket (s3s-fs creates it on PUT), `BucketNotEmpty` (s3s-fs deletes recursively) and
    /// `encoding-type=url` in listings (with `+` for a space, as S3 writes it). It also fails
    /// HeadBucket on `broken-bucket` and PUT to `fail-500` with a 500 (counting those PUTs), to test
    /// error mapping and retries. It refuses any PUT that is not a plain body with a length.
    struct AwsLike(
        s3s_fs::FileSystem,
        std::path::PathBuf,
        Arc<std::sync::atomic::AtomicUsize>,
    );

    #[async_trait]
    impl S3 for AwsLike {
        async fn list_buckets(
            &self,
            req: S3Request<s3dto::ListBucketsInput>,
        ) -> S3Result<S3Response<s3dto::ListBucketsOutput>> {
            self.0.list_buckets(req).await
        }
        async fn create_bucket(
            &self,
            req: S3Request<s3dto::CreateBucketInput>,
        ) -> S3Result<S3Response<s3dto::CreateBucketOutput>> {
            self.0.create_bucket(req).await
        }
        async fn head_bucket(
            &self,
            req: S3Request<s3dto::HeadBucketInput>,
        ) -> S3Result<S3Response<s3dto::HeadBucketOutput>> {
            if req.input.bucket == "broken-bucket" {
                return Err(s3_error!(InternalError));
            }
            self.0.head_bucket(req).await
        }
        async fn delete_bucket(
            &self,
            req: S3Request<s3dto::DeleteBucketInput>,
        ) -> S3Result<S3Response<s3dto::DeleteBucketOutput>> {
            let dir = self.1.join(&req.input.bucket);
            if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
                return Err(s3_error!(BucketNotEmpty));
            }
            self.0.delete_bucket(req).await
        }
        async fn put_object(
            &self,
            req: S3Request<s3dto::PutObjectInput>,
        ) -> S3Result<S3Response<s3dto::PutObjectOutput>> {
            // The store must only ever see plain bodies with an exact length (Alibaba OSS).
            let h = &req.headers;
            let chunked = h
                .get("content-encoding")
                .is_some_and(|v| v.as_bytes().starts_with(b"aws-chunked"))
                || ["x-amz-decoded-content-length", "x-amz-trailer", "transfer-encoding"]
                    .iter()
                    .any(|n| h.contains_key(*n))
                || h.get("x-amz-content-sha256")
                    .is_some_and(|v| v.as_bytes().starts_with(b"STREAMING-"));
            if chunked || !h.contains_key("content-length") || req.input.checksum_algorithm.is_some() {
                return Err(s3_error!(InvalidRequest, "not a plain body"));
            }
            if !self.1.join(&req.input.bucket).is_dir() {
                return Err(s3_error!(NoSuchBucket));
            }
            if req.input.key == "fail-500" {
                self.2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                return Err(s3_error!(InternalError));
            }
            self.0.put_object(req).await
        }
        async fn head_object(
            &self,
            req: S3Request<s3dto::HeadObjectInput>,
        ) -> S3Result<S3Response<s3dto::HeadObjectOutput>> {
            self.0.head_object(req).await
        }
        async fn delete_object(
            &self,
            req: S3Request<s3dto::DeleteObjectInput>,
        ) -> S3Result<S3Response<s3dto::DeleteObjectOutput>> {
            self.0.delete_object(req).await
        }
        async fn get_object(
            &self,
            req: S3Request<s3dto::GetObjectInput>,
        ) -> S3Result<S3Response<s3dto::GetObjectOutput>> {
            if !self.1.join(&req.input.bucket).is_dir() {
                return Err(s3_error!(NoSuchBucket));
            }
            let if_match = req.input.if_match.clone();
            let resp = self.0.get_object(req).await?;
            if let Some(s3dto::ETagCondition::ETag(expected)) = if_match
                && !resp.output.e_tag.as_ref().is_some_and(|t| t.strong_cmp(&expected))
            {
                return Err(s3_error!(PreconditionFailed));
            }
            Ok(resp)
        }
        async fn list_objects_v2(
            &self,
            req: S3Request<s3dto::ListObjectsV2Input>,
        ) -> S3Result<S3Response<s3dto::ListObjectsV2Output>> {
            let url = req
                .input
                .encoding_type
                .as_ref()
                .is_some_and(|e| e.as_str() == s3dto::EncodingType::URL);
            let mut resp = self.0.list_objects_v2(req).await?;
            if url {
                let out = &mut resp.output;
                for o in out.contents.iter_mut().flatten() {
                    o.key = o.key.as_deref().map(url_encode);
                }
                for p in out.common_prefixes.iter_mut().flatten() {
                    p.prefix = p.prefix.as_deref().map(url_encode);
                }
            }
            Ok(resp)
        }
    }

    fn url_encode(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b' ' => "+".to_owned(),
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => char::from(b).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    }

    /// Starts an s3s-fs server on 127.0.0.1:0; returns a store pointed at it and the data dir.
    async fn server() -> (S3Store, tempfile::TempDir) {
        let (endpoint, dir) = server_endpoint().await;
        (store(&endpoint), dir)
    }

    async fn server_endpoint() -> (String, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let fs = s3s_fs::FileSystem::new(dir.path()).unwrap();
        let mut builder =
            s3s::service::S3ServiceBuilder::new(AwsLike(fs, dir.path().to_owned(), Arc::clone(&FAILED_PUTS)));
        builder.set_auth(s3s::auth::SimpleAuth::from_single(AK, SK));
        let service = builder.build();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let service = service.clone();
                tokio::spawn(async move {
                    let _ = ConnBuilder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        });
        (format!("http://{addr}"), dir)
    }

    fn cfg(endpoint: &str) -> S3StoreConfig {
        S3StoreConfig {
            endpoint: Some(endpoint.to_owned()),
            region: "us-east-1".to_owned(),
            access_key: AK.to_owned(),
            secret_key: SecretString::new(SK.to_owned()),
            path_style: true,
            ca_file: None,
        }
    }

    fn store(endpoint: &str) -> S3Store {
        S3Store::new("primary", &cfg(endpoint)).unwrap()
    }

    fn body(chunks: Vec<&'static [u8]>) -> ByteStream {
        Box::pin(futures::stream::iter(
            chunks.into_iter().map(|c| Ok(Bytes::from_static(c))),
        ))
    }

    async fn put(s: &S3Store, key: &str, data: &[u8], metadata: Metadata) -> String {
        let b: ByteStream = Box::pin(futures::stream::iter([Ok(Bytes::copy_from_slice(data))]));
        s.put_object("bkt", key, b, data.len() as u64, metadata).await.unwrap()
    }

    async fn read(s: &S3Store, key: &str, range: Option<ByteRange>) -> BackendResult<(ObjectHead, Vec<u8>)> {
        let got = s.get_object("bkt", key, range, None).await?;
        let chunks: Vec<Bytes> = got.body.try_collect().await?;
        Ok((got.head, chunks.concat()))
    }

    #[tokio::test]
    async fn object_round_trip_ranges_and_conditions() {
        let (s, _dir) = server().await;
        s.create_bucket("bkt").await.unwrap();
        let data: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
        let meta: Metadata = [
            ("escrow-v".to_owned(), "1".to_owned()),
            ("wrapped-dek".to_owned(), "AbC+/=".to_owned()),
        ]
        .into();
        let etag = put(&s, "dir/obj one", &data, meta.clone()).await;
        assert_eq!(etag, hex::encode(<md5::Md5 as md5::Digest>::digest(&data)));

        let (head, got) = read(&s, "dir/obj one", None).await.unwrap();
        assert_eq!((head.size, &head.etag, &head.metadata), (300_000, &etag, &meta));
        assert!(head.last_modified.is_some());
        assert_eq!(got, data);
        let head = s.head_object("bkt", "dir/obj one").await.unwrap();
        assert_eq!((head.size, &head.etag, &head.metadata), (300_000, &etag, &meta));

        let (head, got) = read(&s, "dir/obj one", Some(ByteRange::Bounded(1000..70_000)))
            .await
            .unwrap();
        assert_eq!((head.size, got.as_slice()), (300_000, &data[1000..70_000]));
        let (_, got) = read(&s, "dir/obj one", Some(ByteRange::Bounded(299_990..400_000)))
            .await
            .unwrap();
        assert_eq!(got, &data[299_990..], "end clamped");
        let (_, got) = read(&s, "dir/obj one", Some(ByteRange::Suffix(7))).await.unwrap();
        assert_eq!(got, &data[299_993..]);
        for bad in [
            ByteRange::Bounded(300_000..300_001),
            ByteRange::Bounded(5..5),
            ByteRange::Suffix(0),
        ] {
            assert!(matches!(
                read(&s, "dir/obj one", Some(bad)).await,
                Err(BackendError::InvalidRange)
            ));
        }

        assert!(s.get_object("bkt", "dir/obj one", None, Some(&etag)).await.is_ok());
        let r = s
            .get_object("bkt", "dir/obj one", None, Some("00000000000000000000000000000000"))
            .await;
        assert!(matches!(r, Err(BackendError::PreconditionFailed)), "{:?}", r.err());

        s.delete_object("bkt", "dir/obj one").await.unwrap();
        s.delete_object("bkt", "dir/obj one").await.unwrap();
        assert!(matches!(
            s.head_object("bkt", "dir/obj one").await,
            Err(BackendError::NoSuchKey)
        ));
        assert!(matches!(
            read(&s, "dir/obj one", None).await,
            Err(BackendError::NoSuchKey)
        ));
        assert!(matches!(
            s.get_object("nope", "k", None, None).await,
            Err(BackendError::NoSuchBucket)
        ));
        let r = s.put_object("nope", "k", body(vec![b"x"]), 1, Metadata::new()).await;
        assert!(matches!(r, Err(BackendError::NoSuchBucket)), "{r:?}");
    }

    #[tokio::test]
    async fn failing_body_stores_nothing() {
        let (s, dir) = server().await;
        s.create_bucket("bkt").await.unwrap();
        put(&s, "k", b"old", Metadata::new()).await;

        let chunk = Bytes::from(vec![1u8; 100_000]);
        let failing: ByteStream = Box::pin(futures::stream::iter([
            Ok(chunk.clone()),
            Ok(chunk),
            Err(io::Error::other("client went away")),
        ]));
        let r = s.put_object("bkt", "k", failing, 1_000_000, Metadata::new()).await;
        assert!(
            matches!(&r, Err(BackendError::Body(e)) if e.to_string() == "client went away"),
            "{r:?}"
        );
        let r = s.put_object("bkt", "new", body(vec![b"ab"]), 3, Metadata::new()).await;
        assert!(
            matches!(&r, Err(BackendError::Body(e)) if e.kind() == io::ErrorKind::UnexpectedEof),
            "{r:?}"
        );
        let r = s
            .put_object("bkt", "new", body(vec![b"ab", b"cd"]), 3, Metadata::new())
            .await;
        assert!(
            matches!(&r, Err(BackendError::Body(e)) if e.kind() == io::ErrorKind::InvalidData),
            "{r:?}"
        );

        assert_eq!(read(&s, "k", None).await.unwrap().1, b"old");
        assert!(matches!(
            s.head_object("bkt", "new").await,
            Err(BackendError::NoSuchKey)
        ));
        // Give the server a moment to see the aborted connections, then look at its files.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let bucket_files: Vec<_> = std::fs::read_dir(dir.path().join("bkt"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(bucket_files, ["k"], "only the old object remains");
    }

    async fn list_all(s: &S3Store, mut q: ListQuery) -> Vec<(Vec<String>, Vec<String>)> {
        let mut pages = Vec::new();
        loop {
            let page = s.list_objects("bkt", &q).await.unwrap();
            pages.push((
                page.objects.iter().map(|o| o.key.clone()).collect(),
                page.common_prefixes,
            ));
            if !page.is_truncated {
                return pages;
            }
            q.continuation_token = page.next_continuation_token;
        }
    }

    fn strs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[tokio::test]
    async fn listing() {
        let (s, _dir) = server().await;
        s.create_bucket("bkt").await.unwrap();
        for key in ["a/1", "a/2", "a/b/3", "a0", "b c+d%41&<x>", "c/1", "c/2", "d"] {
            put(&s, key, key.as_bytes(), Metadata::new()).await;
        }
        let q = |max_keys| ListQuery {
            max_keys,
            ..ListQuery::default()
        };
        let all = strs(&["a/1", "a/2", "a/b/3", "a0", "b c+d%41&<x>", "c/1", "c/2", "d"]);
        let pages = list_all(&s, q(3)).await;
        assert_eq!(pages.len(), 3);
        assert_eq!(pages.into_iter().flat_map(|p| p.0).collect::<Vec<_>>(), all);
        let page = s.list_objects("bkt", &q(1)).await.unwrap();
        // (s3s-fs lists no ETags.)
        assert_eq!((page.objects[0].size, page.objects[0].metadata.is_none()), (3, true));

        let d = ListQuery {
            delimiter: Some("/".into()),
            max_keys: 1000,
            ..ListQuery::default()
        };
        assert_eq!(
            list_all(&s, d.clone()).await,
            [(strs(&["a0", "b c+d%41&<x>", "d"]), strs(&["a/", "c/"]))]
        );
        let paged: Vec<_> = list_all(
            &s,
            ListQuery {
                max_keys: 2,
                ..d.clone()
            },
        )
        .await;
        let keys: Vec<String> = paged.iter().flat_map(|p| p.0.clone()).collect();
        let prefixes: Vec<String> = paged.iter().flat_map(|p| p.1.clone()).collect();
        assert_eq!(
            (keys, prefixes),
            (strs(&["a0", "b c+d%41&<x>", "d"]), strs(&["a/", "c/"]))
        );
        let p = ListQuery {
            prefix: Some("a/".into()),
            ..d.clone()
        };
        assert_eq!(list_all(&s, p).await, [(strs(&["a/1", "a/2"]), strs(&["a/b/"]))]);
        let sa = ListQuery {
            start_after: Some("c/1".into()),
            ..q(1000)
        };
        assert_eq!(list_all(&s, sa).await, [(strs(&["c/2", "d"]), vec![])]);
        // An empty delimiter is no delimiter (s3s-fs would treat `delimiter=` as one).
        let ed = ListQuery {
            delimiter: Some(String::new()),
            ..q(1000)
        };
        assert_eq!(list_all(&s, ed).await[0].0, all);
        assert!(matches!(
            s.list_objects("nope", &q(10)).await,
            Err(BackendError::NoSuchBucket)
        ));
    }

    #[tokio::test]
    async fn buckets_and_errors() {
        let (endpoint, _dir) = server_endpoint().await;
        let s = store(&endpoint);
        s.create_bucket("b-two").await.unwrap();
        s.create_bucket("a-one").await.unwrap();
        assert!(matches!(
            s.create_bucket("a-one").await,
            Err(BackendError::BucketAlreadyExists)
        ));
        let names: Vec<_> = s.list_buckets().await.unwrap().into_iter().map(|b| b.name).collect();
        assert_eq!(names, ["a-one", "b-two"]);
        s.head_bucket("a-one").await.unwrap();
        assert!(matches!(s.head_bucket("zzz").await, Err(BackendError::NoSuchBucket)));

        let b: ByteStream = Box::pin(futures::stream::iter([Ok(Bytes::from_static(b"x"))]));
        s.put_object("a-one", "k", b, 1, Metadata::new()).await.unwrap();
        assert!(matches!(
            s.delete_bucket("a-one").await,
            Err(BackendError::BucketNotEmpty)
        ));
        s.delete_object("a-one", "k").await.unwrap();
        s.delete_bucket("a-one").await.unwrap();
        assert!(matches!(
            s.delete_bucket("a-one").await,
            Err(BackendError::NoSuchBucket)
        ));

        // 5xx is retryable; nothing secret in any message.
        let r = s.head_bucket("broken-bucket").await;
        assert!(
            matches!(&r, Err(BackendError::Upstream { retryable: true, .. })),
            "{r:?}"
        );
        // Wrong credentials: a 403 is not retryable.
        let cfg = S3StoreConfig {
            secret_key: SecretString::new("wrong-secret".into()),
            ..cfg(&endpoint)
        };
        let r = S3Store::new("primary", &cfg).unwrap().head_bucket("b-two").await;
        assert!(
            matches!(&r, Err(BackendError::Upstream { retryable: false, .. })),
            "{r:?}"
        );
        let msg = format!("{r:?}");
        assert!(
            msg.contains("403") && !msg.contains("wrong-secret") && !msg.contains(SK),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn failed_put_is_not_retried() {
        let (s, _dir) = server().await;
        s.create_bucket("bkt").await.unwrap();
        let r = s
            .put_object("bkt", "fail-500", body(vec![b"abc"]), 3, Metadata::new())
            .await;
        assert!(
            matches!(&r, Err(BackendError::Upstream { retryable: true, .. })),
            "{r:?}"
        );
        assert_eq!(FAILED_PUTS.load(std::sync::atomic::Ordering::SeqCst), 1);
        // Reads are retried by the SDK (3 attempts): HeadBucket on the broken bucket still fails.
        assert!(s.head_bucket("bkt").await.is_ok());
    }

    #[tokio::test]
    async fn unreachable_store_is_retryable() {
        // Bind then drop a listener: the port is (almost certainly) closed now.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let s = store(&format!("http://127.0.0.1:{port}"));
        let r = s.head_bucket("bkt").await;
        assert!(
            matches!(&r, Err(BackendError::Upstream { retryable: true, .. })),
            "{r:?}"
        );
        let r = s.put_object("bkt", "k", body(vec![b"x"]), 1, Metadata::new()).await;
        assert!(
            matches!(&r, Err(BackendError::Upstream { retryable: true, .. })),
            "{r:?}"
        );
    }

    /// An https store whose certificate chains to a private CA: trusted only through `ca_file`.
    #[tokio::test]
    async fn https_with_private_ca() {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        use rustls::pki_types::PrivateKeyDer;

        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &ca, &ca_key)
            .unwrap();
        let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
            )
            .unwrap();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

        let dir = tempfile::tempdir().unwrap();
        let fs = s3s_fs::FileSystem::new(dir.path()).unwrap();
        let mut builder = s3s::service::S3ServiceBuilder::new(fs);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(AK, SK));
        let service = builder.build();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (service, acceptor) = (service.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(socket).await else {
                        return;
                    };
                    let _ = ConnBuilder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        let endpoint = format!("https://{addr}");
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, ca.pem()).unwrap();

        let trusted = S3Store::new(
            "primary",
            &S3StoreConfig {
                ca_file: Some(ca_path),
                ..cfg(&endpoint)
            },
        )
        .unwrap();
        trusted.create_bucket("bkt").await.unwrap();
        let etag = trusted
            .put_object("bkt", "k", body(vec![b"over tls"]), 8, Metadata::new())
            .await
            .unwrap();
        assert_eq!(etag, hex::encode(<md5::Md5 as md5::Digest>::digest(b"over tls")));

        let untrusted = store(&endpoint);
        let r = untrusted.head_bucket("bkt").await;
        assert!(
            matches!(
                &r,
                Err(BackendError::Upstream { retryable: false, message, .. })
                    if message.contains("UnknownIssuer")
            ),
            "{r:?}"
        );
    }

    #[test]
    fn bad_ca_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").unwrap();
        let cfg = S3StoreConfig {
            ca_file: Some(path),
            ..cfg("https://127.0.0.1:1")
        };
        assert!(matches!(
            S3Store::new("primary", &cfg),
            Err(BackendError::Upstream { retryable: false, .. })
        ));
    }

    #[test]
    fn helpers() {
        assert_eq!(content_range_total("bytes 0-9/300000"), Some(300_000));
        assert_eq!(content_range_total("bytes */300"), Some(300));
        assert_eq!(content_range_total("bytes 0-9/*"), None);
        assert_eq!(
            url_decode("b+c%2Bd%2541%26%3Cx%3E/%C3%A9").as_deref(),
            Some("b c+d%41&<x>/é")
        );
        assert_eq!(url_decode("%4"), None);
        assert_eq!(url_decode("%FF"), None);
        assert_eq!(strip_quotes("\"abc\""), "abc");
    }
}
