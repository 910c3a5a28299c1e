//! The accept loop: one task per connection, optional TLS handshake, HTTP/1.1 or h2 through
//! hyper-util's auto builder, graceful shutdown.

use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::front::Front;

/// On stop, connections get this long to finish their requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// A TLS handshake that takes longer than this is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections on `listener` until `stopped` changes, then drains them.
pub(super) async fn serve(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    service: Front,
    mut stopped: watch::Receiver<bool>,
) {
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
                Some(acceptor) => match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
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
                },
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
}
