//! The mirror: two stores behind one [`ObjectStore`], so the S3 front end does not know it is
//! talking to two (DESIGN §5).
//!
//! - Writes ([`write`]) go to both stores; a body is encrypted once and the same ciphertext is
//!   streamed to both through a bounded tee. When one store fails or lags, the write is
//!   acknowledged only once the other has it and a repair record ([`record`]) is stored beside
//!   it, as `[mirror] write` says ([`WriteMode`]).
//! - Repairs ([`repair`]): every instance drains every record, copying ciphertext store to
//!   store (never decrypting), newest sealed version wins, deletes only by tombstone.
//! - Reads go to the store `read` names and fail over to the other on outages, timeouts,
//!   `NoSuchKey`/`NoSuchBucket` (the other store may have a write this one missed), before any
//!   byte reached the client. A store marked down ([`StoreHealth`], the circuit breaker) is not
//!   waited on until the background probe sees it back.
//! - Listings ([`list`]) merge both stores' pages while both are up, so a write that only one
//!   store has is never hidden.
//!
//! Store ETags are tagged with the store that gave them (`<etag>@primary`), so a conditional
//! read or a server-side copy names a store ETag only to the store it came from.

mod copy;
mod list;
mod locks;
#[cfg(test)]
mod pending_tests;
pub mod reconcile;
pub mod record;
pub mod repair;
mod resume;
pub mod served;
mod write;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;

pub use self::record::Side;
pub use self::repair::Backlog;
use crate::backend::health::StoreHealth;
use crate::backend::{
    BackendError, BackendResult, BucketInfo, ByteRange, ByteStream, GetObject, ListPage, ListQuery, Metadata,
    ObjectHead, ObjectStore, PutCondition, Source,
};

/// How writes use the mirror (`[mirror] write`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Both stores are written at once; if one fails, acknowledge once the other has the write
    /// and a repair record is stored beside it.
    Sync,
    /// Acknowledge once the first store that is up has the write and a repair record; the
    /// other store is written in the background from the first.
    Async,
    /// Fail unless both stores take the write.
    Both,
}

/// Which store reads go to first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// The primary, failing over to the mirror.
    Primary,
    /// The mirror, failing over to the primary.
    Mirror,
}

/// Timings of the mirror (`[mirror]` settings).
#[derive(Debug, Clone)]
pub struct MirrorSettings {
    /// Write mode.
    pub write: WriteMode,
    /// Read mode.
    pub read: ReadMode,
    /// How long a read waits for a store's first answer before failing over.
    pub first_byte_timeout: Duration,
    /// How often repair records are looked for while none are known.
    pub drain_every: Duration,
}

impl MirrorSettings {
    /// Defaults for `write` and `read`.
    pub fn new(write: WriteMode, read: ReadMode) -> Self {
        Self {
            write,
            read,
            first_byte_timeout: Duration::from_millis(crate::limits::DEFAULT_FIRST_BYTE_TIMEOUT_MS),
            drain_every: Duration::from_secs(crate::limits::DEFAULT_DRAIN_EVERY_SECS),
        }
    }
}

/// What the mirror needs from the keyring, without depending on it: MACs for repair records,
/// and the sealed write time of a stored object (to find the newest version).
pub trait Sealer: Send + Sync + 'static {
    /// MAC of `message` under the active key version: (version, tag).
    fn mac(&self, message: &[u8]) -> (u32, [u8; 32]);
    /// Whether `tag` is the MAC of `message` under key `version` (constant time).
    fn verify(&self, version: u32, message: &[u8], tag: &[u8]) -> bool;
    /// The sealed write time of `bucket`/`key` in `store`: `None` if the object is missing,
    /// `Some(0)` if it exists but carries no readable write time (upload state, older format).
    fn written_ms<'a>(
        &'a self,
        store: &'a Arc<dyn ObjectStore>,
        bucket: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, BackendResult<Option<u64>>>;
}

/// A primary and a mirror store, written together, read with failover.
pub struct Mirror {
    stores: [Arc<dyn ObjectStore>; 2],
    health: [Arc<StoreHealth>; 2],
    settings: MirrorSettings,
    sealer: Arc<dyn Sealer>,
    backlog: Arc<Backlog>,
    wake: Arc<tokio::sync::Notify>,
    locks: locks::KeyLocks,
}

/// Where an object's newest version is while repair records of it are pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// No record: the usual read order.
    Usual,
    /// Read the stores in this order (the first holds the newest sealed version).
    Order([Side; 2]),
    /// A tombstone is newer than every version a reachable store holds: the object is deleted.
    Deleted,
}

impl Mirror {
    /// Mirrors `primary` to `mirror`.
    pub fn new(
        primary: (Arc<dyn ObjectStore>, Arc<StoreHealth>),
        mirror: (Arc<dyn ObjectStore>, Arc<StoreHealth>),
        settings: MirrorSettings,
        sealer: Arc<dyn Sealer>,
    ) -> Arc<Self> {
        Arc::new(Self {
            stores: [primary.0, mirror.0],
            health: [primary.1, mirror.1],
            settings,
            sealer,
            backlog: Arc::new(Backlog::default()),
            wake: Arc::new(tokio::sync::Notify::new()),
            locks: locks::KeyLocks::default(),
        })
    }

    /// The store on `side`.
    pub fn store(&self, side: Side) -> &Arc<dyn ObjectStore> {
        &self.stores[index(side)]
    }

    /// The health (breaker) of the store on `side`.
    pub fn health(&self, side: Side) -> &Arc<StoreHealth> {
        &self.health[index(side)]
    }

    /// What this instance knows of outstanding repairs.
    pub fn backlog(&self) -> &Arc<Backlog> {
        &self.backlog
    }

    /// The settings.
    pub fn settings(&self) -> &MirrorSettings {
        &self.settings
    }

    /// The record sealer.
    pub fn sealer(&self) -> &Arc<dyn Sealer> {
        &self.sealer
    }

    /// Asks the drainer to run now (a record was just stored).
    fn wake_drainer(&self) {
        self.wake.notify_one();
    }

    fn is_up(&self, side: Side) -> bool {
        self.health(side).is_up()
    }

    /// Reads go first to the configured store, unless it is down and the other is not.
    fn read_order(&self) -> [Side; 2] {
        let first = match self.settings.read {
            ReadMode::Primary => Side::Primary,
            ReadMode::Mirror => Side::Mirror,
        };
        if !self.is_up(first) && self.is_up(first.other()) {
            [first.other(), first]
        } else {
            [first, first.other()]
        }
    }

    /// Notes a store's failure in its breaker when the failure is an outage.
    fn observe(&self, side: Side, e: &BackendError) {
        if e.is_outage() {
            self.health(side).mark_down(e.kind());
        }
    }

    /// Runs a read on the first store, and on the second when the first is down, times out, or
    /// says the object or bucket is missing (the second may have a write the first missed).
    async fn read<'a, T, F, Fut>(&'a self, op: F) -> BackendResult<T>
    where
        F: Fn(Side, &'a Arc<dyn ObjectStore>) -> Fut,
        Fut: Future<Output = BackendResult<T>>,
    {
        self.read_in(self.read_order(), op).await
    }

    /// A read of one object: as [`Mirror::read`], unless repair records of the object are
    /// pending — then the store with the newest sealed version is read first, and an object
    /// whose tombstone is newer than every stored version is missing ([`Mirror::verdict`]).
    async fn read_object<'a, T, F, Fut>(&'a self, bucket: &str, key: &str, op: F) -> BackendResult<T>
    where
        F: Fn(Side, &'a Arc<dyn ObjectStore>) -> Fut,
        Fut: Future<Output = BackendResult<T>>,
    {
        match self.verdict(bucket, key).await {
            Verdict::Usual => self.read(op).await,
            Verdict::Order(order) => self.read_in(order, op).await,
            Verdict::Deleted => Err(BackendError::NoSuchKey),
        }
    }

    /// What the pending records of `bucket`/`key` say about where its newest version is. The
    /// records this instance knows of, and until its drainer has scanned a store once (and again
    /// since the other store last came back), that store's records of the key: another instance
    /// may have written them before this one started, or during the outage. With records pending, each reachable store's sealed write time is read and
    /// compared with the newest tombstone.
    async fn verdict(&self, bucket: &str, key: &str) -> Verdict {
        let mut records = self.backlog.records_for(bucket, key);
        for side in [Side::Primary, Side::Mirror] {
            if !self.backlog.scanned(side, self.health(side.other()).recoveries()) && self.is_up(side) {
                // Not fed to the breaker: a slow lookup is no sign of an outage.
                let found = record::for_key(self.store(side).as_ref(), self.sealer.as_ref(), bucket, key);
                if let Ok(Ok(found)) = tokio::time::timeout(self.settings.first_byte_timeout, found).await {
                    records.extend(found.into_iter().map(|f| f.record));
                }
            }
        }
        if records.is_empty() {
            return Verdict::Usual;
        }
        let newest_of = |op: record::Op| records.iter().filter(|r| r.op == op).map(|r| r.at_ms).max();
        let (tombstone, missed_put) = (newest_of(record::Op::Delete), newest_of(record::Op::Put));
        let [first, second] = self.read_order();
        let (a, b) = tokio::join!(self.written(first, bucket, key), self.written(second, bucket, key));
        // The newest version a reachable store holds (the read order breaks ties).
        let newest = [(first, a), (second, b)]
            .into_iter()
            .filter_map(|(side, ms)| ms.flatten().map(|ms| (side, ms)))
            .fold(None::<(Side, u64)>, |best, (side, ms)| match best {
                Some((_, best_ms)) if best_ms >= ms => best,
                _ => Some((side, ms)),
            });
        decide(newest, tombstone, missed_put)
    }

    /// The sealed write time of `bucket`/`key` in the store on `side` (`Some(None)`: missing
    /// there), or `None` when the store is down or does not answer in time.
    async fn written(&self, side: Side, bucket: &str, key: &str) -> Option<Option<u64>> {
        if !self.is_up(side) {
            return None;
        }
        match self
            .timed_read(side, self.sealer.written_ms(self.store(side), bucket, key))
            .await
        {
            Ok(ms) => Some(ms),
            Err(BackendError::NoSuchBucket) => Some(None),
            Err(_) => None,
        }
    }

    /// [`Mirror::read`] in the given order.
    async fn read_in<'a, T, F, Fut>(&'a self, [first, second]: [Side; 2], op: F) -> BackendResult<T>
    where
        F: Fn(Side, &'a Arc<dyn ObjectStore>) -> Fut,
        Fut: Future<Output = BackendResult<T>>,
    {
        let e = match self.timed_read(first, op(first, self.store(first))).await {
            Ok(value) => return Ok(value),
            Err(e) => e,
        };
        let reason = match &e {
            BackendError::NoSuchKey => "not_found",
            BackendError::NoSuchBucket => "no_bucket",
            e if e.is_outage() => "unavailable",
            _ => return Err(e),
        };
        metrics::counter!("escrow_mirror_failovers_total", "reason" => reason, "to" => second.name()).increment(1);
        if reason == "unavailable" {
            tracing::warn!(store = first.name(), error = %e, fallback = second.name(), "read failed over");
        }
        match self.timed_read(second, op(second, self.store(second))).await {
            Ok(value) => Ok(value),
            // The first store's "missing" stands when the second cannot say otherwise; with the
            // first down, the second's answer is the answer.
            Err(_) if reason != "unavailable" => Err(e),
            Err(second_error) => Err(second_error),
        }
    }

    /// `fut` bounded by the first-byte timeout; a timeout or outage marks the store down.
    async fn timed_read<T>(&self, side: Side, fut: impl Future<Output = BackendResult<T>>) -> BackendResult<T> {
        let result = match tokio::time::timeout(self.settings.first_byte_timeout, fut).await {
            Ok(result) => result,
            Err(_) => Err(BackendError::Upstream {
                store: side.name().into(),
                message: format!("no answer within {:?}", self.settings.first_byte_timeout),
                retryable: true,
            }),
        };
        match &result {
            Ok(_) => {
                self.health(side).mark_up();
                served::note(side);
            }
            Err(e) => self.observe(side, e),
        }
        result
    }

    /// `body`, read from `side`, resuming from the other store if it breaks off ([`resume`]).
    fn resuming(
        &self,
        side: Side,
        bucket: &str,
        key: &str,
        range: Option<&ByteRange>,
        head: &ObjectHead,
        body: ByteStream,
    ) -> ByteStream {
        let fallback = resume::Fallback {
            from: side,
            other: Arc::clone(self.store(side.other())),
            other_health: Arc::clone(self.health(side.other())),
            from_health: Arc::clone(self.health(side)),
            bucket: bucket.to_string(),
            key: key.to_string(),
            first_byte_timeout: self.settings.first_byte_timeout,
            stall: crate::limits::MIRROR_STALL_TIMEOUT,
        };
        resume::resuming(body, head, range, fallback)
    }

    /// `x-amz-replication-status` of an object as this instance knows it.
    pub fn replication_status(&self, bucket: &str, key: &str) -> &'static str {
        self.backlog.status(bucket, key)
    }
}

/// The verdict from the newest version a reachable store holds (`newest`: its store and sealed
/// write time), the newest pending tombstone and the newest pending missed write (record
/// times). A version newer than every tombstone is read first. Otherwise, when the last change
/// recorded is a delete, the object is deleted whatever a store that missed the delete (or is
/// unreachable now) still holds: a write newer than the delete would be a version newer than
/// the tombstone, or have a record of its own. A version without a readable write time (0) is
/// older than any tombstone.
fn decide(newest: Option<(Side, u64)>, tombstone: Option<u64>, missed_put: Option<u64>) -> Verdict {
    match (newest, tombstone) {
        (Some((side, ms)), Some(deleted)) if ms != 0 && ms > deleted => Verdict::Order([side, side.other()]),
        (_, Some(deleted)) if missed_put.is_none_or(|put| put <= deleted) => Verdict::Deleted,
        // A write newer than the tombstone that no reachable store showed: whichever has it.
        (_, Some(_)) => Verdict::Usual,
        (Some((side, _)), None) => Verdict::Order([side, side.other()]),
        (None, None) => Verdict::Usual,
    }
}

fn index(side: Side) -> usize {
    match side {
        Side::Primary => 0,
        Side::Mirror => 1,
    }
}

/// Marks a store ETag with the store that gave it.
fn tag(etag: String, side: Side) -> String {
    if etag.is_empty() {
        etag
    } else {
        format!("{etag}@{}", side.name())
    }
}

/// The part of a tagged ETag meant for `side`: `None` if it names the other store.
fn untag(etag: &str, side: Side) -> Option<&str> {
    match etag.rsplit_once('@') {
        Some((etag, name)) if name == side.name() => Some(etag),
        Some((_, name)) if name == side.other().name() => None,
        _ => Some(etag),
    }
}

/// The store a tagged ETag came from, if it is tagged.
fn origin(etag: &str) -> Option<Side> {
    match etag.rsplit_once('@').map(|(_, name)| name) {
        Some("primary") => Some(Side::Primary),
        Some("mirror") => Some(Side::Mirror),
        _ => None,
    }
}

fn tag_head(mut head: ObjectHead, side: Side) -> ObjectHead {
    head.etag = tag(std::mem::take(&mut head.etag), side);
    head
}

/// One store of the pair, alone, for reads (its ETags tagged as the pair tags them). Writes
/// through a view are refused: they must go through the pair.
struct ReadView {
    side: Side,
    store: Arc<dyn ObjectStore>,
}

fn read_only() -> BackendError {
    BackendError::InvalidArgument("a read view of one mirrored store takes no writes")
}

#[async_trait]
impl ObjectStore for ReadView {
    fn name(&self) -> &str {
        self.side.name()
    }

    async fn list_buckets(&self) -> BackendResult<Vec<BucketInfo>> {
        self.store.list_buckets().await
    }

    async fn create_bucket(&self, _bucket: &str) -> BackendResult<()> {
        Err(read_only())
    }

    async fn head_bucket(&self, bucket: &str) -> BackendResult<()> {
        self.store.head_bucket(bucket).await
    }

    async fn delete_bucket(&self, _bucket: &str) -> BackendResult<()> {
        Err(read_only())
    }

    async fn put_object(&self, _: &str, _: &str, _: ByteStream, _: u64, _: Metadata) -> BackendResult<String> {
        Err(read_only())
    }

    async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        range: Option<ByteRange>,
        if_match: Option<&str>,
    ) -> BackendResult<GetObject> {
        let if_match = match if_match {
            Some(etag) => Some(untag(etag, self.side).ok_or(BackendError::PreconditionFailed)?),
            None => None,
        };
        let got = self.store.get_object(bucket, key, range, if_match).await?;
        served::note(self.side);
        Ok(GetObject {
            head: tag_head(got.head, self.side),
            body: got.body,
        })
    }

    async fn head_object(&self, bucket: &str, key: &str) -> BackendResult<ObjectHead> {
        let head = self.store.head_object(bucket, key).await?;
        served::note(self.side);
        Ok(tag_head(head, self.side))
    }

    async fn delete_object(&self, _bucket: &str, _key: &str) -> BackendResult<()> {
        Err(read_only())
    }

    async fn list_objects(&self, bucket: &str, query: &ListQuery) -> BackendResult<ListPage> {
        self.store.list_objects(bucket, query).await
    }
}

#[async_trait]
impl ObjectStore for Mirror {
    fn name(&self) -> &str {
        "mirror-pair"
    }

    fn read_views(&self) -> Vec<Arc<dyn ObjectStore>> {
        self.read_order()
            .into_iter()
            .map(|side| {
                Arc::new(ReadView {
                    side,
                    store: Arc::clone(self.store(side)),
                }) as Arc<dyn ObjectStore>
            })
            .collect()
    }

    fn replication_status(&self, bucket: &str, key: &str) -> Option<&'static str> {
        Some(Mirror::replication_status(self, bucket, key))
    }

    /// Both stores' buckets while both are up (a bucket whose creation one store missed is
    /// listed), else the reachable store's.
    async fn list_buckets(&self) -> BackendResult<Vec<BucketInfo>> {
        let [first, second] = self.read_order();
        if !self.is_up(second) {
            return self.read(|_, s| s.list_buckets()).await;
        }
        let (a, b) = tokio::join!(
            self.timed_read(first, self.store(first).list_buckets()),
            self.timed_read(second, self.store(second).list_buckets())
        );
        let mut buckets = match (a, b) {
            (Ok(mut a), Ok(b)) => {
                let known: std::collections::HashSet<String> = a.iter().map(|b| b.name.clone()).collect();
                a.extend(b.into_iter().filter(|b| !known.contains(&b.name)));
                a
            }
            (Ok(one), Err(e)) | (Err(e), Ok(one)) if e.is_outage() => one,
            (Err(e), _) | (_, Err(e)) => return Err(e),
        };
        buckets.sort_by(|x, y| x.name.cmp(&y.name));
        Ok(buckets)
    }

    async fn create_bucket(&self, bucket: &str) -> BackendResult<()> {
        self.create_bucket_mirrored(bucket).await
    }

    async fn head_bucket(&self, bucket: &str) -> BackendResult<()> {
        self.read(|_, s| s.head_bucket(bucket)).await
    }

    async fn delete_bucket(&self, bucket: &str) -> BackendResult<()> {
        self.delete_bucket_mirrored(bucket).await
    }

    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: ByteStream,
        len: u64,
        metadata: Metadata,
    ) -> BackendResult<String> {
        let _write = self.locks.write(bucket, key).await;
        let (side, etag) = self.put_mirrored(bucket, key, body, len, metadata).await?;
        Ok(tag(etag, side))
    }

    /// The primary arbitrates conditional writes ([`Mirror::write_if`]).
    fn conditional_writes(&self) -> bool {
        self.store(Side::Primary).conditional_writes()
    }

    async fn put_object_if(
        &self,
        bucket: &str,
        key: &str,
        body: ByteStream,
        len: u64,
        metadata: Metadata,
        condition: Option<PutCondition>,
    ) -> BackendResult<String> {
        let Some(condition) = condition else {
            return self.put_object(bucket, key, body, len, metadata).await;
        };
        if !self.conditional_writes() {
            return Err(BackendError::ConditionalUnsupported);
        }
        // A client write like any other: no repair of the object interleaves with it.
        let _write = self.locks.write(bucket, key).await;
        let (side, etag) = self
            .write_if(bucket, key, condition, |store, c| async move {
                store.put_object_if(bucket, key, body, len, metadata, Some(c)).await
            })
            .await?;
        Ok(tag(etag, side))
    }

    /// The primary composes from its own copies of the sources under the condition; the
    /// mirror follows it ([`Mirror::write_if`]).
    async fn compose_if(
        &self,
        bucket: &str,
        key: &str,
        sources: Vec<Source>,
        tail: Bytes,
        metadata: Metadata,
        condition: Option<PutCondition>,
    ) -> BackendResult<String> {
        let Some(condition) = condition else {
            return self.compose(bucket, key, sources, tail, metadata).await;
        };
        if !self.conditional_writes() {
            return Err(BackendError::ConditionalUnsupported);
        }
        let own: Vec<Source> = sources
            .into_iter()
            .map(|src| Source {
                etag: src
                    .etag
                    .as_deref()
                    .and_then(|e| untag(e, Side::Primary))
                    .map(str::to_string),
                ..src
            })
            .collect();
        let _write = self.locks.write(bucket, key).await;
        let (side, etag) = self
            .write_if(bucket, key, condition, |store, c| async move {
                store.compose_if(bucket, key, own, tail, metadata, Some(c)).await
            })
            .await?;
        Ok(tag(etag, side))
    }

    async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        range: Option<ByteRange>,
        if_match: Option<&str>,
    ) -> BackendResult<GetObject> {
        // A read pinned to a store ETag goes to the store that gave it: the caller opened that
        // store's version of the object.
        if let Some(side) = if_match.and_then(origin) {
            let etag = if_match.and_then(|e| untag(e, side));
            let got = self
                .timed_read(side, self.store(side).get_object(bucket, key, range.clone(), etag))
                .await?;
            let body = self.resuming(side, bucket, key, range.as_ref(), &got.head, got.body);
            return Ok(GetObject {
                head: tag_head(got.head, side),
                body,
            });
        }
        let got = self
            .read_object(bucket, key, |side, s| {
                let range = range.clone();
                async move {
                    let got = s.get_object(bucket, key, range, if_match).await?;
                    Ok(GetObject {
                        head: tag_head(got.head, side),
                        body: got.body,
                    })
                }
            })
            .await?;
        match origin(&got.head.etag) {
            Some(side) => {
                let body = self.resuming(side, bucket, key, range.as_ref(), &got.head, got.body);
                Ok(GetObject { head: got.head, body })
            }
            None => Ok(got),
        }
    }

    async fn head_object(&self, bucket: &str, key: &str) -> BackendResult<ObjectHead> {
        self.read_object(bucket, key, |side, s| async move {
            s.head_object(bucket, key).await.map(|h| tag_head(h, side))
        })
        .await
    }

    async fn delete_object(&self, bucket: &str, key: &str) -> BackendResult<()> {
        let _write = self.locks.write(bucket, key).await;
        self.delete_mirrored(bucket, key).await
    }

    async fn list_objects(&self, bucket: &str, query: &ListQuery) -> BackendResult<ListPage> {
        self.list_merged(bucket, query).await
    }

    /// Each store composes from its own copies of the sources (server-side where it can).
    async fn compose(
        &self,
        bucket: &str,
        key: &str,
        sources: Vec<Source>,
        tail: Bytes,
        metadata: Metadata,
    ) -> BackendResult<String> {
        let _write = self.locks.write(bucket, key).await;
        let (side, etag) = self.compose_mirrored(bucket, key, sources, tail, metadata).await?;
        Ok(tag(etag, side))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A sealer with a fixed key, for the mirror's own tests.
    #[derive(Default)]
    pub(crate) struct TestSealer;

    impl Sealer for TestSealer {
        fn mac(&self, message: &[u8]) -> (u32, [u8; 32]) {
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"test sealer key");
            let mut out = [0u8; 32];
            out.copy_from_slice(ring::hmac::sign(&key, message).as_ref());
            (1, out)
        }

        fn verify(&self, version: u32, message: &[u8], tag: &[u8]) -> bool {
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"test sealer key");
            version == 1 && ring::hmac::verify(&key, message, tag).is_ok()
        }

        fn written_ms<'a>(
            &'a self,
            store: &'a Arc<dyn ObjectStore>,
            bucket: &'a str,
            key: &'a str,
        ) -> BoxFuture<'a, BackendResult<Option<u64>>> {
            Box::pin(async move {
                match store.head_object(bucket, key).await {
                    Ok(head) => Ok(Some(head.metadata.get("t").and_then(|t| t.parse().ok()).unwrap_or(0))),
                    Err(BackendError::NoSuchKey) => Ok(None),
                    Err(e) => Err(e),
                }
            })
        }
    }

    #[test]
    fn etags_name_their_store() {
        let tagged = tag("abc".into(), Side::Mirror);
        assert_eq!(tagged, "abc@mirror");
        assert_eq!(origin(&tagged), Some(Side::Mirror));
        assert_eq!(untag(&tagged, Side::Mirror), Some("abc"));
        assert_eq!(untag(&tagged, Side::Primary), None);
        assert_eq!(untag("plain", Side::Primary), Some("plain"));
        assert_eq!(tag(String::new(), Side::Primary), "");
    }
}
