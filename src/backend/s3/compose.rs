//! Server-side composition on an S3 store: one `CopyObject` when the result is one whole source,
//! else a multipart upload of `UploadPartCopy` ranges, with the object's last bytes (and the
//! tail the proxy appends) sent by us. Falls back to streaming when S3's part rules cannot hold.

use std::collections::HashMap;

use aws_sdk_s3::primitives::ByteStream as SdkByteStream;
use bytes::Bytes;

use super::condition_headers;
use super::{Missing, S3Store, copy_timeouts, restore_key, sdk_key, strip_quotes};
use crate::backend::{BackendResult, ByteRange, Metadata, ObjectStore, PutCondition, Source};
use crate::limits::{MAX_PART_NUMBER, MAX_PART_SIZE, MIN_PART_SIZE};

/// S3's smallest part other than the last.
const MIN_PART: u64 = MIN_PART_SIZE;
/// S3's largest part and largest CopyObject.
const MAX_COPY_PART: u64 = MAX_PART_SIZE;
/// Size of the pieces a source larger than [`MAX_COPY_PART`] is copied in.
const COPY_CHUNK: u64 = 4 << 30;
/// S3's most parts per upload.
const MAX_PARTS: usize = MAX_PART_NUMBER as usize;
/// UploadPartCopy requests in flight at once.
const COPY_CONCURRENCY: usize = 4;

/// One part of a server-side compose: a range copied by the store, or the object's last bytes
/// (at most [`MIN_PART`] of a source, plus the tail) sent by us.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum PartPlan {
    Copy(Source),
    Last(Option<Source>),
}

/// The parts of a server-side compose, or `None` when S3's part rules (every part but the last
/// at least 5 MiB, at most 10,000 parts) cannot hold and the object must be streamed.
pub(super) fn plan_parts(sources: &[Source], tail_len: u64) -> Option<Vec<PartPlan>> {
    let total: u64 = sources.iter().map(Source::len).sum::<u64>() + tail_len;
    if total < 2 * MIN_PART {
        return None;
    }
    let mut chunks: Vec<Source> = Vec::new();
    for src in sources {
        let mut start = src.range.start;
        while start < src.range.end {
            let left = src.range.end - start;
            let len = if left <= MAX_COPY_PART { left } else { COPY_CHUNK };
            chunks.push(Source {
                range: start..start + len,
                ..src.clone()
            });
            start += len;
        }
    }
    // The tail rides with the last chunk when that chunk is too small to stand alone.
    let last = match chunks.last() {
        Some(c) if tail_len > 0 && c.len() < MIN_PART => chunks.pop(),
        _ => None,
    };
    if chunks.iter().any(|c| c.len() < MIN_PART) {
        return None;
    }
    let mut parts: Vec<PartPlan> = chunks.into_iter().map(PartPlan::Copy).collect();
    if tail_len > 0 || last.is_some() {
        parts.push(PartPlan::Last(last));
    }
    (parts.len() <= MAX_PARTS).then_some(parts)
}

impl S3Store {
    /// Whether `src` covers its whole object.
    pub(super) async fn whole_object(&self, src: &Source) -> BackendResult<bool> {
        let head = self.head_object(&src.bucket, &src.key).await?;
        Ok(head.size == src.range.end)
    }

    pub(super) async fn copy_object(
        &self,
        src: &Source,
        bucket: &str,
        key: &str,
        metadata: Metadata,
        condition: Option<&PutCondition>,
    ) -> BackendResult<String> {
        let (if_none_match, if_match) = condition_headers(condition);
        let out = self
            .client
            .copy_object()
            .bucket(bucket)
            .key(sdk_key(key))
            .copy_source(copy_source(src))
            .set_copy_source_if_match(src.etag.as_ref().map(|e| format!("\"{e}\"")))
            .set_if_match(if_match)
            .set_if_none_match(if_none_match)
            .metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace)
            .content_type("application/octet-stream")
            .set_metadata(Some(metadata.into_iter().collect::<HashMap<_, _>>()))
            .customize()
            .mutate_request(restore_key(key))
            .config_override(copy_timeouts())
            .send()
            .await
            .map_err(|e| self.error("CopyObject", Missing::Key, e))?;
        Ok(strip_quotes(
            out.copy_object_result().and_then(|r| r.e_tag()).unwrap_or_default(),
        ))
    }

    pub(super) async fn compose_multipart(
        &self,
        bucket: &str,
        key: &str,
        parts: Vec<PartPlan>,
        tail: Bytes,
        metadata: Metadata,
        condition: Option<PutCondition>,
    ) -> BackendResult<String> {
        use futures::StreamExt;
        let created = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(sdk_key(key))
            .content_type("application/octet-stream")
            .set_metadata(Some(metadata.into_iter().collect::<HashMap<_, _>>()))
            .customize()
            .mutate_request(restore_key(key))
            .send()
            .await
            .map_err(|e| self.error("CreateMultipartUpload", Missing::Bucket, e))?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| self.protocol_error("CreateMultipartUpload: no upload id"))?
            .to_owned();
        let uploaded: Vec<BackendResult<aws_sdk_s3::types::CompletedPart>> =
            futures::stream::iter(parts.into_iter().enumerate())
                .map(|(i, part)| {
                    let (upload_id, tail) = (upload_id.as_str(), tail.clone());
                    async move {
                        self.compose_part(bucket, key, upload_id, i as i32 + 1, part, tail)
                            .await
                    }
                })
                .buffered(COPY_CONCURRENCY)
                .collect()
                .await;
        let completed: BackendResult<Vec<_>> = uploaded.into_iter().collect();
        let (if_none_match, if_match) = condition_headers(condition.as_ref());
        let result = match completed {
            Ok(parts) => self
                .client
                .complete_multipart_upload()
                .bucket(bucket)
                .key(sdk_key(key))
                .upload_id(&upload_id)
                .set_if_none_match(if_none_match)
                .set_if_match(if_match)
                .multipart_upload(
                    aws_sdk_s3::types::CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .customize()
                .mutate_request(restore_key(key))
                .config_override(copy_timeouts())
                .send()
                .await
                .map(|out| strip_quotes(out.e_tag().unwrap_or_default()))
                .map_err(|e| self.error("CompleteMultipartUpload", Missing::Key, e)),
            Err(e) => Err(e),
        };
        if result.is_err() {
            let aborted = self
                .client
                .abort_multipart_upload()
                .bucket(bucket)
                .key(sdk_key(key))
                .upload_id(&upload_id)
                .customize()
                .mutate_request(restore_key(key))
                .send()
                .await;
            if aborted.is_err() {
                tracing::warn!(store = %self.name, bucket, "could not abort a failed server-side compose");
            }
        }
        result
    }

    async fn compose_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        number: i32,
        part: PartPlan,
        tail: Bytes,
    ) -> BackendResult<aws_sdk_s3::types::CompletedPart> {
        let etag = match part {
            PartPlan::Copy(src) => {
                let out = self
                    .client
                    .upload_part_copy()
                    .bucket(bucket)
                    .key(sdk_key(key))
                    .upload_id(upload_id)
                    .part_number(number)
                    .copy_source(copy_source(&src))
                    .copy_source_range(format!("bytes={}-{}", src.range.start, src.range.end - 1))
                    .set_copy_source_if_match(src.etag.as_ref().map(|e| format!("\"{e}\"")))
                    .customize()
                    .mutate_request(restore_key(key))
                    .config_override(copy_timeouts())
                    .send()
                    .await
                    .map_err(|e| self.error("UploadPartCopy", Missing::Key, e))?;
                out.copy_part_result().and_then(|r| r.e_tag()).map(str::to_owned)
            }
            PartPlan::Last(src) => {
                // At most MIN_PART bytes of a source plus the tail: small enough to hold.
                let mut body = Vec::new();
                if let Some(src) = src {
                    let got = self
                        .get_object(
                            &src.bucket,
                            &src.key,
                            Some(ByteRange::Bounded(src.range.clone())),
                            src.etag.as_deref(),
                        )
                        .await?;
                    body = crate::backend::read_small(got.body, src.len() as usize)
                        .await
                        .map_err(|e| self.protocol_error(&format!("UploadPart: source read failed: {e}")))?;
                }
                body.extend_from_slice(&tail);
                let out = self
                    .client
                    .upload_part()
                    .bucket(bucket)
                    .key(sdk_key(key))
                    .upload_id(upload_id)
                    .part_number(number)
                    .content_length(body.len() as i64)
                    .body(SdkByteStream::from(body))
                    .customize()
                    .mutate_request(restore_key(key))
                    .send()
                    .await
                    .map_err(|e| self.error("UploadPart", Missing::Key, e))?;
                out.e_tag().map(str::to_owned)
            }
        };
        let etag = etag.ok_or_else(|| self.protocol_error("UploadPart: no ETag"))?;
        Ok(aws_sdk_s3::types::CompletedPart::builder()
            .part_number(number)
            .e_tag(etag)
            .build())
    }
}

/// `x-amz-copy-source`: the bucket and the URL-encoded key.
fn copy_source(src: &Source) -> String {
    let mut out = format!("{}/", src.bucket);
    for b in src.key.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
