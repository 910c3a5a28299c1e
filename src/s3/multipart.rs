//! Multipart uploads, with no state in the proxy: everything about an upload lives in the store,
//! under the bucket's reserved prefix, so any proxy process serves any request of any upload
//! and a restart loses nothing.
//!
//! - `.escrow-mpu/u/<upload id>`: the upload's marker. Its metadata carries the object's DEK,
//!   wrapped for the final bucket and key; its body is `{"key": …, "record": base64(sealed
//!   record)}` (the record holds the headers given at creation).
//! - `.escrow-mpu/p/<upload id>/<part number, 5 digits>`: each part, a stream sealed under keys
//!   derived from the DEK and the part number; uploading a part again replaces it.
//!
//! Completion reads each part's trailer (authenticated: its plaintext length and MD5, which the
//! client's ETag list must match), then has the store compose the object from the part streams
//! and the sealed manifest (server-side where the store can copy), then deletes the upload's
//! objects. Listings never show the reserved prefix.

use std::collections::BTreeMap;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use futures::StreamExt;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};
use serde::{Deserialize, Serialize};

use super::Proxy;
use super::error;
use super::etags::Known;
use super::object::{
    ClientDigests, UnsafeAsks, Upload, check_copy_conditions, client_digests, declared_length, digests_checksum,
    expectations, record_of, refuse_reserved, refuse_sse_c, refuse_unsafe, sse, unsafe_asks,
};
use crate::backend::{BackendError, ByteRange, ListEntry, ListQuery, Metadata, ObjectHead, Source, read_small};
use crate::body::Expectations;
use crate::crypto::envelope::{ObjectRecord, open_record, seal_record};
use crate::crypto::format::{ChecksumAlgorithm, DEFAULT_SEGMENT_LOG2, TRAILER_LEN, meta};
use crate::crypto::manifest::{MAX_PART_NUMBER, Manifest, PartEntry};
use crate::crypto::segment::{StreamHeader, Trailer, open_trailer};
use crate::secret::Key256;
use crate::stored;

/// Where the proxy keeps multipart uploads in each bucket; hidden from listings, refused as a
/// client key.
pub const RESERVED_PREFIX: &str = ".escrow-mpu/";
/// S3's smallest part other than the last.
const MIN_PART_SIZE: u64 = 5 << 20;
/// S3's largest part.
const MAX_PART_SIZE: u64 = 5 << 30;
/// Store requests in flight at once while completing, listing or cleaning up an upload.
const CONCURRENCY: usize = 16;
/// Largest marker body read.
const MAX_MARKER_LEN: usize = 64 << 10;

fn marker_key(id: &str) -> String {
    format!("{RESERVED_PREFIX}u/{id}")
}

fn parts_prefix(id: &str) -> String {
    format!("{RESERVED_PREFIX}p/{id}/")
}

fn part_key(id: &str, number: u32) -> String {
    format!("{}{number:05}", parts_prefix(id))
}

/// Upload ids are 32 lowercase hex digits (128 random bits).
fn valid_upload_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn no_such_upload() -> s3s::S3Error {
    s3_error!(
        NoSuchUpload,
        "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed."
    )
}

/// The marker's body.
#[derive(Serialize, Deserialize)]
struct MarkerBody {
    key: String,
    record: String,
}

/// An upload in progress, as its marker describes it.
struct InProgress {
    dek: Key256,
    record: ObjectRecord,
}

/// A part object of an upload, as the store lists it.
struct StoredPart {
    number: u32,
    entry: ListEntry,
}

impl Proxy {
    /// Reads the marker of upload `id` of `bucket`/`key`: `NoSuchUpload` unless it exists for
    /// exactly this key.
    async fn load_upload(&self, bucket: &str, key: &str, id: &str) -> S3Result<InProgress> {
        if !valid_upload_id(id) {
            return Err(no_such_upload());
        }
        let (marker, head) = match self.read_marker(bucket, id).await {
            Ok(found) => found,
            Err(BackendError::NoSuchKey) => return Err(no_such_upload()),
            Err(e) => return Err(error::backend(e)),
        };
        if marker.key != key {
            return Err(no_such_upload());
        }
        let unwrapped = stored::unwrap(&self.keyring, bucket, key, &head.metadata).map_err(error::envelope)?;
        let sealed = B64.decode(&marker.record).map_err(|_| no_such_upload())?;
        let record = open_record(&unwrapped.dek, &unwrapped.binding, &sealed).map_err(error::crypto)?;
        Ok(InProgress {
            dek: unwrapped.dek,
            record,
        })
    }

    /// The marker of upload `id` (whatever key it is for) and its head. A marker that is not
    /// the proxy's JSON is as good as missing (`NoSuchKey`).
    async fn read_marker(&self, bucket: &str, id: &str) -> Result<(MarkerBody, ObjectHead), BackendError> {
        let got = self.store.get_object(bucket, &marker_key(id), None, None).await?;
        let body = read_small(got.body, MAX_MARKER_LEN).await.map_err(BackendError::Body)?;
        let marker = serde_json::from_slice(&body).map_err(|_| BackendError::NoSuchKey)?;
        Ok((marker, got.head))
    }

    /// Every stored object under `prefix` (all pages).
    async fn list_all(&self, bucket: &str, prefix: &str) -> S3Result<Vec<ListEntry>> {
        let mut query = ListQuery {
            prefix: Some(prefix.to_string()),
            max_keys: 1000,
            ..Default::default()
        };
        let mut all = Vec::new();
        loop {
            let page = self.store.list_objects(bucket, &query).await.map_err(error::backend)?;
            all.extend(page.objects);
            match page.next_continuation_token {
                Some(token) if page.is_truncated => query.continuation_token = Some(token),
                _ => return Ok(all),
            }
        }
    }

    /// Every part object of upload `id`, in part-number order.
    async fn stored_parts(&self, bucket: &str, id: &str) -> S3Result<Vec<StoredPart>> {
        let prefix = parts_prefix(id);
        let mut parts: Vec<StoredPart> = self
            .list_all(bucket, &prefix)
            .await?
            .into_iter()
            .filter_map(|entry| {
                let number = entry.key[prefix.len()..].parse::<u32>().ok()?;
                Some(StoredPart { number, entry })
            })
            .collect();
        parts.sort_by_key(|p| p.number);
        Ok(parts)
    }

    /// Opens the trailers of `parts`, [`CONCURRENCY`] at a time, in order.
    async fn part_trailers(&self, bucket: &str, dek: &Key256, parts: &[&StoredPart]) -> Vec<S3Result<Trailer>> {
        futures::stream::iter(0..parts.len())
            .map(|i| self.part_trailer(bucket, dek, parts[i]))
            .buffered(CONCURRENCY)
            .collect()
            .await
    }

    /// Opens the trailer of a part object: its plaintext length, MD5, checksum and header.
    async fn part_trailer(&self, bucket: &str, dek: &Key256, part: &StoredPart) -> S3Result<Trailer> {
        let got = self
            .store
            .get_object(
                bucket,
                &part.entry.key,
                Some(ByteRange::Suffix(TRAILER_LEN as u64)),
                None,
            )
            .await
            .map_err(error::backend)?;
        let tail = read_small(got.body, TRAILER_LEN)
            .await
            .map_err(|e| error::backend(BackendError::Body(e)))?;
        let trailer = open_trailer(dek, part.number, &tail).map_err(error::crypto)?;
        if trailer.header.layout().stored_len(trailer.plain_len) != got.head.size || trailer.header.extension_len() != 0
        {
            return Err(error::crypto(crate::crypto::CryptoError::Decrypt));
        }
        Ok(trailer)
    }

    /// Deletes the upload's parts and then its marker. Failures leave garbage under the
    /// reserved prefix, never a visible object; they are logged.
    async fn remove_upload(&self, bucket: &str, id: &str, parts: Vec<StoredPart>) {
        let results: Vec<_> = futures::stream::iter(parts)
            .map(|p| async move { self.store.delete_object(bucket, &p.entry.key).await })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let failed = results.iter().filter(|r| r.is_err()).count();
        if failed > 0 {
            tracing::warn!(bucket, failed, "could not delete some parts of a finished upload");
        }
        if self.store.delete_object(bucket, &marker_key(id)).await.is_err() {
            tracing::warn!(bucket, "could not delete the marker of a finished upload");
        }
    }

    pub(super) async fn create_multipart_upload_op(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let input = req.input;
        refuse_reserved(&input.key)?;
        refuse_unsafe(unsafe_asks!(input))?;
        self.store.head_bucket(&input.bucket).await.map_err(error::backend)?;
        let record = record_of!(input);
        let dek = Key256::random();
        let id = hex::encode(rand::random::<[u8; 16]>());
        let wrapped = stored::key_metadata(&self.keyring, &input.bucket, &input.key, &dek);
        let metadata = wrapped.metadata;
        let body = serde_json::to_vec(&MarkerBody {
            key: input.key.clone(),
            record: B64.encode(seal_record(&dek, &wrapped.binding, &record)),
        })
        .map_err(|_| s3_error!(InternalError))?;
        let len = body.len() as u64;
        let stream: crate::backend::ByteStream =
            Box::pin(futures::stream::once(async move { Ok(bytes::Bytes::from(body)) }));
        self.store
            .put_object(&input.bucket, &marker_key(&id), stream, len, metadata)
            .await
            .map_err(error::backend)?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(id),
            server_side_encryption: Some(sse()),
            ..Default::default()
        }))
    }

    pub(super) async fn upload_part_op(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let plain_len = declared_length(&req.headers, req.input.content_length)?;
        let expect = expectations(&req.headers, &req.trailing_headers, client_digests!(req.input))?;
        let input = req.input;
        let number = part_number(input.part_number)?;
        refuse_sse_c(input.sse_customer_algorithm.is_some() || input.sse_customer_key.is_some())?;
        if plain_len > MAX_PART_SIZE {
            return Err(s3_error!(
                EntityTooLarge,
                "Your proposed upload exceeds the maximum allowed size."
            ));
        }
        let upload = self.load_upload(&input.bucket, &input.key, &input.upload_id).await?;
        let body = input.body.ok_or_else(|| s3_error!(IncompleteBody))?;
        let digests = self
            .put_part(
                &input.bucket,
                &input.upload_id,
                &upload.dek,
                number,
                body,
                plain_len,
                expect,
            )
            .await?;
        let c = digests_checksum(&digests);
        Ok(S3Response::new(UploadPartOutput {
            server_side_encryption: Some(sse()),
            e_tag: Some(ETag::Strong(hex::encode(digests.md5))),
            checksum_crc32: c.checksum_crc32,
            checksum_crc32c: c.checksum_crc32c,
            checksum_crc64nvme: c.checksum_crc64nvme,
            checksum_sha1: c.checksum_sha1,
            checksum_sha256: c.checksum_sha256,
            ..Default::default()
        }))
    }

    /// Encrypts and stores part `number` of upload `id`.
    #[allow(clippy::too_many_arguments)]
    async fn put_part<S, E>(
        &self,
        bucket: &str,
        id: &str,
        dek: &Key256,
        number: u32,
        body: S,
        plain_len: u64,
        expect: Expectations,
    ) -> S3Result<crate::body::Digests>
    where
        S: futures::Stream<Item = Result<bytes::Bytes, E>> + Unpin + Send + Sync + 'static,
        E: std::fmt::Display + 'static,
    {
        let key = part_key(id, number);
        let mut metadata = Metadata::new();
        metadata.insert(
            meta::VERSION.into(),
            crate::crypto::format::ENVELOPE_VERSION.to_string(),
        );
        let upload = Upload {
            bucket,
            key: &key,
            dek,
            part: number,
            header: StreamHeader::random(DEFAULT_SEGMENT_LOG2),
            extension: Vec::new(),
            metadata,
        };
        let (_, digests) = self.upload(upload, body, plain_len, expect).await?;
        Ok(digests)
    }

    pub(super) async fn upload_part_copy_op(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let input = req.input;
        let number = part_number(input.part_number)?;
        refuse_sse_c(input.sse_customer_algorithm.is_some() || input.copy_source_sse_customer_algorithm.is_some())?;
        let (src_bucket, src_key) = super::object::copy_source(&input.copy_source)?;
        let upload = self.load_upload(&input.bucket, &input.key, &input.upload_id).await?;
        let opened = self.open(&src_bucket, &src_key).await?;
        check_copy_conditions(
            &opened,
            input.copy_source_if_match.as_ref(),
            input.copy_source_if_none_match.as_ref(),
            input.copy_source_if_modified_since.as_ref(),
            input.copy_source_if_unmodified_since.as_ref(),
        )?;
        let size = opened.size();
        let range = match &input.copy_source_range {
            Some(r) => Some(parse_copy_range(r, size)?),
            None => None,
        };
        let len = range.as_ref().map_or(size, |r| r.end - r.start);
        if len > MAX_PART_SIZE {
            return Err(s3_error!(
                EntityTooLarge,
                "Your proposed upload exceeds the maximum allowed size."
            ));
        }
        // The source's keys are not the upload's: its plaintext passes through this process
        // (never leaving it) and is sealed again as the part.
        let plain = self.read_plaintext(&src_bucket, &src_key, &opened, range).await?;
        let digests = self
            .put_part(
                &input.bucket,
                &input.upload_id,
                &upload.dek,
                number,
                plain,
                len,
                Expectations::default(),
            )
            .await?;
        Ok(S3Response::new(UploadPartCopyOutput {
            copy_part_result: Some(CopyPartResult {
                e_tag: Some(ETag::Strong(hex::encode(digests.md5))),
                last_modified: Some(Timestamp::from(SystemTime::now())),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    pub(super) async fn complete_multipart_upload_op(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let input = req.input;
        if input.if_match.is_some() || input.if_none_match.is_some() {
            return Err(s3_error!(
                NotImplemented,
                "Conditional writes are not supported through escrow-proxy yet."
            ));
        }
        let (bucket, key, id) = (&input.bucket, &input.key, &input.upload_id);
        let upload = self.load_upload(bucket, key, id).await?;
        let asked = input.multipart_upload.and_then(|m| m.parts).unwrap_or_default();
        if asked.is_empty() {
            return Err(s3_error!(
                MalformedXML,
                "The XML you provided was not well-formed or did not validate against our published schema."
            ));
        }
        let mut numbers = Vec::with_capacity(asked.len());
        for part in &asked {
            let n = part
                .part_number
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| (1..=MAX_PART_NUMBER).contains(n))
                .ok_or_else(|| s3_error!(InvalidPart, "One or more of the specified parts could not be found."))?;
            if numbers.last().is_some_and(|&last| last >= n) {
                return Err(s3_error!(
                    InvalidPartOrder,
                    "The list of parts was not in ascending order. Parts must be ordered by part number."
                ));
            }
            numbers.push(n);
        }
        let stored_parts = self.stored_parts(bucket, id).await?;
        let by_number: BTreeMap<u32, &StoredPart> = stored_parts.iter().map(|p| (p.number, p)).collect();
        let chosen: Vec<&StoredPart> = numbers
            .iter()
            .map(|n| by_number.get(n).copied())
            .collect::<Option<_>>()
            .ok_or_else(|| s3_error!(InvalidPart, "One or more of the specified parts could not be found."))?;
        let trailers = self.part_trailers(bucket, &upload.dek, &chosen).await;
        let mut entries = Vec::with_capacity(chosen.len());
        for ((asked, part), trailer) in asked.iter().zip(&chosen).zip(trailers) {
            let trailer = trailer?;
            let etag_matches = asked.e_tag.as_ref().is_some_and(|e| {
                e.value()
                    .trim_matches('"')
                    .eq_ignore_ascii_case(&hex::encode(trailer.md5))
            });
            if !etag_matches || !checksum_matches(asked, &trailer) {
                return Err(s3_error!(
                    InvalidPart,
                    "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag."
                ));
            }
            entries.push(PartEntry {
                number: part.number,
                plain_len: trailer.plain_len,
                md5: trailer.md5,
                header: trailer.header,
            });
        }
        if let Some(small) = entries[..entries.len() - 1]
            .iter()
            .find(|e| e.plain_len < MIN_PART_SIZE)
        {
            return Err(s3_error!(
                EntityTooSmall,
                "Your proposed upload (part {}) is smaller than the minimum allowed size.",
                small.number
            ));
        }
        let mut record = upload.record;
        record.size = entries.iter().map(|e| e.plain_len).sum();
        let manifest = Manifest { parts: entries, record };
        let wrapped = stored::key_metadata(&self.keyring, bucket, key, &upload.dek);
        let tail = manifest.seal(&upload.dek, &wrapped.binding);
        let mut metadata = wrapped.metadata;
        metadata.insert(meta::PARTS.into(), manifest.parts.len().to_string());
        let sources = chosen
            .iter()
            .map(|p| Source {
                bucket: bucket.clone(),
                key: p.entry.key.clone(),
                range: 0..p.entry.size,
                etag: Some(p.entry.etag.clone()).filter(|e| !e.is_empty()),
            })
            .collect();
        let store_etag = self
            .store
            .compose(bucket, key, sources, tail.into(), metadata)
            .await
            .map_err(error::backend)?;
        let etag = manifest.etag();
        self.etags.insert(
            bucket,
            key,
            &store_etag,
            Known {
                etag: etag.clone(),
                size: manifest.record.size,
            },
        );
        self.remove_upload(bucket, id, stored_parts).await;
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(input.bucket.clone()),
            key: Some(input.key.clone()),
            location: Some(format!("/{}/{}", input.bucket, input.key)),
            e_tag: Some(ETag::Strong(etag)),
            server_side_encryption: Some(sse()),
            ..Default::default()
        }))
    }

    pub(super) async fn abort_multipart_upload_op(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let input = req.input;
        self.load_upload(&input.bucket, &input.key, &input.upload_id).await?;
        let parts = self.stored_parts(&input.bucket, &input.upload_id).await?;
        self.remove_upload(&input.bucket, &input.upload_id, parts).await;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    pub(super) async fn list_parts_op(&self, req: S3Request<ListPartsInput>) -> S3Result<S3Response<ListPartsOutput>> {
        let input = req.input;
        let upload = self.load_upload(&input.bucket, &input.key, &input.upload_id).await?;
        let max_parts = input.max_parts.unwrap_or(1000).clamp(0, 1000) as usize;
        let marker = input.part_number_marker.unwrap_or(0).max(0) as u32;
        let all: Vec<StoredPart> = self
            .stored_parts(&input.bucket, &input.upload_id)
            .await?
            .into_iter()
            .filter(|p| p.number > marker)
            .collect();
        let is_truncated = all.len() > max_parts;
        let page: Vec<StoredPart> = all.into_iter().take(max_parts).collect();
        let page_refs: Vec<&StoredPart> = page.iter().collect();
        let trailers = self.part_trailers(&input.bucket, &upload.dek, &page_refs).await;
        let mut parts = Vec::with_capacity(page.len());
        for (p, trailer) in page.iter().zip(trailers) {
            let trailer = trailer?;
            let c = trailer
                .checksum
                .as_ref()
                .map(|(a, d)| super::object::checksum_dto(*a, d))
                .unwrap_or_default();
            parts.push(Part {
                part_number: Some(p.number as i32),
                size: Some(trailer.plain_len as i64),
                e_tag: Some(ETag::Strong(hex::encode(trailer.md5))),
                last_modified: p.entry.last_modified.map(Timestamp::from),
                checksum_crc32: c.checksum_crc32,
                checksum_crc32c: c.checksum_crc32c,
                checksum_crc64nvme: c.checksum_crc64nvme,
                checksum_sha1: c.checksum_sha1,
                checksum_sha256: c.checksum_sha256,
            });
        }
        let next = parts.last().and_then(|p| p.part_number);
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            max_parts: Some(max_parts as i32),
            part_number_marker: Some(marker as i32),
            next_part_number_marker: next,
            is_truncated: Some(is_truncated),
            parts: Some(parts),
            storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
            owner: Some(owner()),
            initiator: Some(Initiator {
                display_name: Some("escrow-proxy".into()),
                id: Some("escrow-proxy".into()),
            }),
            ..Default::default()
        }))
    }

    pub(super) async fn list_multipart_uploads_op(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let input = req.input;
        let max_uploads = input.max_uploads.unwrap_or(1000).clamp(1, 1000) as usize;
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
        let markers_prefix = format!("{RESERVED_PREFIX}u/");
        let ids: Vec<String> = self
            .list_all(&input.bucket, &markers_prefix)
            .await?
            .into_iter()
            .map(|o| o.key[markers_prefix.len()..].to_string())
            .collect();
        let bucket = input.bucket.as_str();
        // A marker gone meanwhile (completed, aborted) is simply not listed.
        let found: Vec<Option<(String, String, Option<SystemTime>)>> = futures::stream::iter(ids)
            .map(|id| async move {
                let (marker, head) = self.read_marker(bucket, &id).await.ok()?;
                Some((marker.key, id, head.last_modified))
            })
            .buffered(CONCURRENCY)
            .collect()
            .await;
        let mut uploads: Vec<(String, String, Option<SystemTime>)> = found
            .into_iter()
            .flatten()
            .filter(|(key, _, _)| key.starts_with(&prefix))
            .filter(|(key, id, _)| match (&input.key_marker, &input.upload_id_marker) {
                (Some(km), Some(im)) if !km.is_empty() => key > km || (key == km && id > im),
                (Some(km), _) if !km.is_empty() => key > km,
                _ => true,
            })
            .collect();
        uploads.sort();
        let mut listed = Vec::new();
        let mut common_prefixes: Vec<String> = Vec::new();
        let mut is_truncated = false;
        for (key, id, initiated) in uploads {
            if listed.len() + common_prefixes.len() >= max_uploads {
                is_truncated = true;
                break;
            }
            if let Some(d) = &delimiter
                && let Some(at) = key[prefix.len()..].find(d.as_str())
            {
                let rolled = key[..prefix.len() + at + d.len()].to_string();
                if common_prefixes.last() != Some(&rolled) {
                    common_prefixes.push(rolled);
                }
                continue;
            }
            listed.push(MultipartUpload {
                key: Some(key),
                upload_id: Some(id),
                initiated: initiated.map(Timestamp::from),
                storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
                owner: Some(owner()),
                initiator: Some(Initiator {
                    display_name: Some("escrow-proxy".into()),
                    id: Some("escrow-proxy".into()),
                }),
                ..Default::default()
            });
        }
        let (next_key, next_id) = match listed.last() {
            Some(u) if is_truncated => (u.key.clone(), u.upload_id.clone()),
            _ => (None, None),
        };
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: input.prefix,
            delimiter: input.delimiter,
            key_marker: input.key_marker,
            upload_id_marker: input.upload_id_marker,
            max_uploads: Some(max_uploads as i32),
            is_truncated: Some(is_truncated),
            next_key_marker: next_key,
            next_upload_id_marker: next_id,
            uploads: Some(listed),
            common_prefixes: Some(
                common_prefixes
                    .into_iter()
                    .map(|p| CommonPrefix { prefix: Some(p) })
                    .collect(),
            ),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }
}

fn owner() -> Owner {
    Owner {
        display_name: Some("escrow-proxy".into()),
        id: Some("escrow-proxy".into()),
    }
}

/// A part number S3 accepts.
fn part_number(n: i32) -> S3Result<u32> {
    u32::try_from(n)
        .ok()
        .filter(|n| (1..=MAX_PART_NUMBER).contains(n))
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "Part number must be an integer between 1 and 10000, inclusive"
            )
        })
}

/// Whether a part's checksum in the CompleteMultipartUpload request, if any, is the one its
/// upload was checked against.
fn checksum_matches(asked: &CompletedPart, trailer: &Trailer) -> bool {
    let given = [
        (ChecksumAlgorithm::Crc32, &asked.checksum_crc32),
        (ChecksumAlgorithm::Crc32c, &asked.checksum_crc32c),
        (ChecksumAlgorithm::Crc64Nvme, &asked.checksum_crc64nvme),
        (ChecksumAlgorithm::Sha1, &asked.checksum_sha1),
        (ChecksumAlgorithm::Sha256, &asked.checksum_sha256),
    ];
    given.iter().all(|(algo, value)| match (value, &trailer.checksum) {
        (None, _) => true,
        (Some(v), Some((a, digest))) if a == algo => B64.decode(v.trim()).is_ok_and(|d| &d == digest),
        // A checksum the part was not uploaded with cannot be vouched for.
        (Some(_), _) => false,
    })
}

/// `x-amz-copy-source-range: bytes=first-last` as a plaintext range of a source of `size` bytes.
fn parse_copy_range(value: &str, size: u64) -> S3Result<std::ops::Range<u64>> {
    let invalid = || {
        s3_error!(
            InvalidArgument,
            "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy"
        )
    };
    let (first, last) = value
        .trim()
        .strip_prefix("bytes=")
        .and_then(|r| r.split_once('-'))
        .ok_or_else(invalid)?;
    let first: u64 = first.parse().map_err(|_| invalid())?;
    let last: u64 = last.parse().map_err(|_| invalid())?;
    if first > last {
        return Err(invalid());
    }
    if last >= size {
        return Err(s3_error!(InvalidRange, "The requested range is not satisfiable"));
    }
    Ok(first..last + 1)
}
