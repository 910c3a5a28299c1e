//! Per-connection activity: how many requests are in flight and when the last one started or
//! ended, so the listener can close connections idle for longer than `idle_timeout_secs` (an
//! HTTP/1.1 keep-alive or an h2 connection with no open stream, whatever pings or trickled
//! bytes it carries).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// One connection's requests.
pub(super) struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `opened` of the last request start or end.
    last_ms: AtomicU64,
}

impl Activity {
    /// A connection opened now.
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
        })
    }

    fn touch(&self) {
        self.last_ms
            .store(self.opened.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Counts a request in flight until the guard drops.
    pub(super) fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.touch();
        InFlight(Arc::clone(self))
    }

    /// How long the connection has had no request in flight (zero while one is).
    pub(super) fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        let since = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.opened.elapsed().saturating_sub(since)
    }
}

/// A request in flight; dropping it ends the request.
pub(super) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_in_flight_is_never_idle() {
        let a = Activity::new();
        let guard = a.start();
        assert_eq!(a.idle_for(), Duration::ZERO);
        drop(guard);
        assert!(a.idle_for() < Duration::from_secs(5));
    }
}
