//! Request rates for the status page: the S3 listener's running [`Traffic`] totals, sampled
//! every few seconds into a short window; a rate is the difference between the newest sample
//! and the oldest one still inside the window.

use std::collections::VecDeque;
use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant};

use crate::server::{Traffic, traffic};

/// How often the totals are sampled.
pub(super) const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// The window rates are computed over.
const WINDOW: Duration = Duration::from_secs(60);

/// Samples of the totals, oldest first.
#[derive(Default)]
pub(super) struct Rates {
    samples: Mutex<VecDeque<(Instant, Traffic)>>,
}

/// Rates over the last `secs` seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Rate {
    /// The span the rates cover.
    pub secs: f64,
    /// Requests per second.
    pub requests: f64,
    /// 4xx answers per second.
    pub client_errors: f64,
    /// 5xx answers per second.
    pub server_errors: f64,
    /// Request body bytes per second.
    pub bytes_in: f64,
    /// Response body bytes per second.
    pub bytes_out: f64,
}

impl Rates {
    /// Records the totals `now`, dropping samples that left the window (one older sample stays
    /// so the window is covered whole).
    pub(super) fn record(&self, now: Instant, totals: Traffic) {
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        samples.push_back((now, totals));
        while samples.len() > 2 && samples.get(1).is_some_and(|(t, _)| now.duration_since(*t) >= WINDOW) {
            samples.pop_front();
        }
    }

    /// Rates from the oldest sample to the totals `now`; `None` before a first sample.
    pub(super) fn rate(&self, now: Instant, totals: Traffic) -> Option<Rate> {
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let (then, old) = samples.front().copied()?;
        let secs = now.duration_since(then).as_secs_f64();
        if secs < 1.0 {
            return None;
        }
        let per = |new: u64, old: u64| new.saturating_sub(old) as f64 / secs;
        Some(Rate {
            secs,
            requests: per(totals.requests, old.requests),
            client_errors: per(totals.client_errors, old.client_errors),
            server_errors: per(totals.server_errors, old.server_errors),
            bytes_in: per(totals.bytes_in, old.bytes_in),
            bytes_out: per(totals.bytes_out, old.bytes_out),
        })
    }

    /// Rates up to this moment.
    pub(super) fn now(&self) -> Option<Rate> {
        self.rate(Instant::now(), traffic())
    }
}

/// Samples the totals every [`SAMPLE_EVERY`] while the admin state lives.
pub(super) async fn sample(ctx: Weak<super::AdminContext>) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    loop {
        tick.tick().await;
        let Some(ctx) = ctx.upgrade() else { return };
        ctx.rates.record(Instant::now(), traffic());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(requests: u64, bytes_out: u64) -> Traffic {
        Traffic {
            requests,
            bytes_out,
            ..Traffic::default()
        }
    }

    #[test]
    fn rates_are_differences_over_the_window() {
        let rates = Rates::default();
        let t0 = Instant::now();
        assert_eq!(rates.rate(t0, totals(0, 0)), None, "no sample yet");
        rates.record(t0, totals(10, 1000));
        assert_eq!(rates.rate(t0, totals(10, 1000)), None, "no span yet");
        let r = rates
            .rate(t0 + Duration::from_secs(10), totals(60, 6000))
            .expect("a rate");
        assert_eq!((r.secs, r.requests, r.bytes_out), (10.0, 5.0, 500.0));
        // Samples every 5 s for two minutes: the rate covers about the last minute only.
        for i in 1..=24u64 {
            rates.record(t0 + Duration::from_secs(5 * i), totals(10 + 100 * i, 0));
        }
        let now = t0 + Duration::from_secs(120);
        let r = rates.rate(now, totals(10 + 2400, 0)).expect("a rate");
        assert!((60.0..=65.0).contains(&r.secs), "{r:?}");
        assert!((r.requests - 20.0).abs() < 1.0, "{r:?}");
    }

    #[test]
    fn a_counter_that_went_backwards_is_no_negative_rate() {
        let rates = Rates::default();
        let t0 = Instant::now();
        rates.record(t0, totals(10, 0));
        let r = rates.rate(t0 + Duration::from_secs(5), totals(0, 0)).expect("a rate");
        assert_eq!(r.requests, 0.0);
    }
}
