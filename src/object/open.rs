//! Opening a stored object and streaming a plaintext range of it: the one reader of the format,
//! used by the proxy (over a store) and by the offline exit path (over a file).
//!
//! Opening reads only the object's end (trailer or manifest) and, when the record does not fit
//! the metadata, its header extension; everything is authenticated and checked against the stored
//! length before a byte of content is read. A read then fetches exactly the stored range its
//! segments need, pinned to the same stored version.

use std::ops::Range;
use std::time::SystemTime;

use async_trait::async_trait;

use super::ObjectError;
use super::body::{DecryptBody, Piece};
use super::sealed;
use crate::backend::{
    BackendError, BackendResult, ByteRange, ByteStream, GetObject, ObjectHead, ObjectStore, read_small,
};
use crate::crypto::CryptoError;
use crate::crypto::envelope::{CustomerKey, ObjectRecord};
use crate::crypto::format::{ChecksumAlgorithm, HEADER_LEN, SINGLE_PART, TRAILER_LEN, meta};
use crate::crypto::keyring::Keyring;
use crate::crypto::layout::{ONE_REQUEST_MAX, TAIL_HINT};
use crate::crypto::manifest::{self, Manifest};
use crate::crypto::segment::Trailer;
use crate::secret::Key256;

/// The plaintext of an object's range, decrypted as it streams.
pub type PlainStream = DecryptBody<ByteStream>;

/// One stored object as the reader sees it: ranged reads, optionally pinned to a stored version
/// (a store ETag). A store's object ([`InStore`]) or an object file (the offline tools).
#[async_trait]
pub trait StoredObject: Send + Sync {
    /// Who answers, for error messages: the store's name, or a file's path.
    fn source(&self) -> &str;

    /// Reads `range` of the object (all of it with `None`). With `if_match`, fails with
    /// [`BackendError::PreconditionFailed`] unless the stored version still has that ETag.
    async fn get(&self, range: Option<ByteRange>, if_match: Option<&str>) -> BackendResult<GetObject>;
}

/// `bucket`/`key` in a store.
pub struct InStore<'a> {
    /// The store.
    pub store: &'a dyn ObjectStore,
    /// Bucket.
    pub bucket: &'a str,
    /// Object key.
    pub key: &'a str,
}

#[async_trait]
impl StoredObject for InStore<'_> {
    fn source(&self) -> &str {
        self.store.name()
    }

    async fn get(&self, range: Option<ByteRange>, if_match: Option<&str>) -> BackendResult<GetObject> {
        self.store.get_object(self.bucket, self.key, range, if_match).await
    }
}

/// Everything known about a stored object before any of its content is read.
pub struct Opened {
    /// The object's data key.
    pub dek: Key256,
    /// What the content opens under: the DEK, or once [`Opened::unlock`] checked the customer
    /// key, an SSE-C object's content key; `None` for an SSE-C object not unlocked yet.
    content: Option<Key256>,
    /// The sealed record, opened.
    pub record: ObjectRecord,
    /// Single part (a trailer) or multipart (a manifest).
    pub shape: Shape,
    /// The store's ETag of this version (pins later reads to it); empty when unknown.
    pub store_etag: String,
    /// When the object was written: the time sealed into its record (to the second), or the
    /// store's time for objects written before records carried it. HEAD, GET, listings and the
    /// conditional headers all use this one value.
    pub last_modified: Option<SystemTime>,
}

/// How an object's content is laid out.
pub enum Shape {
    /// One stream; its trailer: plaintext length, MD5, checksum, the stream header.
    Single(Trailer),
    /// Part streams followed by the manifest.
    Multipart(Manifest),
}

impl Opened {
    /// Whether the object is encrypted with a customer key (SSE-C).
    pub fn is_sse_c(&self) -> bool {
        self.record.sse_c.is_some()
    }

    /// Checks the customer key a request gave (`None`: none) against the object, and keeps the
    /// content key it selects. Every read of content needs this first for an SSE-C object.
    pub fn unlock(&mut self, customer: Option<&CustomerKey>) -> Result<(), ObjectError> {
        self.content = Some(super::customer::unlock(&self.dek, &self.record, customer)?);
        Ok(())
    }

    /// The key the content opens under; an SSE-C object not unlocked has none.
    pub fn content_key(&self) -> Result<&Key256, ObjectError> {
        self.content.as_ref().ok_or(ObjectError::CustomerKeyRequired)
    }

    /// Plaintext length.
    pub fn size(&self) -> u64 {
        self.record.size
    }

    /// The client-visible ETag, without quotes: the plaintext MD5, or the multipart form.
    pub fn etag(&self) -> String {
        match &self.shape {
            Shape::Single(trailer) => hex::encode(trailer.md5),
            Shape::Multipart(manifest) => manifest.etag(),
        }
    }

    /// The client's checksum of the whole object, when it sent one with a single-part upload.
    pub fn checksum(&self) -> Option<&(ChecksumAlgorithm, Vec<u8>)> {
        match &self.shape {
            Shape::Single(trailer) => trailer.checksum.as_ref(),
            Shape::Multipart(_) => None,
        }
    }

    /// Number of parts of a multipart object.
    pub fn parts_count(&self) -> Option<usize> {
        match &self.shape {
            Shape::Single(_) => None,
            Shape::Multipart(manifest) => Some(manifest.parts.len()),
        }
    }

    /// The plaintext range of part `number` (a single-part object's only part is 1).
    pub fn part_range(&self, number: u32) -> Option<Range<u64>> {
        match &self.shape {
            Shape::Single(_) => (number == 1).then_some(0..self.size()),
            Shape::Multipart(manifest) => {
                let index = manifest.parts.iter().position(|p| p.number == number)?;
                Some(manifest.part_range(index).0)
            }
        }
    }

    /// What to read for plaintext `range` (`None`: all of it, which may be empty): the stored
    /// byte range, and how to decrypt it. A range outside the object is an error.
    pub fn read(&self, range: Option<Range<u64>>) -> Result<(Range<u64>, Vec<Piece>), CryptoError> {
        match &self.shape {
            Shape::Single(trailer) => {
                let size = trailer.plain_len;
                let (whole, range) = match range {
                    Some(r) => (false, r),
                    None => (true, 0..size),
                };
                let (piece, stored) = Piece::new(SINGLE_PART, trailer.header, size, range, whole, false)?;
                Ok((stored, vec![piece]))
            }
            Shape::Multipart(manifest) => read_parts(manifest, range.unwrap_or(0..manifest.record.size)),
        }
    }
}

/// The pieces of a multipart object's plaintext `range`: one per part it touches, over one
/// stored range. Inner parts are read whole (header and trailer checked); the first and last
/// only as far as the range needs.
fn read_parts(manifest: &Manifest, range: Range<u64>) -> Result<(Range<u64>, Vec<Piece>), CryptoError> {
    let slices = if range.is_empty() && manifest.record.size == 0 {
        // An empty object: its one (empty) part, whole.
        vec![manifest::PartSlice {
            index: 0,
            stored_start: 0,
            range: 0..0,
        }]
    } else {
        manifest.locate(range)
    };
    let Some(last) = slices.len().checked_sub(1) else {
        return Err(CryptoError::Format("read range outside the object"));
    };
    let mut stored = 0..0;
    let mut pieces = Vec::with_capacity(slices.len());
    for (k, slice) in slices.into_iter().enumerate() {
        let part = manifest
            .parts
            .get(slice.index)
            .ok_or(CryptoError::Format("part index outside the manifest"))?;
        let whole_part = slice.range == (0..part.plain_len);
        let (piece, span) = Piece::new(
            part.number,
            part.header,
            part.plain_len,
            slice.range,
            k > 0 || whole_part,
            k < last || whole_part,
        )?;
        if k == 0 {
            stored.start = slice.stored_start + span.start;
        }
        stored.end = slice.stored_start + span.end;
        pieces.push(piece);
    }
    Ok((stored, pieces))
}

/// Opens `object`, stored as `bucket`/`key`: one suffix-range read of the trailer's length for
/// the metadata and the end of the object (every stored object is longer, so the read never asks
/// a store for more than the object holds, which some stores refuse), one more for a multipart
/// object's manifest or a record in the header extension. Checks that the stored length and
/// everything sealed agree.
pub async fn open(
    object: &dyn StoredObject,
    keyring: &Keyring,
    bucket: &str,
    key: &str,
) -> Result<Opened, ObjectError> {
    let got = object.get(Some(ByteRange::Suffix(TRAILER_LEN as u64)), None).await?;
    let tail = read_small(got.body, TRAILER_LEN)
        .await
        .map_err(|e| read_failed(object, e))?;
    finish_open(object, keyring, bucket, key, &got.head, Have::Suffix(tail)).await
}

/// Opens `object` for reading all of it: returns what [`open`] does, plus the stored object from
/// its first byte (the reader stops after the last part it needs). Objects up to
/// [`ONE_REQUEST_MAX`] take one store request, larger ones two, both pinned to one version.
pub async fn open_whole(
    object: &dyn StoredObject,
    keyring: &Keyring,
    bucket: &str,
    key: &str,
) -> Result<(Opened, ByteStream), ObjectError> {
    let got = object.get(None, None).await?;
    let size = got.head.size;
    if size > ONE_REQUEST_MAX {
        // The end comes last: read it first, from the same version, then stream the body.
        let range = ByteRange::Bounded(size.saturating_sub(TAIL_HINT)..size);
        let tail = object.get(Some(range), Some(&got.head.etag)).await.map_err(changed)?;
        let tail = read_small(tail.body, TAIL_HINT as usize)
            .await
            .map_err(|e| read_failed(object, e))?;
        let opened = finish_open(object, keyring, bucket, key, &got.head, Have::Suffix(tail)).await?;
        return Ok((opened, got.body));
    }
    // Invariant: `size` is at most ONE_REQUEST_MAX (1 MiB), far below usize::MAX.
    let all = read_small(got.body, size as usize)
        .await
        .map_err(|e| read_failed(object, e))?;
    if (all.len() as u64) != size {
        return Err(CryptoError::Format("stored object shorter than its length").into());
    }
    let opened = finish_open(object, keyring, bucket, key, &got.head, Have::All(&all)).await?;
    let body: ByteStream = Box::pin(futures::stream::once(futures::future::ready(Ok(bytes::Bytes::from(
        all,
    )))));
    Ok((opened, body))
}

/// The plaintext of `range` (`None`: all) of an opened object, decrypted as it streams: one
/// store request for exactly the segments needed, pinned to the version that was opened.
pub async fn plaintext(
    object: &dyn StoredObject,
    opened: &Opened,
    range: Option<Range<u64>>,
) -> Result<PlainStream, ObjectError> {
    let (stored, pieces) = opened.read(range)?;
    opened.content_key()?;
    let pin = Some(opened.store_etag.as_str()).filter(|e| !e.is_empty());
    let got = object
        .get(Some(ByteRange::Bounded(stored)), pin)
        .await
        .map_err(changed)?;
    Ok(DecryptBody::new(got.body, &opened.dek, pieces).with_content_key(opened.content_key()?))
}

/// A pinned read that finds another version: the object changed while it was being read.
fn changed(e: BackendError) -> ObjectError {
    match e {
        BackendError::PreconditionFailed => ObjectError::Changed,
        other => ObjectError::Store(other),
    }
}

/// What has been read of an object: all of it, or a suffix.
enum Have<'a> {
    All(&'a [u8]),
    Suffix(Vec<u8>),
}

impl Have<'_> {
    fn suffix(&self) -> &[u8] {
        match self {
            Have::All(all) => all,
            Have::Suffix(tail) => tail,
        }
    }
}

/// Reads stored bytes `range` of the version `head` describes: from memory when `have` holds
/// them, else with one more (pinned) request. The range comes from authenticated lengths, and
/// must lie within the stored object before it sizes anything.
async fn fetch(
    object: &dyn StoredObject,
    head: &ObjectHead,
    have: &Have<'_>,
    range: Range<u64>,
) -> Result<Vec<u8>, ObjectError> {
    let short = || ObjectError::from(CryptoError::Format("stored object shorter than its length"));
    if range.start > range.end || range.end > head.size {
        return Err(short());
    }
    let suffix = have.suffix();
    let suffix_start = head.size.checked_sub(suffix.len() as u64).ok_or_else(short)?;
    if range.start >= suffix_start {
        let at = (range.start - suffix_start) as usize..(range.end - suffix_start) as usize;
        return Ok(suffix[at].to_vec());
    }
    // Invariant: callers ask for a header extension (< 16 MiB) or a manifest whose length was
    // bounded by the stored size above.
    let len = usize::try_from(range.end - range.start).map_err(|_| short())?;
    let got = object
        .get(
            Some(ByteRange::Bounded(range)),
            Some(&head.etag).filter(|e| !e.is_empty()).map(String::as_str),
        )
        .await
        .map_err(changed)?;
    let bytes = read_small(got.body, len).await.map_err(|e| read_failed(object, e))?;
    if bytes.len() != len {
        return Err(short());
    }
    Ok(bytes)
}

/// Opens an object from its metadata and what has been read of its end, fetching the header
/// extension or the rest of a long manifest when needed.
async fn finish_open(
    object: &dyn StoredObject,
    keyring: &Keyring,
    bucket: &str,
    key: &str,
    head: &ObjectHead,
    have: Have<'_>,
) -> Result<Opened, ObjectError> {
    let size = head.size;
    let unwrapped = sealed::unwrap(keyring, bucket, key, &head.metadata)?;
    let (record, shape) = if head.metadata.contains_key(meta::PARTS) {
        let need = Manifest::tail_len(have.suffix())? as u64;
        let start = size
            .checked_sub(need)
            .ok_or(CryptoError::Format("manifest longer than the object"))?;
        let tail = fetch(object, head, &have, start..size).await?;
        let manifest = unwrapped.open_manifest(&head.metadata, &tail, size)?;
        (manifest.record.clone(), Shape::Multipart(manifest))
    } else {
        let suffix = have.suffix();
        let tail = suffix
            .get(suffix.len().saturating_sub(TRAILER_LEN)..)
            .filter(|t| t.len() == TRAILER_LEN)
            .ok_or(CryptoError::Format("short trailer"))?;
        let trailer = unwrapped.open_trailer(tail, size)?;
        let extension = match trailer.header.extension_len() {
            0 => None,
            len => Some(fetch(object, head, &have, HEADER_LEN as u64..(HEADER_LEN + len) as u64).await?),
        };
        let record = unwrapped.open_record(&trailer, extension.as_deref())?;
        (record, Shape::Single(trailer))
    };
    Ok(Opened {
        content: record.sse_c.is_none().then(|| unwrapped.dek.clone()),
        dek: unwrapped.dek,
        shape,
        store_etag: head.etag.clone(),
        last_modified: record.written().or(head.last_modified),
        record,
    })
}

fn read_failed(object: &dyn StoredObject, e: std::io::Error) -> BackendError {
    BackendError::Upstream {
        store: object.source().to_string(),
        message: e.to_string(),
        retryable: true,
    }
}
