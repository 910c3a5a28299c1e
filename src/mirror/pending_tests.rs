//! The mirror while repairs are pending, with two fs stores and no drainer running (so the
//! records stay pending for as long as a test needs): reads and listings follow the records,
//! a copy is never composed from a stale source, a repair never undoes a delete that happened
//! while it copied, and a hung store does not stall the drainer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::Notify;

use super::repair::drain_due;
use super::tests::TestSealer;
use super::*;
use crate::backend::fs::FsStore;

const B: &str = "bkt";

/// What a test does to one store's requests for one key.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Trap {
    /// Nothing.
    None,
    /// The first `get_object` of the key opens the object, says so, then waits for a release.
    PauseGet,
    /// Every `put_object` of the key never answers (a SIGSTOPped store).
    HangPut,
    /// The first conditional write of the key says it arrived, then waits for a release.
    PausePut,
}

/// An fs store with a trap on one key.
struct Trapped {
    inner: Arc<FsStore>,
    key: String,
    trap: Trap,
    sprung: AtomicBool,
    reached: Arc<Notify>,
    release: Arc<Notify>,
}

#[async_trait]
impl ObjectStore for Trapped {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn list_buckets(&self) -> BackendResult<Vec<BucketInfo>> {
        self.inner.list_buckets().await
    }
    async fn create_bucket(&self, bucket: &str) -> BackendResult<()> {
        self.inner.create_bucket(bucket).await
    }
    async fn head_bucket(&self, bucket: &str) -> BackendResult<()> {
        self.inner.head_bucket(bucket).await
    }
    async fn delete_bucket(&self, bucket: &str) -> BackendResult<()> {
        self.inner.delete_bucket(bucket).await
    }
    async fn put_object(&self, b: &str, k: &str, body: ByteStream, len: u64, m: Metadata) -> BackendResult<String> {
        if self.trap == Trap::HangPut && k == self.key {
            self.reached.notify_one();
            return futures::future::pending().await;
        }
        self.inner.put_object(b, k, body, len, m).await
    }
    fn conditional_writes(&self) -> bool {
        self.inner.conditional_writes()
    }
    async fn put_object_if(
        &self,
        b: &str,
        k: &str,
        body: ByteStream,
        len: u64,
        m: Metadata,
        condition: Option<PutCondition>,
    ) -> BackendResult<String> {
        if self.trap == Trap::PausePut && k == self.key && !self.sprung.swap(true, Ordering::SeqCst) {
            self.reached.notify_one();
            self.release.notified().await;
        }
        self.inner.put_object_if(b, k, body, len, m, condition).await
    }
    async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        range: Option<ByteRange>,
        if_match: Option<&str>,
    ) -> BackendResult<GetObject> {
        let got = self.inner.get_object(bucket, key, range, if_match).await?;
        if self.trap == Trap::PauseGet && key == self.key && !self.sprung.swap(true, Ordering::SeqCst) {
            self.reached.notify_one();
            self.release.notified().await;
        }
        Ok(got)
    }
    async fn head_object(&self, bucket: &str, key: &str) -> BackendResult<ObjectHead> {
        self.inner.head_object(bucket, key).await
    }
    async fn delete_object(&self, bucket: &str, key: &str) -> BackendResult<()> {
        self.inner.delete_object(bucket, key).await
    }
    async fn list_objects(&self, bucket: &str, query: &ListQuery) -> BackendResult<ListPage> {
        self.inner.list_objects(bucket, query).await
    }
}

struct Pair {
    _dir: tempfile::TempDir,
    raw: [Arc<FsStore>; 2],
    traps: [Arc<Trapped>; 2],
    mirror: Arc<Mirror>,
}

impl Pair {
    async fn new(traps: [(Trap, &str); 2]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let raw = [
            Arc::new(FsStore::new("primary", dir.path().join("p")).expect("fs store")),
            Arc::new(FsStore::new("mirror", dir.path().join("m")).expect("fs store")),
        ];
        let trapped = |i: usize| {
            Arc::new(Trapped {
                inner: Arc::clone(&raw[i]),
                key: traps[i].1.to_string(),
                trap: traps[i].0,
                sprung: AtomicBool::new(false),
                reached: Arc::new(Notify::new()),
                release: Arc::new(Notify::new()),
            })
        };
        let traps = [trapped(0), trapped(1)];
        let mirror = Mirror::new(
            (
                Arc::clone(&traps[0]) as Arc<dyn ObjectStore>,
                StoreHealth::new("primary"),
            ),
            (
                Arc::clone(&traps[1]) as Arc<dyn ObjectStore>,
                StoreHealth::new("mirror"),
            ),
            MirrorSettings::new(WriteMode::Sync, ReadMode::Primary),
            Arc::new(TestSealer),
        );
        mirror.create_bucket(B).await.expect("bucket");
        Self {
            _dir: dir,
            raw,
            traps,
            mirror,
        }
    }

    /// A PUT through the mirror of `body`, sealed as written at `t`.
    async fn put(&self, key: &str, body: &[u8], t: u64) {
        let meta: Metadata = [
            ("t".to_string(), t.to_string()),
            ("escrow-id".to_string(), format!("{key}-{t}")),
        ]
        .into();
        let data = Bytes::copy_from_slice(body);
        let stream: ByteStream = Box::pin(futures::stream::once(async move { Ok(data) }));
        self.mirror
            .put_object(B, key, stream, body.len() as u64, meta)
            .await
            .expect("put");
    }

    fn outage(&self, side: Side, on: bool) {
        if on {
            self.mirror.health(side).mark_down("test");
        } else {
            self.mirror.health(side).mark_up();
        }
    }

    /// What `key` holds in the store on `side` alone.
    async fn stored(&self, side: Side, key: &str) -> Option<Vec<u8>> {
        match self.raw[index(side)].get_object(B, key, None, None).await {
            Ok(got) => Some(crate::backend::read_small(got.body, 1 << 20).await.expect("body")),
            Err(BackendError::NoSuchKey) => None,
            Err(e) => panic!("get {key}: {e}"),
        }
    }

    /// What a read through the mirror answers.
    async fn read(&self, key: &str) -> Option<Vec<u8>> {
        match self.mirror.get_object(B, key, None, None).await {
            Ok(got) => Some(crate::backend::read_small(got.body, 1 << 20).await.expect("body")),
            Err(BackendError::NoSuchKey) => None,
            Err(e) => panic!("read {key}: {e}"),
        }
    }

    async fn listed(&self) -> Vec<String> {
        let page = self
            .mirror
            .list_objects(
                B,
                &ListQuery {
                    max_keys: 1000,
                    ..ListQuery::default()
                },
            )
            .await
            .expect("list");
        page.objects
            .into_iter()
            .map(|o| o.key)
            .filter(|k| !crate::crypto::layout::is_reserved(k))
            .collect()
    }
}

#[tokio::test]
async fn reads_and_listings_follow_pending_records_after_an_outage() {
    let p = Pair::new([(Trap::None, ""), (Trap::None, "")]).await;
    p.put("k", b"old", 100).await;
    p.put("gone", b"deleted during the outage", 100).await;
    p.outage(Side::Primary, true);
    p.put("k", b"new", 200).await;
    p.mirror.delete_object(B, "gone").await.expect("delete");
    p.put("fresh", b"only in the mirror", 300).await;
    // The primary is back; its copies are stale until the records are drained.
    p.outage(Side::Primary, false);
    assert_eq!(p.stored(Side::Primary, "k").await.as_deref(), Some(&b"old"[..]));
    assert!(p.stored(Side::Primary, "gone").await.is_some());
    assert_eq!(p.mirror.replication_status(B, "k"), "PENDING");

    assert_eq!(
        p.read("k").await.as_deref(),
        Some(&b"new"[..]),
        "not the stale primary's"
    );
    let head = p.mirror.head_object(B, "k").await.expect("head");
    assert!(head.etag.ends_with("@mirror"), "{}", head.etag);
    assert_eq!(p.read("gone").await, None, "a pending tombstone: deleted");
    assert!(matches!(
        p.mirror.head_object(B, "gone").await,
        Err(BackendError::NoSuchKey)
    ));
    assert_eq!(p.read("fresh").await.as_deref(), Some(&b"only in the mirror"[..]));
    assert_eq!(p.listed().await, ["fresh", "k"]);

    // Drained: both stores agree, and reads go to the primary again.
    drain_due(&p.mirror).await;
    assert_eq!(p.mirror.backlog().summary().records, 0);
    assert_eq!(p.stored(Side::Primary, "k").await.as_deref(), Some(&b"new"[..]));
    assert_eq!(p.stored(Side::Primary, "gone").await, None);
    assert_eq!(
        p.stored(Side::Primary, "fresh").await.as_deref(),
        Some(&b"only in the mirror"[..])
    );
    let head = p.mirror.head_object(B, "k").await.expect("head");
    assert!(head.etag.ends_with("@primary"), "{}", head.etag);
    assert_eq!(p.listed().await, ["fresh", "k"]);
}

/// Another instance over the same two stores (its own health, backlog and drainer state), as
/// a second proxy process would be.
fn second_instance(p: &Pair) -> Arc<Mirror> {
    Mirror::new(
        (
            Arc::clone(&p.traps[0]) as Arc<dyn ObjectStore>,
            StoreHealth::new("primary"),
        ),
        (
            Arc::clone(&p.traps[1]) as Arc<dyn ObjectStore>,
            StoreHealth::new("mirror"),
        ),
        MirrorSettings::new(WriteMode::Sync, ReadMode::Primary),
        Arc::new(TestSealer),
    )
}

/// Scans both stores' records into `m`'s backlog, as its drainer does.
async fn scan(m: &Mirror) {
    for side in [Side::Primary, Side::Mirror] {
        let (started, seen) = (std::time::Instant::now(), m.health(side.other()).recoveries());
        let found = super::repair::scan_store(m, side).await.expect("scan");
        m.backlog().rescanned(side, found, started, seen);
    }
}

#[tokio::test]
async fn a_running_instance_learns_of_records_written_during_an_outage_before_reading_the_stale_store() {
    let p = Pair::new([(Trap::None, ""), (Trap::None, "")]).await;
    let other = second_instance(&p);
    p.put("k", b"old", 100).await;
    // The other instance has scanned: it knows of no record.
    scan(&other).await;
    assert!(
        other
            .backlog()
            .scanned(Side::Mirror, other.health(Side::Primary).recoveries())
    );
    // Both see the primary go down (a request or the probe); this instance writes meanwhile,
    // the record going to the mirror.
    p.outage(Side::Primary, true);
    other.health(Side::Primary).mark_down("test");
    p.put("k", b"new", 200).await;
    p.outage(Side::Primary, false);
    other.health(Side::Primary).mark_up();
    assert_eq!(p.stored(Side::Primary, "k").await.as_deref(), Some(&b"old"[..]));
    // Before its drainer scans again, the other instance looks the key's records up.
    assert!(
        !other
            .backlog()
            .scanned(Side::Mirror, other.health(Side::Primary).recoveries())
    );
    let got = other
        .get_object(B, "k", None, None)
        .await
        .expect("read through the other instance");
    let body = crate::backend::read_small(got.body, 1 << 20).await.expect("body");
    assert_eq!(body, b"new", "not the stale primary's");
    // After its next scan it knows the record itself.
    scan(&other).await;
    assert_eq!(other.replication_status(B, "k"), "PENDING");
}

#[tokio::test]
async fn a_write_after_a_pending_tombstone_is_read() {
    let p = Pair::new([(Trap::None, ""), (Trap::None, "")]).await;
    p.put("k", b"first", 100).await;
    p.outage(Side::Primary, true);
    p.mirror.delete_object(B, "k").await.expect("delete");
    p.outage(Side::Primary, false);
    assert_eq!(p.read("k").await, None);
    // Written again (both stores up) after the delete: newer than the tombstone.
    p.put("k", b"again", super::record::now_ms() + 1000).await;
    assert_eq!(p.read("k").await.as_deref(), Some(&b"again"[..]));
    assert_eq!(p.listed().await, ["k"]);
}

#[tokio::test]
async fn a_copy_is_never_composed_from_a_stale_source() {
    let p = Pair::new([(Trap::None, ""), (Trap::None, "")]).await;
    p.put("src", b"old source", 100).await;
    p.outage(Side::Primary, true);
    p.put("src", b"new source", 200).await;
    p.outage(Side::Primary, false);
    // The source is opened where its newest version is (the mirror) and pinned there.
    let head = p.mirror.head_object(B, "src").await.expect("head");
    assert!(head.etag.ends_with("@mirror"), "{}", head.etag);
    let meta: Metadata = [("t".to_string(), "300".to_string())].into();
    let source = Source {
        bucket: B.into(),
        key: "src".into(),
        range: 0..head.size,
        etag: Some(head.etag.clone()),
    };
    p.mirror
        .compose(B, "dst", vec![source], Bytes::new(), meta)
        .await
        .expect("copy");
    assert_eq!(p.stored(Side::Mirror, "dst").await.as_deref(), Some(&b"new source"[..]));
    assert_eq!(
        p.stored(Side::Primary, "dst").await,
        None,
        "the primary's stale source must not be copied"
    );
    assert_eq!(p.read("dst").await.as_deref(), Some(&b"new source"[..]));
    drain_due(&p.mirror).await;
    let summary = p.mirror.backlog().summary();
    assert_eq!(summary.records, 0, "{summary:?}");
    assert_eq!(
        p.stored(Side::Primary, "dst").await.as_deref(),
        Some(&b"new source"[..])
    );
    assert_eq!(
        p.stored(Side::Primary, "src").await.as_deref(),
        Some(&b"new source"[..])
    );

    // The twin: with both stores holding the same version, both copy it themselves.
    let head = p.mirror.head_object(B, "src").await.expect("head");
    let source = Source {
        bucket: B.into(),
        key: "src".into(),
        range: 0..head.size,
        etag: Some(head.etag),
    };
    let meta: Metadata = [("t".to_string(), "400".to_string())].into();
    p.mirror
        .compose(B, "dst2", vec![source], Bytes::new(), meta)
        .await
        .expect("copy");
    assert_eq!(p.mirror.backlog().summary().records, 0, "no store missed it");
    assert_eq!(
        p.stored(Side::Primary, "dst2").await,
        p.stored(Side::Mirror, "dst2").await
    );
}

#[tokio::test]
async fn a_delete_during_a_repair_copy_is_not_undone() {
    // The mirror's read of "k" for the repair pauses with the object open.
    let p = Pair::new([(Trap::None, ""), (Trap::PauseGet, "k")]).await;
    p.outage(Side::Primary, true);
    p.put("k", b"missed by the primary", 100).await;
    p.outage(Side::Primary, false);
    let repair = tokio::spawn({
        let mirror = Arc::clone(&p.mirror);
        async move { drain_due(&mirror).await }
    });
    p.traps[1].reached.notified().await;
    // Another instance deletes the object from both stores while the copy is under way.
    p.raw[0].delete_object(B, "k").await.expect("delete");
    p.raw[1].delete_object(B, "k").await.expect("delete");
    p.traps[1].release.notify_one();
    repair.await.expect("drainer");
    assert_eq!(p.stored(Side::Primary, "k").await, None, "the delete was undone");
    assert_eq!(p.stored(Side::Mirror, "k").await, None);
    assert_eq!(p.mirror.backlog().summary().records, 0);
}

#[tokio::test]
async fn a_client_delete_waits_for_a_repair_of_the_same_object() {
    let p = Pair::new([(Trap::None, ""), (Trap::PauseGet, "k")]).await;
    p.outage(Side::Primary, true);
    p.put("k", b"missed by the primary", 100).await;
    p.outage(Side::Primary, false);
    let repair = tokio::spawn({
        let mirror = Arc::clone(&p.mirror);
        async move { drain_due(&mirror).await }
    });
    p.traps[1].reached.notified().await;
    let delete = p.mirror.delete_object(B, "k");
    tokio::pin!(delete);
    for _ in 0..10 {
        assert!(
            futures::poll!(&mut delete).is_pending(),
            "the delete waits for the repair"
        );
        tokio::task::yield_now().await;
    }
    p.traps[1].release.notify_one();
    delete.await.expect("delete");
    repair.await.expect("drainer");
    assert_eq!(p.stored(Side::Primary, "k").await, None);
    assert_eq!(p.stored(Side::Mirror, "k").await, None);
    assert_eq!(p.read("k").await, None);
}

/// A conditional write (PutObject, CompleteMultipartUpload with If-None-Match / If-Match) takes
/// the object's write lock like every other client write: while it is in the primary, a repair
/// of the object cannot start, so a repair's check-copy-verify never interleaves with it.
#[tokio::test]
async fn a_conditional_write_holds_the_object_lock_against_repairs() {
    for case in ["if-none-match", "if-match", "complete-if-none-match"] {
        let p = Pair::new([(Trap::PausePut, "k"), (Trap::None, "")]).await;
        let condition = if case == "if-match" {
            p.put("k", b"first", 1).await;
            let etag = p.mirror.head_object(B, "k").await.expect("head").etag;
            PutCondition::Matches(etag)
        } else {
            PutCondition::Absent
        };
        let write = tokio::spawn({
            let mirror = Arc::clone(&p.mirror);
            async move {
                let meta: Metadata = [("t".to_string(), "5".to_string())].into();
                let data = Bytes::from_static(b"conditional");
                if case == "complete-if-none-match" {
                    mirror.compose_if(B, "k", Vec::new(), data, meta, Some(condition)).await
                } else {
                    let body: ByteStream = Box::pin(futures::stream::once(async move { Ok(data) }));
                    mirror.put_object_if(B, "k", body, 11, meta, Some(condition)).await
                }
            }
        });
        p.traps[0].reached.notified().await;
        let repair = p.mirror.locks.repair(B, "k");
        tokio::pin!(repair);
        assert!(
            futures::poll!(&mut repair).is_pending(),
            "{case}: a repair waits for the conditional write"
        );
        p.traps[0].release.notify_one();
        write.await.expect("task").unwrap_or_else(|e| panic!("{case}: {e}"));
        drop(repair.await);
        assert_eq!(
            p.stored(Side::Mirror, "k").await.as_deref(),
            Some(&b"conditional"[..]),
            "{case}"
        );
    }
}

#[tokio::test]
async fn a_hung_store_does_not_stall_the_drainer() {
    // The primary takes the repair's PUT of "k" and never answers (SIGSTOP).
    let p = Pair::new([(Trap::HangPut, "k"), (Trap::None, "")]).await;
    p.outage(Side::Primary, true);
    p.put("k", b"missed by the primary", 100).await;
    p.outage(Side::Primary, false);
    let drain = tokio::spawn({
        let mirror = Arc::clone(&p.mirror);
        async move { drain_due(&mirror).await }
    });
    p.traps[0].reached.notified().await;
    // The probe notices the hang and opens the breaker: the attempt is given up on.
    p.outage(Side::Primary, true);
    tokio::time::timeout(std::time::Duration::from_secs(60), drain)
        .await
        .expect("the drainer gave up on the hung store")
        .expect("drainer");
    let summary = p.mirror.backlog().summary();
    assert_eq!(summary.records, 1, "the hung repair stays pending");
    assert_eq!(summary.failed_attempts, 1);
    assert_eq!(p.stored(Side::Primary, "k").await, None);
}

#[test]
fn the_last_recorded_change_decides_when_no_store_shows_a_newer_version() {
    use super::{Verdict, decide};
    let (p, m) = (Side::Primary, Side::Mirror);
    // A version newer than the tombstone is read first.
    assert_eq!(decide(Some((m, 300)), Some(200), None), Verdict::Order([m, p]));
    // The store that missed the delete still has an older version, or is unreachable now and
    // may have one: deleted either way.
    assert_eq!(decide(Some((p, 100)), Some(200), None), Verdict::Deleted);
    assert_eq!(decide(None, Some(200), None), Verdict::Deleted);
    assert_eq!(decide(Some((p, 0)), Some(200), None), Verdict::Deleted);
    assert_eq!(decide(None, Some(200), Some(100)), Verdict::Deleted);
    // A write missed after the delete lives in a store not reachable now: whichever has it.
    assert_eq!(decide(None, Some(200), Some(300)), Verdict::Usual);
    // No tombstone: the newest version first.
    assert_eq!(decide(Some((m, 100)), None, Some(100)), Verdict::Order([m, p]));
    assert_eq!(decide(None, None, Some(100)), Verdict::Usual);
}
