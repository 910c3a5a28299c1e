//! The stored envelope of one object: which metadata values carry the wrapped key and the sealed
//! record, and when the record moves into the stream's header extension instead. Used by the S3
//! front end and by the offline decryptor, so both read objects the same way.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use std::ops::Range;
use std::time::SystemTime;

use crate::backend::{BackendError, ByteRange, ByteStream, Metadata, ObjectHead, ObjectStore, read_small};
use crate::body::Piece;
use crate::crypto::CryptoError;
use crate::crypto::envelope::{ObjectRecord, open_record, seal_record, unwrap_dek, wrap_dek};
use crate::crypto::format::{
    ChecksumAlgorithm, DEFAULT_SEGMENT_LOG2, ENVELOPE_VERSION, ENVELOPE_VERSIONS, HEADER_LEN, SINGLE_PART, TRAILER_LEN,
    meta,
};
use crate::crypto::keyring::Keyring;
use crate::crypto::manifest::{self, Manifest};
use crate::crypto::segment::{StreamHeader, Trailer, build_extension, open_trailer, parse_extension};
use crate::secret::Key256;

/// User metadata a store is assumed to accept per object, counted as S3 does (bytes of names
/// and values), with the `x-amz-meta-` prefix counted too, for margin. AWS S3 allows 2 KB.
pub const METADATA_BUDGET: usize = 2048;
const META_PREFIX_LEN: usize = "x-amz-meta-".len();

/// Why an object's envelope could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// The metadata is not an escrow-proxy envelope of a known version.
    #[error("the object was not written through escrow-proxy (or its metadata was removed)")]
    NotEscrow,
    /// The envelope did not authenticate, or its key is unknown or retired.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// Why a stored object could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The store failed or said no.
    #[error(transparent)]
    Store(#[from] BackendError),
    /// The envelope is foreign, forged, or under a missing key.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
}

impl From<CryptoError> for OpenError {
    fn from(e: CryptoError) -> Self {
        Self::Envelope(EnvelopeError::Crypto(e))
    }
}

/// Everything known about a stored object before any of its content is read.
pub struct Opened {
    /// The object's data key.
    pub dek: Key256,
    /// The sealed record, opened.
    pub record: ObjectRecord,
    /// Single part (a trailer) or multipart (a manifest).
    pub shape: Shape,
    /// The store's ETag of this version (pins later reads to it).
    pub store_etag: String,
    /// The store's modification time.
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
    /// byte range, and how to decrypt it.
    pub fn read(&self, range: Option<Range<u64>>) -> (Range<u64>, Vec<Piece>) {
        match &self.shape {
            Shape::Single(trailer) => {
                let size = trailer.plain_len;
                let (whole, range) = match range {
                    Some(r) => (false, r),
                    None => (true, 0..size),
                };
                let (piece, stored) = Piece::new(SINGLE_PART, trailer.header, size, range, whole, false);
                (stored, vec![piece])
            }
            Shape::Multipart(manifest) => {
                let range = range.unwrap_or(0..manifest.record.size);
                let slices = if range.is_empty() {
                    // An empty object: its one (empty) part, whole.
                    vec![manifest::PartSlice {
                        index: 0,
                        stored_start: 0,
                        range: 0..0,
                    }]
                } else {
                    manifest.locate(range)
                };
                let last = slices.len() - 1;
                let mut stored = 0..0;
                let mut pieces = Vec::with_capacity(slices.len());
                for (k, slice) in slices.into_iter().enumerate() {
                    let part = &manifest.parts[slice.index];
                    let whole_part = slice.range == (0..part.plain_len);
                    let (piece, span) = Piece::new(
                        part.number,
                        part.header,
                        part.plain_len,
                        slice.range,
                        k > 0 || whole_part,
                        k < last || whole_part,
                    );
                    if k == 0 {
                        stored.start = slice.stored_start + span.start;
                    }
                    stored.end = slice.stored_start + span.end;
                    pieces.push(piece);
                }
                (stored, pieces)
            }
        }
    }
}

/// Bytes of a large object's end read before its body: the whole trailer of a single-part
/// object, and the manifest of a multipart one of up to about 200 parts.
const TAIL_HINT: u64 = 16 << 10;

/// Opens `bucket`/`key` in `store`: one suffix-range read of the trailer's length for the
/// metadata and the end of the object (every stored object is longer, so the read never asks a
/// store for more than the object holds, which some stores refuse), one more for a multipart
/// object's manifest or a record in the header extension. Checks that the stored length and
/// everything sealed agree.
pub async fn open(store: &dyn ObjectStore, keyring: &Keyring, bucket: &str, key: &str) -> Result<Opened, OpenError> {
    let got = store
        .get_object(bucket, key, Some(ByteRange::Suffix(TRAILER_LEN as u64)), None)
        .await?;
    let tail = read_small(got.body, TRAILER_LEN)
        .await
        .map_err(|e| read_failed(store, e))?;
    finish_open(store, keyring, bucket, key, &got.head, Have::Suffix(tail)).await
}

/// Up to this stored size, a whole-object read is one store request: the object is read into
/// memory and the trailer taken from its end. Larger objects stream, and their trailer is read
/// first with a second, suffix-range request. Bounds memory per request to this much.
pub const ONE_REQUEST_MAX: u64 = 1 << 20;

/// Opens `bucket`/`key` for reading all of it: returns what [`open`] does, plus the stored
/// object from its first byte (the reader stops after the last part it needs). Small objects
/// take one store request, larger ones two, both pinned to one version by the store ETag.
pub async fn open_whole(
    store: &dyn ObjectStore,
    keyring: &Keyring,
    bucket: &str,
    key: &str,
) -> Result<(Opened, ByteStream), OpenError> {
    let got = store.get_object(bucket, key, None, None).await?;
    let size = got.head.size;
    if size > ONE_REQUEST_MAX {
        // The end comes last: read it first, from the same version, then stream the body.
        let range = ByteRange::Bounded(size.saturating_sub(TAIL_HINT)..size);
        let tail = store.get_object(bucket, key, Some(range), Some(&got.head.etag)).await?;
        let tail = read_small(tail.body, TAIL_HINT as usize)
            .await
            .map_err(|e| read_failed(store, e))?;
        let opened = finish_open(store, keyring, bucket, key, &got.head, Have::Suffix(tail)).await?;
        return Ok((opened, got.body));
    }
    // Invariant: `size` is at most ONE_REQUEST_MAX (1 MiB), far below usize::MAX.
    let all = read_small(got.body, size as usize)
        .await
        .map_err(|e| read_failed(store, e))?;
    if (all.len() as u64) != size {
        return Err(CryptoError::Format("stored object shorter than its length").into());
    }
    let opened = finish_open(store, keyring, bucket, key, &got.head, Have::All(&all)).await?;
    let body: ByteStream = Box::pin(futures::stream::once(futures::future::ready(Ok(bytes::Bytes::from(
        all,
    )))));
    Ok((opened, body))
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
/// them, else with one more (pinned) request.
async fn fetch(
    store: &dyn ObjectStore,
    bucket: &str,
    key: &str,
    head: &ObjectHead,
    have: &Have<'_>,
    range: Range<u64>,
) -> Result<Vec<u8>, OpenError> {
    let short = || OpenError::from(CryptoError::Format("stored object shorter than its length"));
    let suffix = have.suffix();
    let suffix_start = head.size.checked_sub(suffix.len() as u64).ok_or_else(short)?;
    if range.start >= suffix_start && range.end <= head.size {
        let at = (range.start - suffix_start) as usize..(range.end - suffix_start) as usize;
        return Ok(suffix[at].to_vec());
    }
    let len = (range.end - range.start) as usize;
    let got = store
        .get_object(bucket, key, Some(ByteRange::Bounded(range)), Some(&head.etag))
        .await?;
    let bytes = read_small(got.body, len).await.map_err(|e| read_failed(store, e))?;
    if bytes.len() != len {
        return Err(short());
    }
    Ok(bytes)
}

/// Opens an object from its metadata and what has been read of its end, fetching the header
/// extension or the rest of a long manifest when needed.
async fn finish_open(
    store: &dyn ObjectStore,
    keyring: &Keyring,
    bucket: &str,
    key: &str,
    head: &ObjectHead,
    have: Have<'_>,
) -> Result<Opened, OpenError> {
    let size = head.size;
    let unwrapped = unwrap(keyring, bucket, key, &head.metadata)?;
    let (record, shape) = if head.metadata.contains_key(meta::PARTS) {
        let need = Manifest::tail_len(have.suffix())? as u64;
        let tail = fetch(store, bucket, key, head, &have, size.saturating_sub(need)..size).await?;
        let manifest = unwrapped.open_manifest(&head.metadata, &tail, size)?;
        (manifest.record.clone(), Shape::Multipart(manifest))
    } else {
        let suffix = have.suffix();
        let tail = suffix
            .get(suffix.len().saturating_sub(TRAILER_LEN)..)
            .ok_or(CryptoError::Format("short trailer"))?;
        let trailer = unwrapped.open_trailer(tail, size)?;
        let extension = match trailer.header.extension_len() {
            0 => None,
            len => Some(
                fetch(
                    store,
                    bucket,
                    key,
                    head,
                    &have,
                    HEADER_LEN as u64..(HEADER_LEN + len) as u64,
                )
                .await?,
            ),
        };
        let record = unwrapped.open_record(&trailer, extension.as_deref())?;
        (record, Shape::Single(trailer))
    };
    Ok(Opened {
        dek: unwrapped.dek,
        record,
        shape,
        store_etag: head.etag.clone(),
        last_modified: head.last_modified,
    })
}

fn read_failed(store: &dyn ObjectStore, e: std::io::Error) -> BackendError {
    BackendError::Upstream {
        store: store.name().to_string(),
        message: e.to_string(),
        retryable: true,
    }
}

/// What a new object stores besides its content.
pub struct Sealed {
    /// Stored metadata.
    pub metadata: Metadata,
    /// The stream header (announcing the extension, if any).
    pub header: StreamHeader,
    /// The header extension: empty, or the sealed record when it does not fit the metadata.
    pub extension: Vec<u8>,
}

/// Seals a new object's envelope: wraps `dek` under the active KEK for `bucket`/`key` and
/// seals `record`, into the metadata when it fits [`METADATA_BUDGET`], else into the header.
pub fn seal(keyring: &Keyring, bucket: &str, key: &str, dek: &Key256, record: &ObjectRecord) -> Sealed {
    let Wrapped { mut metadata, binding } = key_metadata(keyring, bucket, key, dek);
    let sealed = seal_record(dek, &binding, record);
    let encoded = B64.encode(&sealed);
    let header = StreamHeader::random(DEFAULT_SEGMENT_LOG2);
    if fits_metadata(&metadata, &encoded) {
        metadata.insert(meta::RECORD.into(), encoded);
        return Sealed {
            metadata,
            header,
            extension: Vec::new(),
        };
    }
    let extension = build_extension(&sealed, record.size, DEFAULT_SEGMENT_LOG2);
    Sealed {
        metadata,
        header: header.with_extension(extension.len()),
        extension,
    }
}

/// Whether the sealed record `encoded` fits beside `metadata` within [`METADATA_BUDGET`].
pub fn fits_metadata(metadata: &Metadata, encoded: &str) -> bool {
    let used: usize = metadata.iter().map(|(k, v)| META_PREFIX_LEN + k.len() + v.len()).sum();
    used + META_PREFIX_LEN + meta::RECORD.len() + encoded.len() <= METADATA_BUDGET
}

/// A data key wrapped for one object: the metadata that carries it, and what the object's
/// record and manifest are bound to.
pub struct Wrapped {
    /// `escrow-v`, `escrow-kek`, `escrow-dek`.
    pub metadata: Metadata,
    /// The wrapped DEK's bytes: the binding of everything sealed for this object.
    pub binding: Vec<u8>,
}

/// Wraps `dek` under the active KEK for `bucket`/`key` (a fresh wrap each time: a copy's record
/// and manifest are bound to its own wrap, not the source's).
pub fn key_metadata(keyring: &Keyring, bucket: &str, key: &str, dek: &Key256) -> Wrapped {
    let (kek_version, kek) = keyring.active();
    let wrapped = wrap_dek(kek, kek_version, dek, bucket, key);
    let mut metadata = Metadata::new();
    metadata.insert(meta::VERSION.into(), ENVELOPE_VERSION.to_string());
    metadata.insert(meta::KEK.into(), kek_version.to_string());
    metadata.insert(meta::DEK.into(), B64.encode(&wrapped));
    Wrapped {
        metadata,
        binding: wrapped,
    }
}

/// An object's unwrapped data key, and its sealed record when the metadata carries it.
pub struct Unwrapped {
    /// The object's data key.
    pub dek: Key256,
    /// What the object's record and manifest are bound to: its wrapped DEK (envelope version 2),
    /// or nothing (version 1).
    pub binding: Vec<u8>,
    record: Option<Vec<u8>>,
}

impl Unwrapped {
    /// Opens a single-part object's trailer `tail` and checks it against the stored length.
    pub fn open_trailer(&self, tail: &[u8], stored_len: u64) -> Result<Trailer, CryptoError> {
        let trailer = open_trailer(&self.dek, SINGLE_PART, tail)?;
        if trailer.header.layout().stored_len(trailer.plain_len) != stored_len {
            return Err(CryptoError::Decrypt);
        }
        Ok(trailer)
    }

    /// Opens a multipart object's manifest `tail` (exactly the manifest and its length) and
    /// checks it against the stored length and the metadata's part count.
    pub fn open_manifest(&self, metadata: &Metadata, tail: &[u8], stored_len: u64) -> Result<Manifest, CryptoError> {
        // Multipart objects exist from envelope version 2 on: an unbound one is a forgery.
        if self.binding.is_empty() {
            return Err(CryptoError::Decrypt);
        }
        let manifest = Manifest::open(&self.dek, &self.binding, tail, stored_len)?;
        let count = metadata.get(meta::PARTS).and_then(|v| v.parse::<usize>().ok());
        // The record lives in the manifest; one in the metadata too is a forgery.
        if self.record.is_some() || count != Some(manifest.parts.len()) {
            return Err(CryptoError::Decrypt);
        }
        Ok(manifest)
    }

    /// Opens the record, from the metadata or from `extension` (the bytes after the header),
    /// whichever the trailer's header says holds it; both or neither is a forgery.
    pub fn open_record(&self, trailer: &Trailer, extension: Option<&[u8]>) -> Result<ObjectRecord, CryptoError> {
        let in_header = trailer.header.extension_len() > 0;
        let record = match (&self.record, extension, in_header) {
            (Some(sealed), None, false) => open_record(&self.dek, &self.binding, sealed)?,
            (None, Some(ext), true) if ext.len() == trailer.header.extension_len() => {
                open_record(&self.dek, &self.binding, parse_extension(ext)?)?
            }
            _ => return Err(CryptoError::Decrypt),
        };
        if record.size != trailer.plain_len {
            return Err(CryptoError::Decrypt);
        }
        Ok(record)
    }
}

/// Unwraps the data key of `bucket`/`key` from its stored metadata.
pub fn unwrap(keyring: &Keyring, bucket: &str, key: &str, metadata: &Metadata) -> Result<Unwrapped, EnvelopeError> {
    let field = |name: &str| metadata.get(name).map(String::as_str);
    let version = field(meta::VERSION)
        .and_then(|v| v.parse::<u8>().ok())
        .filter(|v| ENVELOPE_VERSIONS.contains(v) && field(meta::VERSION) == Some(&v.to_string()))
        .ok_or(EnvelopeError::NotEscrow)?;
    let kek_version: u32 = field(meta::KEK)
        .and_then(|v| v.parse().ok())
        .ok_or(EnvelopeError::NotEscrow)?;
    let wrapped = field(meta::DEK)
        .and_then(|v| B64.decode(v).ok())
        .ok_or(EnvelopeError::NotEscrow)?;
    let record = match field(meta::RECORD) {
        Some(v) => Some(B64.decode(v).map_err(|_| CryptoError::Decrypt)?),
        None => None,
    };
    let dek = unwrap_dek(keyring.kek(kek_version)?, kek_version, version, &wrapped, bucket, key)?;
    let binding = if version == 1 { Vec::new() } else { wrapped };
    Ok(Unwrapped { dek, binding, record })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::segment::seal_all;

    fn record(user_bytes: usize) -> ObjectRecord {
        ObjectRecord {
            size: 10,
            content_type: Some("text/plain".into()),
            user: [("big".to_string(), "x".repeat(user_bytes))].into(),
            ..Default::default()
        }
    }

    #[test]
    fn small_records_travel_in_metadata_large_ones_in_the_header() {
        let ring = Keyring::generate("2026-11-28T00:00:00Z");
        for (user_bytes, in_header) in [(10, false), (1000, false), (1900, true)] {
            let dek = Key256::random();
            let sealed = seal(&ring, "b", "k", &dek, &record(user_bytes));
            let used: usize = sealed
                .metadata
                .iter()
                .map(|(k, v)| META_PREFIX_LEN + k.len() + v.len())
                .sum();
            assert!(used <= METADATA_BUDGET, "{used}");
            assert_eq!(!sealed.extension.is_empty(), in_header, "{user_bytes}");

            let plain = b"0123456789";
            let trailer = Trailer {
                plain_len: 10,
                md5: [0; 16],
                checksum: None,
                header: sealed.header,
            };
            let stored = seal_all(&dek, 0, sealed.header, &sealed.extension, plain, &trailer);
            let ext = in_header.then(|| &stored[32..32 + sealed.extension.len()]);
            let unwrapped = unwrap(&ring, "b", "k", &sealed.metadata).expect("unwraps");
            assert_eq!(unwrapped.open_record(&trailer, ext).expect("opens"), record(user_bytes));
            // Must-fail twins: the record claimed in both places or neither; a moved object.
            assert!(unwrapped.open_record(&trailer, Some(&[0u8; 8])).is_err() || in_header);
            assert!(unwrap(&ring, "b", "other", &sealed.metadata).is_err());
        }
    }

    #[test]
    fn foreign_metadata_is_not_escrow() {
        let ring = Keyring::generate("2026-11-28T00:00:00Z");
        assert!(matches!(
            unwrap(&ring, "b", "k", &Metadata::new()),
            Err(EnvelopeError::NotEscrow)
        ));
    }
}
