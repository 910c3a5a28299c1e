//! The manifest of a multipart object (`crypto::manifest`): the tail length read from the last
//! stored bytes, the sealed part table, and the range-to-part mapping.

use proptest::prelude::*;

use escrow_proxy::crypto::envelope::ObjectRecord;
use escrow_proxy::crypto::format::{NONCE_LEN, TAG_LEN};
use escrow_proxy::crypto::manifest::{LEN_SUFFIX, MAX_PART_NUMBER, MAX_SEALED_LEN, Manifest, PartEntry};
use escrow_proxy::crypto::segment::StreamHeader;
use escrow_proxy::secret::Key256;

use super::envelope::record;
use super::support::{bytes, cases_from, damage, run};

const CASES: u32 = 256;
const SEAL_CASES: u32 = 64;

fn key() -> impl Strategy<Value = Key256> {
    any::<[u8; 32]>().prop_map(Key256::from_bytes)
}

fn part_header() -> impl Strategy<Value = StreamHeader> {
    (12u8..=24, any::<[u8; 16]>(), any::<[u8; 7]>()).prop_map(|(log2, salt, prefix)| {
        let b = [&b"EPX\x01"[..], &[log2, 0, 0, 0], &salt, &prefix, &[0]].concat();
        StreamHeader::decode(&b).expect("well-formed header")
    })
}

/// A manifest of 1..=`max_parts` parts with ascending numbers, sizes up to `max_part`.
pub fn manifest(max_parts: usize, max_part: u64) -> impl Strategy<Value = Manifest> {
    (
        proptest::collection::btree_set(1..=MAX_PART_NUMBER, 1..=max_parts),
        proptest::collection::vec((0..=max_part, any::<[u8; 16]>(), part_header()), max_parts),
        record(),
    )
        .prop_map(|(numbers, sizes, record)| {
            let parts: Vec<PartEntry> = numbers
                .into_iter()
                .zip(sizes)
                .map(|(number, (plain_len, md5, header))| PartEntry {
                    number,
                    plain_len,
                    md5,
                    header,
                })
                .collect();
            let size = parts.iter().map(|p| p.plain_len).sum();
            Manifest {
                parts,
                record: ObjectRecord { size, ..record },
            }
        })
}

#[test]
fn tail_len_takes_any_suffix() {
    run(
        "manifest tail_len (arbitrary bytes)",
        cases_from("PROPTEST_CASES", CASES),
        bytes(16),
        |b| {
            if let Ok(n) = Manifest::tail_len(&b) {
                // Bounded before anything is read or allocated from it.
                prop_assert!((NONCE_LEN + TAG_LEN + LEN_SUFFIX..=MAX_SEALED_LEN + LEN_SUFFIX).contains(&n));
            }
            Ok(())
        },
    );
}

#[test]
fn open_takes_any_tail() {
    let s = (key(), bytes(64), bytes(600), any::<u64>(), any::<bool>());
    run(
        "manifest open (arbitrary bytes)",
        cases_from("PROPTEST_CASES", CASES),
        s,
        |(dek, binding, mut tail, stored_len, fix_len)| {
            if fix_len && tail.len() >= LEN_SUFFIX {
                // A length suffix that matches, so the opener gets as far as the AEAD.
                let n = (tail.len() - LEN_SUFFIX) as u32;
                let at = tail.len() - LEN_SUFFIX;
                tail[at..].copy_from_slice(&n.to_be_bytes());
            }
            prop_assert!(Manifest::open(&dek, &binding, &tail, stored_len).is_err());
            Ok(())
        },
    );
}

#[test]
fn seal_open_round_trips_and_must_fail() {
    let s = (key(), bytes(60), manifest(12, 1 << 36), damage(), 1u64..1 << 20);
    run(
        "manifest seal/open + damage",
        cases_from("PROPTEST_CASES", SEAL_CASES),
        s,
        |(dek, binding, m, d, off)| {
            let tail = m.seal(&dek, &binding);
            let stored = m.parts_stored_len() + tail.len() as u64;
            prop_assert_eq!(Manifest::tail_len(&tail[tail.len() - LEN_SUFFIX..]), Ok(tail.len()));
            prop_assert_eq!(Manifest::open(&dek, &binding, &tail, stored), Ok(m.clone()));
            prop_assert!(Manifest::open(&dek, &binding, &d.apply(&tail), stored).is_err());
            prop_assert!(Manifest::open(&dek, &binding, &tail, stored + off).is_err());
            prop_assert!(Manifest::open(&dek, &binding, &tail, stored.saturating_sub(off)).is_err());
            let mut other = binding.clone();
            other.push(0);
            prop_assert!(Manifest::open(&dek, &other, &tail, stored).is_err());
            Ok(())
        },
    );
}

#[test]
fn locate_and_part_range_cover_exactly_the_range() {
    let s = (manifest(20, 1 << 40), any::<u64>(), any::<u64>());
    run(
        "manifest locate / part_range",
        cases_from("PROPTEST_CASES", CASES),
        s,
        |(m, a, b)| {
            let total = m.record.size;
            // Part ranges tile the object, in order, and their stored starts add up.
            let mut plain = 0;
            let mut stored = 0;
            for (i, part) in m.parts.iter().enumerate() {
                prop_assert_eq!(m.part_range(i), (plain..plain + part.plain_len, stored));
                plain += part.plain_len;
                stored += part.stored_len();
            }
            prop_assert_eq!(plain, total);
            prop_assert_eq!(stored, m.parts_stored_len());
            // Any range, even empty or past the end: the slices are the non-empty intersections.
            let (start, end) = (a % (total + 2), b % (total + 2));
            let slices = m.locate(start..end);
            let want = end.min(total).saturating_sub(start);
            prop_assert_eq!(slices.iter().map(|s| s.range.end - s.range.start).sum::<u64>(), want);
            let mut at = start;
            for s in &slices {
                let (range, stored_start) = m.part_range(s.index);
                prop_assert_eq!(s.stored_start, stored_start);
                prop_assert!(s.range.start < s.range.end && s.range.end <= m.parts[s.index].plain_len);
                prop_assert_eq!(range.start + s.range.start, at, "contiguous");
                at = range.start + s.range.end;
            }
            Ok(())
        },
    );
}

/// Regression: a part too large for the format (more segments than the nonce counts) in an
/// authentic manifest made `open` overflow while adding up stored lengths (a panic in debug
/// builds, a wrapped sum in release). Only a holder of the object's key can seal one, but the
/// reader must refuse it, not crash.
#[test]
fn a_part_beyond_the_format_is_refused_not_overflowed() {
    let dek = Key256::random();
    for plain_len in [u64::MAX, u64::MAX - 200, 1 << 62, (u32::MAX as u64) << 24] {
        let header = StreamHeader::random(24);
        let m = Manifest {
            parts: vec![PartEntry {
                number: 1,
                plain_len,
                md5: [0; 16],
                header,
            }],
            record: ObjectRecord {
                size: plain_len,
                ..Default::default()
            },
        };
        let tail = m.seal(&dek, b"binding");
        for stored_len in [0, tail.len() as u64, u64::MAX] {
            assert!(
                Manifest::open(&dek, b"binding", &tail, stored_len).is_err(),
                "{plain_len}"
            );
        }
    }
    // Each part within the format, but the stored lengths add up past u64::MAX.
    let big = 1u64 << 56;
    let mut parts: Vec<PartEntry> = (1..=256)
        .map(|number| PartEntry {
            number,
            plain_len: big,
            md5: [0; 16],
            header: StreamHeader::random(24),
        })
        .collect();
    parts[255].plain_len = big - 1;
    let m = Manifest {
        parts,
        record: ObjectRecord {
            size: u64::MAX,
            ..Default::default()
        },
    };
    let tail = m.seal(&dek, b"binding");
    assert!(Manifest::open(&dek, b"binding", &tail, u64::MAX).is_err());
}
