//! Partial reads: `Range` (`a-b`, `a-`, `-n`, past the end) through both clients and raw HTTP, a
//! ranged HEAD, and `partNumber`.

use std::time::Duration;

use crate::auth::presign_get;
use crate::common::{ErrorExt, GetOutcome, MARKER, SEGMENT, StoreKind, data_with_marker, etag_of, try_get};
use crate::{BUCKET, harness};

per_store!(ranges, part_numbers, ranges_after_another_process_rewrote_the_object);

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
        (400, "InvalidPartNumber"),
        "{}",
        e.describe()
    );
    h.assert_no_plaintext(MARKER);
}

/// Ranged GETs of one download (a HEAD, then ranges) while another proxy process replaces the
/// object (new content, same size): the next ranged GET returns the new bytes, never the old
/// ones or an error.
async fn ranges_after_another_process_rewrote_the_object(kind: StoreKind) {
    let h = harness(kind).await;
    let peer = h.start_peer().await;
    let size = 3 * SEGMENT + 100;
    let old = data_with_marker(size);
    let mut new = data_with_marker(size);
    new.reverse();
    h.put(BUCKET, "moving", &old).await;
    let range = |r: &str| {
        let client = h.client.clone();
        let r = r.to_string();
        async move {
            let got = client
                .get_object()
                .bucket(BUCKET)
                .key("moving")
                .range(r)
                .send()
                .await
                .expect("ranged get");
            got.body.collect().await.expect("body").into_bytes().to_vec()
        }
    };
    // HEAD, then ranges: what a parallel download does.
    h.client
        .head_object()
        .bucket(BUCKET)
        .key("moving")
        .send()
        .await
        .expect("head");
    assert_eq!(range("bytes=100-70000").await, &old[100..70001]);
    assert_eq!(range("bytes=70000-140000").await, &old[70000..140001]);
    // Another proxy process replaces the object; this one must serve the new version.
    crate::common::put_object(&peer.client, BUCKET, "moving", &new).await;
    assert_eq!(range("bytes=100-70000").await, &new[100..70001]);
    assert_eq!(range("bytes=70000-140000").await, &new[70000..140001]);
    peer.stop().await;
    h.assert_no_plaintext(MARKER);
}
