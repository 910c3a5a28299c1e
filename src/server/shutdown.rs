//! `POST /shutdown`: a process-wide request to drain and stop, as SIGTERM does, for batch Jobs
//! whose app must end its sidecar. Off unless `[server] shutdown_endpoint = true`; the admin
//! listener serves the route ([`answer`]) and `serve` waits on [`requested`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

static ENABLED: AtomicBool = AtomicBool::new(false);
static REQUESTED: Notify = Notify::const_new();

/// Turns the endpoint on for this process (`serve` does, when configured).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Why a shutdown request was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The endpoint is off (`shutdown_endpoint` not set).
    #[error("POST /shutdown is not enabled ([server] shutdown_endpoint)")]
    Disabled,
    /// The request did not come from a loopback address.
    #[error("POST /shutdown is accepted from loopback addresses only")]
    NotLoopback,
}

/// Takes a shutdown request from `peer`: only when enabled and from loopback.
pub fn request(peer: SocketAddr) -> Result<(), Refused> {
    if !ENABLED.load(Ordering::Relaxed) {
        return Err(Refused::Disabled);
    }
    if !peer.ip().is_loopback() {
        return Err(Refused::NotLoopback);
    }
    tracing::info!(%peer, "shutdown requested through POST /shutdown");
    REQUESTED.notify_one();
    Ok(())
}

/// Resolves once a shutdown request was taken (also one taken before the call).
pub async fn requested() {
    REQUESTED.notified().await;
}

/// The admin route's answer for `method` from `peer`: 202, 404 (disabled), 403 (not
/// loopback) or 405, with a JSON body.
pub fn answer(method: &http::Method, peer: SocketAddr) -> (http::StatusCode, serde_json::Value) {
    use http::StatusCode;
    if *method != http::Method::POST {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            serde_json::json!({ "error": "use POST" }),
        );
    }
    match request(peer) {
        Ok(()) => (StatusCode::ACCEPTED, serde_json::json!({ "shutdown": "draining" })),
        Err(Refused::Disabled) => (
            StatusCode::NOT_FOUND,
            serde_json::json!({ "error": Refused::Disabled.to_string() }),
        ),
        Err(e) => (StatusCode::FORBIDDEN, serde_json::json!({ "error": e.to_string() })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_enabled_and_only_from_loopback() {
        let local: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
        let remote: SocketAddr = "192.0.2.7:5000".parse().expect("addr");
        // Off by default (this test is the only one in the process that enables it).
        assert_eq!(request(local), Err(Refused::Disabled));
        assert_eq!(answer(&http::Method::POST, local).0, http::StatusCode::NOT_FOUND);
        enable();
        assert_eq!(request(remote), Err(Refused::NotLoopback));
        assert_eq!(answer(&http::Method::POST, remote).0, http::StatusCode::FORBIDDEN);
        assert_eq!(
            answer(&http::Method::GET, local).0,
            http::StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(answer(&http::Method::POST, local).0, http::StatusCode::ACCEPTED);
    }
}
