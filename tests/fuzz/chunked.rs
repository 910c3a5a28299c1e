//! aws-chunked request bodies as the proxy consumes them: PUTs with `Content-Encoding:
//! aws-chunked` and generated, mostly malformed chunk framing (bad or huge hex sizes, sizes
//! that disagree with the data, missing CRLFs, a missing final chunk, truncation, bad
//! trailers, a wrong `x-amz-decoded-content-length`, trailing garbage), each with a valid
//! SigV4 header signature, against a proxy started in process (`common::Harness`) in front of
//! each store kind.
//!
//! Property: every answer comes within a bound and is a 4xx, or a 200 whose object reads back
//! as exactly the data the body framed; a body that is malformed in a way that would change the
//! data is always refused and leaves nothing in the bucket; a well-formed body is stored. The
//! proxy keeps serving afterwards. Requests are built and signed here as in
//! `tests/s3_api/chunked.rs` (SigV4 "Transferring Payload in Multiple Chunks").

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use proptest::prelude::*;
use s3s::crypto::Checksum as _;
use time::OffsetDateTime;

use crate::common::{ACCESS_KEY, GetOutcome, Harness, Signer, StoreKind, sha256_hex, try_get};

use super::support::{cases_from, run};

/// Default cases per store kind (each one is a few HTTP round trips).
const CASES: u32 = 32;
const BUCKET: &str = "fuzz-chunked";
/// Bound on one request; a proxy that needs longer is hanging.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

const UNSIGNED_TRAILER: &str = "STREAMING-UNSIGNED-PAYLOAD-TRAILER";
const SIGNED: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Which streaming variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `STREAMING-UNSIGNED-PAYLOAD-TRAILER` with an `x-amz-checksum-crc32` trailer (what the
    /// SDKs send over TLS).
    UnsignedTrailer,
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`: every chunk signed.
    Signed,
}

/// What to break in a well-formed body.
#[derive(Debug, Clone)]
enum Mutation {
    /// Nothing: the body is well-formed and must be stored.
    None,
    /// Chunk `i`'s size field replaced by this text.
    SizeText(usize, String),
    /// Chunk `i`'s declared size off by this much (never zero).
    SizeDelta(usize, i64),
    /// Data chunk `i`'s CRLF after its data replaced by this.
    DataCrlf(usize, &'static str),
    /// Chunk `i`'s CRLF after its size line replaced by this.
    MetaCrlf(usize, &'static str),
    /// A chunk extension of this many bytes on chunk `i` (the limit is 1 KiB).
    LongMeta(usize, usize),
    /// The final zero-length chunk (and trailer) left out.
    DropFinal,
    /// The body cut to this many bytes (modulo its length).
    Truncate(usize),
    /// The trailer changed.
    Trailer(TrailerMutation),
    /// `x-amz-decoded-content-length` off by this much (never zero).
    DecodedLen(i64),
    /// Bytes after the end of the body.
    Append(Vec<u8>),
}

#[derive(Debug, Clone)]
enum TrailerMutation {
    Missing,
    NoColon,
    BadValue(String),
    WrongCrc,
    OtherName,
    ExtraHeader(usize),
    Duplicate,
    NoFinalCrlf,
}

#[derive(Clone)]
struct Case {
    mode: Mode,
    data: Vec<u8>,
    /// Chunk lengths, each at least 1, summing to the data length.
    chunks: Vec<usize>,
    mutation: Mutation,
    http1: bool,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case")
            .field("mode", &self.mode)
            .field("data_len", &self.data.len())
            .field("chunks", &self.chunks)
            .field("mutation", &self.mutation)
            .field("http1", &self.http1)
            .finish()
    }
}

fn case() -> impl Strategy<Value = Case> {
    let sizes = proptest::sample::select(vec![
        "",
        "g",
        "-1",
        "0x10",
        " 1",
        "+1",
        "z9",
        "1 ",
        "10zz",
        "000000010",
        "123456789",
        "ffffffffff",
        ";",
        "\u{ff11}",
    ]);
    let crlf = || proptest::sample::select(vec!["", "\n", "\r", "\r\r", "xx", "\n\r"]);
    let mutation = prop_oneof![
        3 => Just(Mutation::None),
        2 => (any::<usize>(), prop_oneof![sizes.prop_map(str::to_string), "[0-9a-zA-Z;= -]{0,12}"]).prop_map(|(i, s)| Mutation::SizeText(i, s)),
        2 => (any::<usize>(), prop_oneof![-64i64..=64, Just(1i64 << 31), Just(-(1i64 << 20))]).prop_filter("non-zero", |(_, d)| *d != 0).prop_map(|(i, d)| Mutation::SizeDelta(i, d)),
        1 => (any::<usize>(), crlf()).prop_map(|(i, s)| Mutation::DataCrlf(i, s)),
        1 => (any::<usize>(), crlf()).prop_map(|(i, s)| Mutation::MetaCrlf(i, s)),
        1 => (any::<usize>(), prop_oneof![1usize..64, 1000usize..3000]).prop_map(|(i, n)| Mutation::LongMeta(i, n)),
        1 => Just(Mutation::DropFinal),
        2 => any::<usize>().prop_map(Mutation::Truncate),
        2 => prop_oneof![
            Just(TrailerMutation::Missing),
            Just(TrailerMutation::NoColon),
            "[A-Za-z0-9+/=!]{0,12}".prop_map(TrailerMutation::BadValue),
            Just(TrailerMutation::WrongCrc),
            Just(TrailerMutation::OtherName),
            prop_oneof![100usize..200, 17_000usize..20_000].prop_map(TrailerMutation::ExtraHeader),
            Just(TrailerMutation::Duplicate),
            Just(TrailerMutation::NoFinalCrlf),
        ].prop_map(Mutation::Trailer),
        1 => prop_oneof![-5i64..=5, Just(1i64 << 40)].prop_filter("non-zero", |d| *d != 0).prop_map(Mutation::DecodedLen),
        1 => proptest::collection::vec(any::<u8>(), 1..40).prop_map(Mutation::Append),
    ];
    let mode = prop_oneof![Just(Mode::UnsignedTrailer), Just(Mode::Signed)];
    (
        mode,
        proptest::collection::vec(any::<u8>(), 0..3000),
        proptest::collection::vec(1usize..1200, 0..6),
        mutation,
        any::<bool>(),
    )
        .prop_map(|(mode, data, cuts, mutation, http1)| {
            let mut chunks = Vec::new();
            let mut left = data.len();
            for c in cuts {
                if left == 0 {
                    break;
                }
                let c = c.min(left);
                chunks.push(c);
                left -= c;
            }
            if left > 0 {
                chunks.push(left);
            }
            Case {
                mode,
                data,
                chunks,
                mutation,
                http1,
            }
        })
}

/// Whether the mutation may leave a body the proxy can accept without storing anything but
/// `data` (s3s is lenient there); any other mutation must be refused.
fn may_be_accepted(case: &Case, ends: Ends) -> bool {
    let n = case.chunks.len() + 1;
    match &case.mutation {
        Mutation::None => true,
        // A no-op: no data chunk to change.
        Mutation::DataCrlf(..) => case.chunks.is_empty(),
        // Changes to the final chunk's framing: all data is framed before it, so s3s may
        // accept some of them (the content check below still applies).
        Mutation::SizeText(c, _) | Mutation::SizeDelta(c, _) | Mutation::MetaCrlf(c, _) | Mutation::LongMeta(c, _)
            if c % n == n - 1 =>
        {
            true
        }
        // Only the unsigned mode sends a trailer.
        Mutation::Trailer(_) if case.mode == Mode::Signed => true,
        // The size parser reads a hex prefix of up to 8 digits and ignores the rest.
        Mutation::SizeText(_, s) => s.starts_with(|c: char| c.is_ascii_hexdigit()),
        // All data framed; only the end of the stream is missing or changed.
        Mutation::DropFinal => case.mode == Mode::Signed,
        Mutation::Truncate(at) => at % ends.full_len.max(1) >= ends.data_end,
        // Undeclared trailing headers are ignored while under s3s's 16 KiB trailer limit.
        Mutation::Trailer(TrailerMutation::ExtraHeader(n)) => *n < 16 * 1024,
        Mutation::Trailer(TrailerMutation::Duplicate | TrailerMutation::NoFinalCrlf) => true,
        Mutation::Append(_) => true,
        _ => false,
    }
}

fn crc32(data: &[u8]) -> String {
    B64.encode(s3s::crypto::Crc32::checksum(data).as_ref())
}

/// The (mutated) body, and where its parts end.
fn encode(case: &Case, signer: &Signer, seed: &str) -> (Vec<u8>, Ends) {
    let mut pieces: Vec<&[u8]> = Vec::new();
    let mut at = 0;
    for &len in &case.chunks {
        pieces.push(&case.data[at..at + len]);
        at += len;
    }
    pieces.push(&[]);
    let n = pieces.len();
    let pick = |i: &usize| i % n;
    let mut out = Vec::new();
    let mut prev = seed.to_string();
    let mut data_end = 0;
    for (i, piece) in pieces.iter().enumerate() {
        if i + 1 == n {
            data_end = out.len();
            if matches!(case.mutation, Mutation::DropFinal) {
                let full_len = out.len();
                return (out, Ends { data_end, full_len });
            }
        }
        let mut size = format!("{:x}", piece.len());
        match &case.mutation {
            Mutation::SizeText(c, s) if pick(c) == i => size = s.clone(),
            Mutation::SizeDelta(c, d) if pick(c) == i => size = format!("{:x}", (piece.len() as i64 + d).max(0)),
            _ => {}
        }
        out.extend_from_slice(size.as_bytes());
        if let Mutation::LongMeta(c, len) = &case.mutation
            && pick(c) == i
        {
            out.extend_from_slice(format!(";x={}", "a".repeat(*len)).as_bytes());
        }
        if case.mode == Mode::Signed {
            let string_to_sign = format!(
                "AWS4-HMAC-SHA256-PAYLOAD\n{}\n{}\n{prev}\n{EMPTY_SHA256}\n{}",
                signer.timestamp,
                signer.scope,
                sha256_hex(piece)
            );
            let signature = signer.sign(&string_to_sign);
            out.extend_from_slice(format!(";chunk-signature={signature}").as_bytes());
            prev = signature;
        }
        match &case.mutation {
            Mutation::MetaCrlf(c, s) if pick(c) == i => out.extend_from_slice(s.as_bytes()),
            _ => out.extend_from_slice(b"\r\n"),
        }
        out.extend_from_slice(piece);
        if !piece.is_empty() {
            match &case.mutation {
                Mutation::DataCrlf(c, s) if c % case.chunks.len() == i => out.extend_from_slice(s.as_bytes()),
                _ => out.extend_from_slice(b"\r\n"),
            }
        }
    }
    match case.mode {
        Mode::Signed => out.extend_from_slice(b"\r\n"),
        Mode::UnsignedTrailer => {
            let crc = crc32(&case.data);
            let line = |name: &str, value: &str| format!("{name}:{value}\r\n");
            let trailer = match &case.mutation {
                Mutation::Trailer(t) => match t {
                    TrailerMutation::Missing => String::new(),
                    TrailerMutation::NoColon => format!("x-amz-checksum-crc32 {crc}\r\n\r\n"),
                    TrailerMutation::BadValue(v) => format!("{}\r\n", line("x-amz-checksum-crc32", v)),
                    TrailerMutation::WrongCrc => format!("{}\r\n", line("x-amz-checksum-crc32", &crc32(b"other"))),
                    TrailerMutation::OtherName => format!("{}\r\n", line("x-amz-checksum-crc64", &crc)),
                    TrailerMutation::ExtraHeader(n) => {
                        format!(
                            "{}{}\r\n",
                            line("x-amz-meta-pad", &"p".repeat(*n)),
                            line("x-amz-checksum-crc32", &crc)
                        )
                    }
                    TrailerMutation::Duplicate => {
                        let l = line("x-amz-checksum-crc32", &crc);
                        format!("{l}{l}\r\n")
                    }
                    TrailerMutation::NoFinalCrlf => line("x-amz-checksum-crc32", &crc),
                },
                _ => format!("{}\r\n", line("x-amz-checksum-crc32", &crc)),
            };
            out.extend_from_slice(trailer.as_bytes());
        }
    }
    if let Mutation::Append(more) = &case.mutation {
        out.extend_from_slice(more);
    }
    let full_len = out.len();
    if let Mutation::Truncate(at) = &case.mutation {
        out.truncate(at % full_len.max(1));
    }
    (out, Ends { data_end, full_len })
}

/// Where things end in an encoded body.
#[derive(Debug, Clone, Copy)]
struct Ends {
    /// Where the final chunk starts (all data is framed before it).
    data_end: usize,
    /// The body's length before any truncation.
    full_len: usize,
}

/// How one PUT ended.
#[derive(Debug)]
enum Outcome {
    Status(u16, String),
    /// The connection failed (the proxy may answer and close before reading the whole body).
    Transport(String),
}

async fn put(h: &Harness, http: &reqwest::Client, key: &str, case: &Case) -> (Outcome, Ends) {
    let signer = Signer::new(OffsetDateTime::now_utc());
    let host = h.endpoint.strip_prefix("https://").expect("https endpoint");
    let path = format!("/{BUCKET}/{key}");
    let decoded = match case.mutation {
        Mutation::DecodedLen(d) => (case.data.len() as i64 + d).max(0).to_string(),
        _ => case.data.len().to_string(),
    };
    let content_sha256 = match case.mode {
        Mode::UnsignedTrailer => UNSIGNED_TRAILER,
        Mode::Signed => SIGNED,
    };
    // Chunk signatures have a fixed length: encode once with a dummy seed to learn the length.
    let content_length = encode(case, &signer, &"0".repeat(64)).0.len().to_string();
    let mut headers: Vec<(&str, &str)> = vec![
        ("content-encoding", "aws-chunked"),
        ("content-length", &content_length),
        ("host", host),
        ("x-amz-content-sha256", content_sha256),
        ("x-amz-date", &signer.timestamp),
        ("x-amz-decoded-content-length", &decoded),
    ];
    if case.mode == Mode::UnsignedTrailer {
        headers.push(("x-amz-trailer", "x-amz-checksum-crc32"));
    }
    let signed_headers = headers.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(";");
    let canonical_headers: String = headers.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
    let canonical_request = format!("PUT\n{path}\n\n{canonical_headers}\n{signed_headers}\n{content_sha256}");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{}\n{}",
        signer.timestamp,
        signer.scope,
        sha256_hex(canonical_request.as_bytes())
    );
    let seed = signer.sign(&string_to_sign);
    let (body, ends) = encode(case, &signer, &seed);
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{}, SignedHeaders={signed_headers}, Signature={seed}",
        signer.scope
    );
    let mut req = http.put(format!("{}{path}", h.endpoint));
    for (name, value) in &headers {
        if *name != "host" {
            req = req.header(*name, *value);
        }
    }
    let send = async {
        match req.header("authorization", authorization).body(body).send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                Outcome::Status(status, resp.text().await.unwrap_or_default())
            }
            Err(e) => Outcome::Transport(format!("{e:?}")),
        }
    };
    let outcome = tokio::time::timeout(REQUEST_TIMEOUT, send)
        .await
        .unwrap_or_else(|_| panic!("the proxy did not answer within {REQUEST_TIMEOUT:?}: {case:?}"));
    (outcome, ends)
}

async fn listed(h: &Harness, key: &str) -> Vec<String> {
    let out = h
        .plain_client
        .list_objects_v2()
        .bucket(BUCKET)
        .prefix(key)
        .send()
        .await
        .expect("list the bucket");
    out.contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect()
}

fn fuzz_store(kind: StoreKind) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let h = rt.block_on(async {
        let h = Harness::new(kind).await;
        h.create_bucket(BUCKET).await;
        h
    });
    let (h2, h1) = (h.http(), h.http1());
    let counter = AtomicU64::new(0);
    let seen: Mutex<BTreeMap<String, u32>> = Mutex::new(BTreeMap::new());
    let name = format!("aws-chunked PUT through the proxy ({kind:?})");
    run(&name, cases_from("FUZZ_HTTP_CASES", CASES), case(), |case| {
        let key = format!("case-{}/", counter.fetch_add(1, Ordering::Relaxed));
        let key = format!("{key}object");
        rt.block_on(async {
            let http = if case.http1 { &h1 } else { &h2 };
            let (outcome, ends) = put(&h, http, &key, &case).await;
            let lenient = may_be_accepted(&case, ends);
            let label = match &outcome {
                Outcome::Status(200, _) if matches!(case.mutation, Mutation::None) => "200 well-formed".to_string(),
                Outcome::Status(200, _) => "200 lenient".to_string(),
                Outcome::Status(s, body) => {
                    let code = body
                        .split_once("<Code>")
                        .and_then(|(_, r)| r.split_once("</Code>"))
                        .map_or("", |(c, _)| c);
                    format!("{s} {code}")
                }
                Outcome::Transport(_) => "transport error".to_string(),
            };
            *seen.lock().expect("lock").entry(label).or_default() += 1;
            let stored = listed(&h, &key).await;
            match &outcome {
                Outcome::Status(200, _) => {
                    prop_assert!(lenient, "a malformed body was accepted: {:?}", case);
                    match try_get(&h.plain_client, BUCKET, &key, None).await {
                        GetOutcome::Complete { body, .. } => prop_assert!(
                            body == case.data,
                            "stored bytes differ from the framed data: {:?}",
                            case
                        ),
                        other => prop_assert!(false, "an accepted object does not read back: {:?}: {:?}", other, case),
                    }
                }
                Outcome::Status(s, body) => {
                    prop_assert!((400..500).contains(s), "status {} ({}) for {:?}", s, body, case);
                    prop_assert!(
                        !matches!(case.mutation, Mutation::None),
                        "a well-formed body was refused: {} {}: {:?}",
                        s,
                        body,
                        case
                    );
                    prop_assert!(stored.is_empty(), "a refused upload stored {:?}: {:?}", stored, case);
                }
                Outcome::Transport(e) => {
                    prop_assert!(
                        !matches!(case.mutation, Mutation::None),
                        "a well-formed body failed: {}: {:?}",
                        e,
                        case
                    );
                    prop_assert!(stored.is_empty(), "a failed upload stored {:?}: {:?}", stored, case);
                }
            }
            Ok(())
        })
    });
    eprintln!("fuzz-summary: {name}: answers {:?}", seen.lock().expect("lock"));
    // Still serving.
    rt.block_on(async {
        h.put(BUCKET, "after/fuzz", b"still serving").await;
        assert_eq!(h.get(BUCKET, "after/fuzz").await, b"still serving");
        h.stop().await;
    });
}

#[test]
fn aws_chunked_bodies_through_the_proxy_fs() {
    fuzz_store(StoreKind::Fs);
}

#[test]
fn aws_chunked_bodies_through_the_proxy_s3s_fs() {
    fuzz_store(StoreKind::S3sFs);
}
