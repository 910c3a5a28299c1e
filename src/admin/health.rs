//! Liveness and readiness as the admin listener reports them: `/ready` is 503 while the proxy
//! drains (SIGTERM) and while the stores it needs are down.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

use crate::backend::health::StoreHealth;

/// Which stores must be up for the proxy to be ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadyRule {
    /// Any one store (a single store, or a mirror whose writes survive one store's outage).
    Any,
    /// Every store (`[mirror] write = "both"`: a write fails unless both stores take it).
    All,
}

/// The proxy's health, shared by the S3 side, the signal handler and the admin listener.
#[derive(Debug)]
pub struct Health {
    draining: AtomicBool,
    stores: Vec<Arc<StoreHealth>>,
    rule: ReadyRule,
}

/// One line of `/ready`'s answer per store.
#[derive(Debug, Serialize)]
pub struct StoreReport {
    /// The store's configured name (`primary`, `mirror`).
    pub name: String,
    /// Whether it is believed reachable.
    pub up: bool,
    /// Seconds in the current state.
    pub for_secs: u64,
    /// Why it is down (an error kind), if it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// `/ready`'s answer.
#[derive(Debug, Serialize)]
pub struct Readiness {
    /// Whether the proxy takes traffic.
    pub ready: bool,
    /// Whether it is shutting down.
    pub draining: bool,
    /// Each store's state.
    pub stores: Vec<StoreReport>,
}

impl Health {
    /// Health over `stores`, ready under `rule`.
    pub fn new(stores: Vec<Arc<StoreHealth>>, rule: ReadyRule) -> Arc<Self> {
        Arc::new(Self {
            draining: AtomicBool::new(false),
            stores,
            rule,
        })
    }

    /// From now on `/ready` answers 503 (the process is shutting down).
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Whether the process is shutting down.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// The stores' health records.
    pub fn stores(&self) -> &[Arc<StoreHealth>] {
        &self.stores
    }

    /// Whether the proxy should receive traffic, and why not.
    pub fn readiness(&self) -> Readiness {
        let stores: Vec<StoreReport> = self
            .stores
            .iter()
            .map(|s| {
                let (since, why) = s.since();
                StoreReport {
                    name: s.name().to_string(),
                    up: s.is_up(),
                    for_secs: since.as_secs(),
                    why,
                }
            })
            .collect();
        let stores_ok = match self.rule {
            ReadyRule::Any => stores.iter().any(|s| s.up),
            ReadyRule::All => stores.iter().all(|s| s.up),
        };
        let draining = self.is_draining();
        Readiness {
            ready: stores_ok && !draining,
            draining,
            stores,
        }
    }
}
