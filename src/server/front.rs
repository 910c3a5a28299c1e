//! The HTTP-layer service in front of s3s: builds the s3s service (the proxy, client
//! authentication) and fixes what must be fixed before or after s3s sees a request.

use std::sync::Arc;

use s3s::service::{S3Service, S3ServiceBuilder};

use crate::backend::ObjectStore;
use crate::config::{ClientConfig, ServerConfig};
use crate::crypto::keyring::Keyring;
use crate::s3::{ClientAuth, Proxy};

/// The s3s service, with two fixes at the HTTP layer:
/// - an answer to HEAD carries no body over h2 either (hyper drops it only on HTTP/1.1; s3s
///   writes error XML even for HEAD, which h2 clients reject as a protocol error);
/// - an HTTP/1.1 request with `Expect: 100-continue` and an empty body gets its connection closed
///   after the answer: botocore before 1.43.77 (boto/botocore#3755, so the AWS CLI) misreads the
///   next response on that connection and stalls until its read timeout.
#[derive(Clone)]
pub(super) struct Front(S3Service);

impl Front {
    /// The proxy over `store` behind s3s, authenticating `clients`.
    pub(super) fn new(
        server: &ServerConfig,
        clients: &[ClientConfig],
        store: Arc<dyn ObjectStore>,
        keyring: Arc<Keyring>,
    ) -> Self {
        let mut builder = S3ServiceBuilder::new(Proxy::new(store, keyring, server.region.clone()));
        builder.set_auth(ClientAuth::new(clients));
        Self(builder.build())
    }
}

impl hyper::service::Service<http::Request<hyper::body::Incoming>> for Front {
    type Response = s3s::HttpResponse;
    type Error = s3s::HttpError;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn call(&self, req: http::Request<hyper::body::Incoming>) -> Self::Future {
        let head = req.method() == http::Method::HEAD;
        let headers = req.headers();
        let close = req.version() <= http::Version::HTTP_11
            && headers.contains_key(http::header::EXPECT)
            && headers
                .get(http::header::CONTENT_LENGTH)
                .is_some_and(|v| v.as_bytes() == b"0");
        let answer = hyper::service::Service::call(&self.0, req);
        Box::pin(async move {
            let mut resp = answer.await?;
            if head {
                *resp.body_mut() = s3s::Body::empty();
            }
            if close {
                resp.headers_mut()
                    .insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
            }
            Ok(resp)
        })
    }
}
