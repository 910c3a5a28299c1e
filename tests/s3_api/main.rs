//! S3 behaviour through the real `aws-sdk-s3` client over TLS, for both store kinds: the proxy's
//! own fs store and a real S3 server (s3s-fs). Each case is written once and runs per store
//! (`module::fs::case`, `module::s3s_fs::case`), each in a fresh harness, and ends by scanning the
//! store for the plaintext marker.
//!
//! The crate root holds what every module shares: the harness, the bucket and the per-store
//! driver. The cases live in one module per area of the API.

#[path = "../common/mod.rs"]
mod common;

/// Runs each listed `async fn case(StoreKind)` of the calling module once per store kind, as
/// `<module>::fs::case`, `<module>::s3s_fs::case` and `<module>::mirrored::case` (s3s-fs
/// mirrored to an fs store).
macro_rules! per_store {
    ($($(#[$attr:meta])* $name:ident),* $(,)?) => {
        mod fs {
            $(
                $(#[$attr])*
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::StoreKind::Fs).await;
                }
            )*
        }
        mod s3s_fs {
            $(
                $(#[$attr])*
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::StoreKind::S3sFs).await;
                }
            )*
        }
        mod mirrored {
            $(
                $(#[$attr])*
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::StoreKind::Mirrored).await;
                }
            )*
        }
    };
}

mod auth;
mod buckets;
mod checksums;
mod chunked;
mod conditional_writes;
mod conditionals;
mod copy;
mod info;
mod keys;
mod listing;
mod metadata;
mod mirror;
mod multipart;
mod objects;
mod post_object;
mod ranges;
mod sse_c;
mod store_quirks;
mod transport;
mod unsupported;

use common::{Harness, MARKER, StoreKind, data_with_marker};

/// The bucket every case works in (created by [`harness`]).
const BUCKET: &str = "escrow-api";

/// A harness with [`BUCKET`] created.
async fn harness(kind: StoreKind) -> Harness {
    let h = Harness::new(kind).await;
    h.create_bucket(BUCKET).await;
    h
}

// === the harness itself ===

/// The plaintext scan finds plaintext where the store keeps objects (it is not vacuous).
async fn planted_plaintext_is_found(kind: StoreKind) {
    let h = harness(kind).await;
    h.put(BUCKET, "x", &data_with_marker(100)).await;
    let dir = h.object_path(BUCKET, "x").parent().expect("bucket dir").to_path_buf();
    std::fs::write(dir.join("planted"), [b"prefix".as_slice(), MARKER].concat()).expect("plant");
    h.assert_no_plaintext(MARKER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "PLAINTEXT IN THE STORE IN CLEAR")]
async fn harness_fs_scan_finds_planted_plaintext() {
    planted_plaintext_is_found(StoreKind::Fs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "PLAINTEXT IN THE STORE IN CLEAR")]
async fn harness_s3s_fs_scan_finds_planted_plaintext() {
    planted_plaintext_is_found(StoreKind::S3sFs).await;
}
