//! Segmented streaming AEAD: the stream header, segment sealing and opening, the trailer, and
//! the arithmetic that maps plaintext ranges to stored bytes.
//!
//! A stream is `header(32) ‖ segment_0 ‖ … ‖ segment_{n-1} ‖ trailer(124)`. Segment `i` seals
//! plaintext bytes `[i·S, min((i+1)·S, P))` under the stream key (derived from the DEK, the
//! header's salt and the part number) with `nonce = prefix(7) ‖ i (u32 BE) ‖ last` where `last`
//! is 1 for `i = n-1` and 0 otherwise, and the 32 header bytes as associated data. An empty
//! stream has one empty final segment. The trailer seals, under the part's trailer key with a
//! random nonce, the plaintext length, its MD5, the client's checksum and a copy of the header:
//! it can be read alone (a HEAD is one suffix-range read) and it pins the stream's header.

use std::ops::Range;

use super::CryptoError;
use super::aead::{AeadKey, random_nonce};
use super::envelope::{stream_key, trailer_key};
use super::format::{
    ChecksumAlgorithm, FORMAT_VERSION, HEADER_LEN, MAGIC, NONCE_LEN, NONCE_PREFIX_LEN, SALT_LEN, SEGMENT_LOG2_RANGE,
    TAG_LEN, TRAILER_LEN, TRAILER_PLAIN_LEN, label,
};
use crate::secret::Key256;

/// Largest extension a header can announce (u24).
const MAX_EXTENSION: u32 = (1 << 24) - 1;
/// Length prefix of the sealed record inside an extension.
const EXTENSION_PREFIX: usize = 4;
/// Largest checksum a trailer holds (SHA-256).
const MAX_CHECKSUM_LEN: usize = 32;
/// Segments per stream stay below this, so `i` fits the nonce's u32.
const MAX_SEGMENTS: u64 = u32::MAX as u64;

// === impl StreamHeader ===

/// The 32-byte header that opens every stream:
/// `"EPX" ‖ version ‖ log2(segment size) ‖ u24be(extension length) ‖ salt(16) ‖
/// nonce prefix(7) ‖ 0`. An extension (the sealed metadata record, when it does not fit the
/// store's metadata) follows the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamHeader {
    segment_log2: u8,
    extension_len: u32,
    salt: [u8; SALT_LEN],
    nonce_prefix: [u8; NONCE_PREFIX_LEN],
}

impl StreamHeader {
    /// A header with fresh random salt and nonce prefix.
    pub fn random(segment_log2: u8) -> Self {
        // Invariant: writers pass a format constant (DEFAULT_SEGMENT_LOG2) or a test value.
        assert!(SEGMENT_LOG2_RANGE.contains(&segment_log2), "segment size out of range");
        let mut salt = [0u8; SALT_LEN];
        rand::fill(&mut salt);
        let mut nonce_prefix = [0u8; NONCE_PREFIX_LEN];
        rand::fill(&mut nonce_prefix);
        Self {
            segment_log2,
            extension_len: 0,
            salt,
            nonce_prefix,
        }
    }

    /// The same header announcing an extension of `len` bytes after it.
    pub fn with_extension(self, len: usize) -> Self {
        // Invariant: callers build extensions from records of a few KiB, far below 16 MiB.
        let extension_len = u32::try_from(len)
            .ok()
            .filter(|l| *l <= MAX_EXTENSION)
            .expect("extension fits u24");
        Self { extension_len, ..self }
    }

    /// Length of the extension that follows the header.
    pub fn extension_len(&self) -> usize {
        self.extension_len as usize
    }

    /// The encoded header.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..3].copy_from_slice(&MAGIC);
        out[3] = FORMAT_VERSION;
        out[4] = self.segment_log2;
        out[5..8].copy_from_slice(&self.extension_len.to_be_bytes()[1..]);
        out[8..24].copy_from_slice(&self.salt);
        out[24..31].copy_from_slice(&self.nonce_prefix);
        out
    }

    /// Parses a header; anything but a well-formed version-1 header is refused.
    pub fn decode(bytes: &[u8]) -> Result<Self, CryptoError> {
        let bytes: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|b| b.try_into().ok())
            .ok_or(CryptoError::Format("short stream header"))?;
        if bytes[..3] != MAGIC {
            return Err(CryptoError::Format("bad magic"));
        }
        if bytes[3] != FORMAT_VERSION {
            return Err(CryptoError::Format("unknown format version"));
        }
        if !SEGMENT_LOG2_RANGE.contains(&bytes[4]) {
            return Err(CryptoError::Format("segment size out of range"));
        }
        if bytes[31] != 0 {
            return Err(CryptoError::Format("reserved header byte set"));
        }
        let extension_len = u32::from_be_bytes([0, bytes[5], bytes[6], bytes[7]]);
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&bytes[8..24]);
        let mut nonce_prefix = [0u8; NONCE_PREFIX_LEN];
        nonce_prefix.copy_from_slice(&bytes[24..31]);
        Ok(Self {
            segment_log2: bytes[4],
            extension_len,
            salt,
            nonce_prefix,
        })
    }

    /// The stream's layout.
    pub fn layout(&self) -> Layout {
        Layout {
            segment_log2: self.segment_log2,
            extension_len: u64::from(self.extension_len),
        }
    }

    fn segment_nonce(&self, index: u32, last: bool) -> [u8; NONCE_LEN] {
        let mut n = [0u8; NONCE_LEN];
        n[..NONCE_PREFIX_LEN].copy_from_slice(&self.nonce_prefix);
        n[NONCE_PREFIX_LEN..NONCE_LEN - 1].copy_from_slice(&index.to_be_bytes());
        n[NONCE_LEN - 1] = u8::from(last);
        n
    }
}

// === impl Layout ===

/// Where plaintext bytes live in a stored stream with a given segment size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    segment_log2: u8,
    extension_len: u64,
}

/// The stored bytes that hold a plaintext range, and how to cut the range out of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// First segment index.
    pub first_segment: u64,
    /// Last segment index (inclusive).
    pub last_segment: u64,
    /// Stored byte range of those segments.
    pub stored: Range<u64>,
    /// Plaintext bytes to drop from the start of the first segment.
    pub skip: u64,
    /// Plaintext bytes to return.
    pub len: u64,
}

impl Layout {
    /// The layout of a stream without extension, with segments of `2^segment_log2` bytes.
    pub fn new(segment_log2: u8) -> Self {
        Self {
            segment_log2,
            extension_len: 0,
        }
    }

    /// Where the first segment starts.
    fn body_start(&self) -> u64 {
        HEADER_LEN as u64 + self.extension_len
    }

    /// Plaintext bytes per full segment.
    pub fn segment_size(&self) -> u64 {
        1 << self.segment_log2
    }

    /// Stored bytes per full segment.
    fn stored_segment_size(&self) -> u64 {
        self.segment_size() + TAG_LEN as u64
    }

    /// Number of segments of a stream of `plain_len` bytes (an empty stream has one).
    pub fn segment_count(&self, plain_len: u64) -> u64 {
        plain_len.div_ceil(self.segment_size()).max(1)
    }

    /// Whether a stream of `plain_len` bytes fits the format (segment indices below `u32::MAX`).
    pub fn fits(&self, plain_len: u64) -> bool {
        self.segment_count(plain_len) < MAX_SEGMENTS
    }

    /// Stored length of a stream of `plain_len` plaintext bytes.
    pub fn stored_len(&self, plain_len: u64) -> u64 {
        self.body_start() + TRAILER_LEN as u64 + plain_len + TAG_LEN as u64 * self.segment_count(plain_len)
    }

    /// The plaintext length of a stored stream of `stored_len` bytes, or `None` when no
    /// plaintext length gives that stored length.
    pub fn plain_len(&self, stored_len: u64) -> Option<u64> {
        let body = stored_len.checked_sub(self.body_start() + TRAILER_LEN as u64)?;
        let segments = body.div_ceil(self.stored_segment_size()).max(1);
        let plain = body.checked_sub(TAG_LEN as u64 * segments)?;
        (self.stored_len(plain) == stored_len).then_some(plain)
    }

    /// Stored byte range of the trailer.
    #[cfg(test)]
    fn trailer_range(&self, plain_len: u64) -> Range<u64> {
        let end = self.stored_len(plain_len);
        end - TRAILER_LEN as u64..end
    }

    /// Maps the non-empty plaintext range `range` (within `0..plain_len`) to stored segments;
    /// `None` for an empty range or one outside the plaintext.
    pub fn locate(&self, plain_len: u64, range: Range<u64>) -> Option<Span> {
        if range.start >= range.end || range.end > plain_len {
            return None;
        }
        let first_segment = range.start >> self.segment_log2;
        let last_segment = (range.end - 1) >> self.segment_log2;
        let start = self.body_start() + first_segment * self.stored_segment_size();
        let end_plain = ((last_segment + 1) << self.segment_log2).min(plain_len);
        let end = self.body_start() + end_plain + TAG_LEN as u64 * (last_segment + 1);
        Some(Span {
            first_segment,
            last_segment,
            stored: start..end,
            skip: range.start - (first_segment << self.segment_log2),
            len: range.end - range.start,
        })
    }

    /// Stored length of segment `index` of a stream of `plain_len` bytes.
    pub fn stored_segment_len(&self, plain_len: u64, index: u64) -> u64 {
        let start = index << self.segment_log2;
        let end = ((index + 1) << self.segment_log2).min(plain_len);
        end.saturating_sub(start) + TAG_LEN as u64
    }
}

// === extension ===

/// The extension carrying `sealed_record` in a stream of `plain_len` bytes:
/// `u32be(len) ‖ sealed record ‖ zero padding`. The padding makes the stored length one that no
/// stream without extension has (FORMAT.md §2.6), so a listing that derives plaintext sizes from
/// stored sizes recognises such objects instead of showing a wrong size.
pub fn build_extension(sealed_record: &[u8], plain_len: u64, segment_log2: u8) -> Vec<u8> {
    let mut ext = Vec::with_capacity(EXTENSION_PREFIX + sealed_record.len());
    // Invariant: the record is at most a few KiB (S3 caps request headers at 8 KiB).
    ext.extend_from_slice(
        &u32::try_from(sealed_record.len())
            .expect("record fits u32")
            .to_be_bytes(),
    );
    ext.extend_from_slice(sealed_record);
    let plain = Layout::new(segment_log2);
    let modulus = plain.stored_segment_size();
    let rest = plain_len + TAG_LEN as u64 * plain.segment_count(plain_len);
    let residue = (ext.len() as u64 + rest) % modulus;
    // Residues 1..TAG_LEN are impossible for streams without extension.
    if !(1..TAG_LEN as u64).contains(&residue) {
        let pad = (modulus + 1 - residue) % modulus;
        ext.resize(ext.len() + pad as usize, 0);
    }
    ext
}

/// The sealed record inside an extension; the padding must be zero.
pub fn parse_extension(ext: &[u8]) -> Result<&[u8], CryptoError> {
    let bad = || CryptoError::Format("bad header extension");
    let len = ext.get(..EXTENSION_PREFIX).ok_or_else(bad)?;
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    let end = EXTENSION_PREFIX
        .checked_add(len)
        .filter(|e| *e <= ext.len())
        .ok_or_else(bad)?;
    if ext[end..].iter().any(|b| *b != 0) {
        return Err(bad());
    }
    Ok(&ext[EXTENSION_PREFIX..end])
}

// === impl Trailer ===

/// What a stream knows only at its end: the plaintext length, its MD5 (the S3 ETag of a
/// single-part object) and the client's checksum, if it sent one; plus the stream's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trailer {
    /// Plaintext length.
    pub plain_len: u64,
    /// MD5 of the plaintext.
    pub md5: [u8; 16],
    /// The client's checksum of the plaintext: algorithm and digest bytes.
    pub checksum: Option<(ChecksumAlgorithm, Vec<u8>)>,
    /// The stream's header.
    pub header: StreamHeader,
}

impl Trailer {
    /// `len(8) ‖ md5(16) ‖ algorithm id(1) ‖ digest len(1) ‖ digest, zero-padded(32) ‖
    /// header(32) ‖ 0(6)`.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(TRAILER_PLAIN_LEN + TAG_LEN);
        out.extend_from_slice(&self.plain_len.to_be_bytes());
        out.extend_from_slice(&self.md5);
        let mut digest = [0u8; MAX_CHECKSUM_LEN];
        match &self.checksum {
            Some((algo, bytes)) => {
                // Invariant: digests come from `Hasher::finalize` or `decode_digest`, both of the
                // algorithm's length.
                assert_eq!(bytes.len(), algo.digest_len(), "digest length matches its algorithm");
                out.push(algo.id());
                out.push(bytes.len() as u8);
                digest[..bytes.len()].copy_from_slice(bytes);
            }
            None => out.extend_from_slice(&[0, 0]),
        }
        out.extend_from_slice(&digest);
        out.extend_from_slice(&self.header.encode());
        out.resize(TRAILER_PLAIN_LEN, 0);
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.len() != TRAILER_PLAIN_LEN || bytes[90..] != [0u8; 6] {
            return Err(CryptoError::Format("bad trailer"));
        }
        let mut len = [0u8; 8];
        len.copy_from_slice(&bytes[..8]);
        let mut md5 = [0u8; 16];
        md5.copy_from_slice(&bytes[8..24]);
        let checksum = match (bytes[24], usize::from(bytes[25])) {
            (0, 0) => None,
            (id, n) => {
                let algo = ChecksumAlgorithm::from_id(id).ok_or(CryptoError::Format("unknown checksum algorithm"))?;
                if n != algo.digest_len() {
                    return Err(CryptoError::Format("bad checksum length"));
                }
                Some((algo, bytes[26..26 + n].to_vec()))
            }
        };
        let header = StreamHeader::decode(&bytes[58..90])?;
        Ok(Self {
            plain_len: u64::from_be_bytes(len),
            md5,
            checksum,
            header,
        })
    }
}

fn trailer_aad(part: u32) -> Vec<u8> {
    let mut aad = label::TRAILER_AAD.to_vec();
    aad.extend_from_slice(&part.to_be_bytes());
    aad
}

/// Seals the trailer of part `part`: `nonce(12) ‖ ciphertext(96) ‖ tag(16)`.
pub fn seal_trailer(dek: &Key256, part: u32, trailer: &Trailer) -> Vec<u8> {
    let nonce = random_nonce();
    let mut buf = trailer.encode();
    AeadKey::new(&trailer_key(dek, part)).seal(nonce, &trailer_aad(part), &mut buf);
    let mut out = nonce.to_vec();
    out.extend_from_slice(&buf);
    out
}

/// Opens the trailer of part `part`.
pub fn open_trailer(dek: &Key256, part: u32, sealed: &[u8]) -> Result<Trailer, CryptoError> {
    if sealed.len() != TRAILER_LEN {
        return Err(CryptoError::Format("bad trailer length"));
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&sealed[..NONCE_LEN]);
    let mut buf = sealed[NONCE_LEN..].to_vec();
    let plain = AeadKey::new(&trailer_key(dek, part)).open(nonce, &trailer_aad(part), &mut buf)?;
    Trailer::decode(plain)
}

// === impl StreamSealer / StreamOpener ===

/// Seals one stream's segments in order.
pub struct StreamSealer {
    key: AeadKey,
    header: StreamHeader,
    next_index: u32,
}

impl StreamSealer {
    /// A sealer for a new stream of part `part` of the object whose data key is `dek`.
    pub fn new(dek: &Key256, part: u32, header: StreamHeader) -> Self {
        Self {
            key: AeadKey::new(&stream_key(dek, &header.salt, part)),
            header,
            next_index: 0,
        }
    }

    /// The stream's header.
    pub fn header(&self) -> StreamHeader {
        self.header
    }

    /// Seals the next segment in place: `buf` holds at most one segment of plaintext and ends up
    /// holding ciphertext ‖ tag. `last` must be set on the final segment only.
    pub fn seal_segment(&mut self, buf: &mut Vec<u8>, last: bool) {
        // Invariant: `EncryptBody` fills at most one segment, and objects are at most 5 GiB (far
        // below 2^32 segments of the smallest size).
        assert!(
            buf.len() as u64 <= self.header.layout().segment_size(),
            "at most one segment"
        );
        assert!(
            u64::from(self.next_index) < MAX_SEGMENTS,
            "segment index fits the nonce"
        );
        let nonce = self.header.segment_nonce(self.next_index, last);
        self.key.seal(nonce, &self.header.encode(), buf);
        self.next_index += 1;
    }
}

/// Opens any segment of one stream (random access, for ranges).
pub struct StreamOpener {
    key: AeadKey,
    header: StreamHeader,
}

impl StreamOpener {
    /// An opener for the stream of part `part` with header `header`.
    pub fn new(dek: &Key256, part: u32, header: StreamHeader) -> Self {
        Self {
            key: AeadKey::new(&stream_key(dek, &header.salt, part)),
            header,
        }
    }

    /// Opens segment `index` in place (`buf` = ciphertext ‖ tag); `last` says whether the
    /// caller expects it to be the stream's final segment.
    pub fn open_segment<'a>(&self, index: u64, last: bool, buf: &'a mut [u8]) -> Result<&'a mut [u8], CryptoError> {
        let index = u32::try_from(index).map_err(|_| CryptoError::Decrypt)?;
        self.key
            .open(self.header.segment_nonce(index, last), &self.header.encode(), buf)
    }
}

/// Seals a whole plaintext held in memory (tests, test vectors).
pub fn seal_all(
    dek: &Key256,
    part: u32,
    header: StreamHeader,
    extension: &[u8],
    plain: &[u8],
    trailer: &Trailer,
) -> Vec<u8> {
    // Invariant: callers (tests, vector generators) pass the extension the header announces.
    assert_eq!(
        extension.len(),
        header.extension_len(),
        "the header announces the extension"
    );
    let layout = header.layout();
    let mut sealer = StreamSealer::new(dek, part, header);
    let mut out = header.encode().to_vec();
    out.extend_from_slice(extension);
    let n = layout.segment_count(plain.len() as u64) as usize;
    let seg = layout.segment_size() as usize;
    for i in 0..n {
        let mut buf = plain[(i * seg).min(plain.len())..((i + 1) * seg).min(plain.len())].to_vec();
        sealer.seal_segment(&mut buf, i + 1 == n);
        out.extend_from_slice(&buf);
    }
    out.extend_from_slice(&seal_trailer(dek, part, trailer));
    out
}

/// Opens a whole stored stream held in memory; checks every segment, the trailer, and that the
/// trailer's length and header match the stream's. The extension, if any, is not interpreted.
/// For tests, test vectors and fuzzing; reads in the proxy stream instead
/// (`object::body::DecryptBody`). Allocates at most the plaintext length the input's own length
/// implies.
pub fn open_all(dek: &Key256, part: u32, stored: &[u8]) -> Result<(Vec<u8>, Trailer), CryptoError> {
    let header = StreamHeader::decode(stored)?;
    let layout = header.layout();
    let plain_len = layout
        .plain_len(stored.len() as u64)
        .ok_or(CryptoError::Format("impossible stored length"))?;
    let trailer = open_trailer(dek, part, &stored[stored.len() - TRAILER_LEN..])?;
    if trailer.plain_len != plain_len || trailer.header != header {
        return Err(CryptoError::Decrypt);
    }
    let opener = StreamOpener::new(dek, part, header);
    let n = layout.segment_count(plain_len);
    let mut out = Vec::with_capacity(plain_len as usize);
    let mut pos = HEADER_LEN + header.extension_len();
    for i in 0..n {
        let len = layout.stored_segment_len(plain_len, i) as usize;
        let mut buf = stored[pos..pos + len].to_vec();
        out.extend_from_slice(opener.open_segment(i, i + 1 == n, &mut buf)?);
        pos += len;
    }
    Ok((out, trailer))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn trailer_for(plain: &[u8], header: StreamHeader) -> Trailer {
        Trailer {
            plain_len: plain.len() as u64,
            md5: [7; 16],
            checksum: Some((ChecksumAlgorithm::Crc32, vec![1, 2, 3, 4])),
            header,
        }
    }

    fn sample(len: usize) -> (Key256, Vec<u8>, Vec<u8>) {
        let key = Key256::random();
        let plain: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let header = StreamHeader::random(12);
        let stored = seal_all(&key, 0, header, &[], &plain, &trailer_for(&plain, header));
        (key, plain, stored)
    }

    #[test]
    fn round_trips_at_segment_boundaries() {
        for len in [0, 1, 4095, 4096, 4097, 8192, 3 * 4096 + 5] {
            let (key, plain, stored) = sample(len);
            assert_eq!(stored.len() as u64, Layout::new(12).stored_len(len as u64));
            let (out, trailer) = open_all(&key, 0, &stored).expect("opens");
            assert_eq!(out, plain);
            assert_eq!(
                trailer,
                trailer_for(&plain, StreamHeader::decode(&stored).expect("header"))
            );
        }
    }

    #[test]
    fn every_flipped_byte_fails() {
        let (key, _, stored) = sample(2 * 4096 + 100);
        for pos in (0..stored.len()).step_by(97).chain([0, 4, 15, 16, stored.len() - 1]) {
            let mut bad = stored.clone();
            bad[pos] ^= 0x01;
            assert!(open_all(&key, 0, &bad).is_err(), "flip at {pos} must fail");
        }
    }

    #[test]
    fn wrong_key_fails() {
        let (_, _, stored) = sample(5000);
        assert_eq!(
            open_all(&Key256::random(), 0, &stored).unwrap_err(),
            CryptoError::Decrypt
        );
    }

    #[test]
    fn truncation_fails() {
        let (key, _, stored) = sample(3 * 4096);
        let layout = Layout::new(12);
        // Drop the last segment but keep the trailer.
        let seg = layout.stored_segment_len(3 * 4096, 2) as usize;
        let cut_at = HEADER_LEN + 2 * seg;
        let mut truncated = stored[..cut_at].to_vec();
        truncated.extend_from_slice(&stored[stored.len() - TRAILER_LEN..]);
        assert!(open_all(&key, 0, &truncated).is_err());
        // Drop the trailer.
        assert!(open_all(&key, 0, &stored[..stored.len() - TRAILER_LEN]).is_err());
    }

    #[test]
    fn reordered_segments_fail() {
        let (key, _, stored) = sample(3 * 4096);
        let seg = 4096 + TAG_LEN;
        let mut swapped = stored.clone();
        let (a, b) = (HEADER_LEN, HEADER_LEN + seg);
        swapped[a..a + seg].copy_from_slice(&stored[b..b + seg]);
        swapped[b..b + seg].copy_from_slice(&stored[a..a + seg]);
        assert_eq!(open_all(&key, 0, &swapped).unwrap_err(), CryptoError::Decrypt);
    }

    #[test]
    fn spliced_segment_from_another_stream_fails() {
        let key = Key256::random();
        let plain = vec![9u8; 2 * 4096];
        let (h1, h2) = (StreamHeader::random(12), StreamHeader::random(12));
        let one = seal_all(&key, 0, h1, &[], &plain, &trailer_for(&plain, h1));
        let two = seal_all(&key, 0, h2, &[], &plain, &trailer_for(&plain, h2));
        let mut spliced = one.clone();
        let seg = 4096 + TAG_LEN;
        spliced[HEADER_LEN..HEADER_LEN + seg].copy_from_slice(&two[HEADER_LEN..HEADER_LEN + seg]);
        assert_eq!(open_all(&key, 0, &spliced).unwrap_err(), CryptoError::Decrypt);
    }

    #[test]
    fn header_rejects_bad_fields() {
        let good = StreamHeader::random(16).encode();
        assert!(StreamHeader::decode(&good).is_ok());
        for (pos, val) in [(0, b'X'), (3, 2), (4, 30), (31, 1)] {
            let mut bad = good;
            bad[pos] = val;
            assert!(StreamHeader::decode(&bad).is_err(), "byte {pos}");
        }
        assert!(StreamHeader::decode(&good[..10]).is_err());
    }

    #[test]
    fn extensions_round_trip_and_are_recognisable() {
        let key = Key256::random();
        for len in [0usize, 1, 4095, 4096, 20_000] {
            let plain = vec![3u8; len];
            let record = vec![0xAA; 700];
            let ext = build_extension(&record, len as u64, 12);
            assert_eq!(parse_extension(&ext).expect("parses"), &record[..]);
            let header = StreamHeader::random(12).with_extension(ext.len());
            let decoded = StreamHeader::decode(&header.encode()).expect("decodes");
            assert_eq!(decoded.extension_len(), ext.len());
            let stored = seal_all(&key, 0, header, &ext, &plain, &trailer_for(&plain, header));
            assert_eq!(stored.len() as u64, header.layout().stored_len(len as u64));
            assert_eq!(open_all(&key, 0, &stored).expect("opens").0, plain);
            // The stored length of an extended object is one no plain object has.
            assert_eq!(Layout::new(12).plain_len(stored.len() as u64), None, "len {len}");
            // Must-fail twins: a changed extension length fails every segment; padding must be 0.
            let mut bad = stored.clone();
            bad[7] ^= 1;
            assert!(open_all(&key, 0, &bad).is_err());
            let mut padded = ext.clone();
            if padded.len() > 4 + record.len() {
                *padded.last_mut().expect("non-empty") = 1;
                assert!(parse_extension(&padded).is_err());
            }
        }
        assert!(parse_extension(&[0, 0, 1, 0, 5]).is_err());
    }

    proptest! {
        #[test]
        fn plain_len_inverts_stored_len(plain in 0u64..(1 << 40), log2 in 12u8..=24) {
            let layout = Layout::new(log2);
            prop_assert_eq!(layout.plain_len(layout.stored_len(plain)), Some(plain));
        }

        #[test]
        fn impossible_stored_lengths_are_refused(stored in 0u64..(1 << 30)) {
            let layout = Layout::new(16);
            if let Some(p) = layout.plain_len(stored) {
                prop_assert_eq!(layout.stored_len(p), stored);
            }
        }

        #[test]
        fn locate_covers_exactly_the_range(plain_len in 1u64..(1 << 24), a in any::<u64>(), b in any::<u64>(), log2 in 12u8..=16) {
            let layout = Layout::new(log2);
            let (mut a, mut b) = (a % plain_len, b % plain_len);
            if a > b { std::mem::swap(&mut a, &mut b); }
            let range = a..b + 1;
            let span = layout.locate(plain_len, range.clone()).expect("range within the plaintext");
            let seg = layout.segment_size();
            // The segments hold the range, and no more segments than needed.
            prop_assert!(span.first_segment * seg <= range.start);
            prop_assert!((span.last_segment + 1) * seg >= range.end);
            prop_assert!(span.last_segment * seg < range.end);
            prop_assert_eq!(span.skip, range.start - span.first_segment * seg);
            prop_assert_eq!(span.len, range.end - range.start);
            // The stored range is exactly those segments' bytes.
            let expect: u64 = (span.first_segment..=span.last_segment).map(|i| layout.stored_segment_len(plain_len, i)).sum();
            prop_assert_eq!(span.stored.end - span.stored.start, expect);
            prop_assert!(span.stored.end <= layout.trailer_range(plain_len).start);
        }

        #[test]
        fn locate_refuses_empty_and_outside_ranges(plain_len in 0u64..(1 << 24), a in any::<u64>()) {
            let layout = Layout::new(12);
            prop_assert!(layout.locate(plain_len, a..a).is_none());
            prop_assert!(layout.locate(plain_len, a.min(plain_len)..plain_len.saturating_add(1)).is_none());
        }

        #[test]
        fn ranged_open_matches_plaintext(len in 1usize..20_000, a in any::<usize>(), b in any::<usize>()) {
            let (key, plain, stored) = sample(len);
            let (mut a, mut b) = (a % len, b % len);
            if a > b { std::mem::swap(&mut a, &mut b); }
            let layout = Layout::new(12);
            let span = layout.locate(len as u64, a as u64..b as u64 + 1).expect("range within the plaintext");
            let opener = StreamOpener::new(&key, 0, StreamHeader::decode(&stored).unwrap());
            let n = layout.segment_count(len as u64);
            let mut out = Vec::new();
            let mut pos = span.stored.start as usize;
            for i in span.first_segment..=span.last_segment {
                let l = layout.stored_segment_len(len as u64, i) as usize;
                let mut buf = stored[pos..pos + l].to_vec();
                out.extend_from_slice(opener.open_segment(i, i + 1 == n, &mut buf).unwrap());
                pos += l;
            }
            let got = &out[span.skip as usize..(span.skip + span.len) as usize];
            prop_assert_eq!(got, &plain[a..=b]);
        }
    }
}
