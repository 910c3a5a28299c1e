//! The stream format (`crypto::segment`): header, extension, trailer, segments, a whole stream,
//! and the range-to-segment arithmetic. The store controls every stored byte, so each parser
//! takes arbitrary bytes; each seal has its must-fail twins.

use proptest::prelude::*;

use escrow_proxy::crypto::format::{ChecksumAlgorithm, HEADER_LEN, SEGMENT_LOG2_RANGE, TAG_LEN, TRAILER_LEN};
use escrow_proxy::crypto::segment::{
    Layout, StreamHeader, StreamOpener, Trailer, build_extension, open_all, open_trailer, parse_extension, seal_all,
    seal_trailer,
};
use escrow_proxy::secret::Key256;

use super::support::{Damage, bytes, cases_from, damage, run};

/// Default cases of the cheap targets.
const CASES: u32 = 256;
/// Default cases of the targets that seal whole streams.
const STREAM_CASES: u32 = 64;
/// Largest extension a header can announce.
const MAX_EXTENSION: usize = (1 << 24) - 1;

fn key() -> impl Strategy<Value = Key256> {
    any::<[u8; 32]>().prop_map(Key256::from_bytes)
}

fn header() -> impl Strategy<Value = StreamHeader> {
    // `StreamHeader` has no public constructor from fields: draw its random fields by decoding
    // well-formed bytes.
    (
        SEGMENT_LOG2_RANGE,
        0..=MAX_EXTENSION,
        any::<[u8; 16]>(),
        any::<[u8; 7]>(),
    )
        .prop_map(|(log2, ext, salt, prefix)| {
            let mut b = [0u8; HEADER_LEN];
            b[..3].copy_from_slice(b"EPX");
            b[3] = 1;
            b[4] = log2;
            b[5..8].copy_from_slice(&(ext as u32).to_be_bytes()[1..]);
            b[8..24].copy_from_slice(&salt);
            b[24..31].copy_from_slice(&prefix);
            StreamHeader::decode(&b).expect("well-formed header")
        })
}

fn checksum() -> impl Strategy<Value = Option<(ChecksumAlgorithm, Vec<u8>)>> {
    prop_oneof![
        Just(None),
        (
            proptest::sample::select(ChecksumAlgorithm::ALL.to_vec()),
            any::<[u8; 32]>()
        )
            .prop_map(|(a, d)| Some((a, d[..a.digest_len()].to_vec()))),
    ]
}

fn trailer() -> impl Strategy<Value = Trailer> {
    (any::<u64>(), any::<[u8; 16]>(), checksum(), header()).prop_map(|(plain_len, md5, checksum, header)| Trailer {
        plain_len,
        md5,
        checksum,
        header,
    })
}

#[test]
fn header_decode_takes_any_bytes() {
    run(
        "stream header decode (arbitrary bytes)",
        cases_from("PROPTEST_CASES", CASES),
        bytes(64),
        |b| {
            if let Ok(h) = StreamHeader::decode(&b) {
                // Only canonical headers decode: re-encoding gives the same 32 bytes.
                prop_assert_eq!(&h.encode()[..], &b[..HEADER_LEN]);
                prop_assert!(h.layout().segment_size() >= 1 << 12);
            }
            Ok(())
        },
    );
}

#[test]
fn header_round_trips_and_every_field_is_checked() {
    let s = (header(), 0..HEADER_LEN, 0u8..8);
    run(
        "stream header round trip + bit flips",
        cases_from("PROPTEST_CASES", CASES),
        s,
        |(h, at, bit)| {
            let enc = h.encode();
            prop_assert_eq!(StreamHeader::decode(&enc), Ok(h));
            let mut bad = enc;
            bad[at] ^= 1 << bit;
            prop_assert_ne!(StreamHeader::decode(&bad), Ok(h));
            prop_assert!(StreamHeader::decode(&enc[..at]).is_err());
            Ok(())
        },
    );
}

#[test]
fn extension_parse_takes_any_bytes() {
    run(
        "header extension parse (arbitrary bytes)",
        cases_from("PROPTEST_CASES", CASES),
        bytes(300),
        |ext| {
            if let Ok(record) = parse_extension(&ext) {
                let len = u32::from_be_bytes([ext[0], ext[1], ext[2], ext[3]]) as usize;
                prop_assert_eq!(record, &ext[4..4 + len]);
                prop_assert!(ext[4 + len..].iter().all(|b| *b == 0));
            }
            Ok(())
        },
    );
}

#[test]
fn extension_round_trips_and_marks_the_stored_length() {
    let s = (bytes(4096), 0u64..(1 << 40), SEGMENT_LOG2_RANGE);
    run(
        "header extension round trip",
        cases_from("PROPTEST_CASES", CASES),
        s,
        |(record, plain_len, log2)| {
            let ext = build_extension(&record, plain_len, log2);
            prop_assert_eq!(parse_extension(&ext), Ok(&record[..]));
            // Any non-zero padding byte, or a length pointing past the end, is refused.
            if ext.len() > 4 + record.len() {
                let mut padded = ext.clone();
                *padded.last_mut().expect("non-empty") = 1;
                prop_assert!(parse_extension(&padded).is_err());
            }
            let mut long = ext.clone();
            long[..4].copy_from_slice(&(ext.len() as u32 - 3).to_be_bytes());
            prop_assert!(parse_extension(&long).is_err());
            // The extended stream's stored length is one no plain stream has (FORMAT.md §2.6).
            let b = [
                &b"EPX\x01"[..],
                &[log2],
                &(ext.len() as u32).to_be_bytes()[1..],
                &[0u8; 24],
            ]
            .concat();
            let header = StreamHeader::decode(&b).expect("header");
            let stored = header.layout().stored_len(plain_len);
            prop_assert_eq!(Layout::new(log2).plain_len(stored), None);
            prop_assert_eq!(header.layout().plain_len(stored), Some(plain_len));
            Ok(())
        },
    );
}

#[test]
fn trailer_open_takes_any_bytes() {
    let s = (
        key(),
        any::<u32>(),
        prop_oneof![
            bytes(200),
            bytes(TRAILER_LEN).prop_map(|mut b| {
                b.resize(TRAILER_LEN, 0);
                b
            })
        ],
    );
    run(
        "trailer open (arbitrary bytes)",
        cases_from("PROPTEST_CASES", CASES),
        s,
        |(dek, part, b)| {
            prop_assert!(open_trailer(&dek, part, &b).is_err());
            Ok(())
        },
    );
}

#[test]
fn trailer_round_trips_and_must_fail() {
    let s = (key(), any::<u32>(), trailer(), damage(), any::<u32>());
    run(
        "trailer seal/open + damage",
        cases_from("PROPTEST_CASES", CASES),
        s,
        |(dek, part, t, d, other)| {
            let sealed = seal_trailer(&dek, part, &t);
            prop_assert_eq!(sealed.len(), TRAILER_LEN);
            prop_assert_eq!(open_trailer(&dek, part, &sealed), Ok(t));
            prop_assert!(open_trailer(&dek, part, &d.apply(&sealed)).is_err());
            if other != part {
                prop_assert!(open_trailer(&dek, other, &sealed).is_err(), "bound to the part number");
            }
            Ok(())
        },
    );
}

#[test]
fn segment_open_takes_any_bytes() {
    let s = (key(), any::<u32>(), header(), any::<u64>(), any::<bool>(), bytes(300));
    run(
        "segment open (arbitrary bytes)",
        cases_from("PROPTEST_CASES", CASES),
        s,
        |(dek, part, h, i, last, mut b)| {
            prop_assert!(StreamOpener::new(&dek, part, h).open_segment(i, last, &mut b).is_err());
            Ok(())
        },
    );
}

/// A small stream: 4 KiB segments, 0..=3 segments of plaintext, maybe an extension.
fn stream_input() -> impl Strategy<Value = (Key256, u32, Vec<u8>, Vec<u8>, StreamHeader, Trailer)> {
    (
        key(),
        any::<u32>(),
        bytes(3 * 4096 + 17),
        prop_oneof![Just(Vec::new()), bytes(200)],
        header(),
        trailer(),
    )
        .prop_map(|(dek, part, plain, record, h, t)| {
            let b = h.encode();
            let mut b12 = b;
            b12[4] = 12;
            let ext = if record.is_empty() {
                Vec::new()
            } else {
                build_extension(&record, plain.len() as u64, 12)
            };
            b12[5..8].copy_from_slice(&(ext.len() as u32).to_be_bytes()[1..]);
            let header = StreamHeader::decode(&b12).expect("header");
            let trailer = Trailer {
                plain_len: plain.len() as u64,
                header,
                ..t
            };
            (dek, part, plain, ext, header, trailer)
        })
}

#[test]
fn whole_stream_round_trips_and_any_damage_fails() {
    let s = (stream_input(), damage());
    run(
        "whole stream seal/open + damage",
        cases_from("PROPTEST_CASES", STREAM_CASES),
        s,
        |((dek, part, plain, ext, h, t), d)| {
            let stored = seal_all(&dek, part, h, &ext, &plain, &t);
            prop_assert_eq!(stored.len() as u64, h.layout().stored_len(plain.len() as u64));
            let (back, trailer) = open_all(&dek, part, &stored).expect("opens");
            prop_assert_eq!(&back, &plain);
            prop_assert_eq!(trailer, t);
            // The extension is not authenticated by the stream itself (the record inside it is
            // sealed on its own), so damage is aimed everywhere else.
            let damaged = d.apply(&stored);
            let in_extension = matches!(d, Damage::Flip { at, .. } if (HEADER_LEN..HEADER_LEN + ext.len()).contains(&(at % stored.len())));
            if !in_extension {
                prop_assert!(open_all(&dek, part, &damaged).is_err());
            }
            prop_assert!(open_all(&dek, part.wrapping_add(1), &stored).is_err());
            Ok(())
        },
    );
}

#[test]
fn whole_stream_open_takes_any_bytes() {
    // Arbitrary bytes behind a well-formed header (so the parser gets past the magic).
    let s = (key(), header(), bytes(9000), any::<bool>());
    run(
        "whole stream open (arbitrary bytes)",
        cases_from("PROPTEST_CASES", CASES),
        s,
        |(dek, h, rest, with_header)| {
            let b = if with_header {
                [&h.encode()[..], &rest].concat()
            } else {
                rest
            };
            prop_assert!(open_all(&dek, 0, &b).is_err());
            Ok(())
        },
    );
}

/// Largest plaintext of a stream with `2^log2`-byte segments (segment indices fit the nonce).
fn max_plain(log2: u8) -> u64 {
    ((u32::MAX as u64) - 1) << log2
}

#[test]
fn layout_arithmetic_holds_for_any_size_and_range() {
    let s = (header(), any::<u64>(), any::<u64>(), any::<u64>());
    run(
        "layout: stored_len / plain_len / locate",
        cases_from("PROPTEST_CASES", CASES * 4),
        s,
        |(h, p, a, b)| {
            let layout = h.layout();
            let seg = layout.segment_size();
            // Sizes anywhere in the format's range, biased towards small ones.
            let plain_len = match p % 3 {
                0 => p % (seg * 4) + 1,
                1 => p % (1 << 40) + 1,
                _ => p % max_plain(h.layout().segment_size().trailing_zeros() as u8) + 1,
            };
            prop_assert!(layout.fits(plain_len));
            let stored_len = layout.stored_len(plain_len);
            let n = layout.segment_count(plain_len);
            prop_assert_eq!(n, plain_len.div_ceil(seg));
            prop_assert_eq!(layout.plain_len(stored_len), Some(plain_len));
            let body_start = HEADER_LEN as u64 + h.extension_len() as u64;
            let all: u64 = if n <= 4 {
                (0..n).map(|i| layout.stored_segment_len(plain_len, i)).sum()
            } else {
                (n - 1) * (seg + TAG_LEN as u64) + layout.stored_segment_len(plain_len, n - 1)
            };
            prop_assert_eq!(body_start + all + TRAILER_LEN as u64, stored_len);

            let (mut a, mut b) = (a % plain_len, b % plain_len);
            if a > b {
                std::mem::swap(&mut a, &mut b);
            }
            let span = layout
                .locate(plain_len, a..b + 1)
                .expect("a range within the plaintext");
            // Exactly the segments that hold the range.
            prop_assert_eq!(span.first_segment, a / seg);
            prop_assert_eq!(span.last_segment, b / seg);
            prop_assert_eq!(span.skip, a % seg);
            prop_assert_eq!(span.len, b + 1 - a);
            // Their stored bytes, which start where the first one starts and end inside the body.
            prop_assert_eq!(
                span.stored.start,
                body_start + span.first_segment * (seg + TAG_LEN as u64)
            );
            let count = span.last_segment - span.first_segment + 1;
            let expect = if span.last_segment + 1 == n {
                (count - 1) * (seg + TAG_LEN as u64) + layout.stored_segment_len(plain_len, n - 1)
            } else {
                count * (seg + TAG_LEN as u64)
            };
            prop_assert_eq!(span.stored.end - span.stored.start, expect);
            prop_assert!(span.stored.end <= stored_len - TRAILER_LEN as u64);
            // The plaintext the span yields covers the range.
            prop_assert!(span.skip + span.len <= count * seg);
            Ok(())
        },
    );
}

#[test]
fn plain_len_takes_any_stored_length() {
    let s = (header(), any::<u64>());
    run(
        "layout: plain_len (arbitrary stored length)",
        cases_from("PROPTEST_CASES", CASES * 4),
        s,
        |(h, stored)| {
            if let Some(p) = h.layout().plain_len(stored) {
                prop_assert_eq!(h.layout().stored_len(p), stored);
            }
            Ok(())
        },
    );
}
