//! Reconcile: one pass over both stores (one bucket or all) that finds and fixes what the
//! repair records do not cover, such as objects changed or deleted behind the proxy's back, a
//! store restored from an old backup, or records lost with a store (DESIGN §5,
//! `escrow-proxy mirror reconcile`, `POST /admin/mirror/reconcile`).
//!
//! The pass walks both stores' listings in key order at once (a merge of two paged listings: at
//! most one page per store in memory, plus the few keys being compared), skipping the reserved
//! prefix `.escrow-mpu/` (upload state and repair records). For each key:
//!
//! | primary | mirror | finding | fix |
//! |---|---|---|---|
//! | same version | same version | agrees | — |
//! | present | missing (or the reverse) | `missing` | copy to the store that lacks it |
//! | present | missing, and a tombstone newer than the object | `extra` | delete it |
//! | newer | older | `stale` | copy the primary's version over the mirror's |
//! | older | newer | `stale` and `rollback` | copy the mirror's version over the primary's |
//!
//! Two copies are the same version when their stored size and envelope metadata agree (the
//! wrapped data key alone is unique per write); only when they differ is the write time sealed
//! into each copy read ([`Sealer::written_ms`](super::Sealer::written_ms)), and the newer one
//! wins. A `rollback` is a primary serving an older sealed version than the mirror holds: what
//! `read = "mirror"` protects readers from, and worth an operator's attention. A delete is
//! propagated only when a tombstone (a MACed repair record of a delete, see [`record`]) proves
//! it happened after the copy that remains was written; a key missing from one store without a
//! tombstone is copied back, never deleted from the other.
//!
//! Copies move ciphertext and metadata store to store ([`copy_between`]), never decrypted, and
//! are verified; they are idempotent, so a pass is safe while proxies serve and a rerun simply
//! finds less to do (resumable; `start_after` skips keys already done). A dry run reports only.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde::Serialize;

use super::copy::{copy_between, same_version};
use super::record::{self, Op};
use super::{Mirror, Side};
use crate::backend::{BackendError, BackendResult, ListEntry, ListQuery, ObjectHead, ObjectStore};
use crate::crypto::layout::{RESERVED_PREFIX, is_reserved};

/// Keys compared (and copied) at once.
const CONCURRENCY: usize = 8;
/// Copies of one key before a pass leaves it to the next (it keeps being overwritten).
const COPY_TRIES: usize = 3;
/// Keys per listing page (small in unit tests, so they cross pages cheaply).
#[cfg(not(test))]
const PAGE_KEYS: i32 = 1000;
#[cfg(test)]
const PAGE_KEYS: i32 = 16;

/// What a pass covers and whether it changes anything.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Options {
    /// Only this bucket; `None`: every bucket either store has.
    pub bucket: Option<String>,
    /// Report only.
    pub dry_run: bool,
    /// Only keys after this one (to resume a pass over one bucket).
    pub start_after: Option<String>,
}

/// Names of the pass's counters, in the order a summary shows them.
pub const COUNTERS: [&str; 9] = [
    "scanned", "missing", "stale", "extra", "rollback", "copied", "deleted", "skipped", "errors",
];

/// The pass's live counters; shared with whoever shows progress (a progress bar, a job).
#[derive(Debug, Clone)]
pub struct Counters {
    /// Keys looked at.
    pub scanned: Arc<AtomicU64>,
    /// Keys one store lacks (and no tombstone explains).
    pub missing: Arc<AtomicU64>,
    /// Keys whose copies differ.
    pub stale: Arc<AtomicU64>,
    /// Keys a tombstone says should be gone from the store that still has them.
    pub extra: Arc<AtomicU64>,
    /// Stale keys where the primary holds the older version.
    pub rollback: Arc<AtomicU64>,
    /// Copies made.
    pub copied: Arc<AtomicU64>,
    /// Deletes made.
    pub deleted: Arc<AtomicU64>,
    /// Keys that changed or vanished while being compared (left to the next pass).
    pub skipped: Arc<AtomicU64>,
    /// Failures: a listing, a compare or a fix that failed, or two copies that cannot be ordered.
    pub errors: Arc<AtomicU64>,
}

impl Default for Counters {
    fn default() -> Self {
        Self::with(|_| Arc::new(AtomicU64::new(0)))
    }
}

impl Counters {
    /// Counters made by `make` from their names ([`COUNTERS`]), e.g. a job's own counters.
    pub fn with(mut make: impl FnMut(&'static str) -> Arc<AtomicU64>) -> Self {
        Self {
            scanned: make("scanned"),
            missing: make("missing"),
            stale: make("stale"),
            extra: make("extra"),
            rollback: make("rollback"),
            copied: make("copied"),
            deleted: make("deleted"),
            skipped: make("skipped"),
            errors: make("errors"),
        }
    }

    /// The figures now.
    pub fn summary(&self) -> Summary {
        let get = |c: &Arc<AtomicU64>| c.load(Ordering::Relaxed);
        Summary {
            scanned: get(&self.scanned),
            missing: get(&self.missing),
            stale: get(&self.stale),
            extra: get(&self.extra),
            rollback: get(&self.rollback),
            copied: get(&self.copied),
            deleted: get(&self.deleted),
            skipped: get(&self.skipped),
            errors: get(&self.errors),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// A pass's figures (see [`Counters`] for each one's meaning).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[allow(missing_docs)] // Each field is documented on `Counters`.
pub struct Summary {
    pub scanned: u64,
    pub missing: u64,
    pub stale: u64,
    pub extra: u64,
    pub rollback: u64,
    pub copied: u64,
    pub deleted: u64,
    pub skipped: u64,
    pub errors: u64,
}

impl Summary {
    /// `(name, value)` in [`COUNTERS`] order.
    pub fn rows(&self) -> [(&'static str, u64); 9] {
        [
            ("scanned", self.scanned),
            ("missing", self.missing),
            ("stale", self.stale),
            ("extra", self.extra),
            ("rollback", self.rollback),
            ("copied", self.copied),
            ("deleted", self.deleted),
            ("skipped", self.skipped),
            ("errors", self.errors),
        ]
    }
}

/// What a difference is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The key is missing from `Finding::store`.
    Missing,
    /// `Finding::store` holds an older version than the other store (the mirror).
    Stale,
    /// `Finding::store` (the primary) holds an older version than the mirror.
    Rollback,
    /// `Finding::store` still has a key a tombstone says was deleted after it was written.
    Extra,
    /// The copies differ and neither carries a newer sealed write time: left alone.
    Undecided,
}

impl Kind {
    /// The word used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Stale => "stale",
            Self::Rollback => "rollback",
            Self::Extra => "extra",
            Self::Undecided => "undecided",
        }
    }
}

/// What was done about a difference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Copied from the other store.
    Copied,
    /// Deleted.
    Deleted,
    /// Dry run: would copy.
    WouldCopy,
    /// Dry run: would delete.
    WouldDelete,
    /// Nothing: the key changed or vanished during the compare (the next pass sees it again).
    Skipped,
    /// The fix (or the compare) failed: the message.
    Failed(String),
}

impl Action {
    /// The word used in reports.
    pub fn name(&self) -> &str {
        match self {
            Self::Copied => "copied",
            Self::Deleted => "deleted",
            Self::WouldCopy => "would copy",
            Self::WouldDelete => "would delete",
            Self::Skipped => "skipped",
            Self::Failed(_) => "failed",
        }
    }
}

/// One difference found.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The bucket.
    pub bucket: String,
    /// The key.
    pub key: String,
    /// What differs.
    pub kind: Kind,
    /// The store the fix changes (the one that lacks the key, holds the older version, or still
    /// has a deleted key).
    pub store: Side,
    /// What was done.
    pub action: Action,
}

/// Where a pass reports: each finding, and whether to stop early.
pub trait Observer: Send + Sync {
    /// A difference was found (and perhaps fixed).
    fn finding(&self, finding: &Finding);
    /// Whether the pass should stop (checked between keys).
    fn cancelled(&self) -> bool {
        false
    }
}

/// Runs one pass over `mirror`'s stores as `options` say, counting into `counters` and
/// reporting each difference to `observer`. Fails only when the buckets cannot be listed;
/// everything after that is counted (`errors`) and the pass goes on.
pub async fn run(
    mirror: &Mirror,
    options: &Options,
    counters: &Counters,
    observer: &dyn Observer,
) -> BackendResult<Summary> {
    metrics::counter!("escrow_mirror_reconcile_runs_total", "dry_run" => if options.dry_run { "true" } else { "false" })
        .increment(1);
    let buckets = match &options.bucket {
        Some(bucket) => vec![bucket.clone()],
        None => all_buckets(mirror).await?,
    };
    for bucket in buckets {
        if observer.cancelled() {
            break;
        }
        let pass = Pass {
            mirror,
            bucket: &bucket,
            options,
            counters,
            observer,
        };
        if let Err(e) = pass.walk().await {
            tracing::warn!(bucket = %bucket, error = %e, "reconcile: listing a bucket failed; it was not finished");
            bump(&counters.errors);
        }
    }
    Ok(counters.summary())
}

/// Every bucket either store has, in order.
async fn all_buckets(mirror: &Mirror) -> BackendResult<Vec<String>> {
    let (a, b) = tokio::join!(
        mirror.store(Side::Primary).list_buckets(),
        mirror.store(Side::Mirror).list_buckets()
    );
    let mut names: Vec<String> = a?.into_iter().chain(b?).map(|b| b.name).collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// One store's listing of one bucket, page by page, without the reserved prefix.
struct Lister<'a> {
    store: &'a Arc<dyn ObjectStore>,
    bucket: &'a str,
    page: VecDeque<ListEntry>,
    start_after: Option<String>,
    token: Option<String>,
    done: bool,
}

impl<'a> Lister<'a> {
    fn new(store: &'a Arc<dyn ObjectStore>, bucket: &'a str, start_after: Option<String>) -> Self {
        Self {
            store,
            bucket,
            page: VecDeque::new(),
            start_after,
            token: None,
            done: false,
        }
    }

    /// The next key, listing the next page when needed.
    async fn peek(&mut self) -> BackendResult<Option<&str>> {
        loop {
            if let Some(front) = self.page.front() {
                if !is_reserved(&front.key) {
                    break;
                }
                // Jump over the whole reserved prefix instead of paging through it.
                self.page.clear();
                self.token = None;
                self.done = false;
                self.start_after = Some(format!("{RESERVED_PREFIX}{}", char::MAX));
                continue;
            }
            if self.done {
                return Ok(None);
            }
            let query = ListQuery {
                start_after: self.start_after.clone(),
                continuation_token: self.token.clone(),
                max_keys: PAGE_KEYS,
                ..ListQuery::default()
            };
            let page = match self.store.list_objects(self.bucket, &query).await {
                Ok(page) => page,
                // The bucket exists only in the other store: an empty listing here.
                Err(BackendError::NoSuchBucket) => {
                    self.done = true;
                    continue;
                }
                Err(e) => return Err(e),
            };
            match page.next_continuation_token {
                Some(token) if page.is_truncated => self.token = Some(token),
                _ => self.done = true,
            }
            self.page.extend(page.objects);
        }
        Ok(self.page.front().map(|e| e.key.as_str()))
    }

    fn pop(&mut self) -> Option<ListEntry> {
        self.page.pop_front()
    }
}

/// One bucket's pass.
struct Pass<'a> {
    mirror: &'a Mirror,
    bucket: &'a str,
    options: &'a Options,
    counters: &'a Counters,
    observer: &'a dyn Observer,
}

impl Pass<'_> {
    /// The merge-walk: both listings in key order, a few keys compared at once.
    async fn walk(&self) -> BackendResult<()> {
        let start = self.options.start_after.clone();
        let mut primary = Lister::new(self.mirror.store(Side::Primary), self.bucket, start.clone());
        let mut mirror = Lister::new(self.mirror.store(Side::Mirror), self.bucket, start);
        let mut busy = FuturesUnordered::new();
        let result = loop {
            if self.observer.cancelled() {
                break Ok(());
            }
            let a = match primary.peek().await {
                Ok(a) => a.map(str::to_string),
                Err(e) => break Err(e),
            };
            let b = match mirror.peek().await {
                Ok(b) => b.map(str::to_string),
                Err(e) => break Err(e),
            };
            let pair = match (a, b) {
                (None, None) => break Ok(()),
                (Some(a), Some(b)) if a == b => (primary.pop(), mirror.pop()),
                (Some(a), Some(b)) if a < b => (primary.pop(), None),
                (Some(_), None) => (primary.pop(), None),
                (_, Some(_)) => (None, mirror.pop()),
            };
            busy.push(self.check(pair));
            if busy.len() >= CONCURRENCY {
                busy.next().await;
            }
        };
        while busy.next().await.is_some() {}
        result
    }

    /// Compares (and fixes) one key, given what each store listed for it.
    async fn check(&self, pair: (Option<ListEntry>, Option<ListEntry>)) {
        bump(&self.counters.scanned);
        let found = match pair {
            (Some(p), Some(m)) => self.check_both(p, m).await,
            (Some(p), None) => self.check_one(p.key, Side::Primary).await,
            (None, Some(m)) => self.check_one(m.key, Side::Mirror).await,
            (None, None) => Ok(None),
        };
        match found {
            Ok(Some(finding)) => self.report(finding),
            Ok(None) => {}
            Err((key, e)) => {
                tracing::warn!(bucket = %self.bucket, error = %e, "reconcile: comparing a key failed");
                bump(&self.counters.errors);
                metrics::counter!("escrow_mirror_reconcile_total", "finding" => "error", "action" => "failed")
                    .increment(1);
                self.observer.finding(&Finding {
                    bucket: self.bucket.to_string(),
                    key,
                    kind: Kind::Undecided,
                    store: Side::Primary,
                    action: Action::Failed(e.to_string()),
                });
            }
        }
    }

    fn report(&self, finding: Finding) {
        let c = self.counters;
        match finding.kind {
            // Changed while being compared: not a difference (yet), only skipped.
            _ if finding.action == Action::Skipped => {}
            Kind::Missing => bump(&c.missing),
            Kind::Stale => bump(&c.stale),
            Kind::Rollback => {
                bump(&c.stale);
                bump(&c.rollback);
            }
            Kind::Extra => bump(&c.extra),
            Kind::Undecided => bump(&c.errors),
        }
        match &finding.action {
            Action::Copied => bump(&c.copied),
            Action::Deleted => bump(&c.deleted),
            Action::Skipped => bump(&c.skipped),
            Action::Failed(_) if finding.kind != Kind::Undecided => bump(&c.errors),
            _ => {}
        }
        if finding.kind == Kind::Rollback {
            tracing::warn!(bucket = %finding.bucket, "reconcile: the primary holds an older version than the mirror (rollback)");
        }
        metrics::counter!("escrow_mirror_reconcile_total", "finding" => finding.kind.name(), "action" => action_label(&finding.action))
            .increment(1);
        self.observer.finding(&finding);
    }

    /// Both stores list the key: the same version, or which is newer.
    async fn check_both(&self, p: ListEntry, m: ListEntry) -> Result<Option<Finding>, (String, BackendError)> {
        let key = p.key.clone();
        let fail = |e| (key.clone(), e);
        if p.size == m.size {
            let (hp, hm) = tokio::join!(self.head(Side::Primary, p), self.head(Side::Mirror, m));
            match (hp.map_err(fail)?, hm.map_err(fail)?) {
                (Some(hp), Some(hm)) if same_version(&hp, &hm) => return Ok(None),
                (Some(_), Some(_)) => {}
                // One vanished since the listing: a write or delete is in flight.
                _ => return Ok(Some(self.finding(&key, Kind::Missing, Side::Primary, Action::Skipped))),
            }
        }
        let sealer = self.mirror.sealer();
        let (tp, tm) = tokio::join!(
            sealer.written_ms(self.mirror.store(Side::Primary), self.bucket, &key),
            sealer.written_ms(self.mirror.store(Side::Mirror), self.bucket, &key)
        );
        let (Some(tp), Some(tm)) = (tp.map_err(fail)?, tm.map_err(fail)?) else {
            return Ok(Some(self.finding(&key, Kind::Stale, Side::Primary, Action::Skipped)));
        };
        let (kind, older) = match tp.cmp(&tm) {
            std::cmp::Ordering::Greater => (Kind::Stale, Side::Mirror),
            std::cmp::Ordering::Less => (Kind::Rollback, Side::Primary),
            std::cmp::Ordering::Equal => {
                // Most often a write that was in flight when the heads were read: both stores
                // now hold it.
                let (hp, hm) = tokio::join!(
                    self.mirror.store(Side::Primary).head_object(self.bucket, &key),
                    self.mirror.store(Side::Mirror).head_object(self.bucket, &key)
                );
                if let (Ok(hp), Ok(hm)) = (&hp, &hm)
                    && same_version(hp, hm)
                {
                    return Ok(None);
                }
                let why = format!("the copies differ but carry the same sealed write time ({tp} ms)");
                return Ok(Some(self.finding(
                    &key,
                    Kind::Undecided,
                    Side::Primary,
                    Action::Failed(why),
                )));
            }
        };
        let action = self.copy(&key, older.other(), older).await;
        Ok(Some(self.finding(&key, kind, older, action)))
    }

    /// Only `has` lists the key: copy it over, unless a tombstone proves a later delete.
    async fn check_one(&self, key: String, has: Side) -> Result<Option<Finding>, (String, BackendError)> {
        let lacks = has.other();
        let deleted_at = self.tombstone(&key, has).await.map_err(|e| (key.clone(), e))?;
        if let Some(at) = deleted_at {
            let written = self
                .mirror
                .sealer()
                .written_ms(self.mirror.store(has), self.bucket, &key)
                .await
                .map_err(|e| (key.clone(), e))?;
            match written {
                None => return Ok(Some(self.finding(&key, Kind::Extra, has, Action::Skipped))),
                // The same rule as a repair: a copy without a readable write time, or written
                // before the delete, goes.
                Some(ms) if ms == 0 || ms <= at => {
                    let action = self.delete(&key, has).await;
                    return Ok(Some(self.finding(&key, Kind::Extra, has, action)));
                }
                // Written again after the delete: the write stands.
                Some(_) => {}
            }
        }
        let action = self.copy(&key, has, lacks).await;
        Ok(Some(self.finding(&key, Kind::Missing, lacks, action)))
    }

    /// The newest delete of `key` that `has` missed, by its tombstones in either store.
    async fn tombstone(&self, key: &str, has: Side) -> BackendResult<Option<u64>> {
        let sealer = self.mirror.sealer().as_ref();
        let mut newest = None;
        for side in [Side::Primary, Side::Mirror] {
            let found = match record::for_key(self.mirror.store(side).as_ref(), sealer, self.bucket, key).await {
                Ok(found) => found,
                Err(BackendError::NoSuchBucket) => continue,
                Err(e) => return Err(e),
            };
            let at = found
                .iter()
                .map(|f| &f.record)
                .filter(|r| r.op == Op::Delete && r.key == key && r.missing_from == has)
                .map(|r| r.at_ms)
                .max();
            newest = newest.max(at);
        }
        Ok(newest)
    }

    /// A key's head from a listing entry when it carries the metadata (fs), else from the store;
    /// `None` if it vanished.
    async fn head(&self, side: Side, entry: ListEntry) -> BackendResult<Option<ObjectHead>> {
        if let Some(metadata) = entry.metadata {
            return Ok(Some(ObjectHead {
                size: entry.size,
                etag: entry.etag,
                last_modified: entry.last_modified,
                metadata,
            }));
        }
        match self.mirror.store(side).head_object(self.bucket, &entry.key).await {
            Ok(head) => Ok(Some(head)),
            Err(BackendError::NoSuchKey) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn copy(&self, key: &str, from: Side, to: Side) -> Action {
        if self.options.dry_run {
            return Action::WouldCopy;
        }
        let (src, dst) = (self.mirror.store(from), self.mirror.store(to));
        if let Err(e) = ensure_bucket(dst, self.bucket).await {
            return Action::Failed(e.to_string());
        }
        // A proxy may write the key while it is copied: a copy read before that write can land
        // after it. So each copy is checked against the source's sealed write time afterwards
        // and made again (a few times) if the destination ended up older.
        let mut last_error = None;
        for _ in 0..COPY_TRIES {
            match copy_between(src, dst, self.bucket, key).await {
                Ok(_) => {}
                Err(BackendError::NoSuchKey) => return Action::Skipped,
                // A write landed during the copy (a client rewrote the source shorter: an invalid
                // range; or deleted it): fine if the stores now agree or the source is gone (a
                // client's delete, the proxy's to mirror); else copy the new version again.
                Err(e) => {
                    let (a, b) = tokio::join!(src.head_object(self.bucket, key), dst.head_object(self.bucket, key));
                    match (a, b) {
                        (Ok(a), Ok(b)) if same_version(&a, &b) => return Action::Skipped,
                        (Err(BackendError::NoSuchKey), _) => return Action::Skipped,
                        _ => {
                            last_error = Some(e.to_string());
                            continue;
                        }
                    }
                }
            }
            let sealer = self.mirror.sealer();
            let (s, d) = tokio::join!(
                sealer.written_ms(src, self.bucket, key),
                sealer.written_ms(dst, self.bucket, key)
            );
            match (s, d) {
                (Ok(Some(s)), Ok(Some(d))) if d < s => continue,
                (Ok(_), Ok(_)) => return Action::Copied,
                (Err(e), _) | (_, Err(e)) => return Action::Failed(e.to_string()),
            }
        }
        match last_error {
            Some(e) => Action::Failed(e),
            None => Action::Skipped,
        }
    }

    async fn delete(&self, key: &str, from: Side) -> Action {
        if self.options.dry_run {
            return Action::WouldDelete;
        }
        match self.mirror.store(from).delete_object(self.bucket, key).await {
            Ok(()) => Action::Deleted,
            Err(e) => Action::Failed(e.to_string()),
        }
    }

    fn finding(&self, key: &str, kind: Kind, store: Side, action: Action) -> Finding {
        Finding {
            bucket: self.bucket.to_string(),
            key: key.to_string(),
            kind,
            store,
            action,
        }
    }
}

fn action_label(action: &Action) -> &'static str {
    match action {
        Action::Copied => "copied",
        Action::Deleted => "deleted",
        Action::WouldCopy | Action::WouldDelete => "reported",
        Action::Skipped => "skipped",
        Action::Failed(_) => "failed",
    }
}

async fn ensure_bucket(store: &Arc<dyn ObjectStore>, bucket: &str) -> BackendResult<()> {
    match store.head_bucket(bucket).await {
        Ok(()) => Ok(()),
        Err(BackendError::NoSuchBucket) => match store.create_bucket(bucket).await {
            Ok(()) | Err(BackendError::BucketAlreadyExists { .. }) => Ok(()),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use bytes::Bytes;

    use super::*;
    use crate::backend::Metadata;
    use crate::backend::fs::FsStore;
    use crate::backend::health::StoreHealth;
    use crate::mirror::record::RepairRecord;
    use crate::mirror::tests::TestSealer;
    use crate::mirror::{MirrorSettings, ReadMode, WriteMode};

    #[derive(Default)]
    struct Seen(Mutex<Vec<(String, Kind, Side, String)>>);

    impl Observer for Seen {
        fn finding(&self, f: &Finding) {
            let mut seen = self.0.lock().expect("lock");
            seen.push((f.key.clone(), f.kind, f.store, f.action.name().to_string()));
        }
    }

    impl Seen {
        fn sorted(&self) -> Vec<(String, Kind, Side, String)> {
            let mut seen = self.0.lock().expect("lock").clone();
            seen.sort_by(|a, b| a.0.cmp(&b.0));
            seen
        }
    }

    struct Two {
        mirror: Arc<Mirror>,
        _dirs: [tempfile::TempDir; 2],
    }

    fn two() -> Two {
        let dirs = [
            tempfile::tempdir().expect("tempdir"),
            tempfile::tempdir().expect("tempdir"),
        ];
        let store =
            |i: usize| -> Arc<dyn ObjectStore> { Arc::new(FsStore::new("t", dirs[i].path()).expect("fs store")) };
        let mirror = Mirror::new(
            (store(0), StoreHealth::new("primary")),
            (store(1), StoreHealth::new("mirror")),
            MirrorSettings::new(WriteMode::Sync, ReadMode::Primary),
            Arc::new(TestSealer),
        );
        Two { mirror, _dirs: dirs }
    }

    /// Stores a fake sealed version `id` written at `t` ms.
    async fn put(m: &Mirror, side: Side, key: &str, id: &str, t: u64) {
        let store = m.store(side);
        let _ = store.create_bucket("bkt").await;
        let body = format!("ciphertext of {id}").into_bytes();
        let len = body.len() as u64;
        let mut metadata = Metadata::new();
        metadata.insert("escrow-id".into(), id.into());
        metadata.insert("t".into(), t.to_string());
        let stream: crate::backend::ByteStream = Box::pin(futures::stream::once(async move { Ok(Bytes::from(body)) }));
        store.put_object("bkt", key, stream, len, metadata).await.expect("put");
    }

    async fn id_of(m: &Mirror, side: Side, key: &str) -> Option<String> {
        match m.store(side).head_object("bkt", key).await {
            Ok(head) => head.metadata.get("escrow-id").cloned(),
            Err(BackendError::NoSuchKey) => None,
            Err(e) => panic!("head: {e}"),
        }
    }

    #[tokio::test]
    async fn a_pass_finds_each_difference_fixes_it_in_the_right_direction_and_then_finds_none() {
        let two = two();
        let m = &two.mirror;
        for side in [Side::Primary, Side::Mirror] {
            put(m, side, "agree", "v1", 10).await;
            put(m, side, "stale", "v1", 10).await;
            put(m, side, "rolled", "v1", 10).await;
        }
        put(m, Side::Primary, "only-primary", "v1", 10).await;
        put(m, Side::Mirror, "only-mirror", "v1", 10).await;
        put(m, Side::Primary, "stale", "v2", 20).await;
        put(m, Side::Mirror, "rolled", "v2", 20).await;
        // Deleted through the proxy while the mirror was away: the tombstone is in the primary.
        put(m, Side::Mirror, "deleted", "v1", 10).await;
        let tomb = RepairRecord::new(Op::Delete, "bkt", "deleted", Side::Mirror);
        record::write(m.store(Side::Primary).as_ref(), &TestSealer, &tomb)
            .await
            .expect("record");
        // Written again after a delete: the tombstone does not apply.
        put(m, Side::Mirror, "rewritten", "v3", u64::MAX - 1).await;
        let tomb = RepairRecord::new(Op::Delete, "bkt", "rewritten", Side::Mirror);
        record::write(m.store(Side::Primary).as_ref(), &TestSealer, &tomb)
            .await
            .expect("record");

        let expected = vec![
            ("deleted".to_string(), Kind::Extra, Side::Mirror),
            ("only-mirror".to_string(), Kind::Missing, Side::Primary),
            ("only-primary".to_string(), Kind::Missing, Side::Mirror),
            ("rewritten".to_string(), Kind::Missing, Side::Primary),
            ("rolled".to_string(), Kind::Rollback, Side::Primary),
            ("stale".to_string(), Kind::Stale, Side::Mirror),
        ];
        let strip = |v: Vec<(String, Kind, Side, String)>| -> Vec<(String, Kind, Side)> {
            v.into_iter().map(|(k, kind, side, _)| (k, kind, side)).collect()
        };

        // A dry run reports exactly these and changes nothing.
        let seen = Seen::default();
        let options = Options {
            dry_run: true,
            ..Options::default()
        };
        let summary = run(m, &options, &Counters::default(), &seen).await.expect("pass");
        assert_eq!(strip(seen.sorted()), expected);
        assert_eq!(
            (
                summary.scanned,
                summary.missing,
                summary.stale,
                summary.rollback,
                summary.extra
            ),
            (7, 3, 2, 1, 1)
        );
        assert_eq!((summary.copied, summary.deleted, summary.errors), (0, 0, 0));
        assert_eq!(id_of(m, Side::Mirror, "stale").await.as_deref(), Some("v1"));
        assert_eq!(id_of(m, Side::Mirror, "deleted").await.as_deref(), Some("v1"));

        let seen = Seen::default();
        let summary = run(m, &Options::default(), &Counters::default(), &seen)
            .await
            .expect("pass");
        assert_eq!(strip(seen.sorted()), expected);
        assert_eq!((summary.copied, summary.deleted, summary.errors), (5, 1, 0));
        for side in [Side::Primary, Side::Mirror] {
            assert_eq!(id_of(m, side, "stale").await.as_deref(), Some("v2"));
            assert_eq!(id_of(m, side, "rolled").await.as_deref(), Some("v2"));
            assert_eq!(id_of(m, side, "only-primary").await.as_deref(), Some("v1"));
            assert_eq!(id_of(m, side, "only-mirror").await.as_deref(), Some("v1"));
            assert_eq!(id_of(m, side, "rewritten").await.as_deref(), Some("v3"));
            assert_eq!(id_of(m, side, "deleted").await, None);
        }

        // A rerun finds nothing; repair records were not touched (the drainer owns them).
        let seen = Seen::default();
        let summary = run(m, &Options::default(), &Counters::default(), &seen)
            .await
            .expect("pass");
        assert!(seen.sorted().is_empty(), "{:?}", seen.sorted());
        assert_eq!(summary.scanned, 6);
        let records = record::scan(m.store(Side::Primary).as_ref(), &TestSealer, "bkt")
            .await
            .expect("scan");
        assert_eq!(records.len(), 2);
    }

    #[tokio::test]
    async fn a_pass_resumes_after_a_key_and_walks_past_the_reserved_prefix_across_pages() {
        let two = two();
        let m = &two.mirror;
        // Keys on both sides of ".escrow-mpu/" in sort order, more than one page.
        let keys: Vec<String> = (0..110).map(|i| format!("k{i:05}")).collect();
        put(m, Side::Primary, "-before", "v1", 1).await;
        put(m, Side::Primary, ".escrow-mpu/u/upload", "v1", 1).await;
        for key in &keys {
            put(m, Side::Primary, key, "v1", 1).await;
            put(m, Side::Mirror, key, "v1", 1).await;
        }
        put(m, Side::Mirror, "zz-last", "v1", 1).await;
        let seen = Seen::default();
        let summary = run(
            m,
            &Options {
                dry_run: true,
                ..Options::default()
            },
            &Counters::default(),
            &seen,
        )
        .await
        .expect("pass");
        assert_eq!(summary.scanned, 112);
        let found: Vec<String> = seen.sorted().into_iter().map(|f| f.0).collect();
        assert_eq!(found, ["-before", "zz-last"]);

        let seen = Seen::default();
        let options = Options {
            dry_run: true,
            bucket: Some("bkt".into()),
            start_after: Some("k00100".into()),
        };
        let summary = run(m, &options, &Counters::default(), &seen).await.expect("pass");
        assert_eq!(summary.scanned, 10);
        assert_eq!(seen.sorted().len(), 1);
    }
}
