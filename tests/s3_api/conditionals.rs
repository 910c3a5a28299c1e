//! Conditional GET and HEAD: If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since,
//! and S3's rules for combining them.

use aws_sdk_s3::primitives::DateTime;

use crate::common::{MARKER, StoreKind, assert_s3_error, data_with_marker};
use crate::{BUCKET, harness};

per_store!(conditionals, last_modified_is_the_sealed_write_time);

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
    // A 304 carries the object's ETag and Last-Modified, as S3 sends them (caches revalidate
    // with them).
    let e = get().if_none_match(&etag).send().await.expect_err("304");
    let raw = e.raw_response().expect("a response");
    assert_eq!(raw.headers().get("etag"), Some(etag.as_str()), "304 ETag");
    let lm = raw.headers().get("last-modified").expect("304 Last-Modified");
    assert_eq!(
        DateTime::from_str(lm, aws_sdk_s3::primitives::DateTimeFormat::HttpDate).expect("http date"),
        modified,
        "304 Last-Modified"
    );

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

/// `Last-Modified` is the write time sealed into the object's record: one value in HEAD, GET
/// and listings (sync tools compare them), used by the conditional headers, and out of the
/// store's reach — a store that moves its own clock back a year changes nothing.
async fn last_modified_is_the_sealed_write_time(kind: StoreKind) {
    let h = harness(kind).await;
    let start = std::time::SystemTime::now();
    h.put(BUCKET, "sealed-time", &data_with_marker(3000)).await;
    let end = std::time::SystemTime::now();
    if kind == StoreKind::S3sFs {
        // s3s-fs answers with the file's modification time: make the store claim a year ago.
        let year_ago = start - std::time::Duration::from_secs(365 * 24 * 3600);
        std::fs::File::options()
            .write(true)
            .open(h.object_path(BUCKET, "sealed-time"))
            .expect("open the stored file")
            .set_modified(year_ago)
            .expect("set the store's time");
    }
    let c = &h.plain_client;
    let head = c
        .head_object()
        .bucket(BUCKET)
        .key("sealed-time")
        .send()
        .await
        .expect("head");
    let get = c
        .get_object()
        .bucket(BUCKET)
        .key("sealed-time")
        .send()
        .await
        .expect("get");
    let list = c
        .list_objects_v2()
        .bucket(BUCKET)
        .prefix("sealed-time")
        .send()
        .await
        .expect("list");
    let listed = list.contents()[0].last_modified().copied();
    let at = *head.last_modified().expect("HEAD Last-Modified");
    assert_eq!(get.last_modified().copied(), Some(at), "GET and HEAD agree");
    assert_eq!(listed, Some(at), "the listing and HEAD agree");
    let secs = |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!(
        (secs(start)..=secs(end)).contains(&at.secs()),
        "Last-Modified {} is the write time ({}..={}), not the store's",
        at.secs(),
        secs(start),
        secs(end)
    );
    // The conditions use it too: modified since a day ago, so no 304; not unmodified since.
    let day_ago = DateTime::from_secs(secs(start) - 24 * 3600);
    c.get_object()
        .bucket(BUCKET)
        .key("sealed-time")
        .if_modified_since(day_ago)
        .send()
        .await
        .expect("modified since a day ago");
    let refused = c
        .get_object()
        .bucket(BUCKET)
        .key("sealed-time")
        .if_unmodified_since(day_ago)
        .send()
        .await;
    assert_s3_error(refused, 412, "PreconditionFailed", "unmodified since a day ago");
    h.assert_no_plaintext(MARKER);
}
