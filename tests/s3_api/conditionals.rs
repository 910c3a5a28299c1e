//! Conditional GET and HEAD: If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since,
//! and S3's rules for combining them.

use aws_sdk_s3::primitives::DateTime;

use crate::common::{MARKER, StoreKind, assert_s3_error, data_with_marker};
use crate::{BUCKET, harness};

per_store!(conditionals);

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
