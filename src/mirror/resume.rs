//! A GET body that survives its store dying or hanging mid-stream: when the stream from one
//! store fails (or stalls for [`MIRROR_STALL_TIMEOUT`](crate::limits::MIRROR_STALL_TIMEOUT))
//! after bytes went to the client, the rest of the range is read from the other store — only if
//! the other store holds the very same stored version (same size and the same stored metadata,
//! which carries the object's sealed envelope: one encryption pass, so the same ciphertext).
//! Otherwise the original error stands (the connection is aborted; the client retries), and a
//! stall keeps waiting on the first store.
//!
//! Real clients do not all retry a body that broke off: boto3's `get_object()["Body"].read()`
//! raises `IncompleteRead` to the application. So a read must not fail while one store is up,
//! also once its first byte has gone out.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use super::Side;
use crate::backend::health::StoreHealth;
use crate::backend::{ByteRange, ByteStream, Metadata, ObjectHead, ObjectStore};

/// Where the rest of a body can come from.
pub(super) struct Fallback {
    /// The store the body comes from.
    pub from: Side,
    /// The other store.
    pub other: Arc<dyn ObjectStore>,
    /// Its breaker (fed by a failed or timed-out reopen).
    pub other_health: Arc<StoreHealth>,
    /// The first store's breaker (fed by the failure or stall).
    pub from_health: Arc<StoreHealth>,
    /// Bucket of the object.
    pub bucket: String,
    /// Key of the object.
    pub key: String,
    /// Bound on reopening at the other store.
    pub first_byte_timeout: Duration,
    /// How long the stream may give nothing before the other store is tried.
    pub stall: Duration,
}

/// The absolute stored byte range `[start, end)` a read of `range` covers in an object of `size`.
fn span(range: Option<&ByteRange>, size: u64) -> (u64, u64) {
    match range {
        None => (0, size),
        Some(ByteRange::Bounded(r)) => (r.start.min(size), r.end.min(size)),
        Some(ByteRange::Suffix(n)) => (size - (*n).min(size), size),
    }
}

/// Wraps `body`, the answer to a read of `range` with head `head`, so that it resumes from the
/// other store on a failure or stall (once).
pub(super) fn resuming(body: ByteStream, head: &ObjectHead, range: Option<&ByteRange>, fb: Fallback) -> ByteStream {
    let (start, end) = span(range, head.size);
    let state = State {
        body,
        next: start,
        end,
        size: head.size,
        metadata: head.metadata.clone(),
        fb: Some(fb),
        done: false,
    };
    Box::pin(futures::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        let item = st.step().await;
        if item.as_ref().is_none_or(|r| r.is_err()) {
            st.done = true;
        }
        item.map(|r| (r, st))
    }))
}

struct State {
    body: ByteStream,
    /// The stored offset of the next byte.
    next: u64,
    end: u64,
    size: u64,
    metadata: Metadata,
    /// `None` once used (one resume per read).
    fb: Option<Fallback>,
    done: bool,
}

impl State {
    async fn step(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        loop {
            let item = match &self.fb {
                Some(fb) => match tokio::time::timeout(fb.stall, self.body.next()).await {
                    Ok(item) => item,
                    Err(_) => {
                        let why = format!("no body bytes within {:?}", fb.stall);
                        if !self.resume(&why).await {
                            // The other store cannot take over: keep waiting on this one.
                            self.fb = None;
                        }
                        continue;
                    }
                },
                None => self.body.next().await,
            };
            match item {
                Some(Ok(chunk)) => {
                    self.next += chunk.len() as u64;
                    return Some(Ok(chunk));
                }
                None if self.next >= self.end => return None,
                None => {
                    let e = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the store's body ended early");
                    if self.resume(&e.to_string()).await {
                        continue;
                    }
                    return Some(Err(e));
                }
                Some(Err(e)) => {
                    if self.resume(&e.to_string()).await {
                        continue;
                    }
                    return Some(Err(e));
                }
            }
        }
    }

    /// Reopens the rest of the range at the other store; whether it took over.
    async fn resume(&mut self, why: &str) -> bool {
        let Some(fb) = self.fb.take() else {
            return false;
        };
        fb.from_health.mark_down("body failed mid-stream");
        if self.next >= self.end {
            self.body = Box::pin(futures::stream::empty());
            return true;
        }
        let range = Some(ByteRange::Bounded(self.next..self.end));
        let to = fb.from.other();
        // Its own task: the store's future is not `Sync`, and a body stream must be.
        let (other, bucket, key) = (Arc::clone(&fb.other), fb.bucket.clone(), fb.key.clone());
        let opened = tokio::time::timeout(
            fb.first_byte_timeout,
            tokio::spawn(async move { other.get_object(&bucket, &key, range, None).await }),
        )
        .await;
        let got = match opened {
            Ok(Ok(Ok(got))) => got,
            Ok(Err(join)) => {
                tracing::warn!(store = fb.from.name(), other = to.name(), error = %join, why, "a GET broke off mid-stream; reopening at the other store failed");
                return false;
            }
            Ok(Ok(Err(e))) => {
                if e.is_outage() {
                    fb.other_health.mark_down(e.kind());
                }
                tracing::warn!(store = fb.from.name(), other = to.name(), error = %e, why, "a GET broke off mid-stream; the other store could not take over");
                return false;
            }
            Err(_) => {
                fb.other_health.mark_down("timeout");
                tracing::warn!(
                    store = fb.from.name(),
                    other = to.name(),
                    why,
                    "a GET broke off mid-stream; the other store did not answer in time"
                );
                return false;
            }
        };
        if got.head.size != self.size || got.head.metadata != self.metadata {
            tracing::warn!(
                store = fb.from.name(),
                other = to.name(),
                why,
                "a GET broke off mid-stream; the other store holds another version"
            );
            return false;
        }
        metrics::counter!("escrow_mirror_failovers_total", "reason" => "mid_stream", "to" => to.name()).increment(1);
        tracing::warn!(
            store = fb.from.name(),
            to = to.name(),
            at = self.next,
            why,
            "a GET broke off mid-stream; resumed from the other store"
        );
        super::served::note(to);
        self.body = got.body;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_cover_the_stored_bytes_read() {
        assert_eq!(span(None, 10), (0, 10));
        assert_eq!(span(Some(&ByteRange::Bounded(2..5)), 10), (2, 5));
        assert_eq!(span(Some(&ByteRange::Bounded(2..50)), 10), (2, 10));
        assert_eq!(span(Some(&ByteRange::Suffix(3)), 10), (7, 10));
        assert_eq!(span(Some(&ByteRange::Suffix(30)), 10), (0, 10));
    }
}
