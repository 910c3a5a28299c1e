//! The streaming bodies between clients and stores: [`EncryptBody`] turns a client's plaintext
//! upload into the stored stream, [`DecryptBody`] turns stored segments back into plaintext.
//!
//! Both hold at most one segment (plus one incoming chunk) in memory, whatever the object's
//! size. Neither ever yields plaintext that failed authentication: a failure becomes a stream
//! error, which aborts the HTTP exchange (the store discards a failed upload; a client sees a
//! broken download instead of a complete one with wrong bytes).

mod decrypt;
mod encrypt;

pub use self::decrypt::{DecryptBody, Piece};
pub use self::encrypt::{BodyFailure, Digests, EncryptBody, Expectations, TrailerLookup, Trailers};

/// Helpers shared by the body tests.
#[cfg(test)]
mod testing {
    use std::io;

    use bytes::Bytes;
    use futures::{Stream, StreamExt, stream};

    use super::*;
    use crate::crypto::segment::StreamHeader;
    use crate::secret::Key256;

    pub fn chunks(data: &[u8], size: usize) -> impl Stream<Item = Result<Bytes, io::Error>> + Unpin + use<> {
        let parts: Vec<Result<Bytes, io::Error>> = data
            .chunks(size.max(1))
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        stream::iter(parts)
    }

    pub type Outcome = Option<Result<Digests, BodyFailure>>;

    /// Runs `body` to its end (or first error): what it yielded, and its outcome.
    pub async fn drain<S>(mut body: EncryptBody<S>) -> (Result<Vec<u8>, io::Error>, Outcome)
    where
        S: Stream<Item = Result<Bytes, io::Error>> + Unpin,
    {
        let mut out = Vec::new();
        let mut result = Ok(());
        while let Some(item) = body.next().await {
            match item {
                Ok(chunk) => out.extend_from_slice(&chunk),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        (result.map(|()| out), body.outcome())
    }

    /// Encrypts `plain` as a single-part stream (4 KiB segments), fed in `chunk`-byte pieces.
    pub async fn encrypt(
        plain: &[u8],
        chunk: usize,
        expect: Expectations,
    ) -> (Result<Vec<u8>, io::Error>, Outcome, Key256) {
        let dek = Key256::random();
        let body = EncryptBody::new(
            chunks(plain, chunk),
            &dek,
            0,
            StreamHeader::random(12),
            Vec::new(),
            plain.len() as u64,
            expect,
        );
        let (out, outcome) = drain(body).await;
        (out, outcome, dek)
    }
}
