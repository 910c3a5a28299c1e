//! Copies. A copy keeps its source's data key, wrapped again for its new name (so it decrypts
//! only there), and the store copies the ciphertext server-side. Only a single-part copy whose
//! record no longer fits the metadata, or whose record sits in the source's header extension and
//! is replaced, is decrypted and sealed again in this process, under a fresh data key.

use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use super::condition::{WriteCondition, conflict_after_check};
use super::customer::keeps_content;
use super::etags::Known;
use super::open::{Opened, Shape};
use super::{Expectations, ObjectError, Objects, refuse_reserved, sealed};
use crate::backend::{BackendError, Metadata, PutCondition, Source};
use crate::crypto::envelope::{CustomerKey, ObjectRecord, seal_record};
use crate::crypto::format::meta;
use crate::crypto::manifest::Manifest;

/// A finished copy.
#[derive(Debug, Clone)]
pub struct Copied {
    /// The copy's client ETag (the source's: same plaintext, same parts).
    pub etag: String,
    /// The copy's write time, as its `Last-Modified`.
    pub last_modified: Option<SystemTime>,
}

/// A copy's source: where it is, and what was opened there.
pub struct CopySource<'a> {
    /// Source bucket.
    pub bucket: &'a str,
    /// Source key.
    pub key: &'a str,
    /// The source, opened (its version pins the copy).
    pub opened: &'a Opened,
}

impl Objects {
    /// Copies `src` to `bucket`/`key`, with `record` (`None`: the source's own), SSE-C under
    /// `customer` when given, only if `condition` holds for the destination ([`WriteCondition`],
    /// evaluated atomically by the store). A copy is a new write: its record gets its own write
    /// time. An SSE-C source must have been unlocked with its key; when the source's and the
    /// destination's customer keys differ (or one side has none), the content streams through
    /// this process and is sealed again.
    pub async fn copy(
        &self,
        src: CopySource<'_>,
        bucket: &str,
        key: &str,
        record: Option<ObjectRecord>,
        customer: Option<&CustomerKey>,
        condition: Option<&WriteCondition>,
    ) -> Result<Copied, ObjectError> {
        refuse_reserved(key)?;
        let store_condition = self.store_condition(bucket, key, condition).await?;
        let opened = src.opened;
        let mut record = record.unwrap_or_else(|| opened.record.clone());
        record.size = opened.size();
        record.stamp(SystemTime::now());
        record.set_customer(&opened.dek, customer);
        let keeps = keeps_content(&opened.dek, opened.content_key()?, customer);
        let store_etag = match keeps.then(|| server_side(self, &src, bucket, key, &record)).flatten() {
            Some((sources, tail, metadata)) => self
                .store
                .compose_if(bucket, key, sources, tail.into(), metadata, store_condition.clone())
                .await
                .map_err(|e| match e {
                    // With a destination condition the store's refusal may be either side's; the
                    // source is pinned by its ETag too, so both read as "changed meanwhile".
                    BackendError::PreconditionFailed if store_condition.is_none() => ObjectError::Changed,
                    other => conflict_after_check(ObjectError::Store(other), store_condition.as_ref()),
                })?,
            None => self
                .reseal(&src, bucket, key, &record, customer, store_condition.clone())
                .await
                .map_err(|e| conflict_after_check(e, store_condition.as_ref()))?,
        };
        let copied = Copied {
            etag: opened.etag(),
            last_modified: record.written(),
        };
        let known = Known {
            etag: copied.etag.clone(),
            size: opened.size(),
            modified: copied.last_modified,
        };
        self.etags.insert(bucket, key, &store_etag, known);
        Ok(copied)
    }

    /// A copy sealed again here as a single-part object, under a fresh data key (and `customer`,
    /// if given): the source's plaintext streams through this process (never leaving it).
    async fn reseal(
        &self,
        src: &CopySource<'_>,
        bucket: &str,
        key: &str,
        record: &ObjectRecord,
        customer: Option<&CustomerKey>,
        condition: Option<PutCondition>,
    ) -> Result<String, ObjectError> {
        let plain = self.read(src.bucket, src.key, src.opened, None).await?;
        let (store_etag, _) = self
            .write_single_if(
                bucket,
                key,
                record,
                plain,
                src.opened.size(),
                Expectations::default(),
                customer,
                condition,
            )
            .await?;
        Ok(store_etag)
    }
}

/// What a server-side copy stores: the source's stored range, a new tail (a multipart object's
/// manifest, sealed again), and the new metadata; `None` when the copy must be sealed again.
fn server_side(
    objects: &Objects,
    src: &CopySource<'_>,
    bucket: &str,
    key: &str,
    record: &ObjectRecord,
) -> Option<(Vec<Source>, Vec<u8>, Metadata)> {
    let opened = src.opened;
    // A fresh wrap for the new name; the record or manifest is sealed again, bound to it.
    let sealed::Wrapped { mut metadata, binding } =
        sealed::key_metadata(&objects.keyring.load(), bucket, key, &opened.dek);
    let source = |end: u64| Source {
        bucket: src.bucket.to_string(),
        key: src.key.to_string(),
        range: 0..end,
        etag: Some(opened.store_etag.clone()).filter(|e| !e.is_empty()),
    };
    match &opened.shape {
        Shape::Multipart(manifest) => {
            let manifest = Manifest {
                parts: manifest.parts.clone(),
                record: record.clone(),
            };
            metadata.insert(meta::PARTS.into(), manifest.parts.len().to_string());
            let tail = manifest.seal(&opened.dek, &binding);
            Some((vec![source(manifest.parts_stored_len())], tail, metadata))
        }
        Shape::Single(trailer) => {
            let stored_len = trailer.header.layout().stored_len(trailer.plain_len);
            // A record in the source's header extension is bound to the source: the copy must
            // be sealed again.
            if trailer.header.extension_len() > 0 {
                return None;
            }
            let encoded = B64.encode(seal_record(&opened.dek, &binding, record));
            if !sealed::fits_metadata(&metadata, &encoded) {
                return None;
            }
            metadata.insert(meta::RECORD.into(), encoded);
            Some((vec![source(stored_len)], Vec::new(), metadata))
        }
    }
}
