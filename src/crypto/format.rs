//! Format constants and the stored-metadata names. Frozen: DO NOT CHANGE these values for
//! version 1; a new layout gets a new version number and the old decoders stay.

/// The stream layout's version, written in every stream header (byte 3).
pub const FORMAT_VERSION: u8 = 1;

/// The envelope version written today: the `escrow-v` metadata value, also bound into the DEK
/// wrap. Version 3 wraps each DEK under its own key derived from the KEK and a random salt (a KEK
/// never runs out of nonces), and binds the record and manifest to a random object id carried in
/// the wrap (so a rewrap under another KEK keeps them valid, while a copy, with its own id, cannot
/// exchange them with its source). Version 2 (records bound to the wrapped DEK's bytes) and
/// version 1 (records not bound, no multipart) are still read.
pub const ENVELOPE_VERSION: u8 = 3;

/// Length of a version-3 object id, carried at the start of the wrapped DEK.
pub const OBJECT_ID_LEN: usize = 16;

/// Length of a version-3 wrap's key-derivation salt.
pub const WRAP_SALT_LEN: usize = 16;

/// Envelope versions readers accept.
pub const ENVELOPE_VERSIONS: std::ops::RangeInclusive<u8> = 1..=ENVELOPE_VERSION;

/// Stream header magic.
pub const MAGIC: [u8; 3] = *b"EPX";

/// Length of a stream header.
pub const HEADER_LEN: usize = 32;

/// Length of the header's random key-derivation salt.
pub const SALT_LEN: usize = 16;

/// Length of the random per-stream nonce prefix.
pub const NONCE_PREFIX_LEN: usize = 7;

/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;

/// AES-GCM nonce length.
pub const NONCE_LEN: usize = 12;

/// log2 of the default plaintext segment size (64 KiB).
pub const DEFAULT_SEGMENT_LOG2: u8 = 16;

/// Smallest and largest segment sizes a decoder accepts (4 KiB ..= 16 MiB).
pub const SEGMENT_LOG2_RANGE: std::ops::RangeInclusive<u8> = 12..=24;

/// Plaintext length of the stream trailer.
pub const TRAILER_PLAIN_LEN: usize = 96;

/// Stored length of the stream trailer (nonce, sealed trailer, tag).
pub const TRAILER_LEN: usize = NONCE_LEN + TRAILER_PLAIN_LEN + TAG_LEN;

/// Part number of a single-part object's only stream. Multipart parts use 1..=10000.
pub const SINGLE_PART: u32 = 0;

/// Stored metadata names (without the `x-amz-meta-` prefix).
pub mod meta {
    /// Format version, decimal.
    pub const VERSION: &str = "escrow-v";
    /// KEK version that wraps the DEK, decimal.
    pub const KEK: &str = "escrow-kek";
    /// Wrapped DEK, base64 (standard alphabet, padded).
    pub const DEK: &str = "escrow-dek";
    /// Sealed object metadata record, base64.
    pub const RECORD: &str = "escrow-meta";
    /// Number of parts of a multipart object, decimal: says the body ends in a manifest. A hint
    /// only: the manifest itself is authenticated.
    pub const PARTS: &str = "escrow-parts";
}

/// HKDF `info` labels and AEAD associated-data labels.
pub mod label {
    /// AAD prefix of a wrapped DEK.
    pub const DEK_WRAP: &[u8] = b"escrow-proxy dek-wrap";
    /// HKDF info prefix of a version-3 wrap key; followed by the KEK version, u32 BE.
    pub const DEK_WRAP_KEY: &[u8] = b"escrow-proxy dek-wrap-key";
    /// HKDF info prefix of a content (part) key; followed by the part number, u32 BE.
    pub const PART_KEY: &[u8] = b"escrow-proxy part-key";
    /// HKDF info prefix of a trailer key; followed by the part number, u32 BE.
    pub const TRAILER_KEY: &[u8] = b"escrow-proxy trailer-key";
    /// HKDF info of the metadata-record key.
    pub const META_KEY: &[u8] = b"escrow-proxy meta-key";
    /// AAD of the metadata record.
    pub const META_AAD: &[u8] = b"escrow-proxy meta-record";
    /// AAD prefix of the stream trailer; followed by the part number, u32 BE.
    pub const TRAILER_AAD: &[u8] = b"escrow-proxy trailer";
    /// AAD prefix of a KEK sealed by the root key; followed by the KEK version, u32 BE.
    pub const KEK_SEAL: &[u8] = b"escrow-proxy kek-seal";
    /// AAD prefix of a whole keyring document (format 2); followed by its generation, u64 BE.
    pub const KEYRING_SEAL: &[u8] = b"escrow-proxy keyring";
    /// HKDF info of a multipart object's manifest key.
    pub const MANIFEST_KEY: &[u8] = b"escrow-proxy manifest-key";
    /// AAD of a multipart object's manifest.
    pub const MANIFEST_AAD: &[u8] = b"escrow-proxy manifest";
    /// HKDF info of an SSE-C object's content key (ikm = DEK ‖ customer key).
    pub const SSE_C_CONTENT_KEY: &[u8] = b"escrow-proxy sse-c content-key";
    /// HKDF info of the key that MACs an SSE-C object's customer key (ikm = DEK).
    pub const SSE_C_CHECK_KEY: &[u8] = b"escrow-proxy sse-c check-key";
}

/// The plaintext checksum algorithms S3 clients may send (`x-amz-checksum-*`), with their frozen
/// ids in the stream trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumAlgorithm {
    /// CRC-32 (ISO-HDLC), 4 bytes.
    Crc32 = 1,
    /// CRC-32C (Castagnoli), 4 bytes.
    Crc32c = 2,
    /// CRC-64/NVME, 8 bytes.
    Crc64Nvme = 3,
    /// SHA-1, 20 bytes.
    Sha1 = 4,
    /// SHA-256, 32 bytes.
    Sha256 = 5,
}

impl ChecksumAlgorithm {
    /// Every algorithm, in id order.
    pub const ALL: [Self; 5] = [Self::Crc32, Self::Crc32c, Self::Crc64Nvme, Self::Sha1, Self::Sha256];

    /// The frozen trailer id.
    pub fn id(self) -> u8 {
        self as u8
    }

    /// The algorithm with this trailer id.
    pub fn from_id(id: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.id() == id)
    }

    /// Digest length in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            Self::Crc32 | Self::Crc32c => 4,
            Self::Crc64Nvme => 8,
            Self::Sha1 => 20,
            Self::Sha256 => 32,
        }
    }

    /// The S3 name (`x-amz-checksum-<lowercase name>`, `ChecksumAlgorithm` value).
    pub fn s3_name(self) -> &'static str {
        match self {
            Self::Crc32 => "CRC32",
            Self::Crc32c => "CRC32C",
            Self::Crc64Nvme => "CRC64NVME",
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
        }
    }
}
