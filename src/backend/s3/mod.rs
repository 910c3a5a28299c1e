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
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_credential_types::Credentials;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::{HttpRequest, HttpResponse};
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
    Metadata, ObjectHead, ObjectStore, PutCondition, Source,
};
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
const MAX_ATTEMPTS: u32 = 2;
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

/// An [`ObjectStore`] on an S3-compatible endpoint.
#[derive(Clone)]
pub struct S3Store {
    name: String,
    region: String,
    client: Client,
    /// How the store writes keys in listings, per bucket (learned once, [`encoding`]).
    encodings: Arc<std::sync::Mutex<HashMap<String, ListEncoding>>>,
    /// [`S3StoreConfig::conditional_writes`].
    conditional_writes: bool,
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

mod compose;
mod encoding;

#[cfg(test)]
use self::compose::PartPlan;
use self::compose::plan_parts;
use self::encoding::ListEncoding;

// === impl S3Store ===

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
            (Some("BucketAlreadyExists"), _) => BackendError::BucketAlreadyExists { owned: false },
            (Some("BucketAlreadyOwnedByYou"), _) => BackendError::BucketAlreadyExists { owned: true },
            (Some("BucketNotEmpty"), _) => BackendError::BucketNotEmpty,
            (Some("PreconditionFailed"), _) | (_, 412) => BackendError::PreconditionFailed,
            (Some("ConditionalRequestConflict"), _) => BackendError::ConditionalConflict,
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

    /// The error of a failed HEAD or GET of `key`. A store that answers 5xx (after the SDK's
    /// own retry) is asked once whether the key exists, by a one-key listing from it: some stores
    /// fail a read of a key that is only a prefix of others (s3s-fs answers 500 "Is a directory"
    /// for `a` when `a/b` exists), which is a missing key, not an outage. Without an object of
    /// exactly that name the answer is `NoSuchKey`; otherwise, or if the listing fails too, the
    /// store's error stands. One extra request, only after a 5xx, never a retry.
    async fn read_failed<E>(&self, op: &str, bucket: &str, key: &str, err: SdkError<E, HttpResponse>) -> BackendError
    where
        E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    {
        let answered_5xx = match &err {
            SdkError::ServiceError(e) => e.raw().status().is_server_error(),
            SdkError::ResponseError(e) => e.raw().status().is_server_error(),
            _ => false,
        };
        let mapped = self.error(op, Missing::Key, err);
        if !answered_5xx || key.is_empty() {
            return mapped;
        }
        let listed = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(key)
            .max_keys(1)
            .send()
            .await;
        match listed {
            Ok(out) if out.contents().first().and_then(|o| o.key()) != Some(key) => {
                tracing::debug!(store = %self.name, bucket, "a read failed with 5xx on a key that does not exist: answered as missing");
                BackendError::NoSuchKey
            }
            _ => mapped,
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
        let location = (self.region != crate::limits::DEFAULT_REGION).then(|| {
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
        self.put(bucket, key, body, len, metadata, None).await
    }

    fn conditional_writes(&self) -> bool {
        self.conditional_writes
    }

    /// `If-None-Match: *` or `If-Match` on the PutObject itself: the store evaluates it
    /// atomically with the write (AWS S3 answers a concurrent conflicting write with 409
    /// `ConditionalRequestConflict`, mapped to [`BackendError::ConditionalConflict`]).
    async fn put_object_if(
        &self,
        bucket: &str,
        key: &str,
        body: ByteStream,
        len: u64,
        metadata: Metadata,
        condition: Option<PutCondition>,
    ) -> BackendResult<String> {
        if condition.is_some() && !self.conditional_writes {
            return Err(BackendError::ConditionalUnsupported);
        }
        self.put(bucket, key, body, len, metadata, condition).await
    }

    async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        range: Option<ByteRange>,
        if_match: Option<&str>,
    ) -> BackendResult<GetObject> {
        let mut req = self.client.get_object().bucket(bucket).key(sdk_key(key));
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
        let out = match req.customize().mutate_request(restore_key(key)).send().await {
            Ok(out) => out,
            Err(e) => return Err(self.read_failed("GetObject", bucket, key, e).await),
        };
        let size = match (&range, out.content_range()) {
            (Some(_), Some(content_range)) => content_range_total(content_range),
            // A suffix at least as long as the object is the whole object: a 200 is right.
            (Some(ByteRange::Suffix(n)), None) if object_size(out.content_length()).is_some_and(|s| s <= *n) => {
                object_size(out.content_length())
            }
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
        let out = match self
            .client
            .head_object()
            .bucket(bucket)
            .key(sdk_key(key))
            .customize()
            .mutate_request(restore_key(key))
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => return Err(self.read_failed("HeadObject", bucket, key, e).await),
        };
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
            .key(sdk_key(key))
            .customize()
            .mutate_request(restore_key(key))
            .send()
            .await
            .map_err(|e| self.error("DeleteObject", Missing::Bucket, e))?;
        Ok(())
    }

    async fn list_objects(&self, bucket: &str, query: &ListQuery) -> BackendResult<ListPage> {
        let non_empty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
        let encoding = self.list_encoding(bucket).await?;
        let out = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .set_encoding_type((encoding == ListEncoding::Url).then_some(EncodingType::Url))
            .max_keys(query.max_keys.clamp(0, crate::limits::MAX_KEYS))
            .set_prefix(non_empty(&query.prefix))
            .set_delimiter(non_empty(&query.delimiter))
            .set_start_after(non_empty(&query.start_after))
            .set_continuation_token(non_empty(&query.continuation_token))
            .send()
            .await
            .map_err(|e| self.error("ListObjectsV2", Missing::Bucket, e))?;
        let mut page = ListPage::default();
        for o in out.contents() {
            let Some(key) = self.listed_key(encoding, o.key().unwrap_or_default()) else {
                continue;
            };
            page.objects.push(ListEntry {
                key,
                size: o.size().and_then(|n| u64::try_from(n).ok()).unwrap_or_default(),
                etag: strip_quotes(o.e_tag().unwrap_or_default()),
                last_modified: o.last_modified().and_then(system_time),
                metadata: None,
            });
        }
        for p in out.common_prefixes() {
            if let Some(prefix) = self.listed_key(encoding, p.prefix().unwrap_or_default()) {
                page.common_prefixes.push(prefix);
            }
        }
        page.is_truncated = out.is_truncated().unwrap_or(false);
        page.next_continuation_token = out.next_continuation_token().map(str::to_owned);
        if page.is_truncated && page.next_continuation_token.is_none() {
            return Err(self.protocol_error("ListObjectsV2: truncated page without a continuation token"));
        }
        Ok(page)
    }

    /// Server-side: one CopyObject for a single source under 5 GiB, else a multipart upload
    /// whose parts are UploadPartCopy ranges of the sources, the tail riding in the last part.
    /// Small objects, and layouts S3's part rules forbid, stream through instead.
    async fn compose(
        &self,
        bucket: &str,
        key: &str,
        sources: Vec<Source>,
        tail: Bytes,
        metadata: Metadata,
    ) -> BackendResult<String> {
        if let [src] = sources.as_slice()
            && tail.is_empty()
            && src.range.start == 0
            && src.range.end <= crate::limits::MAX_PART_SIZE
            && self.whole_object(src).await?
        {
            return self.copy_object(src, bucket, key, metadata, None).await;
        }
        match plan_parts(&sources, tail.len() as u64) {
            Some(parts) => self.compose_multipart(bucket, key, parts, tail, metadata, None).await,
            None => crate::backend::compose_by_streaming(self, bucket, key, sources, tail, metadata).await,
        }
    }

    /// One `CopyObject` onto itself, conditional on the ETag both as the source's
    /// (`x-amz-copy-source-if-match`) and as the destination's (`If-Match`, which AWS S3
    /// evaluates atomically with the copy; stores that ignore it, like s3s-fs, leave only the
    /// source check; with `conditional_writes = false` it is not sent). Above 5 GiB, the
    /// conditional multipart compose.
    async fn replace_metadata_if(
        &self,
        bucket: &str,
        key: &str,
        size: u64,
        etag: &str,
        metadata: Metadata,
    ) -> BackendResult<String> {
        if size > crate::limits::MAX_PART_SIZE {
            return crate::backend::replace_metadata_by_compose(self, bucket, key, size, etag, metadata).await;
        }
        let condition = PutCondition::Matches(etag.to_string());
        let condition = self.conditional_writes.then_some(&condition);
        self.copy_object(
            &Source::whole(bucket, key, size, etag),
            bucket,
            key,
            metadata,
            condition,
        )
        .await
    }

    /// With a condition, never a CopyObject (stores differ in honouring conditions on its
    /// destination; s3s-fs ignores them): a multipart compose whose CompleteMultipartUpload
    /// carries the condition, or a streamed conditional PutObject.
    async fn compose_if(
        &self,
        bucket: &str,
        key: &str,
        sources: Vec<Source>,
        tail: Bytes,
        metadata: Metadata,
        condition: Option<PutCondition>,
    ) -> BackendResult<String> {
        let Some(condition) = condition else {
            return self.compose(bucket, key, sources, tail, metadata).await;
        };
        if !self.conditional_writes {
            return Err(BackendError::ConditionalUnsupported);
        }
        match plan_parts(&sources, tail.len() as u64) {
            Some(parts) => {
                self.compose_multipart(bucket, key, parts, tail, metadata, Some(condition))
                    .await
            }
            None => {
                crate::backend::compose_by_streaming_if(self, bucket, key, sources, tail, metadata, Some(condition))
                    .await
            }
        }
    }
}

impl S3Store {
    /// One PutObject of a streamed body, optionally conditional.
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: ByteStream,
        len: u64,
        metadata: Metadata,
        condition: Option<PutCondition>,
    ) -> BackendResult<String> {
        let content_length = i64::try_from(len).map_err(|_| self.protocol_error("PutObject: body too large"))?;
        let checked = ExactBody {
            inner: body,
            remaining: len,
            done: false,
        };
        let (if_none_match, if_match) = condition_headers(condition.as_ref());
        // A body built from a stream cannot be rebuilt, so the SDK cannot retry it either; the
        // override says so explicitly and drops the read timeout, which would cover the upload.
        let sent = self
            .client
            .put_object()
            .bucket(bucket)
            .key(sdk_key(key))
            .body(SdkByteStream::new(SdkBody::from_body_1_x(StreamBody::new(checked))))
            .content_length(content_length)
            .content_type("application/octet-stream")
            .set_metadata(Some(metadata.into_iter().collect::<HashMap<_, _>>()))
            .set_if_none_match(if_none_match)
            .set_if_match(if_match)
            .customize()
            .mutate_request(restore_key(key))
            .config_override(
                aws_sdk_s3::Config::builder()
                    .timeout_config(timeouts(None))
                    .retry_config(RetryConfig::disabled()),
            )
            .send()
            .await;
        match sent {
            Ok(out) => Ok(strip_quotes(out.e_tag().unwrap_or_default())),
            // The body's own failure travels inside the SDK's error, as its source.
            Err(err) => Err(match body_failure(&err) {
                Some(e) => BackendError::Body(e),
                None => self.error("PutObject", Missing::Bucket, err),
            }),
        }
    }
}

// === ExactBody ===

/// The request body: passes chunks through, and fails the request unless exactly `remaining`
/// bytes arrive. Its failure ([`BodyFailed`]) carries the cause, which [`body_failure`] finds
/// again in the SDK's error and reports as [`BackendError::Body`].
struct ExactBody {
    inner: ByteStream,
    remaining: u64,
    done: bool,
}

/// Why the request body failed, as the SDK sees it: the cause, kept as the error's source.
#[derive(Debug)]
struct BodyFailed(io::Error);

impl fmt::Display for BodyFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("request body failed")
    }
}

impl StdError for BodyFailed {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.0)
    }
}

/// The body's own failure, if the SDK's error came from one (anywhere in its source chain).
fn body_failure(err: &(dyn StdError + 'static)) -> Option<io::Error> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(BodyFailed(cause)) = e.downcast_ref::<BodyFailed>() {
            return Some(io::Error::new(cause.kind(), cause.to_string()));
        }
        cur = e.source();
    }
    None
}

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
        Poll::Ready(Some(Err(BodyFailed(error))))
    }
}

// === helpers ===

/// The per-request override for server-side copies and completions ([`COPY_READ_TIMEOUT`]).
pub(super) fn copy_timeouts() -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::Config::builder().timeout_config(timeouts(Some(COPY_READ_TIMEOUT)))
}

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

/// What the SDK is given as an object key. S3 allows a key of only whitespace (`" "`), but the
/// SDK drops blank strings from its endpoint parameters and then refuses the request ("key was
/// missing"); such a key goes out as [`BLANK_KEY_STANDIN`], and [`restore_key`] writes the real
/// one into the request path before the request is signed.
pub fn sdk_key(key: &str) -> &str {
    if key.trim().is_empty() { BLANK_KEY_STANDIN } else { key }
}

/// Stands in for a blank key in the SDK ([`sdk_key`]); never sent.
const BLANK_KEY_STANDIN: &str = "escrow-blank-key-standin";

/// The request mutation that puts a blank `key` back where [`sdk_key`] put its stand-in (the
/// last path segment; nothing for other keys).
pub fn restore_key(key: &str) -> impl Fn(&mut HttpRequest) + Send + Sync + 'static {
    let encoded = key
        .trim()
        .is_empty()
        .then(|| key.bytes().map(|b| format!("%{b:02X}")).collect::<String>());
    move |req: &mut HttpRequest| {
        let Some(encoded) = &encoded else { return };
        let uri = req.uri().to_string();
        let path_end = uri.find('?').unwrap_or(uri.len());
        let standin = format!("/{BLANK_KEY_STANDIN}");
        if let Some(at) = uri[..path_end].rfind(&standin)
            && at + standin.len() == path_end
        {
            let fixed = format!("{}/{encoded}{}", &uri[..at], &uri[path_end..]);
            if let Err(e) = req.set_uri(fixed) {
                tracing::warn!(error = %e, "could not restore a blank key in the request path");
            }
        }
    }
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

/// An ETag as a conditional header carries it: in double quotes.
/// A write condition as S3's `(If-None-Match, If-Match)` headers.
fn condition_headers(condition: Option<&PutCondition>) -> (Option<String>, Option<String>) {
    match condition {
        None => (None, None),
        Some(PutCondition::Absent) => (Some("*".to_owned()), None),
        Some(PutCondition::Matches(etag)) => (None, Some(quoted(etag))),
    }
}

fn quoted(etag: &str) -> String {
    format!("\"{}\"", etag.trim_matches('"'))
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
mod tests;
