//! POST Object: browser-form uploads (`POST /bucket` with `multipart/form-data`), served here
//! instead of by s3s (which buffers the whole file before checking anything). The form is
//! parsed as it streams (`multer`), under hard limits:
//!
//! - the fields before the `file` part are read under [`POST_MAX_FIELD`] each,
//!   [`POST_MAX_FIELDS_BYTES`] together and [`POST_MAX_FIELDS`] in number; until the form is
//!   authenticated the body is not read past `POST_MAX_FIELDS_BYTES + POST_FORM_FRAMING`
//!   (plus the one frame that crosses it), so an unauthenticated form costs at most that;
//! - the POST signature over the base64 policy (SigV4, or SigV2's HMAC-SHA1) is checked against
//!   the client's secret ([`ClientAuth`]) in constant time before a byte of the file is held; a
//!   form without one is refused (403: no bucket here is public);
//! - the policy is checked as S3 does ([`super::policy`]); then the file streams: up to
//!   [`POST_READ_AHEAD`] is held, and a file that ends within it is one PutObject (plain MD5
//!   ETag), a longer one an internal multipart upload in parts of that size (multipart ETag
//!   `"<md5 of part md5s>-<parts>"`), aborted on any failure. `content-length-range` and the
//!   largest object are enforced as bytes arrive (nothing written), the minimum at the end.
//!
//! The object is stored by the same operations as a PUT ([`Proxy::put_object_op`] or the
//! multipart ones), so metadata, SSE, reserved keys, checksums and ETags are a PUT's. Fields
//! after `file` are ignored, as S3 does. Nothing here logs a field, the policy or a signature.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::Stream;
use s3s::dto::{
    AbortMultipartUploadInput, CompleteMultipartUploadInput, CompletedMultipartUpload, CompletedPart,
    CreateMultipartUploadInput, PutObjectInput, StreamingBlob, Timestamp, TimestampFormat, UploadPartInput,
};
use s3s::{S3Error, S3ErrorCode, S3Request, S3Result, s3_error};

use super::policy::{self, Fields};
use super::{ClientAuth, Proxy};
use crate::limits::{
    MAX_PUT_SIZE, POST_FORM_FRAMING, POST_MAX_BUFFERS, POST_MAX_FIELD, POST_MAX_FIELDS, POST_MAX_FIELDS_BYTES,
    POST_MAX_TRAILER, POST_READ_AHEAD,
};
use crate::object::ChecksumAlgorithm;
use crate::object::checksum::{Hasher, decode_digest};

/// Copies [`ObjectHeaders`] into a PutObject or CreateMultipartUpload input (same names).
macro_rules! object_fields {
    ($input:ident, $h:expr) => {
        $input.content_type = $h.content_type.clone();
        $input.cache_control = $h.cache_control.clone();
        $input.content_disposition = $h.content_disposition.clone();
        $input.content_encoding = $h.content_encoding.clone();
        $input.content_language = $h.content_language.clone();
        $input.expires = $h.expires.clone();
        $input.metadata = $h.metadata.clone();
        $input.acl = $h.acl.clone().map(Into::into);
        $input.tagging = $h.tagging.clone();
        $input.server_side_encryption = $h.sse.clone().map(Into::into);
        $input.ssekms_key_id = $h.kms_key_id.clone();
        $input.ssekms_encryption_context = $h.kms_context.clone();
        $input.sse_customer_algorithm = $h.sse_c[0].clone();
        $input.sse_customer_key = $h.sse_c[1].clone();
        $input.sse_customer_key_md5 = $h.sse_c[2].clone();
        $input.storage_class = $h.storage_class.clone().map(Into::into);
        $input.website_redirect_location = $h.website_redirect.clone();
        if $h.object_lock {
            $input.object_lock_mode = Some(s3s::dto::ObjectLockMode::from_static(
                s3s::dto::ObjectLockMode::GOVERNANCE,
            ));
        }
    };
}

/// The one signing algorithm accepted.
const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// POST Object over a [`Proxy`], authenticating with the same `[[clients]]` as s3s.
pub struct PostObject {
    proxy: Proxy,
    auth: ClientAuth,
    /// Slots for file read-aheads ([`POST_MAX_BUFFERS`]).
    buffers: Arc<tokio::sync::Semaphore>,
}

/// The answer to a POST Object, and what the access log may say about it.
pub struct PostAnswer {
    /// The HTTP response (an S3 error XML body, or the success answer).
    pub response: http::Response<Bytes>,
    /// The access key whose signature checked out, if any.
    pub access_key: Option<String>,
    /// The object key, once authenticated.
    pub key: Option<String>,
    /// Whether the whole request body was read (else the connection must not be reused).
    pub consumed: bool,
}

impl PostObject {
    /// POST Object for `proxy`, checking signatures against `auth`.
    pub fn new(proxy: Proxy, auth: ClientAuth) -> Self {
        Self {
            proxy,
            auth,
            buffers: Arc::new(tokio::sync::Semaphore::new(POST_MAX_BUFFERS)),
        }
    }

    /// Serves one form POST to `bucket`: `content_type` is the request's, `body` its body,
    /// `base` the URL the object's `Location` starts with (`https://host`, or empty).
    pub async fn serve<S, E>(&self, bucket: String, content_type: &str, body: S, base: &str) -> PostAnswer
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
    {
        let mut state = State {
            access_key: None,
            key: None,
            consumed: false,
        };
        let response = match self.run(&bucket, content_type, body, base, &mut state).await {
            Ok(resp) => resp,
            Err(e) => error_response(&e),
        };
        PostAnswer {
            response,
            access_key: state.access_key,
            key: state.key,
            consumed: state.consumed,
        }
    }

    async fn run<S, E>(
        &self,
        bucket: &str,
        content_type: &str,
        body: S,
        base: &str,
        state: &mut State,
    ) -> S3Result<http::Response<Bytes>>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
    {
        let boundary = multer::parse_boundary(content_type).map_err(|_| malformed())?;
        let gate = Arc::new(Gate::new((POST_MAX_FIELDS_BYTES + POST_FORM_FRAMING) as u64));
        let budgeted = Budgeted {
            inner: body,
            gate: Arc::clone(&gate),
            read: 0,
            paused: false,
        };
        let mut form = multer::Multipart::new(budgeted, boundary);

        // The fields before `file`, under their limits.
        let mut fields = Fields::new();
        let mut total = 0usize;
        let (mut file, filename) = loop {
            let Some(mut field) = next_field(&mut form, &gate).await? else {
                state.consumed = true;
                return Err(s3_error!(
                    IncorrectNumberOfFilesInPostRequest,
                    "POST requires exactly one file upload per request."
                ));
            };
            let name = field.name().ok_or_else(malformed)?.to_ascii_lowercase();
            if name == "file" {
                let filename = field.file_name().unwrap_or_default().to_string();
                break (field, filename);
            }
            if fields.len() >= POST_MAX_FIELDS {
                return Err(too_much_before_file());
            }
            let value = field_text(&mut field, &gate, &mut total).await?;
            if fields.insert(name, value).is_some() {
                return Err(s3_error!(InvalidArgument, "A form field is given more than once."));
            }
        };

        // Authentication, before the file is read.
        let access_key = self.authenticate(&fields)?;
        state.access_key = Some(access_key.clone());
        gate.open();

        // The key (`${filename}` is the file part's name), then the policy, on the final key.
        let key = fields
            .get("key")
            .map(|k| k.replace("${filename}", &filename))
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                s3_error!(
                    InvalidArgument,
                    "Bucket POST must contain a field named 'key'.  If it is specified, please check the order of the fields."
                )
            })?;
        fields.insert("key".into(), key.clone());
        state.key = Some(key.clone());
        let policy_text = fields.get("policy").map(String::as_str).unwrap_or_default();
        let range = policy::parse(policy_text)?.check(&fields, bucket, time::OffsetDateTime::now_utc())?;
        let (min, max) = range.unwrap_or((0, MAX_PUT_SIZE));
        let max = max.min(MAX_PUT_SIZE);
        let headers = ObjectHeaders::from_fields(&fields)?;

        // The file: held up to the read-ahead, then streamed in parts, in one of the slots.
        let _slot = Arc::clone(&self.buffers)
            .acquire_owned()
            .await
            .map_err(|_| s3_error!(ServiceUnavailable, "The proxy is shutting down."))?;
        let mut held = BytesMut::new();
        let mut size = 0u64;
        let mut upload: Option<Upload> = None;
        let mut hasher = headers.checksum.as_ref().map(|(a, _)| Hasher::new(*a));
        let streamed: S3Result<()> = async {
            while let Some(chunk) = file.chunk().await.map_err(body_failed)? {
                size += chunk.len() as u64;
                if size > max {
                    return Err(s3_error!(
                        EntityTooLarge,
                        "Your proposed upload exceeds the maximum allowed size"
                    ));
                }
                held.extend_from_slice(&chunk);
                if held.len() > POST_READ_AHEAD {
                    let part = held.split_to(POST_READ_AHEAD).freeze();
                    if let Some(h) = hasher.as_mut() {
                        h.update(&part);
                    }
                    if upload.is_none() {
                        upload = Some(self.create_upload(bucket, &key, &headers).await?);
                    }
                    if let Some(u) = upload.as_mut() {
                        self.upload_part(u, bucket, &key, &headers, part).await?;
                    }
                }
            }
            drop(file);
            // Fields after the file are ignored; they are read (bounded) so the connection
            // can be reused.
            state.consumed = drain(&mut form).await?;
            if size < min {
                return Err(s3_error!(
                    EntityTooSmall,
                    "Your proposed upload is smaller than the minimum allowed size"
                ));
            }
            Ok(())
        }
        .await;
        if let Err(e) = streamed {
            if let Some(u) = upload {
                self.abort(bucket, &key, &u).await;
            }
            return Err(e);
        }

        let stored = match upload {
            None => self.put(bucket, &key, &headers, held.freeze()).await?,
            Some(mut u) => {
                let last = held.freeze();
                let finished: S3Result<Stored> = async {
                    if let (Some(mut h), Some((algo, want))) = (hasher.take(), headers.checksum.as_ref()) {
                        h.update(&last);
                        let got = h.finalize();
                        if &got != want {
                            return Err(S3Error::with_message(
                                S3ErrorCode::BadDigest,
                                format!(
                                    "The {} you specified did not match the calculated checksum.",
                                    algo.s3_name()
                                ),
                            ));
                        }
                    }
                    self.upload_part(&mut u, bucket, &key, &headers, last).await?;
                    self.complete(bucket, &key, &u).await
                }
                .await;
                match finished {
                    Ok(stored) => stored,
                    Err(e) => {
                        self.abort(bucket, &key, &u).await;
                        return Err(e);
                    }
                }
            }
        };
        Ok(success(&fields, bucket, &key, &stored, base))
    }

    /// The access key of a form whose signature (SigV4 or SigV2) checks out; S3's refusal
    /// otherwise.
    fn authenticate(&self, fields: &Fields) -> S3Result<String> {
        if fields.contains_key("awsaccesskeyid") || fields.contains_key("signature") {
            // SigV2 form (what the ceph s3-tests POST cases send): base64 HMAC-SHA1 of the
            // base64 policy under the client's secret.
            let (Some(access_key), Some(policy), Some(signature)) = (
                fields.get("awsaccesskeyid"),
                fields.get("policy"),
                fields.get("signature"),
            ) else {
                return Err(s3_error!(
                    InvalidArgument,
                    "Bucket POST must contain the fields 'AWSAccessKeyId', 'policy' and 'signature'."
                ));
            };
            let secret = self.auth.secret(access_key);
            let expected = policy::sigv2_signature(secret.expose(), policy);
            if !policy::signature_matches(&expected, signature) {
                return Err(s3_error!(
                    SignatureDoesNotMatch,
                    "The request signature we calculated does not match the signature you provided. Check your key and signing method."
                ));
            }
            return Ok(access_key.clone());
        }
        let (policy, signature) = match (fields.get("policy"), fields.get("x-amz-signature")) {
            (None, None) => {
                return Err(s3_error!(
                    AccessDenied,
                    "Anonymous POST uploads are not accepted: no bucket behind this proxy is public."
                ));
            }
            (Some(p), Some(s)) => (p, s),
            (None, Some(_)) => {
                return Err(s3_error!(
                    InvalidArgument,
                    "Bucket POST must contain a field named 'policy'."
                ));
            }
            (Some(_), None) => {
                return Err(s3_error!(
                    InvalidArgument,
                    "Bucket POST must contain a field named 'x-amz-signature'."
                ));
            }
        };
        match fields.get("x-amz-algorithm") {
            Some(a) if a == ALGORITHM => {}
            Some(_) => {
                return Err(s3_error!(
                    InvalidArgument,
                    "The algorithm in x-amz-algorithm is not supported. Please use AWS4-HMAC-SHA256."
                ));
            }
            None => {
                return Err(s3_error!(
                    InvalidArgument,
                    "Bucket POST must contain a field named 'x-amz-algorithm'."
                ));
            }
        }
        let credential = fields.get("x-amz-credential").ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "Bucket POST must contain a field named 'x-amz-credential'."
            )
        })?;
        let credential = policy::parse_credential(credential)
            .ok_or_else(|| s3_error!(InvalidArgument, "The x-amz-credential field is malformed."))?;
        let date_ok = fields.get("x-amz-date").is_some_and(|d| {
            time::PrimitiveDateTime::parse(
                d,
                time::macros::format_description!("[year][month][day]T[hour][minute][second]Z"),
            )
            .is_ok()
        });
        let same_day = fields
            .get("x-amz-date")
            .is_some_and(|d| d.get(..8) == Some(credential.date));
        if !date_ok || !same_day {
            return Err(s3_error!(
                InvalidArgument,
                "Bucket POST must contain a field named 'x-amz-date' in the form yyyyMMddTHHmmssZ, on the credential's date."
            ));
        }
        let secret = self.auth.secret(credential.access_key);
        let expected = policy::sigv4_signature(secret.expose(), &credential, policy);
        if !policy::signature_matches(&expected, signature) {
            return Err(s3_error!(
                SignatureDoesNotMatch,
                "The request signature we calculated does not match the signature you provided. Check your key and signing method."
            ));
        }
        Ok(credential.access_key.to_string())
    }

    /// A request as s3s would hand it to the proxy: no headers of its own, the form's
    /// credentials already checked.
    fn request<T>(&self, input: T) -> S3Request<T> {
        S3Request {
            input,
            method: http::Method::POST,
            uri: http::Uri::from_static("/"),
            headers: http::HeaderMap::new(),
            extensions: http::Extensions::new(),
            credentials: None,
            region: None,
            service: None,
            trailing_headers: None,
        }
    }

    async fn put(&self, bucket: &str, key: &str, h: &ObjectHeaders, data: Bytes) -> S3Result<Stored> {
        let mut input = PutObjectInput {
            bucket: bucket.into(),
            key: key.into(),
            content_length: Some(data.len() as i64),
            body: Some(blob(data)),
            ..Default::default()
        };
        object_fields!(input, h);
        if let Some((algo, _)) = &h.checksum {
            let value = h.checksum_text.clone();
            match algo {
                ChecksumAlgorithm::Crc32 => input.checksum_crc32 = value,
                ChecksumAlgorithm::Crc32c => input.checksum_crc32c = value,
                ChecksumAlgorithm::Crc64Nvme => input.checksum_crc64nvme = value,
                ChecksumAlgorithm::Sha1 => input.checksum_sha1 = value,
                ChecksumAlgorithm::Sha256 => input.checksum_sha256 = value,
            }
        }
        let out = self.proxy.put_object_op(self.request(input)).await?.output;
        Ok(Stored {
            etag: out.e_tag.map(|e| e.value().to_string()).unwrap_or_default(),
            sse: out.server_side_encryption.map(|s| s.as_str().to_string()),
        })
    }

    async fn create_upload(&self, bucket: &str, key: &str, h: &ObjectHeaders) -> S3Result<Upload> {
        let mut input = CreateMultipartUploadInput {
            bucket: bucket.into(),
            key: key.into(),
            ..Default::default()
        };
        object_fields!(input, h);
        let out = self.proxy.create_multipart_upload_op(self.request(input)).await?;
        let id = out
            .output
            .upload_id
            .ok_or_else(|| s3_error!(InternalError, "The upload was not created."))?;
        Ok(Upload { id, parts: Vec::new() })
    }

    async fn upload_part(
        &self,
        u: &mut Upload,
        bucket: &str,
        key: &str,
        h: &ObjectHeaders,
        data: Bytes,
    ) -> S3Result<()> {
        let number = u.parts.len() as i32 + 1;
        let input = UploadPartInput {
            bucket: bucket.into(),
            key: key.into(),
            upload_id: u.id.clone(),
            part_number: number,
            content_length: Some(data.len() as i64),
            body: Some(blob(data)),
            sse_customer_algorithm: h.sse_c[0].clone(),
            sse_customer_key: h.sse_c[1].clone(),
            sse_customer_key_md5: h.sse_c[2].clone(),
            ..Default::default()
        };
        let out = self.proxy.upload_part_op(self.request(input)).await?;
        u.parts.push(CompletedPart {
            e_tag: out.output.e_tag,
            part_number: Some(number),
            ..Default::default()
        });
        Ok(())
    }

    async fn complete(&self, bucket: &str, key: &str, u: &Upload) -> S3Result<Stored> {
        let input = CompleteMultipartUploadInput {
            bucket: bucket.into(),
            key: key.into(),
            upload_id: u.id.clone(),
            multipart_upload: Some(CompletedMultipartUpload {
                parts: Some(u.parts.clone()),
            }),
            ..Default::default()
        };
        let out = self
            .proxy
            .complete_multipart_upload_op(self.request(input))
            .await?
            .output;
        Ok(Stored {
            etag: out.e_tag.map(|e| e.value().to_string()).unwrap_or_default(),
            sse: out.server_side_encryption.map(|s| s.as_str().to_string()),
        })
    }

    /// Aborts an internal upload after a failure (the failure is what the client hears).
    async fn abort(&self, bucket: &str, key: &str, u: &Upload) {
        let input = AbortMultipartUploadInput {
            bucket: bucket.into(),
            key: key.into(),
            upload_id: u.id.clone(),
            ..Default::default()
        };
        if let Err(e) = self.proxy.abort_multipart_upload_op(self.request(input)).await {
            tracing::warn!(code = %e.code().as_str(), "POST Object: aborting the internal multipart upload failed");
        }
    }
}

/// What [`PostObject::serve`] learns as it goes, for the access log.
struct State {
    access_key: Option<String>,
    key: Option<String>,
    consumed: bool,
}

/// What a PUT or a completion answered: the ETag (unquoted), and the SSE the answer names
/// (none for an SSE-C object, as S3 answers).
struct Stored {
    etag: String,
    sse: Option<String>,
}

/// An internal multipart upload of a long file.
struct Upload {
    id: String,
    parts: Vec<CompletedPart>,
}

fn blob(data: Bytes) -> StreamingBlob {
    StreamingBlob::from(s3s::Body::from(data))
}

/// The object's headers, from the form's fields (as a PUT takes them from its headers).
#[derive(Default)]
struct ObjectHeaders {
    content_type: Option<String>,
    cache_control: Option<String>,
    content_disposition: Option<String>,
    content_encoding: Option<String>,
    content_language: Option<String>,
    expires: Option<Timestamp>,
    metadata: Option<s3s::dto::Metadata>,
    acl: Option<String>,
    tagging: Option<String>,
    sse: Option<String>,
    kms_key_id: Option<String>,
    kms_context: Option<String>,
    /// SSE-C algorithm, key, key MD5.
    sse_c: [Option<String>; 3],
    storage_class: Option<String>,
    website_redirect: Option<String>,
    object_lock: bool,
    /// An `x-amz-checksum-*` field, decoded, and its text.
    checksum: Option<(ChecksumAlgorithm, Vec<u8>)>,
    checksum_text: Option<String>,
}

impl ObjectHeaders {
    fn from_fields(fields: &Fields) -> S3Result<Self> {
        let get = |name: &str| fields.get(name).cloned();
        let expires = match fields.get("expires") {
            Some(v) => Some(
                Timestamp::parse(TimestampFormat::HttpDate, v.trim())
                    .map_err(|_| s3_error!(InvalidArgument, "The Expires field is not an HTTP date."))?,
            ),
            None => None,
        };
        let metadata: BTreeMap<String, String> = fields
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("x-amz-meta-").map(|k| (k.to_string(), v.clone())))
            .collect();
        let mut checksum = None;
        let mut checksum_text = None;
        for algo in ChecksumAlgorithm::ALL {
            let name = format!("x-amz-checksum-{}", algo.s3_name().to_lowercase());
            if let Some(v) = fields.get(&name) {
                if checksum.is_some() {
                    return Err(s3_error!(InvalidRequest, "Expecting a single x-amz-checksum- header."));
                }
                let d = decode_digest(algo, v)
                    .ok_or_else(|| s3_error!(InvalidRequest, "Value for {} is invalid.", name))?;
                checksum = Some((algo, d));
                checksum_text = Some(v.clone());
            }
        }
        Ok(Self {
            content_type: get("content-type"),
            cache_control: get("cache-control"),
            content_disposition: get("content-disposition"),
            content_encoding: get("content-encoding"),
            content_language: get("content-language"),
            expires,
            metadata: (!metadata.is_empty()).then(|| metadata.into_iter().collect()),
            acl: get("acl"),
            tagging: get("tagging"),
            sse: get("x-amz-server-side-encryption"),
            kms_key_id: get("x-amz-server-side-encryption-aws-kms-key-id"),
            kms_context: get("x-amz-server-side-encryption-context"),
            sse_c: [
                get("x-amz-server-side-encryption-customer-algorithm"),
                get("x-amz-server-side-encryption-customer-key"),
                get("x-amz-server-side-encryption-customer-key-md5"),
            ],
            storage_class: get("x-amz-storage-class"),
            website_redirect: get("x-amz-website-redirect-location"),
            object_lock: fields.contains_key("x-amz-object-lock-mode")
                || fields.contains_key("x-amz-object-lock-legal-hold"),
            checksum,
            checksum_text,
        })
    }
}

/// The success answer S3 gives: a redirect (`success_action_redirect` or `redirect`), or
/// `success_action_status` 200 (empty), 201 (`PostResponse` XML), else 204.
fn success(fields: &Fields, bucket: &str, key: &str, stored: &Stored, base: &str) -> http::Response<Bytes> {
    let location = format!("{base}/{}/{}", url_encode(bucket, false), url_encode(key, false));
    let quoted = format!("\"{}\"", stored.etag);
    let mut builder = http::Response::builder().header(http::header::ETAG, quoted.as_str());
    if let Some(sse) = &stored.sse {
        builder = builder.header("x-amz-server-side-encryption", sse.as_str());
    }
    let redirect = fields
        .get("success_action_redirect")
        .or_else(|| fields.get("redirect"))
        .filter(|r| r.starts_with("http://") || r.starts_with("https://"));
    let (status, body) = if let Some(r) = redirect {
        let sep = if r.contains('?') { '&' } else { '?' };
        let target = format!(
            "{r}{sep}bucket={}&key={}&etag={}",
            url_encode(bucket, true),
            url_encode(key, true),
            url_encode(&quoted, true)
        );
        builder = builder.header(http::header::LOCATION, target.as_str());
        (http::StatusCode::SEE_OTHER, Bytes::new())
    } else {
        builder = builder.header(http::header::LOCATION, location.as_str());
        match fields.get("success_action_status").map(String::as_str) {
            Some("200") => (http::StatusCode::OK, Bytes::new()),
            Some("201") => {
                builder = builder.header(http::header::CONTENT_TYPE, "application/xml");
                let xml = format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<PostResponse><Location>{}</Location><Bucket>{}</Bucket><Key>{}</Key><ETag>{}</ETag></PostResponse>",
                    crate::markup::escape(&location),
                    crate::markup::escape(bucket),
                    crate::markup::escape(key),
                    crate::markup::escape(&quoted)
                );
                (http::StatusCode::CREATED, Bytes::from(xml))
            }
            _ => (http::StatusCode::NO_CONTENT, Bytes::new()),
        }
    };
    let resp = builder.status(status).body(body.clone());
    // Invariant: every header value above is ASCII built from encoded parts; if a client's
    // redirect URL carries bytes a header cannot, the answer falls back to a plain 204.
    resp.unwrap_or_else(|_| {
        let mut r = http::Response::new(Bytes::new());
        *r.status_mut() = http::StatusCode::NO_CONTENT;
        r
    })
}

/// The S3 error XML for `e`.
fn error_response(e: &S3Error) -> http::Response<Bytes> {
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message></Error>",
        crate::markup::escape(e.code().as_str()),
        crate::markup::escape(e.message().unwrap_or_default())
    );
    let mut r = http::Response::new(Bytes::from(xml));
    *r.status_mut() = e.status_code().unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml"),
    );
    r
}

/// Percent-encodes all but unreserved characters (and `/` unless `slash`).
fn url_encode(s: &str, slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') || (b == b'/' && !slash) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn malformed() -> S3Error {
    s3_error!(
        MalformedPOSTRequest,
        "The body of your POST request is not well-formed multipart/form-data."
    )
}

fn too_much_before_file() -> S3Error {
    s3_error!(
        MaxPostPreDataLengthExceededError,
        "Your POST request fields preceding the upload file were too large."
    )
}

/// A failure reading the form: the client's body failed, or the form is malformed.
fn body_failed(e: multer::Error) -> S3Error {
    match e {
        multer::Error::StreamReadFailed(_) => s3_error!(IncompleteBody, "The request body could not be read."),
        _ => malformed(),
    }
}

/// The next part of the form. Before authentication, a form whose fields need more than the
/// body budget fails instead of waiting for bytes the budget will not let through.
async fn next_field(form: &mut multer::Multipart<'static>, gate: &Gate) -> S3Result<Option<multer::Field<'static>>> {
    futures::future::poll_fn(|cx| match form.poll_next_field(cx) {
        Poll::Pending if gate.starved() => Poll::Ready(Err(too_much_before_file())),
        Poll::Pending => Poll::Pending,
        Poll::Ready(r) => Poll::Ready(r.map_err(|e| match e {
            multer::Error::StreamReadFailed(_) => body_failed(e),
            _ => malformed(),
        })),
    })
    .await
}

/// A field's value as text, within [`POST_MAX_FIELD`] and the running `total`.
async fn field_text(field: &mut multer::Field<'static>, gate: &Gate, total: &mut usize) -> S3Result<String> {
    let mut value = Vec::new();
    loop {
        let chunk = futures::future::poll_fn(|cx| match Pin::new(&mut *field).poll_next(cx) {
            Poll::Pending if gate.starved() => Poll::Ready(Some(Err(too_much_before_file()))),
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(r)) => Poll::Ready(Some(r.map_err(body_failed))),
        })
        .await;
        let Some(chunk) = chunk.transpose()? else { break };
        *total += chunk.len();
        if value.len() + chunk.len() > POST_MAX_FIELD || *total > POST_MAX_FIELDS_BYTES {
            return Err(too_much_before_file());
        }
        value.extend_from_slice(&chunk);
    }
    String::from_utf8(value).map_err(|_| s3_error!(InvalidArgument, "A form field is not UTF-8."))
}

/// Reads the fields after the file to the end of the form (ignored), up to
/// [`POST_MAX_TRAILER`] bytes: whether the body was read to its end.
async fn drain(form: &mut multer::Multipart<'static>) -> S3Result<bool> {
    let mut read = 0usize;
    while let Some(mut field) = form.next_field().await.map_err(body_failed)? {
        while let Some(chunk) = field.chunk().await.map_err(body_failed)? {
            read += chunk.len();
            if read > POST_MAX_TRAILER {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// How much of the body may be read: [`Gate::new`]'s budget until [`Gate::open`].
struct Gate {
    limit: AtomicU64,
    starved: AtomicBool,
}

impl Gate {
    fn new(limit: u64) -> Self {
        Self {
            limit: AtomicU64::new(limit),
            starved: AtomicBool::new(false),
        }
    }

    /// Lifts the budget (the form is authenticated).
    fn open(&self) {
        self.limit.store(u64::MAX, Ordering::Relaxed);
        self.starved.store(false, Ordering::Relaxed);
    }

    /// Whether the reader wanted more than the budget.
    fn starved(&self) -> bool {
        self.starved.load(Ordering::Relaxed)
    }
}

/// The request body under a [`Gate`], one frame per poll: the parser reads frame by frame
/// instead of everything the connection has ready, so what it holds stays one frame ahead.
struct Budgeted<S> {
    inner: S,
    gate: Arc<Gate>,
    read: u64,
    paused: bool,
}

impl<S, E> Stream for Budgeted<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Item = Result<Bytes, Box<dyn std::error::Error + Send + Sync>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.paused {
            self.paused = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if self.read >= self.gate.limit.load(Ordering::Relaxed) {
            // No waker: the caller sees `starved` and fails instead of waiting.
            self.gate.starved.store(true, Ordering::Relaxed);
            return Poll::Pending;
        }
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(data))) => {
                self.read += data.len() as u64;
                self.paused = true;
                Poll::Ready(Some(Ok(data)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_xml_are_escaped() {
        assert_eq!(url_encode("a b/c&d", false), "a%20b/c%26d");
        assert_eq!(url_encode("a/\"e\"", true), "a%2F%22e%22");
        assert_eq!(crate::markup::escape("<a&\"b\">"), "&lt;a&amp;&quot;b&quot;&gt;");
    }

    fn form(pairs: &[(&str, &str)]) -> Fields {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn success_answers_follow_the_form() {
        let stored = Stored {
            etag: "e".into(),
            sse: Some("AES256".into()),
        };
        let status = |f: &[(&str, &str)]| success(&form(f), "b", "k", &stored, "http://h").status().as_u16();
        assert_eq!(status(&[]), 204);
        assert_eq!(status(&[("success_action_status", "200")]), 200);
        assert_eq!(status(&[("success_action_status", "201")]), 201);
        assert_eq!(status(&[("success_action_status", "404")]), 204);
        let r = success(
            &form(&[("success_action_redirect", "http://x/y")]),
            "b",
            "k k",
            &stored,
            "http://h",
        );
        assert_eq!(r.status(), 303);
        assert_eq!(
            r.headers()[http::header::LOCATION],
            "http://x/y?bucket=b&key=k%20k&etag=%22e%22"
        );
        let r = success(&form(&[("redirect", "ftp://x")]), "b", "k", &stored, "http://h");
        assert_eq!(r.status(), 204, "not a URL: ignored");
        let r = success(
            &form(&[("success_action_status", "201")]),
            "b",
            "a&b",
            &stored,
            "http://h",
        );
        let body = std::str::from_utf8(r.body()).unwrap();
        assert!(body.contains("<Key>a&amp;b</Key>") && body.contains("<ETag>&quot;e&quot;</ETag>"));
        assert!(body.contains("<Location>http://h/b/a%26b</Location>"));
    }

    /// Streams `data` in frames of `frame` bytes.
    fn body(data: Vec<u8>, frame: usize) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + Unpin + 'static {
        let frames: Vec<Result<Bytes, std::io::Error>> =
            data.chunks(frame).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        futures::stream::iter(frames)
    }

    fn multipart(fields: &[(&str, &str)], file: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in fields {
            out.extend_from_slice(
                format!("--XB\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").as_bytes(),
            );
        }
        out.extend_from_slice(b"--XB\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f.txt\"\r\n\r\n");
        out.extend_from_slice(file);
        out.extend_from_slice(b"\r\n--XB--\r\n");
        out
    }

    async fn fields_of(data: Vec<u8>, frame: usize) -> S3Result<(Fields, String, Vec<u8>)> {
        let gate = Arc::new(Gate::new((POST_MAX_FIELDS_BYTES + POST_FORM_FRAMING) as u64));
        let budgeted = Budgeted {
            inner: body(data, frame),
            gate: Arc::clone(&gate),
            read: 0,
            paused: false,
        };
        let mut form = multer::Multipart::new(budgeted, "XB");
        let mut fields = Fields::new();
        let mut total = 0;
        loop {
            let Some(mut field) = next_field(&mut form, &gate).await? else {
                return Err(s3_error!(IncorrectNumberOfFilesInPostRequest));
            };
            let name = field.name().unwrap_or_default().to_ascii_lowercase();
            if name == "file" {
                let filename = field.file_name().unwrap_or_default().to_string();
                gate.open();
                let mut file = Vec::new();
                while let Some(c) = field.chunk().await.map_err(body_failed)? {
                    file.extend_from_slice(&c);
                }
                return Ok((fields, filename, file));
            }
            let v = field_text(&mut field, &gate, &mut total).await?;
            fields.insert(name, v);
        }
    }

    #[tokio::test]
    async fn forms_parse_in_any_framing() {
        let file: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        let data = multipart(&[("Key", "a/${filename}"), ("policy", "cG9s")], &file);
        for frame in [1, 7, 100, 4096, data.len()] {
            let (fields, filename, got) = fields_of(data.clone(), frame).await.unwrap();
            assert_eq!(fields.get("key").map(String::as_str), Some("a/${filename}"));
            assert_eq!(filename, "f.txt");
            assert_eq!(got, file, "frame {frame}");
        }
    }

    #[tokio::test]
    async fn fields_before_the_file_are_capped() {
        let big = "x".repeat(POST_MAX_FIELD + 1);
        let data = multipart(&[("policy", &big)], b"data");
        let e = fields_of(data, 1000).await.unwrap_err();
        assert_eq!(e.code().as_str(), "MaxPostPreDataLengthExceededError");
        // Many fields, each small, together too much: refused by the budget, not buffered.
        let v = "y".repeat(POST_MAX_FIELD - 100);
        let names: Vec<String> = (0..5).map(|i| format!("x-ignore-{i}")).collect();
        let pairs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), v.as_str())).collect();
        let e = fields_of(multipart(&pairs, b"data"), 4096).await.unwrap_err();
        assert_eq!(e.code().as_str(), "MaxPostPreDataLengthExceededError");
        // A part header that never ends is refused once it passes the budget.
        let mut endless = b"--XB\r\nContent-Disposition: form-data; name=\"a\"\r\nX-Pad: ".to_vec();
        endless.extend(std::iter::repeat_n(b'p', 1 << 20));
        let e = fields_of(endless, 8192).await.unwrap_err();
        assert_eq!(e.code().as_str(), "MaxPostPreDataLengthExceededError");
    }

    #[tokio::test]
    async fn malformed_forms_are_refused() {
        let e = fields_of(b"no boundary here".to_vec(), 5).await.unwrap_err();
        assert_eq!(e.code().as_str(), "MalformedPOSTRequest");
        let e = fields_of(
            b"--XB\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nk\r\n--XB--\r\n".to_vec(),
            5,
        )
        .await
        .unwrap_err();
        assert_eq!(e.code().as_str(), "IncorrectNumberOfFilesInPostRequest");
        let truncated = multipart(&[("key", "k")], b"data");
        let e = fields_of(truncated[..truncated.len() - 12].to_vec(), 5)
            .await
            .unwrap_err();
        assert_eq!(e.code().as_str(), "MalformedPOSTRequest");
    }
}
