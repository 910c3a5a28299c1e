//! Prometheus metrics: one recorder per process (the `metrics` facade), rendered as text on the
//! admin listener's `/metrics`. Code anywhere in the crate records with the `metrics` macros;
//! the names are described here, in one place.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process's recorder on first use and returns the handle that renders it.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let handle = match PrometheusBuilder::new().install_recorder() {
            Ok(handle) => handle,
            // Another recorder is installed (an embedding program's): render an empty set
            // rather than fail.
            Err(e) => {
                tracing::warn!(error = %e, "metrics: a recorder is already installed; /metrics stays empty");
                PrometheusBuilder::new().build_recorder().handle()
            }
        };
        describe();
        handle
    })
}

fn describe() {
    use metrics::{describe_counter, describe_gauge};
    describe_counter!(
        "escrow_admin_requests_total",
        "Admin API requests by route class and status."
    );
    describe_counter!(
        "escrow_admin_auth_failures_total",
        "Admin requests refused for a missing or wrong token."
    );
    describe_counter!(
        "escrow_s3_requests_total",
        "S3 requests answered, by operation (\"-\" before authentication) and status."
    );
    describe_counter!(
        "escrow_s3_bytes_total",
        "S3 body bytes, by direction (in: request bodies read, out: response bodies sent)."
    );
    describe_gauge!(
        "escrow_store_up",
        "1 when the store is believed reachable, else 0 (circuit breaker)."
    );
    describe_counter!(
        "escrow_keyring_reloads_total",
        "Newer keyrings installed (a change made here or seen at home)."
    );
    describe_gauge!("escrow_keyring_generation", "Generation of the keyring in use.");
    describe_counter!("escrow_mirror_writes_total", "Writes per store and outcome.");
    describe_gauge!("escrow_mirror_backlog", "Repair records outstanding (as last counted).");
    describe_gauge!(
        "escrow_mirror_backlog_oldest_seconds",
        "Age of the oldest outstanding repair record."
    );
    describe_counter!("escrow_mirror_repairs_total", "Repairs by outcome.");
    describe_counter!(
        "escrow_mirror_failovers_total",
        "Reads served by the second store, by reason."
    );
    describe_counter!("escrow_mirror_reconcile_runs_total", "Reconcile passes started.");
    describe_counter!(
        "escrow_mirror_reconcile_total",
        "Differences reconcile found, by finding (missing, stale, rollback, extra, undecided, error) and action (copied, deleted, reported, skipped, failed)."
    );
}
