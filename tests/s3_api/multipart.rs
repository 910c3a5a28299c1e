//! Multipart uploads: parts sent out of order, concurrently and through two proxy processes on one
//! store; the completed object's S3 ETag, sizes, ranges and `partNumber` reads; S3's part rules;
//! ListParts and ListMultipartUploads; aborts; the reserved prefix where uploads in progress live;
//! part digests. An upload's state lives in the store, so every case also looks at the store's
//! files, and ends with the plaintext scan.

use std::collections::BTreeSet;
use std::path::PathBuf;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::operation::complete_multipart_upload::{CompleteMultipartUploadError, CompleteMultipartUploadOutput};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use md5::{Digest as _, Md5};

use crate::checksums::crc32;
use crate::common::{
    ErrorExt, GetOutcome, Harness, MARKER, MIN_PART, SEGMENT, StoreKind, assert_s3_error, b64, data_with_marker,
    etag_of, multipart_etag, shared, try_get, upload_multipart,
};
use crate::listing::list_all;
use crate::{BUCKET, harness};

per_store!(
    out_of_order_through_two_proxies,
    ranges_and_part_numbers,
    part_rules,
    list_parts_and_uploads,
    abort_leaves_nothing,
    reserved_prefix_is_hidden_and_refused,
    empty_single_part_upload,
    part_digests,
);

/// Where the proxy keeps uploads in progress (FORMAT.md §5.4).
const RESERVED: &str = ".escrow-mpu/";

// === helpers ===

/// CreateMultipartUpload; returns the upload id.
pub(crate) async fn create(client: &Client, key: &str) -> String {
    client
        .create_multipart_upload()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("create upload {key}: {}", DisplayErrorContext(&e)))
        .upload_id()
        .expect("upload id")
        .to_string()
}

/// UploadPart that must succeed; returns the part's ETag, checked to be the quoted MD5 of `data`.
pub(crate) async fn put_part(client: &Client, key: &str, id: &str, number: i32, data: &[u8]) -> String {
    let out = client
        .upload_part()
        .bucket(BUCKET)
        .key(key)
        .upload_id(id)
        .part_number(number)
        .body(ByteStream::from(data.to_vec()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("upload part {number} of {key}: {}", DisplayErrorContext(&e)));
    let etag = out.e_tag().expect("UploadPart answers an ETag").to_string();
    assert_eq!(etag, etag_of(data), "ETag of part {number} of {key}");
    etag
}

/// A CompleteMultipartUpload part list.
pub(crate) fn parts_list(parts: &[(i32, &str)]) -> CompletedMultipartUpload {
    CompletedMultipartUpload::builder()
        .set_parts(Some(
            parts
                .iter()
                .map(|(n, etag)| CompletedPart::builder().part_number(*n).e_tag(*etag).build())
                .collect(),
        ))
        .build()
}

type CompleteResult = Result<CompleteMultipartUploadOutput, SdkError<CompleteMultipartUploadError, HttpResponse>>;

/// CompleteMultipartUpload with `parts`.
pub(crate) async fn complete(client: &Client, key: &str, id: &str, parts: &[(i32, &str)]) -> CompleteResult {
    client
        .complete_multipart_upload()
        .bucket(BUCKET)
        .key(key)
        .upload_id(id)
        .multipart_upload(parts_list(parts))
        .send()
        .await
}

/// GET (whole) and HEAD of `key` through `client` answer exactly `data` with `etag`.
pub(crate) async fn assert_object(client: &Client, key: &str, data: &[u8], etag: &str, what: &str) {
    let got = client
        .get_object()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{what}: GET {key}: {}", DisplayErrorContext(&e)));
    assert_eq!(got.e_tag(), Some(etag), "{what}: GET ETag");
    assert_eq!(
        got.content_length(),
        Some(data.len() as i64),
        "{what}: GET Content-Length"
    );
    let body = got.body.collect().await.expect("GET body").to_vec();
    assert!(
        body == data,
        "{what}: GET {key}: {} bytes, not the {} uploaded",
        body.len(),
        data.len()
    );
    let head = client
        .head_object()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{what}: HEAD {key}: {}", DisplayErrorContext(&e)));
    assert_eq!(head.e_tag(), Some(etag), "{what}: HEAD ETag");
    assert_eq!(
        head.content_length(),
        Some(data.len() as i64),
        "{what}: HEAD Content-Length"
    );
}

/// The listing of `prefix` through ListObjectsV2 is exactly `want` (key, plaintext size, ETag).
async fn assert_listed(client: &Client, prefix: &str, want: &[(&str, usize, &str)], what: &str) {
    let listed = list_all(client, Some(prefix), None, None).await;
    let want: Vec<(String, i64, Option<String>)> = want
        .iter()
        .map(|(k, size, etag)| (k.to_string(), *size as i64, Some(etag.to_string())))
        .collect();
    assert_eq!(listed, want, "{what}: ListObjectsV2 {prefix}");
}

/// The store key of upload `id`'s marker, and of its part `number`.
fn marker_key(id: &str) -> String {
    format!("{RESERVED}u/{id}")
}
fn part_key(id: &str, number: i32) -> String {
    format!("{RESERVED}p/{id}/{number:05}")
}

/// Whether the store holds an object under `key` (a file where the store keeps it).
fn stored(h: &Harness, key: &str) -> bool {
    h.object_path(BUCKET, key).is_file()
}

/// The files where the store keeps the bucket's objects. (s3s-fs keeps its metadata sidecars
/// beside the buckets, and never deletes them; they are not objects.)
fn bucket_files(h: &Harness) -> BTreeSet<PathBuf> {
    shared::files_under(&h.store_dir.join(BUCKET)).into_iter().collect()
}

/// Asserts that nothing of upload `id` is left in the store.
fn assert_upload_gone(h: &Harness, id: &str, parts: &[i32], what: &str) {
    assert!(
        !stored(h, &marker_key(id)),
        "{what}: the upload's marker is still stored"
    );
    for &n in parts {
        assert!(!stored(h, &part_key(id, n)), "{what}: part {n} is still stored");
    }
}

/// Part numbers and upload ids of ListMultipartUploads under `prefix`.
async fn uploads(client: &Client, prefix: Option<&str>) -> BTreeSet<(String, String)> {
    let out = client
        .list_multipart_uploads()
        .bucket(BUCKET)
        .set_prefix(prefix.map(String::from))
        .send()
        .await
        .unwrap_or_else(|e| panic!("ListMultipartUploads: {}", DisplayErrorContext(&e)));
    assert_eq!(out.is_truncated(), Some(false));
    out.uploads()
        .iter()
        .map(|u| {
            (
                u.key().expect("upload key").to_string(),
                u.upload_id().expect("upload id").to_string(),
            )
        })
        .collect()
}

// === cases ===

/// Part 3 first through a second proxy, then parts 1 and 2 at once through different proxies;
/// completed through the second proxy. Both proxies, and a freshly restarted one, agree on the
/// bytes, the ETag and the size.
async fn out_of_order_through_two_proxies(kind: StoreKind) {
    let mut h = harness(kind).await;
    let peer = h.start_peer().await;
    let parts = [
        data_with_marker(MIN_PART),
        data_with_marker(MIN_PART),
        data_with_marker(3 * SEGMENT + 123),
    ];
    let whole = parts.concat();
    let etag = multipart_etag(&[&parts[0], &parts[1], &parts[2]]);
    let key = "mpu/two-proxies";

    let id = create(&h.client, key).await;
    // Through the second proxy, with the SDK's default aws-chunked body and CRC32 trailer.
    let e3 = put_part(&peer.client, key, &id, 3, &parts[2]).await;
    let (e2, e1) = tokio::join!(
        put_part(&peer.plain_client, key, &id, 2, &parts[1]),
        put_part(&h.plain_client, key, &id, 1, &parts[0]),
    );

    // The upload lives in the store: either proxy sees all of it.
    for n in 1..=3 {
        assert!(stored(&h, &part_key(&id, n)), "part {n} is in the store");
    }
    let listed = h
        .plain_client
        .list_parts()
        .bucket(BUCKET)
        .key(key)
        .upload_id(&id)
        .send()
        .await
        .expect("ListParts");
    let sizes: Vec<(i32, i64)> = listed
        .parts()
        .iter()
        .map(|p| (p.part_number().unwrap(), p.size().unwrap()))
        .collect();
    assert_eq!(
        sizes,
        [(1, MIN_PART as i64), (2, MIN_PART as i64), (3, parts[2].len() as i64)]
    );
    assert_eq!(
        uploads(&peer.plain_client, None).await,
        BTreeSet::from([(key.to_string(), id.clone())])
    );
    h.assert_no_plaintext(MARKER);

    let done = complete(&peer.client, key, &id, &[(1, &e1), (2, &e2), (3, &e3)])
        .await
        .unwrap_or_else(|e| panic!("complete: {}", e.describe()));
    assert_eq!(done.e_tag(), Some(etag.as_str()), "CompleteMultipartUpload ETag");
    assert_upload_gone(&h, &id, &[1, 2, 3], "after completion");
    assert!(uploads(&h.client, None).await.is_empty(), "no upload left in progress");

    let clients = [
        ("proxy 1, default", &h.client),
        ("proxy 1, plain", &h.plain_client),
        ("proxy 2, default", &peer.client),
        ("proxy 2, plain", &peer.plain_client),
    ];
    for (label, client) in clients {
        assert_object(client, key, &whole, &etag, label).await;
    }
    let want = [(key, whole.len(), etag.as_str())];
    assert_listed(&h.client, "mpu/", &want, "proxy 1").await;
    assert_listed(&peer.client, "mpu/", &want, "proxy 2").await;

    // A fresh process knows nothing of the object: sizes and ETag come from the store alone.
    h.restart_proxy().await;
    assert_listed(&h.plain_client, "mpu/", &want, "restarted proxy").await;
    h.restart_proxy().await;
    let v1 = h
        .plain_client
        .list_objects()
        .bucket(BUCKET)
        .prefix("mpu/")
        .send()
        .await
        .expect("ListObjects v1");
    let v1: Vec<(&str, Option<i64>, Option<&str>)> = v1
        .contents()
        .iter()
        .map(|o| (o.key().unwrap(), o.size(), o.e_tag()))
        .collect();
    assert_eq!(
        v1,
        [(key, Some(whole.len() as i64), Some(etag.as_str()))],
        "restarted proxy: ListObjects v1"
    );
    h.restart_proxy().await;
    let head = h
        .plain_client
        .head_object()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .expect("HEAD from a restarted proxy");
    assert_eq!(head.e_tag(), Some(etag.as_str()));
    assert_eq!(head.content_length(), Some(whole.len() as i64));
    assert_object(&h.plain_client, key, &whole, &etag, "restarted proxy").await;
    peer.stop().await;
    h.assert_no_plaintext(MARKER);
}

/// Ranges across part boundaries, and `partNumber` reads.
async fn ranges_and_part_numbers(kind: StoreKind) {
    let h = harness(kind).await;
    let parts = [
        data_with_marker(MIN_PART),
        data_with_marker(MIN_PART),
        data_with_marker(2 * SEGMENT + 500),
    ];
    let refs = [&parts[0][..], &parts[1][..], &parts[2][..]];
    let data = parts.concat();
    let etag = multipart_etag(&refs);
    let key = "mpu/ranges";
    assert_eq!(upload_multipart(&h.plain_client, BUCKET, key, &refs).await, etag);

    let (p, size, last) = (MIN_PART, data.len(), parts[2].len());
    let cases: Vec<(&str, String, usize, usize)> = vec![
        ("first byte of part 2", format!("bytes={p}-{p}"), p, p + 1),
        (
            "last of part 1, first of part 2",
            format!("bytes={}-{p}", p - 1),
            p - 1,
            p + 1,
        ),
        (
            "a segment boundary inside part 2",
            format!("bytes={}-{}", p + SEGMENT - 1, p + SEGMENT),
            p + SEGMENT - 1,
            p + SEGMENT + 1,
        ),
        (
            "spanning 3 parts",
            format!("bytes={}-{}", p - 10, 2 * p + 9),
            p - 10,
            2 * p + 10,
        ),
        ("all but the ends", format!("bytes=1-{}", size - 2), 1, size - 1),
        ("suffix in the last part", "bytes=-100".into(), size - 100, size),
        (
            "suffix across parts 2 and 3",
            format!("bytes=-{}", last + 10),
            size - last - 10,
            size,
        ),
        ("open from part 1", format!("bytes={}-", p - 5), p - 5, size),
        ("open from part 3", format!("bytes={}-", 2 * p), 2 * p, size),
        ("first byte", "bytes=0-0".into(), 0, 1),
        ("last byte", format!("bytes={}-", size - 1), size - 1, size),
    ];
    for (label, client) in h.clients() {
        for (what, range, start, end) in &cases {
            match try_get(client, BUCKET, key, Some(range)).await {
                GetOutcome::Complete {
                    body,
                    content_length,
                    content_range,
                    etag: got_etag,
                } => {
                    assert_eq!(content_length, (end - start) as i64, "{label} {what}: Content-Length");
                    assert_eq!(
                        content_range,
                        Some(format!("bytes {start}-{}/{size}", end - 1)),
                        "{label} {what}: Content-Range"
                    );
                    assert_eq!(got_etag.as_deref(), Some(etag.as_str()), "{label} {what}: ETag");
                    assert!(body[..] == data[*start..*end], "{label} {what} ({range}): wrong bytes");
                }
                other => panic!("{label} {what} ({range}): {other:?}"),
            }
        }
    }
    let head = h
        .plain_client
        .head_object()
        .bucket(BUCKET)
        .key(key)
        .range(format!("bytes={}-{p}", p - 1))
        .send()
        .await
        .expect("ranged HEAD");
    assert_eq!(head.content_length(), Some(2));
    assert_eq!(
        head.content_range(),
        Some(format!("bytes {}-{p}/{size}", p - 1).as_str())
    );

    // partNumber: one part, with the object's ETag and part count.
    let mut start = 0;
    for (i, part) in parts.iter().enumerate() {
        let n = i as i32 + 1;
        let range = format!("bytes {start}-{}/{size}", start + part.len() - 1);
        for (label, client) in h.clients() {
            let got = client
                .get_object()
                .bucket(BUCKET)
                .key(key)
                .part_number(n)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{label}: GET partNumber={n}: {}", e.describe()));
            assert_eq!(got.content_length(), Some(part.len() as i64), "{label} part {n}");
            assert_eq!(got.content_range(), Some(range.as_str()), "{label} part {n}");
            assert_eq!(got.parts_count(), Some(3), "{label} part {n}: x-amz-mp-parts-count");
            assert_eq!(got.e_tag(), Some(etag.as_str()), "{label} part {n}");
            assert!(
                got.body.collect().await.expect("body").to_vec() == *part,
                "{label}: partNumber={n}: wrong bytes"
            );
        }
        let head = h
            .plain_client
            .head_object()
            .bucket(BUCKET)
            .key(key)
            .part_number(n)
            .send()
            .await
            .unwrap_or_else(|e| panic!("HEAD partNumber={n}: {}", e.describe()));
        assert_eq!(head.content_length(), Some(part.len() as i64), "HEAD part {n}");
        assert_eq!(head.content_range(), Some(range.as_str()), "HEAD part {n}");
        assert_eq!(head.parts_count(), Some(3), "HEAD part {n}: x-amz-mp-parts-count");
        start += part.len();
    }
    let e = h
        .plain_client
        .get_object()
        .bucket(BUCKET)
        .key(key)
        .part_number(4)
        .send()
        .await
        .expect_err("partNumber past the last part");
    assert_eq!(
        (e.http_status(), e.s3_code().as_str()),
        (400, "InvalidPartNumber"),
        "{}",
        e.describe()
    );
    h.assert_no_plaintext(MARKER);
}

/// S3's part rules, each refusal leaving the upload completable; replaced parts; NoSuchUpload.
async fn part_rules(kind: StoreKind) {
    let h = harness(kind).await;
    let c = &h.plain_client;
    let key = "mpu/rules";
    let (d1, d2, d3) = (
        data_with_marker(MIN_PART),
        data_with_marker(200_000),
        data_with_marker(300_000),
    );
    let id = create(c, key).await;

    for n in [0, 10_001] {
        assert_s3_error(
            c.upload_part()
                .bucket(BUCKET)
                .key(key)
                .upload_id(&id)
                .part_number(n)
                .body(ByteStream::from(d2.clone()))
                .send()
                .await,
            400,
            "InvalidArgument",
            &format!("part number {n}"),
        );
    }
    let e1 = put_part(c, key, &id, 1, &d1).await;
    let e2 = put_part(c, key, &id, 2, &d2).await;
    let e3 = put_part(c, key, &id, 3, &d3).await;
    let wrong = etag_of(b"not this part");

    /// What is wrong, the part list, the expected error code.
    type Refusal<'a> = (&'a str, Vec<(i32, &'a str)>, &'a str);
    let refused: Vec<Refusal> = vec![
        (
            "a small part before the last",
            vec![(1, &e1), (2, &e2), (3, &e3)],
            "EntityTooSmall",
        ),
        ("an unknown part number", vec![(1, &e1), (4, &e3)], "InvalidPart"),
        ("a wrong ETag", vec![(1, &wrong), (3, &e3)], "InvalidPart"),
        ("another part's ETag", vec![(1, &e3), (3, &e3)], "InvalidPart"),
        ("descending part numbers", vec![(3, &e3), (1, &e1)], "InvalidPartOrder"),
        ("a part listed twice", vec![(1, &e1), (1, &e1)], "InvalidPartOrder"),
    ];
    for (what, parts, code) in &refused {
        assert_s3_error(complete(c, key, &id, parts).await, 400, code, what);
    }
    // No part at all: an empty part list, and no list.
    let e = complete(c, key, &id, &[]).await.expect_err("an empty part list");
    assert_eq!(e.http_status(), 400, "{}", e.describe());
    assert!(
        ["MalformedXML", "InvalidRequest", "InvalidPart"].contains(&e.s3_code().as_str()),
        "an empty part list: {}",
        e.describe()
    );
    let e = c
        .complete_multipart_upload()
        .bucket(BUCKET)
        .key(key)
        .upload_id(&id)
        .send()
        .await
        .expect_err("no part list");
    assert_eq!(e.http_status(), 400, "{}", e.describe());

    // The refusals changed nothing.
    let listed = c
        .list_parts()
        .bucket(BUCKET)
        .key(key)
        .upload_id(&id)
        .send()
        .await
        .expect("ListParts after refusals");
    let got: Vec<(i32, i64, &str)> = listed
        .parts()
        .iter()
        .map(|p| (p.part_number().unwrap(), p.size().unwrap(), p.e_tag().unwrap()))
        .collect();
    let sizes = [d1.len(), d2.len(), d3.len()].map(|l| l as i64);
    assert_eq!(
        got,
        [
            (1, sizes[0], e1.as_str()),
            (2, sizes[1], e2.as_str()),
            (3, sizes[2], e3.as_str())
        ],
        "the parts after refused completions"
    );

    // Uploading part 3 again replaces it; its old ETag no longer completes.
    let d3b = data_with_marker(250_000);
    let e3b = put_part(c, key, &id, 3, &d3b).await;
    assert_ne!(e3, e3b);
    let listed = c
        .list_parts()
        .bucket(BUCKET)
        .key(key)
        .upload_id(&id)
        .send()
        .await
        .expect("ListParts");
    let p3 = listed
        .parts()
        .iter()
        .find(|p| p.part_number() == Some(3))
        .expect("part 3 listed");
    assert_eq!((p3.size(), p3.e_tag()), (Some(d3b.len() as i64), Some(e3b.as_str())));
    assert_s3_error(
        complete(c, key, &id, &[(1, &e1), (3, &e3)]).await,
        400,
        "InvalidPart",
        "the replaced part's old ETag",
    );

    // Upload ids that do not exist, or belong to another key.
    for (bogus_key, bogus_id) in [
        (key, "0123456789abcdef0123456789abcdef"),
        (key, "not-an-upload-id"),
        (key, "../../u/0123456789abcdef0123456789abcdef"),
        ("mpu/another-key", id.as_str()),
    ] {
        let what = format!("upload {bogus_id:?} of {bogus_key}");
        assert_s3_error(
            c.upload_part()
                .bucket(BUCKET)
                .key(bogus_key)
                .upload_id(bogus_id)
                .part_number(1)
                .body(ByteStream::from(d2.clone()))
                .send()
                .await,
            404,
            "NoSuchUpload",
            &format!("UploadPart, {what}"),
        );
        assert_s3_error(
            complete(c, bogus_key, bogus_id, &[(1, &e1), (3, &e3b)]).await,
            404,
            "NoSuchUpload",
            &format!("Complete, {what}"),
        );
        assert_s3_error(
            c.list_parts()
                .bucket(BUCKET)
                .key(bogus_key)
                .upload_id(bogus_id)
                .send()
                .await,
            404,
            "NoSuchUpload",
            &format!("ListParts, {what}"),
        );
        assert_s3_error(
            c.abort_multipart_upload()
                .bucket(BUCKET)
                .key(bogus_key)
                .upload_id(bogus_id)
                .send()
                .await,
            404,
            "NoSuchUpload",
            &format!("Abort, {what}"),
        );
    }
    assert_s3_error(
        c.head_object().bucket(BUCKET).key("mpu/another-key").send().await,
        404,
        "",
        "completing under another key created nothing",
    );

    // After all those refusals the upload completes: parts 1 and 3 (gaps are allowed).
    let etag = multipart_etag(&[&d1, &d3b]);
    let done = complete(c, key, &id, &[(1, &e1), (3, &e3b)])
        .await
        .unwrap_or_else(|e| panic!("complete after refusals: {}", e.describe()));
    assert_eq!(done.e_tag(), Some(etag.as_str()));
    let data = [d1.clone(), d3b.clone()].concat();
    assert_object(c, key, &data, &etag, "completed after refusals").await;
    assert_upload_gone(&h, &id, &[1, 2, 3], "after completion");

    // A completed upload is gone.
    assert_s3_error(
        c.upload_part()
            .bucket(BUCKET)
            .key(key)
            .upload_id(&id)
            .part_number(2)
            .body(ByteStream::from(d2.clone()))
            .send()
            .await,
        404,
        "NoSuchUpload",
        "UploadPart after completion",
    );
    assert_s3_error(
        complete(c, key, &id, &[(1, &e1), (3, &e3b)]).await,
        404,
        "NoSuchUpload",
        "Complete again",
    );
    assert_s3_error(
        c.list_parts().bucket(BUCKET).key(key).upload_id(&id).send().await,
        404,
        "NoSuchUpload",
        "ListParts after completion",
    );

    // An aborted upload is gone, and the object under its key is untouched.
    let id2 = create(c, key).await;
    let e1b = put_part(c, key, &id2, 1, &d2).await;
    c.abort_multipart_upload()
        .bucket(BUCKET)
        .key(key)
        .upload_id(&id2)
        .send()
        .await
        .unwrap_or_else(|e| panic!("abort: {}", e.describe()));
    assert_s3_error(
        c.upload_part()
            .bucket(BUCKET)
            .key(key)
            .upload_id(&id2)
            .part_number(2)
            .body(ByteStream::from(d2.clone()))
            .send()
            .await,
        404,
        "NoSuchUpload",
        "UploadPart after abort",
    );
    assert_s3_error(
        complete(c, key, &id2, &[(1, &e1b)]).await,
        404,
        "NoSuchUpload",
        "Complete after abort",
    );
    assert_s3_error(
        c.list_parts().bucket(BUCKET).key(key).upload_id(&id2).send().await,
        404,
        "NoSuchUpload",
        "ListParts after abort",
    );
    assert_s3_error(
        c.abort_multipart_upload()
            .bucket(BUCKET)
            .key(key)
            .upload_id(&id2)
            .send()
            .await,
        404,
        "NoSuchUpload",
        "Abort again",
    );
    assert_object(c, key, &data, &etag, "after an abort of another upload of the key").await;
    h.assert_no_plaintext(MARKER);
}

async fn list_parts_and_uploads(kind: StoreKind) {
    let h = harness(kind).await;
    let c = &h.client;
    let key = "lp/a";
    let id = create(c, key).await;
    let numbers = [1, 2, 3, 5, 8];
    let mut want = Vec::new();
    for n in numbers {
        let data = data_with_marker(1000 + 111 * n as usize);
        let etag = put_part(c, key, &id, n, &data).await;
        want.push((n, data.len() as i64, etag));
    }
    let list = |max: Option<i32>, marker: Option<&str>| {
        c.list_parts()
            .bucket(BUCKET)
            .key(key)
            .upload_id(&id)
            .set_max_parts(max)
            .set_part_number_marker(marker.map(String::from))
            .send()
    };
    let all = list(None, None).await.expect("ListParts");
    let got: Vec<(i32, i64, String)> = all
        .parts()
        .iter()
        .map(|p| {
            (
                p.part_number().unwrap(),
                p.size().unwrap(),
                p.e_tag().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(all.is_truncated(), Some(false));
    assert_eq!((all.key(), all.upload_id()), (Some(key), Some(id.as_str())));

    // Two at a time: [1, 2], [3, 5], [8].
    let mut marker: Option<String> = None;
    let mut pages = Vec::new();
    loop {
        let page = list(Some(2), marker.as_deref()).await.expect("ListParts page");
        let numbers: Vec<i32> = page.parts().iter().map(|p| p.part_number().unwrap()).collect();
        let truncated = page.is_truncated() == Some(true);
        pages.push((numbers, truncated));
        if !truncated {
            break;
        }
        marker = page.next_part_number_marker().map(String::from);
        assert!(pages.len() < 5, "paging does not end");
    }
    assert_eq!(
        pages,
        [(vec![1, 2], true), (vec![3, 5], true), (vec![8], false)],
        "ListParts pages of 2"
    );
    let past = list(None, Some("8")).await.expect("ListParts past the last part");
    assert!(past.parts().is_empty() && past.is_truncated() == Some(false));

    // ListMultipartUploads: every upload in progress, by key and id, filtered by prefix.
    let id2 = create(c, key).await;
    let id_b = create(c, "lp/b").await;
    let id_c = create(&h.plain_client, "other/c").await;
    let entry = |k: &str, i: &str| (k.to_string(), i.to_string());
    let lp = BTreeSet::from([entry(key, &id), entry(key, &id2), entry("lp/b", &id_b)]);
    let mut everything = lp.clone();
    everything.insert(entry("other/c", &id_c));
    assert_eq!(uploads(c, None).await, everything);
    assert_eq!(uploads(c, Some("lp/")).await, lp);
    assert_eq!(
        uploads(c, Some("other/")).await,
        BTreeSet::from([entry("other/c", &id_c)])
    );
    assert!(uploads(c, Some("none/")).await.is_empty());

    // A completed upload leaves the list; aborted ones too.
    let small = data_with_marker(777);
    let e = put_part(c, "lp/b", &id_b, 1, &small).await;
    complete(c, "lp/b", &id_b, &[(1, &e)]).await.expect("complete lp/b");
    everything.remove(&entry("lp/b", &id_b));
    assert_eq!(uploads(c, None).await, everything);
    for (k, i) in &everything {
        c.abort_multipart_upload()
            .bucket(BUCKET)
            .key(k)
            .upload_id(i)
            .send()
            .await
            .unwrap_or_else(|e| panic!("abort {k}: {}", e.describe()));
    }
    assert!(uploads(c, None).await.is_empty());
    let listed = list_all(c, None, None, None).await;
    assert_eq!(
        listed,
        [("lp/b".to_string(), small.len() as i64, Some(multipart_etag(&[&small])))]
    );
    h.assert_no_plaintext(MARKER);
}

/// AbortMultipartUpload deletes the marker and every part from the store.
async fn abort_leaves_nothing(kind: StoreKind) {
    let h = harness(kind).await;
    let kept = data_with_marker(1000);
    h.put(BUCKET, "kept", &kept).await;
    let before = bucket_files(&h);
    let key = "mpu/aborted";
    let id = create(&h.client, key).await;
    put_part(&h.plain_client, key, &id, 1, &data_with_marker(100_000)).await;
    put_part(&h.client, key, &id, 2, &data_with_marker(SEGMENT + 1)).await;
    put_part(&h.client, key, &id, 2, &data_with_marker(SEGMENT + 2)).await;
    assert!(stored(&h, &marker_key(&id)), "the marker is in the store");
    for n in [1, 2] {
        assert!(stored(&h, &part_key(&id, n)), "part {n} is in the store");
    }
    let during = bucket_files(&h);
    assert_eq!(during.len(), before.len() + 3, "a marker and two parts: {during:?}");
    h.assert_no_plaintext(MARKER);

    h.plain_client
        .abort_multipart_upload()
        .bucket(BUCKET)
        .key(key)
        .upload_id(&id)
        .send()
        .await
        .unwrap_or_else(|e| panic!("abort: {}", e.describe()));
    assert_upload_gone(&h, &id, &[1, 2], "after abort");
    assert_eq!(
        bucket_files(&h),
        before,
        "the store holds what it held before the upload"
    );
    assert!(uploads(&h.client, None).await.is_empty());
    assert_s3_error(
        h.client.head_object().bucket(BUCKET).key(key).send().await,
        404,
        "",
        "an aborted upload created no object",
    );
    assert!(h.get(BUCKET, "kept").await == kept);
    h.assert_no_plaintext(MARKER);
}

/// Uploads in progress are objects under `.escrow-mpu/` in the store: never listed, and not a
/// key clients can read or write.
async fn reserved_prefix_is_hidden_and_refused(kind: StoreKind) {
    let h = harness(kind).await;
    let c = &h.plain_client;
    // Keys on either side of the reserved prefix in listing order.
    let user_keys = [".escrow-mpu-lookalike", ".escrow-mpu0", "a", "dir/b", "z"];
    for k in user_keys {
        h.put(BUCKET, k, &data_with_marker(100)).await;
    }
    let key = "hidden/obj";
    let id = create(c, key).await;
    let (d1, d2) = (data_with_marker(MIN_PART), data_with_marker(1000));
    let e1 = put_part(c, key, &id, 1, &d1).await;
    let e2 = put_part(c, key, &id, 2, &d2).await;
    assert!(stored(&h, &marker_key(&id)) && stored(&h, &part_key(&id, 2)));

    let keys = |l: &[(String, i64, Option<String>)]| l.iter().map(|(k, ..)| k.clone()).collect::<Vec<_>>();
    for max_keys in [None, Some(1), Some(2)] {
        let listed = list_all(c, None, None, max_keys).await;
        assert_eq!(keys(&listed), user_keys, "ListObjectsV2 max-keys {max_keys:?}");
    }
    assert!(
        list_all(c, Some(RESERVED), None, None).await.is_empty(),
        "prefix {RESERVED}"
    );
    assert!(list_all(c, Some(".escrow-mpu/u/"), None, None).await.is_empty());
    assert_eq!(
        keys(&list_all(c, Some(".escrow-mpu"), None, None).await),
        [".escrow-mpu-lookalike", ".escrow-mpu0"]
    );
    let after = c
        .list_objects_v2()
        .bucket(BUCKET)
        .start_after(".escrow-mpu-lookalike")
        .send()
        .await
        .expect("start-after");
    let after: Vec<&str> = after.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(after, [".escrow-mpu0", "a", "dir/b", "z"]);

    // With a delimiter, page by page: the reserved prefix never rolls up into a common prefix.
    let want_rolled = [".escrow-mpu-lookalike", ".escrow-mpu0", "a", "dir/", "z"];
    for max_keys in [1, 1000] {
        let mut token: Option<String> = None;
        let mut entries = Vec::new();
        for _ in 0..20 {
            let page = c
                .list_objects_v2()
                .bucket(BUCKET)
                .delimiter("/")
                .max_keys(max_keys)
                .set_continuation_token(token.clone())
                .send()
                .await
                .expect("ListObjectsV2 with delimiter");
            let mut here: Vec<String> = page
                .contents()
                .iter()
                .filter_map(|o| o.key().map(String::from))
                .collect();
            here.extend(
                page.common_prefixes()
                    .iter()
                    .filter_map(|p| p.prefix().map(String::from)),
            );
            here.sort();
            entries.extend(here);
            if page.is_truncated() != Some(true) {
                break;
            }
            token = page.next_continuation_token().map(String::from);
        }
        assert_eq!(entries, want_rolled, "ListObjectsV2 delimiter / max-keys {max_keys}");
    }
    let reserved_prefix = c
        .list_objects_v2()
        .bucket(BUCKET)
        .prefix(RESERVED)
        .delimiter("/")
        .send()
        .await
        .expect("ListObjectsV2 prefix .escrow-mpu/ delimiter /");
    assert!(reserved_prefix.contents().is_empty() && reserved_prefix.common_prefixes().is_empty());

    // ListObjects v1, with and without a delimiter, page by page.
    for (delimiter, want) in [(None, user_keys.to_vec()), (Some("/"), want_rolled.to_vec())] {
        for max_keys in [1, 1000] {
            let mut marker: Option<String> = None;
            let mut entries = Vec::new();
            for _ in 0..20 {
                let page = c
                    .list_objects()
                    .bucket(BUCKET)
                    .set_delimiter(delimiter.map(String::from))
                    .max_keys(max_keys)
                    .set_marker(marker.clone())
                    .send()
                    .await
                    .expect("ListObjects v1");
                let mut here: Vec<String> = page
                    .contents()
                    .iter()
                    .filter_map(|o| o.key().map(String::from))
                    .collect();
                here.extend(
                    page.common_prefixes()
                        .iter()
                        .filter_map(|p| p.prefix().map(String::from)),
                );
                here.sort();
                let last = here.last().cloned();
                entries.extend(here);
                if page.is_truncated() != Some(true) {
                    break;
                }
                marker = page.next_marker().map(String::from).or(last);
                assert!(marker.is_some(), "v1: a truncated page without a marker");
            }
            assert_eq!(
                entries, want,
                "ListObjects v1 delimiter {delimiter:?} max-keys {max_keys}"
            );
        }
        let reserved = c
            .list_objects()
            .bucket(BUCKET)
            .prefix(RESERVED)
            .set_delimiter(delimiter.map(String::from))
            .send()
            .await
            .expect("ListObjects v1 prefix .escrow-mpu/");
        assert!(reserved.contents().is_empty() && reserved.common_prefixes().is_empty());
    }

    // Reserved keys are refused for every object operation.
    let marker = marker_key(&id);
    let part = part_key(&id, 2);
    for k in [&marker, &part, &format!("{RESERVED}anything")] {
        assert_s3_error(
            c.put_object()
                .bucket(BUCKET)
                .key(k)
                .body(ByteStream::from(data_with_marker(10)))
                .send()
                .await,
            400,
            "InvalidArgument",
            &format!("PUT {k}"),
        );
        assert_s3_error(
            c.get_object().bucket(BUCKET).key(k).send().await,
            400,
            "InvalidArgument",
            &format!("GET {k}"),
        );
        assert_s3_error(
            c.head_object().bucket(BUCKET).key(k).send().await,
            400,
            "",
            &format!("HEAD {k}"),
        );
        assert_s3_error(
            c.delete_object().bucket(BUCKET).key(k).send().await,
            400,
            "InvalidArgument",
            &format!("DELETE {k}"),
        );
        assert_s3_error(
            c.create_multipart_upload().bucket(BUCKET).key(k).send().await,
            400,
            "InvalidArgument",
            &format!("CreateMultipartUpload {k}"),
        );
        assert_s3_error(
            c.copy_object()
                .bucket(BUCKET)
                .key(k)
                .copy_source(format!("{BUCKET}/a"))
                .send()
                .await,
            400,
            "InvalidArgument",
            &format!("CopyObject to {k}"),
        );
        assert_s3_error(
            c.copy_object()
                .bucket(BUCKET)
                .key("copied")
                .copy_source(format!("{BUCKET}/{k}"))
                .send()
                .await,
            400,
            "InvalidArgument",
            &format!("CopyObject from {k}"),
        );
    }
    let deleted = c
        .delete_objects()
        .bucket(BUCKET)
        .delete(
            Delete::builder()
                .objects(ObjectIdentifier::builder().key(&marker).build().expect("identifier"))
                .build()
                .expect("delete"),
        )
        .send()
        .await
        .expect("DeleteObjects");
    let errors: Vec<(Option<&str>, Option<&str>)> = deleted.errors().iter().map(|e| (e.key(), e.code())).collect();
    assert_eq!(
        errors,
        [(Some(marker.as_str()), Some("InvalidArgument"))],
        "DeleteObjects of the marker"
    );
    assert!(deleted.deleted().is_empty());
    assert_s3_error(
        c.get_object().bucket(BUCKET).key("copied").send().await,
        404,
        "NoSuchKey",
        "no copy was made",
    );

    // The upload is intact and completes; the completed object is listed like any other.
    let etag = multipart_etag(&[&d1, &d2]);
    let done = complete(c, key, &id, &[(1, &e1), (2, &e2)])
        .await
        .unwrap_or_else(|e| panic!("complete: {}", e.describe()));
    assert_eq!(done.e_tag(), Some(etag.as_str()));
    assert_object(c, key, &[d1, d2].concat(), &etag, "completed").await;
    let listed = list_all(c, None, None, None).await;
    assert_eq!(
        keys(&listed),
        [".escrow-mpu-lookalike", ".escrow-mpu0", "a", "dir/b", "hidden/obj", "z"]
    );
    h.assert_no_plaintext(MARKER);
}

/// A single empty part: the S3 ETag of one empty part, size 0 everywhere.
async fn empty_single_part_upload(kind: StoreKind) {
    let mut h = harness(kind).await;
    let etag = multipart_etag(&[b""]);
    assert_eq!(etag, format!("\"{}-1\"", hex::encode(Md5::digest(Md5::digest(b"")))));
    let mut want = Vec::new();
    for (label, client) in h.clients() {
        let key = format!("empty/{label}");
        let id = create(client, &key).await;
        let e = put_part(client, &key, &id, 1, b"").await;
        let done = complete(client, &key, &id, &[(1, &e)])
            .await
            .unwrap_or_else(|e| panic!("{label}: complete: {}", e.describe()));
        assert_eq!(done.e_tag(), Some(etag.as_str()), "{label}");
        assert_object(client, &key, b"", &etag, label).await;
        match try_get(client, BUCKET, &key, Some("bytes=0-0")).await {
            GetOutcome::Refused { status, code, .. } => {
                assert_eq!((status, code.as_str()), (416, "InvalidRange"), "{label}");
            }
            other => panic!("{label}: a range of an empty object: {other:?}"),
        }
        want.push((key, 0i64, Some(etag.clone())));
    }
    want.sort();
    assert_eq!(list_all(&h.client, Some("empty/"), None, None).await, want);
    h.restart_proxy().await;
    assert_eq!(
        list_all(&h.client, Some("empty/"), None, None).await,
        want,
        "listed by a restarted proxy"
    );
    for (key, ..) in &want {
        assert_object(&h.plain_client, key, b"", &etag, "restarted proxy").await;
    }
    h.assert_no_plaintext(MARKER);
}

/// UploadPart with Content-MD5 and x-amz-checksum-crc32: verified against the part's plaintext;
/// a wrong one is `BadDigest` and stores nothing (nor replaces the part already there).
async fn part_digests(kind: StoreKind) {
    let h = harness(kind).await;
    let c = &h.plain_client;
    let key = "mpu/digests";
    let (d1, d2, other) = (
        data_with_marker(MIN_PART),
        data_with_marker(2 * SEGMENT + 7),
        data_with_marker(SEGMENT),
    );
    let id = create(c, key).await;
    let md5 = |d: &[u8]| b64(&Md5::digest(d));
    let part = |n: i32, data: &[u8]| {
        c.upload_part()
            .bucket(BUCKET)
            .key(key)
            .upload_id(&id)
            .part_number(n)
            .body(ByteStream::from(data.to_vec()))
    };

    let e1 = part(1, &d1)
        .content_md5(md5(&d1))
        .send()
        .await
        .unwrap_or_else(|e| panic!("part 1 with its Content-MD5: {}", e.describe()))
        .e_tag()
        .map(String::from);
    assert_eq!(e1, Some(etag_of(&d1)));
    let e1 = e1.unwrap();
    assert_s3_error(
        part(2, &d2).content_md5(md5(&other)).send().await,
        400,
        "BadDigest",
        "part 2 with a wrong Content-MD5",
    );
    assert!(!stored(&h, &part_key(&id, 2)), "a refused part was stored");
    let out = part(2, &d2)
        .checksum_crc32(crc32(&d2))
        .send()
        .await
        .unwrap_or_else(|e| panic!("part 2 with its CRC32: {}", e.describe()));
    assert_eq!(
        out.checksum_crc32(),
        Some(crc32(&d2).as_str()),
        "UploadPart answers the CRC32"
    );
    let e2 = out.e_tag().expect("ETag").to_string();

    // Wrong digests on parts already there: refused, and the parts stay as they were.
    assert_s3_error(
        part(2, &other).checksum_crc32(crc32(&d2)).send().await,
        400,
        "BadDigest",
        "part 2 again with a wrong CRC32",
    );
    assert_s3_error(
        part(1, &other).content_md5(md5(&d1)).send().await,
        400,
        "BadDigest",
        "part 1 again with a wrong Content-MD5",
    );
    assert_s3_error(
        part(3, &other).checksum_crc32(crc32(&d1)).send().await,
        400,
        "BadDigest",
        "part 3 with a wrong CRC32",
    );
    assert!(!stored(&h, &part_key(&id, 3)), "a refused part was stored");
    let listed = c
        .list_parts()
        .bucket(BUCKET)
        .key(key)
        .upload_id(&id)
        .send()
        .await
        .expect("ListParts");
    let got: Vec<(i32, i64, &str, Option<&str>)> = listed
        .parts()
        .iter()
        .map(|p| {
            (
                p.part_number().unwrap(),
                p.size().unwrap(),
                p.e_tag().unwrap(),
                p.checksum_crc32(),
            )
        })
        .collect();
    let crc = crc32(&d2);
    assert_eq!(
        got,
        [
            (1, d1.len() as i64, e1.as_str(), None),
            (2, d2.len() as i64, e2.as_str(), Some(crc.as_str())),
        ]
    );

    // Completes with the parts that were accepted (part 2 with its checksum named).
    let etag = multipart_etag(&[&d1, &d2]);
    let done = c
        .complete_multipart_upload()
        .bucket(BUCKET)
        .key(key)
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .parts(CompletedPart::builder().part_number(1).e_tag(&e1).build())
                .parts(
                    CompletedPart::builder()
                        .part_number(2)
                        .e_tag(&e2)
                        .checksum_crc32(crc32(&d2))
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("complete: {}", e.describe()));
    assert_eq!(done.e_tag(), Some(etag.as_str()));
    assert_object(c, key, &[d1, d2].concat(), &etag, "completed").await;
    assert_upload_gone(&h, &id, &[1, 2, 3], "after completion");
    h.assert_no_plaintext(MARKER);
}
