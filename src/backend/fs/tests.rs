use std::ops::Range;

use super::*;

use bytes::Bytes;
use futures::TryStreamExt;

fn store() -> (tempfile::TempDir, FsStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::new("test", dir.path().join("root")).unwrap();
    (dir, store)
}

fn body(chunks: &[&[u8]]) -> ByteStream {
    let chunks: Vec<io::Result<Bytes>> = chunks.iter().map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    Box::pin(futures::stream::iter(chunks))
}

async fn put(s: &FsStore, bucket: &str, key: &str, data: &[u8]) -> String {
    s.put_object(bucket, key, body(&[data]), data.len() as u64, Metadata::new())
        .await
        .unwrap()
}

async fn read(s: &FsStore, key: &str, range: Option<Range<u64>>) -> BackendResult<Vec<u8>> {
    read_range(s, key, range.map(ByteRange::Bounded)).await
}

async fn read_range(s: &FsStore, key: &str, range: Option<ByteRange>) -> BackendResult<Vec<u8>> {
    let got = s.get_object("bkt", key, range, None).await?;
    let chunks: Vec<Bytes> = got.body.try_collect().await?;
    Ok(chunks.concat())
}

fn tmp_is_empty(s: &FsStore) -> bool {
    std::fs::read_dir(s.root.join(TMP_DIR)).unwrap().next().is_none()
}

#[tokio::test]
async fn round_trip_with_metadata() {
    let (_d, s) = store();
    s.create_bucket("bkt").await.unwrap();
    let meta: Metadata = [("wrapped-dek".to_owned(), "abc".to_owned())].into();
    let data = vec![7u8; 200_000];
    let etag = s
        .put_object(
            "bkt",
            "a/b/../c d",
            body(&[&data[..1000], &data[1000..]]),
            data.len() as u64,
            meta.clone(),
        )
        .await
        .unwrap();
    assert_eq!(etag, hex::encode(Md5::digest(&data)));

    let head = s.head_object("bkt", "a/b/../c d").await.unwrap();
    assert_eq!(
        (head.size, head.etag.as_str(), &head.metadata),
        (200_000, etag.as_str(), &meta)
    );
    assert!(head.last_modified.is_some());
    assert_eq!(read(&s, "a/b/../c d", None).await.unwrap(), data);

    // Overwrite, then delete (twice: deleting a missing key succeeds).
    put(&s, "bkt", "a/b/../c d", b"new").await;
    assert_eq!(read(&s, "a/b/../c d", None).await.unwrap(), b"new");
    s.delete_object("bkt", "a/b/../c d").await.unwrap();
    s.delete_object("bkt", "a/b/../c d").await.unwrap();
    assert!(matches!(
        s.head_object("bkt", "a/b/../c d").await,
        Err(BackendError::NoSuchKey)
    ));
    assert!(matches!(read(&s, "nope", None).await, Err(BackendError::NoSuchKey)));
    assert!(tmp_is_empty(&s));
}

#[tokio::test]
async fn long_keys_and_empty_objects() {
    let (_d, s) = store();
    s.create_bucket("bkt").await.unwrap();
    let key = "k/".repeat(512);
    put(&s, "bkt", &key, b"").await;
    assert_eq!(read(&s, &key, None).await.unwrap(), b"");
    assert!(matches!(
        read(&s, &key, Some(0..1)).await,
        Err(BackendError::InvalidRange)
    ));
    assert!(matches!(
        read_range(&s, &key, Some(ByteRange::Suffix(1))).await,
        Err(BackendError::InvalidRange)
    ));
}

#[tokio::test]
async fn ranges() {
    let (_d, s) = store();
    s.create_bucket("bkt").await.unwrap();
    let data: Vec<u8> = (0..=255u8).cycle().take(150_000).collect();
    put(&s, "bkt", "k", &data).await;
    assert_eq!(read(&s, "k", Some(10..20)).await.unwrap(), &data[10..20]);
    assert_eq!(read(&s, "k", Some(1000..140_000)).await.unwrap(), &data[1000..140_000]);
    // The end is clamped to the size, like S3.
    assert_eq!(read(&s, "k", Some(149_990..1_000_000)).await.unwrap(), &data[149_990..]);
    assert_eq!(
        read_range(&s, "k", Some(ByteRange::Suffix(10))).await.unwrap(),
        &data[149_990..]
    );
    assert_eq!(
        read_range(&s, "k", Some(ByteRange::Suffix(1 << 40))).await.unwrap(),
        data
    );
    assert!(matches!(
        read_range(&s, "k", Some(ByteRange::Suffix(0))).await,
        Err(BackendError::InvalidRange)
    ));
    let got = s
        .get_object("bkt", "k", Some(ByteRange::Bounded(5..6)), None)
        .await
        .unwrap();
    assert_eq!(got.head.size, 150_000, "head is the whole object's");
    #[allow(clippy::reversed_empty_ranges)] // reversed on purpose
    for bad in [150_000..150_001, 200_000..300_000, 5..5, 9..3] {
        assert!(matches!(
            read(&s, "k", Some(bad)).await,
            Err(BackendError::InvalidRange)
        ));
    }
}

#[tokio::test]
async fn if_match() {
    let (_d, s) = store();
    s.create_bucket("bkt").await.unwrap();
    let etag = put(&s, "bkt", "k", b"hello").await;
    assert!(s.get_object("bkt", "k", None, Some(&etag)).await.is_ok());
    assert!(
        s.get_object("bkt", "k", None, Some(&format!("\"{etag}\"")))
            .await
            .is_ok()
    );
    let r = s.get_object("bkt", "k", None, Some("0123")).await;
    assert!(matches!(r, Err(BackendError::PreconditionFailed)));
}

#[tokio::test]
async fn failing_body_stores_nothing() {
    let (_d, s) = store();
    s.create_bucket("bkt").await.unwrap();
    put(&s, "bkt", "k", b"old").await;

    let failing: ByteStream = Box::pin(futures::stream::iter(vec![
        Ok(Bytes::from_static(b"partial")),
        Err(io::Error::other("client went away")),
    ]));
    let r = s.put_object("bkt", "k", failing, 100, Metadata::new()).await;
    assert!(matches!(r, Err(BackendError::Body(e)) if e.to_string() == "client went away"));
    // Too short and too long bodies fail the same way.
    let r = s.put_object("bkt", "k", body(&[b"ab"]), 3, Metadata::new()).await;
    assert!(matches!(r, Err(BackendError::Body(_))));
    let r = s
        .put_object("bkt", "k", body(&[b"ab", b"cd"]), 3, Metadata::new())
        .await;
    assert!(matches!(r, Err(BackendError::Body(_))));
    let r = s.put_object("bkt", "new", body(&[b"ab"]), 3, Metadata::new()).await;
    assert!(matches!(r, Err(BackendError::Body(_))));

    assert_eq!(read(&s, "k", None).await.unwrap(), b"old");
    assert!(matches!(
        s.head_object("bkt", "new").await,
        Err(BackendError::NoSuchKey)
    ));
    assert!(tmp_is_empty(&s));
    let r = s.put_object("nope", "k", body(&[b"x"]), 1, Metadata::new()).await;
    assert!(matches!(r, Err(BackendError::NoSuchBucket)));
}

#[tokio::test]
async fn bucket_lifecycle() {
    let (_d, s) = store();
    assert!(s.list_buckets().await.unwrap().is_empty(), ".tmp is not a bucket");
    s.create_bucket("b-two").await.unwrap();
    s.create_bucket("a.one").await.unwrap();
    assert!(matches!(
        s.create_bucket("a.one").await,
        Err(BackendError::BucketAlreadyExists { .. })
    ));
    let names: Vec<_> = s
        .list_buckets()
        .await
        .unwrap()
        .into_iter()
        .map(|b| (b.name, b.created.is_some()))
        .collect();
    assert_eq!(names, [("a.one".to_owned(), true), ("b-two".to_owned(), true)]);

    s.head_bucket("a.one").await.unwrap();
    assert!(matches!(s.head_bucket("zzz").await, Err(BackendError::NoSuchBucket)));
    put(&s, "a.one", "k", b"x").await;
    assert!(matches!(
        s.delete_bucket("a.one").await,
        Err(BackendError::BucketNotEmpty)
    ));
    s.delete_object("a.one", "k").await.unwrap();
    s.delete_bucket("a.one").await.unwrap();
    assert!(matches!(
        s.delete_bucket("a.one").await,
        Err(BackendError::NoSuchBucket)
    ));
    assert!(matches!(s.head_bucket("a.one").await, Err(BackendError::NoSuchBucket)));
    assert!(matches!(
        s.delete_object("a.one", "k").await,
        Err(BackendError::NoSuchBucket)
    ));
    assert!(matches!(
        s.list_objects("a.one", &ListQuery::default()).await,
        Err(BackendError::NoSuchBucket)
    ));
}

#[tokio::test]
async fn bucket_names_cannot_escape_root() {
    let (_d, s) = store();
    for bad in ["..", ".tmp", "../x", "a/b", "ab", "UPPER", "-abc", "abc.", "a..b", ""] {
        assert!(
            matches!(s.create_bucket(bad).await, Err(BackendError::InvalidArgument(_))),
            "{bad}"
        );
        assert!(
            matches!(s.head_bucket(bad).await, Err(BackendError::NoSuchBucket)),
            "{bad}"
        );
        let r = s.put_object(bad, "k", body(&[b"x"]), 1, Metadata::new()).await;
        assert!(matches!(r, Err(BackendError::NoSuchBucket)), "{bad}");
    }
}

/// Lists all pages; returns every page's (keys, common prefixes).
async fn list_all(s: &FsStore, mut q: ListQuery) -> Vec<(Vec<String>, Vec<String>)> {
    let mut pages = Vec::new();
    loop {
        let page = s.list_objects("bkt", &q).await.unwrap();
        assert!(page.objects.iter().all(|o| o.metadata.is_some()));
        pages.push((page.objects.into_iter().map(|o| o.key).collect(), page.common_prefixes));
        if !page.is_truncated {
            assert!(page.next_continuation_token.is_none());
            return pages;
        }
        q.continuation_token = page.next_continuation_token;
    }
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test]
async fn listing() {
    let (_d, s) = store();
    s.create_bucket("bkt").await.unwrap();
    for key in ["a/1", "a/2", "a/b/3", "a0", "b", "c/1", "c/2", "d", "é/x"] {
        put(&s, "bkt", key, key.as_bytes()).await;
    }
    let q = |max_keys| ListQuery {
        max_keys,
        ..ListQuery::default()
    };

    // Flat listing, byte order, one page and pages of two.
    let all = strs(&["a/1", "a/2", "a/b/3", "a0", "b", "c/1", "c/2", "d", "é/x"]);
    assert_eq!(list_all(&s, q(1000)).await, [(all.clone(), vec![])]);
    let pages = list_all(&s, q(2)).await;
    assert_eq!(pages.len(), 5);
    assert_eq!(pages.into_iter().flat_map(|p| p.0).collect::<Vec<_>>(), all);
    let page = s.list_objects("bkt", &q(1000)).await.unwrap();
    assert_eq!((page.objects[0].size, page.objects[0].etag.len()), (3, 32));

    // Delimiter: common prefixes count toward max_keys and pages skip past them.
    let d = ListQuery {
        delimiter: Some("/".into()),
        ..q(2)
    };
    let pages = list_all(&s, d.clone()).await;
    assert_eq!(
        pages,
        [
            (strs(&["a0"]), strs(&["a/"])),
            (strs(&["b"]), strs(&["c/"])),
            (strs(&["d"]), strs(&["é/"])),
        ]
    );
    let one = list_all(
        &s,
        ListQuery {
            max_keys: 1,
            ..d.clone()
        },
    )
    .await;
    assert_eq!(one.len(), 6);
    assert_eq!(one[0], (vec![], strs(&["a/"])));
    assert_eq!(one[1], (strs(&["a0"]), vec![]));

    // Prefix with delimiter, start_after.
    let p = ListQuery {
        prefix: Some("a/".into()),
        ..d.clone()
    };
    assert_eq!(
        list_all(
            &s,
            ListQuery {
                max_keys: 1000,
                ..p.clone()
            }
        )
        .await,
        [(strs(&["a/1", "a/2"]), strs(&["a/b/"]))]
    );
    let sa = ListQuery {
        start_after: Some("a0".into()),
        max_keys: 1000,
        ..d.clone()
    };
    assert_eq!(list_all(&s, sa).await, [(strs(&["b", "d"]), strs(&["c/", "é/"]))]);
    let sa = ListQuery {
        start_after: Some("c/1".into()),
        max_keys: 1000,
        ..ListQuery::default()
    };
    assert_eq!(list_all(&s, sa).await, [(strs(&["c/2", "d", "é/x"]), vec![])]);

    // Multi-character delimiter, empty delimiter is none, empty result.
    let md = ListQuery {
        delimiter: Some("/b".into()),
        max_keys: 1000,
        ..ListQuery::default()
    };
    assert_eq!(list_all(&s, md).await[0].1, strs(&["a/b"]));
    let ed = ListQuery {
        delimiter: Some(String::new()),
        max_keys: 1000,
        ..ListQuery::default()
    };
    assert_eq!(list_all(&s, ed).await[0].0.len(), 9);
    let none = ListQuery {
        prefix: Some("zzz".into()),
        max_keys: 10,
        ..ListQuery::default()
    };
    assert_eq!(list_all(&s, none).await, [(vec![], vec![])]);

    let bad = ListQuery {
        continuation_token: Some("x12".into()),
        ..q(10)
    };
    assert!(matches!(
        s.list_objects("bkt", &bad).await,
        Err(BackendError::InvalidArgument(_))
    ));
}

/// A rewrap's metadata replacement: done while the object is the one read; refused, leaving
/// the newer object alone, once a client wrote over it.
#[tokio::test]
async fn metadata_is_replaced_only_on_the_version_read() {
    let (_d, s) = store();
    s.create_bucket("bkt").await.unwrap();
    let old = put(&s, "bkt", "k", b"old body").await;
    let meta: Metadata = [("escrow-kek".to_owned(), "2".to_owned())].into();
    let etag = s.replace_metadata_if("bkt", "k", 8, &old, meta.clone()).await.unwrap();
    assert_eq!(etag, old, "the body, hence the ETag, stays");
    let head = s.head_object("bkt", "k").await.unwrap();
    assert_eq!(head.metadata, meta);
    assert_eq!(read(&s, "k", None).await.unwrap(), b"old body");

    let new = put(&s, "bkt", "k", b"a client's newer body").await;
    let refused = s.replace_metadata_if("bkt", "k", 8, &old, meta.clone()).await;
    assert!(matches!(refused, Err(BackendError::PreconditionFailed)), "{refused:?}");
    let head = s.head_object("bkt", "k").await.unwrap();
    assert_eq!((head.etag.as_str(), head.metadata.is_empty()), (new.as_str(), true));
    assert_eq!(read(&s, "k", None).await.unwrap(), b"a client's newer body");
    assert!(tmp_is_empty(&s), "no temp file or lock left behind");
}

/// Client writes racing metadata replacements of the version before them: the client's write
/// always survives (both commit under the key's lock; the replacement's check sees the write).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_write_racing_a_metadata_replacement_is_never_lost() {
    let (_d, s) = store();
    let s = std::sync::Arc::new(s);
    s.create_bucket("bkt").await.unwrap();
    let mut previous = put(&s, "bkt", "k", b"round 0").await;
    let meta: Metadata = [("escrow-kek".to_owned(), "9".to_owned())].into();
    for round in 1..=200u32 {
        let data = format!("round {round}").into_bytes();
        let (writer, replacer) = (std::sync::Arc::clone(&s), std::sync::Arc::clone(&s));
        let size = format!("round {}", round - 1).len() as u64;
        let write = tokio::spawn(async move { put(&writer, "bkt", "k", &data).await });
        let (old, meta) = (previous.clone(), meta.clone());
        let replace = tokio::spawn(async move { replacer.replace_metadata_if("bkt", "k", size, &old, meta).await });
        previous = write.await.unwrap();
        let replaced = replace.await.unwrap();
        assert!(
            matches!(replaced, Ok(_) | Err(BackendError::PreconditionFailed)),
            "round {round}: {replaced:?}"
        );
        assert_eq!(
            read(&s, "k", None).await.unwrap(),
            format!("round {round}").into_bytes(),
            "round {round}: the client's write was overwritten"
        );
    }
}
