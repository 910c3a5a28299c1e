//! The keyring: versioned key-encryption keys (KEKs), exactly one active, sealed as a whole by a
//! root key that never leaves home.
//!
//! Lifecycle of a version: `active` → `decrypt` (after a rotation) → `disabled` (unwraps refused,
//! reversible) → `destroyed` (material erased: crypto-shredding).
//!
//! Sealed form, format 2 (written): `{"format":2,"generation":G,"sealed":"base64"}` where
//! `sealed` is `nonce(12) ‖ AES-256-GCM(root, nonce, inner, "escrow-proxy keyring" ‖ G (u64 BE))`
//! and `inner` is the JSON `{"active":N,"keks":[{"version":N,"state":…,"created":…,"key":"base64"}]}`
//! (`key` absent for a destroyed version). The whole document — states, the active version, the
//! generation — is authenticated, not only each key; the generation grows by one with every
//! change, so instances sharing a keyring can tell newer from older (FORMAT.md §1.2).
//!
//! Format 1 (read, for keyrings written by older versions): `{"format":1,"active":N,"keks":[{
//! "version":N,"state":"active"|"decrypt"|"retired","created":…,"sealed":"base64"}]}` with each
//! KEK sealed alone (`nonce ‖ AES-GCM(root, nonce, KEK, "escrow-proxy kek-seal" ‖ version)`);
//! its generation is 0 and `retired` reads as `destroyed`.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::CryptoError;
use super::aead::{AeadKey, random_nonce};
use super::format::{NONCE_LEN, label};
use crate::secret::Key256;

/// Version of the sealed keyring document written.
const KEYRING_FORMAT: u32 = 2;
/// The older document format, still read.
const KEYRING_FORMAT_V1: u32 = 1;

/// What a KEK version may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KekState {
    /// Wraps new DEKs, and unwraps.
    Active,
    /// Only unwraps (an older version after a rotation).
    Decrypt,
    /// Unwraps refused; reversible (`enable`). The material is kept.
    Disabled,
    /// Destroyed: the material is erased, objects under it can no longer be read. Format-1
    /// keyrings call this `retired`.
    #[serde(alias = "retired")]
    Destroyed,
}

/// Why a lifecycle change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LifecycleError {
    /// No such version in the keyring.
    #[error("no key version {0}")]
    NoSuchVersion(u32),
    /// The active version cannot be disabled or destroyed: rotate first.
    #[error("key version {0} is the active version; rotate first")]
    Active(u32),
    /// The version is destroyed: nothing can change it any more.
    #[error("key version {0} is destroyed")]
    Destroyed(u32),
}

/// References to key versions in one store, as a census counted them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreCensus {
    /// Objects per key version.
    pub objects: BTreeMap<u32, u64>,
    /// Uploads in progress (their markers) per key version.
    pub uploads: BTreeMap<u32, u64>,
    /// Buckets counted.
    pub buckets: u64,
}

/// The latest finished census, kept in the sealed keyring so that every instance sharing it
/// sees the same one (and nobody can forge one to allow a destroy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CensusReport {
    /// The job that counted.
    pub job: String,
    /// When it finished (RFC 3339).
    pub finished: String,
    /// Whether it counted every bucket of every store, with no error: only such a census
    /// allows a destroy.
    pub complete: bool,
    /// Per store (`primary`, `mirror`).
    pub stores: BTreeMap<String, StoreCensus>,
}

impl CensusReport {
    /// Objects and uploads that reference `version`, in all stores.
    pub fn references(&self, version: u32) -> u64 {
        self.stores
            .values()
            .map(|s| s.objects.get(&version).unwrap_or(&0) + s.uploads.get(&version).unwrap_or(&0))
            .sum()
    }
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
    generation: u64,
    versions: BTreeMap<u32, KekVersion>,
    census: Option<CensusReport>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OuterV2 {
    format: u32,
    generation: u64,
    sealed: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct InnerV2 {
    active: u32,
    keks: Vec<InnerKek>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    census: Option<CensusReport>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct InnerKek {
    version: u32,
    state: KekState,
    created: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<KeyText>,
}

/// A KEK in base64 inside the sealed document: zeroized on drop.
#[derive(Serialize, Deserialize, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
#[serde(transparent)]
struct KeyText(String);

#[derive(Deserialize)]
struct FormatOnly {
    format: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SealedKeyringV1 {
    #[allow(dead_code)] // Checked through `FormatOnly`.
    format: u32,
    active: u32,
    keks: Vec<SealedKekV1>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SealedKekV1 {
    version: u32,
    state: KekState,
    created: String,
    #[serde(default)]
    sealed: Option<String>,
}

impl Keyring {
    /// A new keyring with one random active KEK, version 1.
    pub fn generate(now_rfc3339: &str) -> Self {
        let mut ring = Self {
            active: 0,
            generation: 0,
            versions: BTreeMap::new(),
            census: None,
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
        self.generation += 1;
        Ok(version)
    }

    /// Disables `version`: its unwraps are refused until [`Keyring::enable`]. Disabling a
    /// disabled version changes nothing.
    pub fn disable(&mut self, version: u32) -> Result<(), LifecycleError> {
        let kek = self.changeable(version)?;
        if kek.state != KekState::Disabled {
            kek.state = KekState::Disabled;
            self.generation += 1;
        }
        Ok(())
    }

    /// Enables a disabled `version` again (it decrypts); enabling a decrypting one changes
    /// nothing.
    pub fn enable(&mut self, version: u32) -> Result<(), LifecycleError> {
        let kek = self
            .versions
            .get_mut(&version)
            .ok_or(LifecycleError::NoSuchVersion(version))?;
        match kek.state {
            KekState::Destroyed => Err(LifecycleError::Destroyed(version)),
            KekState::Active | KekState::Decrypt => Ok(()),
            KekState::Disabled => {
                kek.state = KekState::Decrypt;
                self.generation += 1;
                Ok(())
            }
        }
    }

    /// Destroys `version`: its material is erased from this keyring (and from every copy sealed
    /// from now on). Irreversible. Destroying a destroyed version changes nothing.
    pub fn destroy(&mut self, version: u32) -> Result<(), LifecycleError> {
        match self.changeable(version) {
            Ok(kek) => {
                kek.state = KekState::Destroyed;
                kek.key = None;
                self.generation += 1;
                Ok(())
            }
            Err(LifecycleError::Destroyed(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// A version that may be disabled or destroyed: present, not active, not destroyed.
    fn changeable(&mut self, version: u32) -> Result<&mut KekVersion, LifecycleError> {
        if version == self.active {
            return Err(LifecycleError::Active(version));
        }
        let kek = self
            .versions
            .get_mut(&version)
            .ok_or(LifecycleError::NoSuchVersion(version))?;
        if kek.state == KekState::Destroyed {
            return Err(LifecycleError::Destroyed(version));
        }
        Ok(kek)
    }

    /// The active version and its key, for wrapping new DEKs.
    pub fn active(&self) -> (u32, &Key256) {
        let kek = &self.versions[&self.active];
        // Invariant: the active version is never destroyed, so its key is present.
        (self.active, kek.key.as_ref().expect("active KEK has key material"))
    }

    /// The keyring's generation: grows by one with every change; 0 for a format-1 keyring.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The latest census recorded in this keyring.
    pub fn census(&self) -> Option<&CensusReport> {
        self.census.as_ref()
    }

    /// Records `report` as the latest census.
    pub fn set_census(&mut self, report: CensusReport) {
        self.census = Some(report);
        self.generation += 1;
    }

    /// The state of `version`, if the keyring has it.
    pub fn state(&self, version: u32) -> Option<KekState> {
        self.versions.get(&version).map(|v| v.state)
    }

    /// The key of `version`, for unwrapping: refused for a disabled or destroyed version.
    pub fn kek(&self, version: u32) -> Result<&Key256, CryptoError> {
        let kek = self
            .versions
            .get(&version)
            .ok_or(CryptoError::UnknownKeyVersion(version))?;
        match (kek.state, kek.key.as_ref()) {
            (KekState::Disabled, _) => Err(CryptoError::DisabledKeyVersion(version)),
            (_, Some(key)) => Ok(key),
            (_, None) => Err(CryptoError::DestroyedKeyVersion(version)),
        }
    }

    /// All versions, oldest first.
    pub fn versions(&self) -> impl Iterator<Item = &KekVersion> {
        self.versions.values()
    }

    /// Seals the keyring under `root` (format 2: the whole document authenticated).
    pub fn seal(&self, root: &Key256) -> String {
        let keks = self
            .versions
            .values()
            .map(|v| InnerKek {
                version: v.version,
                state: v.state,
                created: v.created.clone(),
                key: v.key.as_ref().map(|k| KeyText(B64.encode(k.expose()))),
            })
            .collect();
        let inner = InnerV2 {
            active: self.active,
            keks,
            census: self.census.clone(),
        };
        // Invariant: the document holds only strings and integers.
        let mut buf = Zeroizing::new(serde_json::to_vec(&inner).expect("keyring serializes"));
        drop(inner);
        let nonce = random_nonce();
        AeadKey::new(root).seal(nonce, &document_aad(self.generation), &mut buf);
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&buf);
        let doc = OuterV2 {
            format: KEYRING_FORMAT,
            generation: self.generation,
            sealed: B64.encode(sealed),
        };
        // Invariant: the document holds only strings and integers.
        let mut text = serde_json::to_string_pretty(&doc).expect("keyring serializes");
        text.push('\n');
        text
    }

    /// The generation a sealed document claims, without opening it (for a cheap "changed?"
    /// check; [`Keyring::open`] authenticates it).
    pub fn peek_generation(sealed: &str) -> Option<u64> {
        #[derive(Deserialize)]
        struct Peek {
            #[serde(default)]
            generation: u64,
        }
        serde_json::from_str::<Peek>(sealed).ok().map(|p| p.generation)
    }

    /// Opens a keyring sealed by [`Keyring::seal`] (or a format-1 one); a wrong root key or any
    /// change fails.
    pub fn open(root: &Key256, sealed: &str) -> Result<Self, CryptoError> {
        let format: FormatOnly =
            serde_json::from_str(sealed).map_err(|_| CryptoError::Format("bad keyring document"))?;
        let ring = match format.format {
            KEYRING_FORMAT => Self::open_v2(root, sealed)?,
            KEYRING_FORMAT_V1 => Self::open_v1(root, sealed)?,
            _ => return Err(CryptoError::Format("unknown keyring format")),
        };
        let active_ok = ring
            .versions
            .get(&ring.active)
            .is_some_and(|v| v.state == KekState::Active);
        let one_active = ring.versions.values().filter(|v| v.state == KekState::Active).count() == 1;
        if !active_ok || !one_active {
            return Err(CryptoError::Format("keyring must have exactly one active version"));
        }
        Ok(ring)
    }

    fn open_v2(root: &Key256, sealed: &str) -> Result<Self, CryptoError> {
        let doc: OuterV2 = serde_json::from_str(sealed).map_err(|_| CryptoError::Format("bad keyring document"))?;
        let raw = B64
            .decode(&doc.sealed)
            .map_err(|_| CryptoError::Format("bad keyring document"))?;
        if raw.len() <= NONCE_LEN {
            return Err(CryptoError::Decrypt);
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&raw[..NONCE_LEN]);
        let mut buf = Zeroizing::new(raw[NONCE_LEN..].to_vec());
        let aead = AeadKey::new(root);
        let plain = aead.open(nonce, &document_aad(doc.generation), &mut buf)?;
        let inner: InnerV2 = serde_json::from_slice(plain).map_err(|_| CryptoError::Format("bad keyring document"))?;
        let mut versions = BTreeMap::new();
        for k in inner.keks {
            let key = match (&k.key, k.state) {
                (None, KekState::Destroyed) => None,
                (Some(b64), KekState::Active | KekState::Decrypt | KekState::Disabled) => {
                    let bytes = Zeroizing::new(B64.decode(b64.0.as_bytes()).map_err(|_| CryptoError::Decrypt)?);
                    Some(Key256::from_slice(&bytes).ok_or(CryptoError::Decrypt)?)
                }
                _ => return Err(CryptoError::Format("KEK state and key material disagree")),
            };
            let kek = KekVersion {
                version: k.version,
                state: k.state,
                created: k.created,
                key,
            };
            if versions.insert(k.version, kek).is_some() {
                return Err(CryptoError::Format("a key version appears twice"));
            }
        }
        Ok(Self {
            active: inner.active,
            generation: doc.generation,
            versions,
            census: inner.census,
        })
    }

    fn open_v1(root: &Key256, sealed: &str) -> Result<Self, CryptoError> {
        let doc: SealedKeyringV1 =
            serde_json::from_str(sealed).map_err(|_| CryptoError::Format("bad keyring document"))?;
        let aead = AeadKey::new(root);
        let mut versions = BTreeMap::new();
        for k in doc.keks {
            let key = match (&k.sealed, k.state) {
                (None, KekState::Destroyed) => None,
                (Some(s), KekState::Active | KekState::Decrypt) => {
                    let raw = B64.decode(s).map_err(|_| CryptoError::Format("bad sealed KEK"))?;
                    if raw.len() <= NONCE_LEN {
                        return Err(CryptoError::Decrypt);
                    }
                    let mut nonce = [0u8; NONCE_LEN];
                    nonce.copy_from_slice(&raw[..NONCE_LEN]);
                    let mut buf = Zeroizing::new(raw[NONCE_LEN..].to_vec());
                    let plain = aead.open(nonce, &kek_seal_aad(k.version), &mut buf)?;
                    Some(Key256::from_slice(plain).ok_or(CryptoError::Decrypt)?)
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
        Ok(Self {
            active: doc.active,
            generation: 0,
            versions,
            census: None,
        })
    }
}

fn kek_seal_aad(version: u32) -> Vec<u8> {
    let mut aad = label::KEK_SEAL.to_vec();
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

fn document_aad(generation: u64) -> Vec<u8> {
    let mut aad = label::KEYRING_SEAL.to_vec();
    aad.extend_from_slice(&generation.to_be_bytes());
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
        assert_eq!(ring.generation(), 2);
        let sealed = ring.seal(&root);
        assert!(!sealed.contains(&hex::encode(v1)));
        assert!(!sealed.contains(&B64.encode(v1)));
        assert_eq!(Keyring::peek_generation(&sealed), Some(2));
        let back = Keyring::open(&root, &sealed).expect("opens");
        assert_eq!(back.kek(1).expect("v1").expose(), &v1);
        assert_eq!(back.active().0, 2);
        assert_eq!(back.generation(), 2);
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
        // The generation is authenticated: a replayed document cannot claim to be newer.
        let bumped = sealed.replace("\"generation\": 1", "\"generation\": 7");
        assert_ne!(bumped, sealed);
        assert_eq!(Keyring::open(&root, &bumped).unwrap_err(), CryptoError::Decrypt);
        assert!(Keyring::open(&root, "{}").is_err());
        assert!(Keyring::open(&root, "{\"format\":3}").is_err());
    }

    #[test]
    fn disable_enable_destroy_follow_the_lifecycle() {
        let root = Key256::random();
        let mut ring = Keyring::generate(NOW);
        assert_eq!(ring.disable(1), Err(LifecycleError::Active(1)));
        assert_eq!(ring.destroy(1), Err(LifecycleError::Active(1)));
        ring.rotate(NOW).expect("rotate");
        ring.disable(1).expect("disable");
        assert_eq!(ring.kek(1).unwrap_err(), CryptoError::DisabledKeyVersion(1));
        let reopened = Keyring::open(&root, &ring.seal(&root)).expect("opens");
        assert_eq!(reopened.state(1), Some(KekState::Disabled));
        ring.enable(1).expect("enable");
        assert!(ring.kek(1).is_ok());
        let before = ring.generation();
        ring.destroy(1).expect("destroy");
        assert_eq!(ring.generation(), before + 1);
        assert_eq!(ring.kek(1).unwrap_err(), CryptoError::DestroyedKeyVersion(1));
        assert_eq!(ring.enable(1), Err(LifecycleError::Destroyed(1)));
        assert_eq!(ring.disable(1), Err(LifecycleError::Destroyed(1)));
        assert_eq!(ring.destroy(1), Ok(()), "idempotent");
        assert_eq!(ring.disable(5), Err(LifecycleError::NoSuchVersion(5)));
        let reopened = Keyring::open(&root, &ring.seal(&root)).expect("opens");
        assert_eq!(reopened.kek(1).unwrap_err(), CryptoError::DestroyedKeyVersion(1));
        assert_eq!(reopened.state(1), Some(KekState::Destroyed));
    }

    #[test]
    fn the_census_travels_sealed_with_the_keyring() {
        let root = Key256::random();
        let mut ring = Keyring::generate(NOW);
        let mut store = StoreCensus::default();
        store.objects.insert(1, 5);
        store.uploads.insert(1, 2);
        let report = CensusReport {
            job: "census-1".into(),
            finished: NOW.into(),
            complete: true,
            stores: [("primary".to_string(), store)].into(),
        };
        ring.set_census(report.clone());
        assert_eq!(ring.generation(), 2);
        let sealed = ring.seal(&root);
        assert!(!sealed.contains("census-1"), "sealed, not in the clear");
        let back = Keyring::open(&root, &sealed).expect("opens");
        assert_eq!(back.census(), Some(&report));
        assert_eq!(report.references(1), 7);
        assert_eq!(report.references(2), 0);
    }

    #[test]
    fn format_1_keyrings_still_open() {
        let root = Key256::random();
        let kek = Key256::random();
        let aead = AeadKey::new(&root);
        let nonce = random_nonce();
        let mut buf = kek.expose().to_vec();
        aead.seal(nonce, &kek_seal_aad(2), &mut buf);
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&buf);
        let doc = format!(
            "{{\"format\":1,\"active\":2,\"keks\":[{{\"version\":1,\"state\":\"retired\",\"created\":\"{NOW}\"}},\
             {{\"version\":2,\"state\":\"active\",\"created\":\"{NOW}\",\"sealed\":\"{}\"}}]}}",
            B64.encode(sealed)
        );
        let ring = Keyring::open(&root, &doc).expect("format 1 opens");
        assert_eq!(ring.active().1.expose(), kek.expose());
        assert_eq!(ring.state(1), Some(KekState::Destroyed));
        assert_eq!(ring.generation(), 0);
        // Relabel version 2's sealed key as version 3: the AAD binds the version.
        let relabelled = doc
            .replace("\"version\":2", "\"version\":3")
            .replace("\"active\":2", "\"active\":3");
        assert!(Keyring::open(&root, &relabelled).is_err());
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
