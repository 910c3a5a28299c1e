//! FORMAT.md, checked by an independent implementation.
//!
//! `independent_decoder_reads_the_vector` decrypts the frozen vector `tests/vectors/v1.json`
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
}

/// The frozen vectors: the record in metadata, and the record in the header extension.
const VECTORS: [&str; 2] = ["v1.json", "v1-extension.json"];

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

/// Decrypts per FORMAT.md §3; `None` on any failure.
fn independent_decrypt(
    root_hex: &str,
    keyring: &str,
    bucket: &str,
    key: &str,
    meta: &BTreeMap<String, String>,
    stored: &[u8],
) -> Option<(Vec<u8>, serde_json::Value)> {
    let root = hex::decode(root_hex.trim()).ok()?;
    // 1. Keyring and KEK.
    if meta.get("escrow-v")? != "1" {
        return None;
    }
    let v: u32 = meta.get("escrow-kek")?.parse().ok()?;
    let ring: serde_json::Value = serde_json::from_str(keyring).ok()?;
    let entry = ring["keks"]
        .as_array()?
        .iter()
        .find(|k| k["version"].as_u64() == Some(u64::from(v)))?;
    let sealed_kek = B64.decode(entry["sealed"].as_str()?).ok()?;
    let mut aad = b"escrow-proxy kek-seal".to_vec();
    aad.extend_from_slice(&v.to_be_bytes());
    let kek = gcm_open(&root, &sealed_kek[..12], &sealed_kek[12..], &aad)?;
    // 2. DEK.
    let wrapped = B64.decode(meta.get("escrow-dek")?).ok()?;
    let mut aad = b"escrow-proxy dek-wrap".to_vec();
    aad.push(1);
    aad.extend_from_slice(&v.to_be_bytes());
    aad.extend_from_slice(&len32(bucket));
    aad.extend_from_slice(&len32(key));
    let dek = gcm_open(&kek, &wrapped[..12], &wrapped[12..], &aad)?;
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
        b"escrow-proxy meta-record",
    )?)
    .ok()?;
    let part = 0u32;
    let mut info = b"escrow-proxy trailer-key".to_vec();
    info.extend_from_slice(&part.to_be_bytes());
    let trailer_key = hkdf(&dek, None, &info);
    if stored.len() < 32 + 124 {
        return None;
    }
    let tail = &stored[stored.len() - 124..];
    let mut aad = b"escrow-proxy trailer".to_vec();
    aad.extend_from_slice(&part.to_be_bytes());
    let t = gcm_open(&trailer_key, &tail[..12], &tail[12..], &aad)?;
    let p = u64::from_be_bytes(t[..8].try_into().ok()?);
    if &t[58..90] != header || &header[..4] != b"EPX\x01" || t[90..] != [0u8; 6] {
        return None;
    }
    let s = 1u64 << header[4];
    let n = p.div_ceil(s).max(1);
    let ext = ext as u64;
    if 32 + ext + p + 16 * n + 124 != stored.len() as u64 || record["size"].as_u64()? != p {
        return None;
    }
    // 4. Segments.
    let mut info = b"escrow-proxy part-key".to_vec();
    info.extend_from_slice(&part.to_be_bytes());
    let stream_key = hkdf(&dek, Some(&header[8..24]), &info);
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
    if md5::Md5::digest(&out)[..] != t[8..24] {
        return None;
    }
    Some((out, record))
}

#[test]
fn independent_decoder_reads_the_vectors() {
    for v in load_all() {
        let stored = B64.decode(&v.stored_b64).expect("b64");
        let (plain, record) = independent_decrypt(&v.root_key_hex, &v.keyring, &v.bucket, &v.key, &v.metadata, &stored)
            .expect("FORMAT.md decrypts the vector");
        assert_eq!(plain, B64.decode(&v.plaintext_b64).expect("b64"));
        assert_eq!(record["content_type"], v.content_type);
    }
}

#[test]
fn independent_decoder_refuses_any_change() {
    for v in load_all() {
        let stored = B64.decode(&v.stored_b64).expect("b64");
        let open = |s: &[u8], bucket: &str, key: &str, m: &BTreeMap<String, String>| {
            independent_decrypt(&v.root_key_hex, &v.keyring, bucket, key, m, s).is_some()
        };
        for pos in [0, 5, 20, 40, 1000, 65_600, stored.len() - 130, stored.len() - 1] {
            let mut bad = stored.clone();
            bad[pos] ^= 0x01;
            assert!(!open(&bad, &v.bucket, &v.key, &v.metadata), "flip at {pos}");
        }
        assert!(!open(&stored, &v.bucket, "other-key", &v.metadata));
        assert!(!open(&stored, "other-bucket", &v.key, &v.metadata));
        let mut m = v.metadata.clone();
        m.insert("escrow-kek".into(), "2".into());
        assert!(!open(&stored, &v.bucket, &v.key, &m));
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
        let mut out = Vec::new();
        let record =
            escrow_proxy::decrypt::decrypt_file(&ring, &v.bucket, &v.key, Some(&v.metadata), &object, &mut out)
                .await
                .expect("decrypts");
        assert_eq!(out, B64.decode(&v.plaintext_b64).expect("b64"));
        assert_eq!(record.content_type.as_deref(), Some(v.content_type.as_str()));
        // Must-fail twin: the same bytes under another key name.
        let mut out = Vec::new();
        assert!(
            escrow_proxy::decrypt::decrypt_file(&ring, &v.bucket, "moved", Some(&v.metadata), &object, &mut out)
                .await
                .is_err()
        );
    }
}

/// Writes new vectors. Run only when adding a format version:
/// `cargo test --test format_vector -- --ignored generate_vectors`.
#[test]
#[ignore = "generates tests/vectors/*.json"]
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
    for (name, user_bytes) in VECTORS.iter().zip([9usize, 1900]) {
        let dek = Key256::random();
        let record = ObjectRecord {
            size: plaintext.len() as u64,
            content_type: Some("application/x-vector".into()),
            user: [("origin".to_string(), "F".repeat(user_bytes))].into(),
            ..Default::default()
        };
        let sealed = escrow_proxy::stored::seal(&ring, bucket, key, &dek, &record);
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
        };
        std::fs::write(vector_path(name), serde_json::to_string_pretty(&v).expect("json")).expect("write vector");
    }
}
