//! What clients ask about objects and buckets besides their content: object attributes, the
//! versions of an unversioned bucket, tags (objects here have none), encryption and versioning
//! status. Every answer is true of what the proxy stores; nothing is passed through.

use s3s::dto::{
    DeleteObjectTaggingInput, DeleteObjectTaggingOutput, ETag, GetBucketEncryptionInput, GetBucketEncryptionOutput,
    GetBucketVersioningInput, GetBucketVersioningOutput, GetObjectAttributesInput, GetObjectAttributesOutput,
    GetObjectAttributesParts, GetObjectTaggingInput, GetObjectTaggingOutput, ListObjectVersionsInput,
    ListObjectVersionsOutput, ObjectAttributes, ObjectPart, ObjectVersion, ObjectVersionStorageClass,
    ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    StorageClass, Timestamp,
};
use s3s::{S3Request, S3Response, S3Result};

use super::Proxy;
use super::answer::checksum_dto;
use super::bucket::{encode_if, is_url, list_query, max_keys, objects, prefixes};
use super::error;
use super::request::no_versions;
use super::sse::{self, sse_c_headers};
use crate::limits::MAX_KEYS;
use crate::object::Shape;

impl Proxy {
    pub(super) async fn get_object_attributes_op(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> S3Result<S3Response<GetObjectAttributesOutput>> {
        let input = req.input;
        let customer = sse::customer_key(&sse_c_headers!(input), self.sse_c_secure)?;
        no_versions(input.version_id.as_deref())?;
        let mut opened = self
            .objects
            .open(&input.bucket, &input.key)
            .await
            .map_err(error::object)?;
        sse::unlock(&mut opened, customer.as_ref())?;
        let wants = |name: &str| input.object_attributes.iter().any(|a| a.as_str() == name);
        let checksum = opened
            .checksum()
            .filter(|_| wants(ObjectAttributes::CHECKSUM))
            .map(|(algo, digest)| checksum_dto(*algo, digest));
        let object_parts = match &opened.shape {
            Shape::Multipart(manifest) if wants(ObjectAttributes::OBJECT_PARTS) => {
                let max = input.max_parts.unwrap_or(MAX_KEYS).clamp(0, MAX_KEYS) as usize;
                let marker = input.part_number_marker.unwrap_or(0).max(0) as u32;
                let after: Vec<_> = manifest.parts.iter().filter(|p| p.number > marker).collect();
                let parts: Vec<ObjectPart> = after
                    .iter()
                    .take(max)
                    .map(|p| ObjectPart {
                        part_number: Some(p.number as i32),
                        size: Some(p.plain_len as i64),
                        ..Default::default()
                    })
                    .collect();
                Some(GetObjectAttributesParts {
                    total_parts_count: Some(manifest.parts.len() as i32),
                    is_truncated: Some(after.len() > max),
                    max_parts: Some(max as i32),
                    part_number_marker: Some(marker as i32),
                    next_part_number_marker: parts.last().and_then(|p| p.part_number),
                    parts: Some(parts),
                })
            }
            _ => None,
        };
        Ok(S3Response::new(GetObjectAttributesOutput {
            e_tag: wants(ObjectAttributes::ETAG).then(|| ETag::Strong(opened.etag())),
            object_size: wants(ObjectAttributes::OBJECT_SIZE).then(|| opened.size() as i64),
            storage_class: wants(ObjectAttributes::STORAGE_CLASS)
                .then(|| StorageClass::from_static(StorageClass::STANDARD)),
            last_modified: opened.last_modified.map(Timestamp::from),
            checksum,
            object_parts,
            ..Default::default()
        }))
    }

    /// Buckets here are unversioned: every object is its only version, `null`.
    pub(super) async fn list_object_versions_op(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        let input = req.input;
        let url = is_url(input.encoding_type.as_ref())?;
        let max_keys = max_keys(input.max_keys)?;
        let query = list_query(&input.prefix, &input.delimiter, &input.key_marker, &None, max_keys);
        let page = self.objects.list(&input.bucket, query).await.map_err(error::object)?;
        let next_key_marker = page.resume_marker.clone().filter(|_| page.is_truncated);
        let versions = objects(false, page.objects)
            .into_iter()
            .map(|o| ObjectVersion {
                e_tag: o.e_tag,
                is_latest: Some(true),
                key: o.key.map(|k| encode_if(url, &k)),
                last_modified: o.last_modified,
                owner: o.owner,
                size: o.size,
                storage_class: Some(ObjectVersionStorageClass::from_static(
                    ObjectVersionStorageClass::STANDARD,
                )),
                version_id: Some("null".into()),
                ..Default::default()
            })
            .collect();
        let enc = |s: Option<String>| s.map(|s| encode_if(url, &s));
        Ok(S3Response::new(ListObjectVersionsOutput {
            name: Some(input.bucket),
            prefix: Some(encode_if(url, input.prefix.as_deref().unwrap_or(""))),
            delimiter: enc(input.delimiter.filter(|d| !d.is_empty())),
            key_marker: Some(encode_if(url, input.key_marker.as_deref().unwrap_or(""))),
            version_id_marker: input.version_id_marker,
            max_keys: Some(max_keys),
            is_truncated: Some(page.is_truncated),
            next_version_id_marker: next_key_marker.as_ref().map(|_| "null".to_string()),
            next_key_marker: enc(next_key_marker),
            versions: Some(versions),
            delete_markers: Some(Vec::new()),
            common_prefixes: Some(prefixes(url, page.common_prefixes)),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }

    /// Objects written through the proxy carry no tags (a PUT with tags is refused), so the
    /// honest answer for an existing object is an empty tag set.
    pub(super) async fn get_object_tagging_op(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        let input = req.input;
        no_versions(input.version_id.as_deref())?;
        self.objects
            .open(&input.bucket, &input.key)
            .await
            .map_err(error::object)?;
        Ok(S3Response::new(GetObjectTaggingOutput {
            tag_set: Vec::new(),
            version_id: None,
        }))
    }

    /// Removing the tags of an object that has none: nothing to do, once it is known to exist.
    pub(super) async fn delete_object_tagging_op(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        let input = req.input;
        no_versions(input.version_id.as_deref())?;
        self.objects
            .open(&input.bucket, &input.key)
            .await
            .map_err(error::object)?;
        Ok(S3Response::new(DeleteObjectTaggingOutput::default()))
    }

    /// Every object is encrypted with AES-256 (by the proxy, before it reaches the store).
    pub(super) async fn get_bucket_encryption_op(
        &self,
        req: S3Request<GetBucketEncryptionInput>,
    ) -> S3Result<S3Response<GetBucketEncryptionOutput>> {
        self.objects
            .head_bucket(&req.input.bucket)
            .await
            .map_err(error::object)?;
        Ok(S3Response::new(GetBucketEncryptionOutput {
            server_side_encryption_configuration: Some(ServerSideEncryptionConfiguration {
                rules: vec![ServerSideEncryptionRule {
                    apply_server_side_encryption_by_default: Some(ServerSideEncryptionByDefault {
                        sse_algorithm: ServerSideEncryption::from_static(ServerSideEncryption::AES256),
                        kms_master_key_id: None,
                    }),
                    bucket_key_enabled: Some(false),
                }],
            }),
        }))
    }

    /// Buckets here are never versioned: no status, as S3 answers for a bucket that never was.
    pub(super) async fn get_bucket_versioning_op(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        self.objects
            .head_bucket(&req.input.bucket)
            .await
            .map_err(error::object)?;
        Ok(S3Response::new(GetBucketVersioningOutput::default()))
    }
}
