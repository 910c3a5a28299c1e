//! What a client's request asks for, read once from its S3 input: the declared body length and
//! digests, the record of a new object, refusals of what the proxy cannot honour, copy sources,
//! ranges and part numbers. Pure translation: no store access.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use s3s::dto::{CopySource, ETag, ETagCondition, ObjectCannedACL, Range, ServerSideEncryption};
use s3s::{S3Result, s3_error};

use crate::limits::{MAX_PART_NUMBER, MAX_USER_METADATA};
use crate::object::checksum::{checksum_header, decode_digest};
use crate::object::{ChecksumAlgorithm, Expectations, Trailers, WriteCondition};

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
        super::request::ClientDigests {
            content_md5: $input.content_md5.as_ref(),
            checksums: [
                (crate::object::ChecksumAlgorithm::Crc32, $input.checksum_crc32.as_ref()),
                (
                    crate::object::ChecksumAlgorithm::Crc32c,
                    $input.checksum_crc32c.as_ref(),
                ),
                (
                    crate::object::ChecksumAlgorithm::Crc64Nvme,
                    $input.checksum_crc64nvme.as_ref(),
                ),
                (crate::object::ChecksumAlgorithm::Sha1, $input.checksum_sha1.as_ref()),
                (
                    crate::object::ChecksumAlgorithm::Sha256,
                    $input.checksum_sha256.as_ref(),
                ),
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
        trailing.clone().map(trailers)
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

/// The object layer's view of a body's trailing headers: a lookup by name, once the body ended.
fn trailers(headers: s3s::TrailingHeaders) -> Trailers {
    Trailers(Arc::new(move |name: &str| {
        headers
            .read(|h| h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned))
            .flatten()
    }))
}

/// The record of a new object from the headers of its PutObject or CreateMultipartUpload
/// (same field names); `size` and the write time are set by the object layer.
macro_rules! record_of {
    ($input:expr) => {
        crate::object::ObjectRecord {
            size: 0,
            content_type: $input.content_type.clone(),
            content_encoding: super::request::client_content_encoding($input.content_encoding.as_deref()),
            content_disposition: $input.content_disposition.clone(),
            content_language: $input.content_language.clone(),
            cache_control: $input.cache_control.clone(),
            expires: $input.expires.as_ref().map(super::answer::fmt_http_date),
            user: $input
                .metadata
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k.to_lowercase(), v))
                .collect(),
            written_ms: None,
            sse_c: None,
        }
    };
}
pub(super) use record_of;

/// The client's `Content-Encoding` without the `aws-chunked` transfer coding S3 strips.
pub(super) fn client_content_encoding(value: Option<&str>) -> Option<String> {
    let kept: Vec<&str> = value?
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("aws-chunked"))
        .collect();
    (!kept.is_empty()).then(|| kept.join(","))
}

/// What a write asks for that the proxy may have to refuse (SSE-C is honoured: `super::sse`).
pub(super) struct UnsafeAsks<'a> {
    pub kms: bool,
    pub sse: Option<&'a ServerSideEncryption>,
    pub tagging: bool,
    pub object_lock: bool,
    pub acl: Option<&'a ObjectCannedACL>,
}

/// The [`UnsafeAsks`] of a PutObject, CreateMultipartUpload or CopyObject input.
macro_rules! unsafe_asks {
    ($input:expr) => {
        super::request::UnsafeAsks {
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
pub(super) fn refuse_unsafe(asks: UnsafeAsks<'_>, refuse_sse_kms: bool) -> S3Result<()> {
    check_sse(asks.sse, asks.kms, refuse_sse_kms)?;
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

/// Refuses user metadata over S3's limit: the bytes of every name and value, counted as AWS
/// does (UTF-8, names without the `x-amz-meta-` prefix). The proxy's own envelope metadata is not
/// the client's to count: it moves into the object's header when it would not fit.
pub(super) fn check_user_metadata(metadata: Option<&s3s::dto::Metadata>) -> S3Result<()> {
    let bytes: usize = metadata.into_iter().flatten().map(|(k, v)| k.len() + v.len()).sum();
    if bytes > MAX_USER_METADATA {
        return Err(s3_error!(
            MetadataTooLarge,
            "Your metadata headers exceed the maximum allowed metadata size."
        ));
    }
    Ok(())
}

/// What a write may ask for with `x-amz-server-side-encryption`: every object is encrypted by
/// the proxy (AES-256-GCM, keys held at home) whatever the request says, so `AES256` and
/// `aws:kms` (with or without a key id and context) are both honoured by that, and answered
/// truthfully as `AES256` — the client's KMS key never touches the object. `refuse_sse_kms` makes
/// a request for SSE-KMS a `NotImplemented` instead, for users who want to be told. A KMS key id
/// without `aws:kms`, or an unknown algorithm, is S3's 400.
fn check_sse(sse: Option<&ServerSideEncryption>, kms_key: bool, refuse_sse_kms: bool) -> S3Result<()> {
    let kms = match sse.map(ServerSideEncryption::as_str) {
        None => false,
        Some(ServerSideEncryption::AES256) => false,
        Some(ServerSideEncryption::AWS_KMS | ServerSideEncryption::AWS_KMS_DSSE) => true,
        Some(_) => {
            return Err(s3_error!(
                InvalidArgument,
                "The encryption method specified is not supported"
            ));
        }
    };
    if kms_key && !kms {
        return Err(s3_error!(
            InvalidArgument,
            "Server Side Encryption with KMS managed key requires HTTP header x-amz-server-side-encryption : aws:kms"
        ));
    }
    if kms && refuse_sse_kms {
        return Err(s3_error!(
            NotImplemented,
            "SSE-KMS is refused by this proxy's configuration; escrow-proxy encrypts every object itself."
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

/// The condition of a write (PutObject, CompleteMultipartUpload, CopyObject's destination) from
/// its `If-Match` / `If-None-Match`: `If-None-Match` takes only `*` on a write (anything else is
/// S3's 501), and the two are not combined.
pub(super) fn write_condition(
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
) -> S3Result<Option<WriteCondition>> {
    match (if_match, if_none_match) {
        (None, None) => Ok(None),
        (None, Some(ETagCondition::Any)) => Ok(Some(WriteCondition::Absent)),
        (None, Some(ETagCondition::ETag(_))) => Err(s3_error!(
            NotImplemented,
            "A header you provided implies functionality that is not implemented: If-None-Match on a write takes only *."
        )),
        (Some(ETagCondition::Any), None) => Ok(Some(WriteCondition::Exists)),
        (Some(ETagCondition::ETag(etag)), None) => Ok(Some(match etag {
            ETag::Strong(value) => WriteCondition::Matches(value.clone()),
            // A weak validator never matches in a strong comparison.
            ETag::Weak(value) => WriteCondition::Matches(format!("W/{value}")),
        })),
        (Some(_), Some(_)) => Err(s3_error!(
            NotImplemented,
            "A header you provided implies functionality that is not implemented: If-Match and If-None-Match together on a write."
        )),
    }
}

/// A write condition header (`If-Match` / `If-None-Match`) that s3s does not parse for this
/// operation (CopyObject's destination), read from the request head; a malformed one is S3's 400.
pub(super) fn destination_condition(
    headers: &http::HeaderMap,
    name: &http::header::HeaderName,
) -> S3Result<Option<ETagCondition>> {
    headers
        .get(name)
        .map(|value| {
            ETagCondition::parse_http_header(value.as_bytes())
                .map_err(|_| s3_error!(InvalidArgument, "Invalid {} header value.", name.as_str()))
        })
        .transpose()
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
            Ok((bucket.to_string(), key.to_string()))
        }
        _ => Err(s3_error!(
            NotImplemented,
            "Access point and Outposts copy sources are not supported."
        )),
    }
}

/// An S3 `Range` as plaintext bytes `start..end` of an object of `size` bytes.
pub(super) fn resolve_range(range: &Range, size: u64) -> S3Result<std::ops::Range<u64>> {
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
pub(super) fn invalid_part_number() -> s3s::S3Error {
    let mut err = s3s::S3Error::with_message(
        s3s::S3ErrorCode::Custom("InvalidPartNumber".into()),
        "The requested partnumber is not satisfiable",
    );
    // 400, as S3 answers it (and as S3 conformance suites expect), not 416.
    err.set_status_code(http::StatusCode::BAD_REQUEST);
    err
}

/// A part number S3 accepts.
pub(super) fn part_number(n: i32) -> S3Result<u32> {
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

/// `x-amz-copy-source-range: bytes=first-last` as a plaintext range of a source of `size` bytes.
pub(super) fn parse_copy_range(value: &str, size: u64) -> S3Result<std::ops::Range<u64>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn code(e: s3s::S3Error) -> String {
        e.code().as_str().to_string()
    }

    #[test]
    fn ranges_resolve_as_s3_does() {
        let int = |first, last| Range::Int { first, last };
        assert_eq!(resolve_range(&int(0, Some(9)), 100).unwrap(), 0..10);
        assert_eq!(resolve_range(&int(90, None), 100).unwrap(), 90..100);
        // An end past the object is clamped; a suffix longer than it is all of it.
        assert_eq!(resolve_range(&int(50, Some(1000)), 100).unwrap(), 50..100);
        assert_eq!(resolve_range(&Range::Suffix { length: 10 }, 100).unwrap(), 90..100);
        assert_eq!(resolve_range(&Range::Suffix { length: 1000 }, 100).unwrap(), 0..100);
        assert_eq!(resolve_range(&int(0, Some(u64::MAX)), 100).unwrap(), 0..100);
        // Must-fail twins: a start at or past the end, an empty suffix, any range of nothing.
        for bad in [int(100, None), int(100, Some(200)), Range::Suffix { length: 0 }] {
            assert_eq!(code(resolve_range(&bad, 100).unwrap_err()), "InvalidRange");
        }
        assert_eq!(code(resolve_range(&int(0, None), 0).unwrap_err()), "InvalidRange");
        assert_eq!(
            code(resolve_range(&Range::Suffix { length: 5 }, 0).unwrap_err()),
            "InvalidRange"
        );
    }

    #[test]
    fn copy_source_ranges_parse_as_s3_does() {
        assert_eq!(parse_copy_range("bytes=0-9", 100).unwrap(), 0..10);
        assert_eq!(parse_copy_range(" bytes=99-99 ", 100).unwrap(), 99..100);
        for bad in [
            "0-9",
            "bytes=9-0",
            "bytes=-5",
            "bytes=5-",
            "bytes=a-b",
            "bytes=0-1,3-4",
            "",
        ] {
            assert_eq!(
                code(parse_copy_range(bad, 100).unwrap_err()),
                "InvalidArgument",
                "{bad}"
            );
        }
        assert_eq!(code(parse_copy_range("bytes=0-100", 100).unwrap_err()), "InvalidRange");
        assert_eq!(code(parse_copy_range("bytes=0-0", 0).unwrap_err()), "InvalidRange");
    }

    #[test]
    fn user_metadata_is_counted_as_s3_does() {
        let meta = |n: usize| -> s3s::dto::Metadata { [("k".to_string(), "v".repeat(n))].into() };
        assert!(check_user_metadata(None).is_ok());
        assert!(check_user_metadata(Some(&meta(MAX_USER_METADATA - 1))).is_ok());
        assert_eq!(
            code(check_user_metadata(Some(&meta(MAX_USER_METADATA))).unwrap_err()),
            "MetadataTooLarge"
        );
        // Multi-byte characters count as their UTF-8 bytes.
        let wide: s3s::dto::Metadata = [("k".to_string(), "é".repeat(1024))].into();
        assert_eq!(code(check_user_metadata(Some(&wide)).unwrap_err()), "MetadataTooLarge");
    }

    #[test]
    fn sse_requests_are_honoured_or_refused_as_configured() {
        let sse = |v: &str| ServerSideEncryption::from(v.to_string());
        for v in ["AES256", "aws:kms", "aws:kms:dsse"] {
            assert!(check_sse(Some(&sse(v)), v != "AES256", false).is_ok(), "{v}");
        }
        assert!(check_sse(None, false, true).is_ok());
        assert!(
            check_sse(Some(&sse("AES256")), false, true).is_ok(),
            "AES256 is what it is"
        );
        assert_eq!(
            code(check_sse(Some(&sse("aws:kms")), true, true).unwrap_err()),
            "NotImplemented"
        );
        // Must-fail twins: an unknown algorithm; a KMS key id without aws:kms.
        assert_eq!(
            code(check_sse(Some(&sse("rot13")), false, false).unwrap_err()),
            "InvalidArgument"
        );
        assert_eq!(
            code(check_sse(Some(&sse("AES256")), true, false).unwrap_err()),
            "InvalidArgument"
        );
        assert_eq!(code(check_sse(None, true, false).unwrap_err()), "InvalidArgument");
    }

    #[test]
    fn part_numbers_are_1_to_10000() {
        assert_eq!(part_number(1).unwrap(), 1);
        assert_eq!(part_number(10_000).unwrap(), 10_000);
        for bad in [0, -1, 10_001, i32::MIN] {
            assert_eq!(code(part_number(bad).unwrap_err()), "InvalidArgument", "{bad}");
        }
    }

    proptest::proptest! {
        /// Fuzz: any Range a client can send resolves to a non-empty range within the object,
        /// or to InvalidRange; never a panic.
        #[test]
        fn any_range_resolves_within_the_object_or_fails(
            first in proptest::prelude::any::<u64>(),
            last in proptest::option::of(proptest::prelude::any::<u64>()),
            suffix in proptest::prelude::any::<u64>(),
            size in 0u64..(1 << 40),
        ) {
            for range in [Range::Int { first, last }, Range::Suffix { length: suffix }] {
                if let Ok(r) = resolve_range(&range, size) {
                    proptest::prop_assert!(r.start < r.end && r.end <= size);
                }
            }
        }

        /// Fuzz: any `x-amz-copy-source-range` text parses to a range within the source, or to
        /// an S3 error; never a panic.
        #[test]
        fn any_copy_source_range_parses_within_the_source_or_fails(value in ".{0,40}", size in 0u64..(1 << 40)) {
            if let Ok(r) = parse_copy_range(&value, size) {
                proptest::prop_assert!(r.start < r.end && r.end <= size);
            }
            let shaped = format!("bytes={value}");
            if let Ok(r) = parse_copy_range(&shaped, size) {
                proptest::prop_assert!(r.start < r.end && r.end <= size);
            }
        }
    }

    #[test]
    fn content_encoding_drops_only_aws_chunked() {
        assert_eq!(client_content_encoding(Some("aws-chunked")), None);
        assert_eq!(
            client_content_encoding(Some("aws-chunked, gzip")).as_deref(),
            Some("gzip")
        );
        assert_eq!(client_content_encoding(Some("gzip,br")).as_deref(), Some("gzip,br"));
        assert_eq!(client_content_encoding(None), None);
    }

    #[test]
    fn declared_length_prefers_the_decoded_length() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(declared_length(&headers, Some(5)).unwrap(), 5);
        assert_eq!(
            code(declared_length(&headers, None).unwrap_err()),
            "MissingContentLength"
        );
        assert_eq!(
            code(declared_length(&headers, Some(-1)).unwrap_err()),
            "MissingContentLength"
        );
        headers.insert("x-amz-decoded-content-length", "7".parse().unwrap());
        assert_eq!(declared_length(&headers, Some(100)).unwrap(), 7);
        headers.insert("x-amz-decoded-content-length", "x".parse().unwrap());
        assert_eq!(
            code(declared_length(&headers, Some(100)).unwrap_err()),
            "InvalidArgument"
        );
    }
}
