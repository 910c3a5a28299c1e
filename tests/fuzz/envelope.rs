//! Envelope keys and the sealed record (`crypto::envelope`): a wrapped DEK and a sealed record
//! are stored metadata the store controls.

use std::collections::BTreeMap;

use proptest::prelude::*;

use escrow_proxy::crypto::envelope::{
    ObjectRecord, WRAPPED_DEK_LEN, WRAPPED_DEK_V3_LEN, open_record, seal_record, unwrap_dek, wrap_dek,
};
use escrow_proxy::crypto::format::ENVELOPE_VERSION;
use escrow_proxy::secret::Key256;

use super::support::{bytes, cases_from, damage, run};

const CASES: u32 = 256;

fn key() -> impl Strategy<Value = Key256> {
    any::<[u8; 32]>().prop_map(Key256::from_bytes)
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![".{0,40}", "[a-z0-9/._-]{0,20}"]
}

/// Any record: optional headers and user metadata of any (Unicode) text.
pub fn record() -> impl Strategy<Value = ObjectRecord> {
    let opt = || proptest::option::of(text());
    (
        any::<u64>(),
        (opt(), opt(), opt(), opt(), opt(), opt()),
        proptest::collection::btree_map(text(), text(), 0..6),
    )
        .prop_map(
            |(
                size,
                (content_type, content_encoding, content_disposition, content_language, cache_control, expires),
                user,
            )| {
                ObjectRecord {
                    size,
                    content_type,
                    content_encoding,
                    content_disposition,
                    content_language,
                    cache_control,
                    expires,
                    user: user.into_iter().collect::<BTreeMap<_, _>>(),
                    written_ms: (size % 2 == 0).then_some(size),
                    sse_c: None,
                }
            },
        )
}

#[test]
fn record_open_takes_any_bytes() {
    let s = (key(), bytes(64), bytes(400));
    run(
        "sealed record open (arbitrary bytes)",
        cases_from("PROPTEST_CASES", CASES),
        s,
        |(dek, binding, sealed)| {
            prop_assert!(open_record(&dek, &binding, &sealed).is_err());
            Ok(())
        },
    );
}

#[test]
fn record_round_trips_and_must_fail() {
    let s = (key(), bytes(64), record(), damage(), key());
    run(
        "sealed record seal/open + damage",
        cases_from("PROPTEST_CASES", CASES),
        s,
        |(dek, binding, r, d, other)| {
            let sealed = seal_record(&dek, &binding, &r);
            prop_assert_eq!(open_record(&dek, &binding, &sealed), Ok(r));
            prop_assert!(open_record(&dek, &binding, &d.apply(&sealed)).is_err());
            prop_assert!(open_record(&other, &binding, &sealed).is_err());
            let mut moved = binding.clone();
            moved.push(1);
            prop_assert!(open_record(&dek, &moved, &sealed).is_err(), "bound to its wrap");
            Ok(())
        },
    );
}

#[test]
fn unwrap_takes_any_wrapped_bytes() {
    // Arbitrary lengths, and exactly the lengths of version 1/2 and version 3 wraps.
    let fixed = |len: usize| {
        bytes(len).prop_map(move |mut b| {
            b.resize(len, 0);
            b
        })
    };
    let s = (
        key(),
        any::<u32>(),
        any::<u8>(),
        prop_oneof![bytes(100), fixed(WRAPPED_DEK_LEN), fixed(WRAPPED_DEK_V3_LEN)],
        text(),
        text(),
    );
    run(
        "DEK unwrap (arbitrary bytes)",
        cases_from("PROPTEST_CASES", CASES),
        s,
        |(kek, v, env, wrapped, b, k)| {
            prop_assert!(unwrap_dek(&kek, v, env, &wrapped, &b, &k).is_err());
            Ok(())
        },
    );
}

#[test]
fn wrap_round_trips_and_is_bound_to_its_object() {
    let s = (key(), key(), any::<u32>(), text(), text(), damage(), text());
    run(
        "DEK wrap/unwrap + damage + binding",
        cases_from("PROPTEST_CASES", CASES),
        s,
        |(kek, dek, v, bucket, k, d, other)| {
            let wrapped = wrap_dek(&kek, v, &dek, &bucket, &k);
            prop_assert_eq!(&wrapped.binding[..], &wrapped.bytes[..16]);
            let wrapped = wrapped.bytes;
            prop_assert_eq!(wrapped.len(), WRAPPED_DEK_V3_LEN);
            let back = unwrap_dek(&kek, v, ENVELOPE_VERSION, &wrapped, &bucket, &k).expect("unwraps");
            prop_assert_eq!(back.dek.expose(), dek.expose());
            prop_assert!(unwrap_dek(&kek, v, ENVELOPE_VERSION, &d.apply(&wrapped), &bucket, &k).is_err());
            prop_assert!(unwrap_dek(&kek, v.wrapping_add(1), ENVELOPE_VERSION, &wrapped, &bucket, &k).is_err());
            prop_assert!(unwrap_dek(&kek, v, ENVELOPE_VERSION - 1, &wrapped, &bucket, &k).is_err());
            if other != k {
                prop_assert!(unwrap_dek(&kek, v, ENVELOPE_VERSION, &wrapped, &bucket, &other).is_err());
            }
            if other != bucket {
                prop_assert!(unwrap_dek(&kek, v, ENVELOPE_VERSION, &wrapped, &other, &k).is_err());
            }
            // Moving bytes between the bucket and the key is not the same object.
            if !k.is_empty() {
                let (moved_bucket, moved_key) = (
                    format!("{bucket}{}", &k[..k.chars().next().map_or(0, char::len_utf8)]),
                    k.chars().skip(1).collect::<String>(),
                );
                prop_assert!(unwrap_dek(&kek, v, ENVELOPE_VERSION, &wrapped, &moved_bucket, &moved_key).is_err());
            }
            Ok(())
        },
    );
}
