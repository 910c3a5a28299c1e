//! Answers that start before their result is known, as S3 gives them for the operations whose
//! store-side work can take minutes: CompleteMultipartUpload, CopyObject and UploadPartCopy.
//!
//! The operation checks what it can first (a failed check gets its own status), then runs the
//! work through [`within`]. Work done within [`KEEP_ALIVE_AFTER`] is answered as usual. Longer
//! work is answered `200 OK` at once: the answer carries the pending work in its extensions
//! ([`KeptAlive`]), and the front end ([`answer`]) gives it a body that sends the XML
//! declaration, a space every [`SPACE_EVERY`] while the work runs, then the result document or
//! an `<Error>` document. Clients read either: S3 documents this for all three operations, so
//! SDKs, botocore, rclone and s3cmd look for an error in such a 200. The client's read timeout no
//! longer cuts long work. If the client goes away, dropping the body drops the work with it.
//!
//! (s3s has the same mechanism for CompleteMultipartUpload only, and 0.14.1 writes the XML
//! declaration twice before an error there; this module serves all three the same way.)

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body::{Body, Frame};
use s3s::xml;
use s3s::{S3Response, S3Result};

pub use crate::limits::KEEP_ALIVE_AFTER;

/// How often a kept-alive answer sends a space while its work runs.
pub const SPACE_EVERY: Duration = Duration::from_millis(500);

const DECLARATION: &[u8] = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>";

/// Work still running when its answer starts: a future of the body's last document. Carried in
/// the answer's extensions from the S3 operation to the front end, which takes it once.
#[derive(Clone)]
pub struct KeptAlive(Arc<Mutex<Option<BoxFuture<'static, Bytes>>>>);

/// Answers an operation whose store-side work is `work`: `output` builds the answer from the
/// work's result when it came within [`KEEP_ALIVE_AFTER`] (an error is the answer), or, given
/// `None`, builds the headers-only answer of a kept-alive `200 OK` whose body ends with the
/// result.
pub(super) async fn respond<T, O, F>(work: F, output: impl FnOnce(Option<T>) -> O) -> S3Result<S3Response<O>>
where
    F: Future<Output = S3Result<T>> + Send + 'static,
    T: xml::Serialize + Send + 'static,
{
    match within(work).await {
        Within::Done(result) => Ok(S3Response::new(output(Some(result?)))),
        Within::Later(kept) => {
            let mut answer = S3Response::new(output(None));
            answer.extensions.insert(kept);
            Ok(answer)
        }
    }
}

/// The outcome of [`within`].
enum Within<T> {
    /// The work finished in time: answer as usual.
    Done(S3Result<T>),
    /// Still running: answer `200 OK` now, with this in the answer's extensions.
    Later(KeptAlive),
}

/// Runs `work` for up to [`KEEP_ALIVE_AFTER`]; its result then, or the running work, whose
/// result (`T`, serialized as its XML document) or error will end a kept-alive answer.
async fn within<T, F>(work: F) -> Within<T>
where
    F: Future<Output = S3Result<T>> + Send + 'static,
    T: xml::Serialize + Send + 'static,
{
    let mut work = Box::pin(work);
    match tokio::time::timeout(KEEP_ALIVE_AFTER, &mut work).await {
        Ok(done) => Within::Done(done),
        Err(_) => Within::Later(KeptAlive(Arc::new(Mutex::new(Some(Box::pin(async move {
            document(work.await)
        })))))),
    }
}

/// The XML document (no declaration) of a result or of an error.
fn document<T: xml::Serialize>(result: S3Result<T>) -> Bytes {
    use s3s::xml::Serialize as _;
    let mut buf = Vec::with_capacity(256);
    let written = {
        let mut ser = xml::Serializer::new(&mut buf);
        match &result {
            Ok(value) => value.serialize(&mut ser),
            Err(e) => {
                tracing::warn!(code = %e.code().as_str(), "work answered early ended in an error; it follows the 200");
                e.serialize(&mut ser)
            }
        }
    };
    if written.is_err() {
        return Bytes::from_static(b"<Error><Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message></Error>");
    }
    buf.into()
}

/// `response`, or when it carries [`KeptAlive`] work, the `200 OK` with the kept-alive body.
pub fn answer(mut response: s3s::HttpResponse) -> s3s::HttpResponse {
    let Some(kept) = response.extensions_mut().remove::<KeptAlive>() else {
        return response;
    };
    let pending = match kept.0.lock() {
        Ok(mut slot) => slot.take(),
        Err(poisoned) => poisoned.into_inner().take(),
    };
    let Some(pending) = pending else {
        return response;
    };
    *response.status_mut() = http::StatusCode::OK;
    let headers = response.headers_mut();
    headers.remove(http::header::CONTENT_LENGTH);
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml"),
    );
    *response.body_mut() = s3s::Body::http_body(KeepAliveBody::new(pending));
    response
}

/// The declaration, spaces while the work runs, then its document. (The work sits in a mutex
/// only to make the body `Sync`: it is polled through `&mut`, never locked.)
struct KeepAliveBody {
    declaration: Option<Bytes>,
    pending: Option<Mutex<BoxFuture<'static, Bytes>>>,
    tick: tokio::time::Interval,
}

impl KeepAliveBody {
    fn new(pending: BoxFuture<'static, Bytes>) -> Self {
        // The first space goes out with the declaration, then one every `SPACE_EVERY`.
        let mut tick = tokio::time::interval(SPACE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        KeepAliveBody {
            declaration: Some(Bytes::from_static(DECLARATION)),
            pending: Some(Mutex::new(pending)),
            tick,
        }
    }
}

impl Body for KeepAliveBody {
    type Data = Bytes;
    type Error = s3s::StdError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(declaration) = self.declaration.take() {
            return Poll::Ready(Some(Ok(Frame::data(declaration))));
        }
        let Some(pending) = self.pending.as_mut() else {
            return Poll::Ready(None);
        };
        let pending = match pending.get_mut() {
            Ok(pending) => pending,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Poll::Ready(document) = pending.as_mut().poll(cx) {
            self.pending = None;
            return Poll::Ready(Some(Ok(Frame::data(document))));
        }
        std::task::ready!(self.tick.poll_tick(cx));
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b" ")))))
    }

    fn is_end_stream(&self) -> bool {
        self.declaration.is_none() && self.pending.is_none()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use s3s::dto::CopyObjectResult;
    use s3s::{S3ErrorCode, s3_error};

    use super::*;

    async fn body_of(response: s3s::HttpResponse) -> (http::StatusCode, String) {
        let status = response.status();
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        (status, String::from_utf8(bytes.to_vec()).expect("utf-8"))
    }

    fn early(kept: KeptAlive) -> s3s::HttpResponse {
        let mut response = http::Response::new(s3s::Body::from("<CopyObjectResult/>".to_string()));
        response
            .headers_mut()
            .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from_static("19"));
        response.extensions_mut().insert(kept);
        answer(response)
    }

    #[tokio::test(start_paused = true)]
    async fn long_work_is_answered_at_once_then_spaces_then_its_result() {
        let work = async {
            tokio::time::sleep(KEEP_ALIVE_AFTER + 4 * SPACE_EVERY).await;
            Ok(CopyObjectResult {
                e_tag: Some(s3s::dto::ETag::Strong("abc".into())),
                ..Default::default()
            })
        };
        let Within::Later(kept) = within(work).await else {
            panic!("answered only when done");
        };
        let response = early(kept);
        assert!(response.headers().get(http::header::CONTENT_LENGTH).is_none());
        let (status, body) = body_of(response).await;
        assert_eq!(status, http::StatusCode::OK);
        let rest = body
            .strip_prefix(std::str::from_utf8(DECLARATION).expect("ascii"))
            .expect("declaration first");
        let spaces = rest.len() - rest.trim_start().len();
        assert!(spaces >= 3, "spaces while the work ran: {body:?}");
        assert_eq!(
            rest.trim_start(),
            "<CopyObjectResult><ETag>\"abc\"</ETag></CopyObjectResult>"
        );
        assert_eq!(body.matches("<?xml").count(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_error_after_the_answer_began_ends_its_body() {
        let work = async {
            tokio::time::sleep(KEEP_ALIVE_AFTER * 2).await;
            Err::<CopyObjectResult, _>(s3_error!(ServiceUnavailable, "the store is gone"))
        };
        let Within::Later(kept) = within(work).await else {
            panic!("answered only when done");
        };
        let (status, body) = body_of(early(kept)).await;
        assert_eq!(status, http::StatusCode::OK);
        assert!(body.trim_end().ends_with("</Error>"), "{body}");
        assert!(body.contains(&format!("<Code>{}</Code>", S3ErrorCode::ServiceUnavailable.as_str())));
        assert_eq!(body.matches("<?xml").count(), 1, "one declaration: {body}");
    }

    #[tokio::test(start_paused = true)]
    async fn quick_work_and_unmarked_answers_pass_unchanged() {
        // Must-fail twin of the two above: work within the limit is not kept alive.
        let quick = async { Ok(CopyObjectResult::default()) };
        assert!(matches!(within(quick).await, Within::Done(Ok(_))));
        let failed = async { Err::<CopyObjectResult, _>(s3_error!(NoSuchKey)) };
        assert!(matches!(within(failed).await, Within::Done(Err(_))));
        let plain = http::Response::new(s3s::Body::from("<X/>".to_string()));
        let (status, body) = body_of(answer(plain)).await;
        assert_eq!((status, body.as_str()), (http::StatusCode::OK, "<X/>"));
    }
}
