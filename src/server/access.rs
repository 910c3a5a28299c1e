//! The access log: one line per request at target `escrow_proxy::access`, written when the
//! response body is finished or dropped: request id (also sent as `x-amz-request-id`; s3s sends
//! none), the client's access key once its signature checked out, the S3 operation, bucket and
//! object key, status, body bytes in and out, duration, and the store(s) that served it
//! (`stores`: `primary`, `mirror`, `primary+mirror`, or `-`; noted by the mirror in a task-local,
//! [`crate::mirror::served`]). Never headers, signatures, secrets or metadata. Requests that
//! did not authenticate are logged at debug (a stranger's flood must not flood the log;
//! [`super::front`] counts them at info), authenticated ones at info.
//!
//! s3s resolves the operation and checks the signature; [`Note`] is its access hook, which
//! copies what it resolved into the request's [`Slot`] and then applies s3s's default rule
//! (anonymous requests are refused).
//!
//! Each finished request is also counted: in Prometheus (`escrow_s3_requests_total` by
//! operation and status, `escrow_s3_bytes_total` by direction) and in the process's
//! [`traffic`] totals, from which the status page computes request rates.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use s3s::access::{S3Access, S3AccessContext};
use s3s::path::S3Path;
use s3s::{S3Result, s3_error};

use crate::mirror::served::Served;

/// The response header carrying the request id.
pub(super) const REQUEST_ID_HEADER: &str = "x-amz-request-id";

/// Requests and body bytes this process has served, as running totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Requests answered (every status).
    pub requests: u64,
    /// Of those, answered 4xx.
    pub client_errors: u64,
    /// Of those, answered 5xx.
    pub server_errors: u64,
    /// Request body bytes read.
    pub bytes_in: u64,
    /// Response body bytes sent.
    pub bytes_out: u64,
}

/// The running totals behind [`traffic`]: process-wide, like the metrics recorder.
static TOTALS: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];

/// The totals so far.
pub fn traffic() -> Traffic {
    let [requests, client_errors, server_errors, bytes_in, bytes_out] =
        TOTALS.each_ref().map(|n| n.load(Ordering::Relaxed));
    Traffic {
        requests,
        client_errors,
        server_errors,
        bytes_in,
        bytes_out,
    }
}

/// Adds one finished request to the totals and to the Prometheus counters.
fn count(operation: &str, status: u64, bytes_in: u64, bytes_out: u64) {
    let class = match status {
        400..=499 => Some(1),
        500..=599 => Some(2),
        _ => None,
    };
    TOTALS[0].fetch_add(1, Ordering::Relaxed);
    if let Some(i) = class {
        TOTALS[i].fetch_add(1, Ordering::Relaxed);
    }
    TOTALS[3].fetch_add(bytes_in, Ordering::Relaxed);
    TOTALS[4].fetch_add(bytes_out, Ordering::Relaxed);
    metrics::counter!("escrow_s3_requests_total", "operation" => operation.to_string(), "status" => status.to_string())
        .increment(1);
    metrics::counter!("escrow_s3_bytes_total", "direction" => "in").increment(bytes_in);
    metrics::counter!("escrow_s3_bytes_total", "direction" => "out").increment(bytes_out);
}

/// What s3s resolved about a request: filled in by [`Note`] once the signature is verified.
#[derive(Default)]
struct Resolved {
    access_key: Option<String>,
    operation: Option<String>,
    bucket: Option<String>,
    key: Option<String>,
}

/// A request's access record, shared between the request (its extensions, for [`Note`]), its
/// body counter and its response body, which logs it when dropped.
#[derive(Clone)]
pub(super) struct Slot(Arc<SlotInner>);

struct SlotInner {
    id: String,
    method: http::Method,
    started: Instant,
    resolved: Mutex<Resolved>,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    status: AtomicU64,
    /// Which store(s) served it, once the handler is done.
    served: OnceLock<Served>,
}

impl Slot {
    /// A new record for a request of `method` starting now, with a fresh random id.
    pub(super) fn new(method: http::Method) -> Self {
        let id: u64 = rand::random();
        Self(Arc::new(SlotInner {
            id: format!("{id:016X}"),
            method,
            started: Instant::now(),
            resolved: Mutex::new(Resolved::default()),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            status: AtomicU64::new(0),
            served: OnceLock::new(),
        }))
    }

    /// The request id (16 uppercase hex digits, as S3's).
    pub(super) fn id(&self) -> &str {
        &self.0.id
    }

    /// Counts request body bytes read.
    pub(super) fn add_in(&self, n: usize) {
        self.0.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts response body bytes sent.
    pub(super) fn add_out(&self, n: usize) {
        self.0.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Records what a request served outside s3s resolved (POST Object): the access key whose
    /// signature checked out, the operation, bucket and key.
    pub(super) fn resolve(
        &self,
        access_key: Option<String>,
        operation: &str,
        bucket: Option<String>,
        key: Option<String>,
    ) {
        let mut r = self.0.resolved.lock().unwrap_or_else(|e| e.into_inner());
        *r = Resolved {
            access_key,
            operation: Some(operation.to_string()),
            bucket,
            key,
        };
    }

    /// Records the response status.
    pub(super) fn set_status(&self, status: http::StatusCode) {
        self.0.status.store(u64::from(status.as_u16()), Ordering::Relaxed);
    }

    /// Records which store(s) served the request.
    pub(super) fn set_served(&self, served: Served) {
        let _ = self.0.served.set(served);
    }

    /// Writes the access line. Called once, when the response body ends or is dropped.
    pub(super) fn log(&self) {
        let r = self.0.resolved.lock().unwrap_or_else(|e| e.into_inner());
        let inner = &self.0;
        let status = inner.status.load(Ordering::Relaxed);
        let bytes_in = inner.bytes_in.load(Ordering::Relaxed);
        let bytes_out = inner.bytes_out.load(Ordering::Relaxed);
        let duration_ms = inner.started.elapsed().as_millis() as u64;
        let operation = r.operation.as_deref().unwrap_or("-");
        let bucket = r.bucket.as_deref().unwrap_or("");
        let key = r.key.as_deref().unwrap_or("");
        let method = inner.method.as_str();
        let stores = inner.served.get().copied().unwrap_or_default().label();
        count(operation, status, bytes_in, bytes_out);
        match r.access_key.as_deref() {
            Some(access_key) => tracing::info!(
                target: "escrow_proxy::access",
                request_id = %inner.id, access_key, operation, method, bucket, key, status,
                bytes_in, bytes_out, duration_ms, stores, "request"
            ),
            None => tracing::debug!(
                target: "escrow_proxy::access",
                request_id = %inner.id, access_key = "-", operation, method, status,
                bytes_in, bytes_out, duration_ms, "request"
            ),
        }
    }
}

/// s3s's access hook: notes the verified access key, operation, bucket and key in the request's
/// [`Slot`], then refuses anonymous requests as s3s's default does.
pub(super) struct Note;

#[async_trait::async_trait]
impl S3Access for Note {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let access_key = cx.credentials().map(|c| c.access_key.clone());
        let operation = cx.s3_op().name().to_string();
        let (bucket, key) = match cx.s3_path() {
            S3Path::Root => (None, None),
            S3Path::Bucket { bucket } => (Some(bucket.to_string()), None),
            S3Path::Object { bucket, key } => (Some(bucket.to_string()), Some(key.to_string())),
        };
        if let Some(slot) = cx.extensions_mut().get::<Slot>() {
            let mut r = slot.0.resolved.lock().unwrap_or_else(|e| e.into_inner());
            *r = Resolved {
                access_key: access_key.clone(),
                operation: Some(operation),
                bucket,
                key,
            };
        }
        match access_key {
            Some(_) => Ok(()),
            None => Err(s3_error!(AccessDenied, "Signature is required")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_sixteen_hex_digits_and_differ() {
        let a = Slot::new(http::Method::GET);
        let b = Slot::new(http::Method::GET);
        assert_eq!(a.id().len(), 16);
        assert!(a.id().chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase()));
        assert_ne!(a.id(), b.id());
    }
}
