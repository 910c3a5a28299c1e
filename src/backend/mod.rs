//! Object stores: where ciphertext lives.
//!
//! This module owns the one seam between the proxy and the outside world's storage: the
//! [`ObjectStore`] trait. Implementations move opaque bytes and opaque metadata; they never see
//! plaintext and never interpret the proxy's format. The object layer only ever talks to a
//! `dyn ObjectStore`, so the mirror wraps two stores behind the same trait. Nothing here reaches
//! the S3 front end, the object layer or the mirror.
//!
//! - [`fs::FsStore`]: a local directory (the embedded default, and a domestic mirror).
//! - [`s3::S3Store`]: any S3-compatible endpoint through `aws-sdk-s3`, always with plain bodies and
//!   an exact `Content-Length` (never aws-chunked: some stores, Alibaba OSS among them, reject it).

pub mod fs;
pub mod health;
pub mod s3;

use std::collections::BTreeMap;
use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

/// A body moving to or from a store: a stream of chunks, errors as `io::Error`.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, io::Error>> + Send + Sync + 'static>>;

/// Store-level user metadata: names without the `x-amz-meta-` prefix, lowercase.
pub type Metadata = BTreeMap<String, String>;

/// What went wrong in a store, and who is to blame.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The bucket does not exist.
    #[error("no such bucket")]
    NoSuchBucket,
    /// The object does not exist.
    #[error("no such key")]
    NoSuchKey,
    /// The bucket already exists; `owned` when the store said it is ours
    /// (`BucketAlreadyOwnedByYou`), which the client hears as the store said it.
    #[error("bucket already exists")]
    BucketAlreadyExists {
        /// The store answered `BucketAlreadyOwnedByYou` (not `BucketAlreadyExists`).
        owned: bool,
    },
    /// The bucket still holds objects.
    #[error("bucket not empty")]
    BucketNotEmpty,
    /// A condition on the request (`If-Match` on a store ETag, `If-None-Match: *`) did not hold:
    /// the object changed, or exists.
    #[error("precondition failed")]
    PreconditionFailed,
    /// A conditional write met a concurrent write to the same key (S3's 409
    /// `ConditionalRequestConflict`): nothing was stored; a retry re-evaluates the condition.
    #[error("conditional write conflicted with a concurrent write")]
    ConditionalConflict,
    /// The store cannot write conditionally (configured so, or it ignores the conditions): a
    /// conditional write is refused rather than done unconditionally.
    #[error("this store cannot write conditionally")]
    ConditionalUnsupported,
    /// The requested byte range lies outside the stored object.
    #[error("invalid range")]
    InvalidRange,
    /// The store refused an argument of the client's (a bucket name, a continuation token).
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// The request's body stream failed (the client went away or its data failed a check).
    /// Nothing was stored.
    #[error("request body failed: {0}")]
    Body(#[source] io::Error),
    /// The store answered with an error or could not be reached; `retryable` says whether the
    /// same request may succeed later (5xx, timeouts, connection errors).
    #[error("store {store} failed: {message}")]
    Upstream {
        /// Which store failed (its configured name).
        store: String,
        /// What it said; never contains secrets or object bodies.
        message: String,
        /// Whether a retry is safe and may succeed.
        retryable: bool,
    },
    /// Local I/O failed (fs store).
    #[error("local i/o failed: {0}")]
    Io(#[from] io::Error),
}

/// Result type of store operations.
pub type BackendResult<T> = Result<T, BackendError>;

impl BackendError {
    /// Whether the error means the store is unreachable or broken (as opposed to an answer
    /// about the request).
    pub fn is_outage(&self) -> bool {
        match self {
            Self::Upstream { retryable, .. } => *retryable,
            Self::Io(_) => true,
            Self::NoSuchBucket
            | Self::NoSuchKey
            | Self::BucketAlreadyExists { .. }
            | Self::BucketNotEmpty
            | Self::PreconditionFailed
            | Self::ConditionalConflict
            | Self::ConditionalUnsupported
            | Self::InvalidRange
            | Self::InvalidArgument(_)
            | Self::Body(_) => false,
        }
    }

    /// A short, fixed name of the error's kind, for logs and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NoSuchBucket => "no_such_bucket",
            Self::NoSuchKey => "no_such_key",
            Self::BucketAlreadyExists { .. } => "bucket_exists",
            Self::BucketNotEmpty => "bucket_not_empty",
            Self::PreconditionFailed => "precondition_failed",
            Self::ConditionalConflict => "conditional_conflict",
            Self::ConditionalUnsupported => "conditional_unsupported",
            Self::InvalidRange => "invalid_range",
            Self::InvalidArgument(_) => "invalid_argument",
            Self::Body(_) => "body",
            Self::Upstream { retryable: true, .. } => "unavailable",
            Self::Upstream { retryable: false, .. } => "refused",
            Self::Io(_) => "io",
        }
    }
}

/// A bucket as a store lists it.
#[derive(Debug, Clone)]
pub struct BucketInfo {
    /// Bucket name.
    pub name: String,
    /// Creation time, when the store knows it.
    pub created: Option<SystemTime>,
}

/// What a store knows about one stored object, without its body.
#[derive(Debug, Clone)]
pub struct ObjectHead {
    /// Stored (ciphertext) size in bytes.
    pub size: u64,
    /// The store's ETag, quotes stripped. Only used for conditional requests toward the store.
    pub etag: String,
    /// Last modification time.
    pub last_modified: Option<SystemTime>,
    /// Stored user metadata.
    pub metadata: Metadata,
}

/// A stored object's body, with its head.
pub struct GetObject {
    /// The object's head (the whole object's, also for a ranged read).
    pub head: ObjectHead,
    /// The requested bytes.
    pub body: ByteStream,
}

/// Which bytes of a stored object to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ByteRange {
    /// Bytes `start..end` (end exclusive); an end past the object's size is clamped to it, a start
    /// at or past the size is `InvalidRange`.
    Bounded(Range<u64>),
    /// The last `n` bytes (`bytes=-n`); the whole object when it is shorter. `n > 0`.
    Suffix(u64),
}

impl ByteRange {
    /// The bytes this range selects in an object of `size` bytes, the way S3 does: a bounded end
    /// may lie beyond the object (clamped), its start may not; a suffix longer than the object is
    /// the whole object; an empty range, or any range of an empty object, is invalid.
    pub fn resolve(&self, size: u64) -> BackendResult<Range<u64>> {
        let resolved = match self {
            ByteRange::Bounded(r) => r.start..r.end.min(size),
            ByteRange::Suffix(n) => size.saturating_sub(*n)..size,
        };
        if resolved.start >= resolved.end {
            return Err(BackendError::InvalidRange);
        }
        Ok(resolved)
    }
}

/// A byte range of a stored object: one source of a composed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Bucket of the source object.
    pub bucket: String,
    /// Key of the source object.
    pub key: String,
    /// Stored bytes to take, `start..end`, non-empty.
    pub range: Range<u64>,
    /// The store ETag the source must still have, when known.
    pub etag: Option<String>,
}

impl Source {
    /// The whole object `bucket`/`key` of `size` bytes, as long as it has the store ETag `etag`.
    pub fn whole(bucket: &str, key: &str, size: u64, etag: &str) -> Self {
        Self {
            bucket: bucket.to_string(),
            key: key.to_string(),
            range: 0..size,
            etag: Some(etag.to_string()),
        }
    }

    /// Bytes this source contributes.
    pub fn len(&self) -> u64 {
        self.range.end - self.range.start
    }

    /// Whether this source contributes nothing.
    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }
}

/// The condition of a conditional write ([`ObjectStore::put_object_if`]), evaluated by the
/// store atomically with the write: never a check followed by a separate write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutCondition {
    /// Only if no object is there (`If-None-Match: *`).
    Absent,
    /// Only if the object there has this store ETag (`If-Match` on the store's, ciphertext, ETag:
    /// the object layer translates a client's plaintext ETag to it).
    Matches(String),
}

/// A listing request. Pagination follows ListObjectsV2.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Only keys starting with this.
    pub prefix: Option<String>,
    /// Roll keys up to common prefixes at this delimiter; never empty.
    pub delimiter: Option<String>,
    /// Only keys strictly after this one.
    pub start_after: Option<String>,
    /// An opaque token from a previous page of the same store.
    pub continuation_token: Option<String>,
    /// Page size, 1..=1000.
    pub max_keys: i32,
}

impl ListQuery {
    /// With a delimiter, a `start_after` inside a rolled-up common prefix means that whole
    /// prefix was already returned: continue after every key under it (as S3 does).
    pub fn skipping_rolled_up(mut self) -> Self {
        let (Some(after), Some(delim)) = (self.start_after.as_deref(), self.delimiter.as_deref()) else {
            return self;
        };
        let prefix = self.prefix.as_deref().unwrap_or("");
        let Some(rest) = after.strip_prefix(prefix) else {
            return self;
        };
        if let Some(i) = rest.find(delim) {
            self.start_after = Some(format!("{prefix}{}{}", &rest[..i + delim.len()], char::MAX));
        }
        self
    }
}

/// One object in a listing.
#[derive(Debug, Clone)]
pub struct ListEntry {
    /// Object key.
    pub key: String,
    /// Stored (ciphertext) size.
    pub size: u64,
    /// The store's ETag, quotes stripped.
    pub etag: String,
    /// Last modification time.
    pub last_modified: Option<SystemTime>,
    /// The object's metadata, when the store can give it without another request (fs).
    pub metadata: Option<Metadata>,
}

/// One page of a listing.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    /// Objects, in key order.
    pub objects: Vec<ListEntry>,
    /// Common prefixes, in order.
    pub common_prefixes: Vec<String>,
    /// Whether another page follows.
    pub is_truncated: bool,
    /// Token for the next page, when truncated.
    pub next_continuation_token: Option<String>,
}

/// A store of opaque objects. Every method is one logical request; implementations do not retry
/// requests whose body is a stream.
#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// The store's name for logs and errors ("primary", "mirror").
    fn name(&self) -> &str;

    /// `x-amz-replication-status` of an object, for stores that replicate (the mirror).
    fn replication_status(&self, _bucket: &str, _key: &str) -> Option<&'static str> {
        None
    }

    /// For a store made of several (the mirror): each one alone, for reads, in read order. A
    /// reader that finds an object it cannot authenticate asks each in turn: one store's damaged
    /// or forged copy must not make an intact copy in the other unavailable.
    fn read_views(&self) -> Vec<Arc<dyn ObjectStore>> {
        Vec::new()
    }

    /// All buckets.
    async fn list_buckets(&self) -> BackendResult<Vec<BucketInfo>>;
    /// Creates a bucket; `BucketAlreadyExists` if it exists.
    async fn create_bucket(&self, bucket: &str) -> BackendResult<()>;
    /// `Ok` if the bucket exists, `NoSuchBucket` otherwise.
    async fn head_bucket(&self, bucket: &str) -> BackendResult<()>;
    /// Deletes an empty bucket.
    async fn delete_bucket(&self, bucket: &str) -> BackendResult<()>;

    /// Stores `body` (exactly `len` bytes) under `key`, replacing any object there. If the body
    /// stream yields an error, nothing is stored and the error is returned as
    /// [`BackendError::Body`]. Returns the store's ETag.
    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: ByteStream,
        len: u64,
        metadata: Metadata,
    ) -> BackendResult<String>;
    /// Reads an object, or the byte range `range` of it. With `if_match`, fails with
    /// `PreconditionFailed` unless the stored ETag equals it.
    async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        range: Option<ByteRange>,
        if_match: Option<&str>,
    ) -> BackendResult<GetObject>;
    /// Reads an object's head.
    async fn head_object(&self, bucket: &str, key: &str) -> BackendResult<ObjectHead>;
    /// Deletes an object; deleting a missing object succeeds.
    async fn delete_object(&self, bucket: &str, key: &str) -> BackendResult<()>;
    /// Lists one page of objects.
    async fn list_objects(&self, bucket: &str, query: &ListQuery) -> BackendResult<ListPage>;

    /// Whether this store writes conditionally ([`ObjectStore::put_object_if`] with a
    /// condition); a store that cannot refuses such writes with `ConditionalUnsupported`.
    fn conditional_writes(&self) -> bool {
        false
    }

    /// [`ObjectStore::put_object`] under `condition`, evaluated by the store atomically with the
    /// write: if it does not hold, nothing is stored and the answer is `PreconditionFailed` (or
    /// `ConditionalConflict` when a concurrent write got in the way). `None` is a plain
    /// `put_object`. Stores that cannot write conditionally answer `ConditionalUnsupported`.
    async fn put_object_if(
        &self,
        bucket: &str,
        key: &str,
        body: ByteStream,
        len: u64,
        metadata: Metadata,
        condition: Option<PutCondition>,
    ) -> BackendResult<String> {
        match condition {
            None => self.put_object(bucket, key, body, len, metadata).await,
            Some(_) => Err(BackendError::ConditionalUnsupported),
        }
    }

    /// Stores the small `body` under `key` only if `condition` holds, else fails with
    /// `PreconditionFailed` (also for a concurrent conflicting write) and stores nothing: a
    /// compare-and-swap (the shared keyring's), through [`ObjectStore::put_object_if`]. Returns
    /// the new ETag. Stores that cannot write conditionally answer `InvalidArgument`.
    async fn put_small_if(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        metadata: Metadata,
        condition: PutCondition,
    ) -> BackendResult<String> {
        let len = body.len() as u64;
        let stream: ByteStream = Box::pin(futures::stream::once(async move { Ok(body) }));
        match self
            .put_object_if(bucket, key, stream, len, metadata, Some(condition))
            .await
        {
            Err(BackendError::ConditionalConflict) => Err(BackendError::PreconditionFailed),
            Err(BackendError::ConditionalUnsupported) => {
                Err(BackendError::InvalidArgument("this store cannot write conditionally"))
            }
            other => other,
        }
    }

    /// Stores under `key` the concatenation of `sources` (ranges of stored objects, in order)
    /// and `tail`, with `metadata`, replacing any object there; nothing is stored if any source
    /// cannot be read. Returns the store's ETag. Stores that can copy server-side do; this
    /// default streams the sources through this process.
    async fn compose(
        &self,
        bucket: &str,
        key: &str,
        sources: Vec<Source>,
        tail: Bytes,
        metadata: Metadata,
    ) -> BackendResult<String> {
        compose_by_streaming(self, bucket, key, sources, tail, metadata).await
    }

    /// Replaces the metadata of the whole object `key` (`size` bytes) — a server-side copy onto
    /// itself — only if it still has the store ETag `etag`, checked by the store atomically
    /// with the write where it can ([`PutCondition::Matches`]); else `PreconditionFailed`. What
    /// a key rewrap does to each object. This default is a conditional compose.
    async fn replace_metadata_if(
        &self,
        bucket: &str,
        key: &str,
        size: u64,
        etag: &str,
        metadata: Metadata,
    ) -> BackendResult<String> {
        replace_metadata_by_compose(self, bucket, key, size, etag, metadata).await
    }

    /// [`ObjectStore::compose`] under `condition`, evaluated by the store atomically with the
    /// final write, as for [`ObjectStore::put_object_if`]. This default streams the sources into
    /// one conditional write.
    async fn compose_if(
        &self,
        bucket: &str,
        key: &str,
        sources: Vec<Source>,
        tail: Bytes,
        metadata: Metadata,
        condition: Option<PutCondition>,
    ) -> BackendResult<String> {
        match condition {
            None => self.compose(bucket, key, sources, tail, metadata).await,
            Some(c) => compose_by_streaming_if(self, bucket, key, sources, tail, metadata, Some(c)).await,
        }
    }
}

/// [`ObjectStore::replace_metadata_if`] as a conditional compose of the whole object onto
/// itself.
pub async fn replace_metadata_by_compose<S: ObjectStore + ?Sized>(
    store: &S,
    bucket: &str,
    key: &str,
    size: u64,
    etag: &str,
    metadata: Metadata,
) -> BackendResult<String> {
    let source = Source::whole(bucket, key, size, etag);
    let condition = PutCondition::Matches(etag.to_string());
    store
        .compose_if(bucket, key, vec![source], Bytes::new(), metadata, Some(condition))
        .await
}

/// [`ObjectStore::compose`] by reading each source in turn and writing one new object: memory
/// stays at a few chunks whatever the sizes.
pub async fn compose_by_streaming<S: ObjectStore + ?Sized>(
    store: &S,
    bucket: &str,
    key: &str,
    sources: Vec<Source>,
    tail: Bytes,
    metadata: Metadata,
) -> BackendResult<String> {
    compose_by_streaming_if(store, bucket, key, sources, tail, metadata, None).await
}

/// [`compose_by_streaming`] whose one write carries `condition` ([`ObjectStore::put_object_if`]).
pub async fn compose_by_streaming_if<S: ObjectStore + ?Sized>(
    store: &S,
    bucket: &str,
    key: &str,
    sources: Vec<Source>,
    tail: Bytes,
    metadata: Metadata,
    condition: Option<PutCondition>,
) -> BackendResult<String> {
    use futures::StreamExt;
    let len = sources.iter().map(Source::len).sum::<u64>() + tail.len() as u64;
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(4);
    let produce = async move {
        for src in sources {
            let range = Some(ByteRange::Bounded(src.range.clone()));
            let mut body = match store
                .get_object(&src.bucket, &src.key, range, src.etag.as_deref())
                .await
            {
                Ok(got) => got.body,
                Err(e) => {
                    let _ = tx.send(Err(io::Error::other("a source could not be read"))).await;
                    return Err(e);
                }
            };
            while let Some(chunk) = body.next().await {
                let failed = chunk.is_err();
                if tx.send(chunk).await.is_err() || failed {
                    return Ok(());
                }
            }
        }
        if !tail.is_empty() {
            let _ = tx.send(Ok(tail)).await;
        }
        Ok(())
    };
    let (produced, put) = futures::join!(
        produce,
        store.put_object_if(bucket, key, receiver_stream(rx), len, metadata, condition)
    );
    produced?;
    put
}

/// A [`ByteStream`] of what arrives on `rx`.
pub fn receiver_stream(rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>) -> ByteStream {
    Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// Reads a small body into memory, refusing one longer than `limit` bytes.
pub async fn read_small(mut body: ByteStream, limit: usize) -> io::Result<Vec<u8>> {
    use futures::TryStreamExt;
    let mut out = Vec::new();
    while let Some(chunk) = body.try_next().await? {
        if out.len() + chunk.len() > limit {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "body longer than expected"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod list_query_tests {
    use super::ListQuery;

    fn skip(after: &str, prefix: Option<&str>, delimiter: Option<&str>) -> Option<String> {
        ListQuery {
            start_after: Some(after.to_string()),
            prefix: prefix.map(str::to_string),
            delimiter: delimiter.map(str::to_string),
            ..ListQuery::default()
        }
        .skipping_rolled_up()
        .start_after
    }

    #[test]
    fn markers_inside_common_prefixes_skip_them() {
        let s = |v: &str| Some(v.to_string());
        assert_eq!(skip("a/", None, Some("/")), Some(format!("a/{}", char::MAX)));
        assert_eq!(skip("p/a/b", Some("p/"), Some("/")), Some(format!("p/a/{}", char::MAX)));
        assert_eq!(skip("p/ab", Some("p/"), Some("/")), s("p/ab"));
        assert_eq!(skip("a/", None, None), s("a/"));
        // A marker outside the prefix is passed on unchanged.
        assert_eq!(skip("q/a/b", Some("p/"), Some("/")), s("q/a/b"));
    }
}
