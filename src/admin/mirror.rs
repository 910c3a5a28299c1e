//! The mirror's admin routes: `GET /admin/mirror` (settings, each store's breaker, this
//! instance's repair backlog, the running reconcile job) and `POST /admin/mirror/reconcile`
//! (starts a reconcile pass as a job; one at a time). Also the mirror's gauges, set at every
//! `/metrics` scrape so they are current even while nothing happens.

use std::sync::{Arc, Mutex};

use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::AdminContext;
use super::jobs::JobHandle;
use super::routes::Answer;
use crate::mirror::reconcile::{self, Counters, Finding, Observer, Options};
use crate::mirror::{Mirror, ReadMode, Side, WriteMode};

/// The job kind of a reconcile pass.
const KIND: &str = "reconcile";

/// Held while checking for a running reconcile job and starting one, so two requests cannot
/// both start one.
static STARTING: Mutex<()> = Mutex::new(());

/// `POST /admin/mirror/reconcile`'s body.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// Only this bucket.
    bucket: Option<String>,
    /// Report only.
    #[serde(default)]
    dry_run: bool,
    /// Only keys after this one (needs `bucket`).
    start_after: Option<String>,
}

fn no_mirror() -> Answer {
    Answer::error(StatusCode::NOT_FOUND, "this proxy has no [mirror]")
}

/// `GET /admin/mirror`.
pub(super) fn status(ctx: &AdminContext) -> Answer {
    let Some(pair) = &ctx.pair else {
        return no_mirror();
    };
    let settings = pair.settings();
    let stores: Vec<_> = [Side::Primary, Side::Mirror]
        .into_iter()
        .map(|side| {
            let health = pair.health(side);
            let (since, why) = health.since();
            json!({
                "name": side.name(),
                "up": health.is_up(),
                "breaker": if health.is_up() { "closed" } else { "open" },
                "for_secs": since.as_secs(),
                "why": why,
            })
        })
        .collect();
    Answer::ok(json!({
        "settings": {
            "write": match settings.write {
                WriteMode::Sync => "sync",
                WriteMode::Async => "async",
                WriteMode::Both => "both",
            },
            "read": match settings.read {
                ReadMode::Primary => "primary",
                ReadMode::Mirror => "mirror",
            },
            "first_byte_timeout_ms": u64::try_from(settings.first_byte_timeout.as_millis()).unwrap_or(u64::MAX),
            "drain_every_secs": settings.drain_every.as_secs(),
        },
        "stores": stores,
        "backlog": pair.backlog().summary(),
        "reconcile": ctx.jobs.running(KIND),
    }))
}

/// `POST /admin/mirror/reconcile` with `{"bucket": …, "dry_run": …, "start_after": …}` (all
/// optional): 202 with the job's id; 409 while a reconcile job runs.
pub(super) async fn start_reconcile(ctx: &AdminContext, body: serde_json::Value) -> Answer {
    let Some(pair) = &ctx.pair else {
        return no_mirror();
    };
    let params: Params = match serde_json::from_value(body) {
        Ok(params) => params,
        Err(e) => return Answer::error(StatusCode::BAD_REQUEST, format!("bad parameters: {e}")),
    };
    if params.start_after.is_some() && params.bucket.is_none() {
        return Answer::error(StatusCode::BAD_REQUEST, "start_after needs bucket");
    }
    if let Some(bucket) = &params.bucket {
        if bucket.is_empty() || bucket.len() > 63 {
            return Answer::error(StatusCode::BAD_REQUEST, "bucket: not a bucket name");
        }
        if !in_either_store(pair, bucket).await {
            return Answer::error(StatusCode::NOT_FOUND, "no such bucket in either store");
        }
    }
    let _starting = STARTING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(running) = ctx.jobs.running(KIND) {
        return Answer::with(
            StatusCode::CONFLICT,
            json!({ "error": "a reconcile job is already running", "job": running }),
        );
    }
    let shown = json!(params);
    let options = Options {
        bucket: params.bucket,
        dry_run: params.dry_run,
        start_after: params.start_after,
    };
    let pair = Arc::clone(pair);
    let id = ctx.jobs.start(KIND, shown, move |handle| async move {
        let counters = Counters::with(|name| handle.counter(name));
        // The counters exist (at zero) from the start, so progress shows every one of them.
        let observer = JobObserver { handle };
        match reconcile::run(&pair, &options, &counters, &observer).await {
            Ok(summary) if summary.errors > 0 => Err(format!(
                "{} errors remain; run it again once the stores answer",
                summary.errors
            )),
            Ok(_) => Ok(()),
            Err(e) => Err(format!("cannot list the buckets: {e}")),
        }
    });
    Answer::job(id)
}

/// Whether either store answers that it has `bucket` (a store that fails counts as having it:
/// the job reports the failure).
async fn in_either_store(pair: &Mirror, bucket: &str) -> bool {
    let (a, b) = tokio::join!(
        pair.store(Side::Primary).head_bucket(bucket),
        pair.store(Side::Mirror).head_bucket(bucket)
    );
    let missing = |r: &crate::backend::BackendResult<()>| matches!(r, Err(crate::backend::BackendError::NoSuchBucket));
    !(missing(&a) && missing(&b))
}

/// A reconcile job's view of its pass: findings go to the log (without keys), cancellation
/// comes from the job registry.
struct JobObserver {
    handle: Arc<JobHandle>,
}

impl Observer for JobObserver {
    fn finding(&self, f: &Finding) {
        tracing::info!(bucket = %f.bucket, finding = f.kind.name(), store = f.store.name(), action = f.action.name(), "reconcile");
    }

    fn cancelled(&self) -> bool {
        self.handle.is_cancelled()
    }
}

/// Sets the stores' and the mirror's gauges from the current state, and makes the mirror's
/// counters exist at zero, so a scrape shows every series even before anything happened.
pub(super) fn publish(ctx: &AdminContext) {
    for store in ctx.health.stores() {
        let up = if store.is_up() { 1.0 } else { 0.0 };
        metrics::gauge!("escrow_store_up", "store" => store.name().to_string()).set(up);
    }
    let Some(pair) = &ctx.pair else {
        return;
    };
    let summary = pair.backlog().summary();
    metrics::gauge!("escrow_mirror_backlog").set(summary.records as f64);
    metrics::gauge!("escrow_mirror_backlog_oldest_seconds").set(summary.oldest_secs.unwrap_or(0) as f64);
    for side in [Side::Primary, Side::Mirror] {
        metrics::counter!("escrow_mirror_writes_total", "store" => side.name(), "outcome" => "ok").increment(0);
        metrics::counter!("escrow_mirror_failovers_total", "reason" => "unavailable", "to" => side.name()).increment(0);
    }
    for outcome in ["done", "failed"] {
        metrics::counter!("escrow_mirror_repairs_total", "outcome" => outcome).increment(0);
    }
    for dry_run in ["true", "false"] {
        metrics::counter!("escrow_mirror_reconcile_runs_total", "dry_run" => dry_run).increment(0);
    }
}
