//! Standard headers and user metadata: returned as sent, sealed away from the store, and not
//! pushed over S3's 2 KB user-metadata limit by the proxy's own record (it moves into the
//! object's header extension instead).

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::{ByteStream, DateTime, DateTimeFormat};

use crate::common::{ErrorExt, MARKER, S3_USER_METADATA_LIMIT, StoreKind, assert_s3_error, data_with_marker};
use crate::{BUCKET, harness};

per_store!(
    standard_headers_and_user_metadata,
    user_metadata_near_the_limit_fits_the_store,
    user_metadata_over_the_limit_is_refused,
    sse_kms_requests_are_honoured_truthfully,
);

async fn standard_headers_and_user_metadata(kind: StoreKind) {
    let h = harness(kind).await;
    let expires = DateTime::from_secs(1_900_000_000);
    let expires_text = expires.fmt(DateTimeFormat::HttpDate).expect("format http date");
    let secrets = [
        "application/x-escrow-secret-type",
        "escrow-secret-filename.bin",
        "max-age=4242, escrow-secret-cache",
        "escrow-secret-meta-value",
        "secretcolour",
        "x-escrow-secret-lang",
    ];
    for (label, client) in h.clients() {
        let key = format!("hdr/{label}");
        let data = data_with_marker(1000);
        client
            .put_object()
            .bucket(BUCKET)
            .key(&key)
            .body(ByteStream::from(data.clone()))
            .content_type("application/x-escrow-secret-type")
            .content_disposition("attachment; filename=\"escrow-secret-filename.bin\"")
            .cache_control("max-age=4242, escrow-secret-cache")
            .content_encoding("gzip")
            .content_language("x-escrow-secret-lang")
            .expires(expires)
            .metadata("SecretColour", "escrow-secret-meta-value")
            .metadata("two-words", "hello world")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{label}: put with headers: {}", DisplayErrorContext(&e)));

        let want_meta: std::collections::HashMap<String, String> = [
            ("secretcolour".to_string(), "escrow-secret-meta-value".to_string()),
            ("two-words".to_string(), "hello world".to_string()),
        ]
        .into();

        let head = client
            .head_object()
            .bucket(BUCKET)
            .key(&key)
            .send()
            .await
            .expect("head");
        let got = client.get_object().bucket(BUCKET).key(&key).send().await.expect("get");
        let views = [
            (
                "HEAD",
                head.content_type(),
                head.content_disposition(),
                head.cache_control(),
                head.content_encoding(),
                head.content_language(),
                head.expires_string(),
                head.metadata(),
            ),
            (
                "GET",
                got.content_type(),
                got.content_disposition(),
                got.cache_control(),
                got.content_encoding(),
                got.content_language(),
                got.expires_string(),
                got.metadata(),
            ),
        ];
        for (op, ctype, disposition, cache, encoding, language, expires, meta) in views {
            let at = format!("{label} {op}");
            assert_eq!(ctype, Some("application/x-escrow-secret-type"), "{at} Content-Type");
            assert_eq!(
                disposition,
                Some("attachment; filename=\"escrow-secret-filename.bin\""),
                "{at} Content-Disposition"
            );
            assert_eq!(cache, Some("max-age=4242, escrow-secret-cache"), "{at} Cache-Control");
            assert_eq!(
                encoding,
                Some("gzip"),
                "{at} Content-Encoding (aws-chunked must be stripped)"
            );
            assert_eq!(language, Some("x-escrow-secret-lang"), "{at} Content-Language");
            assert_eq!(expires, Some(expires_text.as_str()), "{at} Expires");
            assert_eq!(meta, Some(&want_meta), "{at} user metadata");
        }
        let body = got.body.collect().await.expect("body").to_vec();
        assert!(body == data, "{label}: body differs");

        // response-* query parameters override what GET answers (as presigned links use them).
        let got = client
            .get_object()
            .bucket(BUCKET)
            .key(&key)
            .response_content_type("text/x-override")
            .response_content_disposition("inline; filename=\"override.txt\"")
            .response_cache_control("no-store")
            .send()
            .await
            .expect("get with response overrides");
        assert_eq!(got.content_type(), Some("text/x-override"), "{label}");
        assert_eq!(
            got.content_disposition(),
            Some("inline; filename=\"override.txt\""),
            "{label}"
        );
        assert_eq!(got.cache_control(), Some("no-store"), "{label}");
        assert!(
            got.body.collect().await.expect("body").to_vec() == data,
            "{label}: body differs"
        );
    }
    for secret in secrets {
        h.assert_store_lacks(secret.as_bytes(), "A HEADER OR METADATA VALUE");
    }
    h.assert_store_lacks(expires_text.as_bytes(), "THE EXPIRES VALUE");
    h.assert_no_plaintext(MARKER);
}

/// S3 allows 2 KB of user metadata (the bytes of every name and value) and far longer standard
/// headers; a client within those limits must not be refused because the proxy's own metadata
/// pushes the store's copy over 2 KB (DESIGN §3). The s3s-fs harness enforces AWS's limit like
/// AWS (400 MetadataTooLarge); the fs store has no limit, so the stored metadata is measured.
async fn user_metadata_near_the_limit_fits_the_store(kind: StoreKind) {
    let h = harness(kind).await;
    let entries: Vec<(String, String)> = (0..20).map(|i| (format!("a{i:02}"), "v".repeat(95))).collect();
    let client_bytes: usize = entries.iter().map(|(k, v)| k.len() + v.len()).sum();
    assert!(
        client_bytes <= S3_USER_METADATA_LIMIT,
        "the request itself must be valid on S3"
    );
    let long_disposition = format!("attachment; filename=\"{}.bin\"", "d".repeat(1800));

    let mut problems = Vec::new();
    for (key, what) in [
        ("meta-heavy", format!("{client_bytes} bytes of user metadata")),
        (
            "disposition-heavy",
            format!("a {}-byte Content-Disposition", long_disposition.len()),
        ),
    ] {
        let mut req = h
            .plain_client
            .put_object()
            .bucket(BUCKET)
            .key(key)
            .content_type("text/plain")
            .body(ByteStream::from(data_with_marker(100)));
        if key == "meta-heavy" {
            for (k, v) in &entries {
                req = req.metadata(k, v);
            }
        } else {
            req = req.content_disposition(&long_disposition);
        }
        if let Err(e) = req.send().await {
            problems.push(format!("PUT with {what} refused: {} {}", e.http_status(), e.s3_code()));
            continue;
        }
        let stored = h.stored_object(BUCKET, key);
        let stored_bytes: usize = stored.metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
        if stored_bytes > S3_USER_METADATA_LIMIT {
            problems.push(format!(
                "{what} became {stored_bytes} bytes of stored user metadata: {:?}",
                stored.metadata.iter().map(|(k, v)| (k, v.len())).collect::<Vec<_>>()
            ));
            continue;
        }
        let head = h
            .plain_client
            .head_object()
            .bucket(BUCKET)
            .key(key)
            .send()
            .await
            .expect("head");
        if key == "meta-heavy" {
            let got = head.metadata().expect("metadata");
            assert_eq!(got.len(), entries.len());
            for (k, v) in &entries {
                assert_eq!(got.get(k), Some(v), "{k}");
            }
        } else {
            assert_eq!(head.content_disposition(), Some(long_disposition.as_str()));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    h.assert_no_plaintext(MARKER);
}

/// A client over S3's 2 KB of user metadata gets S3's answer (400 MetadataTooLarge) from PUT,
/// CreateMultipartUpload and a copy that replaces metadata, and nothing is stored.
async fn user_metadata_over_the_limit_is_refused(kind: StoreKind) {
    let h = harness(kind).await;
    let c = &h.plain_client;
    let big = "v".repeat(S3_USER_METADATA_LIMIT); // with the name, one name byte too many
    let put = c
        .put_object()
        .bucket(BUCKET)
        .key("too-much")
        .metadata("k", &big)
        .body(ByteStream::from(data_with_marker(100)))
        .send()
        .await;
    assert_s3_error(put, 400, "MetadataTooLarge", "PUT");
    let create = c
        .create_multipart_upload()
        .bucket(BUCKET)
        .key("too-much")
        .metadata("k", &big)
        .send()
        .await;
    assert_s3_error(create, 400, "MetadataTooLarge", "CreateMultipartUpload");
    h.put(BUCKET, "source", b"source bytes").await;
    let copy = c
        .copy_object()
        .bucket(BUCKET)
        .key("too-much")
        .copy_source(format!("{BUCKET}/source"))
        .metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace)
        .metadata("k", &big)
        .send()
        .await;
    assert_s3_error(copy, 400, "MetadataTooLarge", "CopyObject REPLACE");
    let head = c.head_object().bucket(BUCKET).key("too-much").send().await;
    assert_s3_error(head, 404, "", "nothing stored");
    let uploads = c
        .list_multipart_uploads()
        .bucket(BUCKET)
        .send()
        .await
        .expect("list uploads");
    assert!(uploads.uploads().is_empty(), "no upload started");
    // Exactly at the limit is accepted.
    let at_limit = "v".repeat(S3_USER_METADATA_LIMIT - 1);
    c.put_object()
        .bucket(BUCKET)
        .key("at-limit")
        .metadata("k", &at_limit)
        .body(ByteStream::from(data_with_marker(100)))
        .send()
        .await
        .expect("2 KB of user metadata is accepted");
    h.assert_no_plaintext(MARKER);
}

/// Applications configured for SSE-KMS by policy work through the proxy: PUT, multipart and
/// copy requests asking for `aws:kms` (with a key id and context) are accepted, and every answer
/// says truthfully what protects the object — `AES256`, the proxy's own encryption — and never
/// echoes a KMS key id. The key id is not stored either.
async fn sse_kms_requests_are_honoured_truthfully(kind: StoreKind) {
    use aws_sdk_s3::types::ServerSideEncryption as Sse;
    let h = harness(kind).await;
    let c = &h.plain_client;
    let key_id = "arn:aws:kms:us-east-1:111122223333:key/escrow-secret-kms-key-id";
    let data = data_with_marker(2000);
    let put = c
        .put_object()
        .bucket(BUCKET)
        .key("kms")
        .server_side_encryption(Sse::AwsKms)
        .ssekms_key_id(key_id)
        .ssekms_encryption_context("eyJhIjoiYiJ9")
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .expect("PUT asking for SSE-KMS");
    assert_eq!(put.server_side_encryption(), Some(&Sse::Aes256));
    assert_eq!(put.ssekms_key_id(), None);
    let head = c.head_object().bucket(BUCKET).key("kms").send().await.expect("head");
    assert_eq!(head.server_side_encryption(), Some(&Sse::Aes256));
    assert_eq!(head.ssekms_key_id(), None);
    let got = c.get_object().bucket(BUCKET).key("kms").send().await.expect("get");
    assert!(got.body.collect().await.expect("body").to_vec() == data);
    let copy = c
        .copy_object()
        .bucket(BUCKET)
        .key("kms-copy")
        .copy_source(format!("{BUCKET}/kms"))
        .server_side_encryption(Sse::AwsKms)
        .send()
        .await
        .expect("copy asking for SSE-KMS");
    assert_eq!(copy.server_side_encryption(), Some(&Sse::Aes256));
    let up = c
        .create_multipart_upload()
        .bucket(BUCKET)
        .key("kms-mp")
        .server_side_encryption(Sse::AwsKms)
        .ssekms_key_id(key_id)
        .send()
        .await
        .expect("multipart asking for SSE-KMS");
    assert_eq!(up.server_side_encryption(), Some(&Sse::Aes256));
    c.abort_multipart_upload()
        .bucket(BUCKET)
        .key("kms-mp")
        .upload_id(up.upload_id().expect("id"))
        .send()
        .await
        .expect("abort");
    // Must-fail twins: a KMS key id without aws:kms; an algorithm S3 does not know.
    let bad = c
        .put_object()
        .bucket(BUCKET)
        .key("kms-bad")
        .server_side_encryption(Sse::Aes256)
        .ssekms_key_id(key_id)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await;
    assert_s3_error(bad, 400, "InvalidArgument", "a KMS key id with AES256");
    let bad = c
        .put_object()
        .bucket(BUCKET)
        .key("kms-bad")
        .server_side_encryption(Sse::from("rot13"))
        .body(ByteStream::from_static(b"x"))
        .send()
        .await;
    assert_s3_error(bad, 400, "InvalidArgument", "an unknown algorithm");
    assert_s3_error(
        c.head_object().bucket(BUCKET).key("kms-bad").send().await,
        404,
        "",
        "nothing stored",
    );
    h.assert_store_lacks(key_id.as_bytes(), "THE KMS KEY ID");
    h.assert_no_plaintext(MARKER);
}
