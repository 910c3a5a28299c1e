//! What the proxy knows about a store's health: up or down, since when, and why. A background
//! probe keeps it current ([`probe`]); the mirror's circuit breaker and the admin listener's
//! `/ready` read it.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::ObjectStore;

/// One store's health, shared between the probe, the mirror and the admin listener.
#[derive(Debug)]
pub struct StoreHealth {
    name: String,
    up: AtomicBool,
    /// How many times the store came back after being marked down.
    recoveries: AtomicU64,
    state: Mutex<Since>,
}

#[derive(Debug)]
struct Since {
    at: Instant,
    why: Option<String>,
}

impl StoreHealth {
    /// A store presumed up until a request or the probe says otherwise.
    pub fn new(name: &str) -> Arc<Self> {
        Arc::new(Self {
            name: name.to_string(),
            up: AtomicBool::new(true),
            recoveries: AtomicU64::new(0),
            state: Mutex::new(Since {
                at: Instant::now(),
                why: None,
            }),
        })
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the store is believed reachable.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Records that the store answered.
    pub fn mark_up(&self) {
        if !self.up.swap(true, Ordering::AcqRel) {
            self.recoveries.fetch_add(1, Ordering::AcqRel);
            self.set_since(None);
            tracing::info!(store = %self.name, "store is reachable again");
        }
    }

    /// How many times the store came back after being marked down (a count that only grows).
    pub fn recoveries(&self) -> u64 {
        self.recoveries.load(Ordering::Acquire)
    }

    /// Records that the store is unreachable or broken; `why` is an error kind, never a secret.
    pub fn mark_down(&self, why: &str) {
        if self.up.swap(false, Ordering::AcqRel) {
            self.set_since(Some(why.to_string()));
            tracing::warn!(store = %self.name, why, "store marked down");
        }
    }

    /// How long the store has been in its current state, and why it is down (if it is).
    pub fn since(&self) -> (Duration, Option<String>) {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        (state.at.elapsed(), state.why.clone())
    }

    fn set_since(&self, why: Option<String>) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.at = Instant::now();
        state.why = why;
    }
}

/// Probes `store` every `every` with a cheap request bounded by `timeout`, updating `health`,
/// until the task is dropped.
pub async fn probe(store: Arc<dyn ObjectStore>, health: Arc<StoreHealth>, every: Duration, timeout: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match tokio::time::timeout(timeout, store.list_buckets()).await {
            Ok(Ok(_)) => health.mark_up(),
            Ok(Err(e)) if e.is_outage() => health.mark_down(e.kind()),
            // Any answer (even "access denied") shows the store is there.
            Ok(Err(_)) => health.mark_up(),
            Err(_) => health.mark_down("timeout"),
        }
    }
}
