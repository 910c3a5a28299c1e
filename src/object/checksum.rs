//! The digests of a plaintext upload: MD5 (the S3 ETag) and the client checksum algorithms S3
//! knows (`x-amz-checksum-*`). Independent of the S3 front end, so the object layer and the
//! offline tools need no S3 wire code.

use md5::Digest as _;

use crate::crypto::format::ChecksumAlgorithm;

/// A running hash of one of the client checksum algorithms.
pub enum Hasher {
    /// CRC-32 (ISO-HDLC).
    Crc32(crc_fast::Digest),
    /// CRC-32C (Castagnoli).
    Crc32c(crc_fast::Digest),
    /// CRC-64/NVME.
    Crc64Nvme(crc_fast::Digest),
    /// SHA-1.
    Sha1(sha1::Sha1),
    /// SHA-256.
    Sha256(sha2::Sha256),
}

impl Hasher {
    /// A fresh hasher for `algo`.
    pub fn new(algo: ChecksumAlgorithm) -> Self {
        use crc_fast::CrcAlgorithm as Crc;
        match algo {
            ChecksumAlgorithm::Crc32 => Self::Crc32(crc_fast::Digest::new(Crc::Crc32IsoHdlc)),
            ChecksumAlgorithm::Crc32c => Self::Crc32c(crc_fast::Digest::new(Crc::Crc32Iscsi)),
            ChecksumAlgorithm::Crc64Nvme => Self::Crc64Nvme(crc_fast::Digest::new(Crc::Crc64Nvme)),
            ChecksumAlgorithm::Sha1 => Self::Sha1(sha1::Sha1::default()),
            ChecksumAlgorithm::Sha256 => Self::Sha256(sha2::Sha256::default()),
        }
    }

    /// Feeds `data`.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Self::Crc32(h) | Self::Crc32c(h) | Self::Crc64Nvme(h) => h.update(data),
            Self::Sha1(h) => sha1::Digest::update(h, data),
            Self::Sha256(h) => sha2::Digest::update(h, data),
        }
    }

    /// The digest, big-endian for the CRCs (as S3 encodes them).
    pub fn finalize(self) -> Vec<u8> {
        match self {
            // CRC-32 variants are computed in a u64; the value fits the low 32 bits.
            Self::Crc32(h) | Self::Crc32c(h) => (h.finalize() as u32).to_be_bytes().to_vec(),
            Self::Crc64Nvme(h) => h.finalize().to_be_bytes().to_vec(),
            Self::Sha1(h) => sha1::Digest::finalize(h).to_vec(),
            Self::Sha256(h) => sha2::Digest::finalize(h).to_vec(),
        }
    }

    /// The digest of `data` in one call.
    pub fn digest(algo: ChecksumAlgorithm, data: &[u8]) -> Vec<u8> {
        let mut h = Self::new(algo);
        h.update(data);
        h.finalize()
    }
}

/// A running MD5 of the plaintext: the single-part ETag.
#[derive(Default)]
pub struct Md5(md5::Md5);

impl Md5 {
    /// Feeds `data`.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The digest.
    pub fn finalize(self) -> [u8; 16] {
        self.0.finalize().into()
    }
}

/// The name of the header or trailer carrying a checksum (`x-amz-checksum-crc32`, …).
pub fn checksum_header(algo: ChecksumAlgorithm) -> String {
    format!("x-amz-checksum-{}", algo.s3_name().to_lowercase())
}

/// Decodes a base64 digest of `algo`'s length.
pub fn decode_digest(algo: ChecksumAlgorithm, value: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD.decode(value.trim()).ok()?;
    (bytes.len() == algo.digest_len()).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Published check values ("123456789") and FIPS 180 vectors ("abc").
    #[test]
    fn digests_match_published_vectors() {
        let hex = |algo, data: &[u8]| hex::encode(Hasher::digest(algo, data));
        assert_eq!(hex(ChecksumAlgorithm::Crc32, b"123456789"), "cbf43926");
        assert_eq!(hex(ChecksumAlgorithm::Crc32c, b"123456789"), "e3069283");
        assert_eq!(hex(ChecksumAlgorithm::Crc64Nvme, b"123456789"), "ae8b14860a799888");
        assert_eq!(
            hex(ChecksumAlgorithm::Sha1, b"abc"),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hex(ChecksumAlgorithm::Sha256, b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let mut md5 = Md5::default();
        md5.update(b"a");
        md5.update(b"bc");
        assert_eq!(hex::encode(md5.finalize()), "900150983cd24fb0d6963f7d28e17f72");
        // Streaming in pieces gives the one-shot digest.
        for algo in ChecksumAlgorithm::ALL {
            let mut h = Hasher::new(algo);
            h.update(b"1234");
            h.update(b"56789");
            assert_eq!(h.finalize(), Hasher::digest(algo, b"123456789"), "{algo:?}");
        }
    }

    #[test]
    fn digests_of_the_wrong_length_are_refused() {
        assert!(decode_digest(ChecksumAlgorithm::Crc32, "AAAAAA==").is_some());
        assert!(decode_digest(ChecksumAlgorithm::Crc32, "AAAAAAAA").is_none());
        assert!(decode_digest(ChecksumAlgorithm::Sha256, "not base64!").is_none());
    }
}
