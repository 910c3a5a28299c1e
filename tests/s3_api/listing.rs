//! ListObjectsV2 and ListObjects (v1): paging, prefixes, delimiters, start-after, markers,
//! `encoding-type=url`, with plaintext sizes and ETags.

use std::collections::BTreeMap;

use aws_sdk_s3::Client;
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::types::EncodingType;

use crate::common::{ErrorExt, Harness, MARKER, StoreKind, data_with_marker, etag_of, url_decode};
use crate::{BUCKET, harness};

per_store!(listing_v2, listing_v1, listing_url_encoding, empty_delimiter_is_absent);

/// Keys of the listing fixture, in S3 order.
fn listing_keys() -> Vec<String> {
    let mut keys: Vec<String> = (0..25).map(|i| format!("page/key-{i:02}")).collect();
    keys.extend(["dir/a/1", "dir/a/2", "dir/b/1", "dir/c", "top"].map(String::from));
    keys.sort();
    keys
}

/// A harness with the listing fixture uploaded; returns key → (size, ETag).
async fn listing_fixture(kind: StoreKind) -> (Harness, BTreeMap<String, (i64, String)>) {
    let h = harness(kind).await;
    let mut expected = BTreeMap::new();
    for (i, key) in listing_keys().into_iter().enumerate() {
        let data = data_with_marker(100 + i * 7);
        h.put(BUCKET, &key, &data).await;
        expected.insert(key, (data.len() as i64, etag_of(&data)));
    }
    (h, expected)
}

pub(crate) type Listed = Vec<(String, i64, Option<String>)>;

/// Every object under `prefix` through ListObjectsV2 pages of `max_keys`.
pub(crate) async fn list_all(
    client: &Client,
    prefix: Option<&str>,
    delimiter: Option<&str>,
    max_keys: Option<i32>,
) -> Listed {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = client
            .list_objects_v2()
            .bucket(BUCKET)
            .set_prefix(prefix.map(String::from))
            .set_delimiter(delimiter.map(String::from))
            .set_max_keys(max_keys)
            .set_continuation_token(token.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("list: {}", DisplayErrorContext(&e)));
        for o in page.contents() {
            out.push((
                o.key().expect("key").to_string(),
                o.size().expect("size"),
                o.e_tag().map(str::to_string),
            ));
        }
        match page.next_continuation_token() {
            Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
            _ => break,
        }
    }
    out
}

fn assert_listed(listed: &[(String, i64, Option<String>)], expected: &BTreeMap<String, (i64, String)>) {
    for (key, size, etag) in listed {
        let (want_size, want_etag) = &expected[key];
        assert_eq!(size, want_size, "listed size of {key}");
        assert_eq!(etag.as_ref(), Some(want_etag), "listed ETag of {key}");
    }
}

fn prefixes_of(p: &[aws_sdk_s3::types::CommonPrefix]) -> Vec<String> {
    p.iter().filter_map(|p| p.prefix().map(String::from)).collect()
}

async fn listing_v2(kind: StoreKind) {
    let (h, expected) = listing_fixture(kind).await;
    let c = &h.client;

    // A continuation token the store never issued is the client's error (400), not ours.
    if kind == StoreKind::Fs {
        let err = c
            .list_objects_v2()
            .bucket(BUCKET)
            .continuation_token("not-a-token")
            .send()
            .await
            .expect_err("a forged continuation token is refused");
        assert_eq!(err.http_status(), 400, "{}", err.describe());
    }
    let page_keys: Vec<String> = (0..25).map(|i| format!("page/key-{i:02}")).collect();

    // max-keys 7 with continuation tokens: 7, 7, 7, 4.
    let mut token: Option<String> = None;
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    loop {
        let page = c
            .list_objects_v2()
            .bucket(BUCKET)
            .prefix("page/")
            .max_keys(7)
            .set_continuation_token(token.clone())
            .send()
            .await
            .expect("list page");
        let keys: Vec<String> = page.contents().iter().map(|o| o.key().unwrap().to_string()).collect();
        assert_eq!(page.key_count(), Some(keys.len() as i32));
        assert_eq!(page.max_keys(), Some(7));
        sizes.push(keys.len());
        seen.extend(keys);
        let truncated = page.is_truncated() == Some(true);
        assert_eq!(
            truncated,
            page.next_continuation_token().is_some(),
            "token iff truncated"
        );
        if !truncated {
            break;
        }
        token = page.next_continuation_token().map(String::from);
        assert!(sizes.len() < 10, "paging does not end");
    }
    assert_eq!(sizes, vec![7, 7, 7, 4]);
    assert_eq!(seen, page_keys);

    // Prefix alone, and everything.
    let dir = list_all(c, Some("dir/"), None, None).await;
    let keys: Vec<&str> = dir.iter().map(|(k, ..)| k.as_str()).collect();
    assert_eq!(keys, ["dir/a/1", "dir/a/2", "dir/b/1", "dir/c"]);
    let all = list_all(c, None, None, None).await;
    assert_eq!(all.iter().map(|(k, ..)| k.clone()).collect::<Vec<_>>(), listing_keys());
    assert_listed(&all, &expected);

    // Delimiter at the root and under a prefix.
    let root = c
        .list_objects_v2()
        .bucket(BUCKET)
        .delimiter("/")
        .send()
        .await
        .expect("list /");
    assert_eq!(prefixes_of(root.common_prefixes()), ["dir/", "page/"]);
    let keys: Vec<&str> = root.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["top"]);
    assert_eq!(root.key_count(), Some(3));
    let sub = c
        .list_objects_v2()
        .bucket(BUCKET)
        .prefix("dir/")
        .delimiter("/")
        .send()
        .await
        .expect("list dir/ /");
    assert_eq!(prefixes_of(sub.common_prefixes()), ["dir/a/", "dir/b/"]);
    let keys: Vec<&str> = sub.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["dir/c"]);

    // An empty delimiter is no delimiter.
    let flat = c
        .list_objects_v2()
        .bucket(BUCKET)
        .delimiter("")
        .send()
        .await
        .expect("list empty delimiter");
    assert!(flat.common_prefixes().is_empty(), "{:?}", flat.common_prefixes());
    assert_eq!(flat.contents().len(), listing_keys().len());

    // Common prefixes page like keys.
    let mut token: Option<String> = None;
    let mut entries = Vec::new();
    for _ in 0..10 {
        let page = c
            .list_objects_v2()
            .bucket(BUCKET)
            .delimiter("/")
            .max_keys(1)
            .set_continuation_token(token.clone())
            .send()
            .await
            .expect("list / by one");
        entries.extend(prefixes_of(page.common_prefixes()));
        entries.extend(page.contents().iter().filter_map(|o| o.key().map(String::from)));
        if page.is_truncated() != Some(true) {
            break;
        }
        token = page.next_continuation_token().map(String::from);
    }
    assert_eq!(entries, ["dir/", "page/", "top"]);

    // start-after.
    let after = c
        .list_objects_v2()
        .bucket(BUCKET)
        .prefix("page/")
        .start_after("page/key-19")
        .send()
        .await
        .expect("start-after");
    let keys: Vec<&str> = after.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, page_keys[20..].iter().map(String::as_str).collect::<Vec<_>>());

    // Nothing under an unknown prefix.
    let none = c
        .list_objects_v2()
        .bucket(BUCKET)
        .prefix("nope/")
        .send()
        .await
        .expect("empty list");
    assert!(none.contents().is_empty() && none.is_truncated() == Some(false));
    h.assert_no_plaintext(MARKER);
}

async fn listing_v1(kind: StoreKind) {
    let (h, expected) = listing_fixture(kind).await;
    let c = &h.client;
    let mut marker: Option<String> = None;
    let mut seen = Vec::new();
    let mut pages = Vec::new();
    loop {
        let page = c
            .list_objects()
            .bucket(BUCKET)
            .prefix("page/")
            .max_keys(7)
            .set_marker(marker.clone())
            .send()
            .await
            .expect("list v1 page");
        let listed: Listed = page
            .contents()
            .iter()
            .map(|o| {
                (
                    o.key().unwrap().to_string(),
                    o.size().unwrap(),
                    o.e_tag().map(String::from),
                )
            })
            .collect();
        assert_listed(&listed, &expected);
        pages.push(listed.len());
        let last = listed.last().map(|(k, ..)| k.clone());
        seen.extend(listed.into_iter().map(|(k, ..)| k));
        if page.is_truncated() != Some(true) {
            break;
        }
        // NextMarker, or (as S3 allows without a delimiter) the last key.
        marker = page.next_marker().map(String::from).or(last);
        assert!(pages.len() < 10, "paging does not end");
    }
    assert_eq!(pages, vec![7, 7, 7, 4]);
    assert_eq!(seen, (0..25).map(|i| format!("page/key-{i:02}")).collect::<Vec<_>>());

    let root = c
        .list_objects()
        .bucket(BUCKET)
        .delimiter("/")
        .send()
        .await
        .expect("v1 /");
    assert_eq!(prefixes_of(root.common_prefixes()), ["dir/", "page/"]);
    let keys: Vec<&str> = root.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["top"]);

    // Marker paging with a delimiter: a marker inside a rolled-up prefix skips it.
    let page = c
        .list_objects()
        .bucket(BUCKET)
        .delimiter("/")
        .max_keys(1)
        .send()
        .await
        .expect("v1 / by one");
    assert_eq!(prefixes_of(page.common_prefixes()), ["dir/"]);
    assert_eq!(page.is_truncated(), Some(true));
    let next = page.next_marker().expect("NextMarker with a delimiter").to_string();
    let page = c
        .list_objects()
        .bucket(BUCKET)
        .delimiter("/")
        .marker(&next)
        .send()
        .await
        .expect("v1 / after marker");
    assert_eq!(prefixes_of(page.common_prefixes()), ["page/"]);
    let keys: Vec<&str> = page.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["top"]);
    h.assert_no_plaintext(MARKER);
}

async fn listing_url_encoding(kind: StoreKind) {
    let h = harness(kind).await;
    let keys = ["enc/a key with spaces/é ü.txt", "enc/plus+percent%.bin", "enc/plain"];
    for key in keys {
        h.put(BUCKET, key, &data_with_marker(300)).await;
    }
    let c = &h.client;

    let v2 = c
        .list_objects_v2()
        .bucket(BUCKET)
        .prefix("enc/")
        .encoding_type(EncodingType::Url)
        .send()
        .await
        .expect("v2 encoding-type=url");
    assert_eq!(v2.encoding_type(), Some(&EncodingType::Url));
    let mut got: Vec<String> = Vec::new();
    for o in v2.contents() {
        let raw = o.key().expect("key");
        assert!(raw.is_ascii() && !raw.contains(' '), "key not URL-encoded: {raw:?}");
        got.push(url_decode(raw));
    }
    let mut want: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    want.sort();
    assert_eq!(got, want);

    let v2 = c
        .list_objects_v2()
        .bucket(BUCKET)
        .prefix("enc/")
        .delimiter("/")
        .encoding_type(EncodingType::Url)
        .send()
        .await
        .expect("v2 encoding-type=url with delimiter");
    let prefixes = prefixes_of(v2.common_prefixes());
    assert_eq!(prefixes.len(), 1, "{prefixes:?}");
    assert!(!prefixes[0].contains(' '), "{prefixes:?}");
    assert_eq!(url_decode(&prefixes[0]), "enc/a key with spaces/");

    let v1 = c
        .list_objects()
        .bucket(BUCKET)
        .prefix("enc/")
        .encoding_type(EncodingType::Url)
        .send()
        .await
        .expect("v1 encoding-type=url");
    let got: Vec<String> = v1
        .contents()
        .iter()
        .map(|o| {
            let raw = o.key().expect("key");
            assert!(raw.is_ascii() && !raw.contains(' '), "key not URL-encoded: {raw:?}");
            url_decode(raw)
        })
        .collect();
    assert_eq!(got, want);

    // Without encoding-type the keys come back as they are, and each one reads back.
    let plain = list_all(c, Some("enc/"), None, None).await;
    assert_eq!(plain.iter().map(|(k, ..)| k.clone()).collect::<Vec<_>>(), want);
    for key in keys {
        assert_eq!(h.get(BUCKET, key).await.len(), 300, "{key}");
    }
    h.assert_no_plaintext(MARKER);
}

/// S3 treats `delimiter=` (empty) as no delimiter, and its answer carries no `Delimiter`
/// element: nothing rolls up, and the client is not told of a delimiter it did not give.
async fn empty_delimiter_is_absent(kind: StoreKind) {
    let h = harness(kind).await;
    for key in ["d/a", "d/b/c"] {
        h.put(BUCKET, key, b"x").await;
    }
    let c = &h.plain_client;
    let v2 = c
        .list_objects_v2()
        .bucket(BUCKET)
        .prefix("d/")
        .delimiter("")
        .send()
        .await
        .expect("v2");
    assert_eq!(v2.delimiter(), None, "ListObjectsV2 echoes no empty Delimiter");
    assert!(v2.common_prefixes().is_empty());
    assert_eq!(v2.contents().len(), 2);
    let v1 = c
        .list_objects()
        .bucket(BUCKET)
        .prefix("d/")
        .delimiter("")
        .send()
        .await
        .expect("v1");
    assert_eq!(v1.delimiter(), None, "ListObjects echoes no empty Delimiter");
    assert_eq!(v1.contents().len(), 2);
    // V1 with `encoding-type=url` (botocore asks it of every V1 listing) echoes its Prefix raw:
    // botocore decodes keys, markers and the delimiter of a V1 answer, not its Prefix.
    let v1 = c
        .list_objects()
        .bucket(BUCKET)
        .prefix("\n")
        .encoding_type(aws_sdk_s3::types::EncodingType::Url)
        .send()
        .await
        .expect("v1 with an unreadable prefix");
    assert_eq!(v1.prefix(), Some("\n"));
    assert!(v1.contents().is_empty());
    let versions = c
        .list_object_versions()
        .bucket(BUCKET)
        .prefix("d/")
        .delimiter("")
        .send()
        .await
        .expect("versions");
    assert_eq!(
        versions.delimiter(),
        None,
        "ListObjectVersions echoes no empty Delimiter"
    );
}
