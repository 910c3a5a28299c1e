//! Pure cryptography: envelope keys, segmented AEAD, range math, the keyring.
//!
//! Nothing here does I/O, touches tokio or speaks HTTP, so every function can be read,
//! property-tested and fuzzed on its own. FORMAT.md at the repository root is the byte-level
//! specification of what these functions produce; the two must change together.
//!
//! # Invariants
//!
//! 1. Every object has its own data key (DEK), 256 random bits from the OS CSPRNG, used for that
//!    object only. The DEK leaves this process only wrapped by a key-encryption key (KEK).
//! 2. A wrapped DEK is bound (AEAD associated data) to the format version, the bucket, the object
//!    key and the KEK version: moving it to another object or relabelling its version fails.
//! 3. Content is sealed in segments with AES-256-GCM under a key derived (HKDF-SHA256) from the
//!    DEK, the stream header's random salt and the part number. The nonce is `prefix(7) ‖ segment index (u32 BE) ‖ last flag`, so a
//!    reordered, dropped, duplicated or truncated segment fails to open; the 32-byte stream header
//!    is the associated data of every segment, so header tampering fails too.
//! 4. A nonce never repeats under one key: each stream key is fresh (fresh DEK per object,
//!    distinct derivation per part) and the index increases within the stream.
//! 5. Every failure to authenticate is one opaque [`CryptoError::Decrypt`]: no partial plaintext
//!    is ever returned from a segment that failed.
//! 6. Secrets live in [`crate::secret::Key256`]: zeroized on drop, redacted in `Debug`.
//!
//! # Threat model
//!
//! The store (and anyone who reads or rewrites it) sees and may change every stored byte and
//! every stored metadata value. It must learn nothing about plaintext beyond its length (rounded
//! to nothing: lengths are exact) and object names, and every change it makes must be detected.
//! The keyring and root key are held at home and are trusted.

mod aead;
pub mod envelope;
pub mod format;
pub mod keyring;
pub mod layout;
pub mod manifest;
pub mod segment;

/// Everything that can go wrong in this module.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    /// Authentication failed: the data, its metadata or the key is not what was sealed.
    /// Deliberately opaque.
    #[error("decryption failed: data or metadata is corrupt, or was moved from another object")]
    Decrypt,
    /// The object names a KEK version this keyring does not have.
    #[error("unknown key version {0}")]
    UnknownKeyVersion(u32),
    /// The object's KEK version was destroyed (crypto-shredded): its objects can no longer be
    /// read by anyone.
    #[error("key version {0} is destroyed")]
    DestroyedKeyVersion(u32),
    /// The object's KEK version is disabled: unwraps are refused until it is enabled again.
    #[error("key version {0} is disabled")]
    DisabledKeyVersion(u32),
    /// Bytes that do not follow the format (bad magic, unknown version, bad lengths).
    #[error("malformed encrypted object: {0}")]
    Format(&'static str),
}
