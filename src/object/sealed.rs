//! The stored envelope of one object: which metadata values carry the wrapped key and the sealed
//! record, and when the record moves into the stream's header extension instead (S3 caps user
//! metadata at 2 KB; a client's valid request must not fail through the proxy's overhead).
//! Pure: no store access, so the same code seals for the proxy and opens for offline tools.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use super::ObjectError;
use crate::backend::Metadata;
use crate::crypto::CryptoError;
use crate::crypto::envelope::{ObjectRecord, open_record, seal_record, unwrap_dek, wrap_dek};
use crate::crypto::format::{DEFAULT_SEGMENT_LOG2, ENVELOPE_VERSION, ENVELOPE_VERSIONS, SINGLE_PART, meta};
use crate::crypto::keyring::Keyring;
use crate::crypto::layout::{META_PREFIX_LEN, METADATA_BUDGET};
use crate::crypto::manifest::Manifest;
use crate::crypto::segment::{StreamHeader, Trailer, build_extension, open_trailer, parse_extension};
use crate::secret::Key256;

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
    /// The object id: the binding of everything sealed for this object.
    pub binding: Vec<u8>,
}

/// Wraps `dek` under the active KEK for `bucket`/`key`, with a fresh object id each time: a
/// copy's record and manifest are bound to its own id, not the source's.
pub fn key_metadata(keyring: &Keyring, bucket: &str, key: &str, dek: &Key256) -> Wrapped {
    let (kek_version, kek) = keyring.active();
    let wrapped = wrap_dek(kek, kek_version, dek, bucket, key);
    let mut metadata = Metadata::new();
    metadata.insert(meta::VERSION.into(), ENVELOPE_VERSION.to_string());
    metadata.insert(meta::KEK.into(), kek_version.to_string());
    metadata.insert(meta::DEK.into(), B64.encode(&wrapped.bytes));
    Wrapped {
        metadata,
        binding: wrapped.binding,
    }
}

/// An object's unwrapped data key, and its sealed record when the metadata carries it.
pub struct Unwrapped {
    /// The object's data key.
    pub dek: Key256,
    /// What the object's record and manifest are bound to: its object id (envelope version 3),
    /// its wrapped DEK (version 2), or nothing (version 1).
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
pub fn unwrap(keyring: &Keyring, bucket: &str, key: &str, metadata: &Metadata) -> Result<Unwrapped, ObjectError> {
    let field = |name: &str| metadata.get(name).map(String::as_str);
    let version = field(meta::VERSION)
        .and_then(|v| v.parse::<u8>().ok())
        .filter(|v| ENVELOPE_VERSIONS.contains(v) && field(meta::VERSION) == Some(&v.to_string()))
        .ok_or(ObjectError::NotEscrow)?;
    let kek_version: u32 = field(meta::KEK)
        .and_then(|v| v.parse().ok())
        .ok_or(ObjectError::NotEscrow)?;
    let wrapped = field(meta::DEK)
        .and_then(|v| B64.decode(v).ok())
        .ok_or(ObjectError::NotEscrow)?;
    let record = match field(meta::RECORD) {
        Some(v) => Some(B64.decode(v).map_err(|_| CryptoError::Decrypt)?),
        None => None,
    };
    let unwrapped = unwrap_dek(keyring.kek(kek_version)?, kek_version, version, &wrapped, bucket, key)?;
    Ok(Unwrapped {
        dek: unwrapped.dek,
        binding: unwrapped.binding,
        record,
    })
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
            Err(ObjectError::NotEscrow)
        ));
    }
}
