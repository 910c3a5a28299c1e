//! Draining repair records. Every instance runs one drainer ([`spawn_drainer`]): it looks for
//! records in both stores (all buckets, under the reserved prefix), repairs each whose missing
//! store is up, verifies, and only then deletes the record. Any instance drains any record;
//! two instances draining the same record do the same idempotent copy.
//!
//! A repair never guesses and never decrypts:
//! - a write: the newest sealed version (by the write time sealed into the object's record,
//!   read through [`Sealer`](super::Sealer)) is copied over the older one, ciphertext and
//!   metadata as stored; a store whose version is newer than the record's source keeps it;
//! - a delete (a tombstone): the other store's copy is deleted only if it was written before
//!   the delete;
//! - a bucket: created.
//!
//! Failed repairs back off exponentially per record (capped); a permanent refusal by a store
//! marks the object `FAILED` for `x-amz-replication-status` and keeps retrying at the cap.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Serialize;

use super::copy::{copy_between, same_version};
use super::record::{self, Found, Op, RepairRecord};
use super::{Mirror, Side};
use crate::backend::{BackendError, BackendResult};

/// First retry delay of a failed repair; doubles per failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Repairs in flight at once per instance.
const REPAIR_CONCURRENCY: usize = 4;
/// While records are known, the drainer runs this often.
const BUSY_EVERY: Duration = Duration::from_secs(1);
/// Bound on one scan of a store's records (thousands of them after a long outage).
const SCAN_TIMEOUT: Duration = Duration::from_secs(600);
/// Bound on one repair attempt (a hung store is given up on sooner, when its breaker opens).
const ATTEMPT_LIMIT: Duration = Duration::from_secs(120);
/// How often a bounded step checks whether a store's breaker opened.
const BREAKER_POLL: Duration = Duration::from_millis(100);

/// Identifies a record: the store holding it, its bucket, its key.
type RecordId = (Side, String, String);

/// What this instance knows of outstanding repairs: records it wrote and records its drainer
/// found, with their retry state.
#[derive(Default)]
pub struct Backlog {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Per store holding records (primary, mirror): the other store's recovery count
    /// ([`StoreHealth::recoveries`]) when the last complete scan of its records started; `None`
    /// before the first. Records written while the other store was down (by any instance) are
    /// known here only from a scan that started after it came back.
    ///
    /// [`StoreHealth::recoveries`]: crate::backend::health::StoreHealth::recoveries
    scanned: [Option<u64>; 2],
    records: HashMap<RecordId, Entry>,
    by_object: HashMap<(String, String), (u32, bool)>,
    repaired: u64,
    failed_attempts: u64,
}

struct Entry {
    record: RepairRecord,
    /// When this instance learnt of it.
    known_since: Instant,
    attempts: u32,
    next_try: Instant,
    refused: bool,
}

/// The backlog's figures (`mirror status`, `GET /admin/mirror`, metrics).
#[derive(Debug, Clone, Serialize)]
pub struct BacklogSummary {
    /// Records outstanding.
    pub records: usize,
    /// Age of the oldest, in seconds.
    pub oldest_secs: Option<u64>,
    /// Records a store refused permanently (still retried).
    pub refused: usize,
    /// Repairs this instance finished.
    pub repaired: u64,
    /// Repair attempts that failed.
    pub failed_attempts: u64,
}

impl Backlog {
    /// Notes a record this instance just stored in `holder`.
    pub(super) fn noted(&self, holder: Side, record_key: &str, record: &RepairRecord) {
        let mut state = self.lock();
        state.insert(
            (holder, record.bucket.clone(), record_key.to_string()),
            Entry {
                record: record.clone(),
                known_since: Instant::now(),
                attempts: 0,
                next_try: Instant::now(),
                refused: false,
            },
        );
    }

    /// `x-amz-replication-status` of an object: `PENDING` while a record is known, `FAILED`
    /// when a store refused its repair, else `COMPLETED`.
    pub fn status(&self, bucket: &str, key: &str) -> &'static str {
        match self.lock().by_object.get(&(bucket.to_string(), key.to_string())) {
            Some((_, true)) => "FAILED",
            Some(_) => "PENDING",
            None => "COMPLETED",
        }
    }

    /// The outstanding records of `bucket`/`key` this instance knows of.
    pub fn records_for(&self, bucket: &str, key: &str) -> Vec<RepairRecord> {
        let state = self.lock();
        if !state.by_object.contains_key(&(bucket.to_string(), key.to_string())) {
            return Vec::new();
        }
        state
            .records
            .values()
            .filter(|e| e.record.bucket == bucket && e.record.key == key)
            .map(|e| e.record.clone())
            .collect()
    }

    /// Whether a record of `bucket`/`key` is known.
    pub fn pending(&self, bucket: &str, key: &str) -> bool {
        self.lock()
            .by_object
            .contains_key(&(bucket.to_string(), key.to_string()))
    }

    /// Whether the records held by `holder` have been scanned since the other store last came
    /// back (its recovery count is `recoveries`), or since this instance started: before that,
    /// records other instances wrote during the outage are not known here yet.
    pub fn scanned(&self, holder: Side, recoveries: u64) -> bool {
        self.lock().scanned[super::index(holder)].is_some_and(|seen| seen >= recoveries)
    }

    /// The figures.
    pub fn summary(&self) -> BacklogSummary {
        let state = self.lock();
        let now = super::record::now_ms();
        BacklogSummary {
            records: state.records.len(),
            oldest_secs: state
                .records
                .values()
                .map(|e| e.record.at_ms)
                .min()
                .map(|at| now.saturating_sub(at) / 1000),
            refused: state.records.values().filter(|e| e.refused).count(),
            repaired: state.repaired,
            failed_attempts: state.failed_attempts,
        }
    }

    /// Replaces what is known with a fresh scan of `holder` that started at `started`, when the
    /// other store's recovery count was `recoveries` (keeping retry state of records still
    /// there, and records noted since the scan started: it may have listed before they were
    /// stored). Records of the other store are kept.
    pub(super) fn rescanned(&self, holder: Side, found: Vec<Found>, started: Instant, recoveries: u64) {
        let mut state = self.lock();
        state.scanned[super::index(holder)] = Some(recoveries);
        let mut old: HashMap<RecordId, Entry> = HashMap::new();
        let ids: Vec<RecordId> = state.records.keys().filter(|id| id.0 == holder).cloned().collect();
        for id in ids {
            if let Some(entry) = state.remove(&id) {
                old.insert(id, entry);
            }
        }
        for f in found {
            let id = (holder, f.record.bucket.clone(), f.record_key);
            let entry = old.remove(&id).unwrap_or(Entry {
                record: f.record,
                known_since: Instant::now(),
                attempts: 0,
                next_try: Instant::now(),
                refused: false,
            });
            state.insert(id, entry);
        }
        for (id, entry) in old {
            if entry.known_since >= started {
                state.insert(id, entry);
            }
        }
    }

    /// Records due for an attempt whose missing store is up.
    fn due(&self, up: impl Fn(Side) -> bool) -> Vec<(RecordId, RepairRecord)> {
        let state = self.lock();
        let now = Instant::now();
        state
            .records
            .iter()
            .filter(|(_, e)| e.next_try <= now && up(e.record.missing_from))
            .map(|(id, e)| (id.clone(), e.record.clone()))
            .collect()
    }

    fn done(&self, id: &RecordId) {
        let mut state = self.lock();
        if state.remove(id).is_some() {
            state.repaired += 1;
        }
    }

    fn failed(&self, id: &RecordId, refused: bool) {
        let mut state = self.lock();
        state.failed_attempts += 1;
        let Some(entry) = state.records.get_mut(id) else {
            return;
        };
        entry.attempts = entry.attempts.saturating_add(1);
        let backoff = FIRST_BACKOFF
            .saturating_mul(1 << entry.attempts.min(16))
            .min(MAX_BACKOFF);
        entry.next_try = Instant::now() + backoff;
        if refused && !entry.refused {
            entry.refused = true;
            let object = (entry.record.bucket.clone(), entry.record.key.clone());
            if let Some(o) = state.by_object.get_mut(&object) {
                o.1 = true;
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.lock().records.is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl State {
    fn insert(&mut self, id: RecordId, entry: Entry) {
        let object = (entry.record.bucket.clone(), entry.record.key.clone());
        let refused = entry.refused;
        if self.records.insert(id, entry).is_none() {
            let o = self.by_object.entry(object).or_insert((0, false));
            o.0 += 1;
            o.1 |= refused;
        }
    }

    fn remove(&mut self, id: &RecordId) -> Option<Entry> {
        let entry = self.records.remove(id)?;
        let object = (entry.record.bucket.clone(), entry.record.key.clone());
        if let Some(o) = self.by_object.get_mut(&object) {
            o.0 = o.0.saturating_sub(1);
            if o.0 == 0 {
                self.by_object.remove(&object);
            }
        }
        Some(entry)
    }
}

/// Starts this instance's drainer; it stops when the mirror is dropped.
pub fn spawn_drainer(mirror: &Arc<Mirror>) -> tokio::task::JoinHandle<()> {
    let weak = Arc::downgrade(mirror);
    tokio::spawn(async move { drain_loop(weak).await })
}

async fn drain_loop(weak: Weak<Mirror>) {
    let mut last_scan: Option<Instant> = None;
    loop {
        let Some(mirror) = weak.upgrade() else { return };
        let every = mirror.settings.drain_every;
        let recoveries = |side: Side| mirror.health(side.other()).recoveries();
        // A store that came back since the last scan: scan the other's records now.
        let stale = [Side::Primary, Side::Mirror]
            .into_iter()
            .any(|side| mirror.is_up(side) && !mirror.backlog.scanned(side, recoveries(side)));
        if stale || last_scan.is_none_or(|t| t.elapsed() >= every) {
            for side in [Side::Primary, Side::Mirror] {
                if mirror.is_up(side) {
                    // Bounded in time only: a scan given up on whenever the breaker flickers
                    // would never finish under load, and until it has, reads of this instance
                    // look records up per key. Its failures are left to the probe to judge.
                    let (started, seen) = (Instant::now(), recoveries(side));
                    match tokio::time::timeout(SCAN_TIMEOUT, scan_store(&mirror, side)).await {
                        Ok(Ok(found)) => mirror.backlog.rescanned(side, found, started, seen),
                        Ok(Err(e)) => {
                            tracing::warn!(store = side.name(), error = %e, "mirror: scan for repair records failed")
                        }
                        Err(_) => tracing::warn!(store = side.name(), "mirror: scan for repair records timed out"),
                    }
                }
            }
            last_scan = Some(Instant::now());
        }
        drain_due(&mirror).await;
        publish(&mirror);
        let pause = if mirror.backlog.is_empty() { every } else { BUSY_EVERY };
        let wake = Arc::clone(&mirror.wake);
        drop(mirror);
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = wake.notified() => {}
        }
    }
}

/// `fut`, given up on after `limit` or as soon as the breaker of one of `stores` opens (a hung
/// store must not stall the drainer: SIGSTOP leaves connections open and silent).
async fn bounded<T>(
    mirror: &Mirror,
    stores: impl IntoIterator<Item = Side>,
    limit: Duration,
    fut: impl Future<Output = BackendResult<T>>,
) -> BackendResult<T> {
    let watched: Vec<Side> = stores.into_iter().collect();
    let down = async {
        loop {
            if let Some(side) = watched.iter().copied().find(|s| !mirror.is_up(*s)) {
                return side;
            }
            tokio::time::sleep(BREAKER_POLL).await;
        }
    };
    tokio::select! {
        result = tokio::time::timeout(limit, fut) => result.unwrap_or_else(|_| Err(BackendError::Upstream {
            store: "mirror-pair".into(),
            message: format!("a repair step took longer than {limit:?}"),
            retryable: true,
        })),
        side = down => Err(BackendError::Upstream {
            store: side.name().into(),
            message: "store marked down during a repair".into(),
            retryable: true,
        }),
    }
}

/// Every record in every bucket of the store on `side`.
pub async fn scan_store(mirror: &Mirror, side: Side) -> BackendResult<Vec<Found>> {
    let store = mirror.store(side);
    let mut found = Vec::new();
    for bucket in store.list_buckets().await? {
        match record::scan(store.as_ref(), mirror.sealer.as_ref(), &bucket.name).await {
            Ok(records) => found.extend(records),
            // A bucket deleted between the two calls.
            Err(BackendError::NoSuchBucket) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(found)
}

/// Attempts every due record: the records of one object one after the other, oldest first,
/// under the object's repair lock; different objects a few at a time.
pub async fn drain_due(mirror: &Mirror) {
    let mut by_object: BTreeMap<(String, String), Vec<(RecordId, RepairRecord)>> = BTreeMap::new();
    for (id, record) in mirror.backlog.due(|side| mirror.is_up(side)) {
        by_object
            .entry((record.bucket.clone(), record.key.clone()))
            .or_default()
            .push((id, record));
    }
    futures::stream::iter(by_object)
        .for_each_concurrent(REPAIR_CONCURRENCY, |((bucket, key), mut records)| async move {
            records.sort_by_key(|(_, r)| r.at_ms);
            let _alone = mirror.locks.repair(&bucket, &key).await;
            for (id, record) in records {
                attempt(mirror, id, record).await;
            }
        })
        .await;
}

/// One attempt at one record, bounded in time; the record is deleted once its repair holds.
async fn attempt(mirror: &Mirror, id: RecordId, record: RepairRecord) {
    let holder = id.0;
    let outcome = bounded(mirror, [holder, record.missing_from], ATTEMPT_LIMIT, async {
        repair(mirror, holder, &record).await?;
        mirror.store(holder).delete_object(&id.1, &id.2).await
    })
    .await;
    match outcome {
        Ok(()) => {
            metrics::counter!("escrow_mirror_repairs_total", "outcome" => "done").increment(1);
            tracing::info!(bucket = %record.bucket, op = ?record.op, to = record.missing_from.name(), "mirror: repaired");
            mirror.backlog.done(&id);
        }
        Err(e) => {
            metrics::counter!("escrow_mirror_repairs_total", "outcome" => "failed").increment(1);
            tracing::warn!(bucket = %record.bucket, op = ?record.op, to = record.missing_from.name(), error = %e, "mirror: repair failed; will retry");
            mirror.backlog.failed(&id, !e.is_outage());
        }
    }
    publish(mirror);
}

/// Repairs one record held by `holder`: afterwards the missing store agrees with the newest
/// sealed version.
pub async fn repair(mirror: &Mirror, holder: Side, record: &RepairRecord) -> BackendResult<()> {
    let (src, dst) = (mirror.store(holder), mirror.store(record.missing_from));
    let (bucket, key) = (record.bucket.as_str(), record.key.as_str());
    let sealer = mirror.sealer.as_ref();
    let in_dst = |result: BackendResult<Option<u64>>| match result {
        Err(BackendError::NoSuchBucket) => Ok(None),
        other => other,
    };
    match record.op {
        Op::CreateBucket => ensure_bucket(dst, bucket).await,
        Op::Put => {
            let Some(src_ms) = sealer.written_ms(src, bucket, key).await? else {
                // The source no longer has it: deleted or replaced since, with its own record.
                return Ok(());
            };
            if let Some(dst_ms) = in_dst(sealer.written_ms(dst, bucket, key).await)? {
                if dst_ms > src_ms {
                    return Ok(());
                }
                if dst_ms == src_ms
                    && same_version(
                        &src.head_object(bucket, key).await?,
                        &dst.head_object(bucket, key).await?,
                    )
                {
                    return Ok(());
                }
            }
            ensure_bucket(dst, bucket).await?;
            let copied = copy_between(src, dst, bucket, key).await?;
            // The source may have changed while the copy ran (another instance's write or
            // delete): what was copied must still be the source's version, else the copy would
            // undo that change in the other store.
            match src.head_object(bucket, key).await {
                Ok(now) if same_version(&now, &copied) => Ok(()),
                Ok(_) => Err(changed_during_repair(src.name())),
                Err(BackendError::NoSuchKey) => {
                    // Deleted since: take back what was copied, unless it was replaced too.
                    match dst.head_object(bucket, key).await {
                        Ok(there) if same_version(&there, &copied) => dst.delete_object(bucket, key).await,
                        Ok(_) | Err(BackendError::NoSuchKey) => Ok(()),
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            }
        }
        Op::Delete => match in_dst(sealer.written_ms(dst, bucket, key).await)? {
            None => Ok(()),
            Some(dst_ms) if dst_ms != 0 && dst_ms > record.at_ms => Ok(()),
            Some(_) => dst.delete_object(bucket, key).await,
        },
    }
}

fn changed_during_repair(store: &str) -> BackendError {
    BackendError::Upstream {
        store: store.to_string(),
        message: "the source changed while it was copied; the repair will run again".into(),
        retryable: true,
    }
}

async fn ensure_bucket(store: &Arc<dyn crate::backend::ObjectStore>, bucket: &str) -> BackendResult<()> {
    match store.head_bucket(bucket).await {
        Ok(()) => Ok(()),
        Err(BackendError::NoSuchBucket) => match store.create_bucket(bucket).await {
            Ok(()) | Err(BackendError::BucketAlreadyExists { .. }) => Ok(()),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// The backlog's gauges, after every attempt and every round (a scrape of `/metrics` also
/// sets them, and the stores' `escrow_store_up` from the breakers, fresh).
fn publish(mirror: &Mirror) {
    let summary = mirror.backlog.summary();
    metrics::gauge!("escrow_mirror_backlog").set(summary.records as f64);
    metrics::gauge!("escrow_mirror_backlog_oldest_seconds").set(summary.oldest_secs.unwrap_or(0) as f64);
}
