//! The end of every scenario: wait (bounded poll) until the two stores converge, then read every
//! key back from each store alone, offline, with `escrow-proxy decrypt --object <s3s-fs file>
//! --metadata <sidecar's user metadata>`, and compare with what the key may hold.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64_URL;

use crate::procs::PROXY_BIN;
use crate::workload::{BUCKET, KeyState, Value, body};

/// Bound on convergence after the workload stopped and every process is back.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(120);
/// Where the proxy keeps repair records in a bucket.
const RECORDS: &str = ".escrow-mpu/r/";

/// The admin listener's figures that convergence needs.
#[derive(Debug, Default)]
pub struct Metrics {
    /// `escrow_mirror_backlog`.
    pub backlog: Option<f64>,
    /// `escrow_store_up{store="primary"}`.
    pub primary_up: Option<f64>,
    /// `escrow_store_up{store="mirror"}`.
    pub mirror_up: Option<f64>,
}

/// Reads `/metrics` of the admin listener at `admin`.
pub async fn metrics(admin: &str) -> Metrics {
    let text = match reqwest::get(format!("{admin}/metrics")).await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let mut m = Metrics::default();
    for line in text.lines() {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let value: Option<f64> = value.parse().ok();
        match name {
            "escrow_mirror_backlog" => m.backlog = value,
            "escrow_store_up{store=\"primary\"}" => m.primary_up = value,
            "escrow_store_up{store=\"mirror\"}" => m.mirror_up = value,
            _ => {}
        }
    }
    m
}

/// Polls `/metrics` until `cond` holds (bounded).
pub async fn until_metrics(admin: &str, what: &str, cond: impl Fn(&Metrics) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let m = metrics(admin).await;
        if cond(&m) {
            return;
        }
        assert!(Instant::now() < deadline, "metrics never showed {what}: {m:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether the store `name` is up, as `/ready` says (the breaker itself, read directly).
pub async fn ready_says_up(admin: &str, name: &str) -> Option<bool> {
    let text = reqwest::get(format!("{admin}/ready")).await.ok()?.text().await.ok()?;
    let ready: serde_json::Value = serde_json::from_str(&text).ok()?;
    ready["stores"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)
        .and_then(|s| s["up"].as_bool())
}

/// Polls `/ready` until the proxy's breaker says store `name` is down (bounded).
pub async fn until_breaker_open(admin: &str, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while ready_says_up(admin, name).await != Some(false) {
        assert!(Instant::now() < deadline, "/ready never showed {name} down");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// After the breaker opened on `name`: whether `/metrics` says so too within `within`
/// (`escrow_store_up` is published by the drainer's loop).
pub async fn metrics_agree_down(admin: &str, name: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        let m = metrics(admin).await;
        let up = if name == "primary" { m.primary_up } else { m.mirror_up };
        if up == Some(0.0) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every regular file under `dir`, as paths relative to it.
fn files_under(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                Ok(t) if t.is_file() => {
                    if let Ok(rel) = p.strip_prefix(dir) {
                        out.insert(rel.to_string_lossy().into_owned());
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// What one store holds of the workload's keys (and its outstanding records).
struct Snapshot {
    objects: BTreeMap<String, Vec<u8>>,
    records: usize,
}

fn snapshot(root: &Path) -> Snapshot {
    let bucket = root.join(BUCKET);
    let files = files_under(&bucket);
    let records = files.iter().filter(|f| f.starts_with(RECORDS)).count();
    let objects = files
        .into_iter()
        .filter(|f| !f.starts_with(".escrow-mpu/") && f.starts_with('c'))
        .filter_map(|f| fs::read(bucket.join(&f)).ok().map(|b| (f, b)))
        .collect();
    Snapshot { objects, records }
}

/// How the two stores stand.
#[derive(Debug, Default)]
pub struct Divergence {
    /// Keys whose stored ciphertext differs (or exists in one store only) although every write
    /// to them was acknowledged.
    pub acked: Vec<String>,
    /// Keys that differ and had a write that was not acknowledged (it may have landed in one
    /// store without a record: no loss, but divergence that only `reconcile` repairs).
    pub unacked: Vec<String>,
    /// Repair records still in the stores.
    pub records: usize,
}

fn divergence(primary: &Path, mirror: &Path, keys: &BTreeMap<String, KeyState>) -> Divergence {
    let (a, b) = (snapshot(primary), snapshot(mirror));
    let mut d = Divergence {
        records: a.records + b.records,
        ..Divergence::default()
    };
    let names: BTreeSet<&String> = a.objects.keys().chain(b.objects.keys()).collect();
    for name in names {
        if a.objects.get(name) != b.objects.get(name) {
            match keys.get(name) {
                Some(state) if state.certain() => d.acked.push(name.clone()),
                _ => d.unacked.push(name.clone()),
            }
        }
    }
    d
}

/// Waits until the proxy at `admin` reports no backlog, no record is left in either store, and
/// the stores hold the same ciphertext for every key whose writes were all acknowledged.
/// Returns the time it took and the final divergence, or what was left at the deadline.
pub async fn converge(
    admin: &str,
    primary: &Path,
    mirror: &Path,
    keys: &BTreeMap<String, KeyState>,
) -> Result<(Duration, Divergence), String> {
    let start = Instant::now();
    loop {
        let m = metrics(admin).await;
        let d = divergence(primary, mirror, keys);
        if m.backlog == Some(0.0) && d.records == 0 && d.acked.is_empty() {
            return Ok((start.elapsed(), d));
        }
        if start.elapsed() > CONVERGE_TIMEOUT {
            let detail: Vec<String> = d
                .acked
                .iter()
                .map(|k| {
                    let len = |root: &Path| fs::metadata(root.join(BUCKET).join(k)).map(|m| m.len()).ok();
                    format!(
                        "{k}: primary {:?} bytes, mirror {:?} bytes, ledger {:?}",
                        len(primary),
                        len(mirror),
                        keys.get(k)
                    )
                })
                .collect();
            return Err(format!(
                "stores did not converge within {CONVERGE_TIMEOUT:?}: metrics {m:?}, records left {}, \
                 acknowledged keys differing:\n{}",
                d.records,
                detail.join("\n")
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The s3s-fs sidecar of an object: `<root>/.bucket-<b64>.object-<b64>.metadata.json`.
pub fn sidecar(root: &Path, key: &str) -> PathBuf {
    root.join(format!(
        ".bucket-{}.object-{}.metadata.json",
        B64_URL.encode(BUCKET),
        B64_URL.encode(key)
    ))
}

/// One key's check in one store.
#[derive(Debug)]
pub struct Check {
    /// The store's name.
    pub store: &'static str,
    /// The key.
    pub key: String,
    /// What went wrong.
    pub problem: String,
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.store, self.key, self.problem)
    }
}

/// Decrypts every key of `keys` from the store at `root` alone (offline, with the keyring
/// files), and returns the keys whose content is not a value the key may hold.
pub fn check_store(
    store: &'static str,
    root: &Path,
    keyring: &Path,
    root_key: &Path,
    scratch: &Path,
    keys: &BTreeMap<String, KeyState>,
) -> (usize, Vec<Check>) {
    fs::create_dir_all(scratch).expect("mkdir scratch");
    let mut bad = Vec::new();
    let mut decrypted = 0;
    for (key, state) in keys {
        let file = root.join(BUCKET).join(key);
        let problem = if file.is_file() {
            let meta = scratch.join("metadata.json");
            let out = scratch.join("plain.bin");
            let _ = fs::remove_file(&out);
            let attrs: serde_json::Value = match fs::read(sidecar(root, key)) {
                Ok(b) => serde_json::from_slice(&b).expect("sidecar is JSON"),
                Err(e) => {
                    bad.push(Check {
                        store,
                        key: key.clone(),
                        problem: format!("no metadata sidecar: {e}"),
                    });
                    continue;
                }
            };
            let head = serde_json::json!({ "Metadata": attrs["user_metadata"] });
            fs::write(&meta, head.to_string()).expect("write metadata");
            let ran = Command::new(PROXY_BIN)
                .args(["decrypt", "--keyring"])
                .arg(keyring)
                .arg("--root-key")
                .arg(root_key)
                .args(["--bucket", BUCKET, "--key", key, "--object"])
                .arg(&file)
                .arg("--metadata")
                .arg(&meta)
                .arg("-o")
                .arg(&out)
                .env("NO_COLOR", "1")
                .output()
                .expect("run escrow-proxy decrypt");
            if !ran.status.success() {
                Some(format!(
                    "decrypt failed: {}",
                    String::from_utf8_lossy(&ran.stderr)
                        .chars()
                        .take(400)
                        .collect::<String>()
                ))
            } else {
                decrypted += 1;
                let got = fs::read(&out).expect("read decrypted");
                let fits = state.allowed().any(|v| match v {
                    Value::Data { seed, len } => *len == got.len() && body(*seed, *len) == got,
                    Value::Absent => false,
                });
                (!fits).then(|| {
                    format!(
                        "holds {} bytes that are none of {:?}",
                        got.len(),
                        state.allowed().collect::<Vec<_>>()
                    )
                })
            }
        } else {
            (!state.allowed().any(|v| *v == Value::Absent))
                .then(|| format!("missing; may hold only {:?}", state.allowed().collect::<Vec<_>>()))
        };
        if let Some(problem) = problem {
            bad.push(Check {
                store,
                key: key.clone(),
                problem,
            });
        }
    }
    (decrypted, bad)
}
