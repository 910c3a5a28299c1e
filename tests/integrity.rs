//! The must-fail matrix: every way the store can damage, truncate, reorder, splice or swap a
//! stored object must make a GET fail, never return wrong bytes, and leave an untampered twin
//! readable. Each case runs for both store kinds (`fs::case`, `s3s_fs::case`).
//!
//! A failure may come as an S3 error before the body, or — when the damage lies in a segment
//! after the response headers went out — as a body that breaks off. Either way every byte the
//! client did receive must be the object's true plaintext (the proxy only releases
//! authenticated segments), and a complete body is always a failure of the test.

mod common;

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::presigning::PresigningConfig;

use common::{
    ErrorExt, GetOutcome, HEADER, Harness, MARKER, MIN_PART, SEGMENT, StoreKind, TAG, TRAILER, b64, data_with_marker,
    etag_of, multipart_etag, part_streams, segment_range, stored_len, try_get, unb64, upload_multipart,
};

const BUCKET: &str = "escrow-integrity";
/// The victim: three segments, the last one partial.
const LEN: usize = 2 * SEGMENT + 30_000;
const VICTIM: &str = "victim";
const TWIN: &str = "twin";
/// Same length as the victim, for splicing and swapping.
const OTHER: &str = "other";

/// Runs each listed `async fn case(StoreKind)` once per store kind.
macro_rules! per_store {
    ($($name:ident),* $(,)?) => {
        mod fs {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::StoreKind::Fs).await;
                }
            )*
        }
        mod s3s_fs {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::StoreKind::S3sFs).await;
                }
            )*
        }
    };
}

per_store!(
    untouched_rewrite_still_reads,
    flipped_header_byte,
    flipped_segment_ciphertext,
    flipped_segment_tag,
    flipped_trailer_byte,
    flipped_wrapped_dek,
    flipped_sealed_record,
    unknown_kek_version,
    relabelled_kek_version,
    unknown_format_version,
    truncated_last_segment,
    truncated_trailer,
    dropped_middle_segment,
    dropped_last_segment,
    swapped_segments,
    duplicated_segment,
    spliced_segment_from_another_object,
    spliced_trailer_from_another_object,
    swapped_objects,
    swapped_bodies_only,
    swapped_metadata_only,
    damage_late_in_a_large_object,
    moved_to_another_bucket,
    damaged_empty_object,
    damaged_header_extension,
    mp_untouched_rewrite_still_reads,
    mp_last_part_removed,
    mp_middle_part_dropped,
    mp_parts_swapped_or_duplicated,
    mp_part_spliced_from_another_object,
    mp_flipped_part_bytes,
    mp_flipped_manifest_bytes,
    mp_parts_metadata_removed_or_changed,
    mp_moved_or_swapped,
    mp_small_object_damaged,
);

/// The fixture: a victim, an identical-content twin and another object of the same length.
struct Fixture {
    h: Harness,
    victim: Vec<u8>,
    twin: Vec<u8>,
    other: Vec<u8>,
}

async fn fixture(kind: StoreKind) -> Fixture {
    let h = Harness::new(kind).await;
    h.create_bucket(BUCKET).await;
    let victim = data_with_marker(LEN);
    let twin = victim.clone();
    let other = data_with_marker(LEN);
    for (key, data) in [(VICTIM, &victim), (TWIN, &twin), (OTHER, &other)] {
        h.put(BUCKET, key, data).await;
        assert_eq!(
            h.stored_object(BUCKET, key).body.len(),
            stored_len(LEN),
            "stored layout of {key}"
        );
    }
    Fixture { h, victim, twin, other }
}

impl Fixture {
    /// After tampering: the twin and the other object still read back exactly.
    async fn others_intact(&self) {
        assert!(
            h_get(&self.h, TWIN).await == self.twin,
            "the untampered twin no longer reads back"
        );
        assert!(
            h_get(&self.h, OTHER).await == self.other,
            "the other object no longer reads back"
        );
        self.h.assert_no_plaintext(MARKER);
    }
}

async fn h_get(h: &Harness, key: &str) -> Vec<u8> {
    h.get(BUCKET, key).await
}

// === outcomes ===

/// A plaintext byte range as an HTTP `Range`.
fn range_header(r: &Range<usize>) -> String {
    format!("bytes={}-{}", r.start, r.end - 1)
}

/// GETs `key` (all of it, or `range`) and asserts that it fails without wrong bytes. `truth` is
/// the object's true plaintext. Returns how it failed, for messages.
async fn assert_get_fails(h: &Harness, key: &str, truth: &[u8], range: Option<Range<usize>>, what: &str) -> String {
    let header = range.as_ref().map(range_header);
    let expect = range.clone().unwrap_or(0..truth.len());
    match try_get(&h.plain_client, BUCKET, key, header.as_deref()).await {
        GetOutcome::Refused { status, code, message } => {
            assert!(status >= 400, "{what}: refused with a non-error status {status} {code}");
            format!("refused {status} {code}: {message}")
        }
        GetOutcome::NoResponse { error } => format!("connection dropped before a response: {error}"),
        GetOutcome::Aborted {
            received,
            content_length,
            error,
        } => {
            assert!(
                received.len() < expect.len(),
                "{what}: the body broke off only after all {} bytes ({error})",
                received.len()
            );
            assert!(
                received[..] == truth[expect.start..expect.start + received.len()],
                "{what}: WRONG BYTES before the body broke off ({} bytes received of {content_length})",
                received.len()
            );
            format!("aborted after {} of {content_length} bytes: {error}", received.len())
        }
        GetOutcome::Complete { body, .. } => {
            let verdict = if body[..] == truth[expect.clone()] {
                "the original bytes"
            } else {
                "WRONG BYTES"
            };
            panic!(
                "{what}: GET {key} {header:?} succeeded with {} bytes ({verdict}) from a damaged object",
                body.len()
            );
        }
    }
}

/// GETs a range that touches only undamaged segments: it may fail, but if it succeeds the bytes
/// must be exactly right.
async fn assert_get_correct_or_fails(h: &Harness, key: &str, truth: &[u8], range: Range<usize>, what: &str) -> bool {
    match try_get(&h.plain_client, BUCKET, key, Some(&range_header(&range))).await {
        GetOutcome::Complete { body, .. } => {
            assert!(body[..] == truth[range.clone()], "{what}: WRONG BYTES for {range:?}");
            true
        }
        GetOutcome::Aborted { received, .. } => {
            assert!(
                received.len() < range.len() && received[..] == truth[range.start..range.start + received.len()],
                "{what}: WRONG BYTES before the body broke off"
            );
            false
        }
        GetOutcome::Refused { status, .. } => {
            assert!(status >= 400, "{what}");
            false
        }
        GetOutcome::NoResponse { .. } => false,
    }
}

/// HEAD must fail (the damage is in what HEAD reads: metadata or trailer).
async fn assert_head_fails(h: &Harness, key: &str, what: &str) -> u16 {
    match h.plain_client.head_object().bucket(BUCKET).key(key).send().await {
        Ok(out) => panic!(
            "{what}: HEAD {key} succeeded (length {:?}, ETag {:?}) for a damaged object",
            out.content_length(),
            out.e_tag()
        ),
        Err(e) => {
            assert!(e.http_status() >= 400, "{what}: {}", e.describe());
            e.http_status()
        }
    }
}

/// The ranges a segment-damage case probes: one per segment, and one across each boundary.
fn segment_ranges() -> Vec<(Range<usize>, Vec<usize>)> {
    vec![
        (0..100, vec![0]),
        (SEGMENT..SEGMENT + 100, vec![1]),
        (2 * SEGMENT..2 * SEGMENT + 100, vec![2]),
        (LEN - 1..LEN, vec![2]),
        (SEGMENT - 10..SEGMENT + 10, vec![0, 1]),
        (2 * SEGMENT - 10..2 * SEGMENT + 10, vec![1, 2]),
    ]
}

/// Full GET fails; ranged GETs fail iff they touch a segment in `damaged`, and return the right
/// bytes otherwise.
async fn assert_segment_damage(f: &Fixture, damaged: &[usize], what: &str) {
    let how = assert_get_fails(&f.h, VICTIM, &f.victim, None, what).await;
    eprintln!("{what}: full GET {how}");
    for (range, touches) in segment_ranges() {
        if touches.iter().any(|s| damaged.contains(s)) {
            assert_get_fails(
                &f.h,
                VICTIM,
                &f.victim,
                Some(range.clone()),
                &format!("{what} {range:?}"),
            )
            .await;
        } else {
            let ok = assert_get_correct_or_fails(&f.h, VICTIM, &f.victim, range.clone(), what).await;
            assert!(
                ok,
                "{what}: a range over undamaged segments {touches:?} ({range:?}) failed"
            );
        }
    }
}

fn flip(bytes: &mut [u8], at: usize) {
    bytes[at] ^= 0x01;
}

// === cases ===

/// Control: rewriting an object through the harness without changing anything keeps it
/// readable, so every failure below is the tampering's doing, not the harness's.
async fn untouched_rewrite_still_reads(kind: StoreKind) {
    let f = fixture(kind).await;
    let object = f.h.stored_object(BUCKET, VICTIM);
    f.h.write_stored_object(BUCKET, VICTIM, &object);
    f.h.rewrite_body(BUCKET, VICTIM, |_| {});
    f.h.rewrite_metadata(BUCKET, VICTIM, |_| {});
    assert!(
        h_get(&f.h, VICTIM).await == f.victim,
        "an untouched rewrite broke the object"
    );
    for (range, _) in segment_ranges() {
        assert!(assert_get_correct_or_fails(&f.h, VICTIM, &f.victim, range.clone(), "control").await);
    }
    let head =
        f.h.plain_client
            .head_object()
            .bucket(BUCKET)
            .key(VICTIM)
            .send()
            .await
            .expect("head");
    assert_eq!(head.e_tag(), Some(etag_of(&f.victim).as_str()));
    let names: Vec<&String> = object.metadata.keys().collect();
    for name in ["escrow-v", "escrow-kek", "escrow-dek", "escrow-meta"] {
        assert!(
            object.metadata.contains_key(name),
            "stored metadata lacks {name}: {names:?}"
        );
    }
    f.others_intact().await;
}

async fn flipped_header_byte(kind: StoreKind) {
    let f = fixture(kind).await;
    // A salt byte: the header is every segment's associated data and the trailer pins it.
    f.h.rewrite_body(BUCKET, VICTIM, |b| flip(b, 10));
    let how = assert_get_fails(&f.h, VICTIM, &f.victim, None, "flipped header byte").await;
    eprintln!("flipped header byte: {how}");
    // A ranged read uses the header the trailer pins and never reads the stored one.
    for (range, _) in segment_ranges() {
        assert_get_correct_or_fails(&f.h, VICTIM, &f.victim, range, "flipped header byte").await;
    }
    f.others_intact().await;
}

async fn flipped_segment_ciphertext(kind: StoreKind) {
    let f = fixture(kind).await;
    let at = segment_range(LEN, 1).start + 100;
    f.h.rewrite_body(BUCKET, VICTIM, |b| flip(b, at));
    assert_segment_damage(&f, &[1], "flipped ciphertext in segment 1").await;
    f.others_intact().await;
}

async fn flipped_segment_tag(kind: StoreKind) {
    let f = fixture(kind).await;
    let at = segment_range(LEN, 1).end - 1;
    f.h.rewrite_body(BUCKET, VICTIM, |b| flip(b, at));
    assert_segment_damage(&f, &[1], "flipped tag of segment 1").await;

    // And the last segment's tag.
    let at = segment_range(LEN, 2).end - 1;
    f.h.rewrite_body(BUCKET, TWIN, |b| flip(b, at));
    assert_get_fails(&f.h, TWIN, &f.twin, None, "flipped tag of the last segment").await;
    assert_get_fails(
        &f.h,
        TWIN,
        &f.twin,
        Some(LEN - 10..LEN),
        "flipped tag of the last segment",
    )
    .await;
    assert!(assert_get_correct_or_fails(&f.h, TWIN, &f.twin, 0..SEGMENT, "undamaged segment 0").await);
    assert!(h_get(&f.h, OTHER).await == f.other);
    f.h.assert_no_plaintext(MARKER);
}

async fn flipped_trailer_byte(kind: StoreKind) {
    let f = fixture(kind).await;
    let trailer = stored_len(LEN) - TRAILER;
    for (key, at) in [(VICTIM, trailer + 50), (TWIN, stored_len(LEN) - 1)] {
        f.h.rewrite_body(BUCKET, key, |b| flip(b, at));
        let truth = if key == VICTIM { &f.victim } else { &f.twin };
        let how = assert_get_fails(&f.h, key, truth, None, "flipped trailer byte").await;
        assert!(
            how.starts_with("refused"),
            "a bad trailer must fail before the body: {how}"
        );
        assert_get_fails(&f.h, key, truth, Some(0..100), "flipped trailer byte, ranged").await;
        assert_head_fails(&f.h, key, "flipped trailer byte").await;
    }
    assert!(h_get(&f.h, OTHER).await == f.other);
    f.h.assert_no_plaintext(MARKER);
}

/// Flips one byte of a base64 metadata value, after decoding it.
fn flip_b64(metadata: &mut BTreeMap<String, String>, name: &str, at: usize) {
    let names: Vec<String> = metadata.keys().cloned().collect();
    let value = metadata
        .get_mut(name)
        .unwrap_or_else(|| panic!("no {name} in {names:?}"));
    let mut raw = unb64(value);
    flip(&mut raw, at);
    *value = b64(&raw);
}

/// The whole object is unreadable, before any body byte, and HEAD fails too.
async fn assert_metadata_damage(f: &Fixture, what: &str) -> String {
    let how = assert_get_fails(&f.h, VICTIM, &f.victim, None, what).await;
    assert!(how.starts_with("refused"), "{what}: must fail before the body: {how}");
    assert_get_fails(&f.h, VICTIM, &f.victim, Some(SEGMENT..SEGMENT + 10), what).await;
    let head = assert_head_fails(&f.h, VICTIM, what).await;
    eprintln!("{what}: GET {how}; HEAD {head}");
    how
}

async fn flipped_wrapped_dek(kind: StoreKind) {
    let f = fixture(kind).await;
    // In the nonce, in the ciphertext and in the tag of the wrapped key.
    for at in [0, 20, 59] {
        let original = f.h.stored_object(BUCKET, VICTIM);
        f.h.rewrite_metadata(BUCKET, VICTIM, |m| flip_b64(m, "escrow-dek", at));
        assert_metadata_damage(&f, &format!("flipped byte {at} of the wrapped DEK")).await;
        f.h.write_stored_object(BUCKET, VICTIM, &original);
    }
    assert!(h_get(&f.h, VICTIM).await == f.victim, "restored object reads back");
    f.others_intact().await;
}

async fn flipped_sealed_record(kind: StoreKind) {
    let f = fixture(kind).await;
    let len = unb64(&f.h.stored_object(BUCKET, VICTIM).metadata["escrow-meta"]).len();
    for at in [0, 12, len / 2, len - 1] {
        let original = f.h.stored_object(BUCKET, VICTIM);
        f.h.rewrite_metadata(BUCKET, VICTIM, |m| flip_b64(m, "escrow-meta", at));
        assert_metadata_damage(&f, &format!("flipped byte {at} of the sealed record")).await;
        f.h.write_stored_object(BUCKET, VICTIM, &original);
    }
    // Cut short, and gone.
    f.h.rewrite_metadata(BUCKET, VICTIM, |m| {
        let raw = unb64(&m["escrow-meta"]);
        m.insert("escrow-meta".into(), b64(&raw[..raw.len() - 1]));
    });
    assert_metadata_damage(&f, "truncated sealed record").await;
    f.h.rewrite_metadata(BUCKET, VICTIM, |m| {
        m.remove("escrow-meta");
    });
    assert_metadata_damage(&f, "missing sealed record").await;
    f.others_intact().await;
}

async fn unknown_kek_version(kind: StoreKind) {
    let f = fixture(kind).await;
    f.h.rewrite_metadata(BUCKET, VICTIM, |m| {
        m.insert("escrow-kek".into(), "999".into());
    });
    let e =
        f.h.plain_client
            .get_object()
            .bucket(BUCKET)
            .key(VICTIM)
            .send()
            .await
            .expect_err("GET of an object under an unknown KEK version");
    // A clear error: it names the problem and the version, and nothing else.
    assert_eq!(e.s3_code(), "UnknownKeyVersion", "{}", e.describe());
    assert!(e.s3_message().contains("999"), "{}", e.describe());
    assert!(e.http_status() >= 500, "{}", e.describe());
    assert_metadata_damage(&f, "unknown KEK version").await;
    f.others_intact().await;
}

async fn relabelled_kek_version(kind: StoreKind) {
    let f = fixture(kind).await;
    // The only KEK version is the one that wrapped the DEK; any other label must fail, be it
    // one the keyring lacks (0) or garbage.
    let version = f.h.stored_object(BUCKET, VICTIM).metadata["escrow-kek"].clone();
    for label in ["0", "2", "-1", "x", ""] {
        let original = f.h.stored_object(BUCKET, VICTIM);
        f.h.rewrite_metadata(BUCKET, VICTIM, |m| {
            m.insert("escrow-kek".into(), label.to_string());
        });
        assert_metadata_damage(&f, &format!("KEK version relabelled {version:?} -> {label:?}")).await;
        f.h.write_stored_object(BUCKET, VICTIM, &original);
    }
    f.others_intact().await;
}

async fn unknown_format_version(kind: StoreKind) {
    let f = fixture(kind).await;
    f.h.rewrite_metadata(BUCKET, VICTIM, |m| {
        m.insert("escrow-v".into(), "4".into());
    });
    assert_metadata_damage(&f, "unknown format version").await;
    // A known version, but not the one the DEK was wrapped for (a downgrade): refused too.
    for older in ["1", "2"] {
        f.h.rewrite_metadata(BUCKET, VICTIM, |m| {
            m.insert("escrow-v".into(), older.into());
        });
        assert_metadata_damage(&f, &format!("envelope version downgraded to {older}")).await;
    }
    f.h.rewrite_metadata(BUCKET, TWIN, |m| {
        m.remove("escrow-v");
    });
    let how = assert_get_fails(&f.h, TWIN, &f.twin, None, "missing format version").await;
    assert!(how.starts_with("refused"), "{how}");
    assert!(h_get(&f.h, OTHER).await == f.other);
    f.h.assert_no_plaintext(MARKER);
}

async fn truncated_last_segment(kind: StoreKind) {
    let f = fixture(kind).await;
    // Ten bytes cut from the end of the last segment; the trailer kept.
    let last = segment_range(LEN, 2);
    f.h.rewrite_body(BUCKET, VICTIM, |b| {
        b.drain(last.end - 10..last.end);
    });
    assert_get_fails(&f.h, VICTIM, &f.victim, None, "truncated last segment").await;
    assert_get_fails(&f.h, VICTIM, &f.victim, Some(LEN - 100..LEN), "truncated last segment").await;
    assert_head_fails(&f.h, VICTIM, "truncated last segment").await;
    f.others_intact().await;
}

async fn truncated_trailer(kind: StoreKind) {
    let f = fixture(kind).await;
    f.h.rewrite_body(BUCKET, VICTIM, |b| b.truncate(b.len() - 10));
    assert_get_fails(&f.h, VICTIM, &f.victim, None, "truncated trailer").await;
    assert_head_fails(&f.h, VICTIM, "truncated trailer").await;
    // The whole trailer gone: the stream ends with its last segment.
    f.h.rewrite_body(BUCKET, TWIN, |b| b.truncate(b.len() - TRAILER));
    assert_get_fails(&f.h, TWIN, &f.twin, None, "no trailer").await;
    assert_head_fails(&f.h, TWIN, "no trailer").await;
    // Only the header left.
    f.h.rewrite_body(BUCKET, TWIN, |b| b.truncate(HEADER));
    assert_get_fails(&f.h, TWIN, &f.twin, None, "only the header").await;
    assert!(h_get(&f.h, OTHER).await == f.other);
    f.h.assert_no_plaintext(MARKER);
}

async fn dropped_middle_segment(kind: StoreKind) {
    let f = fixture(kind).await;
    let middle = segment_range(LEN, 1);
    f.h.rewrite_body(BUCKET, VICTIM, |b| {
        b.drain(middle);
    });
    assert_get_fails(&f.h, VICTIM, &f.victim, None, "dropped segment 1").await;
    assert_get_fails(&f.h, VICTIM, &f.victim, Some(0..100), "dropped segment 1").await;
    assert_head_fails(&f.h, VICTIM, "dropped segment 1").await;
    f.others_intact().await;
}

async fn dropped_last_segment(kind: StoreKind) {
    let f = fixture(kind).await;
    let last = segment_range(LEN, 2);
    f.h.rewrite_body(BUCKET, VICTIM, |b| {
        b.drain(last);
    });
    assert_get_fails(&f.h, VICTIM, &f.victim, None, "dropped last segment").await;
    assert_head_fails(&f.h, VICTIM, "dropped last segment").await;
    f.others_intact().await;
}

async fn swapped_segments(kind: StoreKind) {
    let f = fixture(kind).await;
    let (s0, s1) = (segment_range(LEN, 0), segment_range(LEN, 1));
    assert_eq!(s0.len(), s1.len());
    f.h.rewrite_body(BUCKET, VICTIM, |b| {
        let first = b[s0.clone()].to_vec();
        b.copy_within(s1.clone(), s0.start);
        b[s1.clone()].copy_from_slice(&first);
    });
    assert_segment_damage(&f, &[0, 1], "swapped segments 0 and 1").await;
    f.others_intact().await;
}

async fn duplicated_segment(kind: StoreKind) {
    let f = fixture(kind).await;
    let (s0, s1) = (segment_range(LEN, 0), segment_range(LEN, 1));
    f.h.rewrite_body(BUCKET, VICTIM, |b| b.copy_within(s0, s1.start));
    assert_segment_damage(&f, &[1], "segment 0 copied over segment 1").await;
    f.others_intact().await;
}

async fn spliced_segment_from_another_object(kind: StoreKind) {
    let f = fixture(kind).await;
    let s1 = segment_range(LEN, 1);
    let donor = f.h.stored_object(BUCKET, OTHER).body[s1.clone()].to_vec();
    f.h.rewrite_body(BUCKET, VICTIM, |b| b[s1].copy_from_slice(&donor));
    assert_segment_damage(&f, &[1], "segment 1 spliced from another object").await;
    f.others_intact().await;
}

async fn spliced_trailer_from_another_object(kind: StoreKind) {
    let f = fixture(kind).await;
    let at = stored_len(LEN) - TRAILER;
    let donor = f.h.stored_object(BUCKET, OTHER).body[at..].to_vec();
    f.h.rewrite_body(BUCKET, VICTIM, |b| b[at..].copy_from_slice(&donor));
    let how = assert_get_fails(&f.h, VICTIM, &f.victim, None, "trailer from another object").await;
    assert!(how.starts_with("refused"), "{how}");
    assert_head_fails(&f.h, VICTIM, "trailer from another object").await;
    // The header from another object, with its own trailer kept.
    let donor = f.h.stored_object(BUCKET, OTHER).body[..HEADER].to_vec();
    f.h.rewrite_body(BUCKET, TWIN, |b| b[..HEADER].copy_from_slice(&donor));
    assert_get_fails(&f.h, TWIN, &f.twin, None, "header from another object").await;
    assert!(h_get(&f.h, OTHER).await == f.other);
    f.h.assert_no_plaintext(MARKER);
}

/// Everything the store holds for `OTHER` put in place of `VICTIM`: the victim must fail, and
/// must not turn into the other object's bytes.
async fn swapped_objects(kind: StoreKind) {
    let f = fixture(kind).await;
    let other = f.h.stored_object(BUCKET, OTHER);
    f.h.write_stored_object(BUCKET, VICTIM, &other);
    // (assert_get_fails would also report a complete body that equals the other object's.)
    assert_metadata_damage(&f, "another object's body and metadata").await;
    if let GetOutcome::Complete { body, .. } = try_get(&f.h.client, BUCKET, VICTIM, None).await {
        panic!(
            "swapped object returned {} bytes; the other object's: {}",
            body.len(),
            body == f.other
        );
    }
    f.others_intact().await;
}

async fn swapped_bodies_only(kind: StoreKind) {
    let f = fixture(kind).await;
    let other = f.h.stored_object(BUCKET, OTHER);
    f.h.rewrite_body(BUCKET, VICTIM, |b| *b = other.body.clone());
    let how = assert_get_fails(&f.h, VICTIM, &f.victim, None, "another object's body").await;
    assert!(how.starts_with("refused"), "{how}");
    assert_head_fails(&f.h, VICTIM, "another object's body").await;
    f.others_intact().await;
}

async fn swapped_metadata_only(kind: StoreKind) {
    let f = fixture(kind).await;
    let other = f.h.stored_object(BUCKET, OTHER);
    f.h.rewrite_metadata(BUCKET, VICTIM, |m| *m = other.metadata.clone());
    assert_metadata_damage(&f, "another object's metadata").await;
    // Each field alone, too.
    for name in ["escrow-dek", "escrow-meta"] {
        let original = f.h.stored_object(BUCKET, TWIN);
        f.h.rewrite_metadata(BUCKET, TWIN, |m| {
            m.insert(name.into(), other.metadata[name].clone());
        });
        let how = assert_get_fails(&f.h, TWIN, &f.twin, None, &format!("{name} from another object")).await;
        assert!(how.starts_with("refused"), "{name}: {how}");
        assert_head_fails(&f.h, TWIN, &format!("{name} from another object")).await;
        f.h.write_stored_object(BUCKET, TWIN, &original);
    }
    assert!(h_get(&f.h, TWIN).await == f.twin);
    assert!(h_get(&f.h, OTHER).await == f.other);
    f.h.assert_no_plaintext(MARKER);
}

/// Damage far into a multi-MiB object: the headers (200, full length) are long gone when the
/// proxy meets the bad segment, so the client must see the body break off, short of its length.
async fn damage_late_in_a_large_object(kind: StoreKind) {
    const BIG: usize = 64 * SEGMENT + 1234;
    const BAD: usize = 60;
    let h = Harness::new(kind).await;
    h.create_bucket(BUCKET).await;
    let data = data_with_marker(BIG);
    h.put(BUCKET, "big", &data).await;
    h.put(BUCKET, "big-twin", &data).await;
    let at = segment_range(BIG, BAD).start + 5;
    h.rewrite_body(BUCKET, "big", |b| flip(b, at));

    for (label, client) in h.clients() {
        match try_get(client, BUCKET, "big", None).await {
            GetOutcome::Complete { body, .. } => panic!(
                "{label}: a complete {}-byte body ({}) from an object damaged in segment {BAD}",
                body.len(),
                if body == data { "the original" } else { "WRONG BYTES" }
            ),
            GetOutcome::Aborted {
                received,
                content_length,
                error,
            } => {
                assert_eq!(content_length, BIG as i64, "{label}: headers promised the whole object");
                assert!(received.len() < BIG, "{label}");
                assert!(
                    received.len() <= BAD * SEGMENT,
                    "{label}: {} bytes received, past the damaged segment {BAD}",
                    received.len()
                );
                assert!(
                    received[..] == data[..received.len()],
                    "{label}: WRONG BYTES before the break"
                );
                eprintln!(
                    "{label}: body broke off after {} of {BIG} bytes: {error}",
                    received.len()
                );
            }
            GetOutcome::Refused { status, code, .. } => {
                assert!(status >= 400, "{label}: {status} {code}");
            }
            GetOutcome::NoResponse { error } => eprintln!("{label}: connection dropped: {error}"),
        }
    }
    // Over HTTP/1.1 (a presigned URL fetched by a plain client) the abort is a connection
    // closed short of Content-Length.
    let url = h
        .plain_client
        .get_object()
        .bucket(BUCKET)
        .key("big")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(300)).expect("presigning config"))
        .await
        .expect("presign")
        .uri()
        .to_string();
    let mut resp = h.http1().get(&url).send().await.expect("HTTP/1.1 GET");
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    let declared = resp.content_length();
    let mut received = Vec::new();
    let ended = loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => received.extend_from_slice(&chunk),
            Ok(None) => break "the body ended".to_string(),
            Err(e) => break format!("the body failed: {e}"),
        }
    };
    assert!(
        received.len() < BIG,
        "HTTP/1.1: a complete {}-byte body ({}) from a damaged object; {ended}",
        received.len(),
        if received == data {
            "the original"
        } else {
            "WRONG BYTES"
        }
    );
    assert!(
        received[..] == data[..received.len()],
        "HTTP/1.1: WRONG BYTES before the break"
    );
    eprintln!("HTTP/1.1: {} of {declared:?} bytes, then {ended}", received.len());

    // Ranges before and after the damage read correctly; ranges over it fail.
    for range in [
        0..BAD * SEGMENT,
        (BAD + 1) * SEGMENT..BIG,
        BAD * SEGMENT - 1..BAD * SEGMENT,
    ] {
        let ok = assert_get_correct_or_fails(&h, "big", &data, range.clone(), "late damage").await;
        assert!(ok, "undamaged range {range:?} failed");
    }
    for range in [
        BAD * SEGMENT..BAD * SEGMENT + 1,
        10..BIG - 10,
        BAD * SEGMENT - 5..BAD * SEGMENT + 5,
    ] {
        assert_get_fails(&h, "big", &data, Some(range), "late damage").await;
    }
    let twin = h
        .plain_client
        .get_object()
        .bucket(BUCKET)
        .key("big-twin")
        .send()
        .await
        .unwrap_or_else(|e| panic!("twin: {}", DisplayErrorContext(&e)));
    assert!(twin.body.collect().await.expect("twin body").to_vec() == data);
    h.assert_no_plaintext(MARKER);
}

/// The wrapped key binds the bucket: the same key name in another bucket is another object.
async fn moved_to_another_bucket(kind: StoreKind) {
    let f = fixture(kind).await;
    let elsewhere = "escrow-integrity-2";
    f.h.create_bucket(elsewhere).await;
    let decoy = data_with_marker(LEN);
    f.h.put(elsewhere, VICTIM, &decoy).await;
    let object = f.h.stored_object(BUCKET, VICTIM);
    f.h.write_stored_object(elsewhere, VICTIM, &object);
    match try_get(&f.h.plain_client, elsewhere, VICTIM, None).await {
        GetOutcome::Refused { status, code, .. } => assert!(status >= 400, "{status} {code}"),
        other => panic!("an object moved to another bucket: {other:?}"),
    }
    let e =
        f.h.plain_client
            .head_object()
            .bucket(elsewhere)
            .key(VICTIM)
            .send()
            .await
            .expect_err("HEAD of an object moved to another bucket");
    assert!(e.http_status() >= 400, "{}", e.describe());
    assert!(h_get(&f.h, VICTIM).await == f.victim, "the original stays readable");
    f.others_intact().await;
}

/// An empty object has one empty segment (its tag alone) between header and trailer.
async fn damaged_empty_object(kind: StoreKind) {
    let h = Harness::new(kind).await;
    h.create_bucket(BUCKET).await;
    for key in ["empty", "empty-twin", "empty-short"] {
        h.put(BUCKET, key, b"").await;
        assert_eq!(h.stored_object(BUCKET, key).body.len(), stored_len(0));
    }
    h.rewrite_body(BUCKET, "empty", |b| flip(b, HEADER + 3));
    let outcome = try_get(&h.plain_client, BUCKET, "empty", None).await;
    assert!(
        !matches!(outcome, GetOutcome::Complete { .. }),
        "GET of an empty object whose only segment tag was flipped: {outcome:?}"
    );
    h.rewrite_body(BUCKET, "empty-short", |b| {
        b.drain(HEADER..HEADER + TAG);
    });
    let outcome = try_get(&h.plain_client, BUCKET, "empty-short", None).await;
    assert!(
        !matches!(outcome, GetOutcome::Complete { .. }),
        "GET of an empty object without its segment: {outcome:?}"
    );
    assert_eq!(h.get(BUCKET, "empty-twin").await, b"");
}

/// An object whose sealed record lives in the header extension (its metadata would overflow
/// S3's 2 KB limit): damage to the record, to the padding, or a second record in the metadata
/// must all fail.
async fn damaged_header_extension(kind: StoreKind) {
    let f = fixture(kind).await;
    let key = "extended";
    let data = data_with_marker(LEN);
    f.h.client
        .put_object()
        .bucket(BUCKET)
        .key(key)
        .metadata("big", "m".repeat(1900))
        .body(aws_sdk_s3::primitives::ByteStream::from(data.clone()))
        .send()
        .await
        .expect("put with large metadata");
    let original = f.h.stored_object(BUCKET, key);
    assert!(
        !original.metadata.contains_key("escrow-meta"),
        "the record moved out of the metadata"
    );
    let ext_len = u32::from_be_bytes([0, original.body[5], original.body[6], original.body[7]]) as usize;
    assert!(ext_len > 1900, "the header announces the extension ({ext_len})");
    assert_eq!(h_get(&f.h, key).await, data);
    let record_len = u32::from_be_bytes(original.body[HEADER..HEADER + 4].try_into().expect("4 bytes")) as usize;

    // A flipped byte inside the sealed record.
    let mut bad = original.clone();
    flip(&mut bad.body, HEADER + 4 + record_len / 2);
    f.h.write_stored_object(BUCKET, key, &bad);
    assert_get_fails(&f.h, key, &data, None, "record byte in the extension").await;
    assert_head_fails(&f.h, key, "record byte in the extension").await;

    // A non-zero padding byte (when the extension is padded).
    if ext_len > 4 + record_len {
        let mut bad = original.clone();
        flip(&mut bad.body, HEADER + ext_len - 1);
        f.h.write_stored_object(BUCKET, key, &bad);
        assert_get_fails(&f.h, key, &data, None, "padding byte in the extension").await;
    }

    // A record in the metadata as well (taken from another object): claimed twice.
    let mut bad = original.clone();
    let other_meta = f.h.stored_object(BUCKET, OTHER).metadata;
    bad.metadata
        .insert("escrow-meta".into(), other_meta["escrow-meta"].clone());
    f.h.write_stored_object(BUCKET, key, &bad);
    assert_get_fails(&f.h, key, &data, None, "record in metadata and extension").await;
    assert_head_fails(&f.h, key, "record in metadata and extension").await;

    f.h.write_stored_object(BUCKET, key, &original);
    assert_eq!(h_get(&f.h, key).await, data, "the restored object reads again");
    f.others_intact().await;
}

// === multipart objects ===
//
// A completed multipart object is stored as `stream(p1) ‖ stream(p2) ‖ stream(p3) ‖ sealed
// manifest ‖ u32be(len(sealed manifest))` with metadata `escrow-parts = 3` (FORMAT.md §5).

/// Plaintext lengths of the parts of the multipart victim: two of S3's smallest non-last size
/// and a last one of two segments.
const MP_PARTS: [usize; 3] = [MIN_PART, MIN_PART, SEGMENT + 4321];
const MP_LEN: usize = 2 * MIN_PART + SEGMENT + 4321;
const MP_VICTIM: &str = "mp-victim";
/// Same part lengths as the victim, for splicing and swapping.
const MP_OTHER: &str = "mp-other";

/// A multipart victim and, when asked for, another multipart object of the same layout.
struct MpFixture {
    h: Harness,
    victim: Vec<u8>,
    other: Vec<u8>,
    /// Where each part's stream lies in the stored body.
    streams: Vec<Range<usize>>,
}

async fn mp_fixture(kind: StoreKind, with_other: bool) -> MpFixture {
    let h = Harness::new(kind).await;
    h.create_bucket(BUCKET).await;
    let streams = part_streams(&MP_PARTS);
    let mut made = Vec::new();
    for key in if with_other {
        vec![MP_VICTIM, MP_OTHER]
    } else {
        vec![MP_VICTIM]
    } {
        let parts: Vec<Vec<u8>> = MP_PARTS.iter().map(|&len| data_with_marker(len)).collect();
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        let etag = upload_multipart(&h.plain_client, BUCKET, key, &refs).await;
        assert_eq!(etag, multipart_etag(&refs), "ETag of {key}");
        let stored = h.stored_object(BUCKET, key);
        let manifest = manifest_range(&stored.body);
        assert_eq!(
            manifest.start, streams[2].end,
            "stored layout of {key}: parts, then the manifest"
        );
        assert_eq!(
            stored.metadata.get("escrow-parts").map(String::as_str),
            Some("3"),
            "{key}"
        );
        made.push(parts.concat());
    }
    let mut made = made.into_iter();
    let victim = made.next().expect("the victim");
    let other = made.next().unwrap_or_default();
    MpFixture {
        h,
        victim,
        other,
        streams,
    }
}

impl MpFixture {
    async fn get_fails(&self, range: Option<Range<usize>>, what: &str) -> String {
        assert_get_fails(&self.h, MP_VICTIM, &self.victim, range, what).await
    }

    /// The whole victim is refused before any body byte, also in ranges, and HEAD fails.
    async fn refused(&self, what: &str) {
        let how = self.get_fails(None, what).await;
        assert!(how.starts_with("refused"), "{what}: must fail before the body: {how}");
        for range in [0..100, MIN_PART - 10..MIN_PART + 10, MP_LEN - 10..MP_LEN] {
            self.get_fails(Some(range), what).await;
        }
        assert_head_fails(&self.h, MP_VICTIM, what).await;
    }

    /// A range of the victim's plaintext that must read back exactly.
    async fn reads(&self, range: Range<usize>, what: &str) {
        let ok = assert_get_correct_or_fails(&self.h, MP_VICTIM, &self.victim, range.clone(), what).await;
        assert!(ok, "{what}: undamaged range {range:?} failed");
    }

    /// Puts the victim back as it was stored, and checks it reads again.
    async fn restore(&self, original: &common::StoredObject) {
        self.h.write_stored_object(BUCKET, MP_VICTIM, original);
        assert!(
            h_get(&self.h, MP_VICTIM).await == self.victim,
            "the restored victim reads again"
        );
    }

    async fn others_intact(&self) {
        if !self.other.is_empty() {
            assert!(
                h_get(&self.h, MP_OTHER).await == self.other,
                "the other object no longer reads back"
            );
        }
        self.h.assert_no_plaintext(MARKER);
    }
}

/// Where the sealed manifest and its length suffix lie at the end of a stored multipart body.
fn manifest_range(body: &[u8]) -> Range<usize> {
    let len = u32::from_be_bytes(body[body.len() - 4..].try_into().expect("4 bytes")) as usize;
    body.len() - 4 - len..body.len()
}

/// Plaintext offset where part `i` (0-based) of the victim starts.
fn mp_part_start(i: usize) -> usize {
    MP_PARTS[..i].iter().sum()
}

/// Control: an unchanged rewrite keeps the multipart object readable, whole and in ranges.
async fn mp_untouched_rewrite_still_reads(kind: StoreKind) {
    let f = mp_fixture(kind, false).await;
    let object = f.h.stored_object(BUCKET, MP_VICTIM);
    assert!(
        !object.metadata.contains_key("escrow-meta"),
        "the record is in the manifest"
    );
    f.h.write_stored_object(BUCKET, MP_VICTIM, &object);
    f.h.rewrite_body(BUCKET, MP_VICTIM, |_| {});
    f.h.rewrite_metadata(BUCKET, MP_VICTIM, |_| {});
    assert!(
        h_get(&f.h, MP_VICTIM).await == f.victim,
        "an untouched rewrite broke the object"
    );
    for range in [
        0..100,
        MIN_PART - 10..MIN_PART + 10,
        MIN_PART - 10..2 * MIN_PART + 10,
        MP_LEN - 10..MP_LEN,
    ] {
        f.reads(range, "control").await;
    }
    let head =
        f.h.plain_client
            .head_object()
            .bucket(BUCKET)
            .key(MP_VICTIM)
            .send()
            .await
            .expect("head");
    assert_eq!(head.content_length(), Some(MP_LEN as i64));
    f.others_intact().await;
}

/// The last part cut off: the stored object rewritten without its stream, with the manifest or
/// without it, with `escrow-parts` kept, adjusted or removed. Never a shorter file.
async fn mp_last_part_removed(kind: StoreKind) {
    let f = mp_fixture(kind, false).await;
    let original = f.h.stored_object(BUCKET, MP_VICTIM);
    let body = &original.body;
    let manifest = manifest_range(body);
    let two_parts = &body[..f.streams[1].end];
    let variants: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
        (
            "last part removed, manifest kept",
            [two_parts, &body[manifest.clone()]].concat(),
            None,
        ),
        (
            "last part removed, manifest kept, escrow-parts 2",
            [two_parts, &body[manifest.clone()]].concat(),
            Some("2"),
        ),
        (
            "last part and sealed manifest removed, length suffix kept",
            [two_parts, &body[body.len() - 4..]].concat(),
            None,
        ),
        ("last part and manifest removed", two_parts.to_vec(), None),
        (
            "last part and manifest removed, escrow-parts 2",
            two_parts.to_vec(),
            Some("2"),
        ),
        (
            "last part and manifest removed, escrow-parts gone",
            two_parts.to_vec(),
            Some(""),
        ),
        (
            "the last part's stream cut to its header",
            [&body[..f.streams[2].start + HEADER], &body[manifest.clone()]].concat(),
            None,
        ),
    ];
    for (what, new_body, parts) in variants {
        let mut bad = original.clone();
        bad.body = new_body;
        match parts {
            Some("") => {
                bad.metadata.remove("escrow-parts");
            }
            Some(n) => {
                bad.metadata.insert("escrow-parts".into(), n.into());
            }
            None => {}
        }
        f.h.write_stored_object(BUCKET, MP_VICTIM, &bad);
        let how = f.get_fails(None, what).await;
        assert_head_fails(&f.h, MP_VICTIM, what).await;
        f.get_fails(Some(0..100), what).await;
        eprintln!("{what}: {how}");
    }
    f.restore(&original).await;
    f.others_intact().await;
}

async fn mp_middle_part_dropped(kind: StoreKind) {
    let f = mp_fixture(kind, false).await;
    let middle = f.streams[1].clone();
    f.h.rewrite_body(BUCKET, MP_VICTIM, |b| {
        b.drain(middle);
    });
    f.refused("middle part dropped").await;
    f.others_intact().await;
}

async fn mp_parts_swapped_or_duplicated(kind: StoreKind) {
    let f = mp_fixture(kind, false).await;
    let original = f.h.stored_object(BUCKET, MP_VICTIM);
    let (s0, s1) = (f.streams[0].clone(), f.streams[1].clone());
    assert_eq!(s0.len(), s1.len());
    let p1 = mp_part_start(1);
    let p2 = mp_part_start(2);
    // Parts 1 and 2 swapped: same lengths, so the layout the manifest describes still fits.
    f.h.rewrite_body(BUCKET, MP_VICTIM, |b| {
        let first = b[s0.clone()].to_vec();
        b.copy_within(s1.clone(), s0.start);
        b[s1.clone()].copy_from_slice(&first);
    });
    let how = f.get_fails(None, "parts 1 and 2 swapped").await;
    eprintln!("parts 1 and 2 swapped: {how}");
    for range in [
        0..100,
        p1 - 10..p1 + 10,
        p1 + 100..p1 + 200,
        p1 + 3 * SEGMENT..p1 + 3 * SEGMENT + 10,
    ] {
        f.get_fails(Some(range), "parts 1 and 2 swapped").await;
    }
    f.reads(p2..p2 + 100, "part 3, untouched").await;
    f.restore(&original).await;

    // Part 1 in place of part 2.
    f.h.rewrite_body(BUCKET, MP_VICTIM, |b| b.copy_within(s0.clone(), s1.start));
    f.get_fails(None, "part 1 duplicated over part 2").await;
    f.get_fails(Some(p1 + 100..p1 + 200), "part 1 duplicated over part 2")
        .await;
    f.reads(0..100, "part 1, untouched").await;
    f.reads(p2..MP_LEN, "part 3, untouched").await;
    f.restore(&original).await;
    f.others_intact().await;
}

async fn mp_part_spliced_from_another_object(kind: StoreKind) {
    let f = mp_fixture(kind, true).await;
    let original = f.h.stored_object(BUCKET, MP_VICTIM);
    let donor = f.h.stored_object(BUCKET, MP_OTHER).body;
    let (p1, p2) = (mp_part_start(1), mp_part_start(2));
    // The other object's part 2, in place of the victim's (same number, same length).
    let s1 = f.streams[1].clone();
    f.h.rewrite_body(BUCKET, MP_VICTIM, |b| b[s1.clone()].copy_from_slice(&donor[s1.clone()]));
    let how = f.get_fails(None, "part 2 from another object").await;
    eprintln!("part 2 from another object: {how}");
    f.get_fails(Some(p1..p1 + 100), "part 2 from another object").await;
    f.get_fails(Some(p1 - 10..p1 + 10), "part 2 from another object").await;
    f.reads(0..100, "part 1, untouched").await;
    f.reads(p2..MP_LEN, "part 3, untouched").await;
    f.restore(&original).await;

    // The other object's last part.
    let s2 = f.streams[2].clone();
    f.h.rewrite_body(BUCKET, MP_VICTIM, |b| b[s2.clone()].copy_from_slice(&donor[s2.clone()]));
    f.get_fails(None, "last part from another object").await;
    f.get_fails(Some(MP_LEN - 10..MP_LEN), "last part from another object")
        .await;
    f.reads(0..100, "part 1, untouched").await;
    f.restore(&original).await;

    // The other object's manifest.
    let manifest = manifest_range(&donor).start;
    f.h.rewrite_body(BUCKET, MP_VICTIM, |b| {
        let at = manifest_range(b).start;
        b.truncate(at);
        b.extend_from_slice(&donor[manifest..]);
    });
    f.refused("manifest from another object").await;
    f.restore(&original).await;
    f.others_intact().await;
}

async fn mp_flipped_part_bytes(kind: StoreKind) {
    let f = mp_fixture(kind, false).await;
    let original = f.h.stored_object(BUCKET, MP_VICTIM);
    let (p1, p2) = (mp_part_start(1), mp_part_start(2));

    // Part 2's header (a salt byte): a full read checks it against the manifest's copy.
    let at = f.streams[1].start + 10;
    f.h.rewrite_body(BUCKET, MP_VICTIM, |b| flip(b, at));
    f.get_fails(None, "flipped header byte of part 2").await;
    for range in [0..100, p1 - 10..p1 + 10, p1 + 100..p1 + 200, p2..p2 + 100] {
        assert_get_correct_or_fails(&f.h, MP_VICTIM, &f.victim, range, "flipped header byte of part 2").await;
    }
    f.restore(&original).await;

    // A segment of part 2 (its fourth).
    let at = f.streams[1].start + segment_range(MP_PARTS[1], 3).start + 100;
    f.h.rewrite_body(BUCKET, MP_VICTIM, |b| flip(b, at));
    let how = f.get_fails(None, "flipped byte in segment 3 of part 2").await;
    eprintln!("flipped byte in segment 3 of part 2: {how}");
    let seg = p1 + 3 * SEGMENT;
    for range in [seg..seg + 10, seg - 10..seg + 10, p1 - 10..p2 + 10] {
        f.get_fails(Some(range), "flipped byte in segment 3 of part 2").await;
    }
    for range in [
        0..100,
        p1 - 10..p1 + 10,
        seg - 100..seg,
        seg + SEGMENT..seg + SEGMENT + 10,
        p2..MP_LEN,
    ] {
        f.reads(range, "flipped byte in segment 3 of part 2").await;
    }
    f.restore(&original).await;

    // Part 1's trailer, and the last part's trailer.
    for (i, what) in [
        (0, "flipped byte in the trailer of part 1"),
        (2, "flipped byte in the last part's trailer"),
    ] {
        let at = f.streams[i].end - TRAILER + 50;
        f.h.rewrite_body(BUCKET, MP_VICTIM, |b| flip(b, at));
        f.get_fails(None, what).await;
        for range in [0..100, p1 + 100..p1 + 200, MP_LEN - 100..MP_LEN] {
            assert_get_correct_or_fails(&f.h, MP_VICTIM, &f.victim, range, what).await;
        }
        f.restore(&original).await;
    }
    f.others_intact().await;
}

async fn mp_flipped_manifest_bytes(kind: StoreKind) {
    let f = mp_fixture(kind, false).await;
    let original = f.h.stored_object(BUCKET, MP_VICTIM);
    let manifest = manifest_range(&original.body);
    let sealed_end = manifest.end - 4;
    let positions = [
        ("nonce", manifest.start),
        ("ciphertext", manifest.start + 12 + 20),
        ("middle", (manifest.start + sealed_end) / 2),
        ("tag", sealed_end - 1),
        ("length suffix, high byte", manifest.end - 4),
        ("length suffix, low byte", manifest.end - 1),
    ];
    for (name, at) in positions {
        f.h.rewrite_body(BUCKET, MP_VICTIM, |b| flip(b, at));
        f.refused(&format!("flipped manifest byte ({name})")).await;
        f.restore(&original).await;
    }
    // Cut short by a byte (its length suffix rewritten to match).
    f.h.rewrite_body(BUCKET, MP_VICTIM, |b| {
        let len = manifest.len() - 4 - 1;
        b.truncate(sealed_end - 1);
        b.extend_from_slice(&u32::try_from(len).expect("small").to_be_bytes());
    });
    f.refused("manifest cut short, length suffix adjusted").await;
    f.restore(&original).await;
    f.others_intact().await;
}

async fn mp_parts_metadata_removed_or_changed(kind: StoreKind) {
    let f = mp_fixture(kind, false).await;
    let original = f.h.stored_object(BUCKET, MP_VICTIM);
    for value in [None, Some("2"), Some("4"), Some("0"), Some("three"), Some("")] {
        f.h.rewrite_metadata(BUCKET, MP_VICTIM, |m| match value {
            None => {
                m.remove("escrow-parts");
            }
            Some(v) => {
                m.insert("escrow-parts".into(), v.into());
            }
        });
        f.refused(&format!("escrow-parts {value:?}")).await;
        f.restore(&original).await;
    }
    // A record in the metadata as well (a single-part object's): claimed twice.
    f.h.put(BUCKET, "single", &data_with_marker(100)).await;
    let record = f.h.stored_object(BUCKET, "single").metadata["escrow-meta"].clone();
    f.h.rewrite_metadata(BUCKET, MP_VICTIM, |m| {
        m.insert("escrow-meta".into(), record);
    });
    f.refused("a sealed record in the metadata of a multipart object").await;
    f.restore(&original).await;
    f.others_intact().await;
}

/// A whole multipart object (body and metadata) moved under another key or bucket; and bodies or
/// metadata swapped between two multipart objects.
async fn mp_moved_or_swapped(kind: StoreKind) {
    let f = mp_fixture(kind, true).await;
    let victim = f.h.stored_object(BUCKET, MP_VICTIM);
    let other = f.h.stored_object(BUCKET, MP_OTHER);
    let decoy = data_with_marker(100);
    f.h.put(BUCKET, "mp-decoy", &decoy).await;
    f.h.write_stored_object(BUCKET, "mp-decoy", &victim);
    let how = assert_get_fails(&f.h, "mp-decoy", &f.victim, None, "moved to another key").await;
    assert!(how.starts_with("refused"), "moved to another key: {how}");
    assert_head_fails(&f.h, "mp-decoy", "moved to another key").await;
    let elsewhere = "escrow-integrity-2";
    f.h.create_bucket(elsewhere).await;
    f.h.put(elsewhere, MP_VICTIM, &decoy).await;
    f.h.write_stored_object(elsewhere, MP_VICTIM, &victim);
    match try_get(&f.h.plain_client, elsewhere, MP_VICTIM, None).await {
        GetOutcome::Refused { status, code, .. } => assert!(status >= 400, "{status} {code}"),
        outcome => panic!("a multipart object moved to another bucket: {outcome:?}"),
    }

    // The other object's body under the victim's metadata, and the other way round.
    f.h.rewrite_body(BUCKET, MP_VICTIM, |b| *b = other.body.clone());
    f.refused("another multipart object's body").await;
    f.restore(&victim).await;
    f.h.rewrite_metadata(BUCKET, MP_VICTIM, |m| *m = other.metadata.clone());
    f.refused("another multipart object's metadata").await;
    f.restore(&victim).await;
    f.h.write_stored_object(BUCKET, MP_VICTIM, &other);
    f.refused("another multipart object, body and metadata").await;
    f.restore(&victim).await;
    f.others_intact().await;
}

/// A multipart object of one small part: small enough that a GET reads the whole stored object
/// in one store request (a different read path from the large objects above).
async fn mp_small_object_damaged(kind: StoreKind) {
    let h = Harness::new(kind).await;
    h.create_bucket(BUCKET).await;
    let data = data_with_marker(SEGMENT + 3000);
    for key in ["small-mp", "small-mp-twin"] {
        upload_multipart(&h.plain_client, BUCKET, key, &[&data]).await;
    }
    let original = h.stored_object(BUCKET, "small-mp");
    let stream = part_streams(&[data.len()])[0].clone();
    assert_eq!(
        manifest_range(&original.body).start,
        stream.end,
        "one part stream, then the manifest"
    );
    let manifest = manifest_range(&original.body);
    type Damage = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, Damage)> = vec![
        (
            "flipped byte in segment 1",
            Box::new(|b| flip(b, segment_range(SEGMENT + 3000, 1).start + 7)),
        ),
        ("flipped header byte", Box::new(|b| flip(b, 10))),
        ("flipped trailer byte", Box::new(move |b| flip(b, stream.end - 20))),
        ("flipped manifest byte", Box::new(move |b| flip(b, manifest.start + 40))),
        (
            "the part's last segment dropped",
            Box::new(|b| {
                b.drain(segment_range(SEGMENT + 3000, 1));
            }),
        ),
        (
            "the part removed, the manifest kept",
            Box::new(move |b| {
                b.drain(..manifest_range(b).start);
            }),
        ),
    ];
    for (what, damage) in cases {
        h.rewrite_body(BUCKET, "small-mp", |b| damage(b));
        assert_get_fails(&h, "small-mp", &data, None, what).await;
        h.write_stored_object(BUCKET, "small-mp", &original);
    }
    assert!(h_get(&h, "small-mp").await == data, "the restored object reads again");
    assert!(h_get(&h, "small-mp-twin").await == data);
    h.assert_no_plaintext(MARKER);
}

#[test]
fn layout_arithmetic_matches_the_format() {
    assert_eq!(stored_len(0), HEADER + TAG + TRAILER);
    assert_eq!(stored_len(LEN), HEADER + LEN + 3 * TAG + TRAILER);
    assert_eq!(segment_range(LEN, 2).end, stored_len(LEN) - TRAILER);
    assert_eq!(segment_range(LEN, 2).len(), LEN - 2 * SEGMENT + TAG);
    let streams = part_streams(&MP_PARTS);
    assert_eq!(streams[1].start, stored_len(MIN_PART));
    assert_eq!(streams[2].end, 2 * stored_len(MIN_PART) + stored_len(SEGMENT + 4321));
    assert_eq!(MP_PARTS.iter().sum::<usize>(), MP_LEN);
}
