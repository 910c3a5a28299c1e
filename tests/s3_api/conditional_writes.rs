//! Conditional writes: `If-None-Match: *` and `If-Match` on PutObject and
//! CompleteMultipartUpload (412 when the condition fails, nothing written), the refusals
//! (`If-None-Match: <etag>` on a write), the same conditions on CopyObject's destination, and on a mirror: the primary
//! arbitrates, and with it down the answer is 503 with nothing written anywhere. The race of
//! many writers through two proxy processes is in `tests/cli/conditional_race.rs`.

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use escrow_proxy::mirror::{ReadMode, WriteMode};

use crate::common::{Harness, StoreKind, assert_s3_error, data_with_marker, etag_of};
use crate::{BUCKET, harness};

per_store!(
    put_if_none_match,
    put_if_match,
    put_refusals,
    copy_conditionally,
    complete_multipart_conditionally
);

fn put(c: &Client, key: &str, data: &[u8]) -> aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder {
    c.put_object()
        .bucket(BUCKET)
        .key(key)
        .body(ByteStream::from(data.to_vec()))
}

async fn put_if_none_match(kind: StoreKind) {
    let h = harness(kind).await;
    let c = &h.client;
    let first = data_with_marker(3000);
    let second = data_with_marker(4000);
    let out = put(c, "create-only", &first)
        .if_none_match("*")
        .send()
        .await
        .expect("If-None-Match: * on an absent key");
    assert_eq!(out.e_tag(), Some(etag_of(&first).as_str()));
    assert_s3_error(
        put(c, "create-only", &second).if_none_match("*").send().await,
        412,
        "PreconditionFailed",
        "If-None-Match: * on an existing key",
    );
    assert_eq!(h.get(BUCKET, "create-only").await, first, "the object is unchanged");
    // After a delete, the key is free again.
    c.delete_object()
        .bucket(BUCKET)
        .key("create-only")
        .send()
        .await
        .expect("delete");
    put(c, "create-only", &second)
        .if_none_match("*")
        .send()
        .await
        .expect("If-None-Match: * after a delete");
    assert_eq!(h.get(BUCKET, "create-only").await, second);
    h.assert_no_plaintext(crate::common::MARKER);
}

async fn put_if_match(kind: StoreKind) {
    let h = harness(kind).await;
    let c = &h.client;
    let (v1, v2, v3) = (data_with_marker(1000), data_with_marker(2000), data_with_marker(3000));
    let e1 = h.put(BUCKET, "cas", &v1).await;

    // A wrong ETag: 412, nothing written.
    assert_s3_error(
        put(c, "cas", &v2).if_match(etag_of(&v3)).send().await,
        412,
        "PreconditionFailed",
        "If-Match with another ETag",
    );
    assert_eq!(h.get(BUCKET, "cas").await, v1);

    // The right ETag (the plaintext one the client saw): written.
    let e2 = put(c, "cas", &v2)
        .if_match(&e1)
        .send()
        .await
        .expect("If-Match with the current ETag")
        .e_tag()
        .expect("etag")
        .to_string();
    assert_eq!(h.get(BUCKET, "cas").await, v2);
    // The old ETag no longer matches: a lost update is refused.
    assert_s3_error(
        put(c, "cas", &v3).if_match(&e1).send().await,
        412,
        "PreconditionFailed",
        "If-Match with a replaced ETag",
    );
    assert_eq!(h.get(BUCKET, "cas").await, v2);
    // Unquoted ETags match too.
    put(c, "cas", &v3)
        .if_match(e2.trim_matches('"'))
        .send()
        .await
        .expect("If-Match, unquoted");
    assert_eq!(h.get(BUCKET, "cas").await, v3);

    // If-Match: * needs an object; If-Match on a missing key fails (as s3s-fs and Ceph answer).
    put(c, "cas", &v1)
        .if_match("*")
        .send()
        .await
        .expect("If-Match: * on an existing key");
    assert_s3_error(
        put(c, "absent", &v1).if_match("*").send().await,
        412,
        "PreconditionFailed",
        "If-Match: * on a missing key",
    );
    assert_s3_error(
        put(c, "absent", &v1).if_match(&e1).send().await,
        412,
        "PreconditionFailed",
        "If-Match on a missing key",
    );
    assert_s3_error(
        c.head_object().bucket(BUCKET).key("absent").send().await,
        404,
        "",
        "nothing was written",
    );
}

async fn put_refusals(kind: StoreKind) {
    let h = harness(kind).await;
    let c = &h.client;
    let data = data_with_marker(1000);
    let etag = h.put(BUCKET, "src", &data).await;
    // If-None-Match takes only * on a write.
    assert_s3_error(
        put(c, "refused", &data).if_none_match(&etag).send().await,
        501,
        "NotImplemented",
        "If-None-Match: <etag> on PutObject",
    );
    assert_s3_error(
        put(c, "refused", &data).if_none_match("*").if_match(&etag).send().await,
        501,
        "NotImplemented",
        "If-Match with If-None-Match on PutObject",
    );
    // Copies take only * in If-None-Match too.
    assert_s3_error(
        c.copy_object()
            .if_none_match(&etag)
            .bucket(BUCKET)
            .key("refused")
            .copy_source(format!("{BUCKET}/src"))
            .send()
            .await,
        501,
        "NotImplemented",
        "If-None-Match: <etag> on CopyObject",
    );
    assert_s3_error(
        c.head_object().bucket(BUCKET).key("refused").send().await,
        404,
        "",
        "nothing was written",
    );
}

fn copy(c: &Client, key: &str) -> aws_sdk_s3::operation::copy_object::builders::CopyObjectFluentBuilder {
    c.copy_object()
        .bucket(BUCKET)
        .key(key)
        .copy_source(format!("{BUCKET}/src"))
}

/// A destination condition on CopyObject holds as on PutObject (412, nothing written), for
/// the server-side copy and for one sealed again (the destination under an SSE-C key would
/// need HTTPS; a metadata replacement keeps it server-side).
async fn copy_conditionally(kind: StoreKind) {
    let h = harness(kind).await;
    let c = &h.client;
    let src = data_with_marker(5000);
    let other = data_with_marker(6000);
    let src_etag = h.put(BUCKET, "src", &src).await;
    copy(c, "dest")
        .if_none_match("*")
        .send()
        .await
        .expect("If-None-Match: * onto an absent key");
    assert_eq!(h.get(BUCKET, "dest").await, src);
    h.put(BUCKET, "dest", &other).await;
    assert_s3_error(
        copy(c, "dest").if_none_match("*").send().await,
        412,
        "PreconditionFailed",
        "If-None-Match: * onto an existing key",
    );
    assert_s3_error(
        copy(c, "dest").if_match(&src_etag).send().await,
        412,
        "PreconditionFailed",
        "If-Match with another object's ETag",
    );
    assert_s3_error(
        copy(c, "absent").if_match(&src_etag).send().await,
        412,
        "PreconditionFailed",
        "If-Match onto a missing key",
    );
    assert_eq!(h.get(BUCKET, "dest").await, other, "refused copies changed nothing");
    assert_s3_error(
        c.head_object().bucket(BUCKET).key("absent").send().await,
        404,
        "",
        "nothing was written",
    );
    let out = copy(c, "dest")
        .if_match(etag_of(&other))
        .metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace)
        .content_type("text/plain")
        .send()
        .await
        .expect("If-Match with the destination's ETag");
    assert_eq!(
        out.copy_object_result().and_then(|r| r.e_tag()),
        Some(src_etag.as_str())
    );
    assert_eq!(h.get(BUCKET, "dest").await, src);
    h.assert_no_plaintext(crate::common::MARKER);
}

/// Starts an upload of `parts` (uploaded) and returns its id and the completion's part list.
async fn upload(c: &Client, key: &str, parts: &[&[u8]]) -> (String, CompletedMultipartUpload) {
    let id = c
        .create_multipart_upload()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .expect("create upload")
        .upload_id()
        .expect("id")
        .to_string();
    let mut done = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let n = i as i32 + 1;
        let out = c
            .upload_part()
            .bucket(BUCKET)
            .key(key)
            .upload_id(&id)
            .part_number(n)
            .body(ByteStream::from(part.to_vec()))
            .send()
            .await
            .expect("upload part");
        done.push(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(out.e_tag().expect("etag"))
                .build(),
        );
    }
    (id, CompletedMultipartUpload::builder().set_parts(Some(done)).build())
}

async fn complete_multipart_conditionally(kind: StoreKind) {
    let h = harness(kind).await;
    let c = &h.client;
    let big = data_with_marker(5 << 20);
    let old = data_with_marker(100);
    let old_etag = h.put(BUCKET, "mp", &old).await;
    let complete = |id: &str, parts: &CompletedMultipartUpload| {
        c.complete_multipart_upload()
            .bucket(BUCKET)
            .key("mp")
            .upload_id(id)
            .multipart_upload(parts.clone())
    };

    // If-None-Match: * on an existing key: 412, the object unchanged, the upload still there.
    let (id, parts) = upload(c, "mp", &[&big, b"tail"]).await;
    assert_s3_error(
        complete(&id, &parts).if_none_match("*").send().await,
        412,
        "PreconditionFailed",
        "CompleteMultipartUpload If-None-Match: * on an existing key",
    );
    assert_eq!(h.get(BUCKET, "mp").await, old);
    // A wrong If-Match: 412 too.
    assert_s3_error(
        complete(&id, &parts).if_match(etag_of(b"other")).send().await,
        412,
        "PreconditionFailed",
        "CompleteMultipartUpload If-Match with another ETag",
    );
    // The right If-Match: completed (the refused attempts left the upload completable).
    complete(&id, &parts)
        .if_match(&old_etag)
        .send()
        .await
        .expect("CompleteMultipartUpload If-Match with the current ETag");
    let mut whole = big.clone();
    whole.extend_from_slice(b"tail");
    assert_eq!(h.get(BUCKET, "mp").await, whole);

    // If-None-Match: * on a fresh key: completed.
    let (id, parts) = upload(c, "mp-new", &[&big, b"end"]).await;
    c.complete_multipart_upload()
        .bucket(BUCKET)
        .key("mp-new")
        .upload_id(&id)
        .multipart_upload(parts)
        .if_none_match("*")
        .send()
        .await
        .expect("CompleteMultipartUpload If-None-Match: * on an absent key");
    assert_eq!(h.get(BUCKET, "mp-new").await.len(), big.len() + 3);
    h.assert_no_plaintext(crate::common::MARKER);
}

/// On a mirror the primary arbitrates: with it down, a conditional write answers 503 and
/// nothing reaches the mirror (never an unconditional write, never the mirror alone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrored_conditional_write_needs_the_primary() {
    let h = Harness::mirrored(ReadMode::Primary, WriteMode::Sync).await;
    h.create_bucket(BUCKET).await;
    let data = data_with_marker(2000);
    // With both up, the write reaches both stores.
    put(&h.client, "both", &data)
        .if_none_match("*")
        .send()
        .await
        .expect("conditional write, both up");
    assert!(h.primary_stored_body(BUCKET, "both").is_some());
    assert!(
        h.mirror_stored_body(BUCKET, "both").is_some(),
        "the mirror follows the primary"
    );
    assert_eq!(
        h.primary_stored_body(BUCKET, "both"),
        h.mirror_stored_body(BUCKET, "both"),
        "the same ciphertext in both stores"
    );

    h.primary_outage(true);
    assert_s3_error(
        put(&h.client, "k", &data).if_none_match("*").send().await,
        503,
        "",
        "conditional write with the primary down",
    );
    assert!(
        h.mirror_stored_body(BUCKET, "k").is_none(),
        "nothing written to the mirror"
    );
    // An unconditional write still succeeds (the mirror takes it, with a repair record).
    h.put(BUCKET, "k", &data).await;
    h.primary_outage(false);
}
