//! FORMAT.md, checked by an independent implementation.
//!
//! `independent_decoder_reads_the_vectors` decrypts the frozen vectors `tests/vectors/*.json`
//! following FORMAT.md with the `aes-gcm` and `hkdf` crates only — none of the proxy's crypto
//! code — so the document and the code cannot drift apart unnoticed. The proxy's own offline
//! decoder must read the same vector, and both must refuse it after any change.
//!
//! The vector was made once by `generate_vector` (ignored; run it only for a new format version).

use std::collections::BTreeMap;
use std::path::PathBuf;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hkdf::Hkdf;
use md5::Digest as _;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

#[derive(Serialize, Deserialize)]
struct Vector {
    root_key_hex: String,
    keyring: String,
    bucket: String,
    key: String,
    metadata: BTreeMap<String, String>,
    stored_b64: String,
    plaintext_b64: String,
    content_type: String,
    etag: String,
    /// An SSE-C object's customer key, base64 (FORMAT.md §2.8); absent for the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    customer_key_b64: Option<String>,
}

impl Vector {
    fn customer_key(&self) -> Option<Vec<u8>> {
        self.customer_key_b64.as_ref().map(|k| B64.decode(k).expect("b64"))
    }
}

/// The frozen vectors. Envelope version 1 (records not bound; still read): the record in metadata
/// and in the header extension. Version 2 (records bound to the wrapped DEK; still read): the same
/// two, and a multipart object. Version 3 (written today: per-wrap keys, records bound to the
/// object id): the same three, and an SSE-C object (the content key bound to a customer key).
const VECTORS: [&str; 9] = [
    "v1.json",
    "v1-extension.json",
    "v2.json",
    "v2-extension.json",
    "v2-multipart.json",
    SINGLE_VECTORS[0],
    SINGLE_VECTORS[1],
    MULTIPART_VECTOR,
    SSE_C_VECTOR,
];
const SSE_C_VECTOR: &str = "v3-sse-c.json";
const SINGLE_VECTORS: [&str; 2] = ["v3.json", "v3-extension.json"];
const MULTIPART_VECTOR: &str = "v3-multipart.json";

fn vector_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(name)
}

fn load_all() -> Vec<Vector> {
    VECTORS
        .iter()
        .map(|name| {
            serde_json::from_str(&std::fs::read_to_string(vector_path(name)).expect("vector file")).expect("json")
        })
        .collect()
}

// === an independent decoder, written from FORMAT.md ===

fn gcm_open(key: &[u8], nonce: &[u8], sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
    Aes256Gcm::new_from_slice(key)
        .ok()?
        .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad })
        .ok()
}

fn hkdf(ikm: &[u8], salt: Option<&[u8]>, info: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    Hkdf::<Sha256>::new(salt, ikm).expand(info, &mut out).expect("hkdf");
    out
}

fn len32(s: &str) -> Vec<u8> {
    let mut v = (s.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(s.as_bytes());
    v
}

/// KEK `v` from a keyring document per FORMAT.md §1.2 (format 1 or 2); `None` unless it is
/// there and usable (a destroyed or disabled version is neither).
fn independent_kek(root: &[u8], keyring: &str, v: u32) -> Option<Vec<u8>> {
    let ring: serde_json::Value = serde_json::from_str(keyring).ok()?;
    match ring["format"].as_u64()? {
        1 => {
            let entry = ring["keks"]
                .as_array()?
                .iter()
                .find(|k| k["version"].as_u64() == Some(u64::from(v)))?;
            let sealed_kek = B64.decode(entry["sealed"].as_str()?).ok()?;
            let mut aad = b"escrow-proxy kek-seal".to_vec();
            aad.extend_from_slice(&v.to_be_bytes());
            gcm_open(root, sealed_kek.get(..12)?, &sealed_kek[12..], &aad)
        }
        2 => {
            let sealed = B64.decode(ring["sealed"].as_str()?).ok()?;
            let mut aad = b"escrow-proxy keyring".to_vec();
            aad.extend_from_slice(&ring["generation"].as_u64()?.to_be_bytes());
            let inner = gcm_open(root, sealed.get(..12)?, &sealed[12..], &aad)?;
            let inner: serde_json::Value = serde_json::from_slice(&inner).ok()?;
            let entry = inner["keks"]
                .as_array()?
                .iter()
                .find(|k| k["version"].as_u64() == Some(u64::from(v)))?;
            if !["active", "decrypt"].contains(&entry["state"].as_str()?) {
                return None;
            }
            B64.decode(entry["key"].as_str()?).ok()
        }
        _ => None,
    }
}

/// Decrypts per FORMAT.md §3 (single part) or §5 (multipart); `None` on any failure. Returns
/// the plaintext, the record and the client ETag.
fn independent_decrypt(
    root_hex: &str,
    keyring: &str,
    bucket: &str,
    key: &str,
    meta: &BTreeMap<String, String>,
    stored: &[u8],
    customer: Option<&[u8]>,
) -> Option<(Vec<u8>, serde_json::Value, String)> {
    let root = hex::decode(root_hex.trim()).ok()?;
    // 1. Keyring and KEK.
    let version: u8 = match meta.get("escrow-v")?.as_str() {
        "1" => 1,
        "2" => 2,
        "3" => 3,
        _ => return None,
    };
    let v: u32 = meta.get("escrow-kek")?.parse().ok()?;
    let kek = independent_kek(&root, keyring, v)?;
    // 2. DEK. Version 3: oid(16) ‖ salt(16) ‖ nonce ‖ sealed, under a key derived per wrap.
    let wrapped = B64.decode(meta.get("escrow-dek")?).ok()?;
    let (oid, wrap_key, sealed) = if version == 3 {
        if wrapped.len() != 92 {
            return None;
        }
        let mut info = b"escrow-proxy dek-wrap-key".to_vec();
        info.extend_from_slice(&v.to_be_bytes());
        (
            &wrapped[..16],
            hkdf(&kek, Some(&wrapped[16..32]), &info).to_vec(),
            &wrapped[32..],
        )
    } else {
        (&[][..], kek.clone(), &wrapped[..])
    };
    let mut aad = b"escrow-proxy dek-wrap".to_vec();
    aad.push(version);
    aad.extend_from_slice(&v.to_be_bytes());
    aad.extend_from_slice(&len32(bucket));
    aad.extend_from_slice(&len32(key));
    aad.extend_from_slice(oid);
    let dek = gcm_open(&wrap_key, sealed.get(..12)?, &sealed[12..], &aad)?;
    // The record and the manifest are bound to the object id (3), the wrapped DEK (2), or
    // nothing (1).
    let binding: &[u8] = match version {
        3 => oid,
        2 => &wrapped,
        _ => &[],
    };
    if let Some(n) = meta.get("escrow-parts") {
        if version < 2 {
            return None;
        }
        return multipart(&dek, binding, n.parse().ok()?, meta, stored, customer);
    }
    // 3. Record (metadata or header extension), trailer, sizes.
    let record_key = hkdf(&dek, None, b"escrow-proxy meta-key");
    let header = stored.get(..32)?;
    let ext = u32::from_be_bytes([0, header[5], header[6], header[7]]) as usize;
    let sealed = match (meta.get("escrow-meta"), ext) {
        (Some(m), 0) => B64.decode(m).ok()?,
        (None, e) if e > 0 => {
            let block = stored.get(32..32 + e)?;
            let len = u32::from_be_bytes(block[..4].try_into().ok()?) as usize;
            if block.get(4 + len..)?.iter().any(|b| *b != 0) {
                return None;
            }
            block[4..4 + len].to_vec()
        }
        _ => return None,
    };
    let record: serde_json::Value = serde_json::from_slice(&gcm_open(
        &record_key,
        &sealed[..12],
        &sealed[12..],
        &[&b"escrow-proxy meta-record"[..], binding].concat(),
    )?)
    .ok()?;
    let content = content_key(&dek, &record, customer)?;
    let (out, md5) = stream(&dek, &content, 0, stored, None)?;
    if record["size"].as_u64()? != out.len() as u64 {
        return None;
    }
    Some((out, record, hex::encode(md5)))
}

/// §2.8: the key the segments are sealed under. Without `sse_c` in the record, the DEK (and no
/// customer key may be given); with it, the customer key must match the record's keyed digest,
/// and the content key is derived from the DEK and the customer key.
fn content_key(dek: &[u8], record: &serde_json::Value, customer: Option<&[u8]>) -> Option<Vec<u8>> {
    use hmac::Mac as _;
    match (record.get("sse_c").and_then(|c| c.as_str()), customer) {
        (None, None) => Some(dek.to_vec()),
        (Some(check), Some(c)) if c.len() == 32 => {
            let check_key = hkdf(dek, None, b"escrow-proxy sse-c check-key");
            let mut mac = <hmac::Hmac<Sha256> as hmac::Mac>::new_from_slice(&check_key).ok()?;
            mac.update(c);
            mac.verify_slice(&B64.decode(check).ok()?).ok()?;
            Some(hkdf(&[dek, c].concat(), None, b"escrow-proxy sse-c content-key").to_vec())
        }
        _ => None,
    }
}

/// Opens one stream (§2.3–2.5) of part `part`: checks its trailer (under the DEK), its length,
/// its header (against `pinned` when given), every segment (under `content`: the DEK, or an
/// SSE-C object's content key), and its MD5. Returns the plaintext and MD5.
fn stream(dek: &[u8], content: &[u8], part: u32, stored: &[u8], pinned: Option<&[u8]>) -> Option<(Vec<u8>, [u8; 16])> {
    let header = stored.get(..32)?;
    if &header[..4] != b"EPX\x01" || header[31] != 0 || pinned.is_some_and(|p| p != header) {
        return None;
    }
    let ext = u64::from(u32::from_be_bytes([0, header[5], header[6], header[7]]));
    let mut info = b"escrow-proxy trailer-key".to_vec();
    info.extend_from_slice(&part.to_be_bytes());
    let trailer_key = hkdf(dek, None, &info);
    if stored.len() < 32 + 124 {
        return None;
    }
    let tail = &stored[stored.len() - 124..];
    let mut aad = b"escrow-proxy trailer".to_vec();
    aad.extend_from_slice(&part.to_be_bytes());
    let t = gcm_open(&trailer_key, &tail[..12], &tail[12..], &aad)?;
    let p = u64::from_be_bytes(t[..8].try_into().ok()?);
    if &t[58..90] != header || t[90..] != [0u8; 6] {
        return None;
    }
    let s = 1u64 << header[4];
    let n = p.div_ceil(s).max(1);
    if 32 + ext + p + 16 * n + 124 != stored.len() as u64 {
        return None;
    }
    // Segments.
    let mut info = b"escrow-proxy part-key".to_vec();
    info.extend_from_slice(&part.to_be_bytes());
    let stream_key = hkdf(content, Some(&header[8..24]), &info);
    let mut out = Vec::with_capacity(p as usize);
    let mut pos = 32 + ext as usize;
    for i in 0..n {
        let plain_len = (((i + 1) * s).min(p) - i * s) as usize;
        let seg = &stored[pos..pos + plain_len + 16];
        let mut nonce = header[24..31].to_vec();
        nonce.extend_from_slice(&(i as u32).to_be_bytes());
        nonce.push(u8::from(i + 1 == n));
        out.extend_from_slice(&gcm_open(&stream_key, &nonce, seg, header)?);
        pos += plain_len + 16;
    }
    let md5: [u8; 16] = t[8..24].try_into().ok()?;
    (md5::Md5::digest(&out)[..] == md5).then_some((out, md5))
}

/// A multipart object (FORMAT.md §5): the manifest at the end, then every part in its order.
fn multipart(
    dek: &[u8],
    binding: &[u8],
    parts: usize,
    meta: &BTreeMap<String, String>,
    stored: &[u8],
    customer: Option<&[u8]>,
) -> Option<(Vec<u8>, serde_json::Value, String)> {
    if meta.contains_key("escrow-meta") || stored.len() < 4 {
        return None;
    }
    let l = u32::from_be_bytes(stored[stored.len() - 4..].try_into().ok()?) as usize;
    let end = stored.len().checked_sub(4 + l)?;
    let sealed = stored.get(end..stored.len() - 4)?;
    let manifest_key = hkdf(dek, None, b"escrow-proxy manifest-key");
    let aad = [&b"escrow-proxy manifest"[..], binding].concat();
    let m = gcm_open(&manifest_key, sealed.get(..12)?, &sealed[12..], &aad)?;
    let count = u32::from_be_bytes(m.get(1..5)?.try_into().ok()?) as usize;
    let r = u32::from_be_bytes(m.get(5..9)?.try_into().ok()?) as usize;
    let record: serde_json::Value = serde_json::from_slice(m.get(9..9 + r)?).ok()?;
    let entries = &m[9 + r..];
    let content = content_key(dek, &record, customer)?;
    if m[0] != 1 || count != parts || count == 0 || entries.len() != count * 60 {
        return None;
    }
    let (mut out, mut md5s, mut pos, mut last) = (Vec::new(), Vec::new(), 0usize, 0u32);
    for e in entries.chunks(60) {
        let number = u32::from_be_bytes(e[..4].try_into().ok()?);
        let p = u64::from_be_bytes(e[4..12].try_into().ok()?);
        let header = &e[28..60];
        if number <= last || number > 10_000 || header[5..8] != [0, 0, 0] {
            return None;
        }
        last = number;
        let n = p.div_ceil(1 << header[4]).max(1);
        let len = (32 + p + 16 * n + 124) as usize;
        let (plain, md5) = stream(dek, &content, number, stored.get(pos..pos + len)?, Some(header))?;
        if md5[..] != e[12..28] {
            return None;
        }
        out.extend_from_slice(&plain);
        md5s.extend_from_slice(&md5);
        pos += len;
    }
    if pos != end || record["size"].as_u64()? != out.len() as u64 {
        return None;
    }
    let etag = format!("{}-{count}", hex::encode(md5::Md5::digest(&md5s)));
    Some((out, record, etag))
}

#[test]
fn independent_decoder_reads_the_vectors() {
    for v in load_all() {
        let stored = B64.decode(&v.stored_b64).expect("b64");
        let (plain, record, etag) = independent_decrypt(
            &v.root_key_hex,
            &v.keyring,
            &v.bucket,
            &v.key,
            &v.metadata,
            &stored,
            v.customer_key().as_deref(),
        )
        .expect("FORMAT.md decrypts the vector");
        assert_eq!(plain, B64.decode(&v.plaintext_b64).expect("b64"));
        assert_eq!(etag, v.etag);
        assert_eq!(record["content_type"], v.content_type);
    }
}

/// FORMAT.md §1.2's keyring format 2, read by the independent decoder: every vector's keyring
/// opened by the proxy and sealed again (format 2) still decrypts the vector; a destroyed or
/// disabled version, a changed generation and a wrong root key do not.
#[test]
fn independent_decoder_reads_format_2_keyrings() {
    use escrow_proxy::crypto::keyring::Keyring;
    use escrow_proxy::secret::Key256;
    for v in load_all() {
        let stored = B64.decode(&v.stored_b64).expect("b64");
        let root = Key256::from_slice(&hex::decode(v.root_key_hex.trim()).expect("hex")).expect("32 bytes");
        let mut ring = Keyring::open(&root, &v.keyring).expect("the vector's keyring opens");
        let resealed = ring.seal(&root);
        assert!(resealed.contains("\"format\": 2"));
        let decrypt = |keyring: &str, root_hex: &str| {
            independent_decrypt(
                root_hex,
                keyring,
                &v.bucket,
                &v.key,
                &v.metadata,
                &stored,
                v.customer_key().as_deref(),
            )
            .is_some()
        };
        assert!(decrypt(&resealed, &v.root_key_hex), "format 2 decrypts");
        assert!(!decrypt(&resealed, &hex::encode([7u8; 32])), "wrong root key");
        let generation = format!("\"generation\": {}", ring.generation());
        let bumped = resealed.replace(&generation, &format!("\"generation\": {}", ring.generation() + 1));
        assert!(!decrypt(&bumped, &v.root_key_hex), "generation is authenticated");
        let version: u32 = v.metadata["escrow-kek"].parse().expect("kek");
        ring.rotate("2026-11-29T00:00:00Z").expect("rotate");
        ring.disable(version).expect("disable");
        assert!(!decrypt(&ring.seal(&root), &v.root_key_hex), "disabled");
        ring.destroy(version).expect("destroy");
        let shredded = ring.seal(&root);
        assert!(!decrypt(&shredded, &v.root_key_hex), "destroyed");
    }
}

#[test]
fn independent_decoder_refuses_any_change() {
    for v in load_all() {
        let stored = B64.decode(&v.stored_b64).expect("b64");
        let customer = v.customer_key();
        let open = |s: &[u8], bucket: &str, key: &str, m: &BTreeMap<String, String>| {
            independent_decrypt(&v.root_key_hex, &v.keyring, bucket, key, m, s, customer.as_deref()).is_some()
        };
        // SSE-C: the keyring alone, or another customer key, does not decrypt; a plain object
        // refuses a customer key.
        let with = |c: Option<&[u8]>| {
            independent_decrypt(&v.root_key_hex, &v.keyring, &v.bucket, &v.key, &v.metadata, &stored, c).is_some()
        };
        match &customer {
            Some(c) => {
                assert!(!with(None), "SSE-C vector without its customer key");
                let mut other = c.clone();
                other[0] ^= 1;
                assert!(!with(Some(&other)), "SSE-C vector with another customer key");
            }
            None => assert!(!with(Some(&[9u8; 32])), "a customer key for a plain object"),
        }
        let mut positions = vec![0, 5, 20, 40, 1000, 65_600, stored.len() - 130, stored.len() - 1];
        if v.metadata.contains_key("escrow-parts") {
            // Every part's header, segments and trailer, and the manifest.
            positions.extend((0..stored.len()).step_by(997));
            // Must-fail twins: the last part cut out (manifest kept), and the part count changed.
            let manifest_len = u32::from_be_bytes(stored[stored.len() - 4..].try_into().unwrap()) as usize;
            let end = stored.len() - 4 - manifest_len;
            let mut cut = stored[..end - (32 + LAST_PART_LEN + 16 + 124)].to_vec();
            cut.extend_from_slice(&stored[end..]);
            assert!(!open(&cut, &v.bucket, &v.key, &v.metadata), "last part cut out");
            let mut m = v.metadata.clone();
            m.insert("escrow-parts".into(), "2".into());
            assert!(!open(&stored, &v.bucket, &v.key, &m));
            m.remove("escrow-parts");
            assert!(!open(&stored, &v.bucket, &v.key, &m));
        }
        for pos in positions {
            let mut bad = stored.clone();
            bad[pos] ^= 0x01;
            assert!(!open(&bad, &v.bucket, &v.key, &v.metadata), "flip at {pos}");
        }
        assert!(!open(&stored, &v.bucket, "other-key", &v.metadata));
        assert!(!open(&stored, "other-bucket", &v.key, &v.metadata));
        let mut m = v.metadata.clone();
        m.insert("escrow-kek".into(), "2".into());
        assert!(!open(&stored, &v.bucket, &v.key, &m));
        // The envelope version is bound into the wrap: no downgrade (or upgrade) by relabelling.
        for other in ["1", "2", "3"].into_iter().filter(|o| *o != v.metadata["escrow-v"]) {
            let mut m = v.metadata.clone();
            m.insert("escrow-v".into(), other.into());
            assert!(!open(&stored, &v.bucket, &v.key, &m), "relabelled as version {other}");
        }
    }
}

#[tokio::test]
async fn proxy_decoder_reads_the_vectors() {
    for v in load_all() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root =
            escrow_proxy::secret::Key256::from_slice(&hex::decode(v.root_key_hex.trim()).expect("hex")).expect("32");
        let ring = escrow_proxy::crypto::keyring::Keyring::open(&root, &v.keyring).expect("keyring opens");
        let object = dir.path().join("object");
        std::fs::write(&object, B64.decode(&v.stored_b64).expect("b64")).expect("write");
        let customer = v
            .customer_key()
            .map(|c| escrow_proxy::crypto::envelope::CustomerKey::from_slice(&c).expect("32 bytes"));
        let mut out = Vec::new();
        let record = escrow_proxy::decrypt::decrypt_file_with_key(
            &ring,
            &v.bucket,
            &v.key,
            Some(&v.metadata),
            &object,
            customer.as_ref(),
            &mut out,
        )
        .await
        .expect("decrypts");
        assert_eq!(out, B64.decode(&v.plaintext_b64).expect("b64"));
        assert_eq!(record.content_type.as_deref(), Some(v.content_type.as_str()));
        // Must-fail twin: the same bytes under another key name.
        let mut out = Vec::new();
        assert!(
            escrow_proxy::decrypt::decrypt_file_with_key(
                &ring,
                &v.bucket,
                "moved",
                Some(&v.metadata),
                &object,
                customer.as_ref(),
                &mut out
            )
            .await
            .is_err()
        );
        if customer.is_some() {
            let mut out = Vec::new();
            let without =
                escrow_proxy::decrypt::decrypt_file(&ring, &v.bucket, &v.key, Some(&v.metadata), &object, &mut out)
                    .await;
            assert!(without.is_err() && out.is_empty(), "SSE-C vector without its key");
        }
    }
}

/// Writes the SSE-C vector (FORMAT.md §2.8): a single-part object whose segments are sealed
/// under the content key derived from its DEK and a customer key. Run only when the format
/// changes: `cargo test --test format_vector -- --ignored generate_sse_c_vector`.
#[test]
#[ignore = "generates tests/vectors/v3-sse-c.json"]
fn generate_sse_c_vector() {
    use escrow_proxy::crypto::envelope::{CustomerKey, ObjectRecord, content_key};
    use escrow_proxy::crypto::format::{SINGLE_PART, TRAILER_LEN};
    use escrow_proxy::crypto::keyring::Keyring;
    use escrow_proxy::crypto::segment::{Trailer, seal_all, seal_trailer};
    use escrow_proxy::secret::Key256;

    let root = Key256::random();
    let ring = Keyring::generate("2026-11-28T00:00:00Z");
    let (bucket, key) = ("vector-bucket", "dir/sse-c object.bin");
    let customer_raw = Key256::random();
    let customer = CustomerKey::from_slice(customer_raw.expose()).expect("32 bytes");
    let plaintext: Vec<u8> = (0..70_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(7) >> 24) as u8)
        .collect();
    let dek = Key256::random();
    let mut record = ObjectRecord {
        size: plaintext.len() as u64,
        content_type: Some("application/x-vector".into()),
        ..Default::default()
    };
    record.set_customer(&dek, Some(&customer));
    let sealed = escrow_proxy::object::sealed::seal(&ring, bucket, key, &dek, &record);
    assert!(sealed.extension.is_empty());
    let trailer = Trailer {
        plain_len: plaintext.len() as u64,
        md5: md5::Md5::digest(&plaintext).into(),
        checksum: None,
        header: sealed.header,
    };
    // Segments under the content key, the trailer under the DEK.
    let content = content_key(&dek, Some(&customer));
    let mut stored = seal_all(&content, SINGLE_PART, sealed.header, &[], &plaintext, &trailer);
    stored.truncate(stored.len() - TRAILER_LEN);
    stored.extend_from_slice(&seal_trailer(&dek, SINGLE_PART, &trailer));
    let v = Vector {
        root_key_hex: hex::encode(root.expose()),
        keyring: ring.seal(&root),
        bucket: bucket.into(),
        key: key.into(),
        metadata: sealed.metadata,
        stored_b64: B64.encode(&stored),
        plaintext_b64: B64.encode(&plaintext),
        content_type: "application/x-vector".into(),
        etag: hex::encode(md5::Md5::digest(&plaintext)),
        customer_key_b64: Some(B64.encode(customer.expose())),
    };
    std::fs::write(
        vector_path(SSE_C_VECTOR),
        serde_json::to_string_pretty(&v).expect("json"),
    )
    .expect("write vector");
}

/// Writes the single-part vectors of the current envelope version. Run only when adding a
/// version: `cargo test --test format_vector -- --ignored generate_vectors`.
#[test]
#[ignore = "generates tests/vectors/v3*.json"]
fn generate_vectors() {
    use escrow_proxy::crypto::envelope::ObjectRecord;
    use escrow_proxy::crypto::format::SINGLE_PART;
    use escrow_proxy::crypto::keyring::Keyring;
    use escrow_proxy::crypto::segment::{Trailer, seal_all};
    use escrow_proxy::secret::Key256;

    let root = Key256::random();
    let ring = Keyring::generate("2026-11-28T00:00:00Z");
    let (bucket, key) = ("vector-bucket", "dir/vector object.bin");
    let plaintext: Vec<u8> = (0..70_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    for (name, user_bytes) in SINGLE_VECTORS.iter().zip([9usize, 1900]) {
        let dek = Key256::random();
        let record = ObjectRecord {
            size: plaintext.len() as u64,
            content_type: Some("application/x-vector".into()),
            user: [("origin".to_string(), "F".repeat(user_bytes))].into(),
            ..Default::default()
        };
        let sealed = escrow_proxy::object::sealed::seal(&ring, bucket, key, &dek, &record);
        assert_eq!(sealed.extension.is_empty(), user_bytes < 1000, "{name}");
        let trailer = Trailer {
            plain_len: plaintext.len() as u64,
            md5: md5::Md5::digest(&plaintext).into(),
            checksum: None,
            header: sealed.header,
        };
        let stored = seal_all(
            &dek,
            SINGLE_PART,
            sealed.header,
            &sealed.extension,
            &plaintext,
            &trailer,
        );
        let v = Vector {
            root_key_hex: hex::encode(root.expose()),
            keyring: ring.seal(&root),
            bucket: bucket.into(),
            key: key.into(),
            metadata: sealed.metadata,
            stored_b64: B64.encode(&stored),
            plaintext_b64: B64.encode(&plaintext),
            content_type: "application/x-vector".into(),
            etag: hex::encode(md5::Md5::digest(&plaintext)),
            customer_key_b64: None,
        };
        std::fs::write(vector_path(name), serde_json::to_string_pretty(&v).expect("json")).expect("write vector");
    }
}

/// Plaintext length of the multipart vector's last part (one segment).
const LAST_PART_LEN: usize = 100;

/// Writes the multipart vector: parts 1, 2 and 4 (two full 64 KiB segments and a bit, one
/// segment, a short last part). Run only when adding a format version:
/// `cargo test --test format_vector -- --ignored generate_multipart_vector`.
#[test]
#[ignore = "generates tests/vectors/v3-multipart.json"]
fn generate_multipart_vector() {
    use escrow_proxy::crypto::envelope::ObjectRecord;
    use escrow_proxy::crypto::format::{DEFAULT_SEGMENT_LOG2, meta};
    use escrow_proxy::crypto::keyring::Keyring;
    use escrow_proxy::crypto::manifest::{Manifest, PartEntry};
    use escrow_proxy::crypto::segment::{StreamHeader, Trailer, seal_all};
    use escrow_proxy::secret::Key256;

    let root = Key256::random();
    let ring = Keyring::generate("2026-11-28T00:00:00Z");
    let (bucket, key) = ("vector-bucket", "dir/multipart object.bin");
    let dek = Key256::random();
    let mut stored = Vec::new();
    let mut plaintext = Vec::new();
    let mut parts = Vec::new();
    for (number, len) in [(1u32, 140_000usize), (2, 65_536), (4, LAST_PART_LEN)] {
        let data: Vec<u8> = (0..len as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(number) >> 24) as u8)
            .collect();
        let header = StreamHeader::random(DEFAULT_SEGMENT_LOG2);
        let trailer = Trailer {
            plain_len: len as u64,
            md5: md5::Md5::digest(&data).into(),
            checksum: None,
            header,
        };
        stored.extend_from_slice(&seal_all(&dek, number, header, &[], &data, &trailer));
        parts.push(PartEntry {
            number,
            plain_len: len as u64,
            md5: trailer.md5,
            header,
        });
        plaintext.extend_from_slice(&data);
    }
    let manifest = Manifest {
        parts,
        record: ObjectRecord {
            size: plaintext.len() as u64,
            content_type: Some("application/x-vector".into()),
            ..Default::default()
        },
    };
    let wrapped = escrow_proxy::object::sealed::key_metadata(&ring, bucket, key, &dek);
    stored.extend_from_slice(&manifest.seal(&dek, &wrapped.binding));
    let mut metadata = wrapped.metadata;
    metadata.insert(meta::PARTS.into(), "3".into());
    let v = Vector {
        root_key_hex: hex::encode(root.expose()),
        keyring: ring.seal(&root),
        bucket: bucket.into(),
        key: key.into(),
        metadata,
        stored_b64: B64.encode(&stored),
        plaintext_b64: B64.encode(&plaintext),
        content_type: "application/x-vector".into(),
        etag: manifest.etag(),
        customer_key_b64: None,
    };
    std::fs::write(
        vector_path(MULTIPART_VECTOR),
        serde_json::to_string_pretty(&v).expect("json"),
    )
    .expect("write vector");
}
