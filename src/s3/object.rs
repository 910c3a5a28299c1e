//! Object operations: PUT encrypts while streaming to the store. HEAD and ranged GETs read the
//! trailer (one suffix-range request) for everything a client sees before the body, then stream
//! and decrypt only the segments asked for; a whole-object GET reads small objects in one request
//! (`stored::open_whole`).

use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::Proxy;
use super::error;
use super::etags::Known;
use crate::backend::Metadata;
use crate::backend::Source;
use crate::backend::{ByteRange, ByteStream};
use crate::body::{DecryptBody, Digests, EncryptBody, Expectations, checksum_header, decode_digest};
use crate::crypto::envelope::ObjectRecord;
use crate::crypto::format::meta;
use crate::crypto::format::{ChecksumAlgorithm, SINGLE_PART};
use crate::crypto::manifest::Manifest;
use crate::crypto::segment::StreamHeader;
use crate::secret::Key256;
use crate::stored::{self, Opened, Shape};

/// The client-visible ETag of an opened object.
fn client_etag(opened: &Opened) -> ETag {
    ETag::Strong(opened.etag())
}

/// What GET and HEAD have in common: the preconditions and the part or range asked for.
struct ReadRequest<'a> {
    sse_c: bool,
    part_number: Option<i32>,
    range: Option<&'a Range>,
    if_match: Option<&'a ETagCondition>,
    if_none_match: Option<&'a ETagCondition>,
    if_modified_since: Option<&'a Timestamp>,
    if_unmodified_since: Option<&'a Timestamp>,
}

/// Builds a GET or HEAD answer: the object's headers from its record and trailer, then the
/// fields given in braces.
macro_rules! read_output {
    ($ty:ident, $opened:expr, $part_number:expr, $checksum:expr, { $($field:ident: $value:expr),* $(,)? }) => {{
        let record = &$opened.record;
        let checksum: Checksum = $checksum;
        $ty {
            accept_ranges: Some("bytes".into()),
            e_tag: Some(client_etag(&$opened)),
            server_side_encryption: Some(sse()),
            last_modified: $opened.last_modified.map(Timestamp::from),
            metadata: Some(record.user.clone().into_iter().collect()),
            content_type: record.content_type.clone(),
            content_encoding: record.content_encoding.clone(),
            content_disposition: record.content_disposition.clone(),
            content_language: record.content_language.clone(),
            cache_control: record.cache_control.clone(),
            expires: record.expires.as_deref().and_then(parse_http_date),
            parts_count: $part_number.map(|_| $opened.parts_count().unwrap_or(1) as i32),
            checksum_crc32: checksum.checksum_crc32,
            checksum_crc32c: checksum.checksum_crc32c,
            checksum_crc64nvme: checksum.checksum_crc64nvme,
            checksum_sha1: checksum.checksum_sha1,
            checksum_sha256: checksum.checksum_sha256,
            $($field: $value,)*
            ..Default::default()
        }
    }};
}

impl Proxy {
    /// Opens the object, evaluates the preconditions, and resolves the part or range asked for
    /// (`None`: the whole object).
    async fn prepare_read(
        &self,
        bucket: &str,
        key: &str,
        read: &ReadRequest<'_>,
        want_body: bool,
    ) -> S3Result<(Opened, Option<std::ops::Range<u64>>, Option<ByteStream>)> {
        refuse_reserved(key)?;
        refuse_sse_c(read.sse_c)?;
        // A GET of the whole object opens it with its body: one store request for small objects.
        let whole = want_body && read.range.is_none() && read.part_number.is_none();
        let (opened, body) = if whole {
            let (opened, body) = stored::open_whole(self.store.as_ref(), &self.keyring, bucket, key)
                .await
                .map_err(error::open)?;
            self.remember(bucket, key, &opened);
            (opened, Some(body))
        } else {
            (self.open(bucket, key).await?, None)
        };
        check_conditions(
            &opened,
            read.if_match,
            read.if_none_match,
            read.if_modified_since,
            read.if_unmodified_since,
        )?;
        let size = opened.size();
        let range = match (read.part_number, read.range) {
            (Some(_), Some(_)) => return Err(s3_error!(InvalidRequest, "Cannot specify both Range and partNumber.")),
            (None, None) => None,
            (Some(n), None) => {
                let part = u32::try_from(n).ok().and_then(|n| opened.part_range(n));
                match part {
                    // The whole object: a single-part object's part 1, or an empty object.
                    Some(r) if r.is_empty() || (r.start == 0 && r.end == size) && opened.parts_count().is_none() => {
                        None
                    }
                    Some(r) => Some(r),
                    None => return Err(invalid_part_number()),
                }
            }
            (None, Some(range)) => Some(resolve_range(range, size)?),
        };
        Ok((opened, range, body))
    }

    /// Opens an object (see [`stored::open`]) and remembers its client ETag for listings.
    pub(super) async fn open(&self, bucket: &str, key: &str) -> S3Result<Opened> {
        let opened = stored::open(self.store.as_ref(), &self.keyring, bucket, key)
            .await
            .map_err(error::open)?;
        self.remember(bucket, key, &opened);
        Ok(opened)
    }

    /// Caches an opened object's client ETag and size for listings.
    pub(super) fn remember(&self, bucket: &str, key: &str, opened: &Opened) {
        let known = Known {
            etag: opened.etag(),
            size: opened.size(),
        };
        self.etags.insert(bucket, key, &opened.store_etag, known);
    }

    pub(super) async fn put_object_op(&self, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        let plain_len = declared_length(&req.headers, req.input.content_length)?;
        if plain_len > MAX_PUT_SIZE {
            return Err(s3_error!(
                EntityTooLarge,
                "Your proposed upload exceeds the maximum allowed object size."
            ));
        }
        let expect = expectations(&req.headers, &req.trailing_headers, client_digests!(req.input))?;
        let input = req.input;
        refuse_reserved(&input.key)?;
        refuse_unsafe(unsafe_asks!(input))?;
        if input.if_match.is_some() || input.if_none_match.is_some() {
            return Err(s3_error!(
                NotImplemented,
                "Conditional writes are not supported through escrow-proxy yet."
            ));
        }
        let body = input.body.ok_or_else(|| s3_error!(IncompleteBody))?;
        let mut record = record_of!(input);
        record.size = plain_len;
        let dek = Key256::random();
        let sealed = stored::seal(&self.keyring, &input.bucket, &input.key, &dek, &record);
        let upload = Upload {
            bucket: &input.bucket,
            key: &input.key,
            dek: &dek,
            part: SINGLE_PART,
            header: sealed.header,
            extension: sealed.extension,
            metadata: sealed.metadata,
        };
        let (store_etag, digests) = self.upload(upload, body, plain_len, expect).await?;
        let etag = hex::encode(digests.md5);
        self.etags.insert(
            &input.bucket,
            &input.key,
            &store_etag,
            Known {
                etag: etag.clone(),
                size: plain_len,
            },
        );
        let c = digests_checksum(&digests);
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(ETag::Strong(etag)),
            server_side_encryption: Some(sse()),
            checksum_crc32: c.checksum_crc32,
            checksum_crc32c: c.checksum_crc32c,
            checksum_crc64nvme: c.checksum_crc64nvme,
            checksum_sha1: c.checksum_sha1,
            checksum_sha256: c.checksum_sha256,
            ..Default::default()
        }))
    }

    /// Encrypts `body` (exactly `plain_len` bytes, checked against `expect`) into the stream
    /// `upload` describes and stores it: the one write path of PUT, UploadPart and
    /// UploadPartCopy. Returns the store's ETag and the plaintext digests.
    pub(super) async fn upload<S, E>(
        &self,
        upload: Upload<'_>,
        body: S,
        plain_len: u64,
        expect: Expectations,
    ) -> S3Result<(String, Digests)>
    where
        S: futures::Stream<Item = Result<bytes::Bytes, E>> + Unpin + Send + Sync + 'static,
        E: std::fmt::Display + 'static,
    {
        let (encrypt, outcome) = EncryptBody::new(
            body,
            upload.dek,
            upload.part,
            upload.header,
            upload.extension,
            plain_len,
            expect,
        );
        let stored_len = encrypt.stored_len();
        let result = self
            .store
            .put_object(
                upload.bucket,
                upload.key,
                Box::pin(encrypt),
                stored_len,
                upload.metadata,
            )
            .await;
        let outcome = outcome.lock().unwrap_or_else(|p| p.into_inner()).take();
        match (result, outcome) {
            (Ok(etag), Some(Ok(digests))) => Ok((etag, digests)),
            // The body was refused by our checks: that precise reason, nothing was stored.
            (_, Some(Err(failure))) => Err(error::body(failure)),
            (Err(e), _) => Err(error::backend(e)),
            // Invariant: a store reports success only after consuming the whole body, and the
            // body fills the outcome when it ends; anything else is a bug, not a client error.
            (Ok(_), None) => Err(s3_error!(InternalError, "Internal error.")),
        }
    }

    pub(super) async fn head_object_op(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let i = req.input;
        let read = ReadRequest {
            sse_c: i.sse_customer_algorithm.is_some(),
            part_number: i.part_number,
            range: i.range.as_ref(),
            if_match: i.if_match.as_ref(),
            if_none_match: i.if_none_match.as_ref(),
            if_modified_since: i.if_modified_since.as_ref(),
            if_unmodified_since: i.if_unmodified_since.as_ref(),
        };
        let (opened, range, _) = self.prepare_read(&i.bucket, &i.key, &read, false).await?;
        let size = opened.size();
        let checksum = response_checksum(&opened, i.checksum_mode.as_ref(), true);
        let output = read_output!(HeadObjectOutput, opened, i.part_number, checksum, {
            content_length: Some(range.as_ref().map_or(size, |r| r.end - r.start) as i64),
            content_range: range.as_ref().map(|r| content_range(r, size)),
        });
        Ok(S3Response::new(output))
    }

    pub(super) async fn get_object_op(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        let read = ReadRequest {
            sse_c: input.sse_customer_algorithm.is_some(),
            part_number: input.part_number,
            range: input.range.as_ref(),
            if_match: input.if_match.as_ref(),
            if_none_match: input.if_none_match.as_ref(),
            if_modified_since: input.if_modified_since.as_ref(),
            if_unmodified_since: input.if_unmodified_since.as_ref(),
        };
        let (opened, range, whole) = self.prepare_read(&input.bucket, &input.key, &read, true).await?;
        let size = opened.size();
        let (stored, pieces) = opened.read(range.clone());
        let stored_body = match whole {
            Some(body) => body,
            // Same object as the trailer came from, or PreconditionFailed (it was overwritten).
            None => {
                self.store
                    .get_object(
                        &input.bucket,
                        &input.key,
                        Some(ByteRange::Bounded(stored)),
                        Some(&opened.store_etag),
                    )
                    .await
                    .map_err(|e| match e {
                        crate::backend::BackendError::PreconditionFailed => {
                            s3_error!(ServiceUnavailable, "The object changed while it was being read; retry.")
                        }
                        other => error::backend(other),
                    })?
                    .body
            }
        };
        let body = DecryptBody::new(stored_body, &opened.dek, pieces);
        let len = range.as_ref().map_or(size, |r| r.end - r.start);
        // S3 returns the object's checksum only with the whole object.
        let checksum = response_checksum(&opened, input.checksum_mode.as_ref(), range.is_none());
        let output = read_output!(GetObjectOutput, opened, input.part_number, checksum, {
            body: Some(StreamingBlob::wrap(body)),
            content_length: Some(len as i64),
            content_range: range.as_ref().map(|r| content_range(r, size)),
        });
        Ok(S3Response::new(output))
    }

    /// The plaintext of `range` (`None`: all) of an opened object, decrypted as it streams.
    pub(super) async fn read_plaintext(
        &self,
        bucket: &str,
        key: &str,
        opened: &Opened,
        range: Option<std::ops::Range<u64>>,
    ) -> S3Result<DecryptBody<ByteStream>> {
        let (stored, pieces) = opened.read(range);
        let got = self
            .store
            .get_object(bucket, key, Some(ByteRange::Bounded(stored)), Some(&opened.store_etag))
            .await
            .map_err(|e| match e {
                crate::backend::BackendError::PreconditionFailed => {
                    s3_error!(ServiceUnavailable, "The object changed while it was being read; retry.")
                }
                other => error::backend(other),
            })?;
        Ok(DecryptBody::new(got.body, &opened.dek, pieces))
    }

    /// CopyObject. The copy keeps the source's DEK, re-wrapped for its new name (so it decrypts
    /// only there), and the store copies the ciphertext server-side. Only a single-part copy
    /// whose new record no longer fits the metadata, or whose record sits in the source's header
    /// and is replaced, is decrypted and sealed again in this process under a fresh DEK.
    pub(super) async fn copy_object_op(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let input = req.input;
        refuse_reserved(&input.key)?;
        refuse_unsafe(unsafe_asks!(input))?;
        refuse_sse_c(input.copy_source_sse_customer_algorithm.is_some())?;
        let (src_bucket, src_key) = copy_source(&input.copy_source)?;
        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        if !replace && src_bucket == input.bucket && src_key == input.key {
            return Err(s3_error!(
                InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
            ));
        }
        self.store.head_bucket(&input.bucket).await.map_err(error::backend)?;
        let opened = self.open(&src_bucket, &src_key).await?;
        check_copy_conditions(
            &opened,
            input.copy_source_if_match.as_ref(),
            input.copy_source_if_none_match.as_ref(),
            input.copy_source_if_modified_since.as_ref(),
            input.copy_source_if_unmodified_since.as_ref(),
        )?;
        let record = if replace {
            let mut r = record_of!(input);
            r.size = opened.size();
            r
        } else {
            opened.record.clone()
        };
        let (bucket, key) = (input.bucket.as_str(), input.key.as_str());
        // A fresh wrap for the new name; the record or manifest is sealed again, bound to it.
        let stored::Wrapped { mut metadata, binding } = stored::key_metadata(&self.keyring, bucket, key, &opened.dek);
        let source = |end: u64| Source {
            bucket: src_bucket.clone(),
            key: src_key.clone(),
            range: 0..end,
            etag: Some(opened.store_etag.clone()).filter(|e| !e.is_empty()),
        };
        let server_side = match &opened.shape {
            Shape::Multipart(manifest) => {
                let manifest = Manifest {
                    parts: manifest.parts.clone(),
                    record: record.clone(),
                };
                metadata.insert(meta::PARTS.into(), manifest.parts.len().to_string());
                let tail = manifest.seal(&opened.dek, &binding);
                Some((vec![source(manifest.parts_stored_len())], tail, metadata))
            }
            Shape::Single(trailer) => {
                let stored_len = trailer.header.layout().stored_len(trailer.plain_len);
                // A record in the source's header extension is bound to the source: the copy
                // must be sealed again (below).
                let in_header = trailer.header.extension_len() > 0;
                let encoded = B64.encode(crate::crypto::envelope::seal_record(&opened.dek, &binding, &record));
                if !in_header && stored::fits_metadata(&metadata, &encoded) {
                    metadata.insert(meta::RECORD.into(), encoded);
                    Some((vec![source(stored_len)], Vec::new(), metadata))
                } else {
                    None
                }
            }
        };
        let store_etag = match server_side {
            Some((sources, tail, metadata)) => self
                .store
                .compose(bucket, key, sources, tail.into(), metadata)
                .await
                .map_err(|e| match e {
                    crate::backend::BackendError::PreconditionFailed => {
                        s3_error!(
                            ServiceUnavailable,
                            "The source changed while it was being copied; retry."
                        )
                    }
                    other => error::backend(other),
                })?,
            None => {
                let plain = self.read_plaintext(&src_bucket, &src_key, &opened, None).await?;
                let dek = Key256::random();
                let sealed = stored::seal(&self.keyring, bucket, key, &dek, &record);
                let upload = Upload {
                    bucket,
                    key,
                    dek: &dek,
                    part: SINGLE_PART,
                    header: sealed.header,
                    extension: sealed.extension,
                    metadata: sealed.metadata,
                };
                self.upload(upload, plain, opened.size(), Expectations::default())
                    .await?
                    .0
            }
        };
        let etag = opened.etag();
        self.etags.insert(
            bucket,
            key,
            &store_etag,
            Known {
                etag: etag.clone(),
                size: opened.size(),
            },
        );
        Ok(S3Response::new(CopyObjectOutput {
            server_side_encryption: Some(sse()),
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(ETag::Strong(etag)),
                last_modified: Some(Timestamp::from(SystemTime::now())),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    pub(super) async fn delete_object_op(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let input = req.input;
        refuse_reserved(&input.key)?;
        self.store.head_bucket(&input.bucket).await.map_err(error::backend)?;
        self.store
            .delete_object(&input.bucket, &input.key)
            .await
            .map_err(error::backend)?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    pub(super) async fn delete_objects_op(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        use futures::StreamExt;
        let input = req.input;
        self.store.head_bucket(&input.bucket).await.map_err(error::backend)?;
        let quiet = input.delete.quiet.unwrap_or(false);
        let results: Vec<(String, Result<(), s3s::S3Error>)> = futures::stream::iter(input.delete.objects)
            .map(|obj| {
                let bucket = input.bucket.clone();
                async move {
                    let r = match refuse_reserved(&obj.key) {
                        Ok(()) => self
                            .store
                            .delete_object(&bucket, &obj.key)
                            .await
                            .map_err(error::backend),
                        Err(e) => Err(e),
                    };
                    (obj.key, r)
                }
            })
            .buffered(DELETE_CONCURRENCY)
            .collect()
            .await;
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        for (key, r) in results {
            match r {
                Ok(()) if !quiet => deleted.push(DeletedObject {
                    key: Some(key),
                    ..Default::default()
                }),
                Ok(()) => {}
                Err(e) => errors.push(Error {
                    key: Some(key),
                    code: Some(e.code().as_str().to_string()),
                    message: e.message().map(str::to_string),
                    ..Default::default()
                }),
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: Some(errors),
            ..Default::default()
        }))
    }
}

/// S3's largest single PUT (5 GiB); larger objects need multipart upload.
const MAX_PUT_SIZE: u64 = 5 << 30;

/// Deletes in flight at once for DeleteObjects.
const DELETE_CONCURRENCY: usize = 16;

/// The plaintext length of an upload: `Content-Length`, or `x-amz-decoded-content-length` for
/// aws-chunked bodies.
pub(super) fn declared_length(headers: &http::HeaderMap, content_length: Option<i64>) -> S3Result<u64> {
    let decoded = headers
        .get("x-amz-decoded-content-length")
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| s3_error!(InvalidArgument, "bad x-amz-decoded-content-length"))
        })
        .transpose()?;
    match (decoded, content_length) {
        (Some(len), _) => Ok(len),
        (None, Some(len)) if len >= 0 => Ok(len as u64),
        _ => Err(s3_error!(MissingContentLength)),
    }
}

/// The digests a client may send with an upload body.
pub(super) struct ClientDigests<'a> {
    pub content_md5: Option<&'a String>,
    pub checksums: [(ChecksumAlgorithm, Option<&'a String>); 5],
    pub algorithm: Option<&'a s3s::dto::ChecksumAlgorithm>,
}

/// The [`ClientDigests`] of an upload input (PutObject, UploadPart: same field names).
macro_rules! client_digests {
    ($input:expr) => {
        ClientDigests {
            content_md5: $input.content_md5.as_ref(),
            checksums: [
                (ChecksumAlgorithm::Crc32, $input.checksum_crc32.as_ref()),
                (ChecksumAlgorithm::Crc32c, $input.checksum_crc32c.as_ref()),
                (ChecksumAlgorithm::Crc64Nvme, $input.checksum_crc64nvme.as_ref()),
                (ChecksumAlgorithm::Sha1, $input.checksum_sha1.as_ref()),
                (ChecksumAlgorithm::Sha256, $input.checksum_sha256.as_ref()),
            ],
            algorithm: $input.checksum_algorithm.as_ref(),
        }
    };
}
pub(super) use client_digests;

/// What the client claims about its plaintext (Content-MD5, x-amz-checksum-*, trailers).
pub(super) fn expectations(
    headers: &http::HeaderMap,
    trailing: &Option<s3s::TrailingHeaders>,
    digests: ClientDigests<'_>,
) -> S3Result<Expectations> {
    let md5 = match digests.content_md5 {
        Some(v) => Some(
            B64.decode(v.trim())
                .ok()
                .and_then(|b| <[u8; 16]>::try_from(b).ok())
                .ok_or_else(|| s3_error!(InvalidDigest))?,
        ),
        None => None,
    };
    let sent: Vec<(ChecksumAlgorithm, &String)> = digests
        .checksums
        .into_iter()
        .filter_map(|(a, v)| v.map(|v| (a, v)))
        .collect();
    if sent.len() > 1 {
        return Err(s3_error!(InvalidRequest, "Expecting a single x-amz-checksum- header."));
    }
    let trailer_algo = headers
        .get("x-amz-trailer")
        .and_then(|v| v.to_str().ok())
        .and_then(|name| {
            ChecksumAlgorithm::ALL
                .into_iter()
                .find(|a| checksum_header(*a).eq_ignore_ascii_case(name.trim()))
        });
    let declared = digests.algorithm.map(|a| {
        ChecksumAlgorithm::ALL
            .into_iter()
            .find(|x| x.s3_name().eq_ignore_ascii_case(a.as_str()))
            .ok_or_else(|| s3_error!(InvalidRequest, "Unsupported checksum algorithm."))
    });
    let declared = declared.transpose()?;
    let (algorithm, digest) = match (sent.first(), trailer_algo) {
        (Some((algo, value)), _) => {
            let d = decode_digest(*algo, value).ok_or_else(|| {
                s3_error!(
                    InvalidRequest,
                    "Value for x-amz-checksum-{} header is invalid.",
                    algo.s3_name().to_lowercase()
                )
            })?;
            (Some(*algo), Some(d))
        }
        (None, Some(algo)) => (Some(algo), None),
        (None, None) => (declared, None),
    };
    let trailer = if trailer_algo.is_some() && digest.is_none() {
        trailing.clone()
    } else {
        None
    };
    if trailer_algo.is_some() && digest.is_none() && trailer.is_none() {
        return Err(s3_error!(
            InvalidRequest,
            "x-amz-trailer needs an aws-chunked body with trailers."
        ));
    }
    Ok(Expectations {
        md5,
        algorithm,
        digest,
        trailer,
    })
}

/// The stored stream one upload writes.
pub(super) struct Upload<'a> {
    pub bucket: &'a str,
    /// The store key (the object's, or a multipart part's).
    pub key: &'a str,
    pub dek: &'a Key256,
    pub part: u32,
    pub header: StreamHeader,
    pub extension: Vec<u8>,
    pub metadata: Metadata,
}

/// The record of a new object from the headers of its PutObject or CreateMultipartUpload
/// (same field names); `size` is left 0.
macro_rules! record_of {
    ($input:expr) => {
        ObjectRecord {
            size: 0,
            content_type: $input.content_type.clone(),
            content_encoding: super::object::client_content_encoding($input.content_encoding.as_deref()),
            content_disposition: $input.content_disposition.clone(),
            content_language: $input.content_language.clone(),
            cache_control: $input.cache_control.clone(),
            expires: $input.expires.as_ref().map(super::object::fmt_http_date),
            user: $input
                .metadata
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k.to_lowercase(), v))
                .collect(),
        }
    };
}
pub(super) use record_of;

/// The checksum fields of an upload answer.
pub(super) fn digests_checksum(digests: &Digests) -> Checksum {
    digests
        .checksum
        .as_ref()
        .map(|(algo, digest)| checksum_dto(*algo, digest))
        .unwrap_or_default()
}

/// The client's `Content-Encoding` without the `aws-chunked` transfer coding S3 strips.
pub(super) fn client_content_encoding(value: Option<&str>) -> Option<String> {
    let kept: Vec<&str> = value?
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("aws-chunked"))
        .collect();
    (!kept.is_empty()).then(|| kept.join(","))
}

/// What a write asks for that the proxy may have to refuse.
pub(super) struct UnsafeAsks<'a> {
    pub sse_c: bool,
    pub kms: bool,
    pub sse: Option<&'a ServerSideEncryption>,
    pub tagging: bool,
    pub object_lock: bool,
    pub acl: Option<&'a ObjectCannedACL>,
}

/// The [`UnsafeAsks`] of a PutObject, CreateMultipartUpload or CopyObject input.
macro_rules! unsafe_asks {
    ($input:expr) => {
        UnsafeAsks {
            sse_c: $input.sse_customer_algorithm.is_some() || $input.sse_customer_key.is_some(),
            kms: $input.ssekms_key_id.is_some(),
            sse: $input.server_side_encryption.as_ref(),
            tagging: $input.tagging.is_some(),
            object_lock: $input.object_lock_mode.is_some() || $input.object_lock_legal_hold_status.is_some(),
            acl: $input.acl.as_ref(),
        }
    };
}
pub(super) use unsafe_asks;

/// Refuses what the proxy cannot honour without leaking or lying.
pub(super) fn refuse_unsafe(asks: UnsafeAsks<'_>) -> S3Result<()> {
    refuse_sse_c(asks.sse_c)?;
    if asks.kms || asks.sse.is_some_and(|s| s.as_str() != ServerSideEncryption::AES256) {
        return Err(s3_error!(
            NotImplemented,
            "SSE-KMS is not supported; escrow-proxy encrypts every object itself."
        ));
    }
    if asks.tagging {
        return Err(s3_error!(
            NotImplemented,
            "Object tagging is not supported through escrow-proxy."
        ));
    }
    if asks.object_lock {
        return Err(s3_error!(
            NotImplemented,
            "Object Lock is not supported through escrow-proxy."
        ));
    }
    if let Some(acl) = asks.acl
        && !matches!(
            acl.as_str(),
            ObjectCannedACL::PRIVATE | ObjectCannedACL::BUCKET_OWNER_FULL_CONTROL
        )
    {
        return Err(s3_error!(
            NotImplemented,
            "Only private ACLs are supported through escrow-proxy."
        ));
    }
    Ok(())
}

/// Buckets here are unversioned: only the `null` version exists.
pub(super) fn no_versions(version_id: Option<&str>) -> S3Result<()> {
    match version_id {
        Some(v) if v != "null" => Err(s3_error!(NoSuchVersion, "The specified version does not exist.")),
        _ => Ok(()),
    }
}

/// Refuses SSE-C (`asked`): the proxy encrypts every object itself and cannot honour a
/// customer's key on top.
pub(super) fn refuse_sse_c(asked: bool) -> S3Result<()> {
    if asked {
        return Err(s3_error!(
            NotImplemented,
            "SSE-C is not supported through escrow-proxy."
        ));
    }
    Ok(())
}

/// Refuses keys under the prefix where the proxy keeps multipart uploads.
pub(super) fn refuse_reserved(key: &str) -> S3Result<()> {
    if key.starts_with(super::multipart::RESERVED_PREFIX) {
        return Err(s3_error!(
            InvalidArgument,
            "Object keys under {} are reserved by escrow-proxy.",
            super::multipart::RESERVED_PREFIX
        ));
    }
    Ok(())
}

/// Evaluates GET/HEAD preconditions in the order RFC 9110 §13.2.2 and S3 use.
fn check_conditions(
    opened: &Opened,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
) -> S3Result<()> {
    let etag = client_etag(opened);
    let matches = |c: &ETagCondition| match c {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value() == etag.value(),
    };
    let modified = opened.last_modified.map(|t| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    });
    let secs = |t: &Timestamp| {
        let t: time::OffsetDateTime = t.clone().into();
        t.unix_timestamp().max(0) as u64
    };
    match if_match {
        Some(c) if !matches(c) => return Err(s3_error!(PreconditionFailed)),
        Some(_) => {}
        None => {
            if let (Some(t), Some(m)) = (if_unmodified_since, modified)
                && m > secs(t)
            {
                return Err(s3_error!(PreconditionFailed));
            }
        }
    }
    match if_none_match {
        Some(c) if matches(c) => return Err(s3_error!(NotModified)),
        Some(_) => {}
        None => {
            if let (Some(t), Some(m)) = (if_modified_since, modified)
                && m <= secs(t)
            {
                return Err(s3_error!(NotModified));
            }
        }
    }
    Ok(())
}

/// What every stored object is encrypted with, as S3 answers say it (`x-amz-server-side-encryption`):
/// AES-256, by the proxy, before it reaches the store.
pub(super) fn sse() -> ServerSideEncryption {
    ServerSideEncryption::from_static(ServerSideEncryption::AES256)
}

/// Copy-source preconditions: as GET's, except that every failure is 412.
pub(super) fn check_copy_conditions(
    opened: &Opened,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
) -> S3Result<()> {
    check_conditions(opened, if_match, if_none_match, if_modified_since, if_unmodified_since).map_err(|e| {
        if *e.code() == s3s::S3ErrorCode::NotModified {
            s3_error!(PreconditionFailed)
        } else {
            e
        }
    })
}

/// The bucket and key of `x-amz-copy-source`. Buckets here are unversioned: a version other
/// than `null` does not exist.
pub(super) fn copy_source(src: &CopySource) -> S3Result<(String, String)> {
    match src {
        CopySource::Bucket {
            bucket,
            key,
            version_id,
        } => {
            no_versions(version_id.as_deref())?;
            refuse_reserved(key)?;
            Ok((bucket.to_string(), key.to_string()))
        }
        _ => Err(s3_error!(
            NotImplemented,
            "Access point and Outposts copy sources are not supported."
        )),
    }
}

/// An S3 `Range` as plaintext bytes `start..end` of an object of `size` bytes.
fn resolve_range(range: &Range, size: u64) -> S3Result<std::ops::Range<u64>> {
    let invalid = || s3_error!(InvalidRange, "The requested range is not satisfiable");
    match *range {
        Range::Int { first, last } => {
            if first >= size {
                return Err(invalid());
            }
            let end = last.map_or(size, |l| l.saturating_add(1).min(size));
            if end <= first {
                return Err(invalid());
            }
            Ok(first..end)
        }
        Range::Suffix { length } => {
            if length == 0 || size == 0 {
                return Err(invalid());
            }
            Ok(size.saturating_sub(length)..size)
        }
    }
}

/// S3's answer to a `partNumber` the object does not have.
fn invalid_part_number() -> s3s::S3Error {
    let mut err = s3s::S3Error::with_message(
        s3s::S3ErrorCode::Custom("InvalidPartNumber".into()),
        "The requested partnumber is not satisfiable",
    );
    err.set_status_code(http::StatusCode::RANGE_NOT_SATISFIABLE);
    err
}

fn content_range(r: &std::ops::Range<u64>, size: u64) -> String {
    format!("bytes {}-{}/{}", r.start, r.end - 1, size)
}

fn wants_checksum(mode: Option<&ChecksumMode>) -> bool {
    mode.is_some_and(|m| m.as_str() == ChecksumMode::ENABLED)
}

/// A checksum as S3 answers carry it (base64 in the field of its algorithm).
pub(super) fn checksum_dto(algo: ChecksumAlgorithm, digest: &[u8]) -> Checksum {
    let value = Some(B64.encode(digest));
    let mut c = Checksum::default();
    match algo {
        ChecksumAlgorithm::Crc32 => c.checksum_crc32 = value,
        ChecksumAlgorithm::Crc32c => c.checksum_crc32c = value,
        ChecksumAlgorithm::Crc64Nvme => c.checksum_crc64nvme = value,
        ChecksumAlgorithm::Sha1 => c.checksum_sha1 = value,
        ChecksumAlgorithm::Sha256 => c.checksum_sha256 = value,
    }
    c
}

/// The object's stored checksum, when the client asked for it (`x-amz-checksum-mode: ENABLED`)
/// and the answer carries the whole object.
fn response_checksum(opened: &Opened, mode: Option<&ChecksumMode>, whole: bool) -> Checksum {
    match opened.checksum() {
        Some((algo, digest)) if whole && wants_checksum(mode) => checksum_dto(*algo, digest),
        _ => Checksum::default(),
    }
}

pub(super) fn fmt_http_date(t: &Timestamp) -> String {
    let mut out = Vec::new();
    // Invariant: writing a timestamp into a Vec cannot fail.
    t.format(TimestampFormat::HttpDate, &mut out)
        .expect("timestamp formats");
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_http_date(s: &str) -> Option<Timestamp> {
    Timestamp::parse(TimestampFormat::HttpDate, s).ok()
}
