//! The manifest of a multipart object: the authenticated part table, written once, when the
//! upload completes, at the very end of the stored object.
//!
//! A multipart object is stored as `stream(p_1) ‖ … ‖ stream(p_n) ‖ sealed manifest ‖ u32be(len)`:
//! each part is its own stream (header, segments, trailer) under keys derived from the DEK and
//! its part number, so parts are sealed independently, in parallel, by any proxy process. What
//! no single part can know (which parts the object has, in which order, their lengths, the
//! total length, the object's headers) is sealed in the manifest under the manifest key. A part
//! dropped, duplicated, reordered, cut short or taken from another upload changes the stored
//! layout the manifest describes, or fails its own stream's authentication.
//!
//! Sealed manifest = `nonce(12) ‖ AES-256-GCM(manifest key, nonce, M, "escrow-proxy manifest")`
//! with `M = 0x01 ‖ u32be(n) ‖ u32be(R) ‖ record JSON (R bytes) ‖ n × entry` and
//! `entry = u32be(part number) ‖ u64be(plaintext length) ‖ MD5(16) ‖ stream header(32)`.

use std::ops::Range;

use md5::{Digest as _, Md5};

use super::CryptoError;
use super::aead::{AeadKey, random_nonce};
use super::envelope::{ObjectRecord, bound, manifest_key};
use super::format::{HEADER_LEN, NONCE_LEN, TAG_LEN, label};
use super::segment::StreamHeader;
use crate::secret::Key256;

/// Version byte of the manifest plaintext.
const MANIFEST_VERSION: u8 = 1;
/// The length suffix after the sealed manifest.
pub const LEN_SUFFIX: usize = 4;
/// Highest part number S3 allows.
pub const MAX_PART_NUMBER: u32 = 10_000;
/// Bytes per part entry.
const ENTRY_LEN: usize = 4 + 8 + 16 + HEADER_LEN;
/// Largest sealed manifest a reader accepts: 10,000 entries plus a generous record.
pub const MAX_SEALED_LEN: usize = NONCE_LEN + 9 + MAX_PART_NUMBER as usize * ENTRY_LEN + (64 << 10) + TAG_LEN;

/// One part of a completed multipart object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartEntry {
    /// The part number the client uploaded it as (1..=10000); its keys derive from it.
    pub number: u32,
    /// Plaintext length of the part.
    pub plain_len: u64,
    /// MD5 of the part's plaintext (the part's S3 ETag).
    pub md5: [u8; 16],
    /// The part stream's header.
    pub header: StreamHeader,
}

impl PartEntry {
    /// Stored length of the part's stream.
    pub fn stored_len(&self) -> u64 {
        self.header.layout().stored_len(self.plain_len)
    }
}

/// Where a plaintext range lies in one part: which part, where the part's stream starts in the
/// stored object, and the plaintext range within the part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartSlice {
    /// Index into [`Manifest::parts`].
    pub index: usize,
    /// Stored offset of the part's stream.
    pub stored_start: u64,
    /// Plaintext range within the part.
    pub range: Range<u64>,
}

/// The part table of a multipart object, with its record (headers, user metadata, total size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The parts, in ascending part-number order.
    pub parts: Vec<PartEntry>,
    /// The object's record; `record.size` is the total plaintext length.
    pub record: ObjectRecord,
}

impl Manifest {
    /// The S3 ETag of the object: MD5 of the concatenated part MD5s, `-`, the part count.
    pub fn etag(&self) -> String {
        let mut md5 = Md5::new();
        for part in &self.parts {
            md5.update(part.md5);
        }
        format!("{}-{}", hex::encode(md5.finalize()), self.parts.len())
    }

    /// Stored length of all part streams (everything before the manifest).
    pub fn parts_stored_len(&self) -> u64 {
        self.parts.iter().map(PartEntry::stored_len).sum()
    }

    /// The plaintext offset and stored offset of every part's start.
    fn offsets(&self) -> impl Iterator<Item = (u64, u64, &PartEntry)> {
        self.parts.iter().scan((0u64, 0u64), |at, part| {
            let here = *at;
            at.0 += part.plain_len;
            at.1 += part.stored_len();
            Some((here.0, here.1, part))
        })
    }

    /// The plaintext range of part index `index` within the object, and its stream's stored start.
    pub fn part_range(&self, index: usize) -> (Range<u64>, u64) {
        // Invariant: callers pass an index they found in `parts` (by `position` or `locate`).
        let (plain, stored, part) = self.offsets().nth(index).expect("part index in range");
        (plain..plain + part.plain_len, stored)
    }

    /// The parts holding the non-empty plaintext range `range` (within the object), in order.
    pub fn locate(&self, range: Range<u64>) -> Vec<PartSlice> {
        self.offsets()
            .enumerate()
            .filter_map(|(index, (plain, stored, part))| {
                let start = range.start.max(plain);
                let end = range.end.min(plain + part.plain_len);
                (start < end).then(|| PartSlice {
                    index,
                    stored_start: stored,
                    range: start - plain..end - plain,
                })
            })
            .collect()
    }

    /// `sealed manifest ‖ u32be(its length)`, to append after the last part; bound to `binding`
    /// (the object's wrapped DEK).
    pub fn seal(&self, dek: &Key256, binding: &[u8]) -> Vec<u8> {
        // Invariant: the record holds only strings and integers, which always serialize.
        let record = serde_json::to_vec(&self.record).expect("record serializes");
        let mut buf = Vec::with_capacity(9 + record.len() + self.parts.len() * ENTRY_LEN + TAG_LEN);
        buf.push(MANIFEST_VERSION);
        buf.extend_from_slice(&len32(self.parts.len()));
        buf.extend_from_slice(&len32(record.len()));
        buf.extend_from_slice(&record);
        for part in &self.parts {
            buf.extend_from_slice(&part.number.to_be_bytes());
            buf.extend_from_slice(&part.plain_len.to_be_bytes());
            buf.extend_from_slice(&part.md5);
            buf.extend_from_slice(&part.header.encode());
        }
        let nonce = random_nonce();
        AeadKey::new(&manifest_key(dek)).seal(nonce, &bound(label::MANIFEST_AAD, binding), &mut buf);
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        let sealed_len = out.len();
        out.extend_from_slice(&len32(sealed_len));
        out
    }

    /// The length of the tail (`sealed ‖ u32be(len)`) whose last bytes are `suffix`.
    pub fn tail_len(suffix: &[u8]) -> Result<usize, CryptoError> {
        let at = suffix
            .len()
            .checked_sub(LEN_SUFFIX)
            .ok_or(CryptoError::Format("short manifest"))?;
        let mut len = [0u8; LEN_SUFFIX];
        len.copy_from_slice(&suffix[at..]);
        let sealed = u32::from_be_bytes(len) as usize;
        if !(NONCE_LEN + TAG_LEN..=MAX_SEALED_LEN).contains(&sealed) {
            return Err(CryptoError::Format("bad manifest length"));
        }
        Ok(sealed + LEN_SUFFIX)
    }

    /// Opens the tail (`sealed ‖ u32be(len)`, exactly) of an object stored `stored_len` bytes
    /// long, sealed with `binding`, and checks that the part streams it describes fill the rest
    /// of the object.
    pub fn open(dek: &Key256, binding: &[u8], tail: &[u8], stored_len: u64) -> Result<Self, CryptoError> {
        if Self::tail_len(tail)? != tail.len() {
            return Err(CryptoError::Format("bad manifest length"));
        }
        let sealed = &tail[..tail.len() - LEN_SUFFIX];
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&sealed[..NONCE_LEN]);
        let mut buf = sealed[NONCE_LEN..].to_vec();
        let plain = AeadKey::new(&manifest_key(dek)).open(nonce, &bound(label::MANIFEST_AAD, binding), &mut buf)?;
        let manifest = Self::decode(plain)?;
        // Checked: the parts' stored lengths are bounded one by one (`decode`), not their sum.
        let parts_len = manifest
            .parts
            .iter()
            .try_fold(0u64, |sum, p| sum.checked_add(p.stored_len()));
        if parts_len.and_then(|l| l.checked_add(tail.len() as u64)) != Some(stored_len) {
            return Err(CryptoError::Decrypt);
        }
        Ok(manifest)
    }

    fn decode(m: &[u8]) -> Result<Self, CryptoError> {
        let bad = CryptoError::Format("bad manifest");
        let mut r = Reader(m);
        if r.take(1)?[0] != MANIFEST_VERSION {
            return Err(CryptoError::Format("unknown manifest version"));
        }
        let count = r.u32()? as usize;
        let record_len = r.u32()? as usize;
        let record: ObjectRecord = serde_json::from_slice(r.take(record_len)?).map_err(|_| bad.clone())?;
        if count == 0 || count > MAX_PART_NUMBER as usize || r.0.len() != count * ENTRY_LEN {
            return Err(bad);
        }
        let mut parts: Vec<PartEntry> = Vec::with_capacity(count);
        for _ in 0..count {
            let number = r.u32()?;
            let plain_len = r.u64()?;
            let mut md5 = [0u8; 16];
            md5.copy_from_slice(r.take(16)?);
            let header = StreamHeader::decode(r.take(HEADER_LEN)?)?;
            let ascending = parts.last().is_none_or(|p| p.number < number);
            // A part the format cannot hold (more segments than the nonce counts) would also
            // overflow the stored-length arithmetic.
            let fits = header.layout().fits(plain_len);
            if !ascending || !fits || !(1..=MAX_PART_NUMBER).contains(&number) || header.extension_len() != 0 {
                return Err(bad);
            }
            parts.push(PartEntry {
                number,
                plain_len,
                md5,
                header,
            });
        }
        let total = parts.iter().try_fold(0u64, |sum, p| sum.checked_add(p.plain_len));
        if total != Some(record.size) {
            return Err(bad);
        }
        Ok(Self { parts, record })
    }
}

fn len32(n: usize) -> [u8; 4] {
    // Invariant: manifests and records are far below 4 GiB (MAX_SEALED_LEN).
    u32::try_from(n).expect("length fits u32").to_be_bytes()
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CryptoError> {
        if self.0.len() < n {
            return Err(CryptoError::Format("short manifest"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, CryptoError> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_be_bytes(b))
    }

    fn u64(&mut self) -> Result<u64, CryptoError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::format::DEFAULT_SEGMENT_LOG2;

    fn manifest(sizes: &[(u32, u64)]) -> Manifest {
        Manifest {
            parts: sizes
                .iter()
                .map(|&(number, plain_len)| PartEntry {
                    number,
                    plain_len,
                    md5: [number as u8; 16],
                    header: StreamHeader::random(DEFAULT_SEGMENT_LOG2),
                })
                .collect(),
            record: ObjectRecord {
                size: sizes.iter().map(|s| s.1).sum(),
                content_type: Some("text/plain".into()),
                ..Default::default()
            },
        }
    }

    #[test]
    fn seals_opens_and_binds_the_stored_length() {
        let dek = Key256::random();
        let m = manifest(&[(1, 5 << 20), (2, 5 << 20), (4, 17)]);
        let tail = m.seal(&dek, b"wrap");
        let stored = m.parts_stored_len() + tail.len() as u64;
        assert_eq!(Manifest::tail_len(&tail[tail.len() - 10..]).unwrap(), tail.len());
        assert_eq!(Manifest::open(&dek, b"wrap", &tail, stored).unwrap(), m);
        // Must-fail twins: a part cut off (shorter object), another key or binding (a copy's
        // manifest), any flipped byte.
        assert_eq!(
            Manifest::open(&dek, b"wrap", &tail, stored - m.parts[2].stored_len()),
            Err(CryptoError::Decrypt)
        );
        assert!(Manifest::open(&Key256::random(), b"wrap", &tail, stored).is_err());
        assert!(Manifest::open(&dek, b"other wrap", &tail, stored).is_err());
        for i in 0..tail.len() - LEN_SUFFIX {
            let mut bad = tail.clone();
            bad[i] ^= 1;
            assert!(Manifest::open(&dek, b"wrap", &bad, stored).is_err(), "byte {i}");
        }
    }

    #[test]
    fn etag_is_md5_of_part_md5s() {
        let m = manifest(&[(1, 1), (2, 1)]);
        let mut concat = Vec::new();
        concat.extend_from_slice(&[1u8; 16]);
        concat.extend_from_slice(&[2u8; 16]);
        assert_eq!(m.etag(), format!("{}-2", hex::encode(Md5::digest(&concat))));
    }

    #[test]
    fn ranges_map_across_part_boundaries() {
        let m = manifest(&[(1, 10), (3, 20), (7, 5)]);
        let s1 = m.parts[0].stored_len();
        let slices = m.locate(5..32);
        assert_eq!(
            slices,
            vec![
                PartSlice {
                    index: 0,
                    stored_start: 0,
                    range: 5..10
                },
                PartSlice {
                    index: 1,
                    stored_start: s1,
                    range: 0..20
                },
                PartSlice {
                    index: 2,
                    stored_start: s1 + m.parts[1].stored_len(),
                    range: 0..2
                },
            ]
        );
        assert_eq!(m.part_range(1), (10..30, s1));
    }
}
