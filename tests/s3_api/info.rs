//! What clients ask besides content: GetObjectAttributes, ListObjectVersions (an unversioned
//! bucket), object tagging (none is stored), bucket encryption and versioning, and the
//! `x-amz-server-side-encryption` answers.

use aws_sdk_s3::types::{ObjectAttributes, ServerSideEncryption, Tag, Tagging};

use crate::common::{
    ErrorExt, MARKER, MIN_PART, StoreKind, data_with_marker, etag_of, multipart_etag, upload_multipart,
};
use crate::{BUCKET, harness};

per_store!(object_attributes, versions_tags_and_bucket_answers);

async fn object_attributes(kind: StoreKind) {
    let h = harness(kind).await;
    let single = data_with_marker(70_000);
    h.put(BUCKET, "single", &single).await;
    let parts_data = data_with_marker(MIN_PART + 1000);
    let parts: Vec<&[u8]> = vec![&parts_data[..MIN_PART], &parts_data[MIN_PART..]];
    upload_multipart(&h.client, BUCKET, "multi", &parts).await;
    let all = [
        ObjectAttributes::Etag,
        ObjectAttributes::ObjectSize,
        ObjectAttributes::ObjectParts,
        ObjectAttributes::StorageClass,
    ];
    let got = h
        .client
        .get_object_attributes()
        .bucket(BUCKET)
        .key("single")
        .set_object_attributes(Some(all.to_vec()))
        .send()
        .await
        .expect("attributes of a single-part object");
    assert_eq!(got.object_size(), Some(single.len() as i64));
    assert_eq!(
        got.e_tag().map(|e| e.trim_matches('"').to_string()),
        Some(etag_of(&single).trim_matches('"').to_string())
    );
    assert!(got.object_parts().is_none(), "a single-part object has no parts");
    let got = h
        .client
        .get_object_attributes()
        .bucket(BUCKET)
        .key("multi")
        .set_object_attributes(Some(all.to_vec()))
        .max_parts(1)
        .send()
        .await
        .expect("attributes of a multipart object");
    assert_eq!(got.object_size(), Some(parts_data.len() as i64));
    assert_eq!(
        got.e_tag().map(|e| e.trim_matches('"').to_string()),
        Some(multipart_etag(&parts).trim_matches('"').to_string())
    );
    let listed = got.object_parts().expect("ObjectParts");
    assert_eq!(listed.total_parts_count(), Some(2));
    assert_eq!(listed.is_truncated(), Some(true), "max-parts 1 of 2");
    let first = &listed.parts()[0];
    assert_eq!((first.part_number(), first.size()), (Some(1), Some(MIN_PART as i64)));
    // Only the attributes asked for.
    let got = h
        .client
        .get_object_attributes()
        .bucket(BUCKET)
        .key("multi")
        .object_attributes(ObjectAttributes::ObjectSize)
        .send()
        .await
        .expect("size only");
    assert!(got.e_tag().is_none() && got.object_parts().is_none());
    // A missing object, and a version that does not exist.
    let missing = h
        .client
        .get_object_attributes()
        .bucket(BUCKET)
        .key("missing")
        .object_attributes(ObjectAttributes::Etag)
        .send()
        .await;
    assert_eq!(missing.expect_err("missing").s3_code(), "NoSuchKey");
    let version = h
        .client
        .get_object_attributes()
        .bucket(BUCKET)
        .key("single")
        .version_id("3HL4kqtJlcpXroDTDmJ-rmSpXd3dIbrHY")
        .object_attributes(ObjectAttributes::Etag)
        .send()
        .await;
    assert_eq!(version.expect_err("no versions").s3_code(), "NoSuchVersion");
    h.assert_no_plaintext(MARKER);
}

async fn versions_tags_and_bucket_answers(kind: StoreKind) {
    let h = harness(kind).await;
    let a = data_with_marker(1000);
    let b = data_with_marker(2000);
    let put = h
        .client
        .put_object()
        .bucket(BUCKET)
        .key("dir/a")
        .body(a.clone().into())
        .send()
        .await
        .expect("put");
    assert_eq!(put.server_side_encryption(), Some(&ServerSideEncryption::Aes256));
    h.put(BUCKET, "dir/b", &b).await;
    h.put(BUCKET, "top", &b).await;

    // Every object is its own only version, `null`, the latest; no delete markers.
    let versions = h
        .client
        .list_object_versions()
        .bucket(BUCKET)
        .prefix("dir/")
        .send()
        .await
        .expect("list versions");
    let listed: Vec<(String, i64, String, bool, String)> = versions
        .versions()
        .iter()
        .map(|v| {
            (
                v.key().unwrap_or_default().to_string(),
                v.size().unwrap_or_default(),
                v.e_tag().unwrap_or_default().to_string(),
                v.is_latest().unwrap_or_default(),
                v.version_id().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![
            ("dir/a".into(), 1000, etag_of(&a), true, "null".into()),
            ("dir/b".into(), 2000, etag_of(&b), true, "null".into()),
        ]
    );
    assert!(versions.delete_markers().is_empty());
    let paged = h
        .client
        .list_object_versions()
        .bucket(BUCKET)
        .max_keys(1)
        .send()
        .await
        .expect("first page");
    assert_eq!(paged.is_truncated(), Some(true));
    let next = h
        .client
        .list_object_versions()
        .bucket(BUCKET)
        .max_keys(10)
        .key_marker(paged.next_key_marker().expect("next key marker"))
        .send()
        .await
        .expect("next page");
    let keys: Vec<&str> = next.versions().iter().filter_map(|v| v.key()).collect();
    assert_eq!(keys, ["dir/b", "top"]);

    // Tags: none stored, so an empty set; setting them is refused, never stored in plaintext.
    let tags = h
        .client
        .get_object_tagging()
        .bucket(BUCKET)
        .key("dir/a")
        .send()
        .await
        .expect("get tagging");
    assert!(tags.tag_set().is_empty());
    let set = h
        .client
        .put_object_tagging()
        .bucket(BUCKET)
        .key("dir/a")
        .tagging(
            Tagging::builder()
                .tag_set(Tag::builder().key("secret").value("tag-value").build().expect("tag"))
                .build()
                .expect("tagging"),
        )
        .send()
        .await;
    assert_eq!(set.expect_err("tagging refused").s3_code(), "NotImplemented");
    h.client
        .delete_object_tagging()
        .bucket(BUCKET)
        .key("dir/a")
        .send()
        .await
        .expect("delete tagging of an object without tags");
    let missing = h.client.get_object_tagging().bucket(BUCKET).key("missing").send().await;
    assert_eq!(missing.expect_err("missing").s3_code(), "NoSuchKey");

    // Bucket answers: AES-256 default encryption, never versioned.
    let enc = h
        .client
        .get_bucket_encryption()
        .bucket(BUCKET)
        .send()
        .await
        .expect("bucket encryption");
    let rule = &enc
        .server_side_encryption_configuration()
        .expect("configuration")
        .rules()[0];
    assert_eq!(
        rule.apply_server_side_encryption_by_default()
            .map(|d| d.sse_algorithm()),
        Some(&ServerSideEncryption::Aes256)
    );
    let ver = h
        .client
        .get_bucket_versioning()
        .bucket(BUCKET)
        .send()
        .await
        .expect("bucket versioning");
    assert!(ver.status().is_none(), "never versioned");
    let head = h
        .client
        .head_object()
        .bucket(BUCKET)
        .key("top")
        .send()
        .await
        .expect("head");
    assert_eq!(head.server_side_encryption(), Some(&ServerSideEncryption::Aes256));
    h.assert_no_plaintext(MARKER);
    h.assert_no_plaintext(b"tag-value");
}
