//! The admin listener (DESIGN §7): its own address (loopback by default), `GET /live`,
//! `GET /ready` and `GET /metrics` without a token, and the operator API under `/admin/` behind
//! a bearer token ([`auth`]). JSON in and out; errors are `{"error": "…"}` with a proper status.
//! Every `/admin/` request is one audit line (target `audit`): the token's fingerprint, the
//! route, the status and the job started, never a token or key material.
//!
//! Areas add their routes in [`routes`]; long work runs as a job ([`jobs`]).

pub mod auth;
pub mod health;
pub mod jobs;
pub mod keys;
pub mod metrics;
mod mirror;
mod page;
mod rates;
mod routes;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

pub use self::health::{Health, ReadyRule};
pub use self::jobs::Jobs;
use crate::backend::ObjectStore;
use crate::config::AdminConfig;
use crate::keys::SharedKeyring;

/// Connections the admin listener serves at once; more wait in the backlog.
const MAX_CONNECTIONS: usize = 32;
/// Time to send a request's headers, or to finish a TLS handshake.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request body (JSON parameters).
const MAX_BODY_BYTES: usize = 64 * 1024;
/// Time to send a request body.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection with no request finished in this long is closed.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(300);

/// Why the admin listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The token file is unusable.
    #[error("admin token: {0}")]
    Token(String),
    /// The token file could not be read, or is readable by others.
    #[error(transparent)]
    File(#[from] crate::files::FileError),
    /// The TLS certificate or key could not be used.
    #[error(transparent)]
    Tls(#[from] crate::server::tls::TlsError),
    /// The listen address could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
}

/// What admin handlers work with: the proxy's shared state.
pub struct AdminContext {
    /// Liveness, readiness, draining.
    pub health: Arc<Health>,
    /// Background jobs.
    pub jobs: Arc<Jobs>,
    /// The keyring the S3 side uses.
    pub keyring: Arc<SharedKeyring>,
    /// The primary store.
    pub primary: Arc<dyn ObjectStore>,
    /// The mirror store, if configured.
    pub mirror: Option<Arc<dyn ObjectStore>>,
    /// The mirror pair (breakers, backlog, reconcile), if configured.
    pub pair: Option<Arc<crate::mirror::Mirror>>,
    /// Status page sessions.
    page: page::Sessions,
    /// Samples of the S3 listener's totals, for request rates.
    rates: rates::Rates,
    /// Whether the listener speaks TLS (the session cookie is then `Secure`).
    tls: bool,
    token: auth::TokenCheck,
}

impl AdminContext {
    /// The admin state over the proxy's shared parts, with the token from `config`.
    pub fn new(
        config: &AdminConfig,
        health: Arc<Health>,
        keyring: Arc<SharedKeyring>,
        primary: Arc<dyn ObjectStore>,
        mirror: Option<Arc<dyn ObjectStore>>,
    ) -> Result<Self, AdminError> {
        Ok(Self {
            health,
            jobs: Jobs::new(),
            keyring,
            primary,
            mirror,
            pair: None,
            page: page::Sessions::default(),
            rates: rates::Rates::default(),
            tls: false,
            token: auth::TokenCheck::from_file(&config.token_file)?,
        })
    }

    /// The same, serving the mirror's routes over `pair`.
    pub fn with_mirror(mut self, pair: Option<Arc<crate::mirror::Mirror>>) -> Self {
        self.pair = pair;
        self
    }

    /// The stores key jobs walk: the primary, then the mirror.
    pub fn stores(&self) -> Vec<Arc<dyn ObjectStore>> {
        let mut stores = vec![Arc::clone(&self.primary)];
        stores.extend(self.mirror.clone());
        stores
    }
}

/// A running admin listener.
pub struct Running {
    /// The bound address.
    pub addr: SocketAddr,
    /// Whether it speaks TLS.
    pub tls: bool,
    task: tokio::task::JoinHandle<()>,
    /// The certificate and its watcher (stopped with this).
    live_tls: Option<crate::server::tls::LiveTls>,
}

impl Running {
    /// The admin API's base URL.
    pub fn url(&self) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, self.addr)
    }

    /// Stops the listener (admin requests are short; open ones are dropped).
    pub fn stop(self) {
        self.task.abort();
    }

    /// Re-reads the TLS certificate and key now (SIGHUP). No-op without TLS.
    pub fn reload_tls(&self) {
        if let Some(live) = &self.live_tls {
            live.reload_now();
        }
    }
}

/// Binds `config.listen` and serves the admin API over `ctx`. With TLS, the certificate is
/// reloaded on change as the S3 listener's is, and with `tls_client_ca` clients need a
/// certificate from that CA (the token is still required).
pub async fn start(config: &AdminConfig, mut ctx: AdminContext) -> Result<Running, AdminError> {
    let live_tls = match &config.tls {
        Some(files) => Some(crate::server::tls::LiveTls::start(
            &files.cert,
            &files.key,
            config.tls_client_ca.as_deref(),
            Duration::from_secs(crate::limits::DEFAULT_TLS_RELOAD_SECS),
        )?),
        None => None,
    };
    let acceptor = live_tls.as_ref().map(crate::server::tls::LiveTls::acceptor);
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| AdminError::Bind(config.listen, e))?;
    let addr = listener.local_addr().map_err(|e| AdminError::Bind(config.listen, e))?;
    // Render once so the recorder is installed before the first request records anything.
    let _ = metrics::handle();
    let tls = acceptor.is_some();
    ctx.tls = tls;
    let ctx = Arc::new(ctx);
    tokio::spawn(rates::sample(Arc::downgrade(&ctx)));
    let task = tokio::spawn(serve(listener, acceptor, ctx));
    Ok(Running {
        addr,
        tls,
        task,
        live_tls,
    })
}

async fn serve(listener: TcpListener, acceptor: Option<TlsAcceptor>, ctx: Arc<AdminContext>) {
    let mut http = ConnBuilder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(crate::limits::MAX_REQUEST_HEADER_BYTES);
    http.http2().timer(TokioTimer::new()).max_concurrent_streams(16);
    let http = Arc::new(http);
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        // Invariant: the semaphore is never closed.
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed; pausing");
                tokio::time::sleep(Duration::from_millis(crate::limits::ACCEPT_BACKOFF_MS)).await;
                continue;
            }
        };
        let (http, acceptor, ctx) = (Arc::clone(&http), acceptor.clone(), Arc::clone(&ctx));
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |req| {
                let ctx = Arc::clone(&ctx);
                async move { Ok::<_, std::convert::Infallible>(routes::handle(&ctx, req, peer).await) }
            });
            let served = async {
                match acceptor {
                    Some(acceptor) => match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(socket)).await {
                        Ok(Ok(tls)) => http.serve_connection(TokioIo::new(tls), service).await,
                        _ => Ok(()),
                    },
                    None => http.serve_connection(TokioIo::new(socket), service).await,
                }
            };
            match tokio::time::timeout(CONNECTION_LIFETIME, served).await {
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "admin connection ended with an error"),
                Err(_) => tracing::debug!(%peer, "admin connection closed after its lifetime"),
                Ok(Ok(())) => {}
            }
        });
    }
}
