//! A small HTTP interposer in front of one store: passes every request through to s3s-fs
//! unchanged (streaming both ways, the Host header as signed), or, while switched on, answers
//! every request itself with `503 SlowDown` as AWS S3 does when throttling. Its gate can also
//! hold the store's long work (server-side copies and composes: `UploadPartCopy`, `CopyObject`,
//! a multipart completion; and the writes of an upload's part objects), as a large object keeps
//! S3 busy, then let it through or refuse it with `403 AccessDenied`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

type Body = BoxBody<Bytes, hyper::Error>;

const ACCESS_DENIED: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code>\
<Message>Access Denied</Message><RequestId>fault-interposer</RequestId></Error>";

const SLOW_DOWN: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
<Message>Please reduce your request rate.</Message><RequestId>fault-interposer</RequestId></Error>";

/// What the gate does with a request of the store's long work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Passes it through.
    Open,
    /// Keeps it waiting, unanswered.
    Hold,
    /// Answers it `403 AccessDenied`.
    Refuse,
}

/// The interposer's switch and counters.
pub struct Switch {
    slow_down: AtomicBool,
    gate: tokio::sync::watch::Sender<Gate>,
    /// Requests answered with 503.
    pub refused: AtomicU64,
    /// Requests passed through.
    pub passed: AtomicU64,
    /// Requests the gate has held so far.
    pub held: AtomicU64,
}

impl Default for Switch {
    fn default() -> Self {
        Switch {
            slow_down: AtomicBool::new(false),
            gate: tokio::sync::watch::Sender::new(Gate::Open),
            refused: AtomicU64::new(0),
            passed: AtomicU64::new(0),
            held: AtomicU64::new(0),
        }
    }
}

impl Switch {
    /// Starts (`true`) or stops answering 503.
    pub fn set_slow_down(&self, on: bool) {
        self.slow_down.store(on, Ordering::SeqCst);
    }

    /// Sets the gate for the long work's requests; held ones go on as the new gate says.
    pub fn set_gate(&self, gate: Gate) {
        self.gate.send_replace(gate);
    }
}

/// A request of the store's long work: a copy (`x-amz-copy-source`), a multipart completion, or
/// the write of an upload's part object (under `.escrow-mpu/p/`).
fn long_work(req: &Request<Incoming>) -> bool {
    req.headers().contains_key("x-amz-copy-source")
        || (req.method() == hyper::Method::POST && req.uri().query().is_some_and(|q| q.contains("uploadId=")))
        || (req.method() == hyper::Method::PUT && req.uri().path().contains("/.escrow-mpu/p/"))
}

/// Listens on 127.0.0.1:0 and forwards to `upstream`; returns its address and its switch.
pub async fn start(upstream: SocketAddr) -> (SocketAddr, Arc<Switch>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind interposer");
    let addr = listener.local_addr().expect("interposer addr");
    let switch = Arc::new(Switch::default());
    let sw = Arc::clone(&switch);
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                continue;
            };
            let sw = Arc::clone(&sw);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let sw = Arc::clone(&sw);
                    async move { Ok::<_, Infallible>(handle(req, upstream, &sw).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            });
        }
    });
    (addr, switch)
}

async fn handle(req: Request<Incoming>, upstream: SocketAddr, sw: &Switch) -> Response<Body> {
    if sw.slow_down.load(Ordering::SeqCst) {
        sw.refused.fetch_add(1, Ordering::Relaxed);
        return plain(StatusCode::SERVICE_UNAVAILABLE, SLOW_DOWN);
    }
    if long_work(&req) {
        let mut gate = sw.gate.subscribe();
        if *gate.borrow_and_update() == Gate::Hold {
            sw.held.fetch_add(1, Ordering::SeqCst);
        }
        let gate = match gate.wait_for(|g| *g != Gate::Hold).await {
            Ok(gate) => *gate,
            Err(_) => Gate::Refuse,
        };
        if gate == Gate::Refuse {
            sw.refused.fetch_add(1, Ordering::Relaxed);
            return plain(StatusCode::FORBIDDEN, ACCESS_DENIED);
        }
    }
    sw.passed.fetch_add(1, Ordering::Relaxed);
    match forward(req, upstream).await {
        Ok(resp) => resp.map(BodyExt::boxed),
        Err(e) => plain(StatusCode::BAD_GATEWAY, &format!("interposer: {e}")),
    }
}

/// One upstream connection per request: simple, and a switch never leaves a pooled connection
/// behind it.
async fn forward(req: Request<Incoming>, upstream: SocketAddr) -> Result<Response<Incoming>, String> {
    let stream = TcpStream::connect(upstream).await.map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender.send_request(req).await.map_err(|e| e.to_string())
}

fn plain(status: StatusCode, body: &str) -> Response<Body> {
    let mut resp = Response::new(
        Full::new(Bytes::from(body.to_string()))
            .map_err(|never: Infallible| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml"),
    );
    resp
}
