//! The mirror: two stores behind one [`ObjectStore`], so the S3 front end does not know it is
//! talking to two.
//!
//! Writes (`put`, `delete`, bucket changes) go to both stores; a body is encrypted once and the
//! same ciphertext is streamed to both through a bounded tee. This version implements
//! `write = "sync"` strictly: a write is acknowledged only when both stores have it. If either
//! fails while the body is still flowing, the other's upload is aborted too, so neither store
//! changes. A store can still fail after the other has committed (an error answer to the last
//! byte, or a failed delete): the client gets an error, the stores differ until the client
//! retries, and the split is logged at error level. Repair records, which would close that gap,
//! are not built yet.
//!
//! Reads (`get`, `head`, listings) go to the configured first store and fail over to the other
//! on errors that say the store is unreachable or broken (connection failures, timeouts, 5xx,
//! local I/O), before any response byte has reached the client. "Not found" does not fail over:
//! the stores are kept identical, and a missing object is an answer, not a fault.

use std::io;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::backend::{
    BackendError, BackendResult, BucketInfo, ByteRange, ByteStream, GetObject, ListPage, ListQuery, Metadata,
    ObjectHead, ObjectStore, Source, receiver_stream,
};

/// How writes use the mirror (`[mirror] write`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Acknowledge when both stores have the object.
    Sync,
    /// Acknowledge after the first store; repair the second in the background.
    Async,
}

/// Which store reads go to first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// The primary, failing over to the mirror.
    Primary,
    /// The mirror, failing over to the primary.
    Mirror,
}

/// Chunks buffered per store in the tee: memory per mirrored upload stays at a few chunks even
/// when one store is slower than the other.
const TEE_DEPTH: usize = 4;

/// A primary and a mirror store, written together, read with failover.
pub struct Mirror {
    primary: Arc<dyn ObjectStore>,
    mirror: Arc<dyn ObjectStore>,
    read: ReadMode,
}

impl Mirror {
    /// Mirrors `primary` to `mirror`; reads go first to the store `read` names.
    pub fn new(primary: Arc<dyn ObjectStore>, mirror: Arc<dyn ObjectStore>, read: ReadMode) -> Self {
        Self { primary, mirror, read }
    }

    fn read_order(&self) -> [&Arc<dyn ObjectStore>; 2] {
        match self.read {
            ReadMode::Primary => [&self.primary, &self.mirror],
            ReadMode::Mirror => [&self.mirror, &self.primary],
        }
    }

    /// A write that one store committed and the other did not: the stores now differ.
    fn log_split(&self, op: &str, bucket: &str, key: &str) {
        tracing::error!(
            op,
            bucket,
            key,
            "mirror: one store has the change, the other failed; stores differ until a retry"
        );
    }

    /// Runs a read on the first store, and on the second if the first is down.
    async fn read<'a, T, F, Fut>(&'a self, op: F) -> BackendResult<T>
    where
        F: Fn(&'a Arc<dyn ObjectStore>) -> Fut,
        Fut: Future<Output = BackendResult<T>>,
    {
        let [first, second] = self.read_order();
        match op(first).await {
            Err(e) if e.is_outage() => {
                tracing::warn!(store = first.name(), error = %e, fallback = second.name(), "read failed over");
                op(second).await
            }
            other => other,
        }
    }
}

/// Both results of a mirrored write, as one: an error from either store is the error.
fn both<T>(a: BackendResult<T>, b: BackendResult<()>) -> BackendResult<T> {
    let value = a?;
    b?;
    Ok(value)
}

/// Copies an `io::Error` (it is not `Clone`) so both tee branches can fail with it.
fn copy_error(e: &io::Error) -> io::Error {
    io::Error::new(e.kind(), e.to_string())
}

#[async_trait]
impl ObjectStore for Mirror {
    fn name(&self) -> &str {
        "mirror-pair"
    }

    async fn list_buckets(&self) -> BackendResult<Vec<BucketInfo>> {
        self.read(|s| s.list_buckets()).await
    }

    async fn create_bucket(&self, bucket: &str) -> BackendResult<()> {
        let (a, b) = tokio::join!(self.primary.create_bucket(bucket), self.mirror.create_bucket(bucket));
        // A bucket the mirror already has (say, created before the mirror was configured) is
        // fine as long as the primary's answer is the client's answer.
        let b = match b {
            Err(BackendError::BucketAlreadyExists) if a.is_ok() => Ok(()),
            other => other,
        };
        both(a, b)
    }

    async fn head_bucket(&self, bucket: &str) -> BackendResult<()> {
        self.read(|s| s.head_bucket(bucket)).await
    }

    async fn delete_bucket(&self, bucket: &str) -> BackendResult<()> {
        let (a, b) = tokio::join!(self.primary.delete_bucket(bucket), self.mirror.delete_bucket(bucket));
        let b = match b {
            Err(BackendError::NoSuchBucket) if a.is_ok() => Ok(()),
            other => other,
        };
        both(a, b)
    }

    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        mut body: ByteStream,
        len: u64,
        metadata: Metadata,
    ) -> BackendResult<String> {
        let (tx_a, rx_a) = mpsc::channel(TEE_DEPTH);
        let (tx_b, rx_b) = mpsc::channel(TEE_DEPTH);
        // The tee: every chunk to both. If either upload stops listening (it failed), the
        // other is told to fail too, so neither store commits a write the client will not see
        // acknowledged.
        let pump = async move {
            while let Some(item) = body.next().await {
                match item {
                    Ok(chunk) => {
                        let (a, b) = tokio::join!(tx_a.send(Ok(chunk.clone())), tx_b.send(Ok(chunk)));
                        if a.is_err() || b.is_err() {
                            let abort = || Err(io::Error::other("the other store's upload failed"));
                            let _ = tokio::join!(tx_a.send(abort()), tx_b.send(abort()));
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tokio::join!(tx_a.send(Err(copy_error(&e))), tx_b.send(Err(e)));
                        return;
                    }
                }
            }
        };
        let meta_b = metadata.clone();
        let put_a = self
            .primary
            .put_object(bucket, key, receiver_stream(rx_a), len, metadata);
        let put_b = self.mirror.put_object(bucket, key, receiver_stream(rx_b), len, meta_b);
        let ((), a, b) = tokio::join!(pump, put_a, put_b);
        if a.is_ok() != b.is_ok() {
            self.log_split("put", bucket, key);
        }
        // A body error is the client's: report it as such whichever store saw it first.
        match (a, b) {
            (Ok(etag), Ok(_)) => Ok(etag),
            (Err(e @ BackendError::Body(_)), _) | (_, Err(e @ BackendError::Body(_))) => Err(e),
            (Err(e), Ok(_)) | (Ok(_), Err(e)) | (Err(e), Err(_)) => Err(e),
        }
    }

    async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        range: Option<ByteRange>,
        if_match: Option<&str>,
    ) -> BackendResult<GetObject> {
        self.read(|s| s.get_object(bucket, key, range.clone(), if_match)).await
    }

    async fn head_object(&self, bucket: &str, key: &str) -> BackendResult<ObjectHead> {
        self.read(|s| s.head_object(bucket, key)).await
    }

    async fn delete_object(&self, bucket: &str, key: &str) -> BackendResult<()> {
        let (a, b) = tokio::join!(
            self.primary.delete_object(bucket, key),
            self.mirror.delete_object(bucket, key)
        );
        if a.is_ok() != b.is_ok() {
            self.log_split("delete", bucket, key);
        }
        both(a, b)
    }

    async fn list_objects(&self, bucket: &str, query: &ListQuery) -> BackendResult<ListPage> {
        self.read(|s| s.list_objects(bucket, query)).await
    }

    /// Each store composes from its own copies of the sources (server-side where it can).
    async fn compose(
        &self,
        bucket: &str,
        key: &str,
        sources: Vec<Source>,
        tail: Bytes,
        metadata: Metadata,
    ) -> BackendResult<String> {
        // Source ETags are the primary's; the mirror's copies have their own.
        let mirror_sources = sources.iter().cloned().map(|s| Source { etag: None, ..s }).collect();
        let (a, b) = tokio::join!(
            self.primary
                .compose(bucket, key, sources, tail.clone(), metadata.clone()),
            self.mirror.compose(bucket, key, mirror_sources, tail, metadata)
        );
        if a.is_ok() != b.is_ok() {
            self.log_split("compose", bucket, key);
        }
        both(a, b.map(drop))
    }
}
