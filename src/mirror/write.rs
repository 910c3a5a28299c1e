//! Mirrored writes. Each write runs on both stores at once (a body through a bounded tee, one
//! encryption pass); each store's part is a [`Leg`]. [`Mirror::settle`] turns the two legs into
//! the client's answer as the write mode says:
//!
//! | legs | `sync` | `async` | `both` |
//! |---|---|---|---|
//! | both done | ack | — | ack |
//! | one done, other failed or down | ack after a repair record beside the done one | ack after the record | error (the record is still written, so the stores converge) |
//! | neither done | error | error | error |
//!
//! (`async` writes a body to one store, stores the record, acknowledges, and copies to the
//! other store in the background; its other writes behave as `sync`.)
//!
//! A store that has not answered is waited for until it answers or its breaker opens (the
//! background probe marks a hung store down within seconds); a body that stops flowing to one
//! store does not stop the other.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;

use super::record::{self, Op, RepairRecord};
use super::{Mirror, Side, WriteMode, untag};
use crate::backend::health::StoreHealth;
use crate::backend::{
    BackendError, BackendResult, ByteStream, Metadata, ObjectStore, PutCondition, Source, receiver_stream,
};
use crate::crypto::layout::is_reserved;

/// Chunks buffered per store in the tee: memory per mirrored upload stays at a few chunks even
/// when one store is slower than the other.
const TEE_DEPTH: usize = 4;
/// How often a wait on a store checks whether its breaker opened.
const BREAKER_POLL: Duration = Duration::from_millis(100);

/// One store's part in a write.
enum Leg<T> {
    /// The store has the write.
    Done(T),
    /// The store refused or failed.
    Failed(BackendError),
    /// The store was not tried (its breaker is open) or was given up on (it hung).
    Down,
}

impl<T> Leg<T> {
    fn from(result: BackendResult<T>) -> Self {
        match result {
            Ok(v) => Self::Done(v),
            Err(e) => Self::Failed(e),
        }
    }

    fn outcome(&self) -> &'static str {
        match self {
            Self::Done(_) => "ok",
            Self::Failed(_) => "failed",
            Self::Down => "down",
        }
    }
}

/// Resolves when `health` says the store is down.
async fn until_down(health: &StoreHealth) {
    while health.is_up() {
        tokio::time::sleep(BREAKER_POLL).await;
    }
}

/// Copies an `io::Error` (it is not `Clone`) so both tee branches can fail with it.
fn copy_error(e: &std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), e.to_string())
}

fn both_down() -> BackendError {
    BackendError::Upstream {
        store: "mirror-pair".into(),
        message: "both stores are unreachable".into(),
        retryable: true,
    }
}

fn needs_both(side: Side) -> BackendError {
    BackendError::Upstream {
        store: side.name().into(),
        message: "store unreachable and [mirror] write = \"both\"".into(),
        retryable: true,
    }
}

impl Mirror {
    /// Runs `a` (primary) and `b` (mirror) at once; once one store has answered, the other is
    /// waited for until it answers or its breaker opens.
    async fn legs<T, A, B>(&self, a: A, b: B) -> [Leg<T>; 2]
    where
        A: Future<Output = BackendResult<T>>,
        B: Future<Output = BackendResult<T>>,
    {
        let (ha, hb) = (self.health(Side::Primary), self.health(Side::Mirror));
        let a = async {
            tokio::select! {
                r = a => Leg::from(r),
                () = until_down(ha) => Leg::Down,
            }
        };
        let b = async {
            tokio::select! {
                r = b => Leg::from(r),
                () = until_down(hb) => Leg::Down,
            }
        };
        let (a, b) = tokio::join!(a, b);
        [a, b]
    }

    /// Which stores a write may use now: both up, one, or (for `both`) an error.
    fn writable(&self) -> BackendResult<[bool; 2]> {
        let up = [self.is_up(Side::Primary), self.is_up(Side::Mirror)];
        if self.settings.write == WriteMode::Both
            && let Some(down) = [Side::Primary, Side::Mirror]
                .into_iter()
                .find(|s| !up[super::index(*s)])
        {
            return Err(needs_both(down));
        }
        if up == [false, false] {
            // Both believed down: try both anyway (the breaker may be stale).
            return Ok([true, true]);
        }
        Ok(up)
    }

    /// Runs a non-body write on the stores `writable` allows and settles it.
    async fn write_each<'a, T, F, Fut>(&'a self, op: Op, bucket: &str, key: &str, f: F) -> BackendResult<(Side, T)>
    where
        F: Fn(Side, &'a Arc<dyn ObjectStore>) -> Fut,
        Fut: Future<Output = BackendResult<T>>,
    {
        let up = self.writable()?;
        let run = |side: Side| {
            let fut = f(side, self.store(side));
            async move {
                if up[super::index(side)] {
                    fut.await
                } else {
                    Err(BackendError::Upstream {
                        store: side.name().into(),
                        message: "breaker open".into(),
                        retryable: true,
                    })
                }
            }
        };
        let mut legs = self.legs(run(Side::Primary), run(Side::Mirror)).await;
        for (side, up) in [(Side::Primary, up[0]), (Side::Mirror, up[1])] {
            if !up {
                legs[super::index(side)] = Leg::Down;
            }
        }
        self.settle(op, bucket, key, legs).await
    }

    /// The client's answer from both legs of a write, storing a repair record when one store
    /// has the write and the other does not. Returns the side whose value is returned.
    async fn settle<T>(&self, op: Op, bucket: &str, key: &str, legs: [Leg<T>; 2]) -> BackendResult<(Side, T)> {
        let [a, b] = legs;
        for (side, leg) in [(Side::Primary, &a), (Side::Mirror, &b)] {
            metrics::counter!("escrow_mirror_writes_total", "store" => side.name(), "outcome" => leg.outcome())
                .increment(1);
            if let Leg::Failed(e) = leg {
                self.observe(side, e);
            }
        }
        let first = self.read_order()[0];
        let took = [matches!(a, Leg::Done(_)), matches!(b, Leg::Done(_))];
        let answer = match (a, b) {
            (Leg::Done(va), Leg::Done(vb)) => Ok(if first == Side::Primary {
                (Side::Primary, va)
            } else {
                (Side::Mirror, vb)
            }),
            // A store that has the write got the whole body: a body failure on the other leg is
            // the tee giving up on that store (it stopped taking bytes), not the client's.
            (Leg::Done(v), missed) => self.one_store_has_it(op, bucket, key, Side::Primary, v, missed).await,
            (missed, Leg::Done(v)) => self.one_store_has_it(op, bucket, key, Side::Mirror, v, missed).await,
            // The client's body failed: neither store kept anything.
            (Leg::Failed(e @ BackendError::Body(_)), _) | (_, Leg::Failed(e @ BackendError::Body(_))) => Err(e),
            // Both failed: an answer about the request beats an outage.
            (Leg::Failed(ea), Leg::Failed(eb)) => Err(if ea.is_outage() && !eb.is_outage() { eb } else { ea }),
            (Leg::Failed(e), Leg::Down) | (Leg::Down, Leg::Failed(e)) => Err(e),
            (Leg::Down, Leg::Down) => Err(both_down()),
        };
        if answer.is_ok() {
            for (side, took) in [(Side::Primary, took[0]), (Side::Mirror, took[1])] {
                if took {
                    super::served::note(side);
                }
            }
        }
        answer
    }

    /// `has` holds the write and the other store missed it (`missed`): store the repair record
    /// beside the write, then acknowledge (or, for `both`, fail).
    async fn one_store_has_it<T>(
        &self,
        op: Op,
        bucket: &str,
        key: &str,
        has: Side,
        value: T,
        missed: Leg<T>,
    ) -> BackendResult<(Side, T)> {
        let missing_from = has.other();
        let why = match &missed {
            Leg::Failed(e) => e.kind(),
            _ => "down",
        };
        let rec = RepairRecord::new(op, bucket, key, missing_from);
        let recorded = record::write(self.store(has).as_ref(), self.sealer.as_ref(), &rec).await;
        match &recorded {
            Ok(record_key) => {
                self.backlog.noted(has, record_key, &rec);
                tracing::warn!(
                    bucket,
                    op = ?op,
                    has = has.name(),
                    missing_from = missing_from.name(),
                    why,
                    "mirror: one store missed a write; repair record stored"
                );
                self.wake_drainer();
            }
            Err(e) => {
                tracing::error!(bucket, op = ?op, has = has.name(), error = %e, "mirror: repair record could not be stored; write not acknowledged");
            }
        }
        let refused = match missed {
            Leg::Failed(e) => e,
            _ => needs_both(missing_from),
        };
        if self.settings.write == WriteMode::Both {
            return Err(refused);
        }
        match recorded {
            Ok(_) => Ok((has, value)),
            // Without a record the write would be lost on the other store; the client retries.
            Err(e) if e.is_outage() => Err(e),
            Err(_) => Err(refused),
        }
    }

    /// A PUT: the body through the tee to both stores (or to one and a record, or for `async`
    /// to the first store, a record, and a background copy).
    pub(super) async fn put_mirrored(
        &self,
        bucket: &str,
        key: &str,
        body: ByteStream,
        len: u64,
        metadata: Metadata,
    ) -> BackendResult<(Side, String)> {
        let up = self.writable()?;
        if self.settings.write == WriteMode::Async || !(up[0] && up[1]) {
            let side = self
                .read_order()
                .into_iter()
                .find(|s| up[super::index(*s)])
                .unwrap_or(Side::Primary);
            let leg = Leg::from(self.store(side).put_object(bucket, key, body, len, metadata).await);
            let legs = match side {
                Side::Primary => [leg, Leg::Down],
                Side::Mirror => [Leg::Down, leg],
            };
            return self.settle(Op::Put, bucket, key, legs).await;
        }
        let both_or_nothing = self.settings.write == WriteMode::Both;
        let (tx_a, rx_a) = mpsc::channel(TEE_DEPTH);
        let (tx_b, rx_b) = mpsc::channel(TEE_DEPTH);
        let pump = self.tee(body, [tx_a, tx_b], both_or_nothing);
        let put_a = self
            .store(Side::Primary)
            .put_object(bucket, key, receiver_stream(rx_a), len, metadata.clone());
        let put_b = self
            .store(Side::Mirror)
            .put_object(bucket, key, receiver_stream(rx_b), len, metadata);
        let ((), legs) = tokio::join!(pump, self.legs(put_a, put_b));
        self.settle(Op::Put, bucket, key, legs).await
    }

    /// Feeds every chunk of `body` to each branch still listening. A branch whose store stops
    /// taking bytes is dropped once its breaker opens (its upload then fails short, so that
    /// store keeps nothing); with `both_or_nothing` any branch's failure fails all of them.
    async fn tee(
        &self,
        mut body: ByteStream,
        branches: [mpsc::Sender<std::io::Result<Bytes>>; 2],
        both_or_nothing: bool,
    ) {
        let health = [self.health(Side::Primary), self.health(Side::Mirror)];
        let mut live: Vec<(usize, mpsc::Sender<std::io::Result<Bytes>>)> = branches.into_iter().enumerate().collect();
        while let Some(item) = body.next().await {
            match item {
                Ok(chunk) => {
                    let sends = live.iter().map(|(i, tx)| {
                        let chunk = chunk.clone();
                        let h = health[*i];
                        async move {
                            // The common case costs no timer: the branch has room.
                            let chunk = match tx.try_send(Ok(chunk)) {
                                Ok(()) => return true,
                                Err(mpsc::error::TrySendError::Closed(_)) => return false,
                                Err(mpsc::error::TrySendError::Full(item)) => item,
                            };
                            tokio::select! {
                                sent = tx.send(chunk) => sent.is_ok(),
                                () = until_down(h) => false,
                            }
                        }
                    });
                    let sent = futures::future::join_all(sends).await;
                    let failed = sent.iter().any(|ok| !ok);
                    if failed && both_or_nothing {
                        let abort = || Err(std::io::Error::other("the other store's upload failed"));
                        for (_, tx) in &live {
                            let _ = tx.try_send(abort());
                        }
                        return;
                    }
                    let mut kept = sent.into_iter();
                    live.retain(|_| kept.next().unwrap_or(false));
                    if live.is_empty() {
                        return;
                    }
                }
                Err(e) => {
                    for (_, tx) in &live {
                        let _ = tx.send(Err(copy_error(&e))).await;
                    }
                    return;
                }
            }
        }
    }

    /// DeleteObject on both stores; a store that missed it gets a tombstone record.
    pub(super) async fn delete_mirrored(&self, bucket: &str, key: &str) -> BackendResult<()> {
        self.write_each(Op::Delete, bucket, key, |_, s| s.delete_object(bucket, key))
            .await
            .map(drop)
    }

    /// A composed object (completion, server-side copy): each store composes from its own copies
    /// of the sources, naming a source's store ETag only to the store it came from. A source
    /// object pinned to one store's version (a copy's source, opened from that store) is used in
    /// the other store only if that store holds the same sealed version, pinned to it there; a
    /// store whose copy of the source is stale or missing does not compose from it, it misses
    /// the write and gets a repair record (the destination is then copied from the store that
    /// composed it). Parts of an upload (reserved keys) are each store's own.
    pub(super) async fn compose_mirrored(
        &self,
        bucket: &str,
        key: &str,
        sources: Vec<Source>,
        tail: Bytes,
        metadata: Metadata,
    ) -> BackendResult<(Side, String)> {
        let (a, b) = tokio::join!(
            self.pins_for(Side::Primary, &sources),
            self.pins_for(Side::Mirror, &sources)
        );
        // Each store's leg is started once and takes its own sources.
        let pins = std::sync::Mutex::new([Some(a), Some(b)]);
        let (tail, metadata, pins) = (&tail, &metadata, &pins);
        self.write_each(Op::Put, bucket, key, |side, s| async move {
            let own = pins.lock().unwrap_or_else(|p| p.into_inner())[super::index(side)]
                .take()
                .unwrap_or(Err(BackendError::InvalidArgument("a store's leg of a copy ran twice")))?;
            s.compose(bucket, key, own, tail.clone(), metadata.clone()).await
        })
        .await
    }

    /// The sources as the store on `side` must read them: its own ETag for each pinned source,
    /// or an error if its copy of a pinned source object is not the pinned version.
    async fn pins_for(&self, side: Side, sources: &[Source]) -> BackendResult<Vec<Source>> {
        let mut own = Vec::with_capacity(sources.len());
        for src in sources {
            let pinned_to = src.etag.as_deref().and_then(super::origin);
            let etag = match (src.etag.as_deref(), pinned_to) {
                (Some(etag), Some(from)) if from != side && !is_reserved(&src.key) && self.is_up(side) => Some(
                    self.same_source_in(side, from, src, untag(etag, from).unwrap_or(etag))
                        .await?,
                ),
                (Some(etag), _) => untag(etag, side).map(str::to_string),
                (None, _) => None,
            };
            own.push(Source { etag, ..src.clone() });
        }
        Ok(own)
    }

    /// The ETag in the store on `side` of source `src`, pinned in the store `from` to
    /// `from_etag`, if both hold the same sealed version.
    async fn same_source_in(&self, side: Side, from: Side, src: &Source, from_etag: &str) -> BackendResult<String> {
        let (there, here) = tokio::join!(
            self.store(from).head_object(&src.bucket, &src.key),
            self.store(side).head_object(&src.bucket, &src.key)
        );
        let stale = || BackendError::Upstream {
            store: side.name().into(),
            message: "this store's copy of the copy source is not the version being copied".into(),
            // Not an outage: the store is fine, it only missed a write (its breaker stays shut).
            retryable: false,
        };
        match (there, here) {
            (Ok(there), Ok(here)) if there.etag == from_etag && super::copy::same_version(&there, &here) => {
                Ok(here.etag)
            }
            (Ok(_), Ok(_)) | (Ok(_), Err(BackendError::NoSuchKey | BackendError::NoSuchBucket)) => Err(stale()),
            (Err(e), _) | (_, Err(e)) => Err(e),
        }
    }

    /// CreateBucket on both stores; one that already has the bucket counts as done when the
    /// other created it.
    pub(super) async fn create_bucket_mirrored(&self, bucket: &str) -> BackendResult<()> {
        let up = self.writable()?;
        let run = |side: Side| async move {
            if !up[super::index(side)] {
                return Leg::Down;
            }
            Leg::from(self.store(side).create_bucket(bucket).await)
        };
        let (a, b) = tokio::join!(run(Side::Primary), run(Side::Mirror));
        let exists = |l: &Leg<()>| matches!(l, Leg::Failed(BackendError::BucketAlreadyExists { .. }));
        let legs = match (a, b) {
            // The primary's answer (whose bucket it says it is) stands.
            (Leg::Failed(e), b) if exists(&b) && matches!(e, BackendError::BucketAlreadyExists { .. }) => {
                return Err(e);
            }
            (Leg::Done(()), b) if exists(&b) => [Leg::Done(()), Leg::Done(())],
            (a, Leg::Done(())) if exists(&a) => [Leg::Done(()), Leg::Done(())],
            (a, b) => [a, b],
        };
        self.settle(Op::CreateBucket, bucket, "", legs).await.map(drop)
    }

    /// DeleteBucket needs both stores: a deleted bucket leaves no place for a tombstone.
    pub(super) async fn delete_bucket_mirrored(&self, bucket: &str) -> BackendResult<()> {
        for side in [Side::Primary, Side::Mirror] {
            if !self.is_up(side) {
                return Err(BackendError::Upstream {
                    store: side.name().into(),
                    message: "a bucket is deleted only while both stores are reachable".into(),
                    retryable: true,
                });
            }
        }
        let (a, b) = tokio::join!(
            self.store(Side::Primary).delete_bucket(bucket),
            self.store(Side::Mirror).delete_bucket(bucket)
        );
        match (a, b) {
            (Ok(()), Ok(()) | Err(BackendError::NoSuchBucket)) | (Err(BackendError::NoSuchBucket), Ok(())) => Ok(()),
            (Err(e), _) | (_, Err(e)) => Err(e),
        }
    }
}

// === conditional writes ===

/// Why a conditional write cannot run: the primary, which arbitrates them, is unreachable.
fn primary_needed() -> BackendError {
    BackendError::Upstream {
        store: Side::Primary.name().into(),
        message: "conditional writes need the primary store, which is unreachable".into(),
        retryable: true,
    }
}

impl Mirror {
    /// A conditional write (`If-None-Match: *`, `If-Match`) on the pair. The primary arbitrates:
    /// the condition is sent to it with the write (`write`), atomic there, so concurrent
    /// conditional writers through any number of instances are ordered by the primary alone;
    /// the mirror must agree beforehand (absent for `Absent`, the same sealed version for
    /// `Matches`; else 412 or 409), and afterwards follows the primary: the written ciphertext
    /// is copied to it (`sync`, `both`), or a repair record does it in the background (`async`,
    /// or the mirror down). With the primary down the answer is a retryable outage (503): a
    /// conditional write is never done unconditionally, nor decided by the mirror alone.
    pub(super) async fn write_if<F, Fut>(
        &self,
        bucket: &str,
        key: &str,
        condition: PutCondition,
        write: F,
    ) -> BackendResult<(Side, String)>
    where
        F: FnOnce(Arc<dyn ObjectStore>, PutCondition) -> Fut,
        Fut: Future<Output = BackendResult<String>>,
    {
        let up = self.writable()?;
        if !up[0] || !self.is_up(Side::Primary) {
            return Err(primary_needed());
        }
        let (primary, mirror) = (self.store(Side::Primary), self.store(Side::Mirror));
        let mirror_up = self.is_up(Side::Mirror);
        let condition = match condition {
            PutCondition::Absent => {
                if mirror_up {
                    match mirror.head_object(bucket, key).await {
                        Ok(_) => return Err(BackendError::PreconditionFailed),
                        Err(BackendError::NoSuchKey) => {}
                        Err(e) => return Err(e),
                    }
                }
                PutCondition::Absent
            }
            PutCondition::Matches(tagged) => {
                let primary_head = primary.head_object(bucket, key).await?;
                let seen = match super::origin(&tagged) {
                    Some(Side::Mirror) => mirror.head_object(bucket, key).await?,
                    _ => primary_head.clone(),
                };
                let seen_etag =
                    super::origin(&tagged).map_or(tagged.as_str(), |side| untag(&tagged, side).unwrap_or_default());
                if seen.etag != seen_etag {
                    return Err(BackendError::PreconditionFailed);
                }
                if mirror_up && super::origin(&tagged) != Some(Side::Mirror) {
                    match mirror.head_object(bucket, key).await {
                        Ok(h) if super::copy::same_version(&h, &primary_head) => {}
                        // The stores disagree (a repair is pending): not decidable now.
                        Ok(_) | Err(BackendError::NoSuchKey) => return Err(BackendError::ConditionalConflict),
                        Err(e) => return Err(e),
                    }
                }
                if !super::copy::same_version(&seen, &primary_head) {
                    return Err(BackendError::ConditionalConflict);
                }
                PutCondition::Matches(primary_head.etag)
            }
        };
        let written = match write(Arc::clone(primary), condition).await {
            Ok(etag) => etag,
            Err(e) => {
                self.observe(Side::Primary, &e);
                return Err(e);
            }
        };
        let follow = if self.settings.write == WriteMode::Async || !mirror_up {
            Leg::Down
        } else {
            let copy = super::copy::copy_between(primary, mirror, bucket, key);
            let leg = tokio::select! {
                r = copy => Leg::from(r),
                () = until_down(self.health(Side::Mirror)) => Leg::Down,
            };
            match leg {
                // The copy read whatever the primary held by then; if that was a later writer's
                // version, ours may have landed after theirs: a record settles the mirror on
                // the newest.
                Leg::Done(copied) => match primary.head_object(bucket, key).await {
                    Ok(now) if super::copy::same_version(&now, &copied) => Leg::Done(copied.etag),
                    _ => Leg::Failed(BackendError::ConditionalConflict),
                },
                Leg::Failed(e) => Leg::Failed(e),
                Leg::Down => Leg::Down,
            }
        };
        self.settle(Op::Put, bucket, key, [Leg::Done(written), follow]).await
    }
}
