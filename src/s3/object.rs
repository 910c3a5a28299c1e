//! Object operations, translated to and from the object layer: PutObject, GetObject,
//! HeadObject, CopyObject, DeleteObject(s). Each reads what the request asks for
//! ([`super::request`]), calls [`crate::object::Objects`], and builds the S3 answer
//! ([`super::answer`]).

use std::ops::Range;
use std::sync::Arc;

use futures::StreamExt;
use s3s::dto::{
    CopyObjectInput, CopyObjectOutput, CopyObjectResult, DeleteObjectInput, DeleteObjectOutput, DeleteObjectsInput,
    DeleteObjectsOutput, DeletedObject, ETag, ETagCondition, GetObjectInput, GetObjectOutput, HeadObjectInput,
    HeadObjectOutput, MetadataDirective, PutObjectInput, PutObjectOutput, StreamingBlob, Timestamp,
};
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::Proxy;
use super::answer::{
    check_conditions, check_copy_conditions, content_range, digests_checksum, read_output, response_checksum, sse,
};
use super::error;
use super::kept_alive;
use super::request::{
    check_user_metadata, client_digests, copy_source, declared_length, destination_condition, expectations,
    invalid_part_number, record_of, refuse_unsafe, resolve_range, unsafe_asks, write_condition,
};
use super::sse::{self, sse_c_headers};
use crate::limits::{MAX_DELETE_KEYS, MAX_PUT_SIZE};
use crate::object::{CopySource, CustomerKey, Opened, PlainStream};

/// Deletes in flight at once for DeleteObjects.
const DELETE_CONCURRENCY: usize = 16;

/// What GET and HEAD have in common: the preconditions and the part or range asked for.
struct ReadRequest<'a> {
    sse_c: super::sse::Headers<'a>,
    part_number: Option<i32>,
    range: Option<&'a s3s::dto::Range>,
    if_match: Option<&'a ETagCondition>,
    if_none_match: Option<&'a ETagCondition>,
    if_modified_since: Option<&'a Timestamp>,
    if_unmodified_since: Option<&'a Timestamp>,
}

/// The [`ReadRequest`] of a GetObject or HeadObject input (same field names).
macro_rules! read_request {
    ($input:expr) => {
        ReadRequest {
            sse_c: super::sse::sse_c_headers!($input),
            part_number: $input.part_number,
            range: $input.range.as_ref(),
            if_match: $input.if_match.as_ref(),
            if_none_match: $input.if_none_match.as_ref(),
            if_modified_since: $input.if_modified_since.as_ref(),
            if_unmodified_since: $input.if_unmodified_since.as_ref(),
        }
    };
}

impl Proxy {
    /// Opens the object, evaluates the preconditions, and resolves the part or range asked for
    /// (`None`: the whole object). A whole-object GET gets its body too (one store request for
    /// small objects). An SSE-C object needs its customer key, checked before anything else.
    async fn prepare_read(
        &self,
        bucket: &str,
        key: &str,
        read: &ReadRequest<'_>,
        want_body: bool,
    ) -> S3Result<(Opened, Option<Range<u64>>, Option<PlainStream>, Option<CustomerKey>)> {
        let customer = sse::customer_key(&read.sse_c, self.sse_c_secure)?;
        let whole = want_body && read.range.is_none() && read.part_number.is_none();
        let (opened, body) = if whole {
            let (opened, body) = self
                .objects
                .open_whole(bucket, key, customer.as_ref())
                .await
                .map_err(error::object)?;
            (opened, Some(body))
        } else {
            let mut opened = self.objects.open(bucket, key).await.map_err(error::object)?;
            sse::unlock(&mut opened, customer.as_ref())?;
            (opened, None)
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
        Ok((opened, range, body, customer))
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
        refuse_unsafe(unsafe_asks!(input), self.refuse_sse_kms)?;
        let customer = sse::customer_key(&sse_c_headers!(input), self.sse_c_secure)?;
        sse::exclusive(customer.as_ref(), input.server_side_encryption.as_ref())?;
        check_user_metadata(input.metadata.as_ref())?;
        let condition = write_condition(input.if_match.as_ref(), input.if_none_match.as_ref())?;
        let body = input.body.ok_or_else(|| s3_error!(IncompleteBody))?;
        let record = record_of!(input);
        let digests = self
            .objects
            .put_if(
                &input.bucket,
                &input.key,
                record,
                body,
                plain_len,
                expect,
                customer.as_ref(),
                condition.as_ref(),
            )
            .await
            .map_err(error::object)?;
        let c = digests_checksum(&digests);
        let (sse_customer_algorithm, sse_customer_key_md5) = sse::echo(customer.as_ref());
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(ETag::Strong(hex::encode(digests.md5))),
            server_side_encryption: sse(customer.is_some()),
            sse_customer_algorithm,
            sse_customer_key_md5,
            checksum_crc32: c.checksum_crc32,
            checksum_crc32c: c.checksum_crc32c,
            checksum_crc64nvme: c.checksum_crc64nvme,
            checksum_sha1: c.checksum_sha1,
            checksum_sha256: c.checksum_sha256,
            ..Default::default()
        }))
    }

    pub(super) async fn head_object_op(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let i = req.input;
        let (opened, range, _, customer) = self.prepare_read(&i.bucket, &i.key, &read_request!(i), false).await?;
        let (sse_customer_algorithm, sse_customer_key_md5) = sse::echo(customer.as_ref());
        let size = opened.size();
        let checksum = response_checksum(&opened, i.checksum_mode.as_ref(), true);
        let output = read_output!(HeadObjectOutput, opened, i.part_number, checksum, {
            content_length: Some(range.as_ref().map_or(size, |r| r.end - r.start) as i64),
            content_range: range.as_ref().map(|r| content_range(r, size)),
            replication_status: self.objects.replication_status(&i.bucket, &i.key).map(|s| s.to_string().into()),
            sse_customer_algorithm: sse_customer_algorithm,
            sse_customer_key_md5: sse_customer_key_md5,
        });
        Ok(S3Response::new(output))
    }

    pub(super) async fn get_object_op(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        let (opened, range, whole, customer) = self
            .prepare_read(&input.bucket, &input.key, &read_request!(input), true)
            .await?;
        let (sse_customer_algorithm, sse_customer_key_md5) = sse::echo(customer.as_ref());
        let size = opened.size();
        let body = match whole {
            Some(body) => body,
            None => self
                .objects
                .read(&input.bucket, &input.key, &opened, range.clone())
                .await
                .map_err(error::object)?,
        };
        let len = range.as_ref().map_or(size, |r| r.end - r.start);
        // S3 returns the object's checksum only with the whole object.
        let checksum = response_checksum(&opened, input.checksum_mode.as_ref(), range.is_none());
        let output = read_output!(GetObjectOutput, opened, input.part_number, checksum, {
            body: Some(StreamingBlob::wrap(body)),
            content_length: Some(len as i64),
            content_range: range.as_ref().map(|r| content_range(r, size)),
            replication_status: self.objects.replication_status(&input.bucket, &input.key).map(|s| s.to_string().into()),
            sse_customer_algorithm: sse_customer_algorithm,
            sse_customer_key_md5: sse_customer_key_md5,
        });
        Ok(S3Response::new(output))
    }

    /// CopyObject: the object layer copies server-side whenever the envelope allows (for SSE-C:
    /// when source and destination have the same customer key, or neither has one).
    pub(super) async fn copy_object_op(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        // s3s 0.14 does not parse a destination's If-Match / If-None-Match on CopyObject: read
        // from the headers here (an ignored condition would be an unconditional overwrite).
        let condition = write_condition(
            destination_condition(&req.headers, &http::header::IF_MATCH)?.as_ref(),
            destination_condition(&req.headers, &http::header::IF_NONE_MATCH)?.as_ref(),
        )?;
        let input = req.input;
        refuse_unsafe(unsafe_asks!(input), self.refuse_sse_kms)?;
        let customer = sse::customer_key(&sse_c_headers!(input), self.sse_c_secure)?;
        sse::exclusive(customer.as_ref(), input.server_side_encryption.as_ref())?;
        let source_key = sse::customer_key(&sse_c_headers!(input, copy_source), self.sse_c_secure)?;
        let (src_bucket, src_key) = copy_source(&input.copy_source)?;
        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        if replace {
            check_user_metadata(input.metadata.as_ref())?;
        }
        // Changing the customer key (or adding or removing one) is a change of encryption
        // attributes: S3 allows such a copy onto itself (a client rotating its key).
        let same_encryption = sse::same_key(source_key.as_ref(), customer.as_ref());
        if !replace && same_encryption && src_bucket == input.bucket && src_key == input.key {
            return Err(s3_error!(
                InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
            ));
        }
        self.objects.head_bucket(&input.bucket).await.map_err(error::object)?;
        let mut opened = self.objects.open(&src_bucket, &src_key).await.map_err(error::object)?;
        sse::unlock(&mut opened, source_key.as_ref())?;
        check_copy_conditions(
            &opened,
            input.copy_source_if_match.as_ref(),
            input.copy_source_if_none_match.as_ref(),
            input.copy_source_if_modified_since.as_ref(),
            input.copy_source_if_unmodified_since.as_ref(),
        )?;
        let record = replace.then(|| record_of!(input));
        let (sse_customer_algorithm, sse_customer_key_md5) = sse::echo(customer.as_ref());
        let server_side_encryption = sse(customer.is_some());
        let objects = Arc::clone(&self.objects);
        let work = async move {
            let src = CopySource {
                bucket: &src_bucket,
                key: &src_key,
                opened: &opened,
            };
            let copied = objects
                .copy(
                    src,
                    &input.bucket,
                    &input.key,
                    record,
                    customer.as_ref(),
                    condition.as_ref(),
                )
                .await
                .map_err(error::object)?;
            Ok(CopyObjectResult {
                e_tag: Some(ETag::Strong(copied.etag)),
                last_modified: copied.last_modified.map(Timestamp::from),
                ..Default::default()
            })
        };
        kept_alive::respond(work, |copy_object_result| CopyObjectOutput {
            server_side_encryption,
            sse_customer_algorithm,
            sse_customer_key_md5,
            copy_object_result,
            ..Default::default()
        })
        .await
    }

    pub(super) async fn delete_object_op(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let input = req.input;
        crate::object::refuse_reserved(&input.key).map_err(error::object)?;
        self.objects.head_bucket(&input.bucket).await.map_err(error::object)?;
        self.objects
            .delete(&input.bucket, &input.key)
            .await
            .map_err(error::object)?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    pub(super) async fn delete_objects_op(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let input = req.input;
        if input.delete.objects.len() > MAX_DELETE_KEYS {
            return Err(s3_error!(
                MalformedXML,
                "The XML you provided was not well-formed or did not validate against our published schema."
            ));
        }
        self.objects.head_bucket(&input.bucket).await.map_err(error::object)?;
        let quiet = input.delete.quiet.unwrap_or(false);
        let bucket = input.bucket.as_str();
        let results: Vec<(String, S3Result<()>)> = futures::stream::iter(input.delete.objects)
            .map(|obj| async move {
                let r = self.objects.delete(bucket, &obj.key).await.map_err(error::object);
                (obj.key, r)
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
                Err(e) => errors.push(s3s::dto::Error {
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
