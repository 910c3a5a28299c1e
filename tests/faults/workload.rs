//! The continuous mixed workload: several concurrent `aws-sdk-s3` clients of the proxy, each
//! owning its own keys (so every key's operations are sequential and its expected content is
//! exact), doing PUT (single and multipart), GET, ranged GET, LIST, DELETE and COPY.
//!
//! The ledger records, per key, the last acknowledged state and every write since that failed
//! (a failed write may or may not have landed): what the key may legitimately hold. A read's
//! answer is checked against it as it arrives; the stores' contents are checked at the end.
//!
//! [`World`] history says which processes were up when: a read that failed while the proxy
//! and at least one store were up throughout is a failure the mirror promises never to have.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The bucket every scenario uses.
pub const BUCKET: &str = "faults";
/// Keys per client.
const KEYS_PER_CLIENT: usize = 12;
/// Attempts per operation (the client's own retry policy).
const ATTEMPTS: u32 = 3;
/// Bound on one attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// Multipart: first part (the smallest S3 allows), then a small last part.
const PART: usize = 5 << 20;

/// What a key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    /// Nothing (never written, or deleted).
    Absent,
    /// [`body`]`(seed, len)`.
    Data {
        /// Generator seed.
        seed: u64,
        /// Length in bytes.
        len: usize,
    },
}

/// The deterministic content of a written value.
pub fn body(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// What a key may hold: its last acknowledged state, and the writes that failed since.
#[derive(Debug, Clone)]
pub struct KeyState {
    /// The last acknowledged state.
    pub acked: Value,
    /// Whether any write to this key was ever acknowledged.
    pub ever_acked: bool,
    /// Writes issued since that were not acknowledged (each may have landed).
    pub unacked: Vec<Value>,
}

impl KeyState {
    /// Every value the key may hold.
    pub fn allowed(&self) -> impl Iterator<Item = &Value> {
        std::iter::once(&self.acked).chain(self.unacked.iter())
    }

    /// Whether the key's content is certain.
    pub fn certain(&self) -> bool {
        self.unacked.is_empty()
    }
}

impl Default for KeyState {
    fn default() -> Self {
        Self {
            acked: Value::Absent,
            ever_acked: false,
            unacked: Vec::new(),
        }
    }
}

/// Which processes are up.
#[derive(Debug, Clone, Copy)]
pub struct World {
    /// The primary store answers.
    pub primary: bool,
    /// The mirror store answers.
    pub mirror: bool,
    /// A proxy instance serves the clients.
    pub proxy: bool,
}

/// The history of [`World`]s, one entry per change.
pub struct Faults {
    history: Mutex<Vec<World>>,
}

impl Faults {
    fn new() -> Self {
        Self {
            history: Mutex::new(vec![World {
                primary: true,
                mirror: true,
                proxy: true,
            }]),
        }
    }

    /// Index of the current world.
    pub fn now(&self) -> usize {
        self.history.lock().expect("faults lock").len() - 1
    }

    /// Records a change.
    pub fn set(&self, change: impl FnOnce(&mut World)) {
        let mut history = self.history.lock().expect("faults lock");
        let mut world = *history.last().expect("one world at least");
        change(&mut world);
        history.push(world);
    }

    /// Whether the proxy and at least one store were up in every world from `a` to `b`.
    fn served_throughout(&self, a: usize, b: usize) -> bool {
        let history = self.history.lock().expect("faults lock");
        history[a..=b].iter().all(|w| w.proxy && (w.primary || w.mirror))
    }
}

/// Counts of one run.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    /// Operations finished (each with up to [`ATTEMPTS`] attempts).
    pub ops: u64,
    /// Attempts that failed (what a client without retries would have seen).
    pub failed_attempts: u64,
    /// Operations that failed after every attempt.
    pub failed_ops: u64,
    /// Read operations (GET, ranged GET, LIST).
    pub reads: u64,
    /// Reads that failed while the proxy and at least one store were up throughout.
    pub failed_reads_served: u64,
    /// Reads that failed while no store (or no proxy) was up at some point.
    pub failed_reads_outage: u64,
    /// Reads that answered something the key may not hold (stale or missing data).
    pub wrong_reads: u64,
    /// Listings that left out a key sure to exist.
    pub listings_hiding: u64,
    /// Writes acknowledged.
    pub acked_writes: u64,
    /// Writes that failed after every attempt.
    pub failed_writes: u64,
    /// Of those, writes that failed while the proxy and at least one store were up throughout
    /// (`sync` promises to acknowledge them).
    pub failed_writes_served: u64,
    /// Operations by kind.
    pub by_kind: BTreeMap<&'static str, u64>,
    /// The first few of each kind of wrong read and failure, for the report.
    pub examples: BTreeMap<&'static str, Vec<String>>,
}

impl Counts {
    fn example(&mut self, kind: &'static str, what: String) {
        let list = self.examples.entry(kind).or_default();
        if list.len() < 6 {
            list.push(what);
        }
    }
}

/// The shared state of a running workload.
pub struct Workload {
    /// The client every worker uses (replaced when the proxy is replaced).
    client: RwLock<Client>,
    /// Which processes are up.
    pub faults: Faults,
    /// Per client: its keys' ledgers.
    pub ledgers: Vec<Mutex<BTreeMap<String, KeyState>>>,
    /// The totals.
    pub counts: Mutex<Counts>,
    done: AtomicU64,
    budget: u64,
    stop: AtomicBool,
}

/// One operation's outcome.
enum Outcome {
    Ok,
    Failed,
}

impl Workload {
    /// A workload of `budget` operations by `clients` clients through `client`.
    pub fn new(client: Client, clients: usize, budget: u64) -> Arc<Self> {
        Arc::new(Self {
            client: RwLock::new(client),
            faults: Faults::new(),
            ledgers: (0..clients).map(|_| Mutex::new(BTreeMap::new())).collect(),
            counts: Mutex::new(Counts::default()),
            done: AtomicU64::new(0),
            budget,
            stop: AtomicBool::new(false),
        })
    }

    /// Points every worker at another proxy.
    pub fn replace_client(&self, client: Client) {
        *self.client.write().expect("client lock") = client;
    }

    fn client(&self) -> Client {
        self.client.read().expect("client lock").clone()
    }

    /// Operations finished so far.
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::SeqCst)
    }

    /// Waits until `fraction` of the budget is done (polled; bounded by the caller's timeout).
    pub async fn reach(&self, fraction: f64) {
        let target = (self.budget as f64 * fraction) as u64;
        tokio::time::timeout(Duration::from_secs(600), async {
            while self.done() < target && !self.stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("workload did not reach {target} operations (at {})", self.done()));
    }

    /// Runs the workers until the budget is spent; returns when all have stopped.
    pub async fn run(self: &Arc<Self>, seed: u64) {
        let workers: Vec<_> = (0..self.ledgers.len())
            .map(|i| {
                let w = Arc::clone(self);
                tokio::spawn(async move { w.worker(i, seed.wrapping_add(i as u64 * 7919)).await })
            })
            .collect();
        for w in workers {
            w.await.expect("worker panicked");
        }
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Every key a client may have touched, with its state.
    pub fn all_keys(&self) -> BTreeMap<String, KeyState> {
        let mut all = BTreeMap::new();
        for l in &self.ledgers {
            all.extend(l.lock().expect("ledger").clone());
        }
        all
    }

    async fn worker(&self, me: usize, seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        let keys: Vec<String> = (0..KEYS_PER_CLIENT).map(|j| format!("c{me}/k{j:02}")).collect();
        while self.done.fetch_add(1, Ordering::SeqCst) < self.budget {
            let key = &keys[rng.random_range(0..keys.len())];
            let roll = rng.random_range(0..100);
            let kind = match roll {
                0..30 => "put",
                30..32 => "multipart",
                32..55 => "get",
                55..67 => "ranged_get",
                67..77 => "list",
                77..88 => "delete",
                _ => "copy",
            };
            let world_before = self.faults.now();
            let (kind, outcome, read) = match kind {
                "put" => {
                    let len = if rng.random_range(0..20) == 0 {
                        rng.random_range(1 << 20..(3 << 20) / 2)
                    } else {
                        rng.random_range(0..70_000)
                    };
                    let value = Value::Data {
                        seed: rng.random(),
                        len,
                    };
                    (kind, self.write(me, key, value, |c| put(c, key, value)).await, false)
                }
                "multipart" => {
                    let value = Value::Data {
                        seed: rng.random(),
                        len: PART + rng.random_range(1..100_000),
                    };
                    (
                        kind,
                        self.write(me, key, value, |c| multipart(c, key, value)).await,
                        false,
                    )
                }
                "delete" => (
                    kind,
                    self.write(me, key, Value::Absent, |c| delete(c, key)).await,
                    false,
                ),
                "copy" => match self.copy_source(me, key, &keys, &mut rng) {
                    Some((src, value)) => (kind, self.write(me, key, value, |c| copy(c, &src, key)).await, false),
                    None => ("get", self.get(me, key, None, world_before).await, true),
                },
                "ranged_get" => {
                    let range = rng.random_range(0..u64::MAX);
                    (kind, self.get(me, key, Some(range), world_before).await, true)
                }
                "list" => (kind, self.list(me, world_before).await, true),
                _ => (kind, self.get(me, key, None, world_before).await, true),
            };
            let mut counts = self.counts.lock().expect("counts");
            counts.ops += 1;
            *counts.by_kind.entry(kind).or_default() += 1;
            if read {
                counts.reads += 1;
            }
            if let Outcome::Failed = outcome {
                counts.failed_ops += 1;
            }
        }
    }

    /// A source for a COPY to `dest`: another own key whose content is certain and present.
    fn copy_source(&self, me: usize, dest: &str, keys: &[String], rng: &mut StdRng) -> Option<(String, Value)> {
        let ledger = self.ledgers[me].lock().expect("ledger");
        let sources: Vec<(String, Value)> = keys
            .iter()
            .filter(|k| k.as_str() != dest)
            .filter_map(|k| ledger.get(k).map(|s| (k, s)))
            .filter(|(_, s)| s.certain() && matches!(s.acked, Value::Data { .. }))
            .map(|(k, s)| (k.clone(), s.acked))
            .collect();
        if sources.is_empty() {
            return None;
        }
        Some(sources[rng.random_range(0..sources.len())].clone())
    }

    /// Runs a write with retries and records it in the ledger.
    async fn write<F, Fut>(&self, me: usize, key: &str, value: Value, op: F) -> Outcome
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        let world_before = self.faults.now();
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            backoff(attempt).await;
            match tokio::time::timeout(ATTEMPT_TIMEOUT, op(self.client())).await {
                Ok(Ok(())) => {
                    let mut ledger = self.ledgers[me].lock().expect("ledger");
                    let state = ledger.entry(key.to_string()).or_default();
                    state.acked = value;
                    state.ever_acked = true;
                    state.unacked.clear();
                    drop(ledger);
                    let mut counts = self.counts.lock().expect("counts");
                    counts.acked_writes += 1;
                    counts.failed_attempts += u64::from(attempt);
                    return Outcome::Ok;
                }
                Ok(Err(e)) => last = e,
                Err(_) => last = format!("no answer within {ATTEMPT_TIMEOUT:?}"),
            }
        }
        self.ledgers[me]
            .lock()
            .expect("ledger")
            .entry(key.to_string())
            .or_default()
            .unacked
            .push(value);
        let served = self.faults.served_throughout(world_before, self.faults.now());
        let mut counts = self.counts.lock().expect("counts");
        counts.failed_attempts += u64::from(ATTEMPTS);
        counts.failed_writes += 1;
        if served {
            counts.failed_writes_served += 1;
        }
        counts.example(
            "failed write",
            format!("write {key} failed: {last} (a store was up: {served})"),
        );
        Outcome::Failed
    }

    /// GET (whole, or a range derived from `range_seed`), checked against the ledger.
    async fn get(&self, me: usize, key: &str, range_seed: Option<u64>, world_before: usize) -> Outcome {
        let state = self.ledgers[me]
            .lock()
            .expect("ledger")
            .get(key)
            .cloned()
            .unwrap_or_default();
        // A range inside the shortest value the key may hold (whole GET if that is empty).
        let shortest = state
            .allowed()
            .filter_map(|v| match v {
                Value::Data { len, .. } => Some(*len),
                Value::Absent => None,
            })
            .min()
            .unwrap_or(0);
        let range = range_seed.filter(|_| shortest > 0).map(|r| {
            let start = (r % shortest as u64) as usize;
            let end = start + ((r >> 32) as usize % (shortest - start).min(200_000));
            (start, end)
        });
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            backoff(attempt).await;
            let answer = tokio::time::timeout(ATTEMPT_TIMEOUT, get(self.client(), key, range)).await;
            let answer = match answer {
                Ok(Ok(a)) => a,
                Ok(Err(e)) => {
                    last = e;
                    continue;
                }
                Err(_) => {
                    last = format!("no answer within {ATTEMPT_TIMEOUT:?}");
                    continue;
                }
            };
            let fits = state.allowed().any(|v| match (v, &answer) {
                (Value::Absent, None) => true,
                (Value::Data { seed, len }, Some(got)) => {
                    let want = body(*seed, *len);
                    match range {
                        Some((a, b)) => got.as_slice() == &want[a..=b],
                        None => *got == want,
                    }
                }
                _ => false,
            });
            let mut counts = self.counts.lock().expect("counts");
            counts.failed_attempts += u64::from(attempt);
            if !fits {
                counts.wrong_reads += 1;
                let got = answer.as_ref().map(Vec::len);
                counts.example(
                    "wrong read",
                    format!(
                        "read {key} range {range:?}: got {got:?} bytes, may hold {:?} (world {})",
                        state.allowed().collect::<Vec<_>>(),
                        self.faults.now()
                    ),
                );
            }
            return Outcome::Ok;
        }
        self.failed_read(format!("read {key}: {last}"), world_before)
    }

    /// LIST of the client's own prefix, checked: every key sure to exist is listed.
    async fn list(&self, me: usize, world_before: usize) -> Outcome {
        let prefix = format!("c{me}/");
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            backoff(attempt).await;
            let sure: Vec<String> = self.ledgers[me]
                .lock()
                .expect("ledger")
                .iter()
                .filter(|(_, s)| s.allowed().all(|v| matches!(v, Value::Data { .. })))
                .map(|(k, _)| k.clone())
                .collect();
            match tokio::time::timeout(ATTEMPT_TIMEOUT, list(self.client(), &prefix)).await {
                Ok(Ok(listed)) => {
                    let hidden: Vec<&String> = sure.iter().filter(|k| !listed.contains(*k)).collect();
                    let mut counts = self.counts.lock().expect("counts");
                    counts.failed_attempts += u64::from(attempt);
                    if !hidden.is_empty() {
                        counts.listings_hiding += 1;
                        counts.example(
                            "hiding listing",
                            format!("list {prefix} hid {hidden:?} (world {})", self.faults.now()),
                        );
                    }
                    return Outcome::Ok;
                }
                Ok(Err(e)) => last = e,
                Err(_) => last = format!("no answer within {ATTEMPT_TIMEOUT:?}"),
            }
        }
        self.failed_read(format!("list {prefix}: {last}"), world_before)
    }

    fn failed_read(&self, what: String, world_before: usize) -> Outcome {
        let served = self.faults.served_throughout(world_before, self.faults.now());
        let mut counts = self.counts.lock().expect("counts");
        counts.failed_attempts += u64::from(ATTEMPTS);
        if served {
            counts.failed_reads_served += 1;
            counts.example("failed read (a store up)", what);
        } else {
            counts.failed_reads_outage += 1;
            counts.example("failed read (outage)", what);
        }
        Outcome::Failed
    }
}

async fn backoff(attempt: u32) {
    if attempt > 0 {
        // The client's retry policy (like an SDK's), not synchronization.
        tokio::time::sleep(Duration::from_millis(50 << (2 * attempt))).await;
    }
}

fn describe<E: ProvideErrorMetadata + std::fmt::Debug>(e: &E) -> String {
    match e.code() {
        Some(code) => format!("{code}: {}", e.message().unwrap_or("")),
        None => format!("{e:?}").chars().take(300).collect(),
    }
}

async fn put(c: Client, key: &str, value: Value) -> Result<(), String> {
    let Value::Data { seed, len } = value else {
        unreachable!("put of a value")
    };
    c.put_object()
        .bucket(BUCKET)
        .key(key)
        .body(ByteStream::from(body(seed, len)))
        .send()
        .await
        .map(drop)
        .map_err(|e| describe(&e))
}

async fn multipart(c: Client, key: &str, value: Value) -> Result<(), String> {
    let Value::Data { seed, len } = value else {
        unreachable!("multipart of a value")
    };
    let data = body(seed, len);
    let created = c
        .create_multipart_upload()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .map_err(|e| describe(&e))?;
    let id = created.upload_id().unwrap_or_default().to_string();
    let result = async {
        let mut parts = Vec::new();
        for (i, chunk) in data.chunks(PART).enumerate() {
            let n = i as i32 + 1;
            let up = c
                .upload_part()
                .bucket(BUCKET)
                .key(key)
                .upload_id(&id)
                .part_number(n)
                .body(ByteStream::from(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| describe(&e))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(n)
                    .set_e_tag(up.e_tag().map(str::to_string))
                    .build(),
            );
        }
        c.complete_multipart_upload()
            .bucket(BUCKET)
            .key(key)
            .upload_id(&id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await
            .map(drop)
            .map_err(|e| describe(&e))
    }
    .await;
    if result.is_err() {
        let _ = c
            .abort_multipart_upload()
            .bucket(BUCKET)
            .key(key)
            .upload_id(&id)
            .send()
            .await;
    }
    result
}

async fn delete(c: Client, key: &str) -> Result<(), String> {
    c.delete_object()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .map(drop)
        .map_err(|e| describe(&e))
}

async fn copy(c: Client, src: &str, key: &str) -> Result<(), String> {
    c.copy_object()
        .bucket(BUCKET)
        .key(key)
        .copy_source(format!("{BUCKET}/{src}"))
        .send()
        .await
        .map(drop)
        .map_err(|e| describe(&e))
}

/// The body (`None`: NoSuchKey), or the error.
async fn get(c: Client, key: &str, range: Option<(usize, usize)>) -> Result<Option<Vec<u8>>, String> {
    let mut req = c.get_object().bucket(BUCKET).key(key);
    if let Some((a, b)) = range {
        req = req.range(format!("bytes={a}-{b}"));
    }
    match req.send().await {
        Ok(out) => out
            .body
            .collect()
            .await
            .map(|b| Some(b.into_bytes().to_vec()))
            .map_err(|e| format!("body: {e}")),
        Err(e) if e.code() == Some("NoSuchKey") => Ok(None),
        Err(e) => Err(describe(&e)),
    }
}

async fn list(c: Client, prefix: &str) -> Result<Vec<String>, String> {
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = c
            .list_objects_v2()
            .bucket(BUCKET)
            .prefix(prefix)
            .set_continuation_token(token.take())
            .send()
            .await
            .map_err(|e| describe(&e))?;
        keys.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_string)));
        match page.next_continuation_token() {
            Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
            _ => return Ok(keys),
        }
    }
}

/// Creates the bucket through `c` (both stores up).
pub async fn create_bucket(c: &Client) {
    c.create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap_or_else(|e| panic!("create bucket: {}", describe(&e)));
}
