//! The accept loop and its bounds: at most `max_connections` connections at once (the rest wait
//! in the kernel's backlog), a pause instead of a spin when file descriptors run out, a TLS
//! handshake timeout, hyper's HTTP/1.1 header timeout and header size cap, h2 stream and header
//! caps and keep-alive pings, and an idle timeout per connection ([`super::activity`]); and the
//! graceful stop: on the stop signal it keeps accepting for `drain_delay`, then stops
//! accepting and gives in-flight requests `shutdown_grace` to finish.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use super::activity::Activity;
use super::front::Front;
use crate::config::ConnectionLimits;
use crate::limits::{ACCEPT_BACKOFF_MS, MAX_REQUEST_HEADER_BYTES};

/// Accepts connections on `listener` until `stopped` changes, then drains them.
pub(super) async fn serve(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    service: Front,
    limits: ConnectionLimits,
    mut stopped: watch::Receiver<bool>,
) {
    let http = Arc::new(http_builder(&limits));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    // Until the stop signal: forever; then the end of the drain delay.
    let mut accept_until: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    loop {
        let accepted = tokio::select! {
            accepted = accept(&listener, &permits) => accepted,
            _ = stopped.changed(), if accept_until.is_none() => {
                tracing::info!(
                    drain_delay_secs = limits.drain_delay.as_secs(),
                    "stop requested; accepting connections until the drain delay ends"
                );
                accept_until = Some(Box::pin(tokio::time::sleep(limits.drain_delay)));
                continue;
            }
            _ = async { if let Some(until) = accept_until.as_mut() { until.await } }, if accept_until.is_some() => break,
        };
        let Some((socket, peer, permit)) = accepted else {
            continue;
        };
        let _ = socket.set_nodelay(true);
        let activity = Activity::new();
        let service = service.for_connection(Arc::clone(&activity));
        let http = Arc::clone(&http);
        let acceptor = acceptor.clone();
        let watcher = graceful.watcher();
        let limits = limits.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let result = match acceptor {
                Some(acceptor) => match tokio::time::timeout(limits.header_timeout, acceptor.accept(socket)).await {
                    Ok(Ok(tls)) => {
                        let conn = watcher.watch(http.serve_connection(TokioIo::new(tls), service).into_owned());
                        until_idle(conn, &activity, limits.idle_timeout).await
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
                    let conn = watcher.watch(http.serve_connection(TokioIo::new(socket), service).into_owned());
                    until_idle(conn, &activity, limits.idle_timeout).await
                }
            };
            // Clients hang up mid-stream all the time; an aborted body (failed authentication,
            // a stalled upload) or a header timeout ends here too, on purpose.
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!(
        shutdown_grace_secs = limits.shutdown_grace.as_secs(),
        "stopped accepting; finishing in-flight requests"
    );
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the grace period; closing them");
    } else {
        tracing::info!("all connections finished");
    }
}

/// hyper's connection settings from `limits`.
fn http_builder(limits: &ConnectionLimits) -> ConnBuilder<TokioExecutor> {
    let mut http = ConnBuilder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_REQUEST_HEADER_BYTES);
    http.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_streams)
        .max_header_list_size(MAX_REQUEST_HEADER_BYTES as u32)
        .keep_alive_interval(limits.h2_keepalive)
        .keep_alive_timeout(limits.h2_keepalive);
    http
}

/// One accepted connection with its permit, once a permit is free. `None` after an accept
/// error: a pause when the process is out of file descriptors (or memory), so the loop never
/// spins; a client that gave up before its accept is simply skipped.
async fn accept(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
) -> Option<(TcpStream, std::net::SocketAddr, tokio::sync::OwnedSemaphorePermit)> {
    // Invariant: the semaphore is never closed.
    let permit = Arc::clone(permits).acquire_owned().await.ok()?;
    match listener.accept().await {
        Ok((socket, peer)) => Some((socket, peer, permit)),
        Err(e) => {
            use std::io::ErrorKind::{ConnectionAborted, ConnectionReset, Interrupted};
            if matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted) {
                tracing::debug!(error = %e, "accept: client gone");
            } else {
                // EMFILE, ENFILE, ENOBUFS, ENOMEM: keep serving the connections we have.
                tracing::warn!(error = %e, "accept failed; pausing");
                tokio::time::sleep(Duration::from_millis(ACCEPT_BACKOFF_MS)).await;
            }
            None
        }
    }
}

/// Drives `conn` to its end, or drops it once it has had no request in flight for `idle`.
async fn until_idle<F, E>(conn: F, activity: &Activity, idle: Duration) -> Result<(), E>
where
    F: std::future::Future<Output = Result<(), E>>,
{
    tokio::pin!(conn);
    let mut tick = tokio::time::interval((idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(5)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            result = &mut conn => return result,
            _ = tick.tick() => {
                if activity.idle_for() >= idle {
                    tracing::debug!("closing an idle connection");
                    return Ok(());
                }
            }
        }
    }
}
