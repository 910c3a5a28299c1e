//! Objects from both sides: an `aws-sdk-s3` client of a `serve` process, and the fs store's
//! object files as they lie on disk (FORMAT.md §4).

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::common::shared::{self, Vanished};
use crate::common::{self, Checksums};
use crate::support::{ACCESS_KEY, SECRET_KEY};

/// The fs store's object file magic (FORMAT.md §4).
const FS_MAGIC: &[u8; 8] = b"EPFSOBJ1";

// === S3 client ===

/// An `aws-sdk-s3` client (plain bodies, no client-side checksum validation) with its runtime.
pub struct S3 {
    rt: tokio::runtime::Runtime,
    client: aws_sdk_s3::Client,
}

impl S3 {
    /// A client of `endpoint` (`https://…`) trusting only `ca_pem`.
    pub fn new(endpoint: &str, ca_pem: &[u8]) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let client = common::sdk_client(endpoint, ca_pem, ACCESS_KEY, SECRET_KEY, Checksums::WhenRequired);
        S3 { rt, client }
    }

    /// CreateBucket, which must succeed.
    pub fn create_bucket(&self, bucket: &str) {
        self.rt.block_on(common::create_bucket(&self.client, bucket));
    }

    /// PutObject, which must succeed.
    pub fn put(&self, bucket: &str, key: &str, data: &[u8]) {
        self.rt.block_on(common::put_object(&self.client, bucket, key, data));
    }

    /// GetObject's whole body, which must arrive.
    pub fn get(&self, bucket: &str, key: &str) -> Vec<u8> {
        self.rt.block_on(common::get_object(&self.client, bucket, key))
    }

    /// DeleteObject, which must succeed.
    pub fn delete(&self, bucket: &str, key: &str) {
        self.rt
            .block_on(self.client.delete_object().bucket(bucket).key(key).send())
            .expect("DeleteObject");
    }

    /// PutObject with an SSE-C customer key (`raw`, 32 bytes), which must succeed.
    pub fn put_sse_c(&self, bucket: &str, key: &str, data: &[u8], raw: &[u8; 32]) {
        use md5::Digest as _;
        self.rt
            .block_on(
                self.client
                    .put_object()
                    .bucket(bucket)
                    .key(key)
                    .sse_customer_algorithm("AES256")
                    .sse_customer_key(common::b64(raw))
                    .sse_customer_key_md5(common::b64(&md5::Md5::digest(raw)))
                    .body(aws_sdk_s3::primitives::ByteStream::from(data.to_vec()))
                    .send(),
            )
            .expect("PutObject with SSE-C");
    }

    /// A multipart upload of `parts`, which must succeed.
    pub fn put_multipart(&self, bucket: &str, key: &str, parts: &[&[u8]]) {
        self.rt
            .block_on(common::upload_multipart(&self.client, bucket, key, parts));
    }
}

// === fs store files ===

/// `<root>/<bucket>/<hex sha256(key)>` (FORMAT.md §4).
pub fn fs_object_path(root: &Path, bucket: &str, key: &str) -> PathBuf {
    root.join(bucket).join(hex::encode(Sha256::digest(key.as_bytes())))
}

/// One fs store object file, split: `"EPFSOBJ1" ‖ u32be(L) ‖ JSON(L) ‖ body`.
pub struct FsObject {
    /// The JSON header (`key`, `metadata`, `etag`, …).
    pub header: serde_json::Value,
    /// The stored body (the encrypted stream).
    pub body: Vec<u8>,
    /// Where the body starts in the file.
    pub body_offset: usize,
}

impl FsObject {
    /// Reads and splits an object file.
    pub fn read(path: &Path) -> Self {
        let bytes = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        assert!(
            bytes.len() >= 12 && &bytes[..8] == FS_MAGIC,
            "{} is not an fs object file",
            path.display()
        );
        let len = u32::from_be_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize;
        let body_offset = 12 + len;
        assert!(
            bytes.len() >= body_offset,
            "{}: header runs past the end",
            path.display()
        );
        let header = serde_json::from_slice(&bytes[12..body_offset])
            .unwrap_or_else(|e| panic!("{}: header is not JSON: {e}", path.display()));
        FsObject {
            header,
            body: bytes[body_offset..].to_vec(),
            body_offset,
        }
    }

    /// A stored metadata value (`escrow-kek`, …).
    #[track_caller]
    pub fn metadata(&self, name: &str) -> &str {
        self.header["metadata"][name]
            .as_str()
            .unwrap_or_else(|| panic!("no metadata {name:?} in {}", self.header))
    }
}

/// Asserts no file under `dir` contains `needle` (the servers are stopped: every file must be
/// readable); returns how many files were scanned.
pub fn assert_no_file_contains(dir: &Path, needle: &[u8], what: &str) -> usize {
    let scanned = shared::assert_files_lack(dir, needle, Vanished::Fail, |file| {
        format!("{what}: {} contains the plaintext marker", file.display())
    });
    scanned.files
}
