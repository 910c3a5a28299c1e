//! The stored envelope of one object: which metadata values carry the wrapped key and the sealed
//! record, and when the record moves into the stream's header extension instead. Used by the S3
//! front end and by the offline decryptor, so both read objects the same way.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use std::time::SystemTime;

use crate::backend::{BackendError, ByteRange, ByteStream, Metadata, ObjectStore, read_small};
use crate::crypto::CryptoError;
use crate::crypto::envelope::{ObjectRecord, open_record, seal_record, unwrap_dek, wrap_dek};
use crate::crypto::format::{DEFAULT_SEGMENT_LOG2, FORMAT_VERSION, HEADER_LEN, SINGLE_PART, TRAILER_LEN, meta};
use crate::crypto::keyring::Keyring;
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
    /// The trailer: plaintext length, MD5, checksum, the stream header.
    pub trailer: Trailer,
    /// The store's ETag of this version (pins later reads to it).
    pub store_etag: String,
    /// The store's modification time.
    pub last_modified: Option<SystemTime>,
}

/// Opens `bucket`/`key` in `store`: one suffix-range read for the metadata and trailer, one
/// more when the record lives in the header extension. Checks that the stored length, the
/// trailer and the record agree.
pub async fn open(store: &dyn ObjectStore, keyring: &Keyring, bucket: &str, key: &str) -> Result<Opened, OpenError> {
    let got = store
        .get_object(bucket, key, Some(ByteRange::Suffix(TRAILER_LEN as u64)), None)
        .await?;
    let tail = read_small(got.body, TRAILER_LEN)
        .await
        .map_err(|e| read_failed(store, e))?;
    let (unwrapped, trailer) = open_tail(keyring, bucket, key, &got.head.metadata, &tail, got.head.size)?;
    let extension = match trailer.header.extension_len() {
        0 => None,
        len => {
            let range = ByteRange::Bounded(HEADER_LEN as u64..(HEADER_LEN + len) as u64);
            let ext = store.get_object(bucket, key, Some(range), Some(&got.head.etag)).await?;
            Some(read_small(ext.body, len).await.map_err(|e| read_failed(store, e))?)
        }
    };
    let record = unwrapped.open_record(&trailer, extension.as_deref())?;
    Ok(Opened {
        dek: unwrapped.dek,
        record,
        trailer,
        store_etag: got.head.etag,
        last_modified: got.head.last_modified,
    })
}

/// Up to this stored size, a whole-object read is one store request: the object is read into
/// memory and the trailer taken from its end. Larger objects stream, and their trailer is read
/// first with a second, suffix-range request. Bounds memory per request to this much.
pub const ONE_REQUEST_MAX: u64 = 1 << 20;

/// Opens `bucket`/`key` for reading all of it: returns what [`open`] does, plus the stored
/// stream from its first byte (header, extension, segments; anything after the last segment is
/// never read). Small objects take one store request, larger ones two, both pinned to one
/// version by the store ETag.
pub async fn open_whole(
    store: &dyn ObjectStore,
    keyring: &Keyring,
    bucket: &str,
    key: &str,
) -> Result<(Opened, ByteStream), OpenError> {
    let got = store.get_object(bucket, key, None, None).await?;
    let (size, etag) = (got.head.size, got.head.etag.clone());
    if size > ONE_REQUEST_MAX {
        // The trailer comes last: read it first, from the same version, then stream the body.
        let tail = store
            .get_object(bucket, key, Some(ByteRange::Suffix(TRAILER_LEN as u64)), Some(&etag))
            .await?;
        let tail = read_small(tail.body, TRAILER_LEN)
            .await
            .map_err(|e| read_failed(store, e))?;
        let (unwrapped, trailer) = open_tail(keyring, bucket, key, &got.head.metadata, &tail, size)?;
        let extension = match trailer.header.extension_len() {
            0 => None,
            len => {
                let range = ByteRange::Bounded(HEADER_LEN as u64..(HEADER_LEN + len) as u64);
                let ext = store.get_object(bucket, key, Some(range), Some(&etag)).await?;
                Some(read_small(ext.body, len).await.map_err(|e| read_failed(store, e))?)
            }
        };
        let record = unwrapped.open_record(&trailer, extension.as_deref())?;
        let opened = Opened {
            dek: unwrapped.dek,
            record,
            trailer,
            store_etag: etag,
            last_modified: got.head.last_modified,
        };
        return Ok((opened, got.body));
    }
    // Invariant: `size` is at most ONE_REQUEST_MAX (1 MiB), far below usize::MAX.
    let all = read_small(got.body, size as usize)
        .await
        .map_err(|e| read_failed(store, e))?;
    if (all.len() as u64) != size || all.len() < HEADER_LEN + TRAILER_LEN {
        return Err(CryptoError::Format("stored object shorter than its length").into());
    }
    let (unwrapped, trailer) = open_tail(
        keyring,
        bucket,
        key,
        &got.head.metadata,
        &all[all.len() - TRAILER_LEN..],
        size,
    )?;
    let extension = match trailer.header.extension_len() {
        0 => None,
        len => Some(
            all.get(HEADER_LEN..HEADER_LEN + len)
                .ok_or(CryptoError::Format("short extension"))?,
        ),
    };
    let record = unwrapped.open_record(&trailer, extension)?;
    let opened = Opened {
        dek: unwrapped.dek,
        record,
        trailer,
        store_etag: etag,
        last_modified: got.head.last_modified,
    };
    let body: ByteStream = Box::pin(futures::stream::once(futures::future::ready(Ok(bytes::Bytes::from(
        all,
    )))));
    Ok((opened, body))
}

fn read_failed(store: &dyn ObjectStore, e: std::io::Error) -> BackendError {
    BackendError::Upstream {
        store: store.name().to_string(),
        message: e.to_string(),
        retryable: true,
    }
}

/// Unwraps the data key from `metadata`, opens the trailer `tail` and checks it against the
/// stored length: the first step of every read, from a store or from a file.
pub fn open_tail(
    keyring: &Keyring,
    bucket: &str,
    key: &str,
    metadata: &Metadata,
    tail: &[u8],
    stored_len: u64,
) -> Result<(Unwrapped, Trailer), EnvelopeError> {
    let unwrapped = unwrap(keyring, bucket, key, metadata)?;
    let trailer = open_trailer(&unwrapped.dek, SINGLE_PART, tail)?;
    if trailer.header.layout().stored_len(trailer.plain_len) != stored_len {
        return Err(CryptoError::Decrypt.into());
    }
    Ok((unwrapped, trailer))
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
    let (kek_version, kek) = keyring.active();
    let mut metadata = Metadata::new();
    metadata.insert(meta::VERSION.into(), FORMAT_VERSION.to_string());
    metadata.insert(meta::KEK.into(), kek_version.to_string());
    metadata.insert(
        meta::DEK.into(),
        B64.encode(wrap_dek(kek, kek_version, dek, bucket, key)),
    );
    let sealed = seal_record(dek, record);
    let encoded = B64.encode(&sealed);
    let header = StreamHeader::random(DEFAULT_SEGMENT_LOG2);
    let used: usize = metadata.iter().map(|(k, v)| META_PREFIX_LEN + k.len() + v.len()).sum();
    if used + META_PREFIX_LEN + meta::RECORD.len() + encoded.len() <= METADATA_BUDGET {
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

/// An object's unwrapped data key, and its sealed record when the metadata carries it.
pub struct Unwrapped {
    /// The object's data key.
    pub dek: Key256,
    record: Option<Vec<u8>>,
}

impl Unwrapped {
    /// Opens the record, from the metadata or from `extension` (the bytes after the header),
    /// whichever the trailer's header says holds it; both or neither is a forgery.
    pub fn open_record(&self, trailer: &Trailer, extension: Option<&[u8]>) -> Result<ObjectRecord, CryptoError> {
        let in_header = trailer.header.extension_len() > 0;
        let record = match (&self.record, extension, in_header) {
            (Some(sealed), None, false) => open_record(&self.dek, sealed)?,
            (None, Some(ext), true) if ext.len() == trailer.header.extension_len() => {
                open_record(&self.dek, parse_extension(ext)?)?
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
    if field(meta::VERSION) != Some(&FORMAT_VERSION.to_string()) {
        return Err(EnvelopeError::NotEscrow);
    }
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
    let dek = unwrap_dek(keyring.kek(kek_version)?, kek_version, &wrapped, bucket, key)?;
    Ok(Unwrapped { dek, record })
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
