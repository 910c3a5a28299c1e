//! Answers that start before their result is known: a CompleteMultipartUpload whose compose
//! outlasts [`crate::limits::COMPLETE_KEEP_ALIVE_AFTER`] is answered `200 OK` at once; s3s then
//! sends the XML declaration, a space every 100 ms while the store composes, and the result or
//! an `<Error>` document, as S3 does.
//!
//! s3s 0.14.1 writes the XML declaration a second time before such an error document (fixed
//! upstream after 0.14: `serialize_error(err, true)` in `ops/multipart.rs`), and no XML parser
//! accepts a declaration after whitespace: aws-sdk-s3 then reports an error without a code, and
//! botocore fails to parse it. The answer is marked ([`KeptAlive`]) and its body passed through
//! [`OneDeclaration`], which drops a declaration that opens any frame but the first. Remove this
//! with the move to an s3s release that has the fix.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// Marks an answer (in its extensions) whose body s3s streams while the result is pending.
#[derive(Debug, Clone, Copy)]
pub struct KeptAlive;

const DECLARATION_START: &[u8] = b"<?xml";
const DECLARATION_END: &[u8] = b"?>";

/// Passes `response` on, with its body's repeated XML declaration dropped when it is marked
/// [`KeptAlive`].
pub fn one_declaration(response: s3s::HttpResponse) -> s3s::HttpResponse {
    if response.extensions().get::<KeptAlive>().is_none() {
        return response;
    }
    response.map(|inner| s3s::Body::http_body(OneDeclaration { inner, first: true }))
}

/// A kept-alive body with every XML declaration after its first frame removed.
struct OneDeclaration {
    inner: s3s::Body,
    first: bool,
}

impl Body for OneDeclaration {
    type Data = Bytes;
    type Error = s3s::StdError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx));
        let Some(Ok(frame)) = polled else {
            return Poll::Ready(polled);
        };
        if std::mem::take(&mut self.first) {
            return Poll::Ready(Some(Ok(frame)));
        }
        let frame = match frame.into_data() {
            Ok(data) => Frame::data(without_declaration(data)),
            Err(other) => other,
        };
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        // Frames can only shrink.
        let mut hint = SizeHint::new();
        if let Some(upper) = self.inner.size_hint().upper() {
            hint.set_upper(upper);
        }
        hint
    }
}

/// `data` without the XML declaration it opens with, if it does.
fn without_declaration(data: Bytes) -> Bytes {
    if !data.starts_with(DECLARATION_START) {
        return data;
    }
    match data.windows(DECLARATION_END.len()).position(|w| w == DECLARATION_END) {
        Some(end) => data.slice(end + DECLARATION_END.len()..),
        None => data,
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    fn frames(parts: &[&'static [u8]]) -> s3s::Body {
        let stream = futures::stream::iter(
            parts
                .iter()
                .map(|p| Ok::<_, std::io::Error>(Frame::data(Bytes::from_static(p))))
                .collect::<Vec<_>>(),
        );
        s3s::Body::http_body(http_body_util::StreamBody::new(stream))
    }

    async fn read(response: s3s::HttpResponse) -> String {
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        String::from_utf8(bytes.to_vec()).expect("utf-8")
    }

    const DECL: &[u8] = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>";

    #[tokio::test]
    async fn a_repeated_declaration_is_dropped_from_a_kept_alive_answer() {
        let body = frames(&[
            DECL,
            b" ",
            b" ",
            b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>X</Code></Error>",
        ]);
        let mut response = http::Response::new(body);
        response.extensions_mut().insert(KeptAlive);
        let text = read(one_declaration(response)).await;
        assert_eq!(
            text,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>  <Error><Code>X</Code></Error>"
        );
        assert_eq!(text.matches("<?xml").count(), 1);
    }

    #[tokio::test]
    async fn other_answers_and_a_result_without_declaration_pass_unchanged() {
        // Must-fail twin: unmarked, the same body keeps both declarations.
        let twice = "<?xml version=\"1.0\" encoding=\"UTF-8\"?> <?xml version=\"1.0\" encoding=\"UTF-8\"?><Error/>";
        let unmarked = http::Response::new(frames(&[
            DECL,
            b" ",
            b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error/>",
        ]));
        assert_eq!(read(one_declaration(unmarked)).await, twice);
        let mut result = http::Response::new(frames(&[DECL, b" ", b"<CompleteMultipartUploadResult/>"]));
        result.extensions_mut().insert(KeptAlive);
        assert_eq!(
            read(one_declaration(result)).await,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?> <CompleteMultipartUploadResult/>"
        );
    }
}
