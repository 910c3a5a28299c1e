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
//!
//! Files: `client` (the SDK client and its timeouts), `error` (SDK errors → [`BackendError`]),
//! `keys` (the blank-key workaround), `put` (one streamed PutObject), `compose` (server-side
//! copies and multipart composes), `encoding` (how the store writes keys in listings).

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::DateTime;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration, EncodingType};
use bytes::Bytes;
use futures::TryStreamExt;
use http_body_util::BodyExt;

use crate::backend::{
    BackendError, BackendResult, BucketInfo, ByteRange, ByteStream, GetObject, ListEntry, ListPage, ListQuery,
    Metadata, ObjectHead, ObjectStore, PutCondition, Source,
};

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

mod client;
mod compose;
mod encoding;
mod error;
mod keys;
mod put;

pub use self::client::S3StoreConfig;
pub use self::keys::{restore_key, sdk_key};

use self::client::copy_timeouts;
#[cfg(test)]
use self::compose::PartPlan;
use self::compose::plan_parts;
use self::encoding::ListEncoding;
use self::error::Missing;

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
            req = req.if_match(quoted(etag));
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
        let head = object_head(size, out.e_tag(), out.last_modified(), out.metadata());
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
        Ok(object_head(size, out.e_tag(), out.last_modified(), out.metadata()))
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

// === helpers ===

/// The head of an object from a GetObject's or HeadObject's answer.
fn object_head(
    size: u64,
    etag: Option<&str>,
    last_modified: Option<&DateTime>,
    metadata: Option<&HashMap<String, String>>,
) -> ObjectHead {
    ObjectHead {
        size,
        etag: strip_quotes(etag.unwrap_or_default()),
        last_modified: last_modified.and_then(system_time),
        metadata: metadata.map(|m| m.clone().into_iter().collect()).unwrap_or_default(),
    }
}

fn object_size(content_length: Option<i64>) -> Option<u64> {
    content_length.and_then(|n| u64::try_from(n).ok())
}

/// The total size from `Content-Range: bytes a-b/TOTAL`.
fn content_range_total(value: &str) -> Option<u64> {
    let (_, total) = value.strip_prefix("bytes ")?.split_once('/')?;
    total.trim().parse().ok()
}

/// A write condition as S3's `(If-None-Match, If-Match)` headers.
fn condition_headers(condition: Option<&PutCondition>) -> (Option<String>, Option<String>) {
    match condition {
        None => (None, None),
        Some(PutCondition::Absent) => (Some("*".to_owned()), None),
        Some(PutCondition::Matches(etag)) => (None, Some(quoted(etag))),
    }
}

/// An ETag as a conditional header carries it: in double quotes.
fn quoted(etag: &str) -> String {
    format!("\"{}\"", etag.trim_matches('"'))
}

fn strip_quotes(etag: &str) -> String {
    etag.trim_matches('"').to_owned()
}

fn system_time(t: &DateTime) -> Option<SystemTime> {
    SystemTime::try_from(*t).ok()
}

#[cfg(test)]
mod tests;
