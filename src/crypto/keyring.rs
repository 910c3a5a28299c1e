//! The keyring: versioned key-encryption keys (KEKs), exactly one active, sealed as a whole by a
//! root key that never leaves home.
//!
//! Sealed form (JSON): `{"format":1,"active":N,"keks":[{"version":N,"state":"active"|"decrypt"|
//! "retired","created":"RFC 3339","sealed":"base64"}]}` where `sealed` is
//! `nonce(12) ‖ AES-256-GCM(root, nonce, KEK, "escrow-proxy kek-seal" ‖ version (u32 BE))` and is
//! absent for a retired version (its key is destroyed).

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use super::CryptoError;
use super::aead::{AeadKey, random_nonce};
use super::format::{NONCE_LEN, label};
use crate::secret::Key256;

/// Version of the sealed keyring document.
const KEYRING_FORMAT: u32 = 1;

/// What a KEK version may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KekState {
    /// Wraps new DEKs, and unwraps.
    Active,
    /// Only unwraps (an older version after a rotation).
    Decrypt,
    /// Destroyed: objects under it can no longer be read.
    Retired,
}

/// One KEK version.
#[derive(Debug, Clone)]
pub struct KekVersion {
    /// Version number, from 1.
    pub version: u32,
    /// State.
    pub state: KekState,
    /// Creation time, RFC 3339.
    pub created: String,
    key: Option<Key256>,
}

/// The unsealed keyring. Debug shows versions and states, never key material.
#[derive(Debug, Clone)]
pub struct Keyring {
    active: u32,
    versions: BTreeMap<u32, KekVersion>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SealedKeyring {
    format: u32,
    active: u32,
    keks: Vec<SealedKek>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SealedKek {
    version: u32,
    state: KekState,
    created: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sealed: Option<String>,
}

impl Keyring {
    /// A new keyring with one random active KEK, version 1.
    pub fn generate(now_rfc3339: &str) -> Self {
        let mut ring = Self {
            active: 0,
            versions: BTreeMap::new(),
        };
        // Invariant: an empty keyring's next version is 1.
        ring.rotate(now_rfc3339).expect("the first version");
        ring
    }

    /// Adds a new random KEK and makes it active; the previous active version keeps decrypting.
    /// Returns the new version.
    pub fn rotate(&mut self, now_rfc3339: &str) -> Result<u32, CryptoError> {
        // A keyring whose highest version is u32::MAX (only a damaged or forged file has one)
        // has no next version: an error, never a wrap to 0.
        let version = self
            .versions
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0)
            .checked_add(1)
            .ok_or(CryptoError::Format("the keyring has no next key version"))?;
        if let Some(old) = self.versions.get_mut(&self.active) {
            old.state = KekState::Decrypt;
        }
        self.versions.insert(
            version,
            KekVersion {
                version,
                state: KekState::Active,
                created: now_rfc3339.to_string(),
                key: Some(Key256::random()),
            },
        );
        self.active = version;
        Ok(version)
    }

    /// The active version and its key, for wrapping new DEKs.
    pub fn active(&self) -> (u32, &Key256) {
        let kek = &self.versions[&self.active];
        // Invariant: the active version is never retired, so its key is present.
        (self.active, kek.key.as_ref().expect("active KEK has key material"))
    }

    /// The key of `version`, for unwrapping.
    pub fn kek(&self, version: u32) -> Result<&Key256, CryptoError> {
        let kek = self
            .versions
            .get(&version)
            .ok_or(CryptoError::UnknownKeyVersion(version))?;
        kek.key.as_ref().ok_or(CryptoError::RetiredKeyVersion(version))
    }

    /// All versions, oldest first.
    pub fn versions(&self) -> impl Iterator<Item = &KekVersion> {
        self.versions.values()
    }

    /// Seals the keyring under `root`.
    pub fn seal(&self, root: &Key256) -> String {
        let aead = AeadKey::new(root);
        let keks = self
            .versions
            .values()
            .map(|v| SealedKek {
                version: v.version,
                state: v.state,
                created: v.created.clone(),
                sealed: v.key.as_ref().map(|key| {
                    let nonce = random_nonce();
                    let mut buf = key.expose().to_vec();
                    aead.seal(nonce, &seal_aad(v.version), &mut buf);
                    let mut out = nonce.to_vec();
                    out.extend_from_slice(&buf);
                    B64.encode(out)
                }),
            })
            .collect();
        let doc = SealedKeyring {
            format: KEYRING_FORMAT,
            active: self.active,
            keks,
        };
        // Invariant: the document holds only strings and integers.
        serde_json::to_string_pretty(&doc).expect("keyring serializes")
    }

    /// Opens a keyring sealed by [`Keyring::seal`]; a wrong root key or any change fails.
    pub fn open(root: &Key256, sealed: &str) -> Result<Self, CryptoError> {
        let doc: SealedKeyring =
            serde_json::from_str(sealed).map_err(|_| CryptoError::Format("bad keyring document"))?;
        if doc.format != KEYRING_FORMAT {
            return Err(CryptoError::Format("unknown keyring format"));
        }
        let aead = AeadKey::new(root);
        let mut versions = BTreeMap::new();
        for k in doc.keks {
            let key = match (&k.sealed, k.state) {
                (None, KekState::Retired) => None,
                (Some(s), KekState::Active | KekState::Decrypt) => {
                    let raw = B64.decode(s).map_err(|_| CryptoError::Format("bad sealed KEK"))?;
                    if raw.len() <= NONCE_LEN {
                        return Err(CryptoError::Decrypt);
                    }
                    let mut nonce = [0u8; NONCE_LEN];
                    nonce.copy_from_slice(&raw[..NONCE_LEN]);
                    let mut buf = raw[NONCE_LEN..].to_vec();
                    let plain = aead.open(nonce, &seal_aad(k.version), &mut buf)?;
                    let key = Key256::from_slice(plain).ok_or(CryptoError::Decrypt)?;
                    zeroize::Zeroize::zeroize(&mut buf);
                    Some(key)
                }
                _ => return Err(CryptoError::Format("KEK state and key material disagree")),
            };
            versions.insert(
                k.version,
                KekVersion {
                    version: k.version,
                    state: k.state,
                    created: k.created,
                    key,
                },
            );
        }
        let active_ok = versions.get(&doc.active).is_some_and(|v| v.state == KekState::Active);
        let one_active = versions.values().filter(|v| v.state == KekState::Active).count() == 1;
        if !active_ok || !one_active {
            return Err(CryptoError::Format("keyring must have exactly one active version"));
        }
        Ok(Self {
            active: doc.active,
            versions,
        })
    }
}

fn seal_aad(version: u32) -> Vec<u8> {
    let mut aad = label::KEK_SEAL.to_vec();
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-11-28T00:00:00Z";

    #[test]
    fn seal_open_round_trip_and_rotation() {
        let root = Key256::random();
        let mut ring = Keyring::generate(NOW);
        let v1 = ring.kek(1).expect("v1").expose().to_owned();
        assert_eq!(ring.rotate(NOW), Ok(2));
        assert_eq!(ring.active().0, 2);
        let sealed = ring.seal(&root);
        assert!(!sealed.contains(&hex::encode(v1)));
        let back = Keyring::open(&root, &sealed).expect("opens");
        assert_eq!(back.kek(1).expect("v1").expose(), &v1);
        assert_eq!(back.active().0, 2);
        assert_eq!(back.kek(9).unwrap_err(), CryptoError::UnknownKeyVersion(9));
    }

    #[test]
    fn wrong_root_or_tampering_fails() {
        let root = Key256::random();
        let sealed = Keyring::generate(NOW).seal(&root);
        assert_eq!(
            Keyring::open(&Key256::random(), &sealed).unwrap_err(),
            CryptoError::Decrypt
        );
        // Relabel version 1's sealed key as version 2: the AAD binds the version.
        let relabelled = sealed
            .replace("\"version\": 1", "\"version\": 2")
            .replace("\"active\": 1", "\"active\": 2");
        assert!(Keyring::open(&root, &relabelled).is_err());
        assert!(Keyring::open(&root, "{}").is_err());
    }

    #[test]
    fn debug_has_no_key_material() {
        let ring = Keyring::generate(NOW);
        let hexkey = hex::encode(ring.kek(1).expect("v1").expose());
        assert!(!format!("{ring:?}").contains(&hexkey));
    }

    #[test]
    fn a_keyring_at_the_last_version_refuses_to_rotate_instead_of_wrapping() {
        let mut ring = Keyring::generate(NOW);
        let key = ring.versions.remove(&1).expect("version 1");
        ring.versions.insert(
            u32::MAX,
            KekVersion {
                version: u32::MAX,
                ..key
            },
        );
        ring.active = u32::MAX;
        assert!(ring.rotate(NOW).is_err());
        assert_eq!(ring.active().0, u32::MAX, "nothing changed");
    }
}
