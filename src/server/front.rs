//! The HTTP-layer service in front of s3s: builds the s3s service (the proxy, client
//! authentication, s3s's own limits set small and explicit), refuses what [`super::gate`]
//! refuses before s3s reads anything, hands POST Object (browser-form uploads) to
//! [`PostObject`] (s3s never sees them), bounds request bodies in time, and logs outcomes without
//! headers (s3s's own logging is capped off, see `crate::logging`): one access line per request
//! ([`super::access`]), whose id it sends as `x-amz-request-id`.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};
use s3s::config::{S3Config, StaticConfigProvider};
use s3s::service::{S3Service, S3ServiceBuilder};

use super::access::{self, Slot};
use super::activity::{Activity, InFlight};
use super::gate::{self, Refusal};
use crate::backend::ObjectStore;
use crate::config::{ClientConfig, ServerConfig};
use crate::keys::SharedKeyring;
use crate::mirror::served::Served;
use crate::s3::{ClientAuth, PostObject, Proxy};

/// Refused and failed-authentication requests are summarized at info at most this often.
const REFUSAL_REPORT_EVERY: Duration = Duration::from_secs(10);

/// The s3s service behind the edge's rules, and fixes at the HTTP layer:
/// - an answer to HEAD carries no body over h2 either (hyper drops it only on HTTP/1.1; s3s
///   writes error XML even for HEAD, which h2 clients reject as a protocol error);
/// - an HTTP/1.1 request with `Expect: 100-continue` and an empty body gets its connection closed
///   after the answer: botocore before 1.43.77 (boto/botocore#3755, so the AWS CLI) misreads the
///   next response on that connection and stalls until its read timeout.
#[derive(Clone)]
pub(super) struct Front {
    s3: S3Service,
    /// POST Object, served beside s3s over the same proxy and clients.
    post: Arc<PostObject>,
    /// `https` or `http`: how the object's `Location` in a POST Object answer starts.
    scheme: &'static str,
    body_timeout: Duration,
    refusals: Arc<RefusalLog>,
    /// Whether the store is a mirror pair (which notes the side that served each request);
    /// otherwise every authenticated request is served by the primary alone.
    mirrored: bool,
    /// The connection this clone serves (one clone per connection).
    activity: Option<Arc<Activity>>,
}

impl Front {
    /// The proxy over `store` behind s3s, authenticating `clients`.
    pub(super) fn new(
        server: &ServerConfig,
        clients: &[ClientConfig],
        store: Arc<dyn ObjectStore>,
        keyring: Arc<SharedKeyring>,
    ) -> Self {
        // A pair offers a read view per store; a single store none.
        let mirrored = !store.read_views().is_empty();
        let objects = crate::object::Objects::new(store, keyring);
        // SSE-C keys travel in headers: only over TLS, or on loopback.
        let proxy = Proxy::new(objects, server.region.clone(), server.refuse_sse_kms)
            .with_sse_c_transport(server.tls.is_some(), server.listen.ip());
        let post = Arc::new(PostObject::new(proxy.clone(), ClientAuth::new(clients)));
        let mut builder = S3ServiceBuilder::new(proxy);
        builder.set_auth(ClientAuth::new(clients));
        builder.set_access(access::Note);
        builder.set_config(Arc::new(StaticConfigProvider::new(Arc::new(s3s_limits()))));
        Self {
            s3: builder.build(),
            post,
            scheme: if server.tls.is_some() { "https" } else { "http" },
            body_timeout: server.limits.body_timeout,
            refusals: Arc::new(RefusalLog::default()),
            mirrored,
            activity: None,
        }
    }

    /// This service for one connection, counting its requests in `activity`.
    pub(super) fn for_connection(&self, activity: Arc<Activity>) -> Self {
        Self {
            activity: Some(activity),
            ..self.clone()
        }
    }
}

/// s3s's limits, explicit: XML bodies capped at [`crate::limits::MAX_XML_BODY`]; the
/// browser-form POST limits at their smallest (POST Object never reaches s3s: [`PostObject`]).
fn s3s_limits() -> S3Config {
    let mut config = S3Config::default();
    config.xml_max_body_size = crate::limits::MAX_XML_BODY;
    config.post_object_max_file_size = 0;
    config.form_max_field_size = 8 << 10;
    config.form_max_fields_size = 64 << 10;
    config.form_max_parts = 32;
    config
}

impl hyper::service::Service<http::Request<hyper::body::Incoming>> for Front {
    type Response = s3s::HttpResponse;
    type Error = s3s::HttpError;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn call(&self, mut req: http::Request<hyper::body::Incoming>) -> Self::Future {
        let in_flight = self.activity.as_ref().map(|a| a.start());
        let head = req.method() == http::Method::HEAD;
        let method = req.method().clone();
        let slot = Slot::new(method.clone());
        let headers = req.headers();
        let h1 = req.version() <= http::Version::HTTP_11;
        if let Some(refusal) = gate::check(req.method(), req.uri(), headers) {
            self.refusals.note(&method, refusal.status, refusal.code);
            // The body is never read: an HTTP/1.1 connection cannot be reused after it.
            let resp = refusal_response(&refusal, head, h1 && !req.body().is_end_stream());
            return Box::pin(async move { Ok(tracked(resp, in_flight, slot)) });
        }
        if let Some(bucket) = gate::post_object_bucket(req.method(), req.uri(), headers) {
            return self.post_object(req, bucket, in_flight, slot, h1);
        }
        let close = h1
            && headers.contains_key(http::header::EXPECT)
            && headers
                .get(http::header::CONTENT_LENGTH)
                .is_some_and(|v| v.as_bytes() == b"0");
        req.extensions_mut().insert(slot.clone());
        let timeout = self.body_timeout;
        let counter = slot.clone();
        let req = req.map(|body| s3s::Body::http_body(ProgressBody::new(body, timeout, counter)));
        let s3 = self.s3.clone();
        let refusals = Arc::clone(&self.refusals);
        let mirrored = self.mirrored;
        Box::pin(async move {
            let (called, served) = crate::mirror::served::scope(s3.call(req)).await;
            slot.set_served(if mirrored { served } else { Served::PRIMARY });
            let mut resp = match called {
                Ok(resp) => crate::s3::kept_alive::answer(resp),
                Err(e) => {
                    tracing::warn!(%method, request_id = slot.id(), "request failed outside the S3 error path");
                    slot.set_status(http::StatusCode::INTERNAL_SERVER_ERROR);
                    slot.log();
                    return Err(e);
                }
            };
            let status = resp.status();
            if status.is_server_error() {
                tracing::warn!(%method, %status, request_id = slot.id(), "request failed");
            } else if status == http::StatusCode::FORBIDDEN || status == http::StatusCode::BAD_REQUEST {
                refusals.note(&method, status, "");
            } else {
                tracing::debug!(%method, %status, "request served");
            }
            if head {
                *resp.body_mut() = s3s::Body::empty();
            }
            if close {
                resp.headers_mut()
                    .insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
            }
            Ok(tracked(resp, in_flight, slot))
        })
    }
}

impl Front {
    /// A POST Object, served by [`PostObject`]: the body is read only as far as the form needs
    /// (the connection is closed after the answer when it was not read to its end).
    fn post_object(
        &self,
        req: http::Request<hyper::body::Incoming>,
        bucket: String,
        in_flight: Option<InFlight>,
        slot: Slot,
        h1: bool,
    ) -> futures::future::BoxFuture<'static, Result<s3s::HttpResponse, s3s::HttpError>> {
        use http_body_util::BodyExt as _;
        let headers = req.headers();
        let content_type = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let host = headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| req.uri().authority().map(|a| a.to_string()));
        let base = host.map(|h| format!("{}://{h}", self.scheme)).unwrap_or_default();
        let body = ProgressBody::new(req.into_body(), self.body_timeout, slot.clone()).into_data_stream();
        let post = Arc::clone(&self.post);
        let refusals = Arc::clone(&self.refusals);
        let mirrored = self.mirrored;
        Box::pin(async move {
            let (answer, served) =
                crate::mirror::served::scope(post.serve(bucket.clone(), &content_type, body, &base)).await;
            slot.set_served(if mirrored { served } else { Served::PRIMARY });
            slot.resolve(answer.access_key, "PostObject", Some(bucket), answer.key);
            let status = answer.response.status();
            let method = http::Method::POST;
            if status.is_server_error() {
                tracing::warn!(%method, %status, request_id = slot.id(), "request failed");
            } else if status == http::StatusCode::FORBIDDEN || status == http::StatusCode::BAD_REQUEST {
                refusals.note(&method, status, "");
            } else {
                tracing::debug!(%method, %status, "request served");
            }
            let mut resp = answer.response.map(s3s::Body::from);
            if h1 && !answer.consumed {
                resp.headers_mut()
                    .insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
            }
            Ok(tracked(resp, in_flight, slot))
        })
    }
}

/// The S3 error XML for a refusal (no body for HEAD).
fn refusal_response(refusal: &Refusal, head: bool, close: bool) -> s3s::HttpResponse {
    let body = if head {
        s3s::Body::empty()
    } else {
        s3s::Body::from(format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message></Error>",
            refusal.code, refusal.message
        ))
    };
    let mut resp = http::Response::new(body);
    *resp.status_mut() = refusal.status;
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml"),
    );
    if close {
        h.insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
    }
    resp
}

/// Sends the request id, and keeps the request counted in flight and its access record open
/// until the response body is finished or dropped.
fn tracked(mut resp: s3s::HttpResponse, guard: Option<InFlight>, slot: Slot) -> s3s::HttpResponse {
    if let Ok(id) = http::HeaderValue::from_str(slot.id()) {
        resp.headers_mut().insert(access::REQUEST_ID_HEADER, id);
    }
    slot.set_status(resp.status());
    resp.map(|body| {
        s3s::Body::http_body(Tracked {
            inner: body,
            _guard: guard,
            slot: Some(slot),
        })
    })
}

/// A response body that holds its request's [`InFlight`] guard and access record, counting
/// the bytes sent; the access line is written when the body ends or is dropped.
struct Tracked {
    inner: s3s::Body,
    _guard: Option<InFlight>,
    slot: Option<Slot>,
}

impl Tracked {
    fn finish(&mut self) {
        if let Some(slot) = self.slot.take() {
            slot.log();
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.finish();
    }
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = s3s::StdError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(slot)) = (frame.data_ref(), self.slot.as_ref()) {
                    slot.add_out(data.len());
                }
            }
            Poll::Ready(None) => self.finish(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Why a request body was abandoned.
#[derive(Debug, thiserror::Error)]
#[error("request body made no progress for {0:?}")]
pub(super) struct BodyStalled(Duration);

/// A request body that fails when no frame arrives for `timeout`: a client that stops sending
/// mid-body is dropped, and the upload it was feeding fails (nothing is stored).
struct ProgressBody {
    inner: hyper::body::Incoming,
    timeout: Duration,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Counts the bytes read for the access line.
    slot: Slot,
}

impl ProgressBody {
    fn new(inner: hyper::body::Incoming, timeout: Duration, slot: Slot) -> Self {
        Self {
            inner,
            timeout,
            deadline: None,
            slot,
        }
    }
}

impl http_body::Body for ProgressBody {
    type Data = Bytes;
    type Error = s3s::StdError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                self.deadline = None;
                if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(|f| f.data_ref())) {
                    self.slot.add_in(data.map_or(0, Bytes::len));
                }
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let timeout = self.timeout;
                let deadline = self
                    .deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyStalled(timeout))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Refused or unauthenticated requests: each at debug, a count at info at most every
/// [`REFUSAL_REPORT_EVERY`] — never an ERROR line per request a stranger sends.
#[derive(Default)]
struct RefusalLog {
    count: AtomicU64,
    last_report_ms: AtomicU64,
    started: std::sync::OnceLock<Instant>,
}

impl RefusalLog {
    fn note(&self, method: &http::Method, status: http::StatusCode, code: &str) {
        tracing::debug!(%method, %status, code, "request refused");
        let count = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        let now = self.started.get_or_init(Instant::now).elapsed().as_millis() as u64;
        let last = self.last_report_ms.load(Ordering::Relaxed);
        let every = REFUSAL_REPORT_EVERY.as_millis() as u64;
        if (last == 0 || now.saturating_sub(last) >= every)
            && self
                .last_report_ms
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.count.fetch_sub(count, Ordering::Relaxed);
            tracing::info!(
                refused = count,
                "requests refused (bad or missing signature, or refused at the edge) since the last report"
            );
        }
    }
}
