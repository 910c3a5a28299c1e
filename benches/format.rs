//! Micro-benchmarks of the storage format (FORMAT.md): `cargo bench --bench format`.
//!
//! - `segment_seal` / `segment_open`: one segment of 16 KiB … 1 MiB, sealed or opened in place,
//!   with `ring` (the proxy's own code path, [`StreamSealer`] / [`StreamOpener`]) and, for
//!   comparison, the `aes-gcm` crate doing the same AES-256-GCM with the same nonce and AAD.
//! - `object`: whole objects (4 KiB, 1 MiB, 16 MiB, 64 KiB segments): `seal` is the format alone
//!   (fresh DEK, header, segments, trailer), `put_body` is what a PUT computes ([`EncryptBody`]:
//!   the format plus the plaintext MD5 for the ETag), `get_body` is what a GET computes
//!   ([`DecryptBody`]), and `md5` is the MD5 alone.
//! - `range`: mapping a plaintext range to stored segments ([`Layout::locate`]) and back.
//! - `dek`: wrapping and unwrapping a DEK under a KEK, and deriving a stream key (HKDF).
//!
//! Runs are kept short (0.5 s warm-up, 2 s measurement each): the whole command takes about
//! two minutes on a 2-core machine. Pass a filter as usual (`cargo bench --bench format -- seal`).

use std::hint::black_box;
use std::time::Duration;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use bytes::Bytes;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures::{StreamExt, TryStreamExt, stream};
use md5::Digest as _;

use escrow_proxy::crypto::envelope::{stream_key, unwrap_dek, wrap_dek};
use escrow_proxy::crypto::format::{
    DEFAULT_SEGMENT_LOG2, ENVELOPE_VERSION, NONCE_LEN, SINGLE_PART, TAG_LEN, TRAILER_LEN,
};
use escrow_proxy::crypto::segment::{
    Layout, StreamHeader, StreamOpener, StreamSealer, Trailer, open_trailer, seal_all,
};
use escrow_proxy::object::body::{DecryptBody, EncryptBody, Expectations, Piece};
use escrow_proxy::secret::Key256;

/// Segment sizes measured, as log2: 16 KiB, 64 KiB (the default), 256 KiB, 1 MiB.
const SEGMENT_LOG2S: [u8; 4] = [14, 16, 18, 20];
/// Object sizes measured.
const OBJECT_SIZES: [usize; 3] = [4 << 10, 1 << 20, 16 << 20];
/// Chunk size of the simulated client body (what hyper hands the proxy is of this order).
const BODY_CHUNK: usize = 64 << 10;
/// The 32-byte stream header is every segment's AAD; any 32 bytes cost the same.
const AAD_LEN: usize = 32;

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
        .configure_from_args()
}

fn plaintext(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(31) % 251) as u8).collect()
}

fn aes_gcm_crate(key: &Key256) -> Aes256Gcm {
    Aes256Gcm::new_from_slice(key.expose()).expect("32-byte key")
}

// === segments ===

fn segment_seal(c: &mut Criterion) {
    let mut group = c.benchmark_group("segment_seal");
    for log2 in SEGMENT_LOG2S {
        let size = 1usize << log2;
        group.throughput(Throughput::Bytes(size as u64));
        let dek = Key256::random();
        let header = StreamHeader::random(log2);
        let mut sealer = StreamSealer::new(&dek, SINGLE_PART, header);
        let mut buf = plaintext(size);
        buf.reserve(TAG_LEN);
        group.bench_function(BenchmarkId::new("ring", kib(size)), |b| {
            b.iter(|| {
                // Re-seal the same buffer in place (ciphertext of ciphertext costs the same).
                buf.truncate(size);
                sealer.seal_segment(&mut buf, false);
                black_box(&buf);
            })
        });
        let cipher = aes_gcm_crate(&stream_key(&dek, &[0; 16], SINGLE_PART));
        let aad = header.encode();
        let nonce = [7u8; NONCE_LEN];
        let mut buf = plaintext(size);
        group.bench_function(BenchmarkId::new("aes-gcm", kib(size)), |b| {
            b.iter(|| {
                let tag = cipher
                    .encrypt_in_place_detached(Nonce::from_slice(&nonce), &aad, &mut buf)
                    .expect("seals");
                black_box(tag);
            })
        });
    }
    group.finish();
}

fn segment_open(c: &mut Criterion) {
    let mut group = c.benchmark_group("segment_open");
    for log2 in SEGMENT_LOG2S {
        let size = 1usize << log2;
        group.throughput(Throughput::Bytes(size as u64));
        let dek = Key256::random();
        let header = StreamHeader::random(log2);
        let mut sealed = plaintext(size);
        StreamSealer::new(&dek, SINGLE_PART, header).seal_segment(&mut sealed, false);
        let opener = StreamOpener::new(&dek, SINGLE_PART, header);
        group.bench_function(BenchmarkId::new("ring", kib(size)), |b| {
            b.iter_batched_ref(
                || sealed.clone(),
                |buf| {
                    let plain = opener.open_segment(0, false, buf).expect("opens");
                    black_box(plain.len());
                },
                BatchSize::LargeInput,
            )
        });
        let cipher = aes_gcm_crate(&Key256::random());
        let aad = [1u8; AAD_LEN];
        let nonce = [7u8; NONCE_LEN];
        let mut ct = plaintext(size);
        let tag = cipher
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), &aad, &mut ct)
            .expect("seals");
        group.bench_function(BenchmarkId::new("aes-gcm", kib(size)), |b| {
            b.iter_batched_ref(
                || ct.clone(),
                |buf| {
                    cipher
                        .decrypt_in_place_detached(Nonce::from_slice(&nonce), &aad, buf, &tag)
                        .expect("opens");
                    black_box(buf.len());
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

// === whole objects ===

/// A whole object sealed into memory (fresh DEK and header), and what reading it back needs.
struct Sealed {
    dek: Key256,
    stored: Vec<u8>,
}

fn seal_object(plain: &[u8]) -> Sealed {
    let dek = Key256::random();
    let header = StreamHeader::random(DEFAULT_SEGMENT_LOG2);
    let trailer = Trailer {
        plain_len: plain.len() as u64,
        // The format alone: `put_body` and `md5` measure the hash the ETag needs.
        md5: [0; 16],
        checksum: None,
        header,
    };
    let stored = seal_all(&dek, SINGLE_PART, header, &[], plain, &trailer);
    Sealed { dek, stored }
}

fn chunks(data: &Bytes) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Unpin + use<> {
    let data = data.clone();
    stream::iter(
        (0..data.len().div_ceil(BODY_CHUNK))
            .map(move |i| Ok(data.slice(i * BODY_CHUNK..((i + 1) * BODY_CHUNK).min(data.len())))),
    )
}

fn object(c: &mut Criterion) {
    let mut group = c.benchmark_group("object");
    for size in OBJECT_SIZES {
        group.throughput(Throughput::Bytes(size as u64));
        let plain = Bytes::from(plaintext(size));
        group.bench_function(BenchmarkId::new("seal", kib(size)), |b| {
            b.iter(|| black_box(seal_object(&plain).stored.len()))
        });
        group.bench_function(BenchmarkId::new("put_body", kib(size)), |b| {
            b.iter(|| {
                let dek = Key256::random();
                let mut body = EncryptBody::new(
                    chunks(&plain),
                    &dek,
                    SINGLE_PART,
                    StreamHeader::random(DEFAULT_SEGMENT_LOG2),
                    Vec::new(),
                    size as u64,
                    Expectations::default(),
                );
                let stored: usize = futures::executor::block_on(
                    (&mut body)
                        .map_ok(|c| c.len())
                        .try_fold(0, |n, l| async move { Ok::<_, std::io::Error>(n + l) }),
                )
                .expect("encrypts");
                black_box((stored, body.outcome()));
            })
        });
        let sealed = seal_object(&plain);
        let stored = Bytes::from(sealed.stored[..sealed.stored.len() - TRAILER_LEN].to_vec());

        group.bench_function(BenchmarkId::new("get_body", kib(size)), |b| {
            b.iter(|| {
                let trailer = open_trailer(
                    &sealed.dek,
                    SINGLE_PART,
                    &sealed.stored[sealed.stored.len() - TRAILER_LEN..],
                )
                .expect("trailer opens");
                let (piece, _) = Piece::new(SINGLE_PART, trailer.header, size as u64, 0..size as u64, true, false)
                    .expect("range within the stream");
                let body = DecryptBody::new(chunks(&stored), &sealed.dek, vec![piece]);
                let n: usize =
                    futures::executor::block_on(body.map(|r| r.expect("decrypts").len()).collect::<Vec<_>>())
                        .into_iter()
                        .sum();
                assert_eq!(n, size);
            })
        });
        group.bench_function(BenchmarkId::new("md5", kib(size)), |b| {
            b.iter(|| black_box(md5::Md5::digest(&plain)))
        });
    }
    group.finish();
}

// === range mapping ===

fn range(c: &mut Criterion) {
    let mut group = c.benchmark_group("range");
    let layout = Layout::new(DEFAULT_SEGMENT_LOG2);
    let plain_len = 1u64 << 30;
    group.bench_function("locate_1MiB_in_1GiB", |b| {
        let mut start = 12_345u64;
        b.iter(|| {
            start = (start + 7_777_777) % (plain_len - (1 << 20));
            black_box(layout.locate(plain_len, start..start + (1 << 20)))
        })
    });
    group.bench_function("stored_len_and_back", |b| {
        let mut p = 1u64;
        b.iter(|| {
            p = p.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1) >> 24;
            black_box(layout.plain_len(layout.stored_len(p)))
        })
    });
    group.finish();
}

// === DEK wrap / unwrap ===

fn dek(c: &mut Criterion) {
    let mut group = c.benchmark_group("dek");
    let kek = Key256::random();
    let dek = Key256::random();
    let (bucket, key) = ("bench-bucket", "some/object/key.bin");
    group.bench_function("wrap/ring", |b| {
        b.iter(|| black_box(wrap_dek(&kek, 1, &dek, bucket, key)))
    });
    let wrapped = wrap_dek(&kek, 1, &dek, bucket, key).bytes;
    group.bench_function("unwrap/ring", |b| {
        b.iter(|| black_box(unwrap_dek(&kek, 1, ENVELOPE_VERSION, &wrapped, bucket, key).expect("unwraps")))
    });
    // The same work through the aes-gcm crate: key schedule, then a 32-byte seal or open with
    // an AAD of the same length as the proxy's (label, version, KEK version, bucket, key).
    let aad = vec![3u8; 21 + 1 + 4 + 4 + bucket.len() + 4 + key.len()];
    let nonce = [9u8; NONCE_LEN];
    group.bench_function("wrap/aes-gcm", |b| {
        b.iter(|| {
            let mut buf = dek.expose().to_vec();
            let tag = aes_gcm_crate(&kek)
                .encrypt_in_place_detached(Nonce::from_slice(&nonce), &aad, &mut buf)
                .expect("seals");
            black_box((buf, tag))
        })
    });
    let mut ct = dek.expose().to_vec();
    let tag = aes_gcm_crate(&kek)
        .encrypt_in_place_detached(Nonce::from_slice(&nonce), &aad, &mut ct)
        .expect("seals");
    group.bench_function("unwrap/aes-gcm", |b| {
        b.iter(|| {
            let mut buf = ct.clone();
            aes_gcm_crate(&kek)
                .decrypt_in_place_detached(Nonce::from_slice(&nonce), &aad, &mut buf, &tag)
                .expect("opens");
            black_box(buf)
        })
    });
    group.bench_function("stream_key_hkdf", |b| {
        b.iter(|| black_box(stream_key(&dek, &[5; 16], SINGLE_PART)))
    });
    group.finish();
}

fn kib(size: usize) -> String {
    if size >= 1 << 20 {
        format!("{}MiB", size >> 20)
    } else {
        format!("{}KiB", size >> 10)
    }
}

criterion_group! {
    name = benches;
    config = config();
    targets = segment_seal, segment_open, object, range, dek
}
criterion_main!(benches);
