//! S3 behaviour through the real `aws-sdk-s3` client over TLS, for both store kinds: the proxy's
//! own fs store and a real S3 server (s3s-fs). Each case is written once and runs per store
//! (`fs::case`, `s3s_fs::case`), each in a fresh harness, and ends by scanning the store for the
//! plaintext marker.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use aws_sdk_s3::Client;
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::{ByteStream, DateTime, DateTimeFormat};
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, CsvInput, CsvOutput, Delete, EncodingType, ExpressionType, InputSerialization,
    ObjectIdentifier, OutputSerialization, Tag, Tagging,
};
use md5::{Digest as _, Md5};
use s3s::crypto::Checksum as _;
use sha2::Sha256;

use common::{
    ACCESS_KEY, BigObject, Checksums, ErrorExt, GetOutcome, Harness, MARKER, S3_USER_METADATA_LIMIT, SECRET_KEY,
    SEGMENT, StoreKind, assert_s3_error, b64, data_with_marker, etag_of, try_get, url_decode,
};

const BUCKET: &str = "escrow-api";

/// Runs each listed `async fn case(StoreKind)` once per store kind.
macro_rules! per_store {
    ($($(#[$attr:meta])* $name:ident),* $(,)?) => {
        mod fs {
            $(
                $(#[$attr])*
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::StoreKind::Fs).await;
                }
            )*
        }
        mod s3s_fs {
            $(
                $(#[$attr])*
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::StoreKind::S3sFs).await;
                }
            )*
        }
    };
}

per_store!(
    buckets,
    round_trips,
    standard_headers_and_user_metadata,
    #[ignore = "proxy bug: the sealed record (user metadata + standard headers) is stored as x-amz-meta-escrow-meta, \
                so 1960 B of client user metadata become 2997 B of stored user metadata and a 1827-byte \
                Content-Disposition 2685 B; S3 caps user metadata at 2 KB, so an AWS-like store refuses the PUT \
                and the client gets 502 InternalError (DESIGN §3: move what does not fit into the object's header)"]
    user_metadata_near_the_limit_fits_the_store,
    ranges,
    part_numbers,
    conditionals,
    checksums_are_verified_and_returned,
    wrong_digests_store_nothing,
    listing_v2,
    listing_v1,
    listing_url_encoding,
    deletes,
    auth_failures,
    presigned_urls,
    unsupported_operations,
);

/// A harness with [`BUCKET`] created.
async fn harness(kind: StoreKind) -> Harness {
    let h = Harness::new(kind).await;
    h.create_bucket(BUCKET).await;
    h
}

// === buckets ===

async fn buckets(kind: StoreKind) {
    let h = harness(kind).await;
    let c = &h.client;

    c.create_bucket().bucket("alpha").send().await.expect("create alpha");
    c.head_bucket().bucket("alpha").send().await.expect("head alpha");
    let names: Vec<String> = c
        .list_buckets()
        .send()
        .await
        .expect("list buckets")
        .buckets()
        .iter()
        .filter_map(|b| b.name().map(str::to_string))
        .collect();
    assert!(
        names.contains(&"alpha".to_string()) && names.contains(&BUCKET.to_string()),
        "{names:?}"
    );

    let e = c
        .create_bucket()
        .bucket("alpha")
        .send()
        .await
        .expect_err("create alpha twice");
    assert_eq!(e.http_status(), 409, "{}", e.describe());
    assert!(
        ["BucketAlreadyOwnedByYou", "BucketAlreadyExists"].contains(&e.s3_code().as_str()),
        "{}",
        e.describe()
    );

    // A missing bucket, through every kind of request.
    assert_s3_error(
        c.head_bucket().bucket("missing-bucket").send().await,
        404,
        "",
        "head missing bucket",
    );
    assert_s3_error(
        c.list_objects_v2().bucket("missing-bucket").send().await,
        404,
        "NoSuchBucket",
        "list missing bucket",
    );
    assert_s3_error(
        c.get_object().bucket("missing-bucket").key("k").send().await,
        404,
        "NoSuchBucket",
        "get from missing bucket",
    );
    assert_s3_error(
        c.put_object()
            .bucket("missing-bucket")
            .key("k")
            .body(ByteStream::from(data_with_marker(100)))
            .send()
            .await,
        404,
        "NoSuchBucket",
        "put into missing bucket",
    );
    assert_s3_error(
        c.delete_bucket().bucket("missing-bucket").send().await,
        404,
        "NoSuchBucket",
        "delete missing bucket",
    );

    // A missing key in an existing bucket.
    assert_s3_error(
        c.get_object().bucket("alpha").key("nothing-here").send().await,
        404,
        "NoSuchKey",
        "get missing key",
    );
    assert_s3_error(
        c.head_object().bucket("alpha").key("nothing-here").send().await,
        404,
        "",
        "head missing key",
    );

    // Not empty, then empty.
    let data = data_with_marker(1000);
    h.put("alpha", "inside", &data).await;
    assert_s3_error(
        c.delete_bucket().bucket("alpha").send().await,
        409,
        "BucketNotEmpty",
        "delete non-empty bucket",
    );
    assert!(
        h.get("alpha", "inside").await == data,
        "object survives a refused bucket delete"
    );
    c.delete_object()
        .bucket("alpha")
        .key("inside")
        .send()
        .await
        .expect("delete object");
    c.delete_bucket()
        .bucket("alpha")
        .send()
        .await
        .expect("delete empty bucket");
    assert_s3_error(
        c.head_bucket().bucket("alpha").send().await,
        404,
        "",
        "head deleted bucket",
    );
    let names: Vec<String> = c
        .list_buckets()
        .send()
        .await
        .expect("list buckets")
        .buckets()
        .iter()
        .filter_map(|b| b.name().map(str::to_string))
        .collect();
    assert!(!names.contains(&"alpha".to_string()), "{names:?}");

    h.put(BUCKET, "keep", &data).await;
    h.assert_no_plaintext(MARKER);
}

// === round trips ===

/// Sizes at and around segment boundaries.
const SIZES: &[usize] = &[0, 1, 65535, 65536, 65537, 3 * 65536, (1 << 20) + 7];

async fn round_trips(kind: StoreKind) {
    let h = harness(kind).await;
    let mut expected = BTreeMap::new();
    for (label, client) in h.clients() {
        for &size in SIZES {
            let key = format!("rt/{label}/{size}");
            let data = data_with_marker(size);
            let etag = etag_of(&data);
            let put = client
                .put_object()
                .bucket(BUCKET)
                .key(&key)
                .body(ByteStream::from(data.clone()))
                .send()
                .await
                .unwrap_or_else(|e| panic!("put {key}: {}", DisplayErrorContext(&e)));
            assert_eq!(put.e_tag(), Some(etag.as_str()), "PUT ETag of {key}");
            // The proxy answers the checksum it verified: the SDK's CRC32 trailer on the chunked
            // path, nothing on the plain one. (This also proves which path each client took.)
            let want_crc = (label == "chunked+crc32").then(|| crc32(&data));
            assert_eq!(
                put.checksum_crc32().map(String::from),
                want_crc,
                "PUT checksum of {key}"
            );

            let head = client
                .head_object()
                .bucket(BUCKET)
                .key(&key)
                .send()
                .await
                .unwrap_or_else(|e| panic!("head {key}: {}", DisplayErrorContext(&e)));
            assert_eq!(head.content_length(), Some(size as i64), "HEAD length of {key}");
            assert_eq!(head.e_tag(), Some(etag.as_str()), "HEAD ETag of {key}");
            assert_eq!(
                head.content_encoding(),
                None,
                "HEAD of {key}: aws-chunked is not the object's"
            );

            let got = client
                .get_object()
                .bucket(BUCKET)
                .key(&key)
                .send()
                .await
                .unwrap_or_else(|e| panic!("get {key}: {}", DisplayErrorContext(&e)));
            assert_eq!(got.content_length(), Some(size as i64), "GET length of {key}");
            assert_eq!(got.e_tag(), Some(etag.as_str()), "GET ETag of {key}");
            let body = got.body.collect().await.expect("read body").to_vec();
            assert!(
                body == data,
                "GET body of {key} differs ({} bytes vs {size})",
                body.len()
            );
            expected.insert(key, (size, etag));
        }
    }

    let mut h = h;
    // Listed by the proxy that wrote them, then by a fresh one that has to read every trailer.
    for proxy in ["writer", "restarted"] {
        if proxy == "restarted" {
            h.restart_proxy().await;
        }
        let listed = list_all(&h.client, Some("rt/"), None, Some(5)).await;
        assert_eq!(listed.len(), expected.len(), "{proxy}: {listed:?}");
        for (key, size, etag) in listed {
            let (want_size, want_etag) = &expected[&key];
            assert_eq!(size, *want_size as i64, "{proxy}: listed size of {key}");
            assert_eq!(
                etag.as_deref(),
                Some(want_etag.as_str()),
                "{proxy}: listed ETag of {key}"
            );
        }
    }
    let key = format!("rt/plain/{}", (1 << 20) + 7);
    let head = h
        .client
        .head_object()
        .bucket(BUCKET)
        .key(&key)
        .send()
        .await
        .expect("head after restart");
    assert_eq!(head.content_length(), Some((1 << 20) + 7));
    assert_eq!(head.e_tag(), Some(expected[&key].1.as_str()));
    h.assert_no_plaintext(MARKER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3s_fs_large_object_streams() {
    const LEN: u64 = 100 << 20;
    let h = harness(StoreKind::S3sFs).await;
    let big = BigObject::new(LEN);
    let (sha, md5) = big.digests();
    let key = "large/100mib";

    // Default client: an aws-chunked body with a CRC32 trailer, streamed from the generator.
    let put = h
        .client
        .put_object()
        .bucket(BUCKET)
        .key(key)
        .content_length(LEN as i64)
        .body(big.byte_stream())
        .send()
        .await
        .unwrap_or_else(|e| panic!("put 100 MiB: {}", DisplayErrorContext(&e)));
    assert_eq!(put.e_tag(), Some(format!("\"{md5}\"").as_str()));

    let head = h
        .client
        .head_object()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .expect("head");
    assert_eq!(head.content_length(), Some(LEN as i64));
    assert_eq!(head.e_tag(), Some(format!("\"{md5}\"").as_str()));

    for (label, client) in h.clients() {
        let got = client.get_object().bucket(BUCKET).key(key).send().await.expect("get");
        assert_eq!(got.content_length(), Some(LEN as i64), "{label}");
        assert_eq!(got.e_tag(), Some(format!("\"{md5}\"").as_str()), "{label}");
        let mut body = got.body;
        let mut hasher = Sha256::new();
        let mut total = 0u64;
        while let Some(chunk) = body.try_next().await.expect("read 100 MiB body") {
            total += chunk.len() as u64;
            hasher.update(&chunk);
        }
        assert_eq!(total, LEN, "{label}");
        assert_eq!(hex::encode(hasher.finalize()), sha, "{label}: body differs");
    }

    for (start, end) in [(LEN - 100, LEN), (50 * SEGMENT as u64 - 10, 52 * SEGMENT as u64 + 10)] {
        let range = format!("bytes={}-{}", start, end - 1);
        match try_get(&h.plain_client, BUCKET, key, Some(&range)).await {
            GetOutcome::Complete {
                body, content_range, ..
            } => {
                assert!(body == big.slice(start..end), "{range}: wrong bytes");
                assert_eq!(content_range, Some(format!("bytes {}-{}/{LEN}", start, end - 1)));
            }
            other => panic!("{range}: {other:?}"),
        }
    }

    let listed = list_all(&h.client, Some("large/"), None, None).await;
    assert_eq!(listed, vec![(key.to_string(), LEN as i64, Some(format!("\"{md5}\"")))]);
    h.assert_no_plaintext(MARKER);
}

// === headers and metadata ===

async fn standard_headers_and_user_metadata(kind: StoreKind) {
    let h = harness(kind).await;
    let expires = DateTime::from_secs(1_900_000_000);
    let expires_text = expires.fmt(DateTimeFormat::HttpDate).expect("format http date");
    let secrets = [
        "application/x-escrow-secret-type",
        "escrow-secret-filename.bin",
        "max-age=4242, escrow-secret-cache",
        "escrow-secret-meta-value",
        "secretcolour",
        "x-escrow-secret-lang",
    ];
    for (label, client) in h.clients() {
        let key = format!("hdr/{label}");
        let data = data_with_marker(1000);
        client
            .put_object()
            .bucket(BUCKET)
            .key(&key)
            .body(ByteStream::from(data.clone()))
            .content_type("application/x-escrow-secret-type")
            .content_disposition("attachment; filename=\"escrow-secret-filename.bin\"")
            .cache_control("max-age=4242, escrow-secret-cache")
            .content_encoding("gzip")
            .content_language("x-escrow-secret-lang")
            .expires(expires)
            .metadata("SecretColour", "escrow-secret-meta-value")
            .metadata("two-words", "hello world")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{label}: put with headers: {}", DisplayErrorContext(&e)));

        let want_meta: std::collections::HashMap<String, String> = [
            ("secretcolour".to_string(), "escrow-secret-meta-value".to_string()),
            ("two-words".to_string(), "hello world".to_string()),
        ]
        .into();

        let head = client
            .head_object()
            .bucket(BUCKET)
            .key(&key)
            .send()
            .await
            .expect("head");
        let got = client.get_object().bucket(BUCKET).key(&key).send().await.expect("get");
        let views = [
            (
                "HEAD",
                head.content_type(),
                head.content_disposition(),
                head.cache_control(),
                head.content_encoding(),
                head.content_language(),
                head.expires_string(),
                head.metadata(),
            ),
            (
                "GET",
                got.content_type(),
                got.content_disposition(),
                got.cache_control(),
                got.content_encoding(),
                got.content_language(),
                got.expires_string(),
                got.metadata(),
            ),
        ];
        for (op, ctype, disposition, cache, encoding, language, expires, meta) in views {
            let at = format!("{label} {op}");
            assert_eq!(ctype, Some("application/x-escrow-secret-type"), "{at} Content-Type");
            assert_eq!(
                disposition,
                Some("attachment; filename=\"escrow-secret-filename.bin\""),
                "{at} Content-Disposition"
            );
            assert_eq!(cache, Some("max-age=4242, escrow-secret-cache"), "{at} Cache-Control");
            assert_eq!(
                encoding,
                Some("gzip"),
                "{at} Content-Encoding (aws-chunked must be stripped)"
            );
            assert_eq!(language, Some("x-escrow-secret-lang"), "{at} Content-Language");
            assert_eq!(expires, Some(expires_text.as_str()), "{at} Expires");
            assert_eq!(meta, Some(&want_meta), "{at} user metadata");
        }
        let body = got.body.collect().await.expect("body").to_vec();
        assert!(body == data, "{label}: body differs");

        // response-* query parameters override what GET answers (as presigned links use them).
        let got = client
            .get_object()
            .bucket(BUCKET)
            .key(&key)
            .response_content_type("text/x-override")
            .response_content_disposition("inline; filename=\"override.txt\"")
            .response_cache_control("no-store")
            .send()
            .await
            .expect("get with response overrides");
        assert_eq!(got.content_type(), Some("text/x-override"), "{label}");
        assert_eq!(
            got.content_disposition(),
            Some("inline; filename=\"override.txt\""),
            "{label}"
        );
        assert_eq!(got.cache_control(), Some("no-store"), "{label}");
        assert!(
            got.body.collect().await.expect("body").to_vec() == data,
            "{label}: body differs"
        );
    }
    for secret in secrets {
        h.assert_store_lacks(secret.as_bytes(), "A HEADER OR METADATA VALUE");
    }
    h.assert_store_lacks(expires_text.as_bytes(), "THE EXPIRES VALUE");
    h.assert_no_plaintext(MARKER);
}

/// S3 allows 2 KB of user metadata (the bytes of every name and value) and far longer standard
/// headers; a client within those limits must not be refused because the proxy's own metadata
/// pushes the store's copy over 2 KB (DESIGN §3). The s3s-fs harness enforces AWS's limit like
/// AWS (400 MetadataTooLarge); the fs store has no limit, so the stored metadata is measured.
async fn user_metadata_near_the_limit_fits_the_store(kind: StoreKind) {
    let h = harness(kind).await;
    let entries: Vec<(String, String)> = (0..20).map(|i| (format!("a{i:02}"), "v".repeat(95))).collect();
    let client_bytes: usize = entries.iter().map(|(k, v)| k.len() + v.len()).sum();
    assert!(
        client_bytes <= S3_USER_METADATA_LIMIT,
        "the request itself must be valid on S3"
    );
    let long_disposition = format!("attachment; filename=\"{}.bin\"", "d".repeat(1800));

    let mut problems = Vec::new();
    for (key, what) in [
        ("meta-heavy", format!("{client_bytes} bytes of user metadata")),
        (
            "disposition-heavy",
            format!("a {}-byte Content-Disposition", long_disposition.len()),
        ),
    ] {
        let mut req = h
            .plain_client
            .put_object()
            .bucket(BUCKET)
            .key(key)
            .content_type("text/plain")
            .body(ByteStream::from(data_with_marker(100)));
        if key == "meta-heavy" {
            for (k, v) in &entries {
                req = req.metadata(k, v);
            }
        } else {
            req = req.content_disposition(&long_disposition);
        }
        if let Err(e) = req.send().await {
            problems.push(format!("PUT with {what} refused: {} {}", e.http_status(), e.s3_code()));
            continue;
        }
        let stored = h.stored_object(BUCKET, key);
        let stored_bytes: usize = stored.metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
        if stored_bytes > S3_USER_METADATA_LIMIT {
            problems.push(format!(
                "{what} became {stored_bytes} bytes of stored user metadata: {:?}",
                stored.metadata.iter().map(|(k, v)| (k, v.len())).collect::<Vec<_>>()
            ));
            continue;
        }
        let head = h
            .plain_client
            .head_object()
            .bucket(BUCKET)
            .key(key)
            .send()
            .await
            .expect("head");
        if key == "meta-heavy" {
            let got = head.metadata().expect("metadata");
            assert_eq!(got.len(), entries.len());
            for (k, v) in &entries {
                assert_eq!(got.get(k), Some(v), "{k}");
            }
        } else {
            assert_eq!(head.content_disposition(), Some(long_disposition.as_str()));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    h.assert_no_plaintext(MARKER);
}

// === ranges ===

async fn ranges(kind: StoreKind) {
    let h = harness(kind).await;
    let size = 3 * SEGMENT + 100;
    let data = data_with_marker(size);
    h.put(BUCKET, "ranged", &data).await;

    let cases: Vec<(String, usize, usize)> = vec![
        ("bytes=65535-65536".into(), 65535, 65537),
        ("bytes=0-0".into(), 0, 1),
        (format!("bytes={}-{}", size - 1, size - 1), size - 1, size),
        ("bytes=65536-131071".into(), 65536, 131072),
        ("bytes=1-196607".into(), 1, 196608),
        ("bytes=131000-".into(), 131000, size),
        ("bytes=0-".into(), 0, size),
        ("bytes=-100".into(), size - 100, size),
        ("bytes=-1".into(), size - 1, size),
        (format!("bytes=-{}", size + 1000), 0, size),
        (format!("bytes=100-{}", size + 5000), 100, size),
    ];
    for (label, client) in h.clients() {
        for (range, start, end) in &cases {
            match try_get(client, BUCKET, "ranged", Some(range)).await {
                GetOutcome::Complete {
                    body,
                    content_length,
                    content_range,
                    etag,
                } => {
                    assert_eq!(content_length, (end - start) as i64, "{label} {range}: Content-Length");
                    assert_eq!(
                        content_range,
                        Some(format!("bytes {}-{}/{size}", start, end - 1)),
                        "{label} {range}: Content-Range"
                    );
                    assert_eq!(etag, Some(etag_of(&data)), "{label} {range}: ETag");
                    assert!(body[..] == data[*start..*end], "{label} {range}: wrong bytes");
                }
                other => panic!("{label} {range}: {other:?}"),
            }
        }
    }

    // Past the end: 416 InvalidRange.
    for range in [format!("bytes={size}-"), format!("bytes={}-{}", size + 10, size + 20)] {
        match try_get(&h.plain_client, BUCKET, "ranged", Some(&range)).await {
            GetOutcome::Refused { status, code, .. } => {
                assert_eq!((status, code.as_str()), (416, "InvalidRange"), "{range}");
            }
            other => panic!("{range}: expected 416, got {other:?}"),
        }
    }
    h.put(BUCKET, "empty", b"").await;
    match try_get(&h.plain_client, BUCKET, "empty", Some("bytes=0-0")).await {
        GetOutcome::Refused { status, code, .. } => assert_eq!((status, code.as_str()), (416, "InvalidRange")),
        other => panic!("range of an empty object: {other:?}"),
    }

    // HEAD with a range answers the range's length.
    let head = h
        .client
        .head_object()
        .bucket(BUCKET)
        .key("ranged")
        .range("bytes=65530-65545")
        .send()
        .await
        .expect("ranged head");
    assert_eq!(head.content_length(), Some(16));

    // The raw status line and headers, through a presigned URL and a plain HTTP client.
    let url = presign_get(&h.plain_client, "ranged", Duration::from_secs(300), None).await;
    let resp = h
        .http()
        .get(&url)
        .header("range", "bytes=65535-65536")
        .send()
        .await
        .expect("ranged presigned GET");
    assert_eq!(resp.status().as_u16(), 206);
    assert_eq!(
        resp.headers().get("content-range").and_then(|v| v.to_str().ok()),
        Some(format!("bytes 65535-65536/{size}").as_str())
    );
    assert_eq!(resp.bytes().await.expect("body")[..], data[65535..65537]);
    let resp = h
        .http()
        .get(&url)
        .header("range", format!("bytes={size}-"))
        .send()
        .await
        .expect("unsatisfiable presigned GET");
    assert_eq!(resp.status().as_u16(), 416);
    let resp = h.http().get(&url).send().await.expect("whole presigned GET");
    assert_eq!(resp.status().as_u16(), 200);

    h.assert_no_plaintext(MARKER);
}

async fn part_numbers(kind: StoreKind) {
    let h = harness(kind).await;
    let data = data_with_marker(2 * SEGMENT + 5);
    h.put(BUCKET, "single", &data).await;
    let got = h
        .plain_client
        .get_object()
        .bucket(BUCKET)
        .key("single")
        .part_number(1)
        .send()
        .await
        .expect("partNumber=1");
    assert_eq!(got.content_length(), Some(data.len() as i64));
    assert_eq!(got.e_tag(), Some(etag_of(&data).as_str()));
    assert!(
        got.body.collect().await.expect("body").to_vec() == data,
        "partNumber=1 body"
    );
    let head = h
        .plain_client
        .head_object()
        .bucket(BUCKET)
        .key("single")
        .part_number(1)
        .send()
        .await
        .expect("HEAD partNumber=1");
    assert_eq!(head.content_length(), Some(data.len() as i64));

    let e = h
        .plain_client
        .get_object()
        .bucket(BUCKET)
        .key("single")
        .part_number(2)
        .send()
        .await
        .expect_err("partNumber=2 of a single-part object");
    assert_eq!(
        (e.http_status(), e.s3_code().as_str()),
        (416, "InvalidPartNumber"),
        "{}",
        e.describe()
    );
    h.assert_no_plaintext(MARKER);
}

// === conditionals ===

async fn conditionals(kind: StoreKind) {
    let h = harness(kind).await;
    let data = data_with_marker(5000);
    h.put(BUCKET, "cond", &data).await;
    let c = &h.plain_client;
    let head = c.head_object().bucket(BUCKET).key("cond").send().await.expect("head");
    let etag = head.e_tag().expect("etag").to_string();
    let modified = *head.last_modified().expect("last modified");
    let before = DateTime::from_secs(modified.secs() - 3600);
    let after = DateTime::from_secs(modified.secs() + 3600);
    let other = "\"0123456789abcdef0123456789abcdef\"";

    let get = || c.get_object().bucket(BUCKET).key("cond");
    let head = || c.head_object().bucket(BUCKET).key("cond");

    // If-Match.
    let ok = get().if_match(&etag).send().await.expect("If-Match: matching");
    assert!(ok.body.collect().await.expect("body").to_vec() == data);
    get().if_match("*").send().await.expect("If-Match: *");
    assert_s3_error(
        get().if_match(other).send().await,
        412,
        "PreconditionFailed",
        "GET If-Match mismatch",
    );
    assert_s3_error(head().if_match(other).send().await, 412, "", "HEAD If-Match mismatch");
    head().if_match(&etag).send().await.expect("HEAD If-Match: matching");

    // If-None-Match.
    assert_s3_error(
        get().if_none_match(&etag).send().await,
        304,
        "",
        "GET If-None-Match match",
    );
    assert_s3_error(
        head().if_none_match(&etag).send().await,
        304,
        "",
        "HEAD If-None-Match match",
    );
    get().if_none_match(other).send().await.expect("If-None-Match: other");
    assert_s3_error(get().if_none_match("*").send().await, 304, "", "GET If-None-Match: *");

    // If-Modified-Since.
    assert_s3_error(
        get().if_modified_since(modified).send().await,
        304,
        "",
        "If-Modified-Since: now",
    );
    assert_s3_error(
        get().if_modified_since(after).send().await,
        304,
        "",
        "If-Modified-Since: later",
    );
    assert_s3_error(
        head().if_modified_since(modified).send().await,
        304,
        "",
        "HEAD If-Modified-Since",
    );
    get()
        .if_modified_since(before)
        .send()
        .await
        .expect("If-Modified-Since: earlier");

    // If-Unmodified-Since.
    assert_s3_error(
        get().if_unmodified_since(before).send().await,
        412,
        "PreconditionFailed",
        "If-Unmodified-Since: earlier",
    );
    assert_s3_error(
        head().if_unmodified_since(before).send().await,
        412,
        "",
        "HEAD If-Unmodified-Since",
    );
    get()
        .if_unmodified_since(modified)
        .send()
        .await
        .expect("If-Unmodified-Since: now");
    get()
        .if_unmodified_since(after)
        .send()
        .await
        .expect("If-Unmodified-Since: later");

    // S3's combinations: a true If-Match wins over a false If-Unmodified-Since; a false
    // If-None-Match with a true If-Modified-Since is 304.
    get()
        .if_match(&etag)
        .if_unmodified_since(before)
        .send()
        .await
        .expect("If-Match true + If-Unmodified-Since false");
    assert_s3_error(
        get().if_none_match(&etag).if_modified_since(before).send().await,
        304,
        "",
        "If-None-Match false + If-Modified-Since true",
    );
    h.assert_no_plaintext(MARKER);
}

// === checksums ===

fn crc32(data: &[u8]) -> String {
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

// === listing ===

/// Keys of the listing fixture, in S3 order.
fn listing_keys() -> Vec<String> {
    let mut keys: Vec<String> = (0..25).map(|i| format!("page/key-{i:02}")).collect();
    keys.extend(["dir/a/1", "dir/a/2", "dir/b/1", "dir/c", "top"].map(String::from));
    keys.sort();
    keys
}

/// A harness with the listing fixture uploaded; returns key → (size, ETag).
async fn listing_fixture(kind: StoreKind) -> (Harness, BTreeMap<String, (i64, String)>) {
    let h = harness(kind).await;
    let mut expected = BTreeMap::new();
    for (i, key) in listing_keys().into_iter().enumerate() {
        let data = data_with_marker(100 + i * 7);
        h.put(BUCKET, &key, &data).await;
        expected.insert(key, (data.len() as i64, etag_of(&data)));
    }
    (h, expected)
}

type Listed = Vec<(String, i64, Option<String>)>;

/// Every object under `prefix` through ListObjectsV2 pages of `max_keys`.
async fn list_all(client: &Client, prefix: Option<&str>, delimiter: Option<&str>, max_keys: Option<i32>) -> Listed {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = client
            .list_objects_v2()
            .bucket(BUCKET)
            .set_prefix(prefix.map(String::from))
            .set_delimiter(delimiter.map(String::from))
            .set_max_keys(max_keys)
            .set_continuation_token(token.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("list: {}", DisplayErrorContext(&e)));
        for o in page.contents() {
            out.push((
                o.key().expect("key").to_string(),
                o.size().expect("size"),
                o.e_tag().map(str::to_string),
            ));
        }
        match page.next_continuation_token() {
            Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
            _ => break,
        }
    }
    out
}

fn assert_listed(listed: &[(String, i64, Option<String>)], expected: &BTreeMap<String, (i64, String)>) {
    for (key, size, etag) in listed {
        let (want_size, want_etag) = &expected[key];
        assert_eq!(size, want_size, "listed size of {key}");
        assert_eq!(etag.as_ref(), Some(want_etag), "listed ETag of {key}");
    }
}

fn prefixes_of(p: &[aws_sdk_s3::types::CommonPrefix]) -> Vec<String> {
    p.iter().filter_map(|p| p.prefix().map(String::from)).collect()
}

async fn listing_v2(kind: StoreKind) {
    let (h, expected) = listing_fixture(kind).await;
    let c = &h.client;
    let page_keys: Vec<String> = (0..25).map(|i| format!("page/key-{i:02}")).collect();

    // max-keys 7 with continuation tokens: 7, 7, 7, 4.
    let mut token: Option<String> = None;
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    loop {
        let page = c
            .list_objects_v2()
            .bucket(BUCKET)
            .prefix("page/")
            .max_keys(7)
            .set_continuation_token(token.clone())
            .send()
            .await
            .expect("list page");
        let keys: Vec<String> = page.contents().iter().map(|o| o.key().unwrap().to_string()).collect();
        assert_eq!(page.key_count(), Some(keys.len() as i32));
        assert_eq!(page.max_keys(), Some(7));
        sizes.push(keys.len());
        seen.extend(keys);
        let truncated = page.is_truncated() == Some(true);
        assert_eq!(
            truncated,
            page.next_continuation_token().is_some(),
            "token iff truncated"
        );
        if !truncated {
            break;
        }
        token = page.next_continuation_token().map(String::from);
        assert!(sizes.len() < 10, "paging does not end");
    }
    assert_eq!(sizes, vec![7, 7, 7, 4]);
    assert_eq!(seen, page_keys);

    // Prefix alone, and everything.
    let dir = list_all(c, Some("dir/"), None, None).await;
    let keys: Vec<&str> = dir.iter().map(|(k, ..)| k.as_str()).collect();
    assert_eq!(keys, ["dir/a/1", "dir/a/2", "dir/b/1", "dir/c"]);
    let all = list_all(c, None, None, None).await;
    assert_eq!(all.iter().map(|(k, ..)| k.clone()).collect::<Vec<_>>(), listing_keys());
    assert_listed(&all, &expected);

    // Delimiter at the root and under a prefix.
    let root = c
        .list_objects_v2()
        .bucket(BUCKET)
        .delimiter("/")
        .send()
        .await
        .expect("list /");
    assert_eq!(prefixes_of(root.common_prefixes()), ["dir/", "page/"]);
    let keys: Vec<&str> = root.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["top"]);
    assert_eq!(root.key_count(), Some(3));
    let sub = c
        .list_objects_v2()
        .bucket(BUCKET)
        .prefix("dir/")
        .delimiter("/")
        .send()
        .await
        .expect("list dir/ /");
    assert_eq!(prefixes_of(sub.common_prefixes()), ["dir/a/", "dir/b/"]);
    let keys: Vec<&str> = sub.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["dir/c"]);

    // An empty delimiter is no delimiter.
    let flat = c
        .list_objects_v2()
        .bucket(BUCKET)
        .delimiter("")
        .send()
        .await
        .expect("list empty delimiter");
    assert!(flat.common_prefixes().is_empty(), "{:?}", flat.common_prefixes());
    assert_eq!(flat.contents().len(), listing_keys().len());

    // Common prefixes page like keys.
    let mut token: Option<String> = None;
    let mut entries = Vec::new();
    for _ in 0..10 {
        let page = c
            .list_objects_v2()
            .bucket(BUCKET)
            .delimiter("/")
            .max_keys(1)
            .set_continuation_token(token.clone())
            .send()
            .await
            .expect("list / by one");
        entries.extend(prefixes_of(page.common_prefixes()));
        entries.extend(page.contents().iter().filter_map(|o| o.key().map(String::from)));
        if page.is_truncated() != Some(true) {
            break;
        }
        token = page.next_continuation_token().map(String::from);
    }
    assert_eq!(entries, ["dir/", "page/", "top"]);

    // start-after.
    let after = c
        .list_objects_v2()
        .bucket(BUCKET)
        .prefix("page/")
        .start_after("page/key-19")
        .send()
        .await
        .expect("start-after");
    let keys: Vec<&str> = after.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, page_keys[20..].iter().map(String::as_str).collect::<Vec<_>>());

    // Nothing under an unknown prefix.
    let none = c
        .list_objects_v2()
        .bucket(BUCKET)
        .prefix("nope/")
        .send()
        .await
        .expect("empty list");
    assert!(none.contents().is_empty() && none.is_truncated() == Some(false));
    h.assert_no_plaintext(MARKER);
}

async fn listing_v1(kind: StoreKind) {
    let (h, expected) = listing_fixture(kind).await;
    let c = &h.client;
    let mut marker: Option<String> = None;
    let mut seen = Vec::new();
    let mut pages = Vec::new();
    loop {
        let page = c
            .list_objects()
            .bucket(BUCKET)
            .prefix("page/")
            .max_keys(7)
            .set_marker(marker.clone())
            .send()
            .await
            .expect("list v1 page");
        let listed: Listed = page
            .contents()
            .iter()
            .map(|o| {
                (
                    o.key().unwrap().to_string(),
                    o.size().unwrap(),
                    o.e_tag().map(String::from),
                )
            })
            .collect();
        assert_listed(&listed, &expected);
        pages.push(listed.len());
        let last = listed.last().map(|(k, ..)| k.clone());
        seen.extend(listed.into_iter().map(|(k, ..)| k));
        if page.is_truncated() != Some(true) {
            break;
        }
        // NextMarker, or (as S3 allows without a delimiter) the last key.
        marker = page.next_marker().map(String::from).or(last);
        assert!(pages.len() < 10, "paging does not end");
    }
    assert_eq!(pages, vec![7, 7, 7, 4]);
    assert_eq!(seen, (0..25).map(|i| format!("page/key-{i:02}")).collect::<Vec<_>>());

    let root = c
        .list_objects()
        .bucket(BUCKET)
        .delimiter("/")
        .send()
        .await
        .expect("v1 /");
    assert_eq!(prefixes_of(root.common_prefixes()), ["dir/", "page/"]);
    let keys: Vec<&str> = root.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["top"]);

    // Marker paging with a delimiter: a marker inside a rolled-up prefix skips it.
    let page = c
        .list_objects()
        .bucket(BUCKET)
        .delimiter("/")
        .max_keys(1)
        .send()
        .await
        .expect("v1 / by one");
    assert_eq!(prefixes_of(page.common_prefixes()), ["dir/"]);
    assert_eq!(page.is_truncated(), Some(true));
    let next = page.next_marker().expect("NextMarker with a delimiter").to_string();
    let page = c
        .list_objects()
        .bucket(BUCKET)
        .delimiter("/")
        .marker(&next)
        .send()
        .await
        .expect("v1 / after marker");
    assert_eq!(prefixes_of(page.common_prefixes()), ["page/"]);
    let keys: Vec<&str> = page.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["top"]);
    h.assert_no_plaintext(MARKER);
}

async fn listing_url_encoding(kind: StoreKind) {
    let h = harness(kind).await;
    let keys = ["enc/a key with spaces/é ü.txt", "enc/plus+percent%.bin", "enc/plain"];
    for key in keys {
        h.put(BUCKET, key, &data_with_marker(300)).await;
    }
    let c = &h.client;

    let v2 = c
        .list_objects_v2()
        .bucket(BUCKET)
        .prefix("enc/")
        .encoding_type(EncodingType::Url)
        .send()
        .await
        .expect("v2 encoding-type=url");
    assert_eq!(v2.encoding_type(), Some(&EncodingType::Url));
    let mut got: Vec<String> = Vec::new();
    for o in v2.contents() {
        let raw = o.key().expect("key");
        assert!(raw.is_ascii() && !raw.contains(' '), "key not URL-encoded: {raw:?}");
        got.push(url_decode(raw));
    }
    let mut want: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    want.sort();
    assert_eq!(got, want);

    let v2 = c
        .list_objects_v2()
        .bucket(BUCKET)
        .prefix("enc/")
        .delimiter("/")
        .encoding_type(EncodingType::Url)
        .send()
        .await
        .expect("v2 encoding-type=url with delimiter");
    let prefixes = prefixes_of(v2.common_prefixes());
    assert_eq!(prefixes.len(), 1, "{prefixes:?}");
    assert!(!prefixes[0].contains(' '), "{prefixes:?}");
    assert_eq!(url_decode(&prefixes[0]), "enc/a key with spaces/");

    let v1 = c
        .list_objects()
        .bucket(BUCKET)
        .prefix("enc/")
        .encoding_type(EncodingType::Url)
        .send()
        .await
        .expect("v1 encoding-type=url");
    let got: Vec<String> = v1
        .contents()
        .iter()
        .map(|o| {
            let raw = o.key().expect("key");
            assert!(raw.is_ascii() && !raw.contains(' '), "key not URL-encoded: {raw:?}");
            url_decode(raw)
        })
        .collect();
    assert_eq!(got, want);

    // Without encoding-type the keys come back as they are, and each one reads back.
    let plain = list_all(c, Some("enc/"), None, None).await;
    assert_eq!(plain.iter().map(|(k, ..)| k.clone()).collect::<Vec<_>>(), want);
    for key in keys {
        assert_eq!(h.get(BUCKET, key).await.len(), 300, "{key}");
    }
    h.assert_no_plaintext(MARKER);
}

// === deletes ===

async fn deletes(kind: StoreKind) {
    let h = harness(kind).await;
    let c = &h.client;
    c.delete_object()
        .bucket(BUCKET)
        .key("never-existed")
        .send()
        .await
        .expect("deleting a missing key succeeds");
    for i in 0..6 {
        h.put(BUCKET, &format!("del/{i}"), &data_with_marker(200)).await;
    }
    h.put(BUCKET, "keep", &data_with_marker(200)).await;

    c.delete_object()
        .bucket(BUCKET)
        .key("del/0")
        .send()
        .await
        .expect("delete");
    assert_s3_error(
        c.get_object().bucket(BUCKET).key("del/0").send().await,
        404,
        "NoSuchKey",
        "get after delete",
    );

    let ids = |keys: &[&str]| {
        keys.iter()
            .map(|k| ObjectIdentifier::builder().key(*k).build().expect("object identifier"))
            .collect::<Vec<_>>()
    };
    let out = c
        .delete_objects()
        .bucket(BUCKET)
        .delete(
            Delete::builder()
                .set_objects(Some(ids(&["del/1", "del/2", "del/missing"])))
                .build()
                .expect("delete"),
        )
        .send()
        .await
        .expect("DeleteObjects");
    let mut deleted: Vec<&str> = out.deleted().iter().filter_map(|d| d.key()).collect();
    deleted.sort();
    assert_eq!(deleted, ["del/1", "del/2", "del/missing"]);
    assert!(out.errors().is_empty(), "{:?}", out.errors());

    let out = c
        .delete_objects()
        .bucket(BUCKET)
        .delete(
            Delete::builder()
                .set_objects(Some(ids(&["del/3", "del/4"])))
                .quiet(true)
                .build()
                .expect("delete"),
        )
        .send()
        .await
        .expect("DeleteObjects quiet");
    assert!(
        out.deleted().is_empty(),
        "quiet answers no Deleted entries: {:?}",
        out.deleted()
    );
    assert!(out.errors().is_empty(), "{:?}", out.errors());

    let left: Vec<String> = list_all(c, None, None, None)
        .await
        .into_iter()
        .map(|(k, ..)| k)
        .collect();
    assert_eq!(left, ["del/5", "keep"]);

    assert_s3_error(
        c.delete_object().bucket("missing-bucket").key("k").send().await,
        404,
        "NoSuchBucket",
        "delete in a missing bucket",
    );
    h.assert_no_plaintext(MARKER);
}

// === auth ===

async fn auth_failures(kind: StoreKind) {
    let h = harness(kind).await;
    let data = data_with_marker(500);
    h.put(BUCKET, "secret", &data).await;

    for checksums in [Checksums::Default, Checksums::WhenRequired] {
        let wrong_secret = h.client_with(ACCESS_KEY, "not-the-secret", checksums);
        assert_s3_error(
            wrong_secret.list_buckets().send().await,
            403,
            "SignatureDoesNotMatch",
            "wrong secret: list",
        );
        assert_s3_error(
            wrong_secret.get_object().bucket(BUCKET).key("secret").send().await,
            403,
            "SignatureDoesNotMatch",
            "wrong secret: get",
        );
        assert_s3_error(
            wrong_secret
                .put_object()
                .bucket(BUCKET)
                .key("forged")
                .body(ByteStream::from(data.clone()))
                .send()
                .await,
            403,
            "SignatureDoesNotMatch",
            "wrong secret: put",
        );
        let unknown = h.client_with("AKIAUNKNOWNUNKNOWN00", SECRET_KEY, checksums);
        assert_s3_error(
            unknown.get_object().bucket(BUCKET).key("secret").send().await,
            403,
            "InvalidAccessKeyId",
            "unknown access key",
        );
    }
    assert_s3_error(
        h.client.head_object().bucket(BUCKET).key("forged").send().await,
        404,
        "",
        "a PUT with a wrong signature stored nothing",
    );

    // No signature at all.
    let http = h.http();
    let url = format!("{}/{BUCKET}/secret", h.endpoint);
    let resp = http.get(&url).send().await.expect("unsigned GET");
    assert_eq!(resp.status().as_u16(), 403, "unsigned GET");
    assert!(
        common::find(&resp.bytes().await.unwrap(), MARKER).is_none(),
        "unsigned GET leaked plaintext"
    );
    let resp = http
        .put(format!("{}/{BUCKET}/anonymous", h.endpoint))
        .body(data.clone())
        .send()
        .await
        .expect("unsigned PUT");
    assert_eq!(resp.status().as_u16(), 403, "unsigned PUT");
    let resp = http
        .get(format!("{}/", h.endpoint))
        .send()
        .await
        .expect("unsigned list");
    assert_eq!(resp.status().as_u16(), 403, "unsigned ListBuckets");
    assert_s3_error(
        h.client.head_object().bucket(BUCKET).key("anonymous").send().await,
        404,
        "",
        "an unsigned PUT stored nothing",
    );
    h.assert_no_plaintext(MARKER);
}

async fn presign_get(client: &Client, key: &str, expires_in: Duration, start: Option<SystemTime>) -> String {
    let mut cfg = PresigningConfig::builder().expires_in(expires_in);
    if let Some(start) = start {
        cfg = cfg.start_time(start);
    }
    client
        .get_object()
        .bucket(BUCKET)
        .key(key)
        .presigned(cfg.build().expect("presigning config"))
        .await
        .expect("presign GET")
        .uri()
        .to_string()
}

async fn presigned_urls(kind: StoreKind) {
    let h = harness(kind).await;
    let data = data_with_marker(2 * SEGMENT + 3);
    h.put(BUCKET, "shared", &data).await;
    let http = h.http();

    for (label, client) in h.clients() {
        let url = presign_get(client, "shared", Duration::from_secs(300), None).await;
        let resp = http.get(&url).send().await.expect("presigned GET");
        assert_eq!(resp.status().as_u16(), 200, "{label} presigned GET");
        assert_eq!(
            resp.headers().get("etag").and_then(|v| v.to_str().ok()),
            Some(etag_of(&data).as_str())
        );
        assert!(
            resp.bytes().await.expect("body")[..] == data[..],
            "{label} presigned GET body"
        );

        // The same URL with one signature digit changed.
        let at = url.find("X-Amz-Signature=").expect("signature in URL") + "X-Amz-Signature=".len();
        let mut tampered = url.clone().into_bytes();
        tampered[at] = if tampered[at] == b'0' { b'1' } else { b'0' };
        let tampered = String::from_utf8(tampered).expect("ascii");
        let resp = http.get(&tampered).send().await.expect("tampered GET");
        assert_eq!(resp.status().as_u16(), 403, "{label} tampered signature");
        assert!(common::find(&resp.bytes().await.unwrap(), MARKER).is_none());

        // Another key under the same signature.
        let other = url.replacen("/shared?", "/other?", 1);
        assert_ne!(other, url);
        let resp = http.get(&other).send().await.expect("re-pointed GET");
        assert_eq!(resp.status().as_u16(), 403, "{label} signature for another key");

        // Signed an hour ago, valid for one second: already expired.
        let expired = presign_get(
            client,
            "shared",
            Duration::from_secs(1),
            Some(SystemTime::now() - Duration::from_secs(3600)),
        )
        .await;
        let resp = http.get(&expired).send().await.expect("expired GET");
        assert_eq!(resp.status().as_u16(), 403, "{label} expired presigned URL");
        assert!(common::find(&resp.bytes().await.unwrap(), MARKER).is_none());

        // Presigned PUT.
        let key = format!("uploaded/{label}");
        let body = data_with_marker(SEGMENT + 77);
        let url = client
            .put_object()
            .bucket(BUCKET)
            .key(&key)
            .presigned(PresigningConfig::expires_in(Duration::from_secs(300)).expect("config"))
            .await
            .expect("presign PUT");
        let mut req = http.put(url.uri());
        for (name, value) in url.headers() {
            req = req.header(name, value);
        }
        let resp = req.body(body.clone()).send().await.expect("presigned PUT");
        let status = resp.status().as_u16();
        let etag = resp
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        assert_eq!(
            status,
            200,
            "{label} presigned PUT: {}",
            resp.text().await.unwrap_or_default()
        );
        assert_eq!(etag, Some(etag_of(&body)), "{label} presigned PUT ETag");
        assert!(h.get(BUCKET, &key).await == body, "{label} presigned PUT content");
    }
    h.assert_no_plaintext(MARKER);
}

// === unsupported ===

async fn unsupported_operations(kind: StoreKind) {
    let h = harness(kind).await;
    let data = data_with_marker(1000);
    h.put(BUCKET, "obj", &data).await;
    let c = &h.client;

    assert_s3_error(
        c.put_object_tagging()
            .bucket(BUCKET)
            .key("obj")
            .tagging(
                Tagging::builder()
                    .tag_set(Tag::builder().key("k").value("v").build().expect("tag"))
                    .build()
                    .expect("tagging"),
            )
            .send()
            .await,
        501,
        "NotImplemented",
        "PutObjectTagging",
    );
    assert_s3_error(
        c.put_bucket_policy()
            .bucket(BUCKET)
            .policy(r#"{"Version":"2012-10-17","Statement":[]}"#)
            .send()
            .await,
        501,
        "NotImplemented",
        "PutBucketPolicy",
    );
    assert_s3_error(
        c.select_object_content()
            .bucket(BUCKET)
            .key("obj")
            .expression("SELECT * FROM S3Object")
            .expression_type(ExpressionType::Sql)
            .input_serialization(InputSerialization::builder().csv(CsvInput::builder().build()).build())
            .output_serialization(OutputSerialization::builder().csv(CsvOutput::builder().build()).build())
            .send()
            .await,
        501,
        "NotImplemented",
        "SelectObjectContent",
    );

    // SSE-C on top of our encryption: refused, and nothing stored.
    let customer_key = [7u8; 32];
    let key_md5 = b64(&Md5::digest(customer_key));
    assert_s3_error(
        c.put_object()
            .bucket(BUCKET)
            .key("ssec")
            .sse_customer_algorithm("AES256")
            .sse_customer_key(b64(&customer_key))
            .sse_customer_key_md5(&key_md5)
            .body(ByteStream::from(data.clone()))
            .send()
            .await,
        501,
        "NotImplemented",
        "PutObject with SSE-C",
    );
    assert_s3_error(
        c.head_object().bucket(BUCKET).key("ssec").send().await,
        404,
        "",
        "SSE-C PUT stored nothing",
    );
    assert_s3_error(
        c.get_object()
            .bucket(BUCKET)
            .key("obj")
            .sse_customer_algorithm("AES256")
            .sse_customer_key(b64(&customer_key))
            .sse_customer_key_md5(&key_md5)
            .send()
            .await,
        501,
        "NotImplemented",
        "GetObject with SSE-C",
    );
    assert_s3_error(
        c.put_object()
            .bucket(BUCKET)
            .key("tagged")
            .tagging("k=v")
            .body(ByteStream::from(data.clone()))
            .send()
            .await,
        501,
        "NotImplemented",
        "PutObject with x-amz-tagging",
    );
    assert!(h.get(BUCKET, "obj").await == data, "the object is unchanged");
    h.assert_no_plaintext(MARKER);
}

// === the harness itself ===

/// The plaintext scan finds plaintext where the store keeps objects (it is not vacuous).
async fn planted_plaintext_is_found(kind: StoreKind) {
    let h = harness(kind).await;
    h.put(BUCKET, "x", &data_with_marker(100)).await;
    let dir = h.object_path(BUCKET, "x").parent().expect("bucket dir").to_path_buf();
    std::fs::write(dir.join("planted"), [b"prefix".as_slice(), MARKER].concat()).expect("plant");
    h.assert_no_plaintext(MARKER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "PLAINTEXT IN THE STORE IN CLEAR")]
async fn harness_fs_scan_finds_planted_plaintext() {
    planted_plaintext_is_found(StoreKind::Fs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "PLAINTEXT IN THE STORE IN CLEAR")]
async fn harness_s3s_fs_scan_finds_planted_plaintext() {
    planted_plaintext_is_found(StoreKind::S3sFs).await;
}
