//! Store quirks the proxy absorbs: s3s-fs answers 500 ("Is a directory") for a read of a key
//! that is only a prefix of other keys; through the proxy that is a plain 404 NoSuchKey, and a
//! mirror does not take it for an outage of its primary.

use aws_sdk_s3::primitives::ByteStream;

use crate::common::{StoreKind, assert_s3_error, data_with_marker};
use crate::{BUCKET, harness};

per_store!(a_prefix_of_other_keys_is_a_missing_key);

async fn a_prefix_of_other_keys_is_a_missing_key(kind: StoreKind) {
    let h = harness(kind).await;
    let c = &h.client;
    let data = data_with_marker(1000);
    h.put(BUCKET, "dir/inner", &data).await;
    assert_s3_error(
        c.head_object().bucket(BUCKET).key("dir").send().await,
        404,
        "",
        "HEAD of a prefix of other keys",
    );
    assert_s3_error(
        c.get_object().bucket(BUCKET).key("dir").send().await,
        404,
        "NoSuchKey",
        "GET of a prefix of other keys",
    );
    assert_s3_error(
        c.get_object().bucket(BUCKET).key("dir").range("bytes=0-1").send().await,
        404,
        "NoSuchKey",
        "ranged GET of a prefix of other keys",
    );
    assert_eq!(h.get(BUCKET, "dir/inner").await, data);
    // The store is still believed up: a conditional write, which needs the primary, succeeds.
    c.put_object()
        .bucket(BUCKET)
        .key("after")
        .body(ByteStream::from(data.clone()))
        .if_none_match("*")
        .send()
        .await
        .expect("conditional write after the quirk");
}
