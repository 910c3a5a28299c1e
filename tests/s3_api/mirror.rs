//! The mirror itself (s3s-fs primary, fs-store mirror), through the real SDK: copies with reads
//! served by the mirror, an outage of the primary during writes, deletes, multipart and copies
//! (nothing acknowledged is lost, the stores converge by themselves afterwards), the `both`
//! mode refusing, `async` catching up, and a copy that fails authentication in one store being
//! served from the other.

use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use escrow_proxy::mirror::{ReadMode, WriteMode};

use crate::BUCKET;
use crate::common::{Harness, MARKER, data_with_marker, upload_multipart};

/// Bound on the stores converging after an outage ends (probe every 2 s, drain every 1 s).
const CONVERGE: Duration = Duration::from_secs(60);

async fn mirrored(read: ReadMode, write: WriteMode) -> Harness {
    let h = Harness::mirrored(read, write).await;
    h.create_bucket(BUCKET).await;
    h
}

async fn replication_status(h: &Harness, key: &str) -> Option<String> {
    let head = h
        .client
        .head_object()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .expect("head");
    head.replication_status().map(|s| s.as_str().to_string())
}

/// Polls (bounded) until every key in `keys` is `COMPLETED` and `check` holds.
async fn until_converged(h: &Harness, keys: &[&str], check: impl Fn() -> bool) {
    let deadline = Instant::now() + CONVERGE;
    loop {
        let mut done = check();
        for key in keys {
            done &= replication_status(h, key).await.as_deref() == Some("COMPLETED");
        }
        if done {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the stores did not converge within {CONVERGE:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_work_when_reads_go_to_the_mirror() {
    let h = mirrored(ReadMode::Mirror, WriteMode::Sync).await;
    let data = data_with_marker(300_000);
    h.put(BUCKET, "src", &data).await;
    h.client
        .copy_object()
        .bucket(BUCKET)
        .key("dst")
        .copy_source(format!("{BUCKET}/src"))
        .send()
        .await
        .expect("CopyObject with read = mirror");
    assert_eq!(h.get(BUCKET, "dst").await, data);
    let part = data_with_marker(5 << 20);
    let etag = upload_multipart(&h.client, BUCKET, "mp", &[&part, b"tail"]).await;
    assert!(etag.ends_with("-2\""), "{etag}");
    h.client
        .copy_object()
        .bucket(BUCKET)
        .key("mp-copy")
        .copy_source(format!("{BUCKET}/mp"))
        .send()
        .await
        .expect("CopyObject of a multipart object with read = mirror");
    assert_eq!(h.get(BUCKET, "mp-copy").await, [&part[..], b"tail"].concat());
    for key in ["src", "dst", "mp", "mp-copy"] {
        assert_eq!(
            h.primary_stored_body(BUCKET, key),
            h.mirror_stored_body(BUCKET, key),
            "{key}: both stores hold the same ciphertext"
        );
    }
    h.assert_no_plaintext(MARKER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_of_the_primary_loses_no_acknowledged_write() {
    let h = mirrored(ReadMode::Primary, WriteMode::Sync).await;
    let (a1, a2, b, c) = (
        data_with_marker(70_000),
        data_with_marker(90_000),
        data_with_marker(1000),
        data_with_marker(200_000),
    );
    h.put(BUCKET, "a", &a1).await;
    h.put(BUCKET, "b", &b).await;

    h.primary_outage(true);
    h.put(BUCKET, "a", &a2).await;
    h.put(BUCKET, "c", &c).await;
    h.client
        .delete_object()
        .bucket(BUCKET)
        .key("b")
        .send()
        .await
        .expect("delete during the outage");
    let part = data_with_marker(5 << 20);
    upload_multipart(&h.client, BUCKET, "d", &[&part, b"end"]).await;
    h.client
        .copy_object()
        .bucket(BUCKET)
        .key("e")
        .copy_source(format!("{BUCKET}/c"))
        .send()
        .await
        .expect("copy during the outage");
    h.create_bucket("escrow-made-in-outage").await;
    h.put("escrow-made-in-outage", "k", b"in a bucket made during the outage")
        .await;
    let buckets = h
        .client
        .list_buckets()
        .send()
        .await
        .expect("list buckets during the outage");
    assert!(
        buckets
            .buckets()
            .iter()
            .any(|b| b.name() == Some("escrow-made-in-outage"))
    );
    // Everything reads back from the mirror, and the listing shows it.
    assert_eq!(h.get(BUCKET, "a").await, a2);
    assert_eq!(h.get(BUCKET, "c").await, c);
    assert_eq!(h.get(BUCKET, "d").await, [&part[..], b"end"].concat());
    assert_eq!(h.get(BUCKET, "e").await, c);
    let listed = h
        .client
        .list_objects_v2()
        .bucket(BUCKET)
        .send()
        .await
        .expect("list during the outage");
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["a", "c", "d", "e"]);
    assert_eq!(replication_status(&h, "c").await.as_deref(), Some("PENDING"));
    assert!(h.primary_stored_body(BUCKET, "c").is_none(), "the primary was down");

    h.primary_outage(false);
    let same = |key: &str| {
        let p = h.primary_stored_body(BUCKET, key);
        p.is_some() && p == h.mirror_stored_body(BUCKET, key)
    };
    until_converged(&h, &["a", "c", "d", "e"], || {
        ["a", "c", "d", "e"].iter().all(|k| same(k))
            && h.primary_stored_body(BUCKET, "b").is_none()
            && h.primary_stored_body("escrow-made-in-outage", "k").is_some()
    })
    .await;
    // Now reads from the primary alone give the acknowledged writes.
    assert_eq!(h.get(BUCKET, "a").await, a2);
    let listed = h.client.list_objects_v2().bucket(BUCKET).send().await.expect("list");
    assert_eq!(listed.key_count(), Some(4));
    h.assert_no_plaintext(MARKER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_both_fails_rather_than_diverge() {
    let h = mirrored(ReadMode::Primary, WriteMode::Both).await;
    h.primary_outage(true);
    let refused = h
        .client
        .put_object()
        .bucket(BUCKET)
        .key("x")
        .body(ByteStream::from(data_with_marker(10_000)))
        .send()
        .await;
    assert!(refused.is_err(), "write = both with the primary down must fail");
    // (The mirror may have taken the body before the primary's failure showed; it then keeps a
    // repair record, so the stores converge instead of diverging.)
    h.primary_outage(false);
    // Once the probe sees the primary back, writes succeed again.
    let deadline = Instant::now() + CONVERGE;
    loop {
        let put = h
            .client
            .put_object()
            .bucket(BUCKET)
            .key("x")
            .body(ByteStream::from(data_with_marker(10_000)))
            .send()
            .await;
        if put.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "writes did not resume: {put:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let p = h.primary_stored_body(BUCKET, "x");
    assert!(
        p.is_some() && p == h.mirror_stored_body(BUCKET, "x"),
        "both stores hold the write"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_async_acknowledges_then_catches_up() {
    let h = mirrored(ReadMode::Primary, WriteMode::Async).await;
    let data = data_with_marker(400_000);
    h.put(BUCKET, "late", &data).await;
    until_converged(&h, &["late"], || {
        h.mirror_stored_body(BUCKET, "late").is_some()
            && h.mirror_stored_body(BUCKET, "late") == h.primary_stored_body(BUCKET, "late")
    })
    .await;
    assert_eq!(h.get(BUCKET, "late").await, data);
    h.assert_no_plaintext(MARKER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_that_fails_authentication_is_served_from_the_other_store() {
    let h = mirrored(ReadMode::Primary, WriteMode::Sync).await;
    let data = data_with_marker(50_000);
    h.put(BUCKET, "doc", &data).await;
    // The primary's copy alone is damaged near its end (its trailer): opening it fails
    // authentication.
    let primary_file = h.object_path(BUCKET, "doc");
    let mut bytes = std::fs::read(&primary_file).expect("read the primary's copy");
    let at = bytes.len() - 20;
    bytes[at] ^= 1;
    std::fs::write(&primary_file, bytes).expect("damage the primary's copy");
    assert_eq!(h.get(BUCKET, "doc").await, data, "the mirror's intact copy is served");
    // The twin: with both copies damaged, nothing is served.
    let path = h.mirror_dir.as_ref().expect("mirror").join(BUCKET);
    for entry in std::fs::read_dir(&path).expect("mirror bucket dir") {
        let file = entry.expect("entry").path();
        let mut bytes = std::fs::read(&file).expect("read");
        let at = bytes.len() - 20;
        bytes[at] ^= 1;
        std::fs::write(&file, bytes).expect("write");
    }
    let got = h.client.get_object().bucket(BUCKET).key("doc").send().await;
    assert!(got.is_err(), "both copies damaged: the read must fail");
}

/// Reads right after an outage, while the repairs of what the primary missed are still pending
/// (records drained about a second after the probe sees the primary back): a key the primary
/// holds stale is read from the mirror, a key deleted during the outage stays deleted, and
/// listings agree — on every read until the stores have converged, and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_after_an_outage_never_serve_what_the_primary_missed() {
    const N: usize = 12;
    let h = mirrored(ReadMode::Primary, WriteMode::Sync).await;
    let (old, new) = (data_with_marker(40_000), data_with_marker(50_000));
    for i in 0..N {
        h.put(BUCKET, &format!("k{i:02}"), &old).await;
        h.put(BUCKET, &format!("gone{i:02}"), &old).await;
    }
    h.primary_outage(true);
    for i in 0..N {
        h.put(BUCKET, &format!("k{i:02}"), &new).await;
        h.client
            .delete_object()
            .bucket(BUCKET)
            .key(format!("gone{i:02}"))
            .send()
            .await
            .expect("delete during the outage");
    }
    h.primary_outage(false);
    let expected: Vec<String> = (0..N).map(|i| format!("k{i:02}")).collect();
    let keys: Vec<&str> = expected.iter().map(String::as_str).collect();
    let deadline = Instant::now() + CONVERGE;
    let mut rounds = 0;
    loop {
        for i in 0..N {
            assert_eq!(h.get(BUCKET, &format!("k{i:02}")).await, new, "k{i:02}: a stale read");
            let gone = h
                .client
                .get_object()
                .bucket(BUCKET)
                .key(format!("gone{i:02}"))
                .send()
                .await;
            let code = gone
                .as_ref()
                .err()
                .and_then(|e| e.as_service_error())
                .map(|e| e.is_no_such_key());
            assert_eq!(code, Some(true), "gone{i:02}: a deleted object came back");
        }
        let listed = h.client.list_objects_v2().bucket(BUCKET).send().await.expect("list");
        let listed: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
        assert_eq!(listed, keys, "the listing after the outage");
        rounds += 1;
        let mut converged = (0..N).all(|i| {
            let key = format!("k{i:02}");
            let p = h.primary_stored_body(BUCKET, &key);
            p.is_some() && p == h.mirror_stored_body(BUCKET, &key)
        }) && (0..N).all(|i| h.primary_stored_body(BUCKET, &format!("gone{i:02}")).is_none());
        for key in &keys {
            converged &= replication_status(&h, key).await.as_deref() == Some("COMPLETED");
        }
        if converged && rounds > 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stores did not converge within {CONVERGE:?}"
        );
    }
    h.assert_no_plaintext(MARKER);
}
