//! Signed aws-chunked uploads, the one body encoding no client in the interop matrix produces:
//! `x-amz-content-sha256: STREAMING-AWS4-HMAC-SHA256-PAYLOAD` (each chunk signed, chained from
//! the seed signature) and `STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER` (the same, then a signed
//! `x-amz-checksum-crc32` trailer). The requests are built and signed here, per the AWS SigV4
//! spec ("Transferring Payload in Multiple Chunks" and "… with trailing headers"), and sent raw
//! with reqwest.
//!
//! A valid upload stores the plaintext's ETag and bytes (and only ciphertext); a tampered chunk,
//! signature or trailer, or a wrong `x-amz-decoded-content-length`, is refused and stores
//! nothing: the previous version of the key still reads back unchanged.

use aws_sdk_s3::types::ChecksumMode;
use time::OffsetDateTime;

use crate::checksums::crc32;
use crate::common::{
    ACCESS_KEY, Harness, MARKER, Signer, StoreKind, assert_s3_error, data_with_marker, etag_of, sha256_hex,
};
use crate::{BUCKET, harness};

per_store!(
    signed_chunked_uploads_store_the_plaintext,
    tampered_chunked_uploads_store_nothing,
    wrong_decoded_length_stores_nothing,
);

/// Decoded bytes per chunk.
const CHUNK: usize = 64 * 1024;
/// A length that is not a multiple of [`CHUNK`] (200 KiB: three full chunks and a short one).
const ODD_LEN: usize = 200 * 1024;
/// A length that is an exact multiple of [`CHUNK`] (three full chunks, then the final one).
const EVEN_LEN: usize = 3 * CHUNK;

const STREAMING: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
const STREAMING_TRAILER: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER";
/// Hex SHA-256 of the empty string.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Which signed streaming variant to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`.
    Chunks,
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER` with `x-amz-trailer: x-amz-checksum-crc32`.
    ChunksWithCrc32Trailer,
}

/// What to break after signing everything correctly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tamper {
    None,
    /// One hex digit of the seed signature (the `Authorization` header).
    SeedSignature,
    /// One hex digit of chunk `i`'s signature (the final zero-length chunk is the last index).
    ChunkSignature(usize),
    /// One byte of chunk `i`'s data, changed after the chunk was signed.
    ChunkData(usize),
    /// One hex digit of the trailer signature.
    TrailerSignature,
    /// A correctly signed trailer carrying the CRC32 of other bytes.
    TrailerValue,
    /// The body ends after the final chunk, without the declared trailer.
    TrailerMissing,
}

/// What the proxy answered to a [`ChunkedPut`].
struct Answer {
    status: u16,
    version: reqwest::Version,
    etag: Option<String>,
    /// The response body (an S3 error document on failure).
    body: String,
}

/// One signed aws-chunked PUT.
struct ChunkedPut<'a> {
    key: &'a str,
    data: &'a [u8],
    mode: Mode,
    /// `x-amz-decoded-content-length`; `None` for the true length.
    decoded_len: Option<usize>,
    tamper: Tamper,
}

impl<'a> ChunkedPut<'a> {
    fn new(key: &'a str, data: &'a [u8], mode: Mode) -> Self {
        Self {
            key,
            data,
            mode,
            decoded_len: None,
            tamper: Tamper::None,
        }
    }

    fn tamper(self, tamper: Tamper) -> Self {
        Self { tamper, ..self }
    }

    fn decoded_len(self, len: usize) -> Self {
        Self {
            decoded_len: Some(len),
            ..self
        }
    }

    /// Sends the request with [`Harness::http`].
    async fn send(&self, h: &Harness) -> Answer {
        self.send_with(h, &h.http()).await
    }

    /// Sends the request with `http`.
    async fn send_with(&self, h: &Harness, http: &reqwest::Client) -> Answer {
        let now = OffsetDateTime::now_utc();
        let signer = Signer::new(now);
        let host = h.endpoint.strip_prefix("https://").expect("https endpoint");
        let path = format!("/{BUCKET}/{}", self.key);
        let decoded_len = self.decoded_len.unwrap_or(self.data.len()).to_string();
        let content_sha256 = match self.mode {
            Mode::Chunks => STREAMING,
            Mode::ChunksWithCrc32Trailer => STREAMING_TRAILER,
        };

        // Chunk signatures are always 64 hex digits, so the encoded length does not depend on
        // the seed signature: encode once with a dummy seed to learn it.
        let content_length = self.encode(&signer, &"0".repeat(64)).len().to_string();

        // Sorted by name, as the canonical request wants them.
        let mut headers: Vec<(&str, &str)> = vec![
            ("content-encoding", "aws-chunked"),
            ("content-length", &content_length),
            ("host", host),
            ("x-amz-content-sha256", content_sha256),
            ("x-amz-date", &signer.timestamp),
            ("x-amz-decoded-content-length", &decoded_len),
        ];
        if self.mode == Mode::ChunksWithCrc32Trailer {
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
        let body = self.encode(&signer, &seed);
        assert_eq!(body.len().to_string(), content_length, "encoded length");

        let mut sent_seed = seed.clone();
        if self.tamper == Tamper::SeedSignature {
            corrupt_hex(&mut sent_seed);
        }
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{}, SignedHeaders={signed_headers}, Signature={sent_seed}",
            signer.scope
        );

        let mut req = http.put(format!("{}{path}", h.endpoint));
        for (name, value) in &headers {
            // reqwest derives Host (or :authority) from the URL.
            if *name != "host" {
                req = req.header(*name, *value);
            }
        }
        let resp = req
            .header("authorization", authorization)
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("chunked PUT {} ({:?}, {:?}): {e:?}", self.key, self.mode, self.tamper));
        let status = resp.status().as_u16();
        let version = resp.version();
        let etag = resp
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp.text().await.unwrap_or_default();
        Answer {
            status,
            version,
            etag,
            body,
        }
    }

    /// The aws-chunked body: each chunk `hex(len);chunk-signature=SIG\r\nDATA\r\n`, the final
    /// zero-length chunk, then (trailer mode) the signed trailer.
    fn encode(&self, signer: &Signer, seed: &str) -> Vec<u8> {
        let mut chunks: Vec<&[u8]> = self.data.chunks(CHUNK).collect();
        chunks.push(&[]);
        let mut out = Vec::with_capacity(self.data.len() + chunks.len() * 100 + 200);
        let mut prev = seed.to_string();
        for (i, chunk) in chunks.iter().enumerate() {
            let string_to_sign = format!(
                "AWS4-HMAC-SHA256-PAYLOAD\n{}\n{}\n{prev}\n{EMPTY_SHA256}\n{}",
                signer.timestamp,
                signer.scope,
                sha256_hex(chunk)
            );
            let signature = signer.sign(&string_to_sign);
            let mut sent = signature.clone();
            if self.tamper == Tamper::ChunkSignature(i) {
                corrupt_hex(&mut sent);
            }
            out.extend_from_slice(format!("{:x};chunk-signature={sent}\r\n", chunk.len()).as_bytes());
            let data_at = out.len();
            out.extend_from_slice(chunk);
            if self.tamper == Tamper::ChunkData(i) {
                assert!(!chunk.is_empty(), "tampering with the data of an empty chunk");
                out[data_at + chunk.len() / 2] ^= 0x01;
            }
            if !chunk.is_empty() {
                out.extend_from_slice(b"\r\n");
            }
            prev = signature;
        }
        match self.mode {
            Mode::Chunks => out.extend_from_slice(b"\r\n"),
            Mode::ChunksWithCrc32Trailer if self.tamper == Tamper::TrailerMissing => out.extend_from_slice(b"\r\n"),
            Mode::ChunksWithCrc32Trailer => {
                let value = if self.tamper == Tamper::TrailerValue {
                    crc32(b"other bytes")
                } else {
                    crc32(self.data)
                };
                let canonical = format!("x-amz-checksum-crc32:{value}\n");
                let string_to_sign = format!(
                    "AWS4-HMAC-SHA256-TRAILER\n{}\n{}\n{prev}\n{}",
                    signer.timestamp,
                    signer.scope,
                    sha256_hex(canonical.as_bytes())
                );
                let mut signature = signer.sign(&string_to_sign);
                if self.tamper == Tamper::TrailerSignature {
                    corrupt_hex(&mut signature);
                }
                out.extend_from_slice(
                    format!("x-amz-checksum-crc32:{value}\r\nx-amz-trailer-signature:{signature}\r\n\r\n").as_bytes(),
                );
            }
        }
        out
    }
}

/// Changes the first hex digit of a signature.
fn corrupt_hex(signature: &mut String) {
    let first = if signature.starts_with('0') { "1" } else { "0" };
    signature.replace_range(..1, first);
}

/// The `<Code>` of an S3 error body.
fn error_code(body: &str) -> &str {
    body.split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map_or("", |(code, _)| code)
}

/// Asserts that `bucket/key` reads back exactly `data` with its ETag.
async fn assert_object(h: &Harness, key: &str, data: &[u8], what: &str) {
    assert!(
        h.get_with(&h.client, BUCKET, key).await == data,
        "{what}: GET {key} body differs"
    );
    let head = h
        .plain_client
        .head_object()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{what}: HEAD {key}: {e:?}"));
    assert_eq!(head.e_tag(), Some(etag_of(data).as_str()), "{what}: ETag of {key}");
    assert_eq!(
        head.content_length(),
        Some(data.len() as i64),
        "{what}: length of {key}"
    );
}

/// Asserts that `key` does not exist.
async fn assert_absent(h: &Harness, key: &str, what: &str) {
    assert_s3_error(
        h.plain_client.head_object().bucket(BUCKET).key(key).send().await,
        404,
        "",
        what,
    );
}

async fn signed_chunked_uploads_store_the_plaintext(kind: StoreKind) {
    let h = harness(kind).await;
    // The SDK clients speak h2 to the proxy; run each body over HTTP/1.1 too.
    for (label, version, http) in [
        ("h2", reqwest::Version::HTTP_2, h.http()),
        ("http1", reqwest::Version::HTTP_11, h.http1()),
    ] {
        for mode in [Mode::Chunks, Mode::ChunksWithCrc32Trailer] {
            for len in [ODD_LEN, EVEN_LEN, 1] {
                let what = format!("{label}, {mode:?}, {len} bytes");
                let key = format!("chunked/{label}/{mode:?}/{len}");
                let data = data_with_marker(len);
                let answer = ChunkedPut::new(&key, &data, mode).send_with(&h, &http).await;
                assert_eq!(answer.status, 200, "{what}: {}", answer.body);
                assert_eq!(answer.version, version, "{what}: HTTP version");
                assert_eq!(answer.etag.as_deref(), Some(etag_of(&data).as_str()), "{what}: ETag");
                assert_object(&h, &key, &data, &what).await;

                if mode == Mode::ChunksWithCrc32Trailer {
                    // The trailing checksum is kept and returned like a header-sent one.
                    let head = h
                        .plain_client
                        .head_object()
                        .bucket(BUCKET)
                        .key(&key)
                        .checksum_mode(ChecksumMode::Enabled)
                        .send()
                        .await
                        .expect("HEAD with checksum mode");
                    assert_eq!(head.checksum_crc32(), Some(crc32(&data).as_str()), "{what}: CRC32");
                }
            }
        }
    }
    h.assert_no_plaintext(MARKER);
}

async fn tampered_chunked_uploads_store_nothing(kind: StoreKind) {
    let h = harness(kind).await;
    let old = data_with_marker(ODD_LEN / 2 + 7);
    let new = data_with_marker(ODD_LEN);
    // Index of the final zero-length chunk; the one before it is the short last data chunk.
    let final_chunk = ODD_LEN.div_ceil(CHUNK);
    assert_ne!(ODD_LEN % CHUNK, 0);

    // (mode, tamper, expected status and code). A bad chunk or trailer signature surfaces only
    // while the body streams; the proxy answers it as AWS does, 403 SignatureDoesNotMatch, and
    // stores nothing.
    let mut cases = vec![
        (Mode::Chunks, Tamper::SeedSignature, 403, "SignatureDoesNotMatch"),
        (
            Mode::ChunksWithCrc32Trailer,
            Tamper::SeedSignature,
            403,
            "SignatureDoesNotMatch",
        ),
    ];
    for mode in [Mode::Chunks, Mode::ChunksWithCrc32Trailer] {
        for tamper in [
            Tamper::ChunkSignature(0),
            Tamper::ChunkSignature(final_chunk - 1),
            Tamper::ChunkData(0),
            Tamper::ChunkData(final_chunk - 1),
            // Every data byte is valid; only the final zero-length chunk's signature is not.
            Tamper::ChunkSignature(final_chunk),
        ] {
            cases.push((mode, tamper, 403, "SignatureDoesNotMatch"));
        }
    }
    cases.extend([
        (
            Mode::ChunksWithCrc32Trailer,
            Tamper::TrailerSignature,
            403,
            "SignatureDoesNotMatch",
        ),
        (Mode::ChunksWithCrc32Trailer, Tamper::TrailerValue, 400, "BadDigest"),
        (
            Mode::ChunksWithCrc32Trailer,
            Tamper::TrailerMissing,
            400,
            "InvalidRequest",
        ),
    ]);

    for (i, (mode, tamper, status, code)) in cases.into_iter().enumerate() {
        let what = format!("{mode:?}, {tamper:?}");
        // An existing object keeps its old content.
        let existing = format!("tampered/{i}/existing");
        h.put(BUCKET, &existing, &old).await;
        let answer = ChunkedPut::new(&existing, &new, mode).tamper(tamper).send(&h).await;
        check_refused(&answer, status, code, &what);
        assert_object(&h, &existing, &old, &format!("{what}: the old version")).await;

        // A new key is not created.
        let fresh = format!("tampered/{i}/fresh");
        let answer = ChunkedPut::new(&fresh, &new, mode).tamper(tamper).send(&h).await;
        check_refused(&answer, status, code, &what);
        assert_absent(&h, &fresh, &format!("{what}: a refused upload created {fresh}")).await;
    }
    h.assert_no_plaintext(MARKER);
}

/// Asserts a 4xx S3 error; with `status` non-zero, exactly `status` and `code`.
#[track_caller]
fn check_refused(answer: &Answer, status: u16, code: &str, what: &str) {
    let (got, body) = (answer.status, &answer.body);
    assert!(
        (400..500).contains(&got),
        "{what}: expected a 4xx refusal, got {got}: {body}"
    );
    if status != 0 {
        assert_eq!((got, error_code(body)), (status, code), "{what}: {body}");
    }
}

async fn wrong_decoded_length_stores_nothing(kind: StoreKind) {
    let h = harness(kind).await;
    let old = data_with_marker(1000);
    let new = data_with_marker(ODD_LEN);
    for mode in [Mode::Chunks, Mode::ChunksWithCrc32Trailer] {
        for (label, declared) in [
            ("one byte more", ODD_LEN + 1),
            ("a chunk more", ODD_LEN + CHUNK),
            ("one byte less", ODD_LEN - 1),
        ] {
            let what = format!("{mode:?}, x-amz-decoded-content-length {label}");
            let key = format!("length/{mode:?}/{declared}");
            h.put(BUCKET, &key, &old).await;
            let answer = ChunkedPut::new(&key, &new, mode).decoded_len(declared).send(&h).await;
            check_refused(&answer, 400, "IncompleteBody", &what);
            assert_object(&h, &key, &old, &format!("{what}: the old version")).await;

            let fresh = format!("{key}/fresh");
            let answer = ChunkedPut::new(&fresh, &new, mode).decoded_len(declared).send(&h).await;
            check_refused(&answer, 400, "IncompleteBody", &what);
            assert_absent(&h, &fresh, &format!("{what}: a refused upload created {fresh}")).await;
        }
    }
    h.assert_no_plaintext(MARKER);
}
