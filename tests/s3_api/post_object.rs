//! POST Object (browser-form uploads) through the proxy: real SigV4-signed forms (signed here
//! with hmac/sha2 as a browser page's server would), sent over TLS with reqwest. Each check of
//! the form has its must-fail twin, and a refused form leaves nothing behind (HEAD 404, no
//! internal multipart upload). The expected statuses and codes follow AWS and the s3-tests
//! `test_post_object_*` cases.

use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use crate::common::{
    ACCESS_KEY, Harness, MARKER, MIN_PART, REGION, SECRET_KEY, StoreKind, assert_s3_error, data_with_marker, md5_hex,
    multipart_etag,
};
use crate::{BUCKET, harness};

per_store!(
    post_object_uploads_and_answers_as_s3,
    post_object_large_file_goes_through_an_internal_multipart_upload,
    post_object_refusals_write_nothing,
    post_object_checksums_and_sse_c_as_a_put,
    post_object_sigv2_forms,
);

const BOUNDARY: &str = "----escrowPostBoundary7MA4YWxk";

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("hmac key");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// A form: fields in order, then the file part, then fields after it.
#[derive(Clone)]
struct Form {
    fields: Vec<(String, String)>,
    filename: String,
    file: Vec<u8>,
    after: Vec<(String, String)>,
}

impl Form {
    fn set(&mut self, name: &str, value: &str) {
        match self.fields.iter_mut().find(|(k, _)| k == name) {
            Some(f) => f.1 = value.to_string(),
            None => self.fields.push((name.to_string(), value.to_string())),
        }
    }

    fn remove(&mut self, name: &str) {
        self.fields.retain(|(k, _)| k != name);
    }

    fn body(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in &self.fields {
            out.extend_from_slice(
                format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").as_bytes(),
            );
        }
        out.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{}\"\r\nContent-Type: application/octet-stream\r\n\r\n",
                self.filename
            )
            .as_bytes(),
        );
        out.extend_from_slice(&self.file);
        out.extend_from_slice(b"\r\n");
        for (k, v) in &self.after {
            out.extend_from_slice(
                format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").as_bytes(),
            );
        }
        out.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
        out
    }
}

/// A form signed with SigV4 by `access_key`/`secret`: the policy allows `bucket`, keys under
/// `prefix`, every given field exactly, plus `extra` conditions; it expires at `expiration`.
fn signed_form(
    access_key: &str,
    secret: &str,
    key: &str,
    fields: &[(&str, &str)],
    extra: Vec<serde_json::Value>,
    expiration: &str,
    file: Vec<u8>,
) -> Form {
    let now = time::OffsetDateTime::now_utc();
    let date = format!("{:04}{:02}{:02}", now.year(), u8::from(now.month()), now.day());
    let amz_date = format!("{date}T{:02}{:02}{:02}Z", now.hour(), now.minute(), now.second());
    let credential = format!("{access_key}/{date}/{REGION}/s3/aws4_request");
    let mut conditions = vec![
        json!({ "bucket": BUCKET }),
        json!([
            "starts-with",
            "$key",
            key.split("${filename}").next().unwrap_or_default()
        ]),
        json!({ "x-amz-algorithm": "AWS4-HMAC-SHA256" }),
        json!({ "x-amz-credential": credential }),
        json!({ "x-amz-date": amz_date }),
    ];
    for (k, v) in fields {
        conditions.push(json!(["eq", format!("${k}"), v]));
    }
    conditions.extend(extra);
    let policy = json!({ "expiration": expiration, "conditions": conditions }).to_string();
    let policy = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, policy);
    let mut k = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    for part in [REGION, "s3", "aws4_request"] {
        k = hmac(&k, part.as_bytes());
    }
    let signature = hex::encode(hmac(&k, policy.as_bytes()));
    let mut all: Vec<(String, String)> = vec![("key".into(), key.into())];
    all.extend(fields.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    all.extend([
        ("x-amz-algorithm".to_string(), "AWS4-HMAC-SHA256".to_string()),
        ("x-amz-credential".to_string(), credential),
        ("x-amz-date".to_string(), amz_date),
        ("policy".to_string(), policy),
        ("x-amz-signature".to_string(), signature),
    ]);
    Form {
        fields: all,
        filename: "upload.bin".into(),
        file,
        after: Vec::new(),
    }
}

const LATER: &str = "2099-01-01T00:00:00.000Z";

/// A form signed the SigV2 way (`AWSAccessKeyId`, `signature` = base64 HMAC-SHA1 of the base64
/// policy), as the ceph s3-tests POST cases and older browser-upload code sign.
fn sigv2_form(access_key: &str, secret: &str, key: &str, expiration: &str, file: Vec<u8>) -> Form {
    let policy = json!({
        "expiration": expiration,
        "conditions": [
            { "bucket": BUCKET },
            ["starts-with", "$key", "v2/"],
            ["content-length-range", 0, 1 << 20],
        ],
    })
    .to_string();
    let policy = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, policy);
    let key_ = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
    let signature = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        ring::hmac::sign(&key_, policy.as_bytes()),
    );
    Form {
        fields: vec![
            ("key".into(), key.into()),
            ("AWSAccessKeyId".into(), access_key.into()),
            ("policy".into(), policy),
            ("signature".into(), signature),
        ],
        filename: "v2.bin".into(),
        file,
        after: Vec::new(),
    }
}

/// The harness's own client's form for `key`.
fn form(key: &str, fields: &[(&str, &str)], extra: Vec<serde_json::Value>, file: Vec<u8>) -> Form {
    signed_form(ACCESS_KEY, SECRET_KEY, key, fields, extra, LATER, file)
}

/// What the proxy answered.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Answer {
    fn code(&self) -> String {
        self.body
            .split("<Code>")
            .nth(1)
            .and_then(|r| r.split("</Code>").next())
            .unwrap_or_default()
            .to_string()
    }

    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    }
}

/// Posts `form` to `path` (no redirects followed).
async fn post_to(h: &Harness, path: &str, form: &Form) -> Answer {
    let ca = reqwest::Certificate::from_pem(&h.ca_pem).expect("parse ca.pem");
    let http = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("reqwest client");
    let resp = http
        .post(format!("{}{path}", h.endpoint))
        .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
        .body(form.body())
        .send()
        .await
        .expect("POST form");
    Answer {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        body: resp.text().await.expect("answer body"),
    }
}

async fn post(h: &Harness, form: &Form) -> Answer {
    post_to(h, &format!("/{BUCKET}"), form).await
}

/// Asserts the answer's status and S3 error code.
fn check(a: Answer, status: u16, code: &str, what: &str) {
    assert_eq!((a.status, a.code()), (status, code.to_string()), "{what}: {}", a.body);
}

/// Asserts `key` does not exist.
async fn assert_absent(h: &Harness, key: &str, what: &str) {
    assert_s3_error(
        h.client.head_object().bucket(BUCKET).key(key).send().await,
        404,
        "",
        &format!("{what}: object written anyway"),
    );
}

/// Asserts no multipart upload is in progress in the bucket.
async fn assert_no_uploads(h: &Harness, what: &str) {
    let uploads = h
        .client
        .list_multipart_uploads()
        .bucket(BUCKET)
        .send()
        .await
        .expect("list uploads");
    assert!(uploads.uploads().is_empty(), "{what}: an upload was left behind");
}

async fn post_object_uploads_and_answers_as_s3(kind: StoreKind) {
    let h = harness(kind).await;
    let data = data_with_marker(3000);
    // A 204 with the object's headers, metadata and SSE field kept, as a PUT keeps them.
    let f = form(
        "post/meta.bin",
        &[
            ("Content-Type", "application/x-escrow-post"),
            ("Cache-Control", "max-age=77"),
            ("Content-Disposition", "attachment; filename=\"p.bin\""),
            ("x-amz-meta-colour", "teal"),
            ("x-amz-server-side-encryption", "AES256"),
        ],
        vec![json!(["content-length-range", 1, 10_000])],
        data.clone(),
    );
    let a = post(&h, &f).await;
    assert_eq!(a.status, 204, "{}", a.body);
    assert_eq!(a.header("etag"), format!("\"{}\"", md5_hex(&data)), "a PUT's ETag");
    assert_eq!(a.header("x-amz-server-side-encryption"), "AES256");
    assert!(a.header("location").ends_with(&format!("/{BUCKET}/post/meta.bin")));
    assert_eq!(h.get(BUCKET, "post/meta.bin").await, data, "read back byte-exact");
    let head = h
        .client
        .head_object()
        .bucket(BUCKET)
        .key("post/meta.bin")
        .send()
        .await
        .expect("head");
    assert_eq!(head.content_type(), Some("application/x-escrow-post"));
    assert_eq!(head.cache_control(), Some("max-age=77"));
    assert_eq!(head.content_disposition(), Some("attachment; filename=\"p.bin\""));
    assert_eq!(
        head.metadata().and_then(|m| m.get("colour")).map(String::as_str),
        Some("teal")
    );
    assert_eq!(head.e_tag(), Some(a.header("etag").as_str()));

    // `${filename}` is the file part's name; field names are case-insensitive; fields after
    // the file are ignored; `x-ignore-*` needs no condition.
    let mut f = form("post/${filename}", &[], vec![], b"named".to_vec());
    f.filename = "report 1.txt".into();
    f.fields.iter_mut().for_each(|(k, _)| {
        if k == "key" {
            *k = "KEY".into();
        }
    });
    f.fields.push(("x-ignore-me".into(), "whatever".into()));
    f.after.push(("x-amz-meta-late".into(), "ignored".into()));
    let a = post(&h, &f).await;
    assert_eq!(a.status, 204, "{}", a.body);
    assert_eq!(h.get(BUCKET, "post/report 1.txt").await, b"named");

    // success_action_status 200 (empty) and 201 (PostResponse XML); anything else is 204.
    let ok = form("post/200", &[("success_action_status", "200")], vec![], b"a".to_vec());
    let a = post(&h, &ok).await;
    assert_eq!((a.status, a.body.as_str()), (200, ""));
    let created = form("post/201", &[("success_action_status", "201")], vec![], b"b".to_vec());
    let a = post(&h, &created).await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert!(a.body.contains("<Bucket>escrow-api</Bucket>") && a.body.contains("<Key>post/201</Key>"));
    assert!(
        a.body.contains(&format!("<ETag>&quot;{}&quot;</ETag>", md5_hex(b"b"))),
        "{}",
        a.body
    );
    let odd = form("post/404", &[("success_action_status", "404")], vec![], b"c".to_vec());
    let a = post(&h, &odd).await;
    assert_eq!((a.status, a.body.as_str()), (204, ""));

    // A redirect: 303 to the URL with bucket, key and quoted ETag appended.
    let target = "https://example.invalid/done";
    let r = form(
        "post/redirected",
        &[("success_action_redirect", target)],
        vec![],
        b"d".to_vec(),
    );
    let a = post(&h, &r).await;
    assert_eq!(a.status, 303, "{}", a.body);
    assert_eq!(
        a.header("location"),
        format!(
            "{target}?bucket={BUCKET}&key=post%2Fredirected&etag=%22{}%22",
            md5_hex(b"d")
        )
    );
    assert_eq!(h.get(BUCKET, "post/redirected").await, b"d");
    h.assert_no_plaintext(MARKER);
}

async fn post_object_large_file_goes_through_an_internal_multipart_upload(kind: StoreKind) {
    let h = harness(kind).await;
    // Over the 5 MiB read-ahead: stored in 5 MiB parts, read back byte-exact.
    let data = data_with_marker(12 << 20);
    let f = form("post/large.bin", &[], vec![], data.clone());
    let a = post(&h, &f).await;
    assert_eq!(a.status, 204, "{}", a.body);
    let parts: Vec<&[u8]> = data.chunks(MIN_PART).collect();
    assert_eq!(
        a.header("etag"),
        multipart_etag(&parts),
        "a multipart ETag of 5 MiB parts"
    );
    assert!(h.get(BUCKET, "post/large.bin").await == data, "read back byte-exact");
    assert_no_uploads(&h, "after a large POST").await;

    // Must-fail twin: the policy's maximum passed after the first part went out: 400
    // EntityTooLarge, the internal upload aborted, nothing written.
    let f = form(
        "post/too-large.bin",
        &[],
        vec![json!(["content-length-range", 0, 6 << 20])],
        data.clone(),
    );
    let a = post(&h, &f).await;
    assert_eq!((a.status, a.code().as_str()), (400, "EntityTooLarge"), "{}", a.body);
    assert_absent(&h, "post/too-large.bin", "over the policy's maximum").await;
    assert_no_uploads(&h, "over the policy's maximum").await;

    // A file that ends exactly at the read-ahead is one PutObject (plain MD5 ETag).
    let exact = data[..MIN_PART].to_vec();
    let a = post(&h, &form("post/exact.bin", &[], vec![], exact.clone())).await;
    assert_eq!(a.status, 204, "{}", a.body);
    assert_eq!(a.header("etag"), format!("\"{}\"", md5_hex(&exact)));
    assert!(h.get(BUCKET, "post/exact.bin").await == exact);
    h.assert_no_plaintext(MARKER);
}

async fn post_object_refusals_write_nothing(kind: StoreKind) {
    let h = harness(kind).await;
    let data = b"refused body".to_vec();
    let good = form("refused/k", &[("acl", "private")], vec![], data.clone());

    // The signature: tampered, over a tampered policy, or by an unknown access key.
    let mut f = good.clone();
    let sig = f
        .fields
        .iter()
        .find(|(k, _)| k == "x-amz-signature")
        .expect("sig")
        .1
        .clone();
    let flipped = format!("{}{}", if sig.starts_with('0') { '1' } else { '0' }, &sig[1..]);
    f.set("x-amz-signature", &flipped);
    check(post(&h, &f).await, 403, "SignatureDoesNotMatch", "tampered signature");
    let mut f = good.clone();
    let policy = f.fields.iter().find(|(k, _)| k == "policy").expect("policy").1.clone();
    let doc =
        String::from_utf8(base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &policy).expect("b64"))
            .expect("utf8")
            .replace("refused/k", "");
    f.set(
        "policy",
        &base64::Engine::encode(&base64::engine::general_purpose::STANDARD, doc),
    );
    check(post(&h, &f).await, 403, "SignatureDoesNotMatch", "tampered policy");
    let stranger = signed_form(
        "AKIAUNKNOWNCLIENT0001",
        SECRET_KEY,
        "refused/k",
        &[],
        vec![],
        LATER,
        data.clone(),
    );
    check(
        post(&h, &stranger).await,
        403,
        "SignatureDoesNotMatch",
        "unknown access key",
    );
    let wrong_secret = signed_form(
        ACCESS_KEY,
        "not-the-secret",
        "refused/k",
        &[],
        vec![],
        LATER,
        data.clone(),
    );
    check(
        post(&h, &wrong_secret).await,
        403,
        "SignatureDoesNotMatch",
        "wrong secret",
    );

    // The policy: expired; an expiration S3 cannot read; a field it does not allow; a value
    // that does not match; no bucket condition.
    let expired = signed_form(
        ACCESS_KEY,
        SECRET_KEY,
        "refused/k",
        &[],
        vec![],
        "2020-01-01T00:00:00.000Z",
        data.clone(),
    );
    check(post(&h, &expired).await, 403, "AccessDenied", "expired policy");
    let bad_date = signed_form(
        ACCESS_KEY,
        SECRET_KEY,
        "refused/k",
        &[],
        vec![],
        "2099-01-01 00:00:00.000000+00:00",
        data.clone(),
    );
    check(
        post(&h, &bad_date).await,
        400,
        "InvalidPolicyDocument",
        "invalid expiration format",
    );
    let mut f = good.clone();
    f.fields.push(("x-amz-meta-sneaky".into(), "v".into()));
    let a = post(&h, &f).await;
    assert!(a.body.contains("Extra input fields: x-amz-meta-sneaky"), "{}", a.body);
    check(a, 403, "AccessDenied", "field not in the policy");
    let mut f = good.clone();
    f.set("acl", "public-read");
    check(post(&h, &f).await, 403, "AccessDenied", "condition mismatch");
    let mut f = good.clone();
    f.set("key", "other/k");
    check(
        post(&h, &f).await,
        403,
        "AccessDenied",
        "key outside the policy's prefix",
    );
    let wrong_bucket = post_to(&h, "/escrow-api-other", &good).await;
    check(wrong_bucket, 403, "AccessDenied", "a bucket the policy does not name");

    // The file: under the policy's minimum; no key; no file at all.
    let small = form(
        "refused/small",
        &[],
        vec![json!(["content-length-range", 100, 1000])],
        data.clone(),
    );
    check(post(&h, &small).await, 400, "EntityTooSmall", "below the minimum");
    assert_absent(&h, "refused/small", "below the minimum").await;
    let mut f = good.clone();
    f.remove("key");
    check(post(&h, &f).await, 400, "InvalidArgument", "no key");

    // Other authentication: anonymous, SigV2.
    let anonymous = Form {
        fields: vec![("key".into(), "refused/k".into())],
        filename: "f".into(),
        file: data.clone(),
        after: vec![],
    };
    check(post(&h, &anonymous).await, 403, "AccessDenied", "anonymous form");
    let v2 = Form {
        fields: vec![
            ("key".into(), "refused/k".into()),
            ("AWSAccessKeyId".into(), ACCESS_KEY.into()),
            ("policy".into(), "e30=".into()),
            ("signature".into(), "c2ln".into()),
        ],
        filename: "f".into(),
        file: data.clone(),
        after: vec![],
    };
    check(
        post(&h, &v2).await,
        403,
        "SignatureDoesNotMatch",
        "SigV2 form, bad signature",
    );

    // A form to an object, not a bucket.
    check(
        post_to(&h, &format!("/{BUCKET}/refused/k"), &good).await,
        405,
        "MethodNotAllowed",
        "form POST to an object",
    );
    assert_absent(&h, "refused/k", "every refusal").await;
    assert_absent(&h, "other/k", "every refusal").await;
    assert_no_uploads(&h, "every refusal").await;

    // The twin of all of the above: the untouched form is stored.
    let a = post(&h, &good).await;
    assert_eq!(a.status, 204, "{}", a.body);
    assert_eq!(h.get(BUCKET, "refused/k").await, data);
}

fn b64(data: &[u8]) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, data)
}

fn sha256_b64(data: &[u8]) -> String {
    use sha2::Digest as _;
    b64(&Sha256::digest(data))
}

async fn post_object_checksums_and_sse_c_as_a_put(kind: StoreKind) {
    let h = harness(kind).await;
    // x-amz-checksum-sha256 (needs no condition): right is stored, wrong is 400 BadDigest, for
    // a file within the read-ahead and for one over it (checked before completion).
    let small = data_with_marker(4000);
    let large = data_with_marker(MIN_PART + 1234);
    for (label, data) in [("small", &small), ("large", &large)] {
        let key = format!("ck/{label}");
        let mut f = form(&key, &[], vec![], data.clone());
        f.fields
            .push(("x-amz-checksum-sha256".into(), sha256_b64(b"something else")));
        let a = post(&h, &f).await;
        assert_eq!((a.status, a.code().as_str()), (400, "BadDigest"), "{label}: {}", a.body);
        assert_absent(&h, &key, &format!("{label}: wrong checksum")).await;
        assert_no_uploads(&h, &format!("{label}: wrong checksum")).await;
        let mut f = form(&key, &[], vec![], data.clone());
        f.fields.push(("x-amz-checksum-sha256".into(), sha256_b64(data)));
        let a = post(&h, &f).await;
        assert_eq!(a.status, 204, "{label}: {}", a.body);
        assert!(h.get(BUCKET, &key).await == *data, "{label}: read back");
    }

    // SSE-C fields, under the policy: the object needs the key to be read, as after a PUT.
    let ck: Vec<u8> = (0u8..32).map(|i| i.wrapping_mul(29) ^ 0x5a).collect();
    let ck_b64 = b64(&ck);
    let ck_md5 = b64(&<md5::Md5 as md5::Digest>::digest(&ck));
    let data = data_with_marker(2500);
    let f = form(
        "ssec/obj",
        &[
            ("x-amz-server-side-encryption-customer-algorithm", "AES256"),
            ("x-amz-server-side-encryption-customer-key", &ck_b64),
            ("x-amz-server-side-encryption-customer-key-md5", &ck_md5),
        ],
        vec![],
        data.clone(),
    );
    let a = post(&h, &f).await;
    assert_eq!(a.status, 204, "{}", a.body);
    assert_eq!(a.header("x-amz-server-side-encryption"), "", "an SSE-C answer, as S3's");
    assert_s3_error(
        h.client.get_object().bucket(BUCKET).key("ssec/obj").send().await,
        400,
        "InvalidRequest",
        "an SSE-C object read without its key",
    );
    let got = h
        .client
        .get_object()
        .bucket(BUCKET)
        .key("ssec/obj")
        .sse_customer_algorithm("AES256")
        .sse_customer_key(&ck_b64)
        .sse_customer_key_md5(&ck_md5)
        .send()
        .await
        .expect("get with the customer key");
    assert!(got.body.collect().await.expect("body").to_vec() == data);
    h.assert_store_lacks(&ck, "SSE-C KEY");

    // A non-private ACL and tagging are refused as on a PUT.
    let f = form("acl/obj", &[("acl", "public-read")], vec![], b"x".to_vec());
    let a = post(&h, &f).await;
    assert_eq!((a.status, a.code().as_str()), (501, "NotImplemented"), "{}", a.body);
    assert_absent(&h, "acl/obj", "public-read ACL").await;
    // A form whose x-amz-date is not the credential's day.
    let mut f = form("date/obj", &[], vec![], b"x".to_vec());
    f.set("x-amz-date", "20000101T000000Z");
    let a = post(&h, &f).await;
    assert_eq!((a.status, a.code().as_str()), (400, "InvalidArgument"), "{}", a.body);
    assert_absent(&h, "date/obj", "x-amz-date off the credential's day").await;
    h.assert_no_plaintext(MARKER);
}

/// SigV2 forms: stored when the HMAC-SHA1 signature checks out, with the same policy rules as
/// SigV4 forms; every broken piece refused with nothing written.
async fn post_object_sigv2_forms(kind: StoreKind) {
    let h = harness(kind).await;
    let data = data_with_marker(2000);
    let good = sigv2_form(ACCESS_KEY, SECRET_KEY, "v2/ok", LATER, data.clone());
    let a = post(&h, &good).await;
    assert_eq!(a.status, 204, "{}", a.body);
    assert_eq!(a.header("etag"), format!("\"{}\"", md5_hex(&data)));
    assert_eq!(h.get(BUCKET, "v2/ok").await, data, "read back byte-exact");

    let wrong_secret = sigv2_form(ACCESS_KEY, "not-the-secret", "v2/no", LATER, data.clone());
    check(
        post(&h, &wrong_secret).await,
        403,
        "SignatureDoesNotMatch",
        "SigV2, wrong secret",
    );
    let unknown = sigv2_form("AKIDUNKNOWN", SECRET_KEY, "v2/no", LATER, data.clone());
    check(
        post(&h, &unknown).await,
        403,
        "SignatureDoesNotMatch",
        "SigV2, unknown key",
    );
    let mut tampered = good.clone();
    tampered.set("key", "v2/no");
    tampered.set(
        "policy",
        &base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            json!({ "expiration": LATER, "conditions": [{ "bucket": BUCKET }, ["starts-with", "$key", ""]] })
                .to_string(),
        ),
    );
    check(
        post(&h, &tampered).await,
        403,
        "SignatureDoesNotMatch",
        "SigV2, policy replaced",
    );
    let expired = sigv2_form(
        ACCESS_KEY,
        SECRET_KEY,
        "v2/no",
        "2001-01-01T00:00:00.000Z",
        data.clone(),
    );
    check(post(&h, &expired).await, 403, "AccessDenied", "SigV2, expired policy");
    let outside = sigv2_form(ACCESS_KEY, SECRET_KEY, "elsewhere/no", LATER, data.clone());
    check(
        post(&h, &outside).await,
        403,
        "AccessDenied",
        "SigV2, key outside the policy",
    );
    let mut unsigned = good.clone();
    unsigned.set("key", "v2/no");
    unsigned.remove("signature");
    check(
        post(&h, &unsigned).await,
        400,
        "InvalidArgument",
        "SigV2 without a signature",
    );
    assert_absent(&h, "v2/no", "every SigV2 refusal").await;
    assert_absent(&h, "elsewhere/no", "every SigV2 refusal").await;
}
