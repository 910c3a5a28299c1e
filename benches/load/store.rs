//! `load --serve-store ROOT --port PORT`: the same S3 server as the `s3s-fs` binary (s3s-fs
//! 0.14.1's `FileSystem` behind s3s, hyper-util's HTTP/1.1 + h2 builder) with one difference:
//! accepted sockets get `TCP_NODELAY`, as production servers set it.
//!
//! Why it exists: the `s3s-fs` binary does not set `TCP_NODELAY` and writes a response's head
//! and body separately, so a small object's body waits for the ACK of the head (Nagle), which a
//! client delays by up to 40 ms. That stalls most 4 KiB GETs straight from the store (p50 ≈
//! 43 ms) while a proxy's pooled upstream connection often escapes it: a small-object
//! comparison against that store says more about Nagle than about the proxy.
//! `E2E_STORE=nodelay bash benches/e2e.sh` runs every store as this server instead.

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

/// Serves `root` on `addr` until the process is killed.
pub async fn serve(root: PathBuf, addr: std::net::SocketAddr, access_key: String, secret_key: String) -> Result<()> {
    let fs = s3s_fs::FileSystem::new(&root).map_err(|e| anyhow!("store root {}: {e:?}", root.display()))?;
    let service = {
        let mut b = S3ServiceBuilder::new(fs);
        b.set_auth(SimpleAuth::from_single(access_key, secret_key));
        b.build()
    };
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let http = ConnBuilder::new(TokioExecutor::new());
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            continue;
        };
        socket.set_nodelay(true)?;
        let conn = http
            .serve_connection(TokioIo::new(socket), service.clone())
            .into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}
