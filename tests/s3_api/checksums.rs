//! Integrity values of the plaintext: `x-amz-checksum-*` (SDK trailers and explicit headers) are
//! verified and returned; a wrong `Content-MD5` or checksum stores nothing.

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode};
use md5::{Digest as _, Md5};
use s3s::crypto::Checksum as _;
use sha2::Sha256;

use crate::common::{
    ACCESS_KEY, Checksums, ErrorExt, Harness, MARKER, SECRET_KEY, SEGMENT, StoreKind, assert_s3_error, b64,
    data_with_marker, etag_of,
};
use crate::listing::list_all;
use crate::{BUCKET, harness};

per_store!(checksums_are_verified_and_returned, wrong_digests_store_nothing);

pub(crate) fn crc32(data: &[u8]) -> String {
    b64(s3s::crypto::Crc32::checksum(data).as_ref())
}
fn crc32c(data: &[u8]) -> String {
    b64(s3s::crypto::Crc32c::checksum(data).as_ref())
}
fn crc64nvme(data: &[u8]) -> String {
    b64(s3s::crypto::Crc64Nvme::checksum(data).as_ref())
}
fn sha1(data: &[u8]) -> String {
    b64(s3s::crypto::Sha1::checksum(data).as_ref())
}
fn sha256(data: &[u8]) -> String {
    b64(&Sha256::digest(data))
}

/// The `x-amz-checksum-*` values of a HEAD or GET, by algorithm name.
macro_rules! checksums_of {
    ($out:expr) => {{
        let out = &$out;
        [
            ("CRC32", out.checksum_crc32()),
            ("CRC32C", out.checksum_crc32_c()),
            ("CRC64NVME", out.checksum_crc64_nvme()),
            ("SHA1", out.checksum_sha1()),
            ("SHA256", out.checksum_sha256()),
        ]
        .into_iter()
        .filter_map(|(a, v)| v.map(|v| (a, v.to_string())))
        .collect::<Vec<_>>()
    }};
}

async fn checksums_are_verified_and_returned(kind: StoreKind) {
    let h = harness(kind).await;
    let data = data_with_marker(SEGMENT + 1234);

    // Computed by the SDK: a CRC32 / SHA256 trailer on an aws-chunked body.
    for (algo, name, expected) in [
        (ChecksumAlgorithm::Crc32, "CRC32", crc32(&data)),
        (ChecksumAlgorithm::Sha256, "SHA256", sha256(&data)),
        (ChecksumAlgorithm::Crc32C, "CRC32C", crc32c(&data)),
        (ChecksumAlgorithm::Crc64Nvme, "CRC64NVME", crc64nvme(&data)),
        (ChecksumAlgorithm::Sha1, "SHA1", sha1(&data)),
    ] {
        let key = format!("ck/sdk-{name}");
        h.client
            .put_object()
            .bucket(BUCKET)
            .key(&key)
            .checksum_algorithm(algo)
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("put with {name}: {}", DisplayErrorContext(&e)));
        check_returned_checksum(&h, &key, name, &expected, &data).await;
    }

    // Sent as explicit header values, on plain bodies.
    let explicit: [(&str, String); 5] = [
        ("CRC32", crc32(&data)),
        ("CRC32C", crc32c(&data)),
        ("CRC64NVME", crc64nvme(&data)),
        ("SHA1", sha1(&data)),
        ("SHA256", sha256(&data)),
    ];
    for (name, value) in explicit {
        let key = format!("ck/explicit-{name}");
        let req = h
            .plain_client
            .put_object()
            .bucket(BUCKET)
            .key(&key)
            .body(ByteStream::from(data.clone()));
        let req = match name {
            "CRC32" => req.checksum_crc32(&value),
            "CRC32C" => req.checksum_crc32_c(&value),
            "CRC64NVME" => req.checksum_crc64_nvme(&value),
            "SHA1" => req.checksum_sha1(&value),
            _ => req.checksum_sha256(&value),
        };
        let put = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("put with explicit {name}: {}", DisplayErrorContext(&e)));
        assert_eq!(
            checksums_of!(put),
            vec![(name, value.clone())],
            "PUT answer with {name}"
        );
        check_returned_checksum(&h, &key, name, &value, &data).await;
    }

    // A correct Content-MD5 is accepted, also together with the SDK's CRC32 trailer.
    let md5 = b64(&Md5::digest(&data));
    for (label, client) in h.clients() {
        client
            .put_object()
            .bucket(BUCKET)
            .key(format!("ck/md5-{label}"))
            .content_md5(&md5)
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{label}: put with a correct Content-MD5: {}", DisplayErrorContext(&e)));
    }
    h.assert_no_plaintext(MARKER);
}

/// HEAD and GET with `ChecksumMode::Enabled` return exactly `name`=`value`; without it, none.
async fn check_returned_checksum(h: &Harness, key: &str, name: &str, value: &str, data: &[u8]) {
    let want = vec![(name, value.to_string())];
    let head = h
        .plain_client
        .head_object()
        .bucket(BUCKET)
        .key(key)
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .expect("head with checksum mode");
    assert_eq!(checksums_of!(head), want, "HEAD {key}");
    for (label, client) in h.clients() {
        let got = client
            .get_object()
            .bucket(BUCKET)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .expect("get with checksum mode");
        assert_eq!(checksums_of!(got), want, "{label} GET {key}");
        // The default client validates the body against the returned checksum here.
        assert!(
            got.body.collect().await.expect("body").to_vec() == data,
            "{label} GET {key}"
        );
    }
    let head = h
        .plain_client
        .head_object()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .expect("head");
    assert_eq!(checksums_of!(head), vec![], "HEAD {key} without checksum mode");
    // A range has no whole-object checksum (S3 answers none, and the validating default client
    // would reject the range against one).
    for (label, client) in h.clients() {
        let got = client
            .get_object()
            .bucket(BUCKET)
            .key(key)
            .range("bytes=10-66000")
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{label}: ranged GET with checksum mode: {}", e.describe()));
        assert_eq!(checksums_of!(got), vec![], "{label}: ranged GET {key}");
        assert!(
            got.body.collect().await.expect("body").to_vec()[..] == data[10..66001],
            "{label}"
        );
    }
}

async fn wrong_digests_store_nothing(kind: StoreKind) {
    let h = harness(kind).await;
    let old = data_with_marker(SEGMENT + 10);
    let new = data_with_marker(SEGMENT + 20);
    let wrong_md5 = b64(&Md5::digest(b"something else"));

    struct Case {
        name: &'static str,
        checksums: Checksums,
        apply: fn(
            aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder,
            &str,
        ) -> aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder,
    }
    let cases = [
        Case {
            name: "wrong Content-MD5, plain body",
            checksums: Checksums::WhenRequired,
            apply: |r, md5| r.content_md5(md5),
        },
        Case {
            name: "wrong Content-MD5, chunked body with a CRC32 trailer",
            checksums: Checksums::Default,
            apply: |r, md5| r.content_md5(md5),
        },
        Case {
            name: "wrong x-amz-checksum-crc32c",
            checksums: Checksums::WhenRequired,
            apply: |r, _| r.checksum_crc32_c(crc32c(b"something else")),
        },
        Case {
            name: "wrong x-amz-checksum-crc32",
            checksums: Checksums::Default,
            apply: |r, _| r.checksum_crc32(crc32(b"something else")),
        },
        Case {
            name: "wrong x-amz-checksum-sha256",
            checksums: Checksums::WhenRequired,
            apply: |r, _| r.checksum_sha256(sha256(b"something else")),
        },
    ];
    for (i, case) in cases.iter().enumerate() {
        let client = h.client_with(ACCESS_KEY, SECRET_KEY, case.checksums);
        // An existing object keeps its old content.
        let existing = format!("wrong/{i}/existing");
        h.put(BUCKET, &existing, &old).await;
        let req = client
            .put_object()
            .bucket(BUCKET)
            .key(&existing)
            .body(ByteStream::from(new.clone()));
        assert_s3_error((case.apply)(req, &wrong_md5).send().await, 400, "BadDigest", case.name);
        assert!(
            h.get(BUCKET, &existing).await == old,
            "{}: the old content was overwritten",
            case.name
        );
        let head = h
            .plain_client
            .head_object()
            .bucket(BUCKET)
            .key(&existing)
            .send()
            .await
            .expect("head");
        assert_eq!(head.e_tag(), Some(etag_of(&old).as_str()), "{}", case.name);

        // A new key is not created.
        let fresh = format!("wrong/{i}/fresh");
        let req = client
            .put_object()
            .bucket(BUCKET)
            .key(&fresh)
            .body(ByteStream::from(new.clone()));
        assert_s3_error((case.apply)(req, &wrong_md5).send().await, 400, "BadDigest", case.name);
        assert_s3_error(
            h.plain_client.head_object().bucket(BUCKET).key(&fresh).send().await,
            404,
            "",
            &format!("{}: object created anyway", case.name),
        );
    }

    // A Content-MD5 that is not a base64 MD5 at all.
    assert_s3_error(
        h.plain_client
            .put_object()
            .bucket(BUCKET)
            .key("wrong/malformed")
            .content_md5("not-an-md5")
            .body(ByteStream::from(new.clone()))
            .send()
            .await,
        400,
        "InvalidDigest",
        "malformed Content-MD5",
    );
    let listed = list_all(&h.client, Some("wrong/"), None, None).await;
    let keys: Vec<&str> = listed.iter().map(|(k, ..)| k.as_str()).collect();
    assert_eq!(keys.len(), cases.len(), "only the existing objects remain: {keys:?}");
    assert!(keys.iter().all(|k| k.ends_with("/existing")), "{keys:?}");
    h.assert_no_plaintext(MARKER);
}
