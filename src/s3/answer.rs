//! What the proxy answers: an object's headers from its record, preconditions on plaintext
//! ETags and times, checksums as S3 encodes them, and the encryption S3 answers report.

use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use s3s::dto::{Checksum, ChecksumMode, ETag, ETagCondition, ServerSideEncryption, Timestamp, TimestampFormat};
use s3s::{S3Result, s3_error};

use crate::object::{ChecksumAlgorithm, Digests, Opened};

/// The client-visible ETag of an opened object.
pub(super) fn client_etag(opened: &Opened) -> ETag {
    ETag::Strong(opened.etag())
}

/// Builds a GET or HEAD answer: the object's headers from its record and trailer, then the
/// fields given in braces.
macro_rules! read_output {
    ($ty:ident, $opened:expr, $part_number:expr, $checksum:expr, { $($field:ident: $value:expr),* $(,)? }) => {{
        let record = &$opened.record;
        let checksum: s3s::dto::Checksum = $checksum;
        $ty {
            accept_ranges: Some("bytes".into()),
            e_tag: Some(super::answer::client_etag(&$opened)),
            server_side_encryption: super::answer::sse($opened.is_sse_c()),
            last_modified: $opened.last_modified.map(s3s::dto::Timestamp::from),
            metadata: Some(record.user.clone().into_iter().collect()),
            content_type: record.content_type.clone(),
            content_encoding: record.content_encoding.clone(),
            content_disposition: record.content_disposition.clone(),
            content_language: record.content_language.clone(),
            cache_control: record.cache_control.clone(),
            expires: record.expires.as_deref().and_then(super::answer::parse_http_date),
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

pub(super) use read_output;

/// Evaluates GET/HEAD preconditions in the order RFC 9110 §13.2.2 and S3 use.
pub(super) fn check_conditions(
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
        Some(c) if matches(c) => return Err(not_modified(opened)),
        Some(_) => {}
        None => {
            if let (Some(t), Some(m)) = (if_modified_since, modified)
                && m <= secs(t)
            {
                return Err(not_modified(opened));
            }
        }
    }
    Ok(())
}

/// 304 Not Modified, with the `ETag` and `Last-Modified` of the object, as S3 (and RFC 9110
/// §15.4.5) send them: caches and sync tools revalidate with these.
fn not_modified(opened: &Opened) -> s3s::S3Error {
    let mut err = s3_error!(NotModified);
    let mut headers = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_str(&format!("\"{}\"", opened.etag())) {
        headers.insert(http::header::ETAG, v);
    }
    if let Some(t) = opened.last_modified.map(Timestamp::from) {
        let mut out = Vec::new();
        if t.format(TimestampFormat::HttpDate, &mut out).is_ok()
            && let Ok(v) = http::HeaderValue::from_bytes(&out)
        {
            headers.insert(http::header::LAST_MODIFIED, v);
        }
    }
    err.set_headers(headers);
    err
}

/// What every stored object is encrypted with, as S3 answers say it (`x-amz-server-side-encryption`):
/// AES-256, by the proxy, before it reaches the store. Absent for an SSE-C object, which S3
/// answers with the customer-key headers instead.
pub(super) fn sse(sse_c: bool) -> Option<ServerSideEncryption> {
    (!sse_c).then(|| ServerSideEncryption::from_static(ServerSideEncryption::AES256))
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

pub(super) fn content_range(r: &std::ops::Range<u64>, size: u64) -> String {
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
pub(super) fn response_checksum(opened: &Opened, mode: Option<&ChecksumMode>, whole: bool) -> Checksum {
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

pub(super) fn parse_http_date(s: &str) -> Option<Timestamp> {
    Timestamp::parse(TimestampFormat::HttpDate, s).ok()
}

/// The checksum fields of an upload answer.
pub(super) fn digests_checksum(digests: &Digests) -> Checksum {
    digests
        .checksum
        .as_ref()
        .map(|(algo, digest)| checksum_dto(*algo, digest))
        .unwrap_or_default()
}
