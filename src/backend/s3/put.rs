//! One streamed PutObject: the body checked against its declared length ([`ExactBody`]), sent
//! without retries or a read timeout, and its own failure told apart from the store's.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::primitives::ByteStream as SdkByteStream;
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;
use futures::Stream;
use http_body::Frame;
use http_body_util::StreamBody;

use super::client::timeouts;
use super::error::Missing;
use super::{S3Store, condition_headers, restore_key, sdk_key, strip_quotes};
use crate::backend::{BackendError, BackendResult, ByteStream, Metadata, PutCondition};

impl S3Store {
    /// One PutObject of a streamed body, optionally conditional.
    pub(super) async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: ByteStream,
        len: u64,
        metadata: Metadata,
        condition: Option<PutCondition>,
    ) -> BackendResult<String> {
        let content_length = i64::try_from(len).map_err(|_| self.protocol_error("PutObject: body too large"))?;
        let checked = ExactBody {
            inner: body,
            remaining: len,
            done: false,
        };
        let (if_none_match, if_match) = condition_headers(condition.as_ref());
        // A body built from a stream cannot be rebuilt, so the SDK cannot retry it either; the
        // override says so explicitly and drops the read timeout, which would cover the upload.
        let sent = self
            .client
            .put_object()
            .bucket(bucket)
            .key(sdk_key(key))
            .body(SdkByteStream::new(SdkBody::from_body_1_x(StreamBody::new(checked))))
            .content_length(content_length)
            .content_type("application/octet-stream")
            .set_metadata(Some(metadata.into_iter().collect::<HashMap<_, _>>()))
            .set_if_none_match(if_none_match)
            .set_if_match(if_match)
            .customize()
            .mutate_request(restore_key(key))
            .config_override(
                aws_sdk_s3::Config::builder()
                    .timeout_config(timeouts(None))
                    .retry_config(RetryConfig::disabled()),
            )
            .send()
            .await;
        match sent {
            Ok(out) => Ok(strip_quotes(out.e_tag().unwrap_or_default())),
            // The body's own failure travels inside the SDK's error, as its source.
            Err(err) => Err(match body_failure(&err) {
                Some(e) => BackendError::Body(e),
                None => self.error("PutObject", Missing::Bucket, err),
            }),
        }
    }
}

// === ExactBody ===

/// The request body: passes chunks through, and fails the request unless exactly `remaining`
/// bytes arrive. Its failure ([`BodyFailed`]) carries the cause, which [`body_failure`] finds
/// again in the SDK's error and reports as [`BackendError::Body`].
struct ExactBody {
    inner: ByteStream,
    remaining: u64,
    done: bool,
}

/// Why the request body failed, as the SDK sees it: the cause, kept as the error's source.
#[derive(Debug)]
struct BodyFailed(io::Error);

impl fmt::Display for BodyFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("request body failed")
    }
}

impl StdError for BodyFailed {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.0)
    }
}

/// The body's own failure, if the SDK's error came from one (anywhere in its source chain).
fn body_failure(err: &(dyn StdError + 'static)) -> Option<io::Error> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(BodyFailed(cause)) = e.downcast_ref::<BodyFailed>() {
            return Some(io::Error::new(cause.kind(), cause.to_string()));
        }
        cur = e.source();
    }
    None
}

impl Stream for ExactBody {
    type Item = Result<Frame<Bytes>, BodyFailed>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let error = match ready!(self.inner.as_mut().poll_next(cx)) {
            Some(Ok(chunk)) if chunk.len() as u64 <= self.remaining => {
                self.remaining -= chunk.len() as u64;
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
            Some(Ok(_)) => io::Error::new(io::ErrorKind::InvalidData, "body longer than its declared length"),
            Some(Err(e)) => e,
            None if self.remaining == 0 => {
                self.done = true;
                return Poll::Ready(None);
            }
            None => io::Error::new(io::ErrorKind::UnexpectedEof, "body shorter than its declared length"),
        };
        self.done = true;
        Poll::Ready(Some(Err(BodyFailed(error))))
    }
}
