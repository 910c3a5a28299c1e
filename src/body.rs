//! The streaming bodies between clients and stores: [`EncryptBody`] turns a client's plaintext
//! upload into the stored stream, [`DecryptBody`] turns stored segments back into plaintext.
//!
//! Both hold at most one segment (plus one incoming chunk) in memory, whatever the object's
//! size. Neither ever yields plaintext that failed authentication: a failure becomes a stream
//! error, which aborts the HTTP exchange (the store discards a failed upload; a client sees a
//! broken download instead of a complete one with wrong bytes).

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use futures::Stream;
use s3s::crypto::Checksum as _;

use crate::crypto::format::{ChecksumAlgorithm, HEADER_LEN, TAG_LEN, TRAILER_LEN};
use crate::crypto::segment::{Layout, StreamHeader, StreamOpener, StreamSealer, Trailer, open_trailer, seal_trailer};
use crate::secret::Key256;

/// A boxed error from a client body stream (s3s yields these).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why an upload body was refused. The front end maps each to its S3 error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyFailure {
    /// The body ended before the declared length.
    Incomplete,
    /// The body went past the declared length.
    TooLong,
    /// `Content-MD5` did not match.
    BadDigest,
    /// The `x-amz-checksum-*` value did not match.
    ChecksumMismatch(ChecksumAlgorithm),
    /// A declared trailing checksum never arrived.
    MissingTrailer(ChecksumAlgorithm),
    /// The client's body stream failed (connection, aws-chunked signature).
    Client(String),
}

/// What the client claims about its plaintext, checked at the end of the body.
#[derive(Debug, Clone, Default)]
pub struct Expectations {
    /// Decoded `Content-MD5`.
    pub md5: Option<[u8; 16]>,
    /// The checksum algorithm to compute, if any.
    pub algorithm: Option<ChecksumAlgorithm>,
    /// The expected digest, if sent as a header.
    pub digest: Option<Vec<u8>>,
    /// Where a trailing digest (`x-amz-trailer`) will appear once the body is read.
    pub trailer: Option<s3s::TrailingHeaders>,
}

/// What the upload produced, once the body has been read and checked.
#[derive(Debug, Clone)]
pub struct Digests {
    /// MD5 of the plaintext.
    pub md5: [u8; 16],
    /// The client checksum computed over the plaintext.
    pub checksum: Option<(ChecksumAlgorithm, Vec<u8>)>,
}

/// The outcome slot an [`EncryptBody`] fills when it ends.
pub type Outcome = Arc<Mutex<Option<Result<Digests, BodyFailure>>>>;

enum Hasher {
    Crc32(s3s::crypto::Crc32),
    Crc32c(s3s::crypto::Crc32c),
    Crc64Nvme(s3s::crypto::Crc64Nvme),
    Sha1(s3s::crypto::Sha1),
    Sha256(s3s::crypto::Sha256),
}

impl Hasher {
    fn new(algo: ChecksumAlgorithm) -> Self {
        match algo {
            ChecksumAlgorithm::Crc32 => Self::Crc32(s3s::crypto::Crc32::new()),
            ChecksumAlgorithm::Crc32c => Self::Crc32c(s3s::crypto::Crc32c::new()),
            ChecksumAlgorithm::Crc64Nvme => Self::Crc64Nvme(s3s::crypto::Crc64Nvme::new()),
            ChecksumAlgorithm::Sha1 => Self::Sha1(s3s::crypto::Sha1::new()),
            ChecksumAlgorithm::Sha256 => Self::Sha256(s3s::crypto::Sha256::new()),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Self::Crc32(h) => h.update(data),
            Self::Crc32c(h) => h.update(data),
            Self::Crc64Nvme(h) => h.update(data),
            Self::Sha1(h) => h.update(data),
            Self::Sha256(h) => h.update(data),
        }
    }

    fn finalize(self) -> Vec<u8> {
        match self {
            Self::Crc32(h) => h.finalize().as_ref().to_vec(),
            Self::Crc32c(h) => h.finalize().as_ref().to_vec(),
            Self::Crc64Nvme(h) => h.finalize().as_ref().to_vec(),
            Self::Sha1(h) => h.finalize().as_ref().to_vec(),
            Self::Sha256(h) => h.finalize().as_ref().to_vec(),
        }
    }
}

/// The name of the header or trailer carrying a checksum (`x-amz-checksum-crc32`, …).
pub fn checksum_header(algo: ChecksumAlgorithm) -> String {
    format!("x-amz-checksum-{}", algo.s3_name().to_lowercase())
}

// === impl EncryptBody ===

/// Encrypts a plaintext upload of exactly `plain_len` bytes into the stored stream
/// `header ‖ segments ‖ trailer`, hashing the plaintext on the way. The final segment is sealed
/// only after the input ended and every client check passed, so a refused upload never produces
/// a complete stored stream.
pub struct EncryptBody<S> {
    input: Option<S>,
    sealer: StreamSealer,
    dek: Key256,
    part: u32,
    layout: Layout,
    plain_len: u64,
    segments: u64,
    received: u64,
    segment: Vec<u8>,
    md5: Option<s3s::crypto::Md5>,
    hasher: Option<Hasher>,
    expect: Expectations,
    outbox: VecDeque<Bytes>,
    outcome: Outcome,
    done: bool,
}

impl<S> EncryptBody<S> {
    /// Encrypts `input` as part `part` of the object keyed by `dek`. The result (or the failure)
    /// lands in the returned [`Outcome`] when the stream ends.
    pub fn new(
        input: S,
        dek: &Key256,
        part: u32,
        header: StreamHeader,
        extension: Vec<u8>,
        plain_len: u64,
        expect: Expectations,
    ) -> (Self, Outcome) {
        assert_eq!(
            extension.len(),
            header.extension_len(),
            "the header announces the extension"
        );
        let layout = header.layout();
        let outcome: Outcome = Arc::new(Mutex::new(None));
        let body = Self {
            input: Some(input),
            sealer: StreamSealer::new(dek, part, header),
            dek: dek.clone(),
            part,
            layout,
            plain_len,
            segments: layout.segment_count(plain_len),
            received: 0,
            // Sized to the first segment: a small object allocates what it needs, not 64 KiB.
            segment: Vec::with_capacity(layout.stored_segment_len(plain_len, 0) as usize),
            md5: Some(s3s::crypto::Md5::new()),
            hasher: expect.algorithm.map(Hasher::new),
            expect,
            outbox: [Bytes::copy_from_slice(&header.encode()), Bytes::from(extension)]
                .into_iter()
                .filter(|b| !b.is_empty())
                .collect(),
            outcome: outcome.clone(),
            done: false,
        };
        (body, outcome)
    }

    /// Stored length of the stream this body produces.
    pub fn stored_len(&self) -> u64 {
        self.layout.stored_len(self.plain_len)
    }

    fn fail(&mut self, failure: BodyFailure) -> io::Error {
        let message = format!("upload refused: {failure:?}");
        *self.outcome.lock().unwrap_or_else(|p| p.into_inner()) = Some(Err(failure));
        self.input = None;
        self.outbox.clear();
        self.done = true;
        io::Error::other(message)
    }

    fn segment_target(&self) -> usize {
        let index = self.sealer_index();
        self.layout.stored_segment_len(self.plain_len, index) as usize - TAG_LEN
    }

    fn sealer_index(&self) -> u64 {
        (self.received - self.segment.len() as u64) >> self.layout.segment_size().trailing_zeros()
    }

    /// Takes plaintext from `chunk` into the current segment, sealing every full non-final one.
    fn absorb(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() {
            let index = self.sealer_index();
            let room = self.segment_target() - self.segment.len();
            let take = room.min(chunk.len());
            self.segment.extend_from_slice(&chunk[..take]);
            self.received += take as u64;
            chunk = &chunk[take..];
            if self.segment.len() == self.segment_target() && index + 1 < self.segments {
                self.flush_segment(false);
            }
        }
    }

    fn flush_segment(&mut self, last: bool) {
        let next = if last {
            Vec::new()
        } else {
            let index = self.sealer_index() + 1;
            Vec::with_capacity(self.layout.stored_segment_len(self.plain_len, index) as usize)
        };
        let mut buf = std::mem::replace(&mut self.segment, next);
        self.sealer.seal_segment(&mut buf, last);
        self.outbox.push_back(Bytes::from(buf));
    }

    /// The input ended: check lengths and digests, then seal the last segment and the trailer.
    fn finish(&mut self) -> Result<(), BodyFailure> {
        if self.received != self.plain_len {
            return Err(BodyFailure::Incomplete);
        }
        // Invariant: `finish` runs once; both hashers are present until then.
        let md5: [u8; 16] = self.md5.take().expect("md5 present until finish").finalize();
        if self.expect.md5.is_some_and(|want| want != md5) {
            return Err(BodyFailure::BadDigest);
        }
        let checksum = match (self.expect.algorithm, self.hasher.take()) {
            (Some(algo), Some(hasher)) => {
                let got = hasher.finalize();
                let want = match (&self.expect.digest, &self.expect.trailer) {
                    (Some(d), _) => Some(d.clone()),
                    (None, Some(trailers)) => {
                        let name = checksum_header(algo);
                        let value = trailers
                            .read(|h| h.get(&name).and_then(|v| v.to_str().ok()).map(str::to_owned))
                            .flatten();
                        let Some(value) = value else {
                            return Err(BodyFailure::MissingTrailer(algo));
                        };
                        Some(decode_digest(algo, &value).ok_or(BodyFailure::ChecksumMismatch(algo))?)
                    }
                    (None, None) => None,
                };
                if want.is_some_and(|w| w != got) {
                    return Err(BodyFailure::ChecksumMismatch(algo));
                }
                Some((algo, got))
            }
            _ => None,
        };
        self.flush_segment(true);
        let trailer = Trailer {
            plain_len: self.plain_len,
            md5,
            checksum: checksum.clone(),
            header: self.sealer.header(),
        };
        self.outbox
            .push_back(Bytes::from(seal_trailer(&self.dek, self.part, &trailer)));
        *self.outcome.lock().unwrap_or_else(|p| p.into_inner()) = Some(Ok(Digests { md5, checksum }));
        Ok(())
    }
}

/// Decodes a base64 digest of `algo`'s length.
pub fn decode_digest(algo: ChecksumAlgorithm, value: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD.decode(value.trim()).ok()?;
    (bytes.len() == algo.digest_len()).then_some(bytes)
}

impl<S, E> Stream for EncryptBody<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(out) = this.outbox.pop_front() {
                return Poll::Ready(Some(Ok(out)));
            }
            if this.done {
                return Poll::Ready(None);
            }
            let Some(input) = this.input.as_mut() else {
                return Poll::Ready(None);
            };
            match ready!(Pin::new(input).poll_next(cx)) {
                Some(Ok(chunk)) => {
                    if this.received + chunk.len() as u64 > this.plain_len {
                        return Poll::Ready(Some(Err(this.fail(BodyFailure::TooLong))));
                    }
                    if let Some(md5) = this.md5.as_mut() {
                        md5.update(&chunk);
                    }
                    if let Some(h) = this.hasher.as_mut() {
                        h.update(&chunk);
                    }
                    this.absorb(&chunk);
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(this.fail(BodyFailure::Client(e.to_string()))))),
                None => {
                    this.input = None;
                    this.done = true;
                    if let Err(failure) = this.finish() {
                        this.outbox.clear();
                        return Poll::Ready(Some(Err(this.fail(failure))));
                    }
                }
            }
        }
    }
}

// === impl DecryptBody ===

/// Decrypts stored streams back into plaintext: for each [`Piece`] in turn, optionally the
/// stream's header (which must equal the pinned one) and extension, then segments
/// `first..=last`, dropping `skip` bytes at the start and yielding exactly `len` bytes, then
/// optionally the stream's trailer (which must open and agree). A single-part object is one
/// piece; a multipart object's read is one piece per part it touches, over one stored range.
pub struct DecryptBody<S> {
    input: S,
    dek: Key256,
    pieces: VecDeque<Piece>,
    current: Option<Current>,
    buf: BytesMut,
    done: bool,
}

/// One stream's share of a read.
#[derive(Debug, Clone)]
pub struct Piece {
    /// The stream's part number (0 for a single-part object).
    pub part: u32,
    /// The stream's header, as its trailer or the manifest pins it.
    pub header: StreamHeader,
    /// Plaintext length of the whole stream.
    pub plain_len: u64,
    /// First segment in the input.
    pub first_segment: u64,
    /// Last segment to open (inclusive).
    pub last_segment: u64,
    /// Plaintext bytes to drop from the first segment.
    pub skip: u64,
    /// Plaintext bytes to yield.
    pub len: u64,
    /// Whether the input starts with the stream header (and extension).
    pub header_first: bool,
    /// Whether the stream's trailer follows its last segment in the input, to be checked.
    pub trailer_after: bool,
}

impl Piece {
    /// The piece reading plaintext `range` of a stream of `plain_len` bytes, and the stored
    /// bytes (relative to the stream's start) it consumes. `range` may be empty only for an
    /// empty stream. With `header_first` the input starts at the stream's first byte; with
    /// `trailer_after` (only when `range` reaches the end) it runs through the trailer.
    pub fn new(
        part: u32,
        header: StreamHeader,
        plain_len: u64,
        range: std::ops::Range<u64>,
        header_first: bool,
        trailer_after: bool,
    ) -> (Self, std::ops::Range<u64>) {
        let layout = header.layout();
        let (first_segment, last_segment, skip, len, mut stored) = if plain_len == 0 {
            let start = (HEADER_LEN + header.extension_len()) as u64;
            (0, 0, 0, 0, start..start + TAG_LEN as u64)
        } else {
            let span = layout.locate(plain_len, range.clone());
            (span.first_segment, span.last_segment, span.skip, span.len, span.stored)
        };
        if header_first {
            stored.start = 0;
        }
        if trailer_after {
            assert_eq!(range.end, plain_len, "a trailer follows only the end of the stream");
            stored.end = layout.stored_len(plain_len);
        }
        let piece = Self {
            part,
            header,
            plain_len,
            first_segment,
            last_segment,
            skip,
            len,
            header_first,
            trailer_after,
        };
        (piece, stored)
    }
}

/// The piece being decrypted.
struct Current {
    opener: StreamOpener,
    layout: Layout,
    piece: Piece,
    segments: u64,
    next: u64,
    skip: usize,
    remaining: u64,
    /// The header still to check at the start of the input.
    header: Option<[u8; HEADER_LEN]>,
    /// Extension bytes still to skip after the header (verified when the record was opened).
    skip_extension: usize,
    /// Whether all segments of the piece have been opened.
    segments_done: bool,
    /// The last segment's plaintext, held back until the trailer after it checks out: a body
    /// never ends complete before everything in its range has authenticated.
    held: Option<Bytes>,
}

impl<S> DecryptBody<S> {
    /// Decrypts `input`: the stored bytes the `pieces` describe, back to back.
    pub fn new(input: S, dek: &Key256, pieces: Vec<Piece>) -> Self {
        Self {
            input,
            dek: dek.clone(),
            pieces: pieces.into(),
            current: None,
            buf: BytesMut::new(),
            done: false,
        }
    }

    fn fail(&mut self, what: &str) -> io::Error {
        self.done = true;
        tracing::error!(what, "stored object failed authentication; stopping the stream");
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("stored object failed authentication: {what}"),
        )
    }

    /// Opens the next segment (or checks the next header or trailer) if the buffer holds all of
    /// it. `None`: more input needed, or (with `done` set) the end.
    fn next_plaintext(&mut self) -> Option<Result<Bytes, io::Error>> {
        loop {
            let Some(cur) = self.current.as_mut() else {
                match self.pieces.pop_front() {
                    Some(piece) => {
                        let layout = piece.header.layout();
                        self.current = Some(Current {
                            opener: StreamOpener::new(&self.dek, piece.part, piece.header),
                            layout,
                            segments: layout.segment_count(piece.plain_len),
                            next: piece.first_segment,
                            skip: piece.skip as usize,
                            remaining: piece.len,
                            header: piece.header_first.then(|| piece.header.encode()),
                            skip_extension: if piece.header_first {
                                piece.header.extension_len()
                            } else {
                                0
                            },
                            segments_done: false,
                            held: None,
                            piece,
                        });
                        continue;
                    }
                    None => {
                        self.done = true;
                        return None;
                    }
                }
            };
            if let Some(header) = cur.header {
                if self.buf.len() < HEADER_LEN {
                    return None;
                }
                if self.buf.split_to(HEADER_LEN)[..] != header[..] {
                    return Some(Err(self.fail("stream header differs from the one pinned for it")));
                }
                cur.header = None;
            }
            if cur.skip_extension > 0 {
                if self.buf.len() < cur.skip_extension {
                    return None;
                }
                let _ = self.buf.split_to(cur.skip_extension);
                cur.skip_extension = 0;
            }
            if cur.segments_done {
                // Only the trailer is left (pieces without one are dropped when their segments end).
                if self.buf.len() < TRAILER_LEN {
                    return None;
                }
                let sealed = self.buf.split_to(TRAILER_LEN);
                let agrees = open_trailer(&self.dek, cur.piece.part, &sealed)
                    .is_ok_and(|t| t.plain_len == cur.piece.plain_len && t.header == cur.piece.header);
                if !agrees {
                    return Some(Err(self.fail("part trailer did not authenticate")));
                }
                let held = cur.held.take();
                self.current = None;
                match held {
                    Some(plain) => return Some(Ok(plain)),
                    None => continue,
                }
            }
            let want = cur.layout.stored_segment_len(cur.piece.plain_len, cur.next) as usize;
            if self.buf.len() < want {
                return None;
            }
            let mut segment = self.buf.split_to(want);
            let last = cur.next + 1 == cur.segments;
            if cur.opener.open_segment(cur.next, last, &mut segment).is_err() {
                return Some(Err(self.fail("segment did not authenticate")));
            }
            segment.truncate(want - TAG_LEN);
            let mut plain = segment.freeze();
            plain = plain.slice(cur.skip.min(plain.len())..);
            cur.skip = 0;
            if plain.len() as u64 > cur.remaining {
                plain.truncate(cur.remaining as usize);
            }
            cur.remaining -= plain.len() as u64;
            cur.next += 1;
            if cur.next > cur.piece.last_segment || cur.remaining == 0 {
                cur.segments_done = true;
                if cur.piece.trailer_after {
                    cur.held = Some(plain);
                    continue;
                }
                self.current = None;
            }
            return Some(Ok(plain));
        }
    }
}

impl<S, E> Stream for DecryptBody<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if let Some(item) = this.next_plaintext() {
                return Poll::Ready(Some(item));
            }
            if this.done {
                return Poll::Ready(None);
            }
            match ready!(Pin::new(&mut this.input).poll_next(cx)) {
                Some(Ok(chunk)) => this.buf.extend_from_slice(&chunk),
                Some(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(io::Error::other(format!("store read failed: {e}")))));
                }
                None => return Poll::Ready(Some(Err(this.fail("stored object is truncated")))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::{StreamExt, TryStreamExt, stream};

    use super::*;
    use crate::crypto::segment::open_all;

    fn chunks(data: &[u8], size: usize) -> impl Stream<Item = Result<Bytes, io::Error>> + Unpin + use<> {
        let parts: Vec<Result<Bytes, io::Error>> = data
            .chunks(size.max(1))
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        stream::iter(parts)
    }

    async fn encrypt(
        plain: &[u8],
        chunk: usize,
        expect: Expectations,
    ) -> (Result<Vec<u8>, io::Error>, Outcome, Key256) {
        let dek = Key256::random();
        let (body, outcome) = EncryptBody::new(
            chunks(plain, chunk),
            &dek,
            0,
            StreamHeader::random(12),
            Vec::new(),
            plain.len() as u64,
            expect,
        );
        let out: Result<Vec<Bytes>, io::Error> = body.try_collect().await;
        (out.map(|v| v.concat()), outcome, dek)
    }

    #[tokio::test]
    async fn encrypt_matches_the_in_memory_format_for_any_chunking() {
        for len in [0usize, 1, 4095, 4096, 4097, 10_000, 3 * 4096] {
            for chunk in [1usize, 7, 4096, 5000, 100_000] {
                let plain: Vec<u8> = (0..len).map(|i| (i % 256) as u8).collect();
                let (stored, outcome, dek) = encrypt(&plain, chunk, Expectations::default()).await;
                let stored = stored.expect("encrypts");
                let (back, trailer) = open_all(&dek, 0, &stored).expect("opens");
                assert_eq!(back, plain, "len {len} chunk {chunk}");
                let digests = outcome.lock().unwrap().clone().unwrap().unwrap();
                assert_eq!(trailer.md5, digests.md5);
                assert_eq!(hex::encode(digests.md5), format!("{:x}", md5::Md5::digest(&plain)));
            }
        }
    }

    use md5::Digest as _;

    #[tokio::test]
    async fn wrong_md5_or_checksum_is_refused_before_the_last_segment() {
        let plain = vec![5u8; 10_000];
        let expect = Expectations {
            md5: Some([0; 16]),
            ..Default::default()
        };
        let (res, outcome, _) = encrypt(&plain, 1000, expect).await;
        assert!(res.is_err());
        assert_eq!(
            outcome.lock().unwrap().clone().unwrap().unwrap_err(),
            BodyFailure::BadDigest
        );

        let expect = Expectations {
            algorithm: Some(ChecksumAlgorithm::Crc32),
            digest: Some(vec![0, 0, 0, 0]),
            ..Default::default()
        };
        let (res, outcome, _) = encrypt(&plain, 1000, expect).await;
        assert!(res.is_err());
        assert_eq!(
            outcome.lock().unwrap().clone().unwrap().unwrap_err(),
            BodyFailure::ChecksumMismatch(ChecksumAlgorithm::Crc32)
        );

        let good = s3s::crypto::Crc32::checksum(&plain).as_ref().to_vec();
        let expect = Expectations {
            algorithm: Some(ChecksumAlgorithm::Crc32),
            digest: Some(good.clone()),
            ..Default::default()
        };
        let (res, outcome, _) = encrypt(&plain, 1000, expect).await;
        assert!(res.is_ok());
        assert_eq!(
            outcome.lock().unwrap().clone().unwrap().unwrap().checksum,
            Some((ChecksumAlgorithm::Crc32, good))
        );
    }

    #[tokio::test]
    async fn short_and_long_bodies_are_refused() {
        let dek = Key256::random();
        let (body, outcome) = EncryptBody::new(
            chunks(&[1u8; 100], 10),
            &dek,
            0,
            StreamHeader::random(12),
            Vec::new(),
            101,
            Expectations::default(),
        );
        let out: Result<Vec<Bytes>, io::Error> = body.try_collect().await;
        assert!(out.is_err());
        assert_eq!(
            outcome.lock().unwrap().clone().unwrap().unwrap_err(),
            BodyFailure::Incomplete
        );
        let (body, outcome) = EncryptBody::new(
            chunks(&[1u8; 100], 10),
            &dek,
            0,
            StreamHeader::random(12),
            Vec::new(),
            99,
            Expectations::default(),
        );
        let out: Result<Vec<Bytes>, io::Error> = body.try_collect().await;
        assert!(out.is_err());
        assert_eq!(
            outcome.lock().unwrap().clone().unwrap().unwrap_err(),
            BodyFailure::TooLong
        );
    }

    #[tokio::test]
    async fn decrypt_any_range_and_detect_damage() {
        let plain: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 256) as u8).collect();
        let (stored, _, dek) = encrypt(&plain, 3000, Expectations::default()).await;
        let stored = stored.expect("encrypts");
        let trailer = open_trailer(&dek, 0, &stored[stored.len() - TRAILER_LEN..]).expect("trailer");
        let read = |range: std::ops::Range<u64>, header_first: bool, trailer_after: bool| {
            Piece::new(0, trailer.header, 20_000, range, header_first, trailer_after)
        };
        for (a, b) in [
            (0u64, 20_000u64),
            (0, 1),
            (4095, 4097),
            (19_999, 20_000),
            (5000, 12_000),
        ] {
            let (piece, span) = read(a..b, false, false);
            let input = chunks(&stored[span.start as usize..span.end as usize], 999);
            let out: Vec<Bytes> = DecryptBody::new(input, &dek, vec![piece])
                .try_collect()
                .await
                .expect("decrypts");
            assert_eq!(out.concat(), &plain[a as usize..b as usize]);
        }
        // Whole stream with header and trailer; then a flipped byte anywhere must error.
        let (piece, span) = read(0..20_000, true, true);
        assert_eq!(span, 0..stored.len() as u64);
        let out: Vec<Bytes> = DecryptBody::new(chunks(&stored, 4096), &dek, vec![piece.clone()])
            .try_collect()
            .await
            .expect("decrypts");
        assert_eq!(out.concat(), plain);
        for at in [10, 10_000, stored.len() - 50] {
            let mut bad = stored.to_vec();
            bad[at] ^= 1;
            let mut s = DecryptBody::new(chunks(&bad, 4096), &dek, vec![piece.clone()]);
            let mut good_bytes = 0;
            let mut failed = false;
            while let Some(item) = s.next().await {
                match item {
                    Ok(b) => good_bytes += b.len(),
                    Err(_) => failed = true,
                }
            }
            assert!(failed, "flip at {at}");
            // Never the whole plaintext before the failure, even for a flip in the trailer.
            assert!(good_bytes < at.min(plain.len()), "flip at {at}: {good_bytes} bytes out");
        }
        // Truncated input errors.
        let mut s = DecryptBody::new(chunks(&stored[..stored.len() - 10], 4096), &dek, vec![piece]);
        let mut failed = false;
        while let Some(item) = s.next().await {
            failed |= item.is_err();
        }
        assert!(failed);
    }

    #[tokio::test]
    async fn several_streams_read_back_to_back() {
        // Two parts of one object (parts 1 and 2 under one DEK), read across the boundary.
        let dek = Key256::random();
        let mut stored = Vec::new();
        let mut headers = Vec::new();
        let mut plain = Vec::new();
        for (part, len) in [(1u32, 9000usize), (2, 5000)] {
            let data: Vec<u8> = (0..len).map(|i| (i as u32 * part) as u8).collect();
            let header = StreamHeader::random(12);
            let (body, _) = EncryptBody::new(
                chunks(&data, 777),
                &dek,
                part,
                header,
                Vec::new(),
                len as u64,
                Expectations::default(),
            );
            let out: Vec<Bytes> = body.try_collect().await.expect("encrypts");
            stored.extend_from_slice(&out.concat());
            headers.push(header);
            plain.extend_from_slice(&data);
        }
        let (p1, s1) = Piece::new(1, headers[0], 9000, 8000..9000, false, true);
        let (p2, s2) = Piece::new(2, headers[1], 5000, 0..100, true, false);
        let first_len = headers[0].layout().stored_len(9000);
        let range = s1.start as usize..first_len as usize + s2.end as usize;
        let out: Vec<Bytes> =
            DecryptBody::new(chunks(&stored[range.clone()], 1000), &dek, vec![p1.clone(), p2.clone()])
                .try_collect()
                .await
                .expect("decrypts");
        assert_eq!(out.concat(), &plain[8000..9100]);
        // Must-fail twin: the parts' keys swapped (a reordered object).
        let (q1, _) = Piece::new(2, headers[0], 9000, 8000..9000, false, true);
        let res: Result<Vec<Bytes>, io::Error> = DecryptBody::new(chunks(&stored[range], 1000), &dek, vec![q1, p2])
            .try_collect()
            .await;
        assert!(res.is_err());
    }
}
