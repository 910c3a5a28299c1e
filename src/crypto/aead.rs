//! The one AES-256-GCM primitive everything in `crypto` seals with (`ring`).

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

use super::CryptoError;
use super::format::{NONCE_LEN, TAG_LEN};
use crate::secret::Key256;

/// An expanded AES-256-GCM key. `ring` keeps the expanded schedule; it is not `Debug`.
pub(crate) struct AeadKey(LessSafeKey);

impl AeadKey {
    pub(crate) fn new(key: &Key256) -> Self {
        // Invariant: AES_256_GCM takes exactly 32 key bytes, which `Key256` guarantees.
        let unbound = UnboundKey::new(&AES_256_GCM, key.expose()).expect("32-byte key for AES-256-GCM");
        Self(LessSafeKey::new(unbound))
    }

    /// Seals `buf` in place and appends the tag.
    pub(crate) fn seal(&self, nonce: [u8; NONCE_LEN], aad: &[u8], buf: &mut Vec<u8>) {
        // Invariant: ring fails only for inputs over 2^36 bytes; segments and records are tiny.
        let tag = self
            .0
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), buf.as_mut_slice())
            .expect("AES-GCM input far below its length limit");
        buf.extend_from_slice(tag.as_ref());
    }

    /// Opens `buf` (ciphertext ‖ tag) in place; returns the plaintext prefix of `buf`.
    pub(crate) fn open<'a>(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        buf: &'a mut [u8],
    ) -> Result<&'a mut [u8], CryptoError> {
        if buf.len() < TAG_LEN {
            return Err(CryptoError::Decrypt);
        }
        self.0
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), buf)
            .map_err(|_| CryptoError::Decrypt)
    }
}

/// A fresh random nonce, for keys that seal more than once under random nonces (KEKs, root key).
pub(crate) fn random_nonce() -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    rand::fill(&mut n);
    n
}
