//! The S3 listener: everything between a TCP socket and the s3s service. It owns the accept
//! loop, its connection limits and its graceful stop ([`listener`]), TLS and certificate
//! reloads ([`tls`]), the HTTP-layer service in front of s3s ([`front`]) with its access log
//! ([`access`]), and reports its own errors ([`ServerError`]); the caller maps them.

mod access;
mod activity;
mod front;
mod gate;
mod listener;
pub mod shutdown;
pub mod tls;

pub use access::{Traffic, traffic};

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;

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
    /// The certificate and its watcher (stopped with this).
    live_tls: Option<tls::LiveTls>,
}

impl Running {
    /// The endpoint URL clients use.
    pub fn url(&self) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, self.addr)
    }

    /// Stops gracefully and returns once done: keeps accepting for `drain_delay_secs`, then
    /// stops accepting and lets in-flight requests finish for up to `shutdown_grace_secs`
    /// (connections still open then are closed).
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }

    /// Re-reads the TLS certificate and key now (SIGHUP), whether or not their files look
    /// changed. A bad pair is refused with a log line and the old one kept. No-op without TLS.
    pub fn reload_tls(&self) {
        if let Some(live) = &self.live_tls {
            live.reload_now();
        }
    }
}

/// Binds `server.listen` and serves S3 over `store` to `clients` until stopped.
pub async fn start(
    server: &ServerConfig,
    clients: &[ClientConfig],
    store: Arc<dyn ObjectStore>,
    keyring: Arc<SharedKeyring>,
) -> Result<Running, ServerError> {
    let live_tls = match &server.tls {
        Some(files) => Some(tls::LiveTls::start(
            &files.cert,
            &files.key,
            server.limits.tls_client_ca.as_deref(),
            server.limits.tls_reload,
        )?),
        None => None,
    };
    let acceptor = live_tls.as_ref().map(tls::LiveTls::acceptor);
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
        live_tls,
    })
}
