//! [`EncryptBody`]: a client's plaintext upload becomes the stored stream `header ‖ segments ‖
//! trailer`, hashed on the way; every client check (length, Content-MD5, checksum, trailer) is
//! settled before the last segment is sealed.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures::Stream;

use crate::crypto::format::{ChecksumAlgorithm, TAG_LEN};
use crate::crypto::segment::{Layout, StreamHeader, StreamSealer, Trailer, seal_trailer};
use crate::object::checksum::{Hasher, Md5, checksum_header, decode_digest};
use crate::secret::Key256;

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
    pub trailer: Option<Trailers>,
}

/// The trailing headers of a client's body, readable once the body has ended: a lookup by
/// lowercase header name. The front end builds it from its own wire type.
#[derive(Clone)]
pub struct Trailers(pub Arc<TrailerLookup>);

/// Looks a trailing header up by lowercase name.
pub type TrailerLookup = dyn Fn(&str) -> Option<String> + Send + Sync;

impl std::fmt::Debug for Trailers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Trailers(..)")
    }
}

/// What the upload produced, once the body has been read and checked.
#[derive(Debug, Clone)]
pub struct Digests {
    /// MD5 of the plaintext.
    pub md5: [u8; 16],
    /// The client checksum computed over the plaintext.
    pub checksum: Option<(ChecksumAlgorithm, Vec<u8>)>,
}

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
    md5: Option<Md5>,
    hasher: Option<Hasher>,
    expect: Expectations,
    outbox: VecDeque<Bytes>,
    outcome: Option<Result<Digests, BodyFailure>>,
    done: bool,
}

impl<S> EncryptBody<S> {
    /// Seals the stream's segments under `content` instead of the DEK (an SSE-C object's
    /// content key, `crypto::envelope::content_key`); the trailer stays under the DEK. Called
    /// before the first poll.
    pub fn with_content_key(mut self, content: &Key256) -> Self {
        self.sealer = StreamSealer::new(content, self.part, self.sealer.header());
        self
    }

    /// Encrypts `input` as part `part` of the object keyed by `dek`, with `extension` (empty, or
    /// a sealed record) after the header, which announces its length. Once the stream has ended,
    /// [`EncryptBody::outcome`] says what it produced or why it refused the input.
    pub fn new(
        input: S,
        dek: &Key256,
        part: u32,
        header: StreamHeader,
        extension: Vec<u8>,
        plain_len: u64,
        expect: Expectations,
    ) -> Self {
        let header = header.with_extension(extension.len());
        let layout = header.layout();
        Self {
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
            md5: Some(Md5::default()),
            hasher: expect.algorithm.map(Hasher::new),
            expect,
            outbox: [Bytes::copy_from_slice(&header.encode()), Bytes::from(extension)]
                .into_iter()
                .filter(|b| !b.is_empty())
                .collect(),
            outcome: None,
            done: false,
        }
    }

    /// What the upload produced (its digests) or why it was refused; `None` until the stream
    /// has ended (or when asked twice).
    pub fn outcome(&mut self) -> Option<Result<Digests, BodyFailure>> {
        self.outcome.take()
    }

    /// Stored length of the stream this body produces.
    pub fn stored_len(&self) -> u64 {
        self.layout.stored_len(self.plain_len)
    }

    fn fail(&mut self, failure: BodyFailure) -> io::Error {
        let message = format!("upload refused: {failure:?}");
        self.outcome = Some(Err(failure));
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
                        let value = (trailers.0)(&name);
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
        self.outcome = Some(Ok(Digests { md5, checksum }));
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::super::testing::{chunks, drain, encrypt};
    use super::*;
    use crate::crypto::segment::open_all;

    #[tokio::test]
    async fn encrypt_matches_the_in_memory_format_for_any_chunking() {
        for len in [0usize, 1, 4095, 4096, 4097, 10_000, 3 * 4096] {
            for chunk in [1usize, 7, 4096, 5000, 100_000] {
                let plain: Vec<u8> = (0..len).map(|i| (i % 256) as u8).collect();
                let (stored, outcome, dek) = encrypt(&plain, chunk, Expectations::default()).await;
                let stored = stored.expect("encrypts");
                let (back, trailer) = open_all(&dek, 0, &stored).expect("opens");
                assert_eq!(back, plain, "len {len} chunk {chunk}");
                let digests = outcome.clone().unwrap().unwrap();
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
        assert_eq!(outcome.clone().unwrap().unwrap_err(), BodyFailure::BadDigest);

        let expect = Expectations {
            algorithm: Some(ChecksumAlgorithm::Crc32),
            digest: Some(vec![0, 0, 0, 0]),
            ..Default::default()
        };
        let (res, outcome, _) = encrypt(&plain, 1000, expect).await;
        assert!(res.is_err());
        assert_eq!(
            outcome.clone().unwrap().unwrap_err(),
            BodyFailure::ChecksumMismatch(ChecksumAlgorithm::Crc32)
        );

        let good = Hasher::digest(ChecksumAlgorithm::Crc32, &plain);
        let expect = Expectations {
            algorithm: Some(ChecksumAlgorithm::Crc32),
            digest: Some(good.clone()),
            ..Default::default()
        };
        let (res, outcome, _) = encrypt(&plain, 1000, expect).await;
        assert!(res.is_ok());
        assert_eq!(
            outcome.clone().unwrap().unwrap().checksum,
            Some((ChecksumAlgorithm::Crc32, good))
        );
    }

    #[tokio::test]
    async fn short_and_long_bodies_are_refused() {
        let dek = Key256::random();
        let body = EncryptBody::new(
            chunks(&[1u8; 100], 10),
            &dek,
            0,
            StreamHeader::random(12),
            Vec::new(),
            101,
            Expectations::default(),
        );
        let (out, outcome) = drain(body).await;
        assert!(out.is_err());
        assert_eq!(outcome.clone().unwrap().unwrap_err(), BodyFailure::Incomplete);
        let body = EncryptBody::new(
            chunks(&[1u8; 100], 10),
            &dek,
            0,
            StreamHeader::random(12),
            Vec::new(),
            99,
            Expectations::default(),
        );
        let (out, outcome) = drain(body).await;
        assert!(out.is_err());
        assert_eq!(outcome.clone().unwrap().unwrap_err(), BodyFailure::TooLong);
    }
}
