//! The workloads: what one phase sends to one target, with how many requests in flight, and the
//! driver that runs them and times every request.
//!
//! Every body comes from one random buffer held in memory (slices of it: no copy, no disk), and
//! every GET is compared byte for byte with the slice it must return, so a fast wrong answer
//! fails the run instead of winning it.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use reqwest::StatusCode;
use tokio::task::JoinSet;

use crate::sigv4::Signer;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;
/// Distinct small objects a target cycles through.
const SMALL_KEYS: usize = 4096;
/// Odd multiplier spreading ranged reads over the large object (Fibonacci hashing).
const SPREAD: u64 = 0x9E37_79B9_7F4A_7C15;

/// Sizes, counts and durations of every phase (`--quick` shrinks them for a smoke run).
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub large: u64,
    pub large_ops_c1: usize,
    pub large_ops_c8: usize,
    pub small: u64,
    pub small_conc: usize,
    pub huge: u64,
    pub range: u64,
    pub range_conc: usize,
    pub timed: Duration,
    pub warm_up: Duration,
}

impl Sizes {
    pub fn full() -> Self {
        Self {
            large: 64 * MIB,
            large_ops_c1: 4,
            large_ops_c8: 16,
            small: 4 * KIB,
            small_conc: 32,
            huge: GIB,
            range: MIB,
            range_conc: 8,
            timed: Duration::from_secs(3),
            warm_up: Duration::from_millis(300),
        }
    }

    pub fn quick() -> Self {
        Self {
            large: 8 * MIB,
            large_ops_c1: 2,
            large_ops_c8: 8,
            huge: 64 * MIB,
            timed: Duration::from_secs(1),
            warm_up: Duration::from_millis(100),
            ..Self::full()
        }
    }

    /// Bytes of random data the phases draw their bodies from.
    pub fn data_len(&self) -> u64 {
        self.huge.max(self.large * self.large_ops_c8 as u64)
    }
}

/// One kind of work, run against every target in turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    PutLarge1,
    GetLarge1,
    PutLarge8,
    GetLarge8,
    PutSmall,
    GetSmall,
    PutHuge,
    GetRange,
}

impl Phase {
    /// Every phase, in the order of a round. `PutHuge` only runs in the first round: it writes
    /// the object `GetRange` reads.
    pub const ALL: [Phase; 8] = [
        Phase::PutLarge1,
        Phase::GetLarge1,
        Phase::PutLarge8,
        Phase::GetLarge8,
        Phase::PutSmall,
        Phase::GetSmall,
        Phase::PutHuge,
        Phase::GetRange,
    ];

    /// Short name on the command line (`--only`, `--profile`).
    pub fn id(self) -> &'static str {
        match self {
            Phase::PutLarge1 => "put-large-1",
            Phase::GetLarge1 => "get-large-1",
            Phase::PutLarge8 => "put-large-8",
            Phase::GetLarge8 => "get-large-8",
            Phase::PutSmall => "put-small",
            Phase::GetSmall => "get-small",
            Phase::PutHuge => "put-huge",
            Phase::GetRange => "get-range",
        }
    }

    pub fn from_id(id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.id() == id)
    }

    pub fn label(self, s: &Sizes) -> String {
        match self {
            Phase::PutLarge1 => format!("PUT {} x1", size(s.large)),
            Phase::GetLarge1 => format!("GET {} x1", size(s.large)),
            Phase::PutLarge8 => format!("PUT {} x8", size(s.large)),
            Phase::GetLarge8 => format!("GET {} x8", size(s.large)),
            Phase::PutSmall => format!("PUT {} x{}", size(s.small), s.small_conc),
            Phase::GetSmall => format!("GET {} x{}", size(s.small), s.small_conc),
            Phase::PutHuge => format!("PUT {} x1", size(s.huge)),
            Phase::GetRange => format!("GET {} ranges of {} x{}", size(s.range), size(s.huge), s.range_conc),
        }
    }

    /// Small-object phases are judged by operations per second, the others by bytes.
    pub fn is_small(self) -> bool {
        matches!(self, Phase::PutSmall | Phase::GetSmall)
    }

    /// Large-object phases (the throughput, CPU and memory goals).
    pub fn is_large(self) -> bool {
        matches!(
            self,
            Phase::PutLarge1 | Phase::GetLarge1 | Phase::PutLarge8 | Phase::GetLarge8
        )
    }

    fn is_timed(self) -> bool {
        matches!(self, Phase::PutSmall | Phase::GetSmall | Phase::GetRange)
    }
}

/// `4 KiB`, `64 MiB`, `1 GiB`.
pub fn size(bytes: u64) -> String {
    match bytes {
        b if b >= GIB && b % GIB == 0 => format!("{} GiB", b / GIB),
        b if b >= MIB && b % MIB == 0 => format!("{} MiB", b / MIB),
        b => format!("{} KiB", b / KIB),
    }
}

/// One endpoint the phases run against, with its own bucket.
pub struct Target {
    pub endpoint: String,
    pub bucket: String,
    /// How many small objects exist (written by `PutSmall`), for `GetSmall` to cycle over.
    small_written: AtomicUsize,
}

impl Target {
    pub fn new(endpoint: String, bucket: String) -> Self {
        Self {
            endpoint,
            bucket,
            small_written: AtomicUsize::new(0),
        }
    }
}

/// What every request needs: one HTTP client, the signer, the source data.
pub struct Ctx {
    pub client: reqwest::Client,
    pub signer: Signer,
    pub data: Bytes,
    pub sizes: Sizes,
}

/// What a phase measured, client side.
#[derive(Debug, Default)]
pub struct Stats {
    pub ops: usize,
    pub bytes: u64,
    pub elapsed: Duration,
    /// Per-request latency, in the order requests finished.
    pub latencies: Vec<Duration>,
}

/// When a phase stops.
#[derive(Debug, Clone, Copy)]
enum Limit {
    Ops(usize),
    For(Duration),
}

// === impl Ctx ===

impl Ctx {
    /// Creates the target's bucket (an existing one of ours is fine).
    pub async fn create_bucket(&self, target: &Target) -> Result<()> {
        let url = self
            .signer
            .presign("PUT", &target.endpoint, &format!("/{}", target.bucket));
        let resp = self.client.put(url).send().await?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        if status.is_success() || body.contains("BucketAlreadyOwnedByYou") {
            return Ok(());
        }
        bail!(
            "create bucket {} at {}: {status}: {body}",
            target.bucket,
            target.endpoint
        )
    }

    async fn put(&self, target: &Target, key: &str, body: Bytes) -> Result<u64> {
        let url = self
            .signer
            .presign("PUT", &target.endpoint, &format!("/{}/{key}", target.bucket));
        let len = body.len() as u64;
        let resp = self.client.put(url).body(body).send().await?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            bail!("PUT {key} at {}: {status}: {text}", target.endpoint);
        }
        resp.bytes().await?;
        Ok(len)
    }

    /// GETs `key` (or `range` of it) and checks every byte against `expect`.
    async fn get(&self, target: &Target, key: &str, range: Option<(u64, u64)>, expect: Bytes) -> Result<u64> {
        let url = self
            .signer
            .presign("GET", &target.endpoint, &format!("/{}/{key}", target.bucket));
        let mut req = self.client.get(url);
        if let Some((a, b)) = range {
            req = req.header(reqwest::header::RANGE, format!("bytes={a}-{}", b - 1));
        }
        let mut resp = req.send().await?;
        let status = resp.status();
        let want = if range.is_some() {
            StatusCode::PARTIAL_CONTENT
        } else {
            StatusCode::OK
        };
        if status != want {
            let text = resp.text().await.unwrap_or_default();
            bail!("GET {key} at {}: {status}: {text}", target.endpoint);
        }
        let mut pos = 0usize;
        while let Some(chunk) = resp.chunk().await.with_context(|| format!("GET {key} body"))? {
            let end = pos + chunk.len();
            ensure!(end <= expect.len(), "GET {key}: more bytes than the object has");
            ensure!(chunk[..] == expect[pos..end], "GET {key}: wrong bytes at offset {pos}");
            pos = end;
        }
        ensure!(pos == expect.len(), "GET {key}: {pos} of {} bytes", expect.len());
        Ok(pos as u64)
    }

    fn large(&self, i: usize) -> Bytes {
        let len = self.sizes.large as usize;
        self.data.slice(i * len..(i + 1) * len)
    }

    fn small(&self, i: usize) -> Bytes {
        let len = self.sizes.small as usize;
        self.data.slice(i * len..(i + 1) * len)
    }

    fn huge(&self) -> Bytes {
        self.data.slice(..self.sizes.huge as usize)
    }
}

/// Runs the un-timed lead-in of `phase` (connections set up, caches warm), if it has one.
pub async fn warm_up(ctx: &Arc<Ctx>, target: &Arc<Target>, phase: Phase) -> Result<()> {
    if phase.is_timed() {
        run_limited(ctx, target, phase, Limit::For(ctx.sizes.warm_up)).await?;
    }
    Ok(())
}

/// Runs `phase` against `target` and times it.
pub async fn run(ctx: &Arc<Ctx>, target: &Arc<Target>, phase: Phase) -> Result<Stats> {
    let s = ctx.sizes;
    let limit = match phase {
        Phase::PutLarge1 | Phase::GetLarge1 => Limit::Ops(s.large_ops_c1),
        Phase::PutLarge8 | Phase::GetLarge8 => Limit::Ops(s.large_ops_c8),
        Phase::PutHuge => Limit::Ops(1),
        Phase::PutSmall | Phase::GetSmall | Phase::GetRange => Limit::For(s.timed),
    };
    run_limited(ctx, target, phase, limit).await
}

async fn run_limited(ctx: &Arc<Ctx>, target: &Arc<Target>, phase: Phase, limit: Limit) -> Result<Stats> {
    let s = ctx.sizes;
    let (c, t) = (ctx.clone(), target.clone());
    let stats = match phase {
        Phase::PutLarge1 | Phase::PutLarge8 => {
            let conc = if phase == Phase::PutLarge1 { 1 } else { 8 };
            drive(conc, limit, move |i| {
                let (c, t) = (c.clone(), t.clone());
                async move { c.put(&t, &format!("large/{i}"), c.large(i)).await }
            })
            .await?
        }
        Phase::GetLarge1 | Phase::GetLarge8 => {
            let conc = if phase == Phase::GetLarge1 { 1 } else { 8 };
            drive(conc, limit, move |i| {
                let (c, t) = (c.clone(), t.clone());
                async move { c.get(&t, &format!("large/{i}"), None, c.large(i)).await }
            })
            .await?
        }
        Phase::PutSmall => {
            let stats = drive(s.small_conc, limit, move |i| {
                let (c, t) = (c.clone(), t.clone());
                let k = i % SMALL_KEYS;
                async move { c.put(&t, &format!("small/{k}"), c.small(k)).await }
            })
            .await?;
            target
                .small_written
                .fetch_max(stats.ops.min(SMALL_KEYS), Ordering::Relaxed);
            stats
        }
        Phase::GetSmall => {
            let written = target.small_written.load(Ordering::Relaxed);
            ensure!(written > 0, "GET of small objects before any was written");
            drive(s.small_conc, limit, move |i| {
                let (c, t) = (c.clone(), t.clone());
                let k = i % written;
                async move { c.get(&t, &format!("small/{k}"), None, c.small(k)).await }
            })
            .await?
        }
        Phase::PutHuge => {
            drive(1, limit, move |_| {
                let (c, t) = (c.clone(), t.clone());
                async move { c.put(&t, "huge", c.huge()).await }
            })
            .await?
        }
        Phase::GetRange => {
            drive(s.range_conc, limit, move |i| {
                let (c, t) = (c.clone(), t.clone());
                // Unaligned offsets: most ranges straddle one more segment than they fill.
                let start = (i as u64).wrapping_mul(SPREAD) % (s.huge - s.range);
                let end = start + s.range;
                async move {
                    let expect = c.data.slice(start as usize..end as usize);
                    c.get(&t, "huge", Some((start, end)), expect).await
                }
            })
            .await?
        }
    };
    Ok(stats)
}

/// Runs `op(0)`, `op(1)`, … with `conc` requests in flight until `limit`, timing each.
async fn drive<F, Fut>(conc: usize, limit: Limit, op: F) -> Result<Stats>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<u64>> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..conc {
        let (op, next) = (op.clone(), next.clone());
        tasks.spawn(async move {
            let (mut latencies, mut bytes) = (Vec::new(), 0u64);
            loop {
                if let Limit::For(d) = limit
                    && start.elapsed() >= d
                {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if let Limit::Ops(n) = limit
                    && i >= n
                {
                    break;
                }
                let t0 = Instant::now();
                bytes += op(i).await?;
                latencies.push(t0.elapsed());
            }
            anyhow::Ok((latencies, bytes))
        });
    }
    let mut stats = Stats::default();
    // An error drops the set, which aborts the other workers.
    while let Some(done) = tasks.join_next().await {
        let (latencies, bytes) = done??;
        stats.ops += latencies.len();
        stats.bytes += bytes;
        stats.latencies.extend(latencies);
    }
    stats.elapsed = start.elapsed();
    Ok(stats)
}
