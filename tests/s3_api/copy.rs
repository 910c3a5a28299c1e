//! CopyObject and UploadPartCopy, from single-part and multipart sources: same and cross bucket,
//! metadata directives COPY and REPLACE, copies onto themselves, conditional copy headers, sources
//! whose record lives in the header extension; and the copy's ciphertext is bound to its new
//! name (moved in the store under another name, it no longer decrypts).

use std::collections::HashMap;

use aws_sdk_s3::Client;
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::operation::copy_object::builders::CopyObjectFluentBuilder;
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::MetadataDirective;

use crate::common::{
    ErrorExt, GetOutcome, Harness, MARKER, MIN_PART, S3_USER_METADATA_LIMIT, SEGMENT, StoreKind, assert_s3_error,
    data_with_marker, etag_of, multipart_etag, try_get, upload_multipart,
};
use crate::multipart::{complete, create, put_part};
use crate::{BUCKET, harness};

per_store!(
    copy_same_and_cross_bucket,
    copy_metadata_replace,
    copy_onto_itself,
    copy_conditions,
    copy_is_bound_to_the_new_name,
    copy_records_are_not_interchangeable,
    copy_missing_source,
    upload_part_copy,
    copy_header_extension_source,
    copy_large_multipart,
);

/// The bucket cross-bucket copies go to.
const OTHER_BUCKET: &str = "escrow-api-copies";
const SINGLE: &str = "src/single";
const MULTI: &str = "src/multi";
const SRC_TYPE: &str = "text/x-escrow-source-type";
const SRC_CACHE: &str = "max-age=7777, escrow-secret-cache";
const SRC_META: (&str, &str) = ("colour", "escrow-secret-source-meta");

/// A harness with a second bucket and two sources with headers and user metadata: a single-part
/// object of four segments and a multipart object of two parts.
struct Sources {
    h: Harness,
    single: Vec<u8>,
    multi: Vec<u8>,
    multi_etag: String,
}

async fn sources(kind: StoreKind) -> Sources {
    let h = harness(kind).await;
    h.create_bucket(OTHER_BUCKET).await;
    let single = data_with_marker(3 * SEGMENT + 100);
    h.plain_client
        .put_object()
        .bucket(BUCKET)
        .key(SINGLE)
        .content_type(SRC_TYPE)
        .cache_control(SRC_CACHE)
        .metadata(SRC_META.0, SRC_META.1)
        .body(ByteStream::from(single.clone()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {SINGLE}: {}", DisplayErrorContext(&e)));
    let parts = [data_with_marker(MIN_PART), data_with_marker(100_000)];
    let id = h
        .plain_client
        .create_multipart_upload()
        .bucket(BUCKET)
        .key(MULTI)
        .content_type(SRC_TYPE)
        .cache_control(SRC_CACHE)
        .metadata(SRC_META.0, SRC_META.1)
        .send()
        .await
        .unwrap_or_else(|e| panic!("create {MULTI}: {}", DisplayErrorContext(&e)))
        .upload_id()
        .expect("upload id")
        .to_string();
    let e1 = put_part(&h.plain_client, MULTI, &id, 1, &parts[0]).await;
    let e2 = put_part(&h.plain_client, MULTI, &id, 2, &parts[1]).await;
    let multi_etag = multipart_etag(&[&parts[0], &parts[1]]);
    let done = complete(&h.plain_client, MULTI, &id, &[(1, &e1), (2, &e2)])
        .await
        .unwrap_or_else(|e| panic!("complete {MULTI}: {}", e.describe()));
    assert_eq!(done.e_tag(), Some(multi_etag.as_str()));
    Sources {
        h,
        single,
        multi: parts.concat(),
        multi_etag,
    }
}

impl Sources {
    /// `(name, key, plaintext, ETag)` of each source.
    fn each(&self) -> [(&'static str, &'static str, &[u8], String); 2] {
        [
            ("single", SINGLE, &self.single, etag_of(&self.single)),
            ("multi", MULTI, &self.multi, self.multi_etag.clone()),
        ]
    }
}

/// A CopyObject request of `src_bucket`/`src_key` to `bucket`/`key`.
fn copy(c: &Client, src_bucket: &str, src_key: &str, bucket: &str, key: &str) -> CopyObjectFluentBuilder {
    c.copy_object()
        .bucket(bucket)
        .key(key)
        .copy_source(format!("{src_bucket}/{src_key}"))
}

/// What a copy must answer on HEAD and GET.
struct Expect<'a> {
    data: &'a [u8],
    etag: &'a str,
    content_type: Option<&'a str>,
    cache_control: Option<&'a str>,
    user: HashMap<String, String>,
}

fn source_expect<'a>(data: &'a [u8], etag: &'a str) -> Expect<'a> {
    Expect {
        data,
        etag,
        content_type: Some(SRC_TYPE),
        cache_control: Some(SRC_CACHE),
        user: [(SRC_META.0.to_string(), SRC_META.1.to_string())].into(),
    }
}

async fn assert_reads(c: &Client, bucket: &str, key: &str, want: &Expect<'_>, what: &str) {
    let head = c
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{what}: HEAD {bucket}/{key}: {}", e.describe()));
    let got = c
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{what}: GET {bucket}/{key}: {}", e.describe()));
    let empty = HashMap::new();
    for (op, etag, len, ctype, cache, user) in [
        (
            "HEAD",
            head.e_tag(),
            head.content_length(),
            head.content_type(),
            head.cache_control(),
            head.metadata(),
        ),
        (
            "GET",
            got.e_tag(),
            got.content_length(),
            got.content_type(),
            got.cache_control(),
            got.metadata(),
        ),
    ] {
        assert_eq!(etag, Some(want.etag), "{what}: {op} ETag");
        assert_eq!(len, Some(want.data.len() as i64), "{what}: {op} Content-Length");
        assert_eq!(ctype, want.content_type, "{what}: {op} Content-Type");
        assert_eq!(cache, want.cache_control, "{what}: {op} Cache-Control");
        assert_eq!(user.unwrap_or(&empty), &want.user, "{what}: {op} user metadata");
    }
    let body = got.body.collect().await.expect("GET body").to_vec();
    assert!(body == want.data, "{what}: GET {bucket}/{key}: wrong bytes");
}

/// `(key, size, ETag)` of everything in `bucket` under `prefix`.
async fn listed(c: &Client, bucket: &str, prefix: &str) -> Vec<(String, i64, Option<String>)> {
    let out = c
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .send()
        .await
        .unwrap_or_else(|e| panic!("list {bucket}/{prefix}: {}", DisplayErrorContext(&e)));
    out.contents()
        .iter()
        .map(|o| {
            (
                o.key().unwrap().to_string(),
                o.size().unwrap(),
                o.e_tag().map(String::from),
            )
        })
        .collect()
}

/// A GET and a HEAD of `bucket`/`key` both fail; a GET never completes with any body.
async fn assert_unreadable(h: &Harness, bucket: &str, key: &str, what: &str) {
    match try_get(&h.plain_client, bucket, key, None).await {
        GetOutcome::Complete { body, .. } => {
            panic!("{what}: GET {bucket}/{key} answered {} bytes", body.len())
        }
        GetOutcome::Refused { status, .. } => assert!(status >= 400, "{what}: status {status}"),
        GetOutcome::Aborted { .. } | GetOutcome::NoResponse { .. } => {}
    }
    let head = h.plain_client.head_object().bucket(bucket).key(key).send().await;
    match head {
        Ok(out) => panic!(
            "{what}: HEAD {bucket}/{key} succeeded: length {:?}, type {:?}, metadata {:?}",
            out.content_length(),
            out.content_type(),
            out.metadata()
        ),
        Err(e) => assert!(e.http_status() >= 400, "{what}: {}", e.describe()),
    }
}

/// 20 user-metadata entries of 98 bytes each: valid on S3 (under 2 KB), but with the proxy's own
/// metadata over it, so the record moves into the header extension.
fn near_limit_metadata(tag: &str) -> HashMap<String, String> {
    let entries: HashMap<String, String> = (0..20)
        .map(|i| (format!("{tag}{i:02}"), format!("{tag}-{}", "v".repeat(93 - tag.len()))))
        .collect();
    let bytes: usize = entries.iter().map(|(k, v)| k.len() + v.len()).sum();
    assert!(bytes <= S3_USER_METADATA_LIMIT && bytes > 1800, "{bytes}");
    entries
}

// === cases ===

async fn copy_same_and_cross_bucket(kind: StoreKind) {
    let mut s = sources(kind).await;
    let c = &s.h.plain_client;
    let mut want_same = Vec::new();
    let mut want_other = Vec::new();
    for (name, src, data, etag) in s.each() {
        for (bucket, directive) in [(BUCKET, None), (OTHER_BUCKET, Some(MetadataDirective::Copy))] {
            let key = format!("dst/{name}");
            let what = format!("{name} copied to {bucket}");
            let out = copy(c, BUCKET, src, bucket, &key)
                .set_metadata_directive(directive)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{what}: {}", e.describe()));
            let result_etag = out.copy_object_result().and_then(|r| r.e_tag());
            assert_eq!(result_etag, Some(etag.as_str()), "{what}: CopyObjectResult ETag");
            assert_reads(c, bucket, &key, &source_expect(data, &etag), &what).await;
            // The data key is wrapped anew, for the new name.
            let (from, to) = (s.h.stored_object(BUCKET, src), s.h.stored_object(bucket, &key));
            assert_ne!(from.metadata["escrow-dek"], to.metadata["escrow-dek"], "{what}");
            assert_eq!(
                to.metadata.get("escrow-parts"),
                (name == "multi").then(|| "2".to_string()).as_ref(),
                "{what}"
            );
            let entry = (key.clone(), data.len() as i64, Some(etag.clone()));
            if bucket == BUCKET {
                want_same.push(entry);
            } else {
                want_other.push(entry);
            }
        }
    }
    want_same.sort();
    want_other.sort();
    assert_eq!(listed(c, BUCKET, "dst/").await, want_same);
    assert_eq!(listed(c, OTHER_BUCKET, "dst/").await, want_other);
    s.h.restart_proxy().await;
    let c = &s.h.plain_client;
    assert_eq!(
        listed(c, BUCKET, "dst/").await,
        want_same,
        "listed by a restarted proxy"
    );
    assert_eq!(
        listed(c, OTHER_BUCKET, "dst/").await,
        want_other,
        "listed by a restarted proxy"
    );

    // A copy is its own object: overwriting or deleting the source leaves it as it was.
    s.h.put(BUCKET, SINGLE, &data_with_marker(10)).await;
    c.delete_object()
        .bucket(BUCKET)
        .key(MULTI)
        .send()
        .await
        .expect("delete the source");
    for (name, _, data, etag) in s.each() {
        for bucket in [BUCKET, OTHER_BUCKET] {
            let what = format!("{name} copy in {bucket} after its source changed");
            assert_reads(c, bucket, &format!("dst/{name}"), &source_expect(data, &etag), &what).await;
        }
    }
    s.h.assert_store_lacks(SRC_META.1.as_bytes(), "SOURCE METADATA");
    s.h.assert_store_lacks(SRC_TYPE.as_bytes(), "SOURCE CONTENT TYPE");
    s.h.assert_no_plaintext(MARKER);
}

async fn copy_metadata_replace(kind: StoreKind) {
    let s = sources(kind).await;
    let c = &s.h.client;
    for (name, src, data, etag) in s.each() {
        for bucket in [BUCKET, OTHER_BUCKET] {
            let key = format!("replaced/{name}");
            let what = format!("{name} copied to {bucket} with REPLACE");
            let out = copy(c, BUCKET, src, bucket, &key)
                .metadata_directive(MetadataDirective::Replace)
                .content_type("application/x-escrow-replaced")
                .metadata("fresh", "escrow-secret-replaced-meta")
                .send()
                .await
                .unwrap_or_else(|e| panic!("{what}: {}", e.describe()));
            assert_eq!(out.copy_object_result().and_then(|r| r.e_tag()), Some(etag.as_str()));
            let want = Expect {
                data,
                etag: &etag,
                content_type: Some("application/x-escrow-replaced"),
                cache_control: None,
                user: [("fresh".to_string(), "escrow-secret-replaced-meta".to_string())].into(),
            };
            assert_reads(c, bucket, &key, &want, &what).await;
        }
        // The source keeps its own headers.
        assert_reads(c, BUCKET, src, &source_expect(data, &etag), &format!("{name} source")).await;
    }
    s.h.assert_store_lacks(b"escrow-secret-replaced-meta", "REPLACED METADATA");
    s.h.assert_store_lacks(b"application/x-escrow-replaced", "REPLACED CONTENT TYPE");
    s.h.assert_no_plaintext(MARKER);
}

async fn copy_onto_itself(kind: StoreKind) {
    let mut s = sources(kind).await;
    let c = s.h.plain_client.clone();
    for (name, src, data, etag) in s.each() {
        for directive in [None, Some(MetadataDirective::Copy)] {
            assert_s3_error(
                copy(&c, BUCKET, src, BUCKET, src)
                    .set_metadata_directive(directive.clone())
                    .send()
                    .await,
                400,
                "InvalidRequest",
                &format!("{name} copied onto itself with {directive:?}"),
            );
        }
        assert_reads(
            &c,
            BUCKET,
            src,
            &source_expect(data, &etag),
            &format!("{name} after refusals"),
        )
        .await;
        let out = copy(&c, BUCKET, src, BUCKET, src)
            .metadata_directive(MetadataDirective::Replace)
            .content_type("text/x-escrow-new-type")
            .metadata("new", "value")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{name} onto itself with REPLACE: {}", e.describe()));
        assert_eq!(out.copy_object_result().and_then(|r| r.e_tag()), Some(etag.as_str()));
    }
    s.h.restart_proxy().await;
    for (name, src, data, etag) in s.each() {
        let want = Expect {
            data,
            etag: &etag,
            content_type: Some("text/x-escrow-new-type"),
            cache_control: None,
            user: [("new".to_string(), "value".to_string())].into(),
        };
        assert_reads(
            &s.h.plain_client,
            BUCKET,
            src,
            &want,
            &format!("{name} after REPLACE onto itself"),
        )
        .await;
    }
    let listed = listed(&s.h.plain_client, BUCKET, "src/").await;
    assert_eq!(
        listed,
        [
            (MULTI.to_string(), s.multi.len() as i64, Some(s.multi_etag.clone())),
            (SINGLE.to_string(), s.single.len() as i64, Some(etag_of(&s.single))),
        ]
    );
    s.h.assert_no_plaintext(MARKER);
}

async fn copy_conditions(kind: StoreKind) {
    let s = sources(kind).await;
    let c = &s.h.plain_client;
    let other = "\"0123456789abcdef0123456789abcdef\"";
    for (name, src, data, etag) in s.each() {
        let head = c
            .head_object()
            .bucket(BUCKET)
            .key(src)
            .send()
            .await
            .expect("head source");
        let modified = *head.last_modified().expect("last modified");
        let (before, after) = (
            DateTime::from_secs(modified.secs() - 3600),
            DateTime::from_secs(modified.secs() + 3600),
        );
        let attempt = |i: usize| copy(c, BUCKET, src, BUCKET, &format!("cond/{name}/{i}"));
        let cases: Vec<(&str, CopyObjectFluentBuilder, bool)> = vec![
            ("if-match, matching", attempt(0).copy_source_if_match(&etag), true),
            ("if-match, other", attempt(1).copy_source_if_match(other), false),
            (
                "if-none-match, other",
                attempt(2).copy_source_if_none_match(other),
                true,
            ),
            (
                "if-none-match, matching",
                attempt(3).copy_source_if_none_match(&etag),
                false,
            ),
            (
                "if-modified-since, before",
                attempt(4).copy_source_if_modified_since(before),
                true,
            ),
            (
                "if-modified-since, after",
                attempt(5).copy_source_if_modified_since(after),
                false,
            ),
            (
                "if-unmodified-since, after",
                attempt(6).copy_source_if_unmodified_since(after),
                true,
            ),
            (
                "if-unmodified-since, before",
                attempt(7).copy_source_if_unmodified_since(before),
                false,
            ),
            // S3: a matching If-Match wins over a failing If-Unmodified-Since.
            (
                "if-match matching, if-unmodified-since before",
                attempt(8)
                    .copy_source_if_match(&etag)
                    .copy_source_if_unmodified_since(before),
                true,
            ),
        ];
        for (i, (what, req, copies)) in cases.into_iter().enumerate() {
            let what = format!("{name}: {what}");
            let key = format!("cond/{name}/{i}");
            if copies {
                req.send().await.unwrap_or_else(|e| panic!("{what}: {}", e.describe()));
                assert_reads(c, BUCKET, &key, &source_expect(data, &etag), &what).await;
            } else {
                assert_s3_error(req.send().await, 412, "PreconditionFailed", &what);
                assert_s3_error(
                    c.head_object().bucket(BUCKET).key(&key).send().await,
                    404,
                    "",
                    &format!("{what}: nothing copied"),
                );
            }
        }
    }
    s.h.assert_no_plaintext(MARKER);
}

/// The stored copy, moved in the store under another name (another key, another bucket, the
/// source's key), does not decrypt there.
async fn copy_is_bound_to_the_new_name(kind: StoreKind) {
    let s = sources(kind).await;
    let h = &s.h;
    for (name, src, data, etag) in s.each() {
        let copy_key = format!("bound/{name}");
        for bucket in [BUCKET, OTHER_BUCKET] {
            copy(&h.plain_client, BUCKET, src, bucket, &copy_key)
                .send()
                .await
                .unwrap_or_else(|e| panic!("copy {name} to {bucket}: {}", e.describe()));
        }
        let stored = h.stored_object(BUCKET, &copy_key);
        // Another key in the same bucket.
        let moved = format!("moved/{name}");
        h.put(BUCKET, &moved, &data_with_marker(10)).await;
        h.write_stored_object(BUCKET, &moved, &stored);
        assert_unreadable(h, BUCKET, &moved, &format!("copy of {name} moved to another key")).await;
        // The same key in the other bucket (over the cross-bucket copy).
        let cross = h.stored_object(OTHER_BUCKET, &copy_key);
        h.write_stored_object(OTHER_BUCKET, &copy_key, &stored);
        assert_unreadable(
            h,
            OTHER_BUCKET,
            &copy_key,
            &format!("copy of {name} moved to another bucket"),
        )
        .await;
        h.write_stored_object(OTHER_BUCKET, &copy_key, &cross);
        assert_reads(
            &h.plain_client,
            OTHER_BUCKET,
            &copy_key,
            &source_expect(data, &etag),
            "restored cross-bucket copy",
        )
        .await;
        // The untouched copy still reads; then its stored object goes over its own source.
        assert_reads(&h.plain_client, BUCKET, &copy_key, &source_expect(data, &etag), name).await;
        h.write_stored_object(BUCKET, src, &stored);
        assert_unreadable(h, BUCKET, src, &format!("copy of {name} moved over its source")).await;
    }
    h.assert_no_plaintext(MARKER);
}

/// A source and its copy share a data key (the copy re-wraps it), but not their records: the
/// copy's record (its REPLACEd headers) put into the source's stored object must not open there
/// (DESIGN §2: metadata swapped from another object fails).
async fn copy_records_are_not_interchangeable(kind: StoreKind) {
    let s = sources(kind).await;
    let h = &s.h;
    for (name, src, ..) in s.each() {
        let key = format!("swap/{name}");
        copy(&h.plain_client, BUCKET, src, BUCKET, &key)
            .metadata_directive(MetadataDirective::Replace)
            .content_type("text/x-escrow-forged-type")
            .metadata("forged", "yes")
            .send()
            .await
            .unwrap_or_else(|e| panic!("copy {name}: {}", e.describe()));
    }
    // Single part: the copy's sealed record, in the source's metadata.
    let forged = h.stored_object(BUCKET, "swap/single").metadata["escrow-meta"].clone();
    h.rewrite_metadata(BUCKET, SINGLE, |m| {
        m.insert("escrow-meta".into(), forged);
    });
    // Multipart: the copy's manifest (and its length suffix) at the end of the source.
    let copy_body = h.stored_object(BUCKET, "swap/multi").body;
    let manifest_start = |body: &[u8]| {
        let len = u32::from_be_bytes(body[body.len() - 4..].try_into().expect("4 bytes")) as usize;
        body.len() - 4 - len
    };
    let forged = copy_body[manifest_start(&copy_body)..].to_vec();
    h.rewrite_body(BUCKET, MULTI, |b| {
        b.truncate(manifest_start(b));
        b.extend_from_slice(&forged);
    });
    let mut forgeries = Vec::new();
    for (what, key) in [
        ("the copy's record in the single-part source's metadata", SINGLE),
        ("the copy's manifest at the end of the multipart source", MULTI),
    ] {
        if let Ok(head) = h.plain_client.head_object().bucket(BUCKET).key(key).send().await {
            forgeries.push(format!(
                "{what}: HEAD {key} succeeds with Content-Type {:?} and metadata {:?}",
                head.content_type(),
                head.metadata()
            ));
        }
        if let GetOutcome::Complete { body, .. } = try_get(&h.plain_client, BUCKET, key, None).await {
            forgeries.push(format!("{what}: GET {key} answers all {} bytes", body.len()));
        }
    }
    assert!(forgeries.is_empty(), "ACCEPTED FORGERIES:\n{}", forgeries.join("\n"));
    h.assert_no_plaintext(MARKER);
}

async fn copy_missing_source(kind: StoreKind) {
    let s = sources(kind).await;
    let c = &s.h.plain_client;
    assert_s3_error(
        copy(c, BUCKET, "src/nope", BUCKET, "dst/nope").send().await,
        404,
        "NoSuchKey",
        "a missing source key",
    );
    let e = copy(c, "escrow-no-such-bucket", "k", BUCKET, "dst/nope")
        .send()
        .await
        .expect_err("a missing source bucket");
    assert_eq!(e.http_status(), 404, "{}", e.describe());
    assert!(
        ["NoSuchBucket", "NoSuchKey"].contains(&e.s3_code().as_str()),
        "{}",
        e.describe()
    );
    assert_s3_error(
        copy(c, BUCKET, SINGLE, "escrow-no-such-bucket", "dst/nope")
            .send()
            .await,
        404,
        "NoSuchBucket",
        "a missing destination bucket",
    );
    assert_s3_error(
        c.head_object().bucket(BUCKET).key("dst/nope").send().await,
        404,
        "",
        "nothing was created",
    );
    let id = create(c, "upc/nope").await;
    assert_s3_error(
        c.upload_part_copy()
            .bucket(BUCKET)
            .key("upc/nope")
            .upload_id(&id)
            .part_number(1)
            .copy_source(format!("{BUCKET}/src/nope"))
            .send()
            .await,
        404,
        "NoSuchKey",
        "UploadPartCopy of a missing source",
    );
    s.h.assert_no_plaintext(MARKER);
}

/// UploadPartCopy with and without a source range, from single-part and multipart sources.
async fn upload_part_copy(kind: StoreKind) {
    let s = sources(kind).await;
    let c = &s.h.client;
    let big = data_with_marker(MIN_PART + 1000);
    s.h.put(BUCKET, "src/big", &big).await;
    let key = "upc/composed";
    let id = create(c, key).await;
    let m = &s.multi;
    let cases = [
        // The whole single-part source.
        (1, "src/big", None::<(usize, usize)>),
        // Across the multipart source's part boundary and many segment boundaries.
        (2, MULTI, Some((100, MIN_PART + 50_000))),
        // The whole multipart source.
        (3, MULTI, None),
        // 16 bytes across a segment boundary of the single-part source (the small last part).
        (4, "src/big", Some((SEGMENT - 6, SEGMENT + 10))),
    ];
    let mut parts: Vec<Vec<u8>> = Vec::new();
    let mut etags = Vec::new();
    for (n, src, range) in cases {
        let source: &[u8] = if src == MULTI { m } else { &big };
        let want = match range {
            Some((a, b)) => source[a..b].to_vec(),
            None => source.to_vec(),
        };
        let out = c
            .upload_part_copy()
            .bucket(BUCKET)
            .key(key)
            .upload_id(&id)
            .part_number(n)
            .copy_source(format!("{BUCKET}/{src}"))
            .set_copy_source_range(range.map(|(a, b)| format!("bytes={a}-{}", b - 1)))
            .send()
            .await
            .unwrap_or_else(|e| panic!("UploadPartCopy {n} from {src} {range:?}: {}", e.describe()));
        let etag = out.copy_part_result().and_then(|r| r.e_tag()).map(String::from);
        assert_eq!(
            etag,
            Some(etag_of(&want)),
            "UploadPartCopy {n}: ETag of the copied range"
        );
        etags.push(etag.unwrap());
        parts.push(want);
    }
    // Refusals: a failing copy-source condition, a range past the source's end.
    assert_s3_error(
        c.upload_part_copy()
            .bucket(BUCKET)
            .key(key)
            .upload_id(&id)
            .part_number(5)
            .copy_source(format!("{BUCKET}/{MULTI}"))
            .copy_source_if_match("\"0123456789abcdef0123456789abcdef\"")
            .send()
            .await,
        412,
        "PreconditionFailed",
        "UploadPartCopy with a failing If-Match",
    );
    let e = c
        .upload_part_copy()
        .bucket(BUCKET)
        .key(key)
        .upload_id(&id)
        .part_number(5)
        .copy_source(format!("{BUCKET}/src/big"))
        .copy_source_range(format!("bytes=0-{}", big.len()))
        .send()
        .await
        .expect_err("a range past the source's end");
    assert!([400, 416].contains(&e.http_status()), "{}", e.describe());

    let listed = c
        .list_parts()
        .bucket(BUCKET)
        .key(key)
        .upload_id(&id)
        .send()
        .await
        .expect("ListParts");
    let sizes: Vec<i64> = listed.parts().iter().map(|p| p.size().unwrap()).collect();
    assert_eq!(sizes, parts.iter().map(|p| p.len() as i64).collect::<Vec<_>>());

    let list: Vec<(i32, &str)> = etags
        .iter()
        .enumerate()
        .map(|(i, e)| (i as i32 + 1, e.as_str()))
        .collect();
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    let etag = multipart_etag(&refs);
    let done = complete(c, key, &id, &list)
        .await
        .unwrap_or_else(|e| panic!("complete: {}", e.describe()));
    assert_eq!(done.e_tag(), Some(etag.as_str()));
    let data = parts.concat();
    let want = Expect {
        data: &data,
        etag: &etag,
        content_type: None,
        cache_control: None,
        user: HashMap::new(),
    };
    assert_reads(&s.h.plain_client, BUCKET, key, &want, "composed by UploadPartCopy").await;
    let boundary = parts[0].len();
    match try_get(
        c,
        BUCKET,
        key,
        Some(&format!("bytes={}-{}", boundary - 3, boundary + 2)),
    )
    .await
    {
        GetOutcome::Complete { body, .. } => assert!(body[..] == data[boundary - 3..boundary + 3]),
        other => panic!("range across the first part boundary: {other:?}"),
    }
    s.h.assert_no_plaintext(MARKER);
}

/// A source whose record lives in its header extension (user metadata near S3's 2 KB limit),
/// copied with COPY and REPLACE; and a small-record source given near-limit metadata by REPLACE.
async fn copy_header_extension_source(kind: StoreKind) {
    let s = sources(kind).await;
    let h = &s.h;
    let c = &h.plain_client;
    let big_meta = near_limit_metadata("m");
    let data = data_with_marker(2 * SEGMENT + 10);
    let etag = etag_of(&data);
    h.plain_client
        .put_object()
        .bucket(BUCKET)
        .key("ext/src")
        .content_type("text/x-escrow-ext")
        .set_metadata(Some(big_meta.clone()))
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("put ext/src: {}", e.describe()));
    assert!(
        !h.stored_object(BUCKET, "ext/src").metadata.contains_key("escrow-meta"),
        "the source's record is in its header extension"
    );
    let ext_expect = |user: HashMap<String, String>, content_type| Expect {
        data: &data,
        etag: &etag,
        content_type,
        cache_control: None,
        user,
    };

    // COPY, same and cross bucket: the record travels in the copied header.
    for bucket in [BUCKET, OTHER_BUCKET] {
        copy(c, BUCKET, "ext/src", bucket, "ext/copy")
            .send()
            .await
            .unwrap_or_else(|e| panic!("COPY ext/src to {bucket}: {}", e.describe()));
        let want = ext_expect(big_meta.clone(), Some("text/x-escrow-ext"));
        assert_reads(c, bucket, "ext/copy", &want, &format!("COPY to {bucket}")).await;
    }
    // REPLACE with small metadata, and with other near-limit metadata.
    let small: HashMap<String, String> = [("small".to_string(), "escrow-secret-small".to_string())].into();
    let other_big = near_limit_metadata("n");
    for (key, user) in [("ext/replaced-small", &small), ("ext/replaced-big", &other_big)] {
        copy(c, BUCKET, "ext/src", BUCKET, key)
            .metadata_directive(MetadataDirective::Replace)
            .content_type("text/x-escrow-ext-replaced")
            .set_metadata(Some(user.clone()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("REPLACE to {key}: {}", e.describe()));
        let want = ext_expect(user.clone(), Some("text/x-escrow-ext-replaced"));
        assert_reads(c, BUCKET, key, &want, key).await;
    }
    // Near-limit metadata given to sources whose record was in their metadata (or manifest).
    for (name, src, src_data, src_etag) in s.each() {
        let key = format!("ext/grown-{name}");
        copy(c, BUCKET, src, BUCKET, &key)
            .metadata_directive(MetadataDirective::Replace)
            .set_metadata(Some(other_big.clone()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("REPLACE {name} with near-limit metadata: {}", e.describe()));
        let want = Expect {
            data: src_data,
            etag: &src_etag,
            content_type: None,
            cache_control: None,
            user: other_big.clone(),
        };
        assert_reads(c, BUCKET, &key, &want, &key).await;
    }
    // No stored copy exceeds S3's limit (the s3s-fs store refuses that; the fs store is measured).
    for (bucket, key) in [
        (BUCKET, "ext/copy"),
        (OTHER_BUCKET, "ext/copy"),
        (BUCKET, "ext/replaced-small"),
        (BUCKET, "ext/replaced-big"),
        (BUCKET, "ext/grown-single"),
        (BUCKET, "ext/grown-multi"),
    ] {
        let stored = h.stored_object(bucket, key);
        let bytes: usize = stored.metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert!(
            bytes <= S3_USER_METADATA_LIMIT,
            "{bucket}/{key}: {bytes} bytes of stored metadata"
        );
    }
    // Bound to their names like any copy.
    for key in ["ext/copy", "ext/replaced-big", "ext/grown-single"] {
        let stored = h.stored_object(BUCKET, key);
        h.put(BUCKET, "ext/moved", &data_with_marker(10)).await;
        h.write_stored_object(BUCKET, "ext/moved", &stored);
        assert_unreadable(h, BUCKET, "ext/moved", &format!("{key} moved to another key")).await;
    }
    // UploadPartCopy of a range of it (across a segment boundary), as the only part.
    let id = create(c, "ext/part-copied").await;
    let out = c
        .upload_part_copy()
        .bucket(BUCKET)
        .key("ext/part-copied")
        .upload_id(&id)
        .part_number(1)
        .copy_source(format!("{BUCKET}/ext/src"))
        .copy_source_range(format!("bytes={}-{}", SEGMENT - 100, 2 * SEGMENT + 5))
        .send()
        .await
        .unwrap_or_else(|e| panic!("UploadPartCopy from ext/src: {}", e.describe()));
    let part = &data[SEGMENT - 100..2 * SEGMENT + 6];
    let part_etag = out
        .copy_part_result()
        .and_then(|r| r.e_tag())
        .expect("ETag")
        .to_string();
    assert_eq!(part_etag, etag_of(part));
    complete(c, "ext/part-copied", &id, &[(1, &part_etag)])
        .await
        .unwrap_or_else(|e| panic!("complete ext/part-copied: {}", e.describe()));
    let want = Expect {
        data: part,
        etag: &multipart_etag(&[part]),
        content_type: None,
        cache_control: None,
        user: HashMap::new(),
    };
    assert_reads(c, BUCKET, "ext/part-copied", &want, "UploadPartCopy from ext/src").await;
    for secret in ["escrow-secret-small", "text/x-escrow-ext"] {
        h.assert_store_lacks(secret.as_bytes(), "COPIED METADATA");
    }
    h.assert_no_plaintext(MARKER);
}

/// A multipart source large enough for an S3 store to copy it server-side in parts (its part
/// streams as one UploadPartCopy range, the new manifest as the last part).
async fn copy_large_multipart(kind: StoreKind) {
    let h = harness(kind).await;
    h.create_bucket(OTHER_BUCKET).await;
    let parts = [
        data_with_marker(MIN_PART),
        data_with_marker(MIN_PART),
        data_with_marker(1000),
    ];
    let refs = [&parts[0][..], &parts[1][..], &parts[2][..]];
    let data = parts.concat();
    let etag = multipart_etag(&refs);
    assert_eq!(
        upload_multipart(&h.plain_client, BUCKET, "large/src", &refs).await,
        etag
    );
    let c = &h.client;
    copy(c, BUCKET, "large/src", BUCKET, "large/copy")
        .send()
        .await
        .unwrap_or_else(|e| panic!("COPY: {}", e.describe()));
    copy(c, BUCKET, "large/src", OTHER_BUCKET, "large/replaced")
        .metadata_directive(MetadataDirective::Replace)
        .content_type("text/x-escrow-large")
        .metadata("k", "v")
        .send()
        .await
        .unwrap_or_else(|e| panic!("REPLACE: {}", e.describe()));
    let plain = Expect {
        data: &data,
        etag: &etag,
        content_type: None,
        cache_control: None,
        user: HashMap::new(),
    };
    assert_reads(c, BUCKET, "large/copy", &plain, "COPY").await;
    let replaced = Expect {
        content_type: Some("text/x-escrow-large"),
        user: [("k".to_string(), "v".to_string())].into(),
        ..plain
    };
    assert_reads(c, OTHER_BUCKET, "large/replaced", &replaced, "REPLACE").await;
    for (bucket, key) in [(BUCKET, "large/copy"), (OTHER_BUCKET, "large/replaced")] {
        let range = format!("bytes={}-{}", 2 * MIN_PART - 5, 2 * MIN_PART + 4);
        match try_get(&h.plain_client, bucket, key, Some(&range)).await {
            GetOutcome::Complete { body, .. } => {
                assert!(body[..] == data[2 * MIN_PART - 5..2 * MIN_PART + 5], "{key} {range}")
            }
            other => panic!("{key} {range}: {other:?}"),
        }
    }
    let stored = h.stored_object(BUCKET, "large/copy");
    h.put(BUCKET, "large/moved", &data_with_marker(10)).await;
    h.write_stored_object(BUCKET, "large/moved", &stored);
    assert_unreadable(&h, BUCKET, "large/moved", "large copy moved to another key").await;
    h.assert_no_plaintext(MARKER);
}
