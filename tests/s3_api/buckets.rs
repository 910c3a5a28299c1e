//! Buckets: create, head, list, delete (empty and not), and every request against a bucket or
//! key that does not exist.

use aws_sdk_s3::primitives::ByteStream;

use crate::common::{ErrorExt, MARKER, StoreKind, assert_s3_error, data_with_marker};
use crate::{BUCKET, harness};

per_store!(buckets);

async fn buckets(kind: StoreKind) {
    let h = harness(kind).await;
    let c = &h.client;

    c.create_bucket().bucket("alpha").send().await.expect("create alpha");
    c.head_bucket().bucket("alpha").send().await.expect("head alpha");
    let names = bucket_names(c).await;
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
    // The store's own answer: s3s-fs (the primary of the S3 shapes) says `BucketAlreadyExists`,
    // the proxy's fs store `BucketAlreadyOwnedByYou`.
    let want = if kind == StoreKind::Fs {
        "BucketAlreadyOwnedByYou"
    } else {
        "BucketAlreadyExists"
    };
    assert_eq!(e.s3_code(), want, "{}", e.describe());

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
    // ListObjects (V1) with `encoding-type=url`, as botocore sends it: the proxy's probe of how
    // the store encodes listed keys must not create the bucket (s3s-fs makes a key's directories).
    assert_s3_error(
        c.list_objects()
            .bucket("missing-bucket")
            .encoding_type(aws_sdk_s3::types::EncodingType::Url)
            .send()
            .await,
        404,
        "NoSuchBucket",
        "list (V1, url-encoded) missing bucket",
    );
    assert_s3_error(
        c.head_bucket().bucket("missing-bucket").send().await,
        404,
        "",
        "a listing created no bucket",
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
    let names = bucket_names(c).await;
    assert!(!names.contains(&"alpha".to_string()), "{names:?}");

    h.put(BUCKET, "keep", &data).await;
    h.assert_no_plaintext(MARKER);
}

/// The bucket names ListBuckets answers, which must succeed.
async fn bucket_names(c: &aws_sdk_s3::Client) -> Vec<String> {
    c.list_buckets()
        .send()
        .await
        .expect("list buckets")
        .buckets()
        .iter()
        .filter_map(|b| b.name().map(str::to_string))
        .collect()
}
