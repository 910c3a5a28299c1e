//! Authentication: wrong secrets, unknown access keys (answered like wrong secrets) and unsigned
//! requests are refused and store nothing; presigned GET and PUT work, and tampered, re-pointed or expired ones do not.

use std::time::{Duration, SystemTime};

use aws_sdk_s3::Client;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;

use crate::common::{
    self, ACCESS_KEY, Checksums, MARKER, SECRET_KEY, SEGMENT, StoreKind, assert_s3_error, data_with_marker, etag_of,
};
use crate::{BUCKET, harness};

per_store!(auth_failures, presigned_urls);

async fn auth_failures(kind: StoreKind) {
    let h = harness(kind).await;
    let data = data_with_marker(500);
    h.put(BUCKET, "secret", &data).await;

    for checksums in [Checksums::Default, Checksums::WhenRequired] {
        let wrong_secret = h.client_with(ACCESS_KEY, "not-the-secret", checksums);
        assert_s3_error(
            wrong_secret.list_buckets().send().await,
            403,
            "SignatureDoesNotMatch",
            "wrong secret: list",
        );
        assert_s3_error(
            wrong_secret.get_object().bucket(BUCKET).key("secret").send().await,
            403,
            "SignatureDoesNotMatch",
            "wrong secret: get",
        );
        assert_s3_error(
            wrong_secret
                .put_object()
                .bucket(BUCKET)
                .key("forged")
                .body(ByteStream::from(data.clone()))
                .send()
                .await,
            403,
            "SignatureDoesNotMatch",
            "wrong secret: put",
        );
        // An unknown access key answers exactly like a wrong secret: a stranger cannot probe
        // which access keys exist.
        let unknown = h.client_with("AKIAUNKNOWNUNKNOWN00", SECRET_KEY, checksums);
        assert_s3_error(
            unknown.get_object().bucket(BUCKET).key("secret").send().await,
            403,
            "SignatureDoesNotMatch",
            "unknown access key",
        );
        assert_s3_error(
            unknown
                .put_object()
                .bucket(BUCKET)
                .key("forged")
                .body(ByteStream::from(data.clone()))
                .send()
                .await,
            403,
            "SignatureDoesNotMatch",
            "unknown access key: put",
        );
    }
    assert_s3_error(
        h.client.head_object().bucket(BUCKET).key("forged").send().await,
        404,
        "",
        "a PUT with a wrong signature stored nothing",
    );

    // No signature at all.
    let http = h.http();
    let url = format!("{}/{BUCKET}/secret", h.endpoint);
    let resp = http.get(&url).send().await.expect("unsigned GET");
    assert_eq!(resp.status().as_u16(), 403, "unsigned GET");
    assert!(
        common::shared::find(&resp.bytes().await.unwrap(), MARKER).is_none(),
        "unsigned GET leaked plaintext"
    );
    let resp = http
        .put(format!("{}/{BUCKET}/anonymous", h.endpoint))
        .body(data.clone())
        .send()
        .await
        .expect("unsigned PUT");
    assert_eq!(resp.status().as_u16(), 403, "unsigned PUT");
    let resp = http
        .get(format!("{}/", h.endpoint))
        .send()
        .await
        .expect("unsigned list");
    assert_eq!(resp.status().as_u16(), 403, "unsigned ListBuckets");
    assert_s3_error(
        h.client.head_object().bucket(BUCKET).key("anonymous").send().await,
        404,
        "",
        "an unsigned PUT stored nothing",
    );
    h.assert_no_plaintext(MARKER);
}

pub(crate) async fn presign_get(client: &Client, key: &str, expires_in: Duration, start: Option<SystemTime>) -> String {
    let mut cfg = PresigningConfig::builder().expires_in(expires_in);
    if let Some(start) = start {
        cfg = cfg.start_time(start);
    }
    client
        .get_object()
        .bucket(BUCKET)
        .key(key)
        .presigned(cfg.build().expect("presigning config"))
        .await
        .expect("presign GET")
        .uri()
        .to_string()
}

async fn presigned_urls(kind: StoreKind) {
    let h = harness(kind).await;
    let data = data_with_marker(2 * SEGMENT + 3);
    h.put(BUCKET, "shared", &data).await;
    let http = h.http();

    for (label, client) in h.clients() {
        let url = presign_get(client, "shared", Duration::from_secs(300), None).await;
        let resp = http.get(&url).send().await.expect("presigned GET");
        assert_eq!(resp.status().as_u16(), 200, "{label} presigned GET");
        assert_eq!(
            resp.headers().get("etag").and_then(|v| v.to_str().ok()),
            Some(etag_of(&data).as_str())
        );
        assert!(
            resp.bytes().await.expect("body")[..] == data[..],
            "{label} presigned GET body"
        );

        // The same URL with one signature digit changed.
        let at = url.find("X-Amz-Signature=").expect("signature in URL") + "X-Amz-Signature=".len();
        let mut tampered = url.clone().into_bytes();
        tampered[at] = if tampered[at] == b'0' { b'1' } else { b'0' };
        let tampered = String::from_utf8(tampered).expect("ascii");
        let resp = http.get(&tampered).send().await.expect("tampered GET");
        assert_eq!(resp.status().as_u16(), 403, "{label} tampered signature");
        assert!(common::shared::find(&resp.bytes().await.unwrap(), MARKER).is_none());

        // Another key under the same signature.
        let other = url.replacen("/shared?", "/other?", 1);
        assert_ne!(other, url);
        let resp = http.get(&other).send().await.expect("re-pointed GET");
        assert_eq!(resp.status().as_u16(), 403, "{label} signature for another key");

        // Signed an hour ago, valid for one second: already expired.
        let expired = presign_get(
            client,
            "shared",
            Duration::from_secs(1),
            Some(SystemTime::now() - Duration::from_secs(3600)),
        )
        .await;
        let resp = http.get(&expired).send().await.expect("expired GET");
        assert_eq!(resp.status().as_u16(), 403, "{label} expired presigned URL");
        assert!(common::shared::find(&resp.bytes().await.unwrap(), MARKER).is_none());

        // Presigned PUT.
        let key = format!("uploaded/{label}");
        let body = data_with_marker(SEGMENT + 77);
        let url = client
            .put_object()
            .bucket(BUCKET)
            .key(&key)
            .presigned(PresigningConfig::expires_in(Duration::from_secs(300)).expect("config"))
            .await
            .expect("presign PUT");
        let mut req = http.put(url.uri());
        for (name, value) in url.headers() {
            req = req.header(name, value);
        }
        let resp = req.body(body.clone()).send().await.expect("presigned PUT");
        let status = resp.status().as_u16();
        let etag = resp
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        assert_eq!(
            status,
            200,
            "{label} presigned PUT: {}",
            resp.text().await.unwrap_or_default()
        );
        assert_eq!(etag, Some(etag_of(&body)), "{label} presigned PUT ETag");
        assert!(h.get(BUCKET, &key).await == body, "{label} presigned PUT content");
    }
    h.assert_no_plaintext(MARKER);
}
