//! Envelope keys: DEK wrapping under a KEK, key derivation from the DEK, and the sealed
//! metadata record.
//!
//! - Wrapped DEK (version 3) = `oid(16) ‖ salt(16) ‖ nonce(12) ‖ AES-256-GCM(W, nonce, DEK, aad)`
//!   where `W = HKDF-SHA256(ikm = KEK, salt, info = "escrow-proxy dek-wrap-key" ‖ KEK version
//!   (u32 BE))`, a fresh key for every wrap, and `aad = "escrow-proxy dek-wrap" ‖ 3 ‖ KEK version
//!   (u32 BE) ‖ len(bucket) (u32 BE) ‖ bucket ‖ len(key) (u32 BE) ‖ key ‖ oid`. The object id is
//!   what the record and manifest are bound to; a rewrap keeps it.
//! - Wrapped DEK (versions 1 and 2, read only) = `nonce(12) ‖ AES-256-GCM(KEK, nonce, DEK, aad)`
//!   with the same `aad` but no object id; version 2 binds records to these 60 bytes.
//! - Stream key = HKDF-SHA256(ikm = DEK, salt = the stream header's 16-byte salt,
//!   info = "escrow-proxy part-key" ‖ part (u32 BE)): fresh for every stream, even when a
//!   multipart part is uploaded again.
//! - Trailer key = HKDF-SHA256(ikm = DEK, salt = none, info = "escrow-proxy trailer-key" ‖ part).
//! - Record key = HKDF-SHA256(ikm = DEK, salt = none, info = "escrow-proxy meta-key").
//! - Manifest key = HKDF-SHA256(ikm = DEK, salt = none, info = "escrow-proxy manifest-key").
//! - Sealed record = `nonce(12) ‖ AES-256-GCM(record key, nonce, JSON, "escrow-proxy meta-record")`.
//! - SSE-C (a client's own key `C`, never stored): content key = HKDF-SHA256(ikm = DEK ‖ C,
//!   salt = none, info = "escrow-proxy sse-c content-key") replaces the DEK as the input of the
//!   stream keys only; the record carries `sse_c = HMAC-SHA256(HKDF-SHA256(DEK, none,
//!   "escrow-proxy sse-c check-key"), C)`, so a wrong key is told apart from a damaged object
//!   before any content is read. Trailers, record and manifest stay under the DEK: a rewrap and a
//!   multipart completion need no customer key.

use std::collections::BTreeMap;

use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::CryptoError;
use super::aead::{AeadKey, random_nonce};
use super::format::{ENVELOPE_VERSION, NONCE_LEN, OBJECT_ID_LEN, SALT_LEN, TAG_LEN, WRAP_SALT_LEN, label};
use crate::secret::Key256;

/// Length of a wrapped DEK of envelope versions 1 and 2.
pub const WRAPPED_DEK_LEN: usize = NONCE_LEN + Key256::LEN + TAG_LEN;

/// Length of a wrapped DEK of envelope version 3.
pub const WRAPPED_DEK_V3_LEN: usize = OBJECT_ID_LEN + WRAP_SALT_LEN + WRAPPED_DEK_LEN;

/// A DEK wrapped for one object.
pub struct WrappedDek {
    /// The wrapped DEK, as stored (`escrow-dek`).
    pub bytes: Vec<u8>,
    /// What the object's record and manifest are bound to.
    pub binding: Vec<u8>,
}

/// An unwrapped DEK and what the object's record and manifest are bound to.
pub struct UnwrappedDek {
    /// The data key.
    pub dek: Key256,
    /// The binding: the object id (version 3), the wrapped DEK (version 2), or nothing (1).
    pub binding: Vec<u8>,
}

/// Wraps `dek` under `kek` (version `kek_version`) for the object `bucket`/`key`, as envelope
/// version [`ENVELOPE_VERSION`], with a fresh random object id: a new object, or a copy.
pub fn wrap_dek(kek: &Key256, kek_version: u32, dek: &Key256, bucket: &str, key: &str) -> WrappedDek {
    let mut oid = [0u8; OBJECT_ID_LEN];
    rand::fill(&mut oid);
    rewrap_dek(kek, kek_version, dek, bucket, key, &oid)
}

/// Wraps `dek` for `bucket`/`key` keeping the object id `oid`: the same object under another KEK
/// version, whose record and manifest stay valid.
pub fn rewrap_dek(
    kek: &Key256,
    kek_version: u32,
    dek: &Key256,
    bucket: &str,
    key: &str,
    oid: &[u8; OBJECT_ID_LEN],
) -> WrappedDek {
    let mut salt = [0u8; WRAP_SALT_LEN];
    rand::fill(&mut salt);
    let nonce = random_nonce();
    let mut buf = dek.expose().to_vec();
    let aad = wrap_aad(ENVELOPE_VERSION, kek_version, bucket, key, oid);
    AeadKey::new(&wrap_key(kek, kek_version, &salt)).seal(nonce, &aad, &mut buf);
    let mut bytes = Vec::with_capacity(WRAPPED_DEK_V3_LEN);
    bytes.extend_from_slice(oid);
    bytes.extend_from_slice(&salt);
    bytes.extend_from_slice(&nonce);
    bytes.extend_from_slice(&buf);
    zeroize::Zeroize::zeroize(&mut buf);
    WrappedDek {
        bytes,
        binding: oid.to_vec(),
    }
}

/// The key one version-3 wrap uses: derived from the KEK and the wrap's random salt, so no two
/// wraps share an AES-GCM key and the KEK's own nonce space is never drawn on.
fn wrap_key(kek: &Key256, kek_version: u32, salt: &[u8; WRAP_SALT_LEN]) -> Key256 {
    let mut info = label::DEK_WRAP_KEY.to_vec();
    info.extend_from_slice(&kek_version.to_be_bytes());
    derive(kek, Some(salt), &info)
}

/// Unwraps a DEK wrapped for the same object, KEK version and envelope version.
pub fn unwrap_dek(
    kek: &Key256,
    kek_version: u32,
    envelope_version: u8,
    wrapped: &[u8],
    bucket: &str,
    key: &str,
) -> Result<UnwrappedDek, CryptoError> {
    let (key_used, oid, sealed) = match envelope_version {
        1 | 2 if wrapped.len() == WRAPPED_DEK_LEN => (kek.clone(), &[][..], wrapped),
        3 if wrapped.len() == WRAPPED_DEK_V3_LEN => {
            let (oid, rest) = wrapped.split_at(OBJECT_ID_LEN);
            let (salt, sealed) = rest.split_at(WRAP_SALT_LEN);
            // Invariant: `split_at` gave exactly WRAP_SALT_LEN bytes.
            let salt: &[u8; WRAP_SALT_LEN] = salt.try_into().expect("salt length");
            (wrap_key(kek, kek_version, salt), oid, sealed)
        }
        _ => return Err(CryptoError::Decrypt),
    };
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&sealed[..NONCE_LEN]);
    let mut buf = sealed[NONCE_LEN..].to_vec();
    let aad = wrap_aad(envelope_version, kek_version, bucket, key, oid);
    let result = AeadKey::new(&key_used)
        .open(nonce, &aad, &mut buf)
        .map(|plain| Key256::from_slice(plain));
    zeroize::Zeroize::zeroize(&mut buf);
    let dek = result?.ok_or(CryptoError::Decrypt)?;
    let binding = match envelope_version {
        1 => Vec::new(),
        2 => wrapped.to_vec(),
        _ => oid.to_vec(),
    };
    Ok(UnwrappedDek { dek, binding })
}

fn wrap_aad(envelope_version: u8, kek_version: u32, bucket: &str, key: &str, oid: &[u8]) -> Vec<u8> {
    let mut aad = label::DEK_WRAP.to_vec();
    aad.push(envelope_version);
    aad.extend_from_slice(&kek_version.to_be_bytes());
    for field in [bucket, key] {
        // Invariant: S3 bucket names and keys are far below 4 GiB.
        let len = u32::try_from(field.len()).expect("bucket and key lengths fit u32");
        aad.extend_from_slice(&len.to_be_bytes());
        aad.extend_from_slice(field.as_bytes());
    }
    aad.extend_from_slice(oid);
    aad
}

/// The content key of the stream of part `part` (0 for a single-part object) whose header
/// carries `salt`.
pub fn stream_key(dek: &Key256, salt: &[u8; SALT_LEN], part: u32) -> Key256 {
    let mut info = label::PART_KEY.to_vec();
    info.extend_from_slice(&part.to_be_bytes());
    derive(dek, Some(salt), &info)
}

/// The key of the trailer of part `part`.
pub fn trailer_key(dek: &Key256, part: u32) -> Key256 {
    let mut info = label::TRAILER_KEY.to_vec();
    info.extend_from_slice(&part.to_be_bytes());
    derive(dek, None, &info)
}

/// The key of a multipart object's manifest.
pub fn manifest_key(dek: &Key256) -> Key256 {
    derive(dek, None, label::MANIFEST_KEY)
}

/// Associated data `label ‖ binding`.
pub(crate) fn bound(label: &[u8], binding: &[u8]) -> Vec<u8> {
    let mut aad = label.to_vec();
    aad.extend_from_slice(binding);
    aad
}

/// A client's SSE-C key (`x-amz-server-side-encryption-customer-key`, 32 bytes). Never stored
/// and never logged: zeroized on drop, redacted in `Debug`.
#[derive(Clone)]
pub struct CustomerKey(Key256);

impl CustomerKey {
    /// The key from exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        Key256::from_slice(bytes).map(Self)
    }

    /// The key bytes. Callers must not log or persist them.
    pub fn expose(&self) -> &[u8; 32] {
        self.0.expose()
    }

    /// Base64 of the key's MD5, as S3 echoes it (`x-amz-server-side-encryption-customer-key-MD5`).
    pub fn md5_base64(&self) -> String {
        use base64::Engine as _;
        use md5::Digest as _;
        base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(self.expose()))
    }
}

impl std::fmt::Debug for CustomerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CustomerKey(<redacted>)")
    }
}

/// The key an object's streams are derived from: the DEK itself, or for an SSE-C object
/// `HKDF(DEK ‖ customer key, no salt, "escrow-proxy sse-c content-key")`, so that neither the
/// keyring alone nor the customer key alone decrypts the content.
pub fn content_key(dek: &Key256, customer: Option<&CustomerKey>) -> Key256 {
    let Some(customer) = customer else {
        return dek.clone();
    };
    let mut ikm = zeroize::Zeroizing::new([0u8; 64]);
    ikm[..32].copy_from_slice(dek.expose());
    ikm[32..].copy_from_slice(customer.expose());
    let mut out = [0u8; 32];
    // Invariant: HKDF-SHA256 can expand up to 255·32 bytes; we ask for 32.
    Hkdf::<Sha256>::new(None, ikm.as_slice())
        .expand(label::SSE_C_CONTENT_KEY, &mut out)
        .expect("32 bytes is a valid HKDF length");
    let key = Key256::from_bytes(out);
    zeroize::Zeroize::zeroize(&mut out);
    key
}

/// The keyed digest of an SSE-C object's customer key, stored in its sealed record:
/// `HMAC-SHA256(HKDF(DEK, no salt, "escrow-proxy sse-c check-key"), customer key)`. Keyed by the
/// object's own DEK, so the same customer key gives unrelated digests on different objects.
pub fn customer_check(dek: &Key256, customer: &CustomerKey) -> [u8; 32] {
    let key = derive(dek, None, label::SSE_C_CHECK_KEY);
    let mac = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.expose()),
        customer.expose(),
    );
    let mut out = [0u8; 32];
    out.copy_from_slice(mac.as_ref());
    out
}

/// Whether `customer` is the key whose digest `check` is ([`customer_check`]); constant time.
pub fn customer_matches(dek: &Key256, customer: &CustomerKey, check: &[u8]) -> bool {
    let key = derive(dek, None, label::SSE_C_CHECK_KEY);
    ring::hmac::verify(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.expose()),
        customer.expose(),
        check,
    )
    .is_ok()
}

/// The key that MACs the mirror's repair records, derived from a KEK (FORMAT.md §9).
pub fn repair_mac_key(kek: &Key256) -> Key256 {
    derive(kek, None, b"escrow-proxy repair-record-mac")
}

fn record_key(dek: &Key256) -> Key256 {
    derive(dek, None, label::META_KEY)
}

fn derive(ikm: &Key256, salt: Option<&[u8]>, info: &[u8]) -> Key256 {
    let mut out = [0u8; 32];
    // Invariant: HKDF-SHA256 can expand up to 255·32 bytes; we ask for 32.
    Hkdf::<Sha256>::new(salt, ikm.expose())
        .expand(info, &mut out)
        .expect("32 bytes is a valid HKDF length");
    let key = Key256::from_bytes(out);
    zeroize::Zeroize::zeroize(&mut out);
    key
}

/// What the proxy keeps about an object besides its body, sealed under the object's DEK. None of
/// it reaches a store in the clear.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRecord {
    /// Plaintext length.
    pub size: u64,
    /// `Content-Type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// `Content-Encoding`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    /// `Content-Disposition`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    /// `Content-Language`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    /// `Cache-Control`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    /// `Expires`, as the client sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// User metadata (`x-amz-meta-*`), names lowercase without the prefix.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user: BTreeMap<String, String>,
    /// When the object was written (PUT, copy, or multipart completion), in milliseconds since
    /// the Unix epoch, by the proxy's clock. Sealed, so a store cannot change it: it is the
    /// object's `Last-Modified`, and what decides which of two stores holds the newer version.
    /// Absent in objects written before it existed (the store's time is used for those).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written_ms: Option<u64>,
    /// For an SSE-C object: base64 of [`customer_check`] of the client's key. Its presence says
    /// the content is sealed under [`content_key`] with that key. Sealed, so a store can neither
    /// strip nor add it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sse_c: Option<String>,
}

impl ObjectRecord {
    /// Stamps the record with the current time as its write time.
    pub fn stamp(&mut self, now: std::time::SystemTime) {
        let ms = now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.written_ms = Some(ms);
    }

    /// The digest of the customer key an SSE-C object is sealed with, if it is one.
    pub fn customer_check(&self) -> Option<Vec<u8>> {
        use base64::Engine as _;
        // A record that does not decode is sealed, so only a bug writes one: treat as a
        // digest nothing matches.
        self.sse_c
            .as_deref()
            .map(|c| base64::engine::general_purpose::STANDARD.decode(c).unwrap_or_default())
    }

    /// Marks the record as an SSE-C object's under `customer` (`None`: not SSE-C).
    pub fn set_customer(&mut self, dek: &Key256, customer: Option<&CustomerKey>) {
        use base64::Engine as _;
        self.sse_c = customer.map(|c| base64::engine::general_purpose::STANDARD.encode(customer_check(dek, c)));
    }

    /// The sealed write time, to the whole second (as S3 answers show it), if any.
    pub fn written(&self) -> Option<std::time::SystemTime> {
        let ms = self.written_ms?;
        std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(ms / 1000))
    }
}

/// Seals a record under the object's DEK, bound to `binding` (envelope version 3: the object
/// id; version 2: the object's wrapped DEK; version 1: nothing).
pub fn seal_record(dek: &Key256, binding: &[u8], record: &ObjectRecord) -> Vec<u8> {
    // Invariant: the record holds only strings and integers, which always serialize.
    let mut buf = serde_json::to_vec(record).expect("record serializes");
    let nonce = random_nonce();
    AeadKey::new(&record_key(dek)).seal(nonce, &bound(label::META_AAD, binding), &mut buf);
    let mut out = nonce.to_vec();
    out.extend_from_slice(&buf);
    out
}

/// Opens a record sealed by [`seal_record`] under the same DEK and binding.
pub fn open_record(dek: &Key256, binding: &[u8], sealed: &[u8]) -> Result<ObjectRecord, CryptoError> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(CryptoError::Decrypt);
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&sealed[..NONCE_LEN]);
    let mut buf = sealed[NONCE_LEN..].to_vec();
    let plain = AeadKey::new(&record_key(dek)).open(nonce, &bound(label::META_AAD, binding), &mut buf)?;
    serde_json::from_slice(plain).map_err(|_| CryptoError::Format("bad metadata record"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version-2 wrap, as proxies before version 3 wrote it (read-only today).
    fn wrap_v2(kek: &Key256, kek_version: u32, dek: &Key256, bucket: &str, key: &str) -> Vec<u8> {
        let nonce = random_nonce();
        let mut buf = dek.expose().to_vec();
        AeadKey::new(kek).seal(nonce, &wrap_aad(2, kek_version, bucket, key, &[]), &mut buf);
        [nonce.to_vec(), buf].concat()
    }

    #[test]
    fn dek_round_trip_and_binding() {
        let kek = Key256::random();
        let dek = Key256::random();
        let wrapped = wrap_dek(&kek, 3, &dek, "b", "k");
        assert_eq!(wrapped.bytes.len(), WRAPPED_DEK_V3_LEN);
        assert_eq!(wrapped.binding, wrapped.bytes[..OBJECT_ID_LEN]);
        let back = unwrap_dek(&kek, 3, ENVELOPE_VERSION, &wrapped.bytes, "b", "k").expect("unwraps");
        assert_eq!(back.dek.expose(), dek.expose());
        assert_eq!(back.binding, wrapped.binding);
        let w = &wrapped.bytes;
        // Must-fail twins: other envelope version, object, bucket, KEK version, KEK; any flipped
        // byte (object id, salt, nonce, ciphertext, tag); a short wrap.
        assert!(
            unwrap_dek(&kek, 3, 2, w, "b", "k").is_err(),
            "bound to the envelope version"
        );
        assert!(unwrap_dek(&kek, 3, ENVELOPE_VERSION, w, "b", "k2").is_err());
        assert!(unwrap_dek(&kek, 3, ENVELOPE_VERSION, w, "b2", "k").is_err());
        assert!(unwrap_dek(&kek, 4, ENVELOPE_VERSION, w, "b", "k").is_err());
        assert!(unwrap_dek(&Key256::random(), 3, ENVELOPE_VERSION, w, "b", "k").is_err());
        // Length-prefixing: ("ab","c") and ("a","bc") differ.
        let w2 = wrap_dek(&kek, 1, &dek, "ab", "c");
        assert!(unwrap_dek(&kek, 1, ENVELOPE_VERSION, &w2.bytes, "a", "bc").is_err());
        for pos in 0..w.len() {
            let mut bad = w.clone();
            bad[pos] ^= 0x80;
            assert!(
                unwrap_dek(&kek, 3, ENVELOPE_VERSION, &bad, "b", "k").is_err(),
                "flip at {pos}"
            );
        }
        assert!(unwrap_dek(&kek, 3, ENVELOPE_VERSION, &w[..w.len() - 1], "b", "k").is_err());
    }

    #[test]
    fn every_wrap_has_its_own_key_and_id() {
        let kek = Key256::random();
        let dek = Key256::random();
        let (a, b) = (wrap_dek(&kek, 1, &dek, "b", "k"), wrap_dek(&kek, 1, &dek, "b", "k"));
        assert_ne!(a.binding, b.binding, "a copy gets its own object id");
        assert_ne!(
            a.bytes[OBJECT_ID_LEN..][..WRAP_SALT_LEN],
            b.bytes[OBJECT_ID_LEN..][..WRAP_SALT_LEN]
        );
        let salt =
            |w: &WrappedDek| -> [u8; WRAP_SALT_LEN] { w.bytes[OBJECT_ID_LEN..][..WRAP_SALT_LEN].try_into().unwrap() };
        assert_ne!(
            wrap_key(&kek, 1, &salt(&a)).expose(),
            wrap_key(&kek, 1, &salt(&b)).expose()
        );
        assert_ne!(
            wrap_key(&kek, 1, &salt(&a)).expose(),
            kek.expose(),
            "the KEK itself never seals"
        );
    }

    #[test]
    fn a_rewrap_keeps_the_object_id_under_a_new_kek() {
        let (old, new) = (Key256::random(), Key256::random());
        let dek = Key256::random();
        let first = wrap_dek(&old, 1, &dek, "b", "k");
        let oid: [u8; OBJECT_ID_LEN] = first.binding.clone().try_into().unwrap();
        let second = rewrap_dek(&new, 2, &dek, "b", "k", &oid);
        let back = unwrap_dek(&new, 2, ENVELOPE_VERSION, &second.bytes, "b", "k").expect("unwraps");
        assert_eq!(
            back.binding, first.binding,
            "records sealed before the rewrap still open"
        );
        assert!(unwrap_dek(&old, 1, ENVELOPE_VERSION, &second.bytes, "b", "k").is_err());
        // Must-fail twin: the object id swapped for another one.
        let mut swapped = second.bytes.clone();
        swapped[..OBJECT_ID_LEN].copy_from_slice(&[7u8; OBJECT_ID_LEN]);
        assert!(unwrap_dek(&new, 2, ENVELOPE_VERSION, &swapped, "b", "k").is_err());
    }

    #[test]
    fn version_2_wraps_are_still_read_and_bind_their_bytes() {
        let kek = Key256::random();
        let dek = Key256::random();
        let w = wrap_v2(&kek, 5, &dek, "b", "k");
        let back = unwrap_dek(&kek, 5, 2, &w, "b", "k").expect("unwraps");
        assert_eq!(back.dek.expose(), dek.expose());
        assert_eq!(back.binding, w);
        assert!(
            unwrap_dek(&kek, 5, 1, &w, "b", "k").is_err(),
            "no downgrade by relabelling"
        );
        assert!(
            unwrap_dek(&kek, 5, 3, &w, "b", "k").is_err(),
            "no upgrade by relabelling"
        );
    }

    #[test]
    fn derived_keys_differ() {
        let dek = Key256::random();
        let salt = [1u8; SALT_LEN];
        assert_ne!(stream_key(&dek, &salt, 0).expose(), stream_key(&dek, &salt, 1).expose());
        assert_ne!(
            stream_key(&dek, &salt, 0).expose(),
            stream_key(&dek, &[2u8; SALT_LEN], 0).expose()
        );
        assert_ne!(stream_key(&dek, &salt, 0).expose(), record_key(&dek).expose());
        assert_ne!(trailer_key(&dek, 0).expose(), record_key(&dek).expose());
        assert_eq!(stream_key(&dek, &salt, 7).expose(), stream_key(&dek, &salt, 7).expose());
    }

    #[test]
    fn sse_c_content_key_needs_both_keys_and_the_digest_is_per_object() {
        let dek = Key256::random();
        let c = CustomerKey::from_slice(&[0x11; 32]).expect("32 bytes");
        let c2 = CustomerKey::from_slice(&[0x12; 32]).expect("32 bytes");
        let k = content_key(&dek, Some(&c));
        assert_eq!(content_key(&dek, None).expose(), dek.expose(), "not SSE-C: the DEK");
        assert_ne!(k.expose(), dek.expose());
        assert_ne!(k.expose(), c.expose());
        assert_eq!(
            k.expose(),
            content_key(&dek, Some(&c.clone())).expose(),
            "deterministic"
        );
        assert_ne!(
            k.expose(),
            content_key(&dek, Some(&c2)).expose(),
            "another customer key"
        );
        assert_ne!(
            k.expose(),
            content_key(&Key256::random(), Some(&c)).expose(),
            "another DEK"
        );
        let check = customer_check(&dek, &c);
        assert!(customer_matches(&dek, &c, &check));
        assert!(!customer_matches(&dek, &c2, &check), "another key");
        assert!(!customer_matches(&Key256::random(), &c, &check), "keyed by the DEK");
        assert!(!customer_matches(&dek, &c, &check[..31]), "a cut digest");
        assert_ne!(
            check,
            customer_check(&Key256::random(), &c),
            "unlinkable across objects"
        );
        assert!(CustomerKey::from_slice(&[0; 31]).is_none() && CustomerKey::from_slice(&[0; 33]).is_none());
        assert_eq!(format!("{c:?}"), "CustomerKey(<redacted>)");
        // Sealed in the record: the flag and digest survive a round trip, and a record
        // without it is not SSE-C.
        let mut record = ObjectRecord::default();
        record.set_customer(&dek, Some(&c));
        let opened = open_record(&dek, b"oid", &seal_record(&dek, b"oid", &record)).expect("opens");
        assert_eq!(opened.customer_check().as_deref(), Some(&check[..]));
        record.set_customer(&dek, None);
        assert_eq!(record.customer_check(), None);
    }

    #[test]
    fn record_round_trip_and_must_fail() {
        let dek = Key256::random();
        let record = ObjectRecord {
            size: 42,
            content_type: Some("text/plain".into()),
            user: [("color".to_string(), "blue".to_string())].into(),
            ..Default::default()
        };
        let sealed = seal_record(&dek, b"wrapped-1", &record);
        assert_eq!(open_record(&dek, b"wrapped-1", &sealed).expect("opens"), record);
        assert!(open_record(&Key256::random(), b"wrapped-1", &sealed).is_err());
        // Bound: the same DEK under another wrap (a copy's) does not open it.
        assert!(open_record(&dek, b"wrapped-2", &sealed).is_err());
        assert!(open_record(&dek, b"", &sealed).is_err());
        let mut bad = sealed.clone();
        bad[20] ^= 1;
        assert!(open_record(&dek, b"wrapped-1", &bad).is_err());
        assert!(!String::from_utf8_lossy(&sealed).contains("blue"));
    }
}
