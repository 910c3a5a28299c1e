//! S3's limits and the proxy's defaults, named once. Every file that enforces or assumes one of
//! these numbers uses the constant from here, so a reader finds each rule in one place.
//!
//! Values follow the AWS S3 documentation ("Amazon S3 multipart upload limits", "Working with
//! object metadata", `ListObjectsV2`, `DeleteObjects`).

/// The largest object a single PUT (or a copy in one request) may create: 5 GiB.
pub const MAX_PUT_SIZE: u64 = 5 << 30;
/// The smallest part of a multipart upload other than the last: 5 MiB.
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// The largest part of a multipart upload: 5 GiB.
pub const MAX_PART_SIZE: u64 = 5 << 30;
/// The highest part number (parts are numbered 1 through this); a format constant too.
pub const MAX_PART_NUMBER: u32 = crate::crypto::manifest::MAX_PART_NUMBER;
/// The most keys (or parts, or uploads) one listing page returns.
pub const MAX_KEYS: i32 = 1000;
/// The most keys one DeleteObjects request may name.
pub const MAX_DELETE_KEYS: usize = 1000;
/// User metadata S3 accepts per object: names and values, in bytes.
pub const MAX_USER_METADATA: usize = 2048;

/// The region answered when none is configured (S3's own default).
pub const DEFAULT_REGION: &str = "us-east-1";
/// The S3 listener's address when none is configured (loopback: a sidecar's or a laptop's).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";
