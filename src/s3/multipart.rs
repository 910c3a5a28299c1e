//! Multipart upload operations, translated to and from the object layer, which keeps every
//! upload's state in the store ([`crate::object`]'s `upload` and `complete`).

use std::sync::Arc;

use s3s::dto::{
    AbortMultipartUploadInput, AbortMultipartUploadOutput, CommonPrefix, CompleteMultipartUploadInput,
    CompleteMultipartUploadOutput, CompletedPart, CopyPartResult, CreateMultipartUploadInput,
    CreateMultipartUploadOutput, ETag, Initiator, ListMultipartUploadsInput, ListMultipartUploadsOutput,
    ListPartsInput, ListPartsOutput, MultipartUpload, Owner, Part, StorageClass, Timestamp, UploadPartCopyInput,
    UploadPartCopyOutput, UploadPartInput, UploadPartOutput,
};
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::Proxy;
use super::answer::{check_copy_conditions, checksum_dto, digests_checksum, sse};
use super::error;
use super::kept_alive;
use super::request::{
    check_user_metadata, client_digests, copy_source, declared_length, expectations, parse_copy_range, part_number,
    record_of, refuse_unsafe, unsafe_asks, write_condition,
};
use super::sse::{self, sse_c_headers};
use crate::limits::{MAX_KEYS, MAX_PART_SIZE};
use crate::object::{ChecksumAlgorithm, CopySource, PartChoice, UploadsQuery};

/// Who owns and initiated uploads, as S3 answers name them: the proxy.
fn owner() -> Owner {
    Owner {
        display_name: Some("escrow-proxy".into()),
        id: Some("escrow-proxy".into()),
    }
}

fn initiator() -> Initiator {
    Initiator {
        display_name: Some("escrow-proxy".into()),
        id: Some("escrow-proxy".into()),
    }
}

fn too_large() -> s3s::S3Error {
    s3_error!(EntityTooLarge, "Your proposed upload exceeds the maximum allowed size.")
}

impl Proxy {
    pub(super) async fn create_multipart_upload_op(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let input = req.input;
        refuse_unsafe(unsafe_asks!(input), self.refuse_sse_kms)?;
        let customer = sse::customer_key(&sse_c_headers!(input), self.sse_c_secure)?;
        sse::exclusive(customer.as_ref(), input.server_side_encryption.as_ref())?;
        check_user_metadata(input.metadata.as_ref())?;
        let record = record_of!(input);
        let id = self
            .objects
            .create_upload(&input.bucket, &input.key, &record, customer.as_ref())
            .await
            .map_err(error::object)?;
        let (sse_customer_algorithm, sse_customer_key_md5) = sse::echo(customer.as_ref());
        Ok(S3Response::new(CreateMultipartUploadOutput {
            sse_customer_algorithm,
            sse_customer_key_md5,
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(id),
            server_side_encryption: sse(customer.is_some()),
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
        let customer = sse::customer_key(&sse_c_headers!(input), self.sse_c_secure)?;
        if plain_len > MAX_PART_SIZE {
            return Err(too_large());
        }
        let body = input.body.ok_or_else(|| s3_error!(IncompleteBody))?;
        let (bucket, key, id) = (&input.bucket, &input.key, &input.upload_id);
        let digests = self
            .objects
            .upload_part(bucket, key, id, number, body, plain_len, expect, customer.as_ref())
            .await
            .map_err(error::object)?;
        let c = digests_checksum(&digests);
        let (sse_customer_algorithm, sse_customer_key_md5) = sse::echo(customer.as_ref());
        Ok(S3Response::new(UploadPartOutput {
            sse_customer_algorithm,
            sse_customer_key_md5,
            server_side_encryption: sse(customer.is_some()),
            e_tag: Some(ETag::Strong(hex::encode(digests.md5))),
            checksum_crc32: c.checksum_crc32,
            checksum_crc32c: c.checksum_crc32c,
            checksum_crc64nvme: c.checksum_crc64nvme,
            checksum_sha1: c.checksum_sha1,
            checksum_sha256: c.checksum_sha256,
            ..Default::default()
        }))
    }

    pub(super) async fn upload_part_copy_op(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let input = req.input;
        let number = part_number(input.part_number)?;
        let customer = sse::customer_key(&sse_c_headers!(input), self.sse_c_secure)?;
        let source_key = sse::customer_key(&sse_c_headers!(input, copy_source), self.sse_c_secure)?;
        let (src_bucket, src_key) = copy_source(&input.copy_source)?;
        let mut opened = self.objects.open(&src_bucket, &src_key).await.map_err(error::object)?;
        sse::unlock(&mut opened, source_key.as_ref())?;
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
        if range.as_ref().map_or(size, |r| r.end - r.start) > MAX_PART_SIZE {
            return Err(too_large());
        }
        let (sse_customer_algorithm, sse_customer_key_md5) = sse::echo(customer.as_ref());
        let objects = Arc::clone(&self.objects);
        let work = async move {
            let src = CopySource {
                bucket: &src_bucket,
                key: &src_key,
                opened: &opened,
            };
            let digests = objects
                .upload_part_copy(
                    &input.bucket,
                    &input.key,
                    &input.upload_id,
                    number,
                    src,
                    range,
                    customer.as_ref(),
                )
                .await
                .map_err(error::object)?;
            Ok(CopyPartResult {
                e_tag: Some(ETag::Strong(hex::encode(digests.md5))),
                last_modified: Some(Timestamp::from(std::time::SystemTime::now())),
                ..Default::default()
            })
        };
        kept_alive::respond(work, |copy_part_result| UploadPartCopyOutput {
            sse_customer_algorithm,
            sse_customer_key_md5,
            copy_part_result,
            ..Default::default()
        })
        .await
    }

    pub(super) async fn complete_multipart_upload_op(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let input = req.input;
        let condition = write_condition(input.if_match.as_ref(), input.if_none_match.as_ref())?;
        let chosen: Vec<PartChoice> = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default()
            .iter()
            .map(part_choice)
            .collect();
        let (bucket, key) = (input.bucket, input.key);
        let checked = self
            .objects
            .check_completion(&bucket, &key, &input.upload_id, &chosen, condition.as_ref())
            .await
            .map_err(error::object)?;
        let server_side_encryption = sse(checked.sse_c());
        let objects = Arc::clone(&self.objects);
        let work = async move {
            let completed = objects.finish_completion(checked).await.map_err(error::object)?;
            Ok(CompleteMultipartUploadOutput {
                location: Some(format!("/{bucket}/{key}")),
                bucket: Some(bucket),
                key: Some(key),
                e_tag: Some(ETag::Strong(completed.etag)),
                ..Default::default()
            })
        };
        kept_alive::respond(work, |result| CompleteMultipartUploadOutput {
            server_side_encryption,
            ..result.unwrap_or_default()
        })
        .await
    }

    pub(super) async fn abort_multipart_upload_op(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let input = req.input;
        self.objects
            .abort_upload(&input.bucket, &input.key, &input.upload_id)
            .await
            .map_err(error::object)?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    pub(super) async fn list_parts_op(&self, req: S3Request<ListPartsInput>) -> S3Result<S3Response<ListPartsOutput>> {
        let input = req.input;
        let max_parts = input.max_parts.unwrap_or(MAX_KEYS).clamp(0, MAX_KEYS) as usize;
        let marker = input.part_number_marker.unwrap_or(0).max(0) as u32;
        let page = self
            .objects
            .list_parts(&input.bucket, &input.key, &input.upload_id, marker, max_parts)
            .await
            .map_err(error::object)?;
        let parts: Vec<Part> = page
            .parts
            .into_iter()
            .map(|p| {
                let c = p
                    .checksum
                    .as_ref()
                    .map(|(a, d)| checksum_dto(*a, d))
                    .unwrap_or_default();
                Part {
                    part_number: Some(p.number as i32),
                    size: Some(p.size as i64),
                    e_tag: Some(ETag::Strong(hex::encode(p.md5))),
                    last_modified: p.last_modified.map(Timestamp::from),
                    checksum_crc32: c.checksum_crc32,
                    checksum_crc32c: c.checksum_crc32c,
                    checksum_crc64nvme: c.checksum_crc64nvme,
                    checksum_sha1: c.checksum_sha1,
                    checksum_sha256: c.checksum_sha256,
                }
            })
            .collect();
        let next = parts.last().and_then(|p| p.part_number);
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            max_parts: Some(max_parts as i32),
            part_number_marker: Some(marker as i32),
            next_part_number_marker: next,
            is_truncated: Some(page.is_truncated),
            parts: Some(parts),
            storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
            owner: Some(owner()),
            initiator: Some(initiator()),
            ..Default::default()
        }))
    }

    pub(super) async fn list_multipart_uploads_op(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let input = req.input;
        let query = UploadsQuery {
            prefix: input.prefix.clone().unwrap_or_default(),
            delimiter: input.delimiter.clone().filter(|d| !d.is_empty()),
            key_marker: input.key_marker.clone(),
            upload_id_marker: input.upload_id_marker.clone(),
            max_uploads: input.max_uploads.unwrap_or(MAX_KEYS).clamp(1, MAX_KEYS) as usize,
        };
        let page = self
            .objects
            .list_uploads(&input.bucket, &query)
            .await
            .map_err(error::object)?;
        let (next_key, next_id) = match page.uploads.last() {
            Some(u) if page.is_truncated => (Some(u.key.clone()), Some(u.id.clone())),
            _ => (None, None),
        };
        let uploads = page
            .uploads
            .into_iter()
            .map(|u| MultipartUpload {
                key: Some(u.key),
                upload_id: Some(u.id),
                initiated: u.initiated.map(Timestamp::from),
                storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
                owner: Some(owner()),
                initiator: Some(initiator()),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: input.prefix,
            delimiter: input.delimiter,
            key_marker: input.key_marker,
            upload_id_marker: input.upload_id_marker,
            max_uploads: Some(query.max_uploads as i32),
            is_truncated: Some(page.is_truncated),
            next_key_marker: next_key,
            next_upload_id_marker: next_id,
            uploads: Some(uploads),
            common_prefixes: Some(
                page.common_prefixes
                    .into_iter()
                    .map(|p| CommonPrefix { prefix: Some(p) })
                    .collect(),
            ),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }
}

/// A part of a CompleteMultipartUpload request, for the object layer.
fn part_choice(part: &CompletedPart) -> PartChoice {
    let given = [
        (ChecksumAlgorithm::Crc32, &part.checksum_crc32),
        (ChecksumAlgorithm::Crc32c, &part.checksum_crc32c),
        (ChecksumAlgorithm::Crc64Nvme, &part.checksum_crc64nvme),
        (ChecksumAlgorithm::Sha1, &part.checksum_sha1),
        (ChecksumAlgorithm::Sha256, &part.checksum_sha256),
    ];
    PartChoice {
        number: part.part_number,
        etag: part.e_tag.as_ref().map(|e| e.value().to_string()),
        checksums: given
            .into_iter()
            .filter_map(|(algo, value)| value.clone().map(|v| (algo, v)))
            .collect(),
    }
}
