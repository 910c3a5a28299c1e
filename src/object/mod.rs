//! The object layer: everything between "an S3 request with plaintext semantics" and "bytes in
//! a store". It seals and opens objects ([`crate::crypto`]) and moves ciphertext through one
//! [`ObjectStore`] ([`crate::backend`]); it knows nothing of the S3 wire (no s3s types), so the
//! offline tools use the same reader as the proxy.
//!
//! - [`Objects::put`]: a new single-part object — a fresh data key, the envelope sealed
//!   ([`sealed`]), the body encrypted as it streams ([`body::EncryptBody`]) into the store; the
//!   digests come back as a value.
//! - [`Objects::open`] and [`open::plaintext`]: an object's trailer or manifest and record, then
//!   any plaintext range, fetching only the segments it needs.
//! - [`Objects::copy`]: server-side in the store whenever the envelope allows.
//! - [`upload`] and [`complete`]: multipart uploads, their state kept in the store itself.
//! - [`Objects::list`]: listings in plaintext terms.
//!
//! This layer must never hand out plaintext that failed authentication, never write a client's
//! plaintext or a plaintext digest to a store, and never buffer a body: memory is bounded by
//! segments in flight, whatever the object's size.

pub mod body;
pub mod checksum;
mod complete;
mod condition;
mod copy;
pub mod customer;
mod error;
mod etags;
mod list;
pub mod open;
pub mod sealed;
mod sealer;
mod upload;
mod write;

use std::sync::Arc;

pub use self::body::{BodyFailure, Digests, Expectations, Trailers};
pub use self::complete::{CheckedCompletion, Completed, PartChoice};
pub use self::condition::WriteCondition;
pub use self::copy::{Copied, CopySource};
pub use self::error::ObjectError;
pub use self::list::{Listed, Page};
pub use self::open::{Opened, PlainStream, Shape};
pub use self::sealer::KeyringSealer;
pub use self::upload::{PartInfo, PartsPage, UploadInfo, UploadsPage, UploadsQuery};
pub use crate::backend::{BackendError, BucketInfo, ListQuery};
pub use crate::crypto::CryptoError;
pub use crate::crypto::envelope::{CustomerKey, ObjectRecord};
pub use crate::crypto::format::ChecksumAlgorithm;
pub use crate::crypto::layout::RESERVED_PREFIX;

use self::etags::{EtagCache, Known};
use self::open::InStore;
use crate::backend::ObjectStore;
use crate::crypto::layout;
use crate::keys::SharedKeyring;

/// The object layer over one store (a single store, or a mirror of two) and a keyring (read per
/// request: a rotation elsewhere applies to the next request).
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    keyring: Arc<SharedKeyring>,
    etags: EtagCache,
}

impl Objects {
    /// Objects in `store`, sealed and opened with `keyring`.
    pub fn new(store: Arc<dyn ObjectStore>, keyring: Arc<SharedKeyring>) -> Self {
        Self {
            store,
            keyring,
            etags: EtagCache::default(),
        }
    }

    /// `bucket`/`key` in this layer's store.
    fn at<'a>(&'a self, bucket: &'a str, key: &'a str) -> InStore<'a> {
        InStore {
            store: self.store.as_ref(),
            bucket,
            key,
        }
    }

    /// Opens an object: its record and layout, authenticated, before any content is read.
    pub async fn open(&self, bucket: &str, key: &str) -> Result<Opened, ObjectError> {
        refuse_reserved(key)?;
        let object = self.at(bucket, key);
        let mut opened = open::open(&object, &self.keyring.load(), bucket, key).await;
        if let Some(version) = reload_worthy(&opened)
            && self.keyring.reload_for(version).await
        {
            opened = open::open(&object, &self.keyring.load(), bucket, key).await;
        }
        let ring = self.keyring.load();
        let views;
        let opened = match opened {
            Err(e) if is_untrustworthy(&e) => {
                views = self.store.read_views();
                let ring = &ring;
                first_believed(&views, e, bucket, |store| async move {
                    open::open(&InStore { store, bucket, key }, ring, bucket, key).await
                })
                .await?
            }
            other => other?,
        };
        self.remember(bucket, key, &opened);
        Ok(opened)
    }

    /// Opens an object and starts reading all of it: one store request for small objects.
    /// `customer` is the request's SSE-C key, checked ([`Opened::unlock`]) before any content.
    pub async fn open_whole(
        &self,
        bucket: &str,
        key: &str,
        customer: Option<&CustomerKey>,
    ) -> Result<(Opened, PlainStream), ObjectError> {
        refuse_reserved(key)?;
        let object = self.at(bucket, key);
        let mut whole = open::open_whole(&object, &self.keyring.load(), bucket, key).await;
        if let Some(version) = reload_worthy(&whole)
            && self.keyring.reload_for(version).await
        {
            whole = open::open_whole(&object, &self.keyring.load(), bucket, key).await;
        }
        let ring = self.keyring.load();
        let views;
        let (mut opened, stored) = match whole {
            Err(e) if is_untrustworthy(&e) => {
                views = self.store.read_views();
                let ring = &ring;
                first_believed(&views, e, bucket, |store| async move {
                    open::open_whole(&InStore { store, bucket, key }, ring, bucket, key).await
                })
                .await?
            }
            other => other?,
        };
        self.remember(bucket, key, &opened);
        opened.unlock(customer)?;
        let (_, pieces) = opened.read(None)?;
        let plain = body::DecryptBody::new(stored, &opened.dek, pieces).with_content_key(opened.content_key()?);
        Ok((opened, plain))
    }

    /// The plaintext of `range` (`None`: all) of an object opened from `bucket`/`key`.
    pub async fn read(
        &self,
        bucket: &str,
        key: &str,
        opened: &Opened,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<PlainStream, ObjectError> {
        open::plaintext(&self.at(bucket, key), opened, range).await
    }

    /// `x-amz-replication-status` of an object, when the store replicates (a mirror).
    pub fn replication_status(&self, bucket: &str, key: &str) -> Option<&'static str> {
        self.store.replication_status(bucket, key)
    }

    /// Deletes an object; deleting a missing one succeeds.
    pub async fn delete(&self, bucket: &str, key: &str) -> Result<(), ObjectError> {
        refuse_reserved(key)?;
        Ok(self.store.delete_object(bucket, key).await?)
    }

    /// All buckets.
    pub async fn list_buckets(&self) -> Result<Vec<BucketInfo>, ObjectError> {
        Ok(self.store.list_buckets().await?)
    }

    /// Creates a bucket.
    pub async fn create_bucket(&self, bucket: &str) -> Result<(), ObjectError> {
        Ok(self.store.create_bucket(bucket).await?)
    }

    /// `Ok` if the bucket exists.
    pub async fn head_bucket(&self, bucket: &str) -> Result<(), ObjectError> {
        Ok(self.store.head_bucket(bucket).await?)
    }

    /// Deletes an empty bucket.
    pub async fn delete_bucket(&self, bucket: &str) -> Result<(), ObjectError> {
        Ok(self.store.delete_bucket(bucket).await?)
    }

    /// Remembers what listings show of an opened object.
    fn remember(&self, bucket: &str, key: &str, opened: &Opened) {
        let known = Known {
            etag: opened.etag(),
            size: opened.size(),
            modified: opened.record.written(),
        };
        self.etags.insert(bucket, key, &opened.store_etag, known);
    }
}

/// The key version an open failed on, when a newer keyring might know it (another instance
/// rotated, or enabled a version this one still has as disabled).
fn reload_worthy<T>(result: &Result<T, ObjectError>) -> Option<u32> {
    match result {
        Err(ObjectError::Crypto(CryptoError::UnknownKeyVersion(v) | CryptoError::DisabledKeyVersion(v))) => Some(*v),
        _ => None,
    }
}

/// After an open found a copy it cannot believe (`first`), opens the object in each store of a
/// mirror alone (`views`, in read order) and returns the first copy that opens. Counted and
/// logged: a store serving unauthentic objects is worth knowing about. Without views (one
/// store), `first` stands.
async fn first_believed<'v, T, F, Fut>(
    views: &'v [Arc<dyn ObjectStore>],
    first: ObjectError,
    bucket: &str,
    open: F,
) -> Result<T, ObjectError>
where
    F: Fn(&'v dyn ObjectStore) -> Fut,
    Fut: Future<Output = Result<T, ObjectError>>,
{
    for view in views {
        if let Ok(found) = open(view.as_ref()).await {
            metrics::counter!("escrow_mirror_failovers_total", "reason" => "unauthentic", "to" => view.name().to_string())
                .increment(1);
            tracing::warn!(
                bucket,
                served_by = view.name(),
                "an object failed authentication in one store; served from the other"
            );
            return Ok(found);
        }
    }
    Err(first)
}

/// Whether an open failed because the stored copy cannot be believed (damaged, forged, not ours),
/// so that another store's copy is worth trying.
fn is_untrustworthy(e: &ObjectError) -> bool {
    matches!(e, ObjectError::Crypto(_) | ObjectError::NotEscrow)
}

/// Refuses client keys under the prefix where the proxy keeps its own state.
pub fn refuse_reserved(key: &str) -> Result<(), ObjectError> {
    if layout::is_reserved(key) {
        return Err(ObjectError::Reserved);
    }
    Ok(())
}
