//! Secret values: zeroized on drop, redacted in `Debug`, read only through `expose()`.
//!
//! Nothing in this module is `Copy`, `PartialEq` or `Display`: a secret can't be printed, logged
//! or compared in variable time by accident.

use std::fmt;

use zeroize::{Zeroize, Zeroizing};

/// A secret string (client secret keys, store credentials, tokens).
#[derive(Clone)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    /// Wraps a secret.
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }

    /// The secret itself. Callers must not log or persist it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl<'de> serde::Deserialize<'de> for SecretString {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::new)
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(<redacted>)")
    }
}

/// A 256-bit secret key (root key, KEK, DEK, derived keys).
#[derive(Clone, Zeroize)]
#[zeroize(drop)]
pub struct Key256([u8; 32]);

impl Key256 {
    /// Length in bytes.
    pub const LEN: usize = 32;

    /// Wraps key bytes; the caller's copy should be zeroized by the caller.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Builds a key from a slice of exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let arr: [u8; 32] = bytes.try_into().ok()?;
        Some(Self(arr))
    }

    /// A fresh random key from the OS CSPRNG.
    pub fn random() -> Self {
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes);
        Self(bytes)
    }

    /// The key bytes. Callers must not log or persist them unsealed.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Key256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key256(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let s = SecretString::new("hunter2-very-secret".into());
        assert!(!format!("{s:?}").contains("hunter2"));
        let k = Key256::from_bytes([0xAB; 32]);
        let dbg = format!("{k:?}");
        assert!(!dbg.contains("171") && !dbg.to_lowercase().contains("ab"), "{dbg}");
    }
}
