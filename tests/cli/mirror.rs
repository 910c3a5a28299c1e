//! `mirror status`, `mirror reconcile` and the mirror's admin routes, against a real `serve`
//! process and its two fs stores (or an S3 mirror that is down or hangs): objects changed or
//! deleted behind the proxy's back are reported exactly by a dry run (which changes no file),
//! then fixed in the right direction, after which every object decrypts byte-exact from each
//! store alone.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read as _;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use escrow_proxy::mirror::Side;
use escrow_proxy::mirror::reconcile::{self, Counters, Finding, Kind, Observer, Options};

use crate::client::{Cmd, Ran};
use crate::common::{Harness, StoreKind};
use crate::objects::fs_object_path;
use crate::support::{Serve, Setup, assert_exit, escrow, toml_str};

const BUCKET: &str = "mirrored";
const TOKEN: &str = "admin-token-for-mirror-tests-0123456789";
/// Bound on a job finishing once nothing holds it.
const JOB_TIMEOUT: Duration = Duration::from_secs(60);

/// One line of a reconcile report: finding, store, action, `bucket/key`.
type Line = (String, String, String, String);

fn line(kind: &str, store: &str, action: &str, key: &str) -> Line {
    (kind.into(), store.into(), action.into(), format!("{BUCKET}/{key}"))
}

/// The finding lines of `mirror reconcile`'s stdout.
fn findings(stdout: &str) -> BTreeSet<Line> {
    stdout
        .lines()
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let kinds = ["missing", "stale", "rollback", "extra", "undecided"];
            (words.len() >= 4 && kinds.contains(&words[0])).then(|| {
                (
                    words[0].to_string(),
                    words[1].to_string(),
                    words[2..words.len() - 1].join(" "),
                    words[words.len() - 1].to_string(),
                )
            })
        })
        .collect()
}

/// The summary table of `mirror reconcile`'s stdout.
fn summary(stdout: &str) -> BTreeMap<String, u64> {
    let table = stdout
        .split_once("reconcile summary")
        .map(|(_, t)| t)
        .unwrap_or_else(|| panic!("no summary in:\n{stdout}"));
    table
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let name = words.next()?;
            let value = words.next()?.parse().ok()?;
            Some((name.to_string(), value))
        })
        .collect()
}

#[track_caller]
fn assert_counts(stdout: &str, expected: &[(&str, u64)]) {
    let got = summary(stdout);
    for (name, value) in expected {
        assert_eq!(got.get(*name), Some(value), "{name} in:\n{stdout}");
    }
}

/// Every file under `dir` (both stores' roots) by path, as a hash of its bytes.
fn snapshot(dirs: &[&Path]) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.insert(path.clone(), Sha256::digest(fs::read(&path).expect("read")).to_vec());
            }
        }
    }
    let mut out = BTreeMap::new();
    for dir in dirs {
        walk(dir, &mut out);
    }
    out
}

fn reconcile(setup: &Setup, extra: &[&str]) -> Ran {
    escrow(["mirror", "reconcile", "--config"])
        .arg(&setup.config)
        .args(extra)
        .run()
}

/// `decrypt --store STORE` of `key` into a file; its bytes, or `None` if it was refused.
fn decrypt_from(setup: &Setup, store: &str, key: &str) -> Option<Vec<u8>> {
    let out = setup.work.join(format!("{store}-{}.out", hex::encode(key)));
    let ran = escrow(["decrypt", "--config"])
        .arg(&setup.config)
        .args(["--bucket", BUCKET, "--key", key, "--store", store, "-o"])
        .arg(&out)
        .run();
    if !ran.status.success() {
        assert!(!out.exists(), "a refused decrypt left {}", out.display());
        return None;
    }
    Some(fs::read(&out).expect("read decrypted"))
}

/// Stores a genuine tombstone (the record a proxy writes when the mirror misses a delete) in the
/// primary store, MACed with the setup's keyring.
fn write_tombstone(setup: &Setup, key: &str) {
    use escrow_proxy::mirror::record::{self, Op, RepairRecord};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let root = escrow_proxy::keys::load_root_key(&setup.root_key).expect("root key");
        let ring = escrow_proxy::keys::load_keyring(&setup.keyring, &root).expect("keyring");
        let sealer = escrow_proxy::object::KeyringSealer::new(escrow_proxy::keys::SharedKeyring::fixed(ring));
        let store = escrow_proxy::backend::fs::FsStore::new("primary", &setup.primary).expect("fs store");
        let tombstone = RepairRecord::new(Op::Delete, BUCKET, key, escrow_proxy::mirror::Side::Mirror);
        record::write(&store, &sealer, &tombstone)
            .await
            .expect("write the tombstone");
    });
}

fn content(key: &str, version: u32) -> Vec<u8> {
    format!("{key} version {version} ")
        .repeat(200 + version as usize)
        .into_bytes()
}

#[test]
fn reconcile_reports_exactly_then_restores_agreement_in_the_right_direction() {
    let setup = Setup::new(true, &[]);
    let mirror_dir = setup.mirror.clone().expect("mirror");
    let serve = setup.serve("serve-reconcile");
    let s3 = setup.s3(&serve);
    s3.create_bucket(BUCKET);
    let keys = [
        "agrees",
        "gone-from-mirror",
        "gone-from-primary",
        "rolled-back",
        "stale-in-mirror",
        "deleted",
    ];
    let mut expected: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    for key in keys {
        s3.put(BUCKET, key, &content(key, 1));
        expected.insert(key, content(key, 1));
    }
    let part = vec![b'p'; 5 << 20];
    s3.put_multipart(BUCKET, "multipart", &[&part, b"tail"]);
    expected.insert("multipart", [part.as_slice(), b"tail"].concat());
    // The first versions' files, to put back behind the proxy's back.
    let file = |root: &Path, key: &str| fs_object_path(root, BUCKET, key);
    let old_primary = fs::read(file(&setup.primary, "rolled-back")).expect("read");
    let old_mirror = fs::read(file(&mirror_dir, "stale-in-mirror")).expect("read");
    let old_deleted = fs::read(file(&mirror_dir, "deleted")).expect("read");
    for key in ["rolled-back", "stale-in-mirror"] {
        s3.put(BUCKET, key, &content(key, 2));
        expected.insert(key, content(key, 2));
    }
    s3.delete(BUCKET, "deleted");
    expected.remove("deleted");
    serve.stop();

    // Behind the proxy's back: deletes without tombstones, a primary rolled back to an older
    // sealed version, a stale mirror, and a delete the mirror missed (with its tombstone).
    fs::remove_file(file(&mirror_dir, "gone-from-mirror")).expect("rm");
    fs::remove_file(file(&setup.primary, "gone-from-primary")).expect("rm");
    fs::write(file(&setup.primary, "rolled-back"), old_primary).expect("roll back");
    fs::write(file(&mirror_dir, "stale-in-mirror"), old_mirror).expect("stale");
    fs::write(file(&mirror_dir, "deleted"), old_deleted).expect("resurrect");
    write_tombstone(&setup, "deleted");

    let differences: BTreeSet<Line> = [
        line("missing", "mirror", "would copy", "gone-from-mirror"),
        line("missing", "primary", "would copy", "gone-from-primary"),
        line("rollback", "primary", "would copy", "rolled-back"),
        line("stale", "mirror", "would copy", "stale-in-mirror"),
        line("extra", "mirror", "would delete", "deleted"),
    ]
    .into();
    let before = snapshot(&[&setup.primary, &mirror_dir]);
    let dry = reconcile(&setup, &["--dry-run"]);
    assert_exit(&dry, 0, "reconcile --dry-run");
    assert_eq!(findings(&dry.stdout), differences, "{}", dry.stdout);
    assert_counts(
        &dry.stdout,
        &[
            ("scanned", 7),
            ("missing", 2),
            ("stale", 2),
            ("rollback", 1),
            ("extra", 1),
            ("copied", 0),
            ("deleted", 0),
            ("errors", 0),
        ],
    );
    assert_eq!(
        snapshot(&[&setup.primary, &mirror_dir]),
        before,
        "a dry run changed files"
    );
    // One bucket named, resuming after a key: only the keys after it.
    let resumed = reconcile(&setup, &["--dry-run", "--bucket", BUCKET, "--start-after", "multipart"]);
    assert_exit(&resumed, 0, "reconcile --dry-run --start-after");
    let later: BTreeSet<Line> = differences
        .iter()
        .filter(|l| l.3.as_str() > "mirrored/multipart")
        .cloned()
        .collect();
    assert_eq!(findings(&resumed.stdout), later, "{}", resumed.stdout);

    let fixed = reconcile(&setup, &[]);
    assert_exit(&fixed, 0, "reconcile");
    let done: BTreeSet<Line> = differences
        .iter()
        .map(|(k, s, a, o)| {
            let a = if a == "would copy" { "copied" } else { "deleted" };
            (k.clone(), s.clone(), a.to_string(), o.clone())
        })
        .collect();
    assert_eq!(findings(&fixed.stdout), done, "{}", fixed.stdout);
    assert_counts(&fixed.stdout, &[("copied", 4), ("deleted", 1), ("errors", 0)]);

    // A rerun finds nothing, and every object reads back from each store alone.
    let again = reconcile(&setup, &["--dry-run"]);
    assert_exit(&again, 0, "reconcile again");
    assert!(findings(&again.stdout).is_empty(), "{}", again.stdout);
    assert_counts(
        &again.stdout,
        &[("scanned", 6), ("missing", 0), ("stale", 0), ("extra", 0)],
    );
    for store in ["primary", "mirror"] {
        for (key, data) in &expected {
            let got = decrypt_from(&setup, store, key);
            assert!(
                got.as_deref() == Some(data.as_slice()),
                "{key} from the {store} store alone"
            );
        }
        assert_eq!(
            decrypt_from(&setup, store, "deleted"),
            None,
            "the deleted key in {store}"
        );
    }

    // Offline status: both stores up; the tombstone is still a record (the drainer of a running
    // proxy removes it).
    let status = escrow(["mirror", "status", "--config"])
        .arg(&setup.config)
        .run()
        .ok("mirror status");
    assert!(status.stdout.contains("backlog: 1 records"), "{}", status.stdout);
}

/// A free loopback port with nothing listening on it (a store that is down).
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// `setup`'s config with its `[mirror]` replaced by an S3 store at `port`.
fn s3_mirror_at(setup: &Setup, port: u16) {
    let config = fs::read_to_string(&setup.config).expect("read config");
    let (head, tail) = config.split_once("[mirror]").expect("a [mirror] section");
    let tail = tail.split_once("\n\n").map_or("", |(_, rest)| rest);
    let section = format!(
        "[mirror]\ntype = \"s3\"\nendpoint = \"http://127.0.0.1:{port}\"\nregion = \"us-east-1\"\n\
         access_key = \"mirror-access\"\nsecret_key = \"mirror-secret\"\npath_style = true\n\n"
    );
    fs::write(&setup.config, format!("{head}{section}{tail}")).expect("write config");
}

#[test]
fn status_shows_the_backlog_of_writes_made_while_the_mirror_was_down() {
    let setup = Setup::new(true, &[]);
    s3_mirror_at(&setup, closed_port());
    let serve = setup.serve("serve-mirror-down");
    let s3 = setup.s3(&serve);
    s3.create_bucket(BUCKET);
    for i in 0..3 {
        let key = format!("while-down-{i}");
        s3.put(BUCKET, &key, &content(&key, 1));
    }
    serve.stop();

    let status = escrow(["mirror", "status", "--config"])
        .arg(&setup.config)
        .run()
        .ok("mirror status");
    let row = |name: &str| -> Vec<String> {
        let l = status
            .stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} row in:\n{}", status.stdout));
        l.split_whitespace().map(str::to_string).collect()
    };
    let primary = row("primary");
    assert_eq!(primary[1], "up", "{}", status.stdout);
    let records: u64 = primary[2].parse().expect("a record count");
    // One per object; the bucket's creation may have its own.
    assert!((3..=4).contains(&records), "{}", status.stdout);
    assert_eq!(row("mirror")[1], "down", "{}", status.stdout);
    assert!(status.stdout.contains("could not be scanned"), "{}", status.stdout);

    // Reconcile cannot walk a store that is down: it says so and exits non-zero.
    let ran = reconcile(&setup, &[]);
    assert_exit(&ran, 1, "reconcile with the mirror down");
    // Every acknowledged write is in the primary.
    for i in 0..3 {
        let key = format!("while-down-{i}");
        assert_eq!(decrypt_from(&setup, "primary", &key), Some(content(&key, 1)));
    }
}

// === admin ===

fn with_admin(setup: &Setup) {
    let token_file = setup.root().join("admin-token");
    fs::write(&token_file, format!("{TOKEN}\n")).expect("write token");
    fs::set_permissions(&token_file, fs::Permissions::from_mode(0o600)).expect("chmod token");
    let mut config = fs::read_to_string(&setup.config).expect("read config");
    config.push_str(&format!(
        "\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = {}\n",
        toml_str(&token_file)
    ));
    fs::write(&setup.config, config).expect("write config");
}

/// `curl -sS ARGS` → (status, body).
fn curl(args: &[&str]) -> (u16, String) {
    let ran = Cmd::new("curl")
        .args(["-sS", "-w", "\n%{http_code}"])
        .args(args)
        .run()
        .ok("curl");
    let (body, code) = ran.stdout.rsplit_once('\n').expect("status line");
    (code.trim().parse().expect("numeric status"), body.to_string())
}

fn auth() -> String {
    format!("Authorization: Bearer {TOKEN}")
}

fn get_json(url: &str) -> serde_json::Value {
    let (code, body) = curl(&["-H", &auth(), url]);
    assert_eq!(code, 200, "{url}: {body}");
    serde_json::from_str(&body).expect("JSON")
}

fn post(admin: &str, body: &str) -> (u16, serde_json::Value) {
    let url = format!("{admin}/admin/mirror/reconcile");
    let (code, text) = curl(&["-H", &auth(), "-H", "Content-Type: application/json", "-d", body, &url]);
    (
        code,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")),
    )
}

/// Polls a job until it is no longer running (bounded).
fn until_finished(admin: &str, id: &str) -> serde_json::Value {
    let deadline = Instant::now() + JOB_TIMEOUT;
    loop {
        let job = get_json(&format!("{admin}/admin/jobs/{id}"));
        if job["state"] != "running" {
            return job;
        }
        assert!(Instant::now() < deadline, "job {id} still running: {job}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn admin_mirror_status_and_reconcile_jobs() {
    let setup = Setup::new(true, &[]);
    with_admin(&setup);
    let mirror_dir = setup.mirror.clone().expect("mirror");
    let serve = Serve::start(
        setup.root(),
        Some(&setup.config),
        "serve-admin-mirror",
        &["endpoint", "admin"],
    );
    let admin = serve.printed("admin").to_string();
    let s3 = setup.s3(&serve);
    s3.create_bucket(BUCKET);
    for i in 0..5 {
        let key = format!("obj-{i}");
        s3.put(BUCKET, &key, &content(&key, 1));
    }
    fs::remove_file(fs_object_path(&mirror_dir, BUCKET, "obj-3")).expect("rm behind the proxy's back");

    // The token is required.
    for (method, route) in [("GET", "mirror"), ("POST", "mirror/reconcile")] {
        let (code, body) = curl(&["-X", method, &format!("{admin}/admin/{route}")]);
        assert_eq!(code, 401, "{method} {route}: {body}");
    }
    let status = get_json(&format!("{admin}/admin/mirror"));
    assert_eq!(status["settings"]["write"], "sync", "{status}");
    assert_eq!(status["settings"]["read"], "primary", "{status}");
    assert_eq!(status["stores"][0]["name"], "primary", "{status}");
    assert_eq!(status["stores"][1]["up"], true, "{status}");
    assert_eq!(status["backlog"]["records"], 0, "{status}");
    assert!(status["reconcile"].is_null(), "{status}");

    // Bad parameters: a clear error, no job.
    for (body, code) in [
        (r#"{"bucket": 5}"#, 400),
        (r#"{"dry_run": "yes"}"#, 400),
        (r#"{"unknown": true}"#, 400),
        (r#"{"start_after": "x"}"#, 400),
        (r#"[1, 2]"#, 400),
        ("not json", 400),
        (r#"{"bucket": "no-such-bucket"}"#, 404),
    ] {
        let (got, answer) = post(&admin, body);
        assert_eq!(got, code, "{body}: {answer}");
        assert!(answer["error"].is_string(), "{body}: {answer}");
    }
    let (code, body) = curl(&["-H", &auth(), &format!("{admin}/admin/mirror/reconcile")]);
    assert_eq!(code, 405, "{body}");
    assert!(
        get_json(&format!("{admin}/admin/jobs"))["jobs"]
            .as_array()
            .is_some_and(Vec::is_empty)
    );

    // A dry run as a job: its progress counters say what it found, nothing changes.
    let (code, answer) = post(&admin, r#"{"bucket": "mirrored", "dry_run": true}"#);
    assert_eq!(code, 202, "{answer}");
    let job = until_finished(&admin, answer["job"].as_str().expect("job id"));
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["kind"], "reconcile", "{job}");
    assert_eq!(job["params"]["dry_run"], true, "{job}");
    let progress = &job["progress"];
    assert_eq!(
        (progress["scanned"].as_u64(), progress["missing"].as_u64()),
        (Some(5), Some(1)),
        "{job}"
    );
    assert_eq!(progress["copied"], 0, "{job}");
    assert!(!fs_object_path(&mirror_dir, BUCKET, "obj-3").exists());

    let (code, answer) = post(&admin, "");
    assert_eq!(code, 202, "{answer}");
    let job = until_finished(&admin, answer["job"].as_str().expect("job id"));
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["progress"]["copied"], 1, "{job}");
    assert!(fs_object_path(&mirror_dir, BUCKET, "obj-3").is_file());

    // The metrics are there, the reconcile counter too.
    let (code, metrics) = curl(&[&format!("{admin}/metrics")]);
    assert_eq!(code, 200);
    for name in [
        "escrow_mirror_writes_total",
        "escrow_mirror_backlog",
        "escrow_mirror_backlog_oldest_seconds",
        "escrow_mirror_repairs_total",
        "escrow_mirror_failovers_total",
        "escrow_store_up",
        "escrow_mirror_reconcile_runs_total",
        "escrow_mirror_reconcile_total",
    ] {
        assert!(
            metrics.contains(&format!("\n{name}")),
            "{name} missing from /metrics:\n{metrics}"
        );
    }
}

/// A store that accepts connections and never answers, until released.
struct BlackHole {
    port: u16,
    stop: Arc<AtomicBool>,
    held: Arc<Mutex<Vec<TcpStream>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BlackHole {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let held = Arc::new(Mutex::new(Vec::new()));
        let (s, h) = (Arc::clone(&stop), Arc::clone(&held));
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::Acquire) {
                    return;
                }
                if let Ok(conn) = conn {
                    h.lock().expect("lock").push(conn);
                }
            }
        });
        Self {
            port,
            stop,
            held,
            thread: Some(thread),
        }
    }

    /// Stops accepting and closes every held connection (the store is then down, not hung).
    fn release(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wakes the accept loop so it sees the flag and drops the listener.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        for conn in self.held.lock().expect("lock").drain(..) {
            let _ = conn.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.release();
    }
}

#[test]
fn admin_runs_one_reconcile_job_at_a_time() {
    let setup = Setup::new(true, &[]);
    let mut hole = BlackHole::start();
    s3_mirror_at(&setup, hole.port);
    with_admin(&setup);
    let serve = Serve::start(
        setup.root(),
        Some(&setup.config),
        "serve-admin-409",
        &["endpoint", "admin"],
    );
    let admin = serve.printed("admin").to_string();

    // The first job waits on the hung mirror; a second is refused while it runs.
    let (code, first) = post(&admin, r#"{"dry_run": true}"#);
    assert_eq!(code, 202, "{first}");
    let id = first["job"].as_str().expect("job id").to_string();
    let (code, second) = post(&admin, "{}");
    assert_eq!(code, 409, "{second}");
    assert_eq!(second["job"], id.as_str(), "{second}");
    let status = get_json(&format!("{admin}/admin/mirror"));
    assert_eq!(status["reconcile"], id.as_str(), "{status}");

    // Once the mirror is plainly down, the job ends as failed, and its error says why.
    hole.release();
    let job = until_finished(&admin, &id);
    assert_eq!(job["state"], "failed", "{job}");
    assert!(job["error"].as_str().is_some_and(|e| e.contains("list")), "{job}");
    let mut buf = String::new();
    let _ = fs::File::open(setup.root().join("serve-admin-409.stderr")).map(|mut f| f.read_to_string(&mut buf));
    assert!(!buf.contains(TOKEN), "the token reached the log");
}

// === in process: an S3 primary, while the proxy serves ===

/// Collects a pass's findings.
#[derive(Default)]
struct Collect(Mutex<Vec<(String, Kind, Side, String)>>);

impl Observer for Collect {
    fn finding(&self, f: &Finding) {
        let mut seen = self.0.lock().expect("lock");
        seen.push((f.key.clone(), f.kind, f.store, f.action.name().to_string()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_over_an_s3_primary_is_safe_while_the_proxy_serves() {
    let h = Harness::new(StoreKind::Mirrored).await;
    let mirror_dir = h.mirror_dir.clone().expect("mirrored");
    h.create_bucket(BUCKET).await;
    let mut latest: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for i in 0..30 {
        let key = format!("k{i:02}");
        h.put(BUCKET, &key, &content(&key, 1)).await;
        latest.insert(key.clone(), content(&key, 1));
    }
    // An upload in progress: its marker and part lie under the reserved prefix in both stores.
    let upload = h
        .client
        .create_multipart_upload()
        .bucket(BUCKET)
        .key("in-progress")
        .send()
        .await
        .expect("CreateMultipartUpload");
    let upload_id = upload.upload_id().expect("upload id").to_string();
    h.client
        .upload_part()
        .bucket(BUCKET)
        .key("in-progress")
        .upload_id(&upload_id)
        .part_number(1)
        .body(vec![7u8; 1024].into())
        .send()
        .await
        .expect("UploadPart");
    // Behind the proxy's back: one object gone from each store (s3s-fs keeps plain files).
    fs::remove_file(h.store_dir.join(BUCKET).join("k05")).expect("rm from s3s-fs");
    fs::remove_file(fs_object_path(&mirror_dir, BUCKET, "k07")).expect("rm from the fs mirror");

    let pair = escrow_proxy::cli::open_mirror(h.config()).expect("open the mirror");
    let seen = Collect::default();
    let counters = Counters::default();
    // Clients keep writing other keys (new ones, and overwrites of agreeing ones) meanwhile.
    let writes = async {
        let mut written = Vec::new();
        for i in 0..15 {
            let key = format!("new-{i:02}");
            h.put(BUCKET, &key, &content(&key, 1)).await;
            written.push((key.clone(), content(&key, 1)));
            let key = format!("k{:02}", 10 + i);
            h.put(BUCKET, &key, &content(&key, 2)).await;
            written.push((key.clone(), content(&key, 2)));
        }
        written
    };
    let everything = Options::default();
    let (summary, written) = tokio::join!(reconcile::run(&pair, &everything, &counters, &seen), writes);
    let summary = summary.expect("a pass");
    latest.extend(written);
    assert_eq!(summary.errors, 0, "{summary:?}");
    assert_eq!(summary.extra, 0, "{summary:?}");
    let seen = seen.0.lock().expect("lock").clone();
    assert!(
        seen.contains(&("k05".into(), Kind::Missing, Side::Primary, "copied".into())),
        "{seen:?}"
    );
    assert!(
        seen.contains(&("k07".into(), Kind::Missing, Side::Mirror, "copied".into())),
        "{seen:?}"
    );
    // Anything else it saw was a write in flight, and its fix went toward the new version.
    for (key, kind, _, action) in &seen {
        if key != "k05" && key != "k07" {
            assert!(key.starts_with("new-") || key.as_str() >= "k10", "{key}: {seen:?}");
            assert!(matches!(kind, Kind::Missing | Kind::Stale), "{key}: {seen:?}");
            assert!(action == "copied" || action == "skipped", "{key}: {seen:?}");
        }
    }

    // Afterwards: nothing left, the upload's reserved objects were neither listed nor touched,
    // and every object reads back from each store alone.
    let again = Collect::default();
    let options = Options {
        dry_run: true,
        ..Options::default()
    };
    let summary = reconcile::run(&pair, &options, &Counters::default(), &again)
        .await
        .expect("a pass");
    assert!(again.0.lock().expect("lock").is_empty());
    assert_eq!(summary.scanned, 45, "{summary:?}");
    let root = escrow_proxy::keys::load_root_key(&h.config().keys.root_key_file).expect("root key");
    let ring = escrow_proxy::keys::load_keyring(&h.config().keys.keyring, &root).expect("keyring");
    for side in [Side::Primary, Side::Mirror] {
        for (key, data) in &latest {
            let mut out = Vec::new();
            escrow_proxy::decrypt::decrypt_from_store(&ring, pair.store(side).as_ref(), BUCKET, key, &mut out)
                .await
                .unwrap_or_else(|e| panic!("{key} from {}: {e}", side.name()));
            assert!(out == *data, "{key} from the {} store alone", side.name());
        }
    }
    let parts = h
        .client
        .list_parts()
        .bucket(BUCKET)
        .key("in-progress")
        .upload_id(&upload_id)
        .send()
        .await
        .expect("ListParts");
    assert_eq!(parts.parts().len(), 1);
    h.stop().await;
}
