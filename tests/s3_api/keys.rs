//! Keys of any legal name round-trip through every object operation, on both stores: PUT, GET,
//! HEAD, CopyObject (as source and destination), UploadPartCopy (as source), multipart uploads,
//! listings with a prefix, and DeleteObjects; the store holds only ciphertext of them. s3s-fs keeps objects as files, so it cannot hold
//! names a file system refuses (`//`, `.`/`..` segments, very long names); those run on the fs
//! store only.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};

use crate::common::{MARKER, StoreKind, data_with_marker};
use crate::{BUCKET, harness};

per_store!(
    hard_names_round_trip,
    blank_names_round_trip,
    generated_names_round_trip
);

/// Names that trip encoders and decoders: every printable ASCII character class, escapes that
/// look like encodings, whitespace, and multi-byte UTF-8.
fn hard_names(kind: StoreKind) -> Vec<String> {
    // (Keys of only whitespace: `blank_names_round_trip`.)
    let mut names: Vec<String> = [
        "_",
        "__",
        "?versionId",
        "a?b=c&d",
        "pct%41x",
        "b%ar",
        "plus+sign",
        "sp ace",
        "hash#tag",
        "semi;colon,comma",
        "quote\"'`",
        "angle<>brackets",
        "tab\tkey",
        "new\nline",
        "back\\slash",
        "brace{}[]|^~",
        "dollar$at@bang!star*",
        "é/ü/名前",
        "emoji-🔐",
    ]
    .into_iter()
    .map(str::to_string)
    .collect();
    if kind == StoreKind::Fs {
        // Names a file system cannot hold as s3s-fs stores them; S3 allows 1,024 bytes (the
        // test derives names 5 bytes longer).
        names.extend(
            [
                "/leading",
                "a//b",
                "./dot",
                "../up",
                "x/./y",
                "trailing/",
                &"k".repeat(1019),
            ]
            .map(str::to_string),
        );
    }
    names
}

async fn hard_names_round_trip(kind: StoreKind) {
    let h = harness(kind).await;
    let c = &h.plain_client;
    let mut failures = Vec::new();
    for (i, name) in hard_names(kind).into_iter().enumerate() {
        let data = data_with_marker(100 + i);
        let what = |op: &str| format!("{op} {name:?}");
        // PUT, GET, HEAD.
        if let Err(e) = c
            .put_object()
            .bucket(BUCKET)
            .key(&name)
            .body(ByteStream::from(data.clone()))
            .send()
            .await
        {
            failures.push(format!("{}: {e:?}", what("PUT")));
            continue;
        }
        if let Err(e) = read_back(c, &name, &data).await {
            failures.push(format!("{}: {e}", what("GET")));
        }
        if let Err(e) = c.head_object().bucket(BUCKET).key(&name).send().await {
            failures.push(format!("{}: {e:?}", what("HEAD")));
        }
        // Listed under its own name as prefix.
        match c.list_objects_v2().bucket(BUCKET).prefix(&name).send().await {
            Ok(out) if out.contents().iter().any(|o| o.key() == Some(name.as_str())) => {}
            other => failures.push(format!("{}: {other:?}", what("LIST"))),
        }
        // CopyObject, with the name as source and as destination.
        let copy = format!("{name}.copy");
        let source = format!("{BUCKET}/{}", url_encode_path(&name));
        match c
            .copy_object()
            .bucket(BUCKET)
            .key(&copy)
            .copy_source(&source)
            .send()
            .await
        {
            Ok(_) => {
                if let Err(e) = read_back(c, &copy, &data).await {
                    failures.push(format!("{}: {e}", what("GET of a copy")));
                }
            }
            Err(e) => failures.push(format!("{}: {e:?}", what("COPY"))),
        }
        // A multipart upload to the name, one part uploaded and one copied from it.
        if let Err(e) = multipart_round_trip(c, &name, &source, &data).await {
            failures.push(format!("{}: {e}", what("multipart")));
        }
        // DeleteObjects of the copy (a hard name too); the original stays, for the scan below.
        let ids = vec![ObjectIdentifier::builder().key(&copy).build().expect("identifier")];
        match c
            .delete_objects()
            .bucket(BUCKET)
            .delete(Delete::builder().set_objects(Some(ids)).build().expect("delete"))
            .send()
            .await
        {
            Ok(out) if out.errors().is_empty() => {}
            other => failures.push(format!("{}: {other:?}", what("DeleteObjects"))),
        }
        if c.head_object().bucket(BUCKET).key(&copy).send().await.is_ok() {
            failures.push(what("copy still there after DeleteObjects"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    h.assert_no_plaintext(MARKER);
}

/// Uploads `{name}.mp` in two parts: 5 MiB of fresh data, then the object `source` copied in.
async fn multipart_round_trip(c: &aws_sdk_s3::Client, name: &str, source: &str, data: &[u8]) -> Result<(), String> {
    let key = format!("{name}.mp");
    let first = vec![7u8; 5 << 20];
    let up = c
        .create_multipart_upload()
        .bucket(BUCKET)
        .key(&key)
        .send()
        .await
        .map_err(|e| format!("create: {e:?}"))?;
    let id = up.upload_id().ok_or("no upload id")?;
    let p1 = c
        .upload_part()
        .bucket(BUCKET)
        .key(&key)
        .upload_id(id)
        .part_number(1)
        .body(ByteStream::from(first.clone()))
        .send()
        .await
        .map_err(|e| format!("part 1: {e:?}"))?;
    let p2 = c
        .upload_part_copy()
        .bucket(BUCKET)
        .key(&key)
        .upload_id(id)
        .part_number(2)
        .copy_source(source)
        .send()
        .await
        .map_err(|e| format!("part 2 (copy): {e:?}"))?;
    let parts = vec![
        CompletedPart::builder()
            .part_number(1)
            .set_e_tag(p1.e_tag().map(str::to_string))
            .build(),
        CompletedPart::builder()
            .part_number(2)
            .set_e_tag(p2.copy_part_result().and_then(|r| r.e_tag()).map(str::to_string))
            .build(),
    ];
    c.complete_multipart_upload()
        .bucket(BUCKET)
        .key(&key)
        .upload_id(id)
        .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
        .send()
        .await
        .map_err(|e| format!("complete: {e:?}"))?;
    let got = c
        .get_object()
        .bucket(BUCKET)
        .key(&key)
        .send()
        .await
        .map_err(|e| format!("get: {e:?}"))?;
    let body = got.body.collect().await.map_err(|e| format!("body: {e}"))?.to_vec();
    if body != [first.as_slice(), data].concat() {
        return Err("the completed object differs".into());
    }
    c.delete_object()
        .bucket(BUCKET)
        .key(&key)
        .send()
        .await
        .map_err(|e| format!("delete: {e:?}"))?;
    Ok(())
}

/// GETs `key` and checks it holds `data`.
async fn read_back(c: &aws_sdk_s3::Client, key: &str, data: &[u8]) -> Result<(), String> {
    let got = c
        .get_object()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let body = got.body.collect().await.map_err(|e| e.to_string())?.to_vec();
    if body != data {
        return Err("the body differs".into());
    }
    Ok(())
}

/// `x-amz-copy-source` wants the key URL-encoded (slashes kept).
fn url_encode_path(key: &str) -> String {
    key.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Keys of only whitespace are legal on S3, but aws-sdk-s3 refuses to send them (its endpoint
/// parameters drop blank strings: awslabs/aws-sdk-rust#1216). The proxy sends them to S3
/// stores with a stand-in key put back in the request path before signing
/// ([`escrow_proxy::backend::s3::sdk_key`]); this test's client does the same toward the proxy.
async fn blank_names_round_trip(kind: StoreKind) {
    use escrow_proxy::backend::s3::{restore_key, sdk_key};
    let h = harness(kind).await;
    let c = &h.plain_client;
    let names = [" ", "  ", "\t", " \n "];
    for (i, name) in names.iter().enumerate() {
        let data = data_with_marker(200 + i);
        c.put_object()
            .bucket(BUCKET)
            .key(sdk_key(name))
            .body(ByteStream::from(data.clone()))
            .customize()
            .mutate_request(restore_key(name))
            .send()
            .await
            .unwrap_or_else(|e| panic!("PUT {name:?}: {e:?}"));
        let got = c
            .get_object()
            .bucket(BUCKET)
            .key(sdk_key(name))
            .customize()
            .mutate_request(restore_key(name))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {name:?}: {e:?}"));
        assert_eq!(
            got.body.collect().await.expect("body").into_bytes().as_ref(),
            &data[..],
            "GET {name:?}"
        );
        // A copy out (server-side) and back onto the blank key.
        let copy = format!("copy-of-{i}");
        c.copy_object()
            .bucket(BUCKET)
            .key(&copy)
            .copy_source(format!(
                "{BUCKET}/{}",
                name.bytes().map(|b| format!("%{b:02X}")).collect::<String>()
            ))
            .send()
            .await
            .unwrap_or_else(|e| panic!("copy from {name:?}: {e:?}"));
        c.copy_object()
            .bucket(BUCKET)
            .key(sdk_key(name))
            .copy_source(format!("{BUCKET}/{copy}"))
            .metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace)
            .customize()
            .mutate_request(restore_key(name))
            .send()
            .await
            .unwrap_or_else(|e| panic!("copy onto {name:?}: {e:?}"));
        assert_eq!(h.get(BUCKET, &copy).await, data, "the copy of {name:?}");
    }
    let listed: Vec<String> = c
        .list_objects_v2()
        .bucket(BUCKET)
        .send()
        .await
        .expect("list")
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    for name in names {
        assert!(listed.contains(&name.to_string()), "{name:?} listed: {listed:?}");
        c.delete_object()
            .bucket(BUCKET)
            .key(sdk_key(name))
            .customize()
            .mutate_request(restore_key(name))
            .send()
            .await
            .unwrap_or_else(|e| panic!("DELETE {name:?}: {e:?}"));
    }
    h.assert_no_plaintext(MARKER);
    let left = c
        .list_objects_v2()
        .bucket(BUCKET)
        .send()
        .await
        .expect("list")
        .key_count();
    assert_eq!(left, Some(names.len() as i32), "only the copies are left");
}

/// Characters generated names are drawn from: all printable ASCII, tab and newline, and
/// multi-byte UTF-8 (2, 3 and 4 bytes).
fn alphabet() -> Vec<char> {
    let mut chars: Vec<char> = (0x20u8..0x7f).map(char::from).collect();
    chars.extend(['\t', '\n', 'é', '名', '🔐']);
    chars
}

/// `count` names drawn from [`alphabet`] by a fixed-seed generator (the same names every run),
/// 1 to 60 characters, plus (on the fs store) a few of 250 characters, up to 1,000 bytes. For
/// s3s-fs (objects kept as files, metadata in files named after the base64 of the key) only
/// names a file system can hold: no empty, `.` or `..` segment (so no leading, trailing or
/// doubled `/`), and no long ones.
fn generated_names(kind: StoreKind, count: usize) -> Vec<String> {
    let chars = alphabet();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let holdable =
        |name: &str| kind == StoreKind::Fs || name.split('/').all(|seg| !seg.is_empty() && seg != "." && seg != "..");
    let mut names = Vec::new();
    while names.len() < count {
        let long = kind == StoreKind::Fs && names.len() % 16 == 15;
        let len = if long { 250 } else { 1 + (next() % 60) as usize };
        let name: String = (0..len)
            .map(|_| chars[(next() % chars.len() as u64) as usize])
            .collect();
        if name.len() <= 1024 && holdable(&name) && !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// Generated names (property-style, fixed seed) round-trip: PUT, GET, a listing under the
/// name as prefix, and for every other name DELETE (then HEAD 404).
async fn generated_names_round_trip(kind: StoreKind) {
    use escrow_proxy::backend::s3::{restore_key, sdk_key};
    let h = harness(kind).await;
    let c = &h.plain_client;
    let mut failures = Vec::new();
    for (i, name) in generated_names(kind, 48).into_iter().enumerate() {
        let data = data_with_marker(50 + i);
        let put = c
            .put_object()
            .bucket(BUCKET)
            .key(sdk_key(&name))
            .body(ByteStream::from(data.clone()))
            .customize()
            .mutate_request(restore_key(&name))
            .send()
            .await;
        if let Err(e) = put {
            failures.push(format!("PUT {name:?}: {e:?}"));
            continue;
        }
        match c
            .get_object()
            .bucket(BUCKET)
            .key(sdk_key(&name))
            .customize()
            .mutate_request(restore_key(&name))
            .send()
            .await
        {
            Ok(out) => {
                let body = out.body.collect().await.map(|b| b.into_bytes().to_vec());
                if body.as_deref().ok() != Some(&data[..]) {
                    failures.push(format!("GET {name:?}: another body"));
                }
            }
            Err(e) => failures.push(format!("GET {name:?}: {e:?}")),
        }
        match c.list_objects_v2().bucket(BUCKET).prefix(&name).send().await {
            Ok(out) if out.contents().iter().any(|o| o.key() == Some(name.as_str())) => {}
            other => failures.push(format!("LIST {name:?}: {other:?}")),
        }
        // Every other name is deleted (the rest stay for the plaintext scan below).
        if i % 2 == 1 {
            let deleted = c
                .delete_object()
                .bucket(BUCKET)
                .key(sdk_key(&name))
                .customize()
                .mutate_request(restore_key(&name))
                .send()
                .await;
            if let Err(e) = deleted {
                failures.push(format!("DELETE {name:?}: {e:?}"));
            }
            let gone = c
                .head_object()
                .bucket(BUCKET)
                .key(sdk_key(&name))
                .customize()
                .mutate_request(restore_key(&name))
                .send()
                .await;
            if gone.is_ok() {
                failures.push(format!("DELETE {name:?}: still there"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    h.assert_no_plaintext(MARKER);
}
