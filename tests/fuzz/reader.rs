//! The whole reader, as the offline `decrypt` runs it (`escrow_proxy::decrypt::decrypt_file`):
//! stored metadata (a map the store controls) plus stored bytes, single-part (record in the
//! metadata or in a header extension) and multipart (part streams and a manifest). Objects are
//! sealed here with the crate's public crypto, then damaged the ways a hostile store could.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use proptest::prelude::*;

use escrow_proxy::backend::Metadata;
use escrow_proxy::crypto::envelope::{ObjectRecord, seal_record, wrap_dek};
use escrow_proxy::crypto::format::{ENVELOPE_VERSION, meta};
use escrow_proxy::crypto::keyring::Keyring;
use escrow_proxy::crypto::manifest::{Manifest, PartEntry};
use escrow_proxy::crypto::segment::{StreamHeader, Trailer, build_extension, seal_all};
use escrow_proxy::decrypt::decrypt_file;
use escrow_proxy::secret::Key256;

use super::envelope::record;
use super::support::{Damage, bytes, cases_from, damage, run};

const CASES: u32 = 48;
const BUCKET: &str = "fuzz-bucket";
const KEY: &str = "dir/object";

/// How the object is laid out.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// Record in the metadata.
    Metadata,
    /// Record in a header extension.
    Extension,
    /// Multipart: this many parts.
    Multipart(usize),
}

/// A sealed object: its plaintext, stored bytes and stored metadata.
struct Object {
    plain: Vec<u8>,
    stored: Vec<u8>,
    metadata: Metadata,
}

fn seal_object(ring: &Keyring, shape: Shape, plain: &[u8], record: &ObjectRecord) -> Object {
    let (v, kek) = ring.active();
    let dek = Key256::random();
    let escrow_proxy::crypto::envelope::WrappedDek {
        bytes,
        binding: wrapped,
    } = wrap_dek(kek, v, &dek, BUCKET, KEY);
    let mut metadata = Metadata::new();
    metadata.insert(meta::VERSION.into(), ENVELOPE_VERSION.to_string());
    metadata.insert(meta::KEK.into(), v.to_string());
    metadata.insert(meta::DEK.into(), B64.encode(&bytes));
    let record = ObjectRecord {
        size: plain.len() as u64,
        ..record.clone()
    };
    let stream = |part: u32, header: StreamHeader, ext: &[u8], plain: &[u8]| {
        let trailer = Trailer {
            plain_len: plain.len() as u64,
            md5: md5_of(plain),
            checksum: None,
            header,
        };
        seal_all(&dek, part, header, ext, plain, &trailer)
    };
    let stored = match shape {
        Shape::Metadata => {
            let sealed = seal_record(&dek, &wrapped, &record);
            metadata.insert(meta::RECORD.into(), B64.encode(sealed));
            stream(0, StreamHeader::random(12), &[], plain)
        }
        Shape::Extension => {
            let ext = build_extension(&seal_record(&dek, &wrapped, &record), plain.len() as u64, 12);
            let header = StreamHeader::random(12).with_extension(ext.len());
            stream(0, header, &ext, plain)
        }
        Shape::Multipart(n) => {
            let cut = plain.len().div_ceil(n).max(1);
            let mut stored = Vec::new();
            let mut parts = Vec::new();
            for (i, chunk) in plain.chunks(cut).enumerate() {
                let number = 2 * i as u32 + 1;
                let header = StreamHeader::random(12);
                stored.extend_from_slice(&stream(number, header, &[], chunk));
                parts.push(PartEntry {
                    number,
                    plain_len: chunk.len() as u64,
                    md5: md5_of(chunk),
                    header,
                });
            }
            metadata.insert(meta::PARTS.into(), parts.len().to_string());
            stored.extend_from_slice(&Manifest { parts, record }.seal(&dek, &wrapped));
            stored
        }
    };
    Object {
        plain: plain.to_vec(),
        stored,
        metadata,
    }
}

fn md5_of(data: &[u8]) -> [u8; 16] {
    use md5::Digest as _;
    md5::Md5::digest(data).into()
}

/// Whether `b` says what `a` says: it differs only in numeric hints spelled differently
/// (`escrow-kek` `01` for `1`), which the reader may accept.
fn equivalent(a: &Metadata, b: &Metadata) -> bool {
    let num = |m: &Metadata, k: &str| m.get(k).and_then(|v| v.parse::<u64>().ok());
    a.keys().eq(b.keys())
        && a.iter().all(|(k, v)| {
            b[k] == *v
                || ([meta::KEK, meta::PARTS].contains(&k.as_str()) && num(a, k).is_some() && num(a, k) == num(b, k))
        })
}

fn decrypt(ring: &Keyring, dir: &Path, stored: &[u8], metadata: &Metadata) -> Result<Vec<u8>, String> {
    let path = dir.join("object");
    std::fs::write(&path, stored).expect("write the stored object");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut out = Vec::new();
    rt.block_on(decrypt_file(ring, BUCKET, KEY, Some(metadata), &path, &mut out))
        .map(|_| out)
        .map_err(|e| e.to_string())
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        Just(Shape::Metadata),
        Just(Shape::Extension),
        (1usize..4).prop_map(Shape::Multipart),
    ]
}

/// One change to the stored metadata.
#[derive(Debug, Clone)]
enum MetaDamage {
    /// Remove the `i`-th entry.
    Remove(usize),
    /// Replace the `i`-th entry's value.
    Replace(usize, String),
    /// Flip bit `bit` of byte `at` of the `i`-th entry's value (kept if the result is UTF-8).
    Flip(usize, usize, u8),
    /// Add an `escrow-*` entry the object lacks.
    Add(usize, String),
}

fn meta_damage() -> impl Strategy<Value = MetaDamage> {
    let value = prop_oneof![".{0,20}", "[0-9]{1,12}", "[A-Za-z0-9+/=]{0,90}"];
    prop_oneof![
        any::<usize>().prop_map(MetaDamage::Remove),
        (any::<usize>(), value.clone()).prop_map(|(i, v)| MetaDamage::Replace(i, v)),
        (any::<usize>(), any::<usize>(), 0u8..7).prop_map(|(i, at, bit)| MetaDamage::Flip(i, at, bit)),
        (any::<usize>(), value).prop_map(|(i, v)| MetaDamage::Add(i, v)),
    ]
}

impl MetaDamage {
    /// The damaged map, or `None` when this damage changes nothing.
    fn apply(&self, m: &Metadata) -> Option<Metadata> {
        let mut out = m.clone();
        let names: Vec<String> = m.keys().cloned().collect();
        match self {
            Self::Remove(i) => {
                out.remove(&names[i % names.len()]);
            }
            Self::Replace(i, v) => {
                out.insert(names[i % names.len()].clone(), v.clone());
            }
            Self::Flip(i, at, bit) => {
                let name = &names[i % names.len()];
                let mut value = out[name].clone().into_bytes();
                if value.is_empty() {
                    return None;
                }
                let at = at % value.len();
                value[at] ^= 1 << bit;
                out.insert(name.clone(), String::from_utf8(value).ok()?);
            }
            Self::Add(i, v) => {
                let all = [meta::VERSION, meta::KEK, meta::DEK, meta::RECORD, meta::PARTS];
                let missing: Vec<&str> = all.into_iter().filter(|n| !m.contains_key(*n)).collect();
                let name = missing.get(i % missing.len().max(1))?;
                out.insert((*name).to_string(), v.clone());
            }
        }
        (out != *m).then_some(out)
    }
}

/// What to do to the object.
#[derive(Debug, Clone)]
enum Attack {
    None,
    Body(Damage),
    Metadata(MetaDamage),
}

#[test]
fn reader_opens_what_was_sealed_and_refuses_any_damage() {
    let ring = Keyring::generate("2026-11-28T00:00:00Z");
    let dir = tempfile::tempdir().expect("tempdir");
    let attack = prop_oneof![
        1 => Just(Attack::None),
        3 => damage().prop_map(Attack::Body),
        3 => meta_damage().prop_map(Attack::Metadata),
    ];
    let s = (shape(), bytes(3 * 4096 + 100), record(), attack);
    run(
        "reader (decrypt_file): seal + damage body/metadata",
        cases_from("PROPTEST_CASES", CASES),
        s,
        |(shape, plain, r, attack)| {
            let obj = seal_object(&ring, shape, &plain, &r);
            match attack {
                Attack::None => {
                    let out = decrypt(&ring, dir.path(), &obj.stored, &obj.metadata);
                    prop_assert_eq!(out.as_deref(), Ok(&obj.plain[..]));
                }
                Attack::Body(d) => {
                    let damaged = d.apply(&obj.stored);
                    let out = decrypt(&ring, dir.path(), &damaged, &obj.metadata);
                    // Damage inside an extension's zero padding is caught by the record parser;
                    // nothing else is exempt.
                    prop_assert!(out.is_err(), "damaged body opened: {:?} {:?}", shape, d);
                }
                Attack::Metadata(md) => {
                    if let Some(m) = md.apply(&obj.metadata)
                        && let Ok(out) = decrypt(&ring, dir.path(), &obj.stored, &m)
                    {
                        prop_assert!(
                            equivalent(&obj.metadata, &m),
                            "damaged metadata opened: {:?} {:?}",
                            shape,
                            md
                        );
                        prop_assert_eq!(out, obj.plain);
                    }
                }
            }
            Ok(())
        },
    );
}

#[test]
fn reader_takes_any_bytes_and_any_metadata() {
    let ring = Keyring::generate("2026-11-28T00:00:00Z");
    let dir = tempfile::tempdir().expect("tempdir");
    let name = proptest::sample::select(vec![
        meta::VERSION,
        meta::KEK,
        meta::DEK,
        meta::RECORD,
        meta::PARTS,
        "other",
    ]);
    let value = prop_oneof![".{0,20}", "[0-9]{1,3}", "[A-Za-z0-9+/=]{0,120}"];
    let metadata = proptest::collection::btree_map(name.prop_map(str::to_string), value, 0..6);
    let s = (bytes(2000), metadata, any::<bool>());
    run(
        "reader (decrypt_file): arbitrary bytes and metadata",
        cases_from("PROPTEST_CASES", CASES * 4),
        s,
        |(stored, mut m, real_dek)| {
            if real_dek {
                // A genuine wrapped DEK for this object, so the reader gets past the unwrap.
                let (v, kek) = ring.active();
                let wrapped = wrap_dek(kek, v, &Key256::random(), BUCKET, KEY);
                m.insert(meta::VERSION.into(), ENVELOPE_VERSION.to_string());
                m.insert(meta::KEK.into(), v.to_string());
                m.insert(meta::DEK.into(), B64.encode(wrapped.bytes));
            }
            prop_assert!(decrypt(&ring, dir.path(), &stored, &m).is_err());
            Ok(())
        },
    );
}

/// Regression (a fuzz finding, fixed): an fs-store object file whose header claims a size near
/// `u64::MAX` made `decrypt_file` add the body offset to it without a check. A claimed size
/// larger than the file is now refused before any arithmetic uses it.
#[test]
fn an_fs_object_file_claiming_a_huge_size_is_refused() {
    let ring = Keyring::generate("2026-11-28T00:00:00Z");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("object");
    for (shape, size) in [(Shape::Metadata, u64::MAX), (Shape::Multipart(2), u64::MAX - 100)] {
        // A genuine object's metadata, so the reader gets past the unwrap to the body.
        let obj = seal_object(&ring, shape, b"plaintext", &ObjectRecord::default());
        let metadata = serde_json::to_string(&obj.metadata).expect("json");
        let header =
            format!(r#"{{"key":"{KEY}","metadata":{metadata},"etag":"","last_modified_unix_nanos":0,"size":{size}}}"#);
        let mut file = b"EPFSOBJ1".to_vec();
        file.extend_from_slice(&(header.len() as u32).to_be_bytes());
        file.extend_from_slice(header.as_bytes());
        file.extend_from_slice(&obj.stored);
        std::fs::write(&path, &file).expect("write");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let mut out = Vec::new();
        let result = rt.block_on(decrypt_file(&ring, BUCKET, KEY, None, &path, &mut out));
        assert!(result.is_err(), "size {size}");
    }
}
