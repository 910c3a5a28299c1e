//! Whole objects: PUT/HEAD/GET round trips at segment boundaries through both clients (and
//! listed again by a restarted proxy), a 100 MiB streamed object, and deletes.

use std::collections::BTreeMap;

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use sha2::{Digest as _, Sha256};

use crate::checksums::crc32;
use crate::common::{
    BigObject, GetOutcome, MARKER, SEGMENT, StoreKind, assert_s3_error, data_with_marker, etag_of, try_get,
};
use crate::listing::list_all;
use crate::{BUCKET, harness};

per_store!(round_trips, deletes, delete_objects_takes_at_most_1000_keys);

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

/// DeleteObjects names at most 1,000 keys (S3: 400 MalformedXML); a longer list deletes nothing.
async fn delete_objects_takes_at_most_1000_keys(kind: StoreKind) {
    let h = harness(kind).await;
    h.put(BUCKET, "kept", b"still here").await;
    let ids = |n: usize| -> Vec<ObjectIdentifier> {
        std::iter::once("kept".to_string())
            .chain((1..n).map(|i| format!("absent-{i}")))
            .map(|k| ObjectIdentifier::builder().key(k).build().expect("object identifier"))
            .collect()
    };
    let delete = |n: usize| {
        h.plain_client
            .delete_objects()
            .bucket(BUCKET)
            .delete(
                Delete::builder()
                    .set_objects(Some(ids(n)))
                    .quiet(true)
                    .build()
                    .expect("delete"),
            )
            .send()
    };
    assert_s3_error(delete(1001).await, 400, "MalformedXML", "DeleteObjects of 1,001 keys");
    assert_eq!(h.get(BUCKET, "kept").await, b"still here", "nothing was deleted");
    let out = delete(1000).await.expect("DeleteObjects of 1,000 keys");
    assert!(out.errors().is_empty(), "{:?}", out.errors());
    let head = h.plain_client.head_object().bucket(BUCKET).key("kept").send().await;
    assert_s3_error(head, 404, "", "the first of 1,000 keys was deleted");
}
