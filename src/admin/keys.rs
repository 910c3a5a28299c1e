//! The key lifecycle through the admin API (DESIGN §6): list, rotate, disable, enable, destroy,
//! and the two jobs over the stores — the census (how many objects and uploads in each store
//! reference each key version) and the rewrap (moves wrapped data keys to the active version).
//!
//! A rewrap never moves an object's body through the proxy: envelope version 3 binds records
//! and manifests to the object id inside the wrapped key, which a rewrap keeps, so only the
//! `escrow-kek`/`escrow-dek` metadata changes — a server-side copy onto itself with the metadata
//! replaced ([`ObjectStore::replace_metadata_if`]: `CopyObject`, `UploadPartCopy` ranges above
//! 5 GiB, a kernel copy in the directory store), conditional on the ETag read, as the source's
//! and as the destination's: a client write landing meanwhile is never overwritten.
//!
//! Every change to the keyring goes through [`SharedKeyring::update`] (the latest document, under
//! its lock); a concurrent change answers 409 and the caller retries.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use futures::StreamExt;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::AdminContext;
use super::jobs::JobHandle;
use super::routes::Answer;
use crate::backend::{BackendError, ListEntry, ListQuery, Metadata, ObjectStore};
use crate::crypto::envelope::{rewrap_dek, unwrap_dek};
use crate::crypto::format::{ENVELOPE_VERSION, OBJECT_ID_LEN, meta};
use crate::crypto::keyring::{CensusReport, KekState, Keyring, StoreCensus};
use crate::crypto::layout::{MAX_MARKER_LEN, RESERVED_PREFIX, UPLOAD_MARKERS};
use crate::keys::{SharedKeyring, UpdateError, now_rfc3339};

/// Attempts at recording a census in a keyring that another change holds.
const RECORD_ATTEMPTS: u32 = 20;
/// Objects per second a rewrap handles unless told otherwise.
const DEFAULT_REWRAP_RATE: u32 = 500;
/// Highest rate a rewrap may be given.
const MAX_REWRAP_RATE: u32 = 100_000;
/// Objects a job handles at once.
const JOB_CONCURRENCY: usize = 8;
/// Listing page size of the jobs.
const PAGE: i32 = 1000;

/// Records a finished census in the shared keyring (retrying a concurrent change a few times).
async fn record_census(keyring: &Arc<SharedKeyring>, report: CensusReport) -> Result<(), String> {
    for attempt in 1..=RECORD_ATTEMPTS {
        let report = report.clone();
        match keyring
            .update(move |ring| {
                ring.set_census(report);
                Ok(())
            })
            .await
        {
            Ok(_) => return Ok(()),
            Err(UpdateError::Busy) if attempt < RECORD_ATTEMPTS => {
                tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
            }
            Err(e) => return Err(format!("the census could not be recorded in the keyring: {e}")),
        }
    }
    Err("the census could not be recorded in the keyring: it stayed busy".into())
}

/// `GET /admin/keys`: versions, states, creation times, which is active, the latest census.
pub(super) fn list(ctx: &AdminContext) -> Answer {
    let ring = ctx.keyring.load();
    let census = ring.census().cloned();
    let versions: Vec<Value> = ring
        .versions()
        .map(|v| {
            let refs = census.as_ref().map(|c| c.references(v.version));
            json!({ "version": v.version, "state": v.state, "created": v.created, "references": refs })
        })
        .collect();
    Answer::ok(json!({
        "active": ring.active().0,
        "generation": ring.generation(),
        "versions": versions,
        "census": census,
    }))
}

/// `POST /admin/keys/rotate`.
pub(super) async fn rotate(ctx: &AdminContext) -> Answer {
    let result = ctx.keyring.update(|ring| Ok(ring.rotate(&now_rfc3339())?)).await;
    changed(result, |ring, version| {
        tracing::info!(target: "audit", version, generation = ring.generation(), "key rotated");
        json!({ "active": version, "generation": ring.generation() })
    })
}

/// Which lifecycle change a route asks for.
#[derive(Debug, Clone, Copy)]
pub(super) enum Change {
    Disable,
    Enable,
    Destroy,
}

/// `POST /admin/keys/{v}/disable|enable|destroy`. A destroy is refused for the active version,
/// and while the latest complete census shows references to the version (or there is none),
/// unless the body says `{"force": true}`.
pub(super) async fn change(ctx: &AdminContext, version: &str, what: Change, body: &Value) -> Answer {
    let Ok(version) = version.parse::<u32>() else {
        return Answer::error(StatusCode::BAD_REQUEST, "the key version must be a positive integer");
    };
    let force = match body.get("force") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Answer::error(StatusCode::BAD_REQUEST, "force must be true or false"),
    };
    if let Change::Destroy = what {
        let ring = ctx.keyring.load();
        if ring.state(version).is_none() {
            return Answer::error(StatusCode::NOT_FOUND, format!("no key version {version}"));
        }
        if ring.active().0 == version {
            return Answer::error(
                StatusCode::CONFLICT,
                format!("key version {version} is the active version; rotate first"),
            );
        }
        if !force && ring.state(version) != Some(KekState::Destroyed) {
            match ring.census() {
                None => {
                    return Answer::error(
                        StatusCode::CONFLICT,
                        "no census has run: run one (GET /admin/keys/census) or pass force",
                    );
                }
                Some(c) if !c.complete => {
                    return Answer::error(
                        StatusCode::CONFLICT,
                        "the latest census did not count every bucket of every store: run a full one or pass force",
                    );
                }
                Some(c) if c.references(version) > 0 => {
                    return Answer::with(
                        StatusCode::CONFLICT,
                        json!({
                            "error": format!(
                                "the latest census ({}) shows {} objects or uploads under key version {version}: rewrap them first, or pass force",
                                c.job,
                                c.references(version)
                            ),
                            "references": c.references(version),
                        }),
                    );
                }
                Some(_) => {}
            }
        }
    }
    let result = ctx
        .keyring
        .update(move |ring| {
            match what {
                Change::Disable => ring.disable(version)?,
                Change::Enable => ring.enable(version)?,
                Change::Destroy => ring.destroy(version)?,
            }
            Ok(version)
        })
        .await;
    changed(result, |ring, version| {
        tracing::info!(target: "audit", version, change = ?what, force, generation = ring.generation(), "key version changed");
        json!({ "version": version, "state": ring.state(version), "generation": ring.generation() })
    })
}

/// The answer to a keyring change.
fn changed(result: Result<(Arc<Keyring>, u32), UpdateError>, ok: impl FnOnce(&Keyring, u32) -> Value) -> Answer {
    use crate::crypto::keyring::LifecycleError as L;
    match result {
        Ok((ring, version)) => Answer::ok(ok(&ring, version)),
        Err(UpdateError::Busy) => Answer::error(StatusCode::CONFLICT, UpdateError::Busy.to_string()),
        Err(UpdateError::Refused(e @ L::NoSuchVersion(_))) => Answer::error(StatusCode::NOT_FOUND, e.to_string()),
        Err(UpdateError::Refused(e)) => Answer::error(StatusCode::CONFLICT, e.to_string()),
        Err(e @ UpdateError::ReadOnly) => Answer::error(StatusCode::CONFLICT, e.to_string()),
        Err(e) => {
            tracing::error!(error = %e, "keyring change failed");
            Answer::error(StatusCode::INTERNAL_SERVER_ERROR, format!("keyring change failed: {e}"))
        }
    }
}

/// Parameters of a rewrap.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RewrapParams {
    /// One bucket, or every bucket.
    #[serde(default)]
    bucket: Option<String>,
    /// Only keys under this prefix (client keys; uploads in progress of keys under it too).
    #[serde(default)]
    prefix: String,
    /// Only objects under these versions; empty: every version but the active one.
    #[serde(default)]
    from: Vec<u32>,
    /// Count what would change, change nothing.
    #[serde(default)]
    dry_run: bool,
    /// Objects per second.
    #[serde(default)]
    rate: Option<u32>,
}

/// Parameters of a census.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CensusParams {
    /// One bucket, or every bucket (only a census of every bucket allows a destroy).
    #[serde(default)]
    bucket: Option<String>,
}

/// `POST /admin/keys/rewrap`: starts the rewrap job.
pub(super) fn start_rewrap(ctx: &AdminContext, body: Value) -> Answer {
    let params: RewrapParams = match serde_json::from_value(body) {
        Ok(p) => p,
        Err(e) => return Answer::error(StatusCode::BAD_REQUEST, format!("bad rewrap parameters: {e}")),
    };
    let rate = params.rate.unwrap_or(DEFAULT_REWRAP_RATE);
    if rate == 0 || rate > MAX_REWRAP_RATE {
        return Answer::error(
            StatusCode::BAD_REQUEST,
            format!("rate must be 1..={MAX_REWRAP_RATE} objects per second"),
        );
    }
    let ring = ctx.keyring.load();
    if let Some(v) = params.from.iter().find(|v| ring.state(**v).is_none()) {
        return Answer::error(StatusCode::BAD_REQUEST, format!("no key version {v}"));
    }
    if let Some(id) = ctx.jobs.running("rewrap") {
        return Answer::with(
            StatusCode::CONFLICT,
            json!({ "error": "a rewrap is already running", "job": id }),
        );
    }
    let stores = ctx.stores();
    let keyring = Arc::clone(&ctx.keyring);
    let shown = json!(params);
    let id = ctx.jobs.start("rewrap", shown, move |handle| async move {
        let work = Walk {
            handle,
            limiter: Limiter::new(rate),
        };
        work.rewrap(stores, keyring, params).await
    });
    Answer::job(id)
}

/// `GET|POST /admin/keys/census`: starts the census job.
pub(super) fn start_census(ctx: &AdminContext, params: CensusParams) -> Answer {
    if let Some(id) = ctx.jobs.running("census") {
        return Answer::with(
            StatusCode::CONFLICT,
            json!({ "error": "a census is already running", "job": id }),
        );
    }
    let stores = ctx.stores();
    let keyring = Arc::clone(&ctx.keyring);
    let shown = json!(params);
    let (id_tx, id_rx) = tokio::sync::oneshot::channel::<String>();
    let id = ctx.jobs.start("census", shown, move |handle| async move {
        let work = Walk {
            handle,
            limiter: Limiter::new(MAX_REWRAP_RATE),
        };
        let (stores, complete) = work.census(stores, params.bucket.as_deref()).await?;
        let job = id_rx.await.unwrap_or_default();
        let report = CensusReport {
            job,
            finished: now_rfc3339(),
            complete,
            stores,
        };
        record_census(&keyring, report).await
    });
    // The job reads its own id from here before it records its report.
    let _ = id_tx.send(id.clone());
    Answer::job(id)
}

/// Parses a census's query string (`bucket=…`).
pub(super) fn census_params(query: Option<&str>, body: Value) -> Result<CensusParams, Answer> {
    let mut params: CensusParams = serde_json::from_value(body)
        .map_err(|e| Answer::error(StatusCode::BAD_REQUEST, format!("bad census parameters: {e}")))?;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("bucket", b)) if !b.is_empty() => params.bucket = Some(b.to_string()),
            _ => return Err(Answer::error(StatusCode::BAD_REQUEST, "census takes only bucket=NAME")),
        }
    }
    Ok(params)
}

/// At most `rate` items per second, shared by concurrent workers.
struct Limiter {
    every: Duration,
    next: Mutex<Instant>,
}

impl Limiter {
    fn new(rate: u32) -> Self {
        Self {
            every: Duration::from_secs(1) / rate.max(1),
            next: Mutex::new(Instant::now()),
        }
    }

    /// The next free slot at or after `now`, taken.
    fn reserve(&self, now: Instant) -> Instant {
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let slot = (*next).max(now);
        *next = slot + self.every;
        slot
    }

    async fn wait(&self) {
        let slot = self.reserve(Instant::now());
        tokio::time::sleep_until(slot.into()).await;
    }
}

/// What an object is to the key jobs.
enum Found {
    /// An object (or an upload marker) whose data key is wrapped under `version`, with its
    /// envelope version.
    Wrapped { version: u32, envelope: u8, upload: bool },
    /// Not the proxy's wrapped key (a part of an upload, a probe, a foreign object).
    Other,
}

fn classify(key: &str, metadata: &Metadata) -> Found {
    let version = metadata.get(meta::KEK).and_then(|v| v.parse::<u32>().ok());
    let envelope = metadata.get(meta::VERSION).and_then(|v| v.parse::<u8>().ok());
    match (version, envelope, metadata.contains_key(meta::DEK)) {
        (Some(version), Some(envelope), true) => Found::Wrapped {
            version,
            envelope,
            upload: key.starts_with(UPLOAD_MARKERS),
        },
        _ => Found::Other,
    }
}

/// One job's walk over the stores.
struct Walk {
    handle: Arc<JobHandle>,
    limiter: Limiter,
}

impl Walk {
    /// The buckets to walk in `store`.
    async fn buckets(&self, store: &dyn ObjectStore, only: Option<&str>) -> Result<Vec<String>, String> {
        match only {
            Some(b) => Ok(vec![b.to_string()]),
            None => store
                .list_buckets()
                .await
                .map(|bs| bs.into_iter().map(|b| b.name).collect())
                .map_err(|e| format!("{}: listing buckets failed: {e}", store.name())),
        }
    }

    /// Every stored object of `bucket` whose key starts with `prefix`, page by page, with its
    /// metadata, handed to `each` (up to [`JOB_CONCURRENCY`] at once). Stops early when the job
    /// is cancelled.
    async fn each<'a, F, Fut>(
        &'a self,
        store: &'a dyn ObjectStore,
        bucket: &'a str,
        prefix: &str,
        census: bool,
        each: F,
    ) -> Result<(), String>
    where
        F: Fn(ListEntry, Metadata) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let mut query = ListQuery {
            prefix: Some(prefix.to_string()).filter(|p| !p.is_empty()),
            max_keys: PAGE,
            ..ListQuery::default()
        };
        loop {
            if self.handle.is_cancelled() {
                return Ok(());
            }
            let page = store
                .list_objects(bucket, &query)
                .await
                .map_err(|e| format!("{}: listing {bucket} failed: {e}", store.name()))?;
            let each = &each;
            // A walk of client keys (any prefix but the reserved one) leaves the proxy's own
            // objects to the walk of the upload markers.
            let own = prefix.starts_with(RESERVED_PREFIX);
            let objects = page
                .objects
                .into_iter()
                .filter(move |e| own || !e.key.starts_with(RESERVED_PREFIX) || census);
            futures::stream::iter(objects)
                .map(|mut entry| async move {
                    if self.handle.is_cancelled() {
                        return;
                    }
                    self.limiter.wait().await;
                    self.handle.add("scanned", 1);
                    let metadata = match entry.metadata.clone() {
                        Some(m) => m,
                        // The version whose metadata was read is the one a rewrap may replace
                        // (and some stores list no ETag at all).
                        None => match store.head_object(bucket, &entry.key).await {
                            Ok(head) => {
                                entry.etag = head.etag;
                                entry.size = head.size;
                                head.metadata
                            }
                            // Deleted since the listing: nothing to do.
                            Err(BackendError::NoSuchKey) => return,
                            Err(e) => {
                                tracing::warn!(store = store.name(), bucket, error = %e, "key job: head failed");
                                self.handle.add("failed", 1);
                                return;
                            }
                        },
                    };
                    each(entry, metadata).await;
                })
                .buffer_unordered(JOB_CONCURRENCY)
                .collect::<()>()
                .await;
            match page.next_continuation_token {
                Some(token) if page.is_truncated => query.continuation_token = Some(token),
                _ => return Ok(()),
            }
        }
    }

    async fn census(
        &self,
        stores: Vec<Arc<dyn ObjectStore>>,
        only: Option<&str>,
    ) -> Result<(BTreeMap<String, StoreCensus>, bool), String> {
        let mut out = BTreeMap::new();
        for store in stores {
            let counts = Mutex::new(StoreCensus::default());
            let buckets = self.buckets(store.as_ref(), only).await?;
            for bucket in &buckets {
                self.each(store.as_ref(), bucket, "", true, |entry, metadata| {
                    let counts = &counts;
                    async move {
                        if let Found::Wrapped { version, upload, .. } = classify(&entry.key, &metadata) {
                            let mut c = counts.lock().unwrap_or_else(|p| p.into_inner());
                            let map = if upload { &mut c.uploads } else { &mut c.objects };
                            *map.entry(version).or_default() += 1;
                            self.handle.add(if upload { "uploads" } else { "objects" }, 1);
                        }
                    }
                })
                .await?;
            }
            let mut counts = counts.into_inner().unwrap_or_else(|p| p.into_inner());
            counts.buckets = buckets.len() as u64;
            out.insert(store.name().to_string(), counts);
        }
        let failed = self.handle.counter("failed").load(std::sync::atomic::Ordering::Relaxed);
        if failed > 0 {
            return Err(format!("{failed} objects could not be read; the census is incomplete"));
        }
        Ok((out, only.is_none() && !self.handle.is_cancelled()))
    }

    async fn rewrap(
        &self,
        stores: Vec<Arc<dyn ObjectStore>>,
        keyring: Arc<SharedKeyring>,
        params: RewrapParams,
    ) -> Result<(), String> {
        for store in stores {
            for bucket in self.buckets(store.as_ref(), params.bucket.as_deref()).await? {
                // Client objects under the prefix, then every upload marker (filtered by the
                // client key it names).
                for prefix in [params.prefix.as_str(), UPLOAD_MARKERS] {
                    let (store, bucket, keyring, params) = (store.as_ref(), bucket.as_str(), &keyring, &params);
                    self.each(store, bucket, prefix, false, |entry, metadata| async move {
                        let outcome = self
                            .rewrap_one(store, bucket, &keyring.load(), params, &entry, metadata)
                            .await;
                        self.handle.add(outcome, 1);
                        if outcome == "rewrapped" || outcome == "would_rewrap" {
                            self.handle.add("bytes_copied_by_store", entry.size);
                        }
                    })
                    .await?;
                }
            }
        }
        let failed = self.handle.counter("failed").load(std::sync::atomic::Ordering::Relaxed);
        if failed > 0 {
            return Err(format!("{failed} objects could not be rewrapped; run the rewrap again"));
        }
        Ok(())
    }

    /// Rewraps one object; returns the counter it belongs to.
    async fn rewrap_one(
        &self,
        store: &dyn ObjectStore,
        bucket: &str,
        ring: &Keyring,
        params: &RewrapParams,
        entry: &ListEntry,
        mut metadata: Metadata,
    ) -> &'static str {
        let Found::Wrapped {
            version,
            envelope,
            upload,
        } = classify(&entry.key, &metadata)
        else {
            return "skipped";
        };
        let (active, active_kek) = ring.active();
        if version == active {
            return "current";
        }
        if !params.from.is_empty() && !params.from.contains(&version) {
            return "skipped";
        }
        if envelope != ENVELOPE_VERSION {
            // Envelope versions 1 and 2 bind records to the wrapped key itself: their key
            // cannot move without rewriting the body.
            return "old_envelope";
        }
        // The client key the data key is wrapped for: the object's own, or the one an upload's
        // marker names.
        let client_key = if upload {
            match marker_key(store, bucket, &entry.key, &entry.etag).await {
                Some(k) => k,
                None => return "changed",
            }
        } else {
            entry.key.clone()
        };
        if upload && !client_key.starts_with(&params.prefix) {
            return "skipped";
        }
        let kek = match ring.kek(version) {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(store = store.name(), bucket, version, error = %e, "rewrap: cannot unwrap");
                return "failed";
            }
        };
        let Some(wrapped) = metadata.get(meta::DEK).and_then(|v| B64.decode(v).ok()) else {
            return "failed";
        };
        let unwrapped = match unwrap_dek(kek, version, envelope, &wrapped, bucket, &client_key) {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(store = store.name(), bucket, version, error = %e, "rewrap: the wrapped key does not open");
                return "failed";
            }
        };
        let Ok(oid) = <[u8; OBJECT_ID_LEN]>::try_from(unwrapped.binding.as_slice()) else {
            return "failed";
        };
        if params.dry_run {
            return "would_rewrap";
        }
        let new = rewrap_dek(active_kek, active, &unwrapped.dek, bucket, &client_key, &oid);
        metadata.insert(meta::KEK.into(), active.to_string());
        metadata.insert(meta::DEK.into(), B64.encode(&new.bytes));
        match store
            .replace_metadata_if(bucket, &entry.key, entry.size, &entry.etag, metadata)
            .await
        {
            Ok(_) if upload => {
                self.handle.add("uploads_rewrapped", 1);
                "rewrapped"
            }
            Ok(_) => "rewrapped",
            // Overwritten or deleted since listed: the new object is under the active key.
            Err(BackendError::PreconditionFailed | BackendError::NoSuchKey) => "changed",
            Err(e) => {
                tracing::warn!(store = store.name(), bucket, error = %e, "rewrap: server-side copy failed");
                "failed"
            }
        }
    }
}

/// The client key an upload marker names, read from the marker (a small JSON body).
async fn marker_key(store: &dyn ObjectStore, bucket: &str, marker: &str, etag: &str) -> Option<String> {
    let etag = Some(etag).filter(|e| !e.is_empty());
    let got = store.get_object(bucket, marker, None, etag).await.ok()?;
    let body = crate::backend::read_small(got.body, MAX_MARKER_LEN).await.ok()?;
    let value: Value = serde_json::from_slice(&body).ok()?;
    value.get("key")?.as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_parts_and_markers_are_told_apart() {
        let mut m = Metadata::new();
        assert!(matches!(classify("k", &m), Found::Other));
        m.insert(meta::VERSION.into(), "3".into());
        assert!(matches!(classify(".escrow-mpu/p/x/00001", &m), Found::Other));
        m.insert(meta::KEK.into(), "4".into());
        m.insert(meta::DEK.into(), "AAAA".into());
        assert!(matches!(
            classify("k", &m),
            Found::Wrapped {
                version: 4,
                envelope: 3,
                upload: false
            }
        ));
        assert!(matches!(
            classify(".escrow-mpu/u/0123", &m),
            Found::Wrapped { upload: true, .. }
        ));
    }

    #[test]
    fn census_counts_references_in_every_store() {
        let mut a = StoreCensus::default();
        a.objects.insert(1, 3);
        a.uploads.insert(1, 1);
        let mut b = StoreCensus::default();
        b.objects.insert(1, 2);
        b.objects.insert(2, 7);
        let report = CensusReport {
            job: "census-x".into(),
            finished: String::new(),
            complete: true,
            stores: [("primary".to_string(), a), ("mirror".to_string(), b)].into(),
        };
        assert_eq!(report.references(1), 6);
        assert_eq!(report.references(2), 7);
        assert_eq!(report.references(3), 0);
    }

    #[test]
    fn the_limiter_spaces_slots_by_the_rate() {
        let limiter = Limiter::new(1000);
        let now = Instant::now();
        let slots: Vec<Instant> = (0..3).map(|_| limiter.reserve(now)).collect();
        assert_eq!(slots[1] - slots[0], Duration::from_millis(1));
        assert_eq!(slots[2] - slots[1], Duration::from_millis(1));
        // A late caller does not get a slot in the past.
        let later = now + Duration::from_secs(5);
        assert_eq!(limiter.reserve(later), later);
    }
}
