//! The S3 front end: the only module that speaks the S3 wire. s3s parses, routes and
//! authenticates each request and serializes answers and errors; [`Proxy`] implements the
//! operations on plaintext semantics over a store that holds only ciphertext.
//!
//! Operations not implemented here fall to s3s's defaults, which answer `NotImplemented`: the
//! proxy never passes a request through to a store unencrypted.

mod answer;
mod auth;
mod bucket;
mod error;
mod info;
pub mod kept_alive;
mod multipart;
mod object;
mod policy;
mod post;
mod request;
mod sse;

use std::sync::Arc;

use s3s::dto;
use s3s::{S3, S3Request, S3Response, S3Result};

pub use self::auth::ClientAuth;
pub use self::post::{PostAnswer, PostObject};
use crate::object::Objects;

/// The encrypting S3 service. Cheap to clone (the object layer is shared): s3s serves one
/// clone, POST Object ([`PostObject`]) another.
#[derive(Clone)]
pub struct Proxy {
    objects: Arc<Objects>,
    region: String,
    /// `[server] refuse_sse_kms`.
    refuse_sse_kms: bool,
    /// Whether SSE-C requests are taken: TLS, or a loopback listener ([`sse`]).
    sse_c_secure: bool,
}

impl Proxy {
    /// A proxy over `objects`, answering as `region` (`[server] region`); requests for SSE-KMS
    /// are refused when `refuse_sse_kms`, else accepted (the proxy encrypts every object).
    pub fn new(objects: Objects, region: String, refuse_sse_kms: bool) -> Self {
        Self {
            objects: Arc::new(objects),
            region,
            refuse_sse_kms,
            sse_c_secure: true,
        }
    }

    /// Whether the listener may carry SSE-C keys: S3 takes them only over HTTPS; the proxy
    /// also over plain HTTP on loopback (a sidecar); elsewhere every SSE-C request is refused.
    /// `tls`: whether the listener has TLS; `listen`: its address.
    pub fn with_sse_c_transport(mut self, tls: bool, listen: std::net::IpAddr) -> Self {
        self.sse_c_secure = sse::keys_may_travel(tls, listen);
        self
    }
}

#[async_trait::async_trait]
impl S3 for Proxy {
    async fn list_buckets(
        &self,
        req: S3Request<dto::ListBucketsInput>,
    ) -> S3Result<S3Response<dto::ListBucketsOutput>> {
        self.list_buckets_op(req).await
    }

    async fn create_bucket(
        &self,
        req: S3Request<dto::CreateBucketInput>,
    ) -> S3Result<S3Response<dto::CreateBucketOutput>> {
        self.create_bucket_op(req).await
    }

    async fn head_bucket(&self, req: S3Request<dto::HeadBucketInput>) -> S3Result<S3Response<dto::HeadBucketOutput>> {
        self.head_bucket_op(req).await
    }

    async fn delete_bucket(
        &self,
        req: S3Request<dto::DeleteBucketInput>,
    ) -> S3Result<S3Response<dto::DeleteBucketOutput>> {
        self.delete_bucket_op(req).await
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<dto::GetBucketLocationInput>,
    ) -> S3Result<S3Response<dto::GetBucketLocationOutput>> {
        self.get_bucket_location_op(req).await
    }

    async fn list_objects(
        &self,
        req: S3Request<dto::ListObjectsInput>,
    ) -> S3Result<S3Response<dto::ListObjectsOutput>> {
        self.list_objects_op(req).await
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<dto::ListObjectsV2Input>,
    ) -> S3Result<S3Response<dto::ListObjectsV2Output>> {
        self.list_objects_v2_op(req).await
    }

    async fn put_object(&self, req: S3Request<dto::PutObjectInput>) -> S3Result<S3Response<dto::PutObjectOutput>> {
        self.put_object_op(req).await
    }

    async fn get_object(&self, req: S3Request<dto::GetObjectInput>) -> S3Result<S3Response<dto::GetObjectOutput>> {
        self.get_object_op(req).await
    }

    async fn head_object(&self, req: S3Request<dto::HeadObjectInput>) -> S3Result<S3Response<dto::HeadObjectOutput>> {
        self.head_object_op(req).await
    }

    async fn delete_object(
        &self,
        req: S3Request<dto::DeleteObjectInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectOutput>> {
        self.delete_object_op(req).await
    }

    async fn delete_objects(
        &self,
        req: S3Request<dto::DeleteObjectsInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectsOutput>> {
        self.delete_objects_op(req).await
    }

    async fn copy_object(&self, req: S3Request<dto::CopyObjectInput>) -> S3Result<S3Response<dto::CopyObjectOutput>> {
        self.copy_object_op(req).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<dto::CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CreateMultipartUploadOutput>> {
        self.create_multipart_upload_op(req).await
    }

    async fn upload_part(&self, req: S3Request<dto::UploadPartInput>) -> S3Result<S3Response<dto::UploadPartOutput>> {
        self.upload_part_op(req).await
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<dto::UploadPartCopyInput>,
    ) -> S3Result<S3Response<dto::UploadPartCopyOutput>> {
        self.upload_part_copy_op(req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<dto::CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CompleteMultipartUploadOutput>> {
        self.complete_multipart_upload_op(req).await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<dto::AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::AbortMultipartUploadOutput>> {
        self.abort_multipart_upload_op(req).await
    }

    async fn list_parts(&self, req: S3Request<dto::ListPartsInput>) -> S3Result<S3Response<dto::ListPartsOutput>> {
        self.list_parts_op(req).await
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<dto::ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<dto::ListMultipartUploadsOutput>> {
        self.list_multipart_uploads_op(req).await
    }

    async fn get_object_attributes(
        &self,
        req: S3Request<dto::GetObjectAttributesInput>,
    ) -> S3Result<S3Response<dto::GetObjectAttributesOutput>> {
        self.get_object_attributes_op(req).await
    }

    async fn list_object_versions(
        &self,
        req: S3Request<dto::ListObjectVersionsInput>,
    ) -> S3Result<S3Response<dto::ListObjectVersionsOutput>> {
        self.list_object_versions_op(req).await
    }

    async fn get_object_tagging(
        &self,
        req: S3Request<dto::GetObjectTaggingInput>,
    ) -> S3Result<S3Response<dto::GetObjectTaggingOutput>> {
        self.get_object_tagging_op(req).await
    }

    async fn delete_object_tagging(
        &self,
        req: S3Request<dto::DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectTaggingOutput>> {
        self.delete_object_tagging_op(req).await
    }

    async fn get_bucket_encryption(
        &self,
        req: S3Request<dto::GetBucketEncryptionInput>,
    ) -> S3Result<S3Response<dto::GetBucketEncryptionOutput>> {
        self.get_bucket_encryption_op(req).await
    }

    async fn get_bucket_versioning(
        &self,
        req: S3Request<dto::GetBucketVersioningInput>,
    ) -> S3Result<S3Response<dto::GetBucketVersioningOutput>> {
        self.get_bucket_versioning_op(req).await
    }
}
