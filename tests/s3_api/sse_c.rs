//! SSE-C through the proxy: a client's own key as a second layer over the proxy's encryption.
//! Round trips (single PUT, ranges, multipart, copies in every direction, UploadPartCopy,
//! presigned GET, GetObjectAttributes) with the key, and every must-fail twin: no key, the wrong
//! key, a bad MD5, a short key, a key for a plain object, a part with another key. The store
//! never holds the plaintext, the key or its base64.

use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ObjectAttributes};
use md5::{Digest as _, Md5};
use sha2::Sha256;

use crate::common::{Harness, MARKER, MIN_PART, SEGMENT, StoreKind, assert_s3_error, b64, data_with_marker, etag_of};
use crate::{BUCKET, harness};

per_store!(
    single_put_round_trip_and_must_fail_twins,
    multipart_with_one_key_per_upload,
    copies_between_keys_and_plain
);

/// A client's SSE-C key: 32 distinctive bytes (so a scan of the store can look for them).
struct Ck {
    raw: [u8; 32],
}

impl Ck {
    fn new(label: &str) -> Self {
        Self {
            raw: Sha256::digest(format!("escrow sse-c test key {label}").as_bytes()).into(),
        }
    }
    fn key(&self) -> String {
        b64(&self.raw)
    }
    fn md5(&self) -> String {
        b64(&Md5::digest(self.raw))
    }
}

/// Sets the three SSE-C headers of `key` on any request builder that has the setters.
macro_rules! with_key {
    ($req:expr, $ck:expr) => {
        $req.sse_customer_algorithm("AES256")
            .sse_customer_key($ck.key())
            .sse_customer_key_md5($ck.md5())
    };
}

/// The same, for the copy source.
macro_rules! with_source_key {
    ($req:expr, $ck:expr) => {
        $req.copy_source_sse_customer_algorithm("AES256")
            .copy_source_sse_customer_key($ck.key())
            .copy_source_sse_customer_key_md5($ck.md5())
    };
}

/// The mirror repairs SSE-C objects written during a primary outage (single-part and
/// multipart) by copying their ciphertext store to store, without the customer key: afterwards
/// both stores hold the same bytes, the HEAD (with the key) says `COMPLETED`, and the objects
/// read back with the key only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_repairs_sse_c_objects_without_their_key() {
    use escrow_proxy::mirror::{ReadMode, WriteMode};
    let h = Harness::mirrored(ReadMode::Primary, WriteMode::Sync).await;
    h.create_bucket(BUCKET).await;
    let c = &h.client;
    let ck = Ck::new("mirror");
    let single = data_with_marker(2 * SEGMENT + 1);
    let data = data_with_marker(MIN_PART + 77);
    h.primary_outage(true);
    with_key!(
        c.put_object()
            .bucket(BUCKET)
            .key("one")
            .body(ByteStream::from(single.clone())),
        ck
    )
    .send()
    .await
    .expect("SSE-C PUT during the outage");
    let id = create(c, "multi", Some(&ck)).await;
    let p1 = part(c, "multi", &id, 1, &data[..MIN_PART], Some(&ck))
        .await
        .expect("part 1");
    let p2 = part(c, "multi", &id, 2, &data[MIN_PART..], Some(&ck))
        .await
        .expect("part 2");
    complete(c, "multi", &id, vec![p1, p2]).await;
    assert!(h.primary_stored_body(BUCKET, "one").is_none(), "the primary was down");
    h.primary_outage(false);

    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut done = true;
        for key in ["one", "multi"] {
            let p = h.primary_stored_body(BUCKET, key);
            done &= p.is_some() && p == h.mirror_stored_body(BUCKET, key);
            let head = with_key!(c.head_object().bucket(BUCKET).key(key), ck)
                .send()
                .await
                .expect("HEAD with the key");
            done &= head.replication_status().map(|s| s.as_str()) == Some("COMPLETED");
        }
        if done {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the stores did not converge");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(get_with_key(c, "one", &ck, None).await == single);
    assert!(get_with_key(c, "multi", &ck, None).await == data);
    assert_s3_error(
        c.get_object().bucket(BUCKET).key("one").send().await,
        400,
        "InvalidRequest",
        "a repaired SSE-C object without its key",
    );
    assert_store_clean(&h, &[&ck]);
}

async fn get_with_key(c: &Client, key: &str, ck: &Ck, range: Option<&str>) -> Vec<u8> {
    let out = with_key!(
        c.get_object()
            .bucket(BUCKET)
            .key(key)
            .set_range(range.map(String::from)),
        ck
    )
    .send()
    .await
    .unwrap_or_else(|e| panic!("GET {key} with its key: {}", DisplayErrorContext(&e)));
    assert_eq!(
        out.sse_customer_algorithm(),
        Some("AES256"),
        "GET {key} echoes the algorithm"
    );
    assert_eq!(
        out.server_side_encryption(),
        None,
        "GET {key}: no x-amz-server-side-encryption"
    );
    assert_eq!(
        out.sse_customer_key_md5(),
        Some(ck.md5().as_str()),
        "GET {key} echoes the MD5"
    );
    out.body.collect().await.expect("body").to_vec()
}

/// The store holds neither the key (raw or base64) nor the plaintext marker.
fn assert_store_clean(h: &Harness, keys: &[&Ck]) {
    for ck in keys {
        h.assert_store_lacks(&ck.raw, "SSE-C KEY");
        h.assert_store_lacks(ck.key().as_bytes(), "SSE-C KEY (base64)");
    }
    h.assert_no_plaintext(MARKER);
}

async fn single_put_round_trip_and_must_fail_twins(kind: StoreKind) {
    let h = harness(kind).await;
    let c = &h.client;
    let (ck, wrong) = (Ck::new("a"), Ck::new("b"));
    let data = data_with_marker(3 * SEGMENT + 11);

    let put = with_key!(
        c.put_object()
            .bucket(BUCKET)
            .key("ssec")
            .body(ByteStream::from(data.clone())),
        ck
    )
    .send()
    .await
    .unwrap_or_else(|e| panic!("PUT with a customer key: {}", DisplayErrorContext(&e)));
    assert_eq!(put.sse_customer_algorithm(), Some("AES256"));
    assert_eq!(put.sse_customer_key_md5(), Some(ck.md5().as_str()));
    assert_eq!(put.e_tag(), Some(etag_of(&data).as_str()));
    // S3 answers an SSE-C object with the customer-key headers only.
    assert_eq!(put.server_side_encryption(), None, "PUT of an SSE-C object");

    let head = with_key!(c.head_object().bucket(BUCKET).key("ssec"), ck)
        .send()
        .await
        .unwrap_or_else(|e| panic!("HEAD with the key: {}", DisplayErrorContext(&e)));
    assert_eq!(head.content_length(), Some(data.len() as i64));
    assert_eq!(head.sse_customer_key_md5(), Some(ck.md5().as_str()));
    assert_eq!(head.server_side_encryption(), None, "HEAD of an SSE-C object");
    assert!(get_with_key(c, "ssec", &ck, None).await == data, "whole GET");
    let (a, b) = (SEGMENT - 5, 2 * SEGMENT + 7);
    assert!(
        get_with_key(c, "ssec", &ck, Some(&format!("bytes={a}-{b}"))).await == data[a..=b],
        "ranged GET across segments"
    );
    let attrs = with_key!(
        c.get_object_attributes()
            .bucket(BUCKET)
            .key("ssec")
            .object_attributes(ObjectAttributes::ObjectSize),
        ck
    )
    .send()
    .await
    .unwrap_or_else(|e| panic!("GetObjectAttributes with the key: {}", DisplayErrorContext(&e)));
    assert_eq!(attrs.object_size(), Some(data.len() as i64));
    assert_s3_error(
        c.get_object_attributes()
            .bucket(BUCKET)
            .key("ssec")
            .object_attributes(ObjectAttributes::ObjectSize)
            .send()
            .await,
        400,
        "InvalidRequest",
        "GetObjectAttributes without the key",
    );

    // Presigned GET: the key travels in the (signed) headers the presigned request names.
    let presigned = with_key!(c.get_object().bucket(BUCKET).key("ssec"), ck)
        .presigned(PresigningConfig::expires_in(Duration::from_secs(300)).expect("config"))
        .await
        .expect("presign");
    let http = h.http();
    let mut req = http.get(presigned.uri());
    for (name, value) in presigned.headers() {
        req = req.header(name, value);
    }
    let resp = req.send().await.expect("presigned GET");
    assert_eq!(resp.status().as_u16(), 200, "presigned GET with the key headers");
    assert!(resp.bytes().await.expect("body")[..] == data[..]);
    let resp = http
        .get(presigned.uri())
        .send()
        .await
        .expect("presigned GET without headers");
    assert!(
        resp.status().is_client_error(),
        "the presigned URL alone does not read it"
    );

    // Must-fail twins of the reads: no key (400), the wrong key (403), for GET, HEAD, a range.
    assert_s3_error(
        c.get_object().bucket(BUCKET).key("ssec").send().await,
        400,
        "InvalidRequest",
        "GET of an SSE-C object without its key",
    );
    assert_s3_error(
        c.head_object().bucket(BUCKET).key("ssec").send().await,
        400,
        "",
        "HEAD of an SSE-C object without its key",
    );
    assert_s3_error(
        with_key!(c.get_object().bucket(BUCKET).key("ssec"), wrong).send().await,
        403,
        "AccessDenied",
        "GET with the wrong key",
    );
    assert_s3_error(
        with_key!(c.get_object().bucket(BUCKET).key("ssec").range("bytes=0-9"), wrong)
            .send()
            .await,
        403,
        "AccessDenied",
        "ranged GET with the wrong key",
    );
    assert_s3_error(
        with_key!(c.head_object().bucket(BUCKET).key("ssec"), wrong)
            .send()
            .await,
        403,
        "",
        "HEAD with the wrong key",
    );

    // Bad headers on a PUT: nothing is stored.
    let bad_md5 = c
        .put_object()
        .bucket(BUCKET)
        .key("bad")
        .sse_customer_algorithm("AES256")
        .sse_customer_key(ck.key())
        .sse_customer_key_md5(wrong.md5())
        .body(ByteStream::from(data.clone()))
        .send()
        .await;
    assert_s3_error(
        bad_md5,
        400,
        "InvalidArgument",
        "PUT with a key MD5 that does not match",
    );
    let short = [7u8; 16];
    let short_key = c
        .put_object()
        .bucket(BUCKET)
        .key("bad")
        .sse_customer_algorithm("AES256")
        .sse_customer_key(b64(&short))
        .sse_customer_key_md5(b64(&Md5::digest(short)))
        .body(ByteStream::from(data.clone()))
        .send()
        .await;
    assert_s3_error(short_key, 400, "InvalidArgument", "PUT with a 16-byte key");
    assert_s3_error(
        c.head_object().bucket(BUCKET).key("bad").send().await,
        404,
        "",
        "refused SSE-C PUTs stored nothing",
    );

    // A key for an object that is not SSE-C.
    h.put(BUCKET, "plain", &data).await;
    assert_s3_error(
        with_key!(c.get_object().bucket(BUCKET).key("plain"), ck).send().await,
        400,
        "InvalidRequest",
        "GET of a plain object with a customer key",
    );

    // Overwriting with a plain PUT leaves a plain object; the key then no longer applies.
    h.put(BUCKET, "ssec", &data).await;
    assert!(h.get(BUCKET, "ssec").await == data);
    assert_store_clean(&h, &[&ck, &wrong]);
}

async fn create(c: &Client, key: &str, ck: Option<&Ck>) -> String {
    let req = c.create_multipart_upload().bucket(BUCKET).key(key);
    let out = match ck {
        Some(ck) => {
            let out = with_key!(req, ck).send().await.expect("create with key");
            assert_eq!(out.sse_customer_key_md5(), Some(ck.md5().as_str()));
            out
        }
        None => req.send().await.expect("create"),
    };
    out.upload_id().expect("upload id").to_string()
}

async fn part(c: &Client, key: &str, id: &str, n: i32, data: &[u8], ck: Option<&Ck>) -> Result<CompletedPart, String> {
    let req = c
        .upload_part()
        .bucket(BUCKET)
        .key(key)
        .upload_id(id)
        .part_number(n)
        .body(ByteStream::from(data.to_vec()));
    let sent = match ck {
        Some(ck) => with_key!(req, ck).send().await,
        None => req.send().await,
    };
    let out = sent.map_err(|e| {
        let status = e.raw_response().map(|r| r.status().as_u16()).unwrap_or(0);
        format!("{status} {}", DisplayErrorContext(&e))
    })?;
    Ok(CompletedPart::builder()
        .part_number(n)
        .e_tag(out.e_tag().expect("etag"))
        .build())
}

/// Completes an upload made with a customer key: S3 answers it without
/// `x-amz-server-side-encryption`.
async fn complete(c: &Client, key: &str, id: &str, parts: Vec<CompletedPart>) {
    let out = c
        .complete_multipart_upload()
        .bucket(BUCKET)
        .key(key)
        .upload_id(id)
        .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
        .send()
        .await
        .unwrap_or_else(|e| panic!("complete {key}: {}", DisplayErrorContext(&e)));
    assert_eq!(out.server_side_encryption(), None, "complete {key}");
}

async fn multipart_with_one_key_per_upload(kind: StoreKind) {
    let h = harness(kind).await;
    let c = &h.client;
    let (ck, other) = (Ck::new("mp"), Ck::new("mp-other"));
    let data = data_with_marker(MIN_PART + 3 * SEGMENT + 5);
    let (p1, p2) = data.split_at(MIN_PART);

    let id = create(c, "mp", Some(&ck)).await;
    let first = part(c, "mp", &id, 1, p1, Some(&ck)).await.expect("part 1 with the key");
    // Must-fail twins: part 2 with another key, or none.
    let e = part(c, "mp", &id, 2, p2, Some(&other)).await.expect_err("another key");
    assert!(e.starts_with("400"), "part with another key: {e}");
    let e = part(c, "mp", &id, 2, p2, None).await.expect_err("no key");
    assert!(e.starts_with("400"), "part without the key: {e}");
    let second = part(c, "mp", &id, 2, p2, Some(&ck)).await.expect("part 2 with the key");
    // Completion needs no key (as on S3): the manifest is under the proxy's keys.
    complete(c, "mp", &id, vec![first, second]).await;

    assert!(get_with_key(c, "mp", &ck, None).await == data, "whole multipart GET");
    let (a, b) = (MIN_PART - 100, MIN_PART + SEGMENT + 3);
    assert!(
        get_with_key(c, "mp", &ck, Some(&format!("bytes={a}-{b}"))).await == data[a..=b],
        "ranged GET across the part boundary"
    );
    assert_s3_error(
        c.get_object().bucket(BUCKET).key("mp").send().await,
        400,
        "InvalidRequest",
        "multipart GET without the key",
    );
    assert_s3_error(
        with_key!(c.get_object().bucket(BUCKET).key("mp"), other).send().await,
        403,
        "AccessDenied",
        "multipart GET with the wrong key",
    );

    // A plain upload refuses a part with a key.
    let plain = create(c, "mp-plain", None).await;
    let e = part(c, "mp-plain", &plain, 1, p1, Some(&ck))
        .await
        .expect_err("key on plain");
    assert!(e.starts_with("400"), "key on a plain upload's part: {e}");
    c.abort_multipart_upload()
        .bucket(BUCKET)
        .key("mp-plain")
        .upload_id(&plain)
        .send()
        .await
        .expect("abort");
    assert_store_clean(&h, &[&ck, &other]);
}

async fn copies_between_keys_and_plain(kind: StoreKind) {
    let h = harness(kind).await;
    let c = &h.client;
    let (ck, other) = (Ck::new("copy"), Ck::new("copy-other"));
    let data = data_with_marker(2 * SEGMENT + 9);
    with_key!(
        c.put_object()
            .bucket(BUCKET)
            .key("src")
            .body(ByteStream::from(data.clone())),
        ck
    )
    .send()
    .await
    .expect("PUT SSE-C source");
    h.put(BUCKET, "plain-src", &data).await;
    let source = format!("{BUCKET}/src");

    // Same key on both sides (server-side), another key, no key (plain), and plain → SSE-C.
    let out = with_key!(
        with_source_key!(c.copy_object().bucket(BUCKET).key("same").copy_source(&source), ck),
        ck
    )
    .send()
    .await
    .unwrap_or_else(|e| panic!("copy to the same key: {}", DisplayErrorContext(&e)));
    assert_eq!(out.sse_customer_key_md5(), Some(ck.md5().as_str()));
    assert!(get_with_key(c, "same", &ck, None).await == data);
    with_key!(
        with_source_key!(c.copy_object().bucket(BUCKET).key("other").copy_source(&source), ck),
        other
    )
    .send()
    .await
    .unwrap_or_else(|e| panic!("copy to another key: {}", DisplayErrorContext(&e)));
    assert!(get_with_key(c, "other", &other, None).await == data);
    assert_s3_error(
        with_key!(c.get_object().bucket(BUCKET).key("other"), ck).send().await,
        403,
        "AccessDenied",
        "the copy under another key refuses the source's key",
    );
    with_source_key!(c.copy_object().bucket(BUCKET).key("plain").copy_source(&source), ck)
        .send()
        .await
        .unwrap_or_else(|e| panic!("copy to plain: {}", DisplayErrorContext(&e)));
    assert!(
        h.get(BUCKET, "plain").await == data,
        "SSE-C → plain reads without a key"
    );
    with_key!(
        c.copy_object()
            .bucket(BUCKET)
            .key("wrapped")
            .copy_source(format!("{BUCKET}/plain-src")),
        ck
    )
    .send()
    .await
    .unwrap_or_else(|e| panic!("copy plain → SSE-C: {}", DisplayErrorContext(&e)));
    assert!(get_with_key(c, "wrapped", &ck, None).await == data);

    // Must-fail twins: the source's key missing or wrong; nothing written.
    assert_s3_error(
        c.copy_object()
            .bucket(BUCKET)
            .key("nokey")
            .copy_source(&source)
            .send()
            .await,
        400,
        "InvalidRequest",
        "copy of an SSE-C source without its key",
    );
    assert_s3_error(
        with_source_key!(c.copy_object().bucket(BUCKET).key("nokey").copy_source(&source), other)
            .send()
            .await,
        403,
        "AccessDenied",
        "copy of an SSE-C source with the wrong key",
    );
    assert_s3_error(
        c.head_object().bucket(BUCKET).key("nokey").send().await,
        404,
        "",
        "refused copies wrote nothing",
    );

    // A client rotating its key: a copy onto itself under a new key (S3 allows it without
    // REPLACE, since the encryption changes); the same key onto itself is S3's 400.
    with_key!(
        with_source_key!(
            c.copy_object()
                .bucket(BUCKET)
                .key("same")
                .copy_source(format!("{BUCKET}/same")),
            ck
        ),
        other
    )
    .send()
    .await
    .unwrap_or_else(|e| panic!("copy onto itself under a new key: {}", DisplayErrorContext(&e)));
    assert!(get_with_key(c, "same", &other, None).await == data);
    assert_s3_error(
        with_key!(c.get_object().bucket(BUCKET).key("same"), ck).send().await,
        403,
        "AccessDenied",
        "the old key after the client's rotation",
    );
    assert_s3_error(
        with_key!(
            with_source_key!(
                c.copy_object()
                    .bucket(BUCKET)
                    .key("same")
                    .copy_source(format!("{BUCKET}/same")),
                other
            ),
            other
        )
        .send()
        .await,
        400,
        "InvalidRequest",
        "a copy onto itself changing nothing",
    );
    // SSE-C and x-amz-server-side-encryption at once: S3's 400, nothing written.
    assert_s3_error(
        with_key!(
            c.put_object()
                .bucket(BUCKET)
                .key("both")
                .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::Aes256)
                .body(ByteStream::from(data.clone())),
            ck
        )
        .send()
        .await,
        400,
        "InvalidArgument",
        "SSE-C with x-amz-server-side-encryption",
    );

    // UploadPartCopy: an SSE-C source into an upload under another key.
    let id = create(c, "parts", Some(&other)).await;
    let copied = with_key!(
        with_source_key!(
            c.upload_part_copy()
                .bucket(BUCKET)
                .key("parts")
                .upload_id(&id)
                .part_number(1)
                .copy_source(&source),
            ck
        ),
        other
    )
    .send()
    .await
    .unwrap_or_else(|e| panic!("UploadPartCopy: {}", DisplayErrorContext(&e)));
    let e = copied
        .copy_part_result()
        .and_then(|r| r.e_tag())
        .expect("etag")
        .to_string();
    assert_s3_error(
        with_key!(
            c.upload_part_copy()
                .bucket(BUCKET)
                .key("parts")
                .upload_id(&id)
                .part_number(2)
                .copy_source(&source),
            other
        )
        .send()
        .await,
        400,
        "InvalidRequest",
        "UploadPartCopy without the source's key",
    );
    complete(
        c,
        "parts",
        &id,
        vec![CompletedPart::builder().part_number(1).e_tag(e).build()],
    )
    .await;
    assert!(get_with_key(c, "parts", &other, None).await == data);
    assert_store_clean(&h, &[&ck, &other]);
}
