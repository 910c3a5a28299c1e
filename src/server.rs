//! The S3 listener: TCP accept loop, optional TLS (rustls), HTTP/1.1 and h2 (hyper-util's auto
//! builder), and the s3s service with client authentication in front of [`crate::s3::Proxy`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::backend::ObjectStore;
use crate::config::Config;
use crate::crypto::keyring::Keyring;
use crate::s3::{ClientAuth, Proxy};

/// On stop, connections get this long to finish their requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// A TLS handshake that takes longer than this is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The s3s service, with two fixes at the HTTP layer:
/// - an answer to HEAD carries no body over h2 either (hyper drops it only on HTTP/1.1; s3s
///   writes error XML even for HEAD, which h2 clients reject as a protocol error);
/// - an HTTP/1.1 request with `Expect: 100-continue` and an empty body gets its connection closed
///   after the answer: botocore before 1.43.77 (boto/botocore#3755, so the AWS CLI) misreads the
///   next response on that connection and stalls until its read timeout.
#[derive(Clone)]
struct Front(s3s::service::S3Service);

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

/// A running S3 listener.
pub struct Running {
    /// The bound address (with the real port when the configuration said 0).
    pub addr: SocketAddr,
    /// Whether clients must speak TLS.
    pub tls: bool,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// The endpoint URL clients use.
    pub fn url(&self) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, self.addr)
    }

    /// Stops accepting, lets in-flight requests finish (up to a grace period), and returns.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// Binds the configured address and serves S3 over `store` until stopped.
pub async fn start(
    config: &Config,
    store: Arc<dyn ObjectStore>,
    keyring: Arc<Keyring>,
) -> Result<Running, crate::RunError> {
    let acceptor = match &config.server.tls {
        Some(files) => Some(TlsAcceptor::from(crate::tls::server_config(&files.cert, &files.key)?)),
        None => None,
    };
    let service = {
        let mut builder = S3ServiceBuilder::new(Proxy::new(
            crate::object::Objects::new(store, keyring),
            config.server.region.clone(),
        ));
        builder.set_auth(ClientAuth::new(&config.clients));
        Front(builder.build())
    };
    let listener = TcpListener::bind(config.server.listen)
        .await
        .map_err(|e| crate::RunError::Bind(config.server.listen, e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| crate::RunError::Bind(config.server.listen, e))?;
    let (shutdown, mut stopped) = watch::channel(false);
    let tls = acceptor.is_some();
    let task = tokio::spawn(async move {
        let http = ConnBuilder::new(TokioExecutor::new());
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        loop {
            let (socket, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(conn) => conn,
                    // Out of file descriptors or similar: keep serving the connections we have.
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                },
                _ = stopped.changed() => break,
            };
            let _ = socket.set_nodelay(true);
            let service = service.clone();
            let http = http.clone();
            let acceptor = acceptor.clone();
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let result = match acceptor {
                    Some(acceptor) => {
                        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
                            Ok(Ok(tls)) => {
                                watcher
                                    .watch(http.serve_connection(TokioIo::new(tls), service).into_owned())
                                    .await
                            }
                            // A failed handshake is the client's problem; note it quietly.
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "tls handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "tls handshake timed out");
                                return;
                            }
                        }
                    }
                    None => {
                        watcher
                            .watch(http.serve_connection(TokioIo::new(socket), service).into_owned())
                            .await
                    }
                };
                // Clients hang up mid-stream all the time; an aborted body (failed
                // authentication) ends here too, on purpose.
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            });
        }
        if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
            tracing::warn!("connections still open after the grace period; closing them");
        }
    });
    Ok(Running {
        addr,
        tls,
        shutdown,
        task,
    })
}
