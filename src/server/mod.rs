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

use tokio::sync::{Notify, watch};
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
    /// Wakes the certificate watcher for an immediate reload (SIGHUP).
    reload: Option<Arc<Notify>>,
    watcher: Option<tokio::task::JoinHandle<()>>,
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
        if let Some(watcher) = self.watcher {
            watcher.abort();
        }
    }

    /// Re-reads the TLS certificate and key now (SIGHUP), whether or not their files look
    /// changed. A bad pair is refused with a log line and the old one kept. No-op without TLS.
    pub fn reload_tls(&self) {
        if let Some(reload) = &self.reload {
            reload.notify_one();
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
    let (acceptor, reload, watcher) = match &server.tls {
        Some(files) => {
            let slot = Arc::new(tls::CertSlot::load(&files.cert, &files.key)?);
            let config = tls::server_config_with(Arc::clone(&slot), server.limits.tls_client_ca.as_deref())?;
            let reload = Arc::new(Notify::new());
            let watcher = tokio::spawn(watch_certificate(slot, Arc::clone(&reload), server.limits.tls_reload));
            (Some(TlsAcceptor::from(config)), Some(reload), Some(watcher))
        }
        None => (None, None, None),
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
        reload,
        watcher,
    })
}

/// Polls the certificate files every `every` (and reloads at once when `now` is notified).
async fn watch_certificate(slot: Arc<tls::CertSlot>, now: Arc<Notify>, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        let force = tokio::select! {
            _ = tick.tick() => false,
            _ = now.notified() => true,
        };
        // Reading and parsing two small files: off the async workers all the same.
        let slot = Arc::clone(&slot);
        let _ = tokio::task::spawn_blocking(move || slot.reload(force)).await;
    }
}
