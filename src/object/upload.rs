//! Multipart uploads, with no state in the proxy: everything about an upload lives in the store,
//! under the bucket's reserved prefix (`crypto::layout`), so any proxy process serves any request
//! of any upload and a restart loses nothing.
//!
//! - the upload's marker: its metadata carries the object's DEK, wrapped for the final bucket
//!   and key; its body is `{"key": …, "record": base64(sealed record)}` (the record holds the
//!   headers given at creation);
//! - one object per part: a stream sealed under keys derived from the DEK and the part number;
//!   uploading a part again replaces it.
//!
//! Completion is in [`super::complete`].

use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};

use super::write::NewStream;
use super::{Digests, Expectations, ObjectError, Objects, refuse_reserved, sealed};
use crate::backend::{BackendError, ByteRange, ListEntry, ListQuery, Metadata, ObjectHead, read_small};
use crate::crypto::CryptoError;
use crate::crypto::envelope::{CustomerKey, ObjectRecord, open_record, seal_record};
use crate::crypto::format::{ChecksumAlgorithm, DEFAULT_SEGMENT_LOG2, ENVELOPE_VERSION, TRAILER_LEN, meta};
use crate::crypto::layout::{
    MAX_MARKER_LEN, UPLOAD_ID_BYTES, UPLOAD_MARKERS, upload_marker_key, upload_part_key, upload_parts_prefix,
    valid_upload_id,
};
use crate::crypto::segment::{StreamHeader, Trailer, open_trailer};
use crate::limits::MAX_KEYS;
use crate::secret::Key256;

/// Store requests in flight at once while completing, listing or cleaning up an upload.
pub(super) const CONCURRENCY: usize = 16;

/// The marker's body.
#[derive(Serialize, Deserialize)]
struct MarkerBody {
    key: String,
    record: String,
}

/// An upload in progress, as its marker describes it.
pub(super) struct InProgress {
    pub dek: Key256,
    pub record: ObjectRecord,
}

impl InProgress {
    /// The content key of the upload's parts for a part request that gave `customer`: the
    /// upload's own customer key, or none for an upload created without one.
    fn content_key(&self, customer: Option<&CustomerKey>) -> Result<Key256, ObjectError> {
        super::customer::unlock(&self.dek, &self.record, customer).map_err(|e| match e {
            ObjectError::CustomerKeyMismatch => ObjectError::CustomerKeyDiffers,
            other => other,
        })
    }
}

/// A part object of an upload, as the store lists it.
pub(super) struct StoredPart {
    pub number: u32,
    pub entry: ListEntry,
}

/// One part of an upload in progress.
#[derive(Debug, Clone)]
pub struct PartInfo {
    /// Part number.
    pub number: u32,
    /// Plaintext size.
    pub size: u64,
    /// MD5 of the part's plaintext (its ETag).
    pub md5: [u8; 16],
    /// The checksum the part was uploaded with, if any.
    pub checksum: Option<(ChecksumAlgorithm, Vec<u8>)>,
    /// When the store last wrote it.
    pub last_modified: Option<SystemTime>,
}

/// A page of an upload's parts.
#[derive(Debug, Clone)]
pub struct PartsPage {
    /// Parts after the marker, in order.
    pub parts: Vec<PartInfo>,
    /// Whether more parts follow.
    pub is_truncated: bool,
}

/// Which uploads to list (ListMultipartUploads).
#[derive(Debug, Clone, Default)]
pub struct UploadsQuery {
    /// Only keys starting with this.
    pub prefix: String,
    /// Roll keys up to common prefixes at this delimiter; never empty.
    pub delimiter: Option<String>,
    /// Only uploads after this key (and, with `upload_id_marker`, after that upload of it).
    pub key_marker: Option<String>,
    /// With `key_marker`: only uploads of that key after this id.
    pub upload_id_marker: Option<String>,
    /// Page size, 1..=1000.
    pub max_uploads: usize,
}

/// An upload in progress, as listed.
#[derive(Debug, Clone)]
pub struct UploadInfo {
    /// The key it will complete to.
    pub key: String,
    /// Its id.
    pub id: String,
    /// When it was created.
    pub initiated: Option<SystemTime>,
}

/// A page of uploads in progress.
#[derive(Debug, Clone, Default)]
pub struct UploadsPage {
    /// Uploads, by key then id.
    pub uploads: Vec<UploadInfo>,
    /// Common prefixes (with a delimiter).
    pub common_prefixes: Vec<String>,
    /// Whether more follow.
    pub is_truncated: bool,
}

impl Objects {
    /// Starts an upload to `bucket`/`key` with `record`, SSE-C under `customer` when given (every
    /// part must then carry the same key); returns its id.
    pub async fn create_upload(
        &self,
        bucket: &str,
        key: &str,
        record: &ObjectRecord,
        customer: Option<&CustomerKey>,
    ) -> Result<String, ObjectError> {
        refuse_reserved(key)?;
        self.store.head_bucket(bucket).await?;
        let dek = Key256::random();
        let mut record = record.clone();
        record.set_customer(&dek, customer);
        let record = &record;
        let id = hex::encode(rand::random::<[u8; UPLOAD_ID_BYTES]>());
        let wrapped = sealed::key_metadata(&self.keyring.load(), bucket, key, &dek);
        let body = serde_json::to_vec(&MarkerBody {
            key: key.to_string(),
            record: B64.encode(seal_record(&dek, &wrapped.binding, record)),
        })
        .map_err(|_| CryptoError::Format("upload marker does not serialize"))?;
        let len = body.len() as u64;
        let stream: crate::backend::ByteStream = Box::pin(futures::stream::once(async move { Ok(Bytes::from(body)) }));
        self.store
            .put_object(bucket, &upload_marker_key(&id), stream, len, wrapped.metadata)
            .await?;
        Ok(id)
    }

    /// Encrypts and stores part `number` of upload `id` from `body` (exactly `plain_len` bytes,
    /// checked against `expect`), with the customer key the upload was created with, if any.
    /// Returns the part's digests.
    #[allow(clippy::too_many_arguments)] // One S3 request's worth of inputs; a struct would only rename them.
    pub async fn upload_part<S, E>(
        &self,
        bucket: &str,
        key: &str,
        id: &str,
        number: u32,
        body: S,
        plain_len: u64,
        expect: Expectations,
        customer: Option<&CustomerKey>,
    ) -> Result<Digests, ObjectError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: std::fmt::Display,
    {
        let upload = self.load_upload(bucket, key, id).await?;
        let content = upload.content_key(customer)?;
        self.put_part(bucket, id, &upload.dek, &content, number, body, plain_len, expect)
            .await
    }

    /// Stores `range` (`None`: all) of an opened source object as part `number` of upload `id`.
    /// The source's keys are not the upload's: its plaintext passes through this process (never
    /// leaving it) and is sealed again as the part, with the upload's customer key (`customer`)
    /// if it has one. An SSE-C source must have been unlocked with its own key.
    #[allow(clippy::too_many_arguments)] // As `upload_part`, with a source instead of a body.
    pub async fn upload_part_copy(
        &self,
        bucket: &str,
        key: &str,
        id: &str,
        number: u32,
        src: super::CopySource<'_>,
        range: Option<std::ops::Range<u64>>,
        customer: Option<&CustomerKey>,
    ) -> Result<Digests, ObjectError> {
        let upload = self.load_upload(bucket, key, id).await?;
        let content = upload.content_key(customer)?;
        let len = range.as_ref().map_or(src.opened.size(), |r| r.end - r.start);
        let plain = self.read(src.bucket, src.key, src.opened, range).await?;
        self.put_part(
            bucket,
            id,
            &upload.dek,
            &content,
            number,
            plain,
            len,
            Expectations::default(),
        )
        .await
    }

    /// Aborts upload `id` of `bucket`/`key`: deletes its parts and marker.
    pub async fn abort_upload(&self, bucket: &str, key: &str, id: &str) -> Result<(), ObjectError> {
        self.load_upload(bucket, key, id).await?;
        let parts = self.stored_parts(bucket, id).await?;
        self.remove_upload(bucket, id, parts).await;
        Ok(())
    }

    /// The parts of upload `id` after part `marker`, at most `max` of them.
    pub async fn list_parts(
        &self,
        bucket: &str,
        key: &str,
        id: &str,
        marker: u32,
        max: usize,
    ) -> Result<PartsPage, ObjectError> {
        let upload = self.load_upload(bucket, key, id).await?;
        let after: Vec<StoredPart> = self
            .stored_parts(bucket, id)
            .await?
            .into_iter()
            .filter(|p| p.number > marker)
            .collect();
        let is_truncated = after.len() > max;
        let page: Vec<&StoredPart> = after.iter().take(max).collect();
        let trailers = self.part_trailers(bucket, &upload.dek, &page).await;
        let mut parts = Vec::with_capacity(page.len());
        for (p, trailer) in page.iter().zip(trailers) {
            let trailer = trailer?;
            parts.push(PartInfo {
                number: p.number,
                size: trailer.plain_len,
                md5: trailer.md5,
                checksum: trailer.checksum,
                last_modified: p.entry.last_modified,
            });
        }
        Ok(PartsPage { parts, is_truncated })
    }

    /// The uploads in progress in `bucket` that `query` selects.
    pub async fn list_uploads(&self, bucket: &str, query: &UploadsQuery) -> Result<UploadsPage, ObjectError> {
        let ids: Vec<String> = self
            .list_all(bucket, UPLOAD_MARKERS)
            .await?
            .into_iter()
            .filter_map(|o| o.key.strip_prefix(UPLOAD_MARKERS).map(str::to_string))
            .collect();
        // A marker gone meanwhile (completed, aborted) is simply not listed.
        let found: Vec<Option<UploadInfo>> = futures::stream::iter(ids)
            .map(|id| async move {
                let (marker, head) = self.read_marker(bucket, &id).await.ok()?;
                Some(UploadInfo {
                    key: marker.key,
                    id,
                    initiated: head.last_modified,
                })
            })
            .buffered(CONCURRENCY)
            .collect()
            .await;
        let mut uploads: Vec<UploadInfo> = found
            .into_iter()
            .flatten()
            .filter(|u| u.key.starts_with(&query.prefix) && after_markers(u, query))
            .collect();
        uploads.sort_by(|a, b| (&a.key, &a.id).cmp(&(&b.key, &b.id)));
        Ok(page_of_uploads(uploads, query))
    }

    /// Reads the marker of upload `id` of `bucket`/`key`: `NoSuchUpload` unless it exists for
    /// exactly this key.
    pub(super) async fn load_upload(&self, bucket: &str, key: &str, id: &str) -> Result<InProgress, ObjectError> {
        if !valid_upload_id(id) {
            return Err(ObjectError::NoSuchUpload);
        }
        let (marker, head) = match self.read_marker(bucket, id).await {
            Ok(found) => found,
            Err(BackendError::NoSuchKey) => return Err(ObjectError::NoSuchUpload),
            Err(e) => return Err(e.into()),
        };
        if marker.key != key {
            return Err(ObjectError::NoSuchUpload);
        }
        let mut unwrapped = sealed::unwrap(&self.keyring.load(), bucket, key, &head.metadata);
        // Started on an instance that has seen a rotation this one has not yet: reload once.
        if let Some(version) = super::reload_worthy(&unwrapped)
            && self.keyring.reload_for(version).await
        {
            unwrapped = sealed::unwrap(&self.keyring.load(), bucket, key, &head.metadata);
        }
        let unwrapped = unwrapped?;
        let sealed = B64.decode(&marker.record).map_err(|_| ObjectError::NoSuchUpload)?;
        let record = open_record(&unwrapped.dek, &unwrapped.binding, &sealed)?;
        Ok(InProgress {
            dek: unwrapped.dek,
            record,
        })
    }

    /// The marker of upload `id` (whatever key it is for) and its head. A marker that is not
    /// the proxy's JSON is as good as missing (`NoSuchKey`).
    async fn read_marker(&self, bucket: &str, id: &str) -> Result<(MarkerBody, ObjectHead), BackendError> {
        let got = self
            .store
            .get_object(bucket, &upload_marker_key(id), None, None)
            .await?;
        let body = read_small(got.body, MAX_MARKER_LEN).await.map_err(BackendError::Body)?;
        let marker = serde_json::from_slice(&body).map_err(|_| BackendError::NoSuchKey)?;
        Ok((marker, got.head))
    }

    /// Every stored object under `prefix` (all pages).
    async fn list_all(&self, bucket: &str, prefix: &str) -> Result<Vec<ListEntry>, ObjectError> {
        let mut query = ListQuery {
            prefix: Some(prefix.to_string()),
            max_keys: MAX_KEYS,
            ..Default::default()
        };
        let mut all = Vec::new();
        loop {
            let page = self.store.list_objects(bucket, &query).await?;
            all.extend(page.objects);
            match page.next_continuation_token {
                Some(token) if page.is_truncated => query.continuation_token = Some(token),
                _ => return Ok(all),
            }
        }
    }

    /// Every part object of upload `id`, in part-number order.
    pub(super) async fn stored_parts(&self, bucket: &str, id: &str) -> Result<Vec<StoredPart>, ObjectError> {
        let prefix = upload_parts_prefix(id);
        let mut parts: Vec<StoredPart> = self
            .list_all(bucket, &prefix)
            .await?
            .into_iter()
            .filter_map(|entry| {
                // A hostile store may list keys outside the prefix: skipped, never sliced.
                let number = entry.key.strip_prefix(&prefix)?.parse::<u32>().ok()?;
                Some(StoredPart { number, entry })
            })
            .collect();
        parts.sort_by_key(|p| p.number);
        Ok(parts)
    }

    /// Opens the trailers of `parts`, [`CONCURRENCY`] at a time, in order.
    pub(super) async fn part_trailers(
        &self,
        bucket: &str,
        dek: &Key256,
        parts: &[&StoredPart],
    ) -> Vec<Result<Trailer, ObjectError>> {
        // By index: a stream of borrowed parts trips the compiler's higher-ranked lifetime check
        // once this future is held across the S3 trait's `async fn`.
        futures::stream::iter(0..parts.len())
            .map(|i| self.part_trailer(bucket, dek, parts[i]))
            .buffered(CONCURRENCY)
            .collect()
            .await
    }

    /// Opens the trailer of a part object: its plaintext length, MD5, checksum and header.
    async fn part_trailer(&self, bucket: &str, dek: &Key256, part: &StoredPart) -> Result<Trailer, ObjectError> {
        let got = self
            .store
            .get_object(
                bucket,
                &part.entry.key,
                Some(ByteRange::Suffix(TRAILER_LEN as u64)),
                None,
            )
            .await?;
        let tail = read_small(got.body, TRAILER_LEN).await.map_err(BackendError::Body)?;
        let trailer = open_trailer(dek, part.number, &tail)?;
        if trailer.header.layout().stored_len(trailer.plain_len) != got.head.size || trailer.header.extension_len() != 0
        {
            return Err(CryptoError::Decrypt.into());
        }
        Ok(trailer)
    }

    /// Encrypts and stores part `number` of upload `id`: segments under `content` (the DEK, or
    /// the upload's SSE-C content key), the trailer under `dek`.
    #[allow(clippy::too_many_arguments)] // The part's identity, keys and body; all needed.
    async fn put_part<S, E>(
        &self,
        bucket: &str,
        id: &str,
        dek: &Key256,
        content: &Key256,
        number: u32,
        body: S,
        plain_len: u64,
        expect: Expectations,
    ) -> Result<Digests, ObjectError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: std::fmt::Display,
    {
        let key = upload_part_key(id, number);
        let mut metadata = Metadata::new();
        metadata.insert(meta::VERSION.into(), ENVELOPE_VERSION.to_string());
        let new = NewStream {
            bucket,
            key: &key,
            dek,
            content,
            part: number,
            header: StreamHeader::random(DEFAULT_SEGMENT_LOG2),
            extension: Vec::new(),
            metadata,
        };
        let (_, digests) = self.write_stream(new, body, plain_len, expect).await?;
        Ok(digests)
    }

    /// Deletes the upload's parts and then its marker. Failures leave garbage under the
    /// reserved prefix, never a visible object; they are logged.
    pub(super) async fn remove_upload(&self, bucket: &str, id: &str, parts: Vec<StoredPart>) {
        let results: Vec<_> = futures::stream::iter(parts)
            .map(|p| async move { self.store.delete_object(bucket, &p.entry.key).await })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let failed = results.iter().filter(|r| r.is_err()).count();
        if failed > 0 {
            tracing::warn!(bucket, failed, "could not delete some parts of a finished upload");
        }
        if self.store.delete_object(bucket, &upload_marker_key(id)).await.is_err() {
            tracing::warn!(bucket, "could not delete the marker of a finished upload");
        }
    }
}

/// Whether an upload comes after the query's key and upload-id markers.
fn after_markers(u: &UploadInfo, query: &UploadsQuery) -> bool {
    match (&query.key_marker, &query.upload_id_marker) {
        (Some(km), Some(im)) if !km.is_empty() => u.key > *km || (u.key == *km && u.id > *im),
        (Some(km), _) if !km.is_empty() => u.key > *km,
        _ => true,
    }
}

/// One page of sorted uploads: common prefixes rolled up at the delimiter, as S3 does.
fn page_of_uploads(uploads: Vec<UploadInfo>, query: &UploadsQuery) -> UploadsPage {
    let mut page = UploadsPage::default();
    for upload in uploads {
        if page.uploads.len() + page.common_prefixes.len() >= query.max_uploads {
            page.is_truncated = true;
            break;
        }
        let rest = upload.key.get(query.prefix.len()..).unwrap_or("");
        if let Some(d) = &query.delimiter
            && let Some(at) = rest.find(d.as_str())
        {
            let rolled = format!("{}{}", query.prefix, &rest[..at + d.len()]);
            if page.common_prefixes.last() != Some(&rolled) {
                page.common_prefixes.push(rolled);
            }
            continue;
        }
        page.uploads.push(upload);
    }
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload(key: &str, id: &str) -> UploadInfo {
        UploadInfo {
            key: key.into(),
            id: id.into(),
            initiated: None,
        }
    }

    #[test]
    fn uploads_page_rolls_up_and_truncates() {
        let all = vec![
            upload("a/1", "x"),
            upload("a/2", "y"),
            upload("b", "z"),
            upload("c", "w"),
        ];
        let query = UploadsQuery {
            delimiter: Some("/".into()),
            max_uploads: 2,
            ..Default::default()
        };
        let page = page_of_uploads(all, &query);
        assert_eq!(page.common_prefixes, vec!["a/".to_string()]);
        assert_eq!(page.uploads.len(), 1);
        assert_eq!(page.uploads[0].key, "b");
        assert!(page.is_truncated);
    }

    #[test]
    fn markers_select_later_uploads() {
        let q = |km: &str, im: Option<&str>| UploadsQuery {
            key_marker: Some(km.into()),
            upload_id_marker: im.map(Into::into),
            ..Default::default()
        };
        assert!(after_markers(&upload("b", "1"), &q("a", None)));
        assert!(!after_markers(&upload("a", "9"), &q("a", None)));
        assert!(after_markers(&upload("a", "9"), &q("a", Some("5"))));
        assert!(!after_markers(&upload("a", "5"), &q("a", Some("5"))));
        assert!(after_markers(&upload("a", "0"), &q("", None)));
    }
}
