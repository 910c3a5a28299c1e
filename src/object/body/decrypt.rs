//! [`DecryptBody`]: stored segments back into plaintext, one [`Piece`] per stream a read
//! touches; a failed segment, header or trailer ends the stream with an error, never with bytes.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use futures::Stream;

use crate::crypto::CryptoError;
use crate::crypto::format::{HEADER_LEN, TAG_LEN, TRAILER_LEN};
use crate::crypto::segment::{Layout, StreamHeader, StreamOpener, open_trailer};
use crate::secret::Key256;

/// Decrypts stored streams back into plaintext: for each [`Piece`] in turn, optionally the
/// stream's header (which must equal the pinned one) and extension, then segments
/// `first..=last`, dropping `skip` bytes at the start and yielding exactly `len` bytes, then
/// optionally the stream's trailer (which must open and agree). A single-part object is one
/// piece; a multipart object's read is one piece per part it touches, over one stored range.
pub struct DecryptBody<S> {
    input: S,
    dek: Key256,
    /// What segments open under: the DEK, or an SSE-C object's content key.
    content: Key256,
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
    /// `trailer_after` (only when `range` reaches the end) it runs through the trailer. A range
    /// outside the stream is a format error, never a panic.
    pub fn new(
        part: u32,
        header: StreamHeader,
        plain_len: u64,
        range: std::ops::Range<u64>,
        header_first: bool,
        trailer_after: bool,
    ) -> Result<(Self, std::ops::Range<u64>), CryptoError> {
        let outside = CryptoError::Format("read range outside the stream");
        let layout = header.layout();
        let (first_segment, last_segment, skip, len, mut stored) = if plain_len == 0 {
            if !range.is_empty() {
                return Err(outside);
            }
            let start = (HEADER_LEN + header.extension_len()) as u64;
            (0, 0, 0, 0, start..start + TAG_LEN as u64)
        } else {
            let span = layout.locate(plain_len, range.clone()).ok_or(outside.clone())?;
            (span.first_segment, span.last_segment, span.skip, span.len, span.stored)
        };
        if header_first {
            stored.start = 0;
        }
        if trailer_after {
            if range.end != plain_len {
                return Err(outside);
            }
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
        Ok((piece, stored))
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
            content: dek.clone(),
            pieces: pieces.into(),
            current: None,
            buf: BytesMut::new(),
            done: false,
        }
    }

    /// Opens segments under `content` (an SSE-C object's content key) instead of the DEK;
    /// trailers stay under the DEK.
    pub fn with_content_key(mut self, content: &Key256) -> Self {
        self.content = content.clone();
        self
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
    // Longer than our usual limit on purpose: this is the one state machine that decides the
    // order of every check (header, extension, segments, held-back last segment, trailer), and
    // it reads best as one sequence that a reviewer can follow top to bottom.
    fn next_plaintext(&mut self) -> Option<Result<Bytes, io::Error>> {
        loop {
            let Some(cur) = self.current.as_mut() else {
                match self.pieces.pop_front() {
                    Some(piece) => {
                        let layout = piece.header.layout();
                        self.current = Some(Current {
                            opener: StreamOpener::new(&self.content, piece.part, piece.header),
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
    use futures::{StreamExt, TryStreamExt};

    use super::super::testing::{chunks, drain, encrypt};
    use super::super::{EncryptBody, Expectations};
    use super::*;

    #[tokio::test]
    async fn decrypt_any_range_and_detect_damage() {
        let plain: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 256) as u8).collect();
        let (stored, _, dek) = encrypt(&plain, 3000, Expectations::default()).await;
        let stored = stored.expect("encrypts");
        let trailer = open_trailer(&dek, 0, &stored[stored.len() - TRAILER_LEN..]).expect("trailer");
        let read = |range: std::ops::Range<u64>, header_first: bool, trailer_after: bool| {
            Piece::new(0, trailer.header, 20_000, range, header_first, trailer_after).expect("range within the stream")
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
            let body = EncryptBody::new(
                chunks(&data, 777),
                &dek,
                part,
                header,
                Vec::new(),
                len as u64,
                Expectations::default(),
            );
            let (out, _) = drain(body).await;
            stored.extend_from_slice(&out.expect("encrypts"));
            headers.push(header);
            plain.extend_from_slice(&data);
        }
        let (p1, s1) = Piece::new(1, headers[0], 9000, 8000..9000, false, true).unwrap();
        let (p2, s2) = Piece::new(2, headers[1], 5000, 0..100, true, false).unwrap();
        let first_len = headers[0].layout().stored_len(9000);
        let range = s1.start as usize..first_len as usize + s2.end as usize;
        let out: Vec<Bytes> =
            DecryptBody::new(chunks(&stored[range.clone()], 1000), &dek, vec![p1.clone(), p2.clone()])
                .try_collect()
                .await
                .expect("decrypts");
        assert_eq!(out.concat(), &plain[8000..9100]);
        // Must-fail twin: the parts' keys swapped (a reordered object).
        let (q1, _) = Piece::new(2, headers[0], 9000, 8000..9000, false, true).unwrap();
        let res: Result<Vec<Bytes>, io::Error> = DecryptBody::new(chunks(&stored[range], 1000), &dek, vec![q1, p2])
            .try_collect()
            .await;
        assert!(res.is_err());
    }

    #[test]
    fn pieces_outside_the_stream_are_errors_not_panics() {
        let header = StreamHeader::random(12);
        assert!(Piece::new(0, header, 100, 0..100, true, true).is_ok());
        assert!(Piece::new(0, header, 0, 0..0, true, true).is_ok());
        // Must-fail twins: past the end, empty, a trailer after a range short of the end, a
        // non-empty range of an empty stream.
        assert!(Piece::new(0, header, 100, 50..101, false, false).is_err());
        assert!(Piece::new(0, header, 100, 10..10, false, false).is_err());
        assert!(Piece::new(0, header, 100, 0..99, false, true).is_err());
        assert!(Piece::new(0, header, 0, 0..1, false, false).is_err());
    }
}
