//! The S3 listener: everything between a TCP socket and the s3s service. It owns the accept
//! loop and its connection limits ([`listener`]), TLS ([`tls`]), and the HTTP-layer service in
//! front of s3s ([`front`]), and reports its own errors ([`ServerError`]); the caller maps them.

mod activity;
mod front;
mod gate;
mod listener;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::backend::ObjectStore;
use crate::config::{ClientConfig, ServerConfig};
use crate::keys::SharedKeyring;

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The TLS certificate or key could not be used.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The listen address could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
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

/// Binds `server.listen` and serves S3 over `store` to `clients` until stopped.
pub async fn start(
    server: &ServerConfig,
    clients: &[ClientConfig],
    store: Arc<dyn ObjectStore>,
    keyring: Arc<SharedKeyring>,
) -> Result<Running, ServerError> {
    let acceptor = match &server.tls {
        Some(files) => Some(TlsAcceptor::from(tls::server_config(&files.cert, &files.key)?)),
        None => None,
    };
    let service = front::Front::new(server, clients, store, keyring);
    let listener = tokio::net::TcpListener::bind(server.listen)
        .await
        .map_err(|e| ServerError::Bind(server.listen, e))?;
    let addr = listener.local_addr().map_err(|e| ServerError::Bind(server.listen, e))?;
    let (shutdown, stopped) = watch::channel(false);
    let tls = acceptor.is_some();
    let task = tokio::spawn(listener::serve(
        listener,
        acceptor,
        service,
        server.limits.clone(),
        stopped,
    ));
    Ok(Running {
        addr,
        tls,
        shutdown,
        task,
    })
}
