//! The key lifecycle through the admin API of real `serve` processes (DESIGN §6, issue 11):
//! rotate, rewrap, census, disable/enable, destroy, on two instances sharing one keyring, with
//! curl and the `escrow-proxy admin` CLI as the operator's tools.
//!
//! The primary store is a real S3 server (s3s-fs, in this test process) reached through a
//! counting TCP relay, so the bytes the proxy sends to and receives from the store during a
//! rewrap are measured on the wire; the mirror is the proxy's own fs store.

use std::collections::BTreeMap;
use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use serde_json::Value;

use crate::client::Cmd;
use crate::common::{self, Checksums};
use crate::objects::{FsObject, fs_object_path};
use crate::support::{ACCESS_KEY, SECRET_KEY, Serve, escrow, toml_str};

const TOKEN: &str = "keys-admin-token-for-tests-0123456789";
const BUCKET: &str = "keyed";
/// Bound on anything a test polls for (a job ending, an instance seeing a change).
const POLL_BOUND: Duration = Duration::from_secs(120);

// === the counting relay in front of s3s-fs ===

/// Bytes through the relay: toward the store, and back.
#[derive(Default)]
struct Counted {
    to_store: AtomicU64,
    from_store: AtomicU64,
}

impl Counted {
    fn total(&self) -> (u64, u64) {
        (
            self.to_store.load(Ordering::SeqCst),
            self.from_store.load(Ordering::SeqCst),
        )
    }
}

/// s3s-fs over `root` behind a TCP relay counting every byte; returns the relay's address.
async fn counted_s3s_fs(root: &Path) -> (SocketAddr, Arc<Counted>) {
    let (upstream, _task) = common::start_s3s_fs(root, common::shared::Outage::default()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
    let addr = listener.local_addr().expect("relay addr");
    let counted = Arc::new(Counted::default());
    let c = Arc::clone(&counted);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let c = Arc::clone(&c);
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::join!(pump(cr, sw, &c.to_store), pump(sr, cw, &c.from_store));
            });
        }
    });
    (addr, counted)
}

async fn pump(mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf, count: &AtomicU64) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                count.fetch_add(n as u64, Ordering::SeqCst);
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown().await;
}

// === a deployment: config, processes, tools ===

struct Deployment {
    dir: tempfile::TempDir,
    config: PathBuf,
    token_file: PathBuf,
    ca: Vec<u8>,
    mirror: Option<PathBuf>,
    keyring: PathBuf,
    root_key: PathBuf,
    counted: Option<Arc<Counted>>,
    rt: tokio::runtime::Runtime,
}

impl Deployment {
    /// A config with an S3 primary behind the counting relay (`s3_primary`) or an fs primary,
    /// an fs mirror (`with_mirror`), one keyring, and `[admin]` on `127.0.0.1:0`.
    fn new(s3_primary: bool, with_mirror: bool) -> Self {
        Self::build(s3_primary, with_mirror, None)
    }

    /// Like [`Deployment::new`], the mirror a second s3s-fs (when `s3_mirror`), the keyring kept
    /// in the mirror store's `bucket` (`[keys] mirror_bucket`).
    fn build(s3_primary: bool, with_mirror: bool, keyring_in: Option<(&str, bool)>) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::Builder::new()
            .prefix("escrow-keys-")
            .tempdir()
            .expect("tempdir");
        let root = dir.path();
        let certs = root.join("certs");
        escrow(["certs", "generate", "--out"])
            .arg(&certs)
            .run()
            .ok("certs generate");
        let token_file = root.join("admin-token");
        fs::write(&token_file, format!("{TOKEN}\n")).expect("token");
        fs::set_permissions(&token_file, fs::Permissions::from_mode(0o600)).expect("chmod");
        let (primary, counted) = if s3_primary {
            let s3_root = root.join("s3s-fs");
            fs::create_dir_all(&s3_root).expect("mkdir");
            let (addr, counted) = rt.block_on(counted_s3s_fs(&s3_root));
            (
                format!(
                    "type = \"s3\"\nendpoint = \"http://{addr}\"\nregion = \"us-east-1\"\naccess_key = \"{}\"\nsecret_key = \"{}\"\npath_style = true\n",
                    common::UPSTREAM_ACCESS_KEY,
                    common::UPSTREAM_SECRET_KEY
                ),
                Some(counted),
            )
        } else {
            (
                format!("type = \"fs\"\npath = {}\n", toml_str(&root.join("data/primary"))),
                None,
            )
        };
        let mirror = with_mirror.then(|| root.join("data/mirror"));
        let mut mirror_section = mirror
            .as_ref()
            .map(|m| format!("[mirror]\ntype = \"fs\"\npath = {}\n\n", toml_str(m)))
            .unwrap_or_default();
        let mut keys_extra = String::new();
        if let Some((bucket, s3_mirror)) = keyring_in {
            keys_extra = format!("mirror_bucket = \"{bucket}\"\n");
            if s3_mirror {
                let s3_root = root.join("s3s-fs-mirror");
                fs::create_dir_all(&s3_root).expect("mkdir");
                let (addr, _) = rt.block_on(counted_s3s_fs(&s3_root));
                mirror_section = format!(
                    "[mirror]\ntype = \"s3\"\nendpoint = \"http://{addr}\"\nregion = \"us-east-1\"\naccess_key = \"{}\"\nsecret_key = \"{}\"\npath_style = true\n\n",
                    common::UPSTREAM_ACCESS_KEY,
                    common::UPSTREAM_SECRET_KEY
                );
            }
        }
        let keyring = root.join("data/keyring");
        let root_key = root.join("data/root.key");
        let config = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ntls_cert = {cert}\ntls_key = {key}\n\n\
             [[clients]]\naccess_key = \"{ACCESS_KEY}\"\nsecret_key = \"{SECRET_KEY}\"\n\n\
             [primary]\n{primary}\n{mirror_section}\
             [keys]\nkeyring = {keyring}\nroot_key_file = {root_key}\n{keys_extra}\n\
             [admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = {token}\n",
            cert = toml_str(&certs.join("server.pem")),
            key = toml_str(&certs.join("server-key.pem")),
            keyring = toml_str(&keyring),
            root_key = toml_str(&root_key),
            token = toml_str(&token_file),
        );
        let config_path = root.join("escrow-proxy.toml");
        fs::write(&config_path, config).expect("write config");
        let ca = fs::read(certs.join("ca.pem")).expect("ca");
        Self {
            config: config_path,
            token_file,
            ca,
            mirror,
            keyring,
            root_key,
            counted,
            rt,
            dir,
        }
    }

    fn serve(&self, name: &str) -> Serve {
        Serve::start(self.dir.path(), Some(&self.config), name, &["endpoint", "admin"])
    }

    fn client(&self, serve: &Serve) -> Client {
        common::sdk_client(
            serve.endpoint(),
            &self.ca,
            ACCESS_KEY,
            SECRET_KEY,
            Checksums::WhenRequired,
        )
    }

    /// `escrow-proxy admin --url … --token-file … ARGS`.
    fn admin(&self, serve: &Serve, args: &[&str]) -> crate::client::Ran {
        escrow(["admin", "--url", serve.printed("admin"), "--token-file"])
            .arg(&self.token_file)
            .args(args)
            .run()
    }

    fn log(&self, name: &str) -> String {
        fs::read_to_string(self.dir.path().join(format!("{name}.stderr"))).unwrap_or_default()
    }
}

/// `curl` with the admin token: `(status, JSON body)`.
fn api(serve: &Serve, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    api_with(serve, &format!("Authorization: Bearer {TOKEN}"), method, path, body)
}

fn api_with(serve: &Serve, auth: &str, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let url = format!("{}{path}", serve.printed("admin"));
    let mut cmd = Cmd::new("curl").args(["-sS", "-w", "\n%{http_code}", "-X", method, "-H", auth]);
    if let Some(body) = body {
        cmd = cmd.args(["-H", "Content-Type: application/json", "--data-binary", body]);
    }
    let ran = cmd.arg(url).run().ok("curl");
    let (text, code) = ran.stdout.rsplit_once('\n').expect("status line");
    let value = serde_json::from_str(text).unwrap_or(Value::Null);
    (code.trim().parse().expect("status"), value)
}

/// Waits until `job` on `serve` has ended; returns it.
fn wait_job(serve: &Serve, job: &str) -> Value {
    let deadline = Instant::now() + POLL_BOUND;
    loop {
        let (code, view) = api(serve, "GET", &format!("/admin/jobs/{job}"), None);
        assert_eq!(code, 200, "{view}");
        if view["state"] != "running" {
            return view;
        }
        assert!(Instant::now() < deadline, "job {job} still running: {view}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs a census on `serve` and returns the keys listing that follows it.
fn census(serve: &Serve) -> Value {
    let (code, started) = api(serve, "GET", "/admin/keys/census", None);
    assert_eq!(code, 202, "{started}");
    let job = wait_job(serve, started["job"].as_str().expect("job id"));
    assert_eq!(job["state"], "done", "{job}");
    let (code, keys) = api(serve, "GET", "/admin/keys", None);
    assert_eq!(code, 200);
    keys
}

/// References to `version` in the latest census of `keys`, per store.
fn refs(keys: &Value, version: u32) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (store, counts) in keys["census"]["stores"].as_object().expect("census stores") {
        let v = version.to_string();
        let n = counts["objects"][&v].as_u64().unwrap_or(0) + counts["uploads"][&v].as_u64().unwrap_or(0);
        out.insert(store.clone(), n);
    }
    out
}

/// Waits until `serve` reports `version` active.
fn wait_active(serve: &Serve, version: u64) {
    let deadline = Instant::now() + POLL_BOUND;
    loop {
        let (_, keys) = api(serve, "GET", "/admin/keys", None);
        if keys["active"] == version {
            return;
        }
        assert!(Instant::now() < deadline, "never saw version {version} active: {keys}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The key version of an object in the fs mirror.
fn mirror_kek(mirror: &Path, key: &str) -> String {
    let object = FsObject::read(&fs_object_path(mirror, BUCKET, key));
    object.header["metadata"]["escrow-kek"]
        .as_str()
        .expect("escrow-kek")
        .to_string()
}

fn body_of(i: usize, len: usize) -> Vec<u8> {
    let mut data = format!("object {i} ").into_bytes();
    data.resize(len, (i % 251) as u8);
    data
}

async fn put(client: &Client, key: &str, data: &[u8], meta: Option<&str>) -> Result<(), String> {
    client
        .put_object()
        .bucket(BUCKET)
        .key(key)
        .set_metadata(meta.map(|m| [("big".to_string(), m.to_string())].into()))
        .body(ByteStream::from(data.to_vec()))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| format!("put {key}: {}", DisplayErrorContext(&e)))
}

async fn get(client: &Client, key: &str) -> Result<Vec<u8>, String> {
    let out = client
        .get_object()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .map_err(|e| format!("get {key}: {}", DisplayErrorContext(&e)))?;
    Ok(out
        .body
        .collect()
        .await
        .map_err(|e| format!("get {key}: {e}"))?
        .to_vec())
}

/// What a test wrote: every object's key and content, and the uploads left in progress.
struct Written {
    objects: Vec<(String, Vec<u8>)>,
    uploads: Vec<(String, String, Vec<u8>)>,
}

/// Writes `count` objects of every shape through `client`: single-part ones with the record in
/// the metadata, ones whose large user metadata moves the record into the header extension,
/// empty ones, multipart ones (two parts), and leaves two multipart uploads in progress (one
/// with a part, one without).
async fn write_every_shape(client: &Client, count: usize, small: usize) -> Written {
    use futures::StreamExt;
    let multipart = 2;
    let uploads = 2;
    let singles = count - multipart - uploads;
    let big_meta = "m".repeat(1800);
    let objects: Vec<(String, Vec<u8>, bool)> = (0..singles)
        .map(|i| match i % 50 {
            0 => (format!("empty/{i:04}"), Vec::new(), false),
            1 | 2 => (format!("ext/{i:04}"), body_of(i, 3000), true),
            _ => (format!("small/{i:04}"), body_of(i, small), false),
        })
        .collect();
    let results: Vec<Result<(), String>> = futures::stream::iter(objects.iter())
        .map(|(key, data, ext)| put(client, key, data, ext.then_some(big_meta.as_str())))
        .buffer_unordered(8)
        .collect()
        .await;
    for r in results {
        r.expect("write an object");
    }
    let mut written: Vec<(String, Vec<u8>)> = objects.into_iter().map(|(k, d, _)| (k, d)).collect();
    for i in 0..multipart {
        let key = format!("multi/{i}");
        let (a, b) = (body_of(i, common::MIN_PART), body_of(i + 7, 1000));
        common::upload_multipart(client, BUCKET, &key, &[&a, &b]).await;
        written.push((key, [a, b].concat()));
    }
    let mut in_progress = Vec::new();
    for i in 0..uploads {
        let key = format!("pending/{i}");
        let id = client
            .create_multipart_upload()
            .bucket(BUCKET)
            .key(&key)
            .send()
            .await
            .expect("create upload")
            .upload_id()
            .expect("upload id")
            .to_string();
        let part = body_of(900 + i, 2000);
        if i == 0 {
            client
                .upload_part()
                .bucket(BUCKET)
                .key(&key)
                .upload_id(&id)
                .part_number(1)
                .body(ByteStream::from(part.clone()))
                .send()
                .await
                .expect("upload part");
        }
        in_progress.push((key, id, part));
    }
    Written {
        objects: written,
        uploads: in_progress,
    }
}

/// Finishes the uploads left in progress (uploading the one part where it is missing) and
/// returns their keys and contents.
async fn finish_uploads(client: &Client, uploads: &[(String, String, Vec<u8>)]) -> Vec<(String, Vec<u8>)> {
    let mut done = Vec::new();
    for (i, (key, id, part)) in uploads.iter().enumerate() {
        let etag = if i == 0 {
            let parts = client
                .list_parts()
                .bucket(BUCKET)
                .key(key)
                .upload_id(id)
                .send()
                .await
                .expect("list parts");
            parts.parts()[0].e_tag().expect("etag").to_string()
        } else {
            client
                .upload_part()
                .bucket(BUCKET)
                .key(key)
                .upload_id(id)
                .part_number(1)
                .body(ByteStream::from(part.clone()))
                .send()
                .await
                .expect("upload part")
                .e_tag()
                .expect("etag")
                .to_string()
        };
        client
            .complete_multipart_upload()
            .bucket(BUCKET)
            .key(key)
            .upload_id(id)
            .multipart_upload(
                aws_sdk_s3::types::CompletedMultipartUpload::builder()
                    .parts(
                        aws_sdk_s3::types::CompletedPart::builder()
                            .part_number(1)
                            .e_tag(etag)
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .unwrap_or_else(|e| panic!("complete {key}: {}", DisplayErrorContext(&e)));
        done.push((key.clone(), part.clone()));
    }
    done
}

/// Every object reads back as written.
async fn read_all(client: &Client, objects: &[(String, Vec<u8>)]) {
    use futures::StreamExt;
    let results: Vec<(String, bool, Result<Vec<u8>, String>)> = futures::stream::iter(objects.iter())
        .map(|(key, data)| async move {
            let got = get(client, key).await;
            (key.clone(), got.as_ref().is_ok_and(|g| g == data), got)
        })
        .buffer_unordered(8)
        .collect()
        .await;
    for (key, same, got) in results {
        assert!(same, "{key}: {:?}", got.map(|g| g.len()));
    }
}

/// Key material of every version the keyring at `path` holds, as hex and base64.
fn key_material(deployment: &Deployment) -> Vec<String> {
    let root = escrow_proxy::keys::load_root_key(&deployment.root_key).expect("root key");
    let ring = escrow_proxy::keys::load_keyring(&deployment.keyring, &root).expect("keyring");
    let mut out = vec![hex::encode(root.expose()), common::b64(root.expose())];
    for v in ring.versions() {
        if let Ok(k) = ring.kek(v.version) {
            out.push(hex::encode(k.expose()));
            out.push(common::b64(k.expose()));
        }
    }
    out
}

// === the tests ===

/// 1,000 objects of every shape in both stores move to the new key version with no body bytes
/// through the proxy (the relay's counters), the census then shows the old version unused in
/// either store, the old version is destroyed, and everything still reads — including the
/// uploads that were in progress during the rewrap, completed afterwards.
#[test]
fn rewrap_moves_every_shape_in_both_stores_without_moving_bodies() {
    let d = Deployment::new(true, true);
    let serve = d.serve("rewrap");
    let client = d.client(&serve);
    let counted = d.counted.clone().expect("relay");
    let mirror = d.mirror.clone().expect("mirror");
    d.rt.block_on(common::create_bucket(&client, BUCKET));
    let written = d.rt.block_on(write_every_shape(&client, 1000, 64 << 10));
    let body_bytes: u64 = written.objects.iter().map(|(_, b)| b.len() as u64).sum();

    let (code, rotated) = api(&serve, "POST", "/admin/keys/rotate", None);
    assert_eq!((code, rotated["active"].as_u64()), (200, Some(2)), "{rotated}");
    let keys = census(&serve);
    assert_eq!(
        refs(&keys, 1),
        [("mirror".to_string(), 1000), ("primary".to_string(), 1000)].into(),
        "998 objects and 2 uploads in each store: {keys}"
    );

    // A dry run counts and changes nothing.
    let dry = d
        .admin(&serve, &["keys", "rewrap", "--bucket", BUCKET, "--dry-run", "--wait"])
        .ok("dry run");
    assert!(dry.stdout.contains("\"would_rewrap\": 2000"), "{}", dry.describe());
    assert_eq!(mirror_kek(&mirror, "small/0003"), "1");

    let before = counted.total();
    let ran = d.admin(&serve, &["keys", "rewrap", "--wait"]).ok("rewrap");
    let after = counted.total();
    let job: Value = serde_json::from_str(&ran.stdout).expect("job JSON");
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["progress"]["rewrapped"], 2000, "{job}");
    assert_eq!(job["progress"]["uploads_rewrapped"], 4, "{job}");
    let sent = after.0 - before.0;
    let received = after.1 - before.1;
    let primary_bodies = body_bytes;
    eprintln!(
        "rewrap of 1000 objects in the S3 primary: {sent} bytes to the store, {received} from it; \
         the objects' bodies total {primary_bodies} bytes"
    );
    // Requests and answers only: a listing, a HEAD, a CopyObject (and a marker read) per object.
    assert!(sent < 1000 * 4096, "sent {sent} bytes toward the store");
    assert!(received < 1000 * 4096, "received {received} bytes from the store");
    assert!(
        sent + received < primary_bodies / 8,
        "{sent} + {received} vs {primary_bodies}"
    );
    assert_eq!(mirror_kek(&mirror, "small/0003"), "2");
    assert_eq!(mirror_kek(&mirror, "multi/1"), "2");

    // Resumable: a second run finds everything current.
    let again = d.admin(&serve, &["keys", "rewrap", "--wait"]).ok("rewrap again");
    assert!(again.stdout.contains("\"current\": 2000"), "{}", again.describe());

    let keys = census(&serve);
    assert_eq!(
        refs(&keys, 1),
        [("mirror".to_string(), 0), ("primary".to_string(), 0)].into(),
        "{keys}"
    );
    assert_eq!(refs(&keys, 2).values().sum::<u64>(), 2000, "{keys}");
    let (code, destroyed) = api(&serve, "POST", "/admin/keys/1/destroy", None);
    assert_eq!(code, 200, "{destroyed}");
    assert_eq!(destroyed["state"], "destroyed");

    d.rt.block_on(read_all(&client, &written.objects));
    let finished = d.rt.block_on(finish_uploads(&client, &written.uploads));
    d.rt.block_on(read_all(&client, &finished));
    drop(serve);
    let log = d.log("rewrap");
    assert!(!log.contains(TOKEN));
}

/// Two instances share one keyring while clients write and read through both: a rotation on
/// one is used by the other within seconds, a rewrap and a census run, the old version is
/// disabled, enabled, disabled and destroyed — and no client request fails. Then concurrent
/// rotations on both instances lose no version.
#[test]
fn two_instances_rotate_rewrap_disable_and_destroy_under_load() {
    let d = Deployment::new(true, true);
    let a = d.serve("instance-a");
    let b = d.serve("instance-b");
    let (ca, cb) = (d.client(&a), d.client(&b));
    let mirror = d.mirror.clone().expect("mirror");
    d.rt.block_on(common::create_bucket(&ca, BUCKET));
    let written = d.rt.block_on(write_every_shape(&ca, 100, 4096));

    // Load: each instance gets a writer that reads back what it wrote, and reads the fixed
    // objects, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let done_ops = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for (name, client) in [("a", ca.clone()), ("b", cb.clone())] {
        let (stop, failures, done_ops) = (Arc::clone(&stop), Arc::clone(&failures), Arc::clone(&done_ops));
        let fixed: Vec<(String, Vec<u8>)> = written.objects.iter().step_by(7).cloned().collect();
        workers.push(std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("rt");
            let mut i = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let key = format!("load/{name}/{i:06}");
                let data = body_of(i, 2048 + i % 4096);
                let outcome = rt.block_on(async {
                    put(&client, &key, &data, None).await?;
                    let got = get(&client, &key).await?;
                    if got != data {
                        return Err(format!("{key}: read back different bytes"));
                    }
                    let (fk, fd) = &fixed[i % fixed.len()];
                    if get(&client, fk).await? != *fd {
                        return Err(format!("{fk}: read back different bytes"));
                    }
                    Ok(())
                });
                match outcome {
                    Ok(()) => {
                        done_ops.fetch_add(3, Ordering::SeqCst);
                    }
                    Err(e) => failures.lock().expect("lock").push(e),
                }
                i += 1;
            }
            i
        }));
    }
    let ops_at = |n: u64| {
        let deadline = Instant::now() + POLL_BOUND;
        while done_ops.load(Ordering::SeqCst) < n {
            assert!(Instant::now() < deadline, "the load made no progress");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    ops_at(30);

    // Rotate on A with curl; B picks it up by itself.
    let (code, rotated) = api(&a, "POST", "/admin/keys/rotate", None);
    assert_eq!((code, rotated["active"].as_u64()), (200, Some(2)), "{rotated}");
    wait_active(&b, 2);
    let seen = done_ops.load(Ordering::SeqCst);
    ops_at(seen + 30);
    // New objects from both instances carry the new version (their load keys are numbered:
    // the latest written by each).
    for name in ["a", "b"] {
        let deadline = Instant::now() + POLL_BOUND;
        loop {
            let key = format!("rot/{name}");
            let client = if name == "a" { &ca } else { &cb };
            d.rt.block_on(put(client, &key, b"after rotation", None)).expect("put");
            if mirror_kek(&mirror, &key) == "2" {
                break;
            }
            assert!(Instant::now() < deadline, "{name} still writes under version 1");
        }
    }

    // Rewrap through B's CLI while the load runs; then the census shows version 1 unused.
    let ran = d.admin(&b, &["keys", "rewrap", "--wait"]).ok("rewrap under load");
    assert!(ran.stdout.contains("\"state\": \"done\""), "{}", ran.describe());
    let keys = census(&a);
    assert_eq!(refs(&keys, 1).values().sum::<u64>(), 0, "{keys}");

    // Disable, enable, disable (through the CLI on either instance); the load carries on.
    d.admin(&a, &["keys", "disable", "1"]).ok("disable");
    let seen = done_ops.load(Ordering::SeqCst);
    ops_at(seen + 30);
    d.admin(&b, &["keys", "enable", "1"]).ok("enable");
    d.admin(&b, &["keys", "disable", "1"]).ok("disable again");
    let (code, destroyed) = api(&b, "POST", "/admin/keys/1/destroy", None);
    assert_eq!(code, 200, "{destroyed}");
    let seen = done_ops.load(Ordering::SeqCst);
    ops_at(seen + 30);

    stop.store(true, Ordering::SeqCst);
    let rounds: usize = workers.into_iter().map(|w| w.join().expect("worker")).sum();
    let failures = failures.lock().expect("lock").clone();
    eprintln!(
        "load: {rounds} rounds ({} requests) through two instances",
        done_ops.load(Ordering::SeqCst)
    );
    assert!(
        failures.is_empty(),
        "{} failed requests: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );

    // Concurrent rotations on both instances (the CLI retries a 409): none is lost.
    let rotations: Vec<std::thread::JoinHandle<crate::client::Ran>> = (0..6)
        .map(|i| {
            let url = if i % 2 == 0 {
                a.printed("admin")
            } else {
                b.printed("admin")
            }
            .to_string();
            let token_file = d.token_file.clone();
            std::thread::spawn(move || {
                escrow(["admin", "--url", &url, "--token-file"])
                    .arg(&token_file)
                    .args(["keys", "rotate"])
                    .run()
            })
        })
        .collect();
    let mut actives = Vec::new();
    for r in rotations {
        let ran = r.join().expect("rotation thread").ok("concurrent rotate");
        let v: Value = serde_json::from_str(&ran.stdout).expect("JSON");
        actives.push(v["active"].as_u64().expect("active"));
    }
    actives.sort_unstable();
    assert_eq!(actives, vec![3, 4, 5, 6, 7, 8], "every rotation made its own version");
    wait_active(&a, 8);
    wait_active(&b, 8);
    let (_, keys) = api(&a, "GET", "/admin/keys", None);
    assert_eq!(keys["versions"].as_array().map(Vec::len), Some(8), "{keys}");

    let material = key_material(&d);
    drop((a, b));
    for name in ["instance-a", "instance-b"] {
        let log = d.log(name);
        assert!(
            log.contains("key rotated") && log.contains("admin request"),
            "{name}: audit lines"
        );
        assert!(!log.contains(TOKEN), "{name}: the token is logged");
        for m in &material {
            assert!(!log.contains(m.as_str()), "{name}: key material is logged");
        }
    }
}

/// One instance, fs stores: disable makes reads fail with a clear S3 error and enable undoes
/// it; destroy is refused for the active version, without a census, and while the census shows
/// references, then forced — after which the object is unreadable by the proxy and by the
/// offline `decrypt`. Bad tokens and bad requests get clear errors and change nothing.
#[test]
fn disable_enable_destroy_and_bad_requests() {
    let d = Deployment::new(false, false);
    let serve = d.serve("lifecycle");
    let client = d.client(&serve);
    d.rt.block_on(common::create_bucket(&client, BUCKET));
    d.rt.block_on(put(&client, "left-behind", b"written under version 1", None))
        .expect("put");

    let (code, body) = api(&serve, "POST", "/admin/keys/1/destroy", None);
    assert_eq!(code, 409, "the active version: {body}");
    let (code, body) = api(&serve, "POST", "/admin/keys/1/disable", None);
    assert_eq!(code, 409, "{body}");
    d.rt.block_on(common::create_bucket(&client, "cancel-me"));
    for i in 0..20 {
        let c = &client;
        d.rt.block_on(async move {
            c.put_object()
                .bucket("cancel-me")
                .key(format!("k{i:02}"))
                .body(ByteStream::from(vec![i as u8; 100]))
                .send()
                .await
                .expect("put")
        });
    }
    let (code, _) = api(&serve, "POST", "/admin/keys/rotate", None);
    assert_eq!(code, 200);

    // A slow rewrap (2 objects a second) is cancelled, then resumed to the end.
    let (code, started) = api(
        &serve,
        "POST",
        "/admin/keys/rewrap",
        Some("{\"bucket\": \"cancel-me\", \"rate\": 2}"),
    );
    assert_eq!(code, 202, "{started}");
    let id = started["job"].as_str().expect("job").to_string();
    let (code, again) = api(&serve, "POST", "/admin/keys/rewrap", Some("{}"));
    assert_eq!(code, 409, "one rewrap at a time: {again}");
    let cancelled = d.admin(&serve, &["jobs", &id, "--cancel", "--wait"]);
    assert_eq!(cancelled.status.code(), Some(1), "{}", cancelled.describe());
    assert!(cancelled.stderr.contains("cancelled"), "{}", cancelled.describe());
    let job = wait_job(&serve, &id);
    let first = job["progress"]["rewrapped"].as_u64().unwrap_or(0);
    assert!(first < 20, "cancelled before the end: {job}");
    let resumed = d
        .admin(&serve, &["keys", "rewrap", "--bucket", "cancel-me", "--wait"])
        .ok("resumed rewrap");
    let job: Value = serde_json::from_str(&resumed.stdout).expect("JSON");
    assert_eq!(job["progress"]["rewrapped"].as_u64(), Some(20 - first), "{job}");
    assert_eq!(job["progress"]["current"].as_u64(), Some(first), "{job}");

    // Disable: a clear S3 error, not a 500; enable: readable again.
    d.admin(&serve, &["keys", "disable", "1"]).ok("disable");
    let err = d.rt.block_on(get(&client, "left-behind")).expect_err("disabled");
    assert!(err.contains("KeyDisabled") && err.contains("403"), "{err}");
    d.admin(&serve, &["keys", "enable", "1"]).ok("enable");
    assert_eq!(
        d.rt.block_on(get(&client, "left-behind")).expect("enabled again"),
        b"written under version 1"
    );

    // Destroy: refused without a census, refused while the census shows the object, forced.
    let (code, body) = api(&serve, "POST", "/admin/keys/1/destroy", None);
    assert_eq!(code, 409, "no census yet: {body}");
    let keys = census(&serve);
    assert_eq!(refs(&keys, 1).values().sum::<u64>(), 1, "{keys}");
    let refused = d.admin(&serve, &["keys", "destroy", "1"]);
    assert_eq!(refused.status.code(), Some(1), "{}", refused.describe());
    assert!(
        refused.stderr.contains("409") && refused.stderr.contains("rewrap"),
        "{}",
        refused.describe()
    );
    let (code, keys) = api(&serve, "GET", "/admin/keys", None);
    assert_eq!((code, &keys["versions"][0]["state"]), (200, &Value::from("decrypt")));
    d.admin(&serve, &["keys", "destroy", "1", "--force"])
        .ok("forced destroy");
    let err = d.rt.block_on(get(&client, "left-behind")).expect_err("destroyed");
    assert!(err.contains("KeyDestroyed") && err.contains("403"), "{err}");
    let sealed = fs::read_to_string(&d.keyring).expect("keyring");
    assert!(sealed.contains("\"format\": 2"), "{sealed}");
    let offline = escrow(["decrypt", "--config"])
        .arg(&d.config)
        .args(["--bucket", BUCKET, "--key", "left-behind", "--out"])
        .arg(d.dir.path().join("out"))
        .run();
    assert_eq!(offline.status.code(), Some(1), "{}", offline.describe());
    assert!(offline.stderr.contains("destroyed"), "{}", offline.describe());
    // Enabling a destroyed version is refused.
    let (code, body) = api(&serve, "POST", "/admin/keys/1/enable", None);
    assert_eq!(code, 409, "{body}");

    // Bad requests: clear errors, nothing changed.
    for (method, path, body, want) in [
        ("POST", "/admin/keys/abc/disable", None, 400),
        ("POST", "/admin/keys/99/disable", None, 404),
        ("POST", "/admin/keys/2/destroy", Some("{\"force\": \"yes\"}"), 400),
        ("POST", "/admin/keys/rewrap", Some("{\"from\": [99]}"), 400),
        ("POST", "/admin/keys/rewrap", Some("{\"rate\": 0}"), 400),
        ("POST", "/admin/keys/rewrap", Some("{\"nonsense\": 1}"), 400),
        ("POST", "/admin/keys/rewrap", Some("not json"), 400),
        ("GET", "/admin/keys/census?bucket=", None, 400),
        ("GET", "/admin/keys/rotate", None, 405),
    ] {
        let (code, answer) = api(&serve, method, path, body);
        assert_eq!(code, want, "{method} {path}: {answer}");
        assert!(answer["error"].is_string(), "{answer}");
    }
    // Missing, wrong and short tokens on the new routes.
    for auth in [
        "X-Nothing: 1".to_string(),
        "Authorization: Bearer wrong-token-wrong-token-wrong-token".to_string(),
        format!("Authorization: Bearer {}", &TOKEN[..10]),
    ] {
        let (code, answer) = api_with(&serve, &auth, "POST", "/admin/keys/rotate", None);
        assert_eq!(code, 401, "{auth}: {answer}");
    }
    let (_, keys) = api(&serve, "GET", "/admin/keys", None);
    assert_eq!(keys["active"], 2, "nothing rotated: {keys}");
    let wrong_token = d.dir.path().join("wrong-token");
    fs::write(&wrong_token, "wrong-token-wrong-token-wrong-token\n").expect("write");
    fs::set_permissions(&wrong_token, fs::Permissions::from_mode(0o600)).expect("chmod");
    let ran = escrow(["admin", "--url", serve.printed("admin"), "--token-file"])
        .arg(&wrong_token)
        .args(["keys", "list"])
        .run();
    assert_eq!(ran.status.code(), Some(1), "{}", ran.describe());
    assert!(ran.stderr.contains("401"), "{}", ran.describe());
    assert!(!ran.stderr.contains("wrong-token-wrong"), "{}", ran.describe());

    // The CLI finds the admin API and token through the configuration.
    let listed = escrow(["admin", "--config"])
        .arg(&d.config)
        .args(["keys", "list"])
        .run();
    // The config's listen port is 0 (the test's), so only the URL must be given.
    let listed = if listed.status.success() {
        listed
    } else {
        escrow(["admin", "--config"])
            .arg(&d.config)
            .args(["--url", serve.printed("admin"), "keys", "list"])
            .run()
            .ok("admin keys list from the config's token file")
    };
    assert!(listed.stdout.contains("\"destroyed\""), "{}", listed.describe());
    let material = key_material(&d);
    drop(serve);
    let log = d.log("lifecycle");
    assert!(!log.contains(TOKEN));
    for m in &material {
        assert!(!log.contains(m.as_str()), "key material is logged");
    }
}

/// The status page: a login form without a session, a wrong token refused, a cookie that is
/// HttpOnly and SameSite=Strict, and — in headless Chromium, signed in through a one-time
/// link — the live values of the running proxy.
#[test]
fn status_page_renders_live_values_in_headless_chromium() {
    let d = Deployment::new(false, true);
    let serve = d.serve("page");
    let admin = serve.printed("admin").to_string();
    let (code, rotated) = api(&serve, "POST", "/admin/keys/rotate", None);
    assert_eq!(code, 200, "{rotated}");
    census(&serve);

    let curl = |args: &[&str]| Cmd::new("curl").args(["-sS", "-i"]).args(args).run().ok("curl").stdout;
    let login = curl(&[&format!("{admin}/")]);
    assert!(
        login.contains("name=\"token\"") && !login.contains("Key versions"),
        "{login}"
    );
    let wrong = curl(&["--data", "token=nope", &format!("{admin}/login")]);
    assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
    let right = curl(&["--data", &format!("token={TOKEN}"), &format!("{admin}/login")]);
    assert!(right.starts_with("HTTP/1.1 303"), "{right}");
    let cookie_line = right
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .expect("a cookie")
        .to_string();
    assert!(
        cookie_line.contains("HttpOnly") && cookie_line.contains("SameSite=Strict"),
        "{cookie_line}"
    );
    assert!(!cookie_line.contains(TOKEN));
    let cookie = cookie_line
        .split_once(':')
        .map(|(_, v)| v.trim().split(';').next().unwrap_or("").to_string())
        .expect("cookie value");
    let page = curl(&["-H", &format!("Cookie: {cookie}"), &format!("{admin}/")]);
    assert!(
        page.contains("Key versions") && page.contains("id=\"active-version\">2<"),
        "{page}"
    );
    // Request rates: S3 traffic shows up as a rate over the sampled window.
    let client = d.client(&serve);
    d.rt.block_on(common::create_bucket(&client, BUCKET));
    for i in 0..20 {
        d.rt.block_on(put(&client, &format!("rate/{i}"), &body_of(i, 1000), None))
            .expect("put");
    }
    let rate = |page: &str| -> Option<f64> {
        let at = page.find("id=\"rate-requests\">")? + "id=\"rate-requests\">".len();
        page[at..].split('<').next()?.parse().ok()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let rated = loop {
        let page = curl(&["-H", &format!("Cookie: {cookie}"), &format!("{admin}/")]);
        match rate(&page) {
            Some(r) if r > 0.0 => break page,
            _ if Instant::now() > deadline => panic!("no request rate on the page: {page}"),
            _ => std::thread::sleep(Duration::from_millis(250)),
        }
    };
    assert!(
        rated.contains("escrow_s3_requests_total"),
        "the counters list S3 requests"
    );
    let forged = curl(&["-H", "Cookie: escrow_admin=00", &format!("{admin}/")]);
    assert!(!forged.contains("Key versions"), "{forged}");

    let Some(chromium) = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| Cmd::new("which").arg(c).run().status.success())
    else {
        eprintln!("SKIPPED (loudly): headless Chromium is not installed; run scripts/install-test-deps.sh");
        return;
    };
    let (code, link) = api(&serve, "POST", "/admin/page-link", None);
    assert_eq!(code, 200, "{link}");
    let url = format!("{admin}{}", link["url"].as_str().expect("url"));
    let profile = d.dir.path().join("chromium-profile");
    let ran = Cmd::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--dump-dom", &url])
        .run();
    let dom = ran.stdout.clone();
    assert!(
        dom.contains("Key versions"),
        "chromium did not render the page: {}",
        ran.describe()
    );
    assert!(dom.contains("id=\"active-version\">2<"), "{dom}");
    assert!(dom.contains("data-version=\"1\"") && dom.contains(">decrypt<"), "{dom}");
    assert!(dom.contains("Latest census"), "{dom}");
    assert!(dom.contains("primary") && dom.contains("mirror"), "{dom}");
    assert!(dom.contains("census-"), "the census job is listed: {dom}");
    // The link was used once: a second visit gets the login form.
    let again = curl(&[&url]);
    assert!(again.starts_with("HTTP/1.1 401"), "{again}");
    drop(serve);
    let log = d.log("page");
    assert!(!log.contains(TOKEN));
    assert!(log.contains("status page login"), "the logins are audited");
}

/// The keyring kept in the mirror store (`[keys] mirror_bucket`; here an fs mirror, whose
/// conditional writes hold a lock file):
/// a second instance with its own, empty local keyring path starts from the store's; concurrent
/// rotations on both instances are compare-and-swapped in the store (conditional PUTs) and lose
/// no version; a destroy reaches every instance's local copy, so the offline tools agree; the
/// keyring object is invisible and refused to clients.
#[test]
fn the_keyring_kept_in_the_mirror_store_is_shared_by_conditional_writes() {
    let d = Deployment::build(false, true, Some(("escrow-keys", false)));
    let a = d.serve("home-a");
    // Instance B: the same root key, its own local keyring path (nothing there yet).
    let b_keyring = d.dir.path().join("data/keyring-b");
    let b_config = d.dir.path().join("escrow-proxy-b.toml");
    let config = fs::read_to_string(&d.config).expect("config");
    let config = config.replace(&toml_str(&d.keyring), &toml_str(&b_keyring));
    fs::write(&b_config, config).expect("write");
    let b = Serve::start(d.dir.path(), Some(&b_config), "home-b", &["endpoint", "admin"]);
    assert!(b_keyring.exists(), "B keeps a local copy of the shared keyring");

    let rotations: Vec<std::thread::JoinHandle<crate::client::Ran>> = (0..6)
        .map(|i| {
            let url = if i % 2 == 0 {
                a.printed("admin")
            } else {
                b.printed("admin")
            }
            .to_string();
            let token_file = d.token_file.clone();
            std::thread::spawn(move || {
                escrow(["admin", "--url", &url, "--token-file"])
                    .arg(&token_file)
                    .args(["keys", "rotate"])
                    .run()
            })
        })
        .collect();
    let mut actives: Vec<u64> = rotations
        .into_iter()
        .map(|r| {
            let ran = r.join().expect("thread").ok("rotate");
            serde_json::from_str::<Value>(&ran.stdout).expect("JSON")["active"]
                .as_u64()
                .expect("active")
        })
        .collect();
    actives.sort_unstable();
    assert_eq!(actives, vec![2, 3, 4, 5, 6, 7]);
    wait_active(&a, 7);
    wait_active(&b, 7);

    // Objects written through A read through B, across the rotations.
    let (ca, cb) = (d.client(&a), d.client(&b));
    d.rt.block_on(common::create_bucket(&ca, BUCKET));
    d.rt.block_on(put(&ca, "shared", b"one keyring", None)).expect("put");
    assert_eq!(d.rt.block_on(get(&cb, "shared")).expect("get"), b"one keyring");
    // The keyring object is the proxy's: refused and unlisted.
    let err = d.rt.block_on(get(&ca, ".escrow-mpu/keyring")).expect_err("reserved");
    assert!(!err.contains("200"), "{err}");

    let (code, destroyed) = api(&a, "POST", "/admin/keys/1/destroy", Some("{\"force\": true}"));
    assert_eq!(code, 200, "{destroyed}");
    let deadline = Instant::now() + POLL_BOUND;
    loop {
        let listed = escrow(["keys", "list", "--keyring"])
            .arg(&b_keyring)
            .arg("--root-key")
            .arg(&d.root_key)
            .run()
            .ok("keys list");
        if listed.stdout.lines().next().is_some_and(|l| l.contains("Destroyed")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B's local copy never saw the destroy: {}",
            listed.stdout
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop((a, b));
    for name in ["home-a", "home-b"] {
        assert!(!d.log(name).contains(TOKEN));
    }
}

/// The keyring kept in an S3 mirror (s3s-fs): seeded with `If-None-Match: *`, changed with
/// `If-Match`; a second instance starts from it and follows a rotation. (s3s-fs checks the
/// condition before it writes, not atomically, so concurrent changes are tested on the fs
/// mirror above; AWS S3's conditional writes are atomic.)
#[test]
fn the_keyring_kept_in_an_s3_mirror_follows_rotations() {
    let d = Deployment::build(false, true, Some(("escrow-keys", true)));
    let a = d.serve("s3home-a");
    let b = d.serve("s3home-b");
    for (i, serve) in [&a, &b, &a].into_iter().enumerate() {
        let ran = d.admin(serve, &["keys", "rotate"]).ok("rotate");
        let v: Value = serde_json::from_str(&ran.stdout).expect("JSON");
        assert_eq!(v["active"].as_u64(), Some(i as u64 + 2), "{v}");
    }
    wait_active(&b, 4);
    wait_active(&a, 4);
    let (ca, cb) = (d.client(&a), d.client(&b));
    d.rt.block_on(common::create_bucket(&ca, BUCKET));
    d.rt.block_on(put(&cb, "k", b"under version 4", None)).expect("put");
    assert_eq!(d.rt.block_on(get(&ca, "k")).expect("get"), b"under version 4");
}

/// SSE-C objects (single-part, multipart, and an upload in progress) move to a new key version
/// with a rewrap that never sees their customer key, in both stores; after the old version is
/// destroyed they still read with the key (and the upload completes), and not without it. The
/// offline `decrypt` reads the rewrapped mirror copy with `--sse-c-key-file`.
#[test]
fn rewrap_keeps_sse_c_objects_readable_with_their_key_only() {
    use base64::Engine as _;
    use md5::Digest as _;
    let d = Deployment::new(false, true);
    let serve = d.serve("rewrap-ssec");
    let client = d.client(&serve);
    let mirror = d.mirror.clone().expect("mirror");
    let raw = [0x5cu8; 32];
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let (key, md5) = (b64(&raw), b64(&md5::Md5::digest(raw)));
    let single = body_of(1, 200 << 10);
    let (p1, p2) = (body_of(2, 5 << 20), body_of(3, 1000));
    d.rt.block_on(async {
        common::create_bucket(&client, BUCKET).await;
        client
            .put_object()
            .bucket(BUCKET)
            .key("ssec/single")
            .sse_customer_algorithm("AES256")
            .sse_customer_key(&key)
            .sse_customer_key_md5(&md5)
            .body(ByteStream::from(single.clone()))
            .send()
            .await
            .expect("SSE-C PUT");
    });
    let upload = |name: &'static str, complete: bool| {
        let (client, key, md5, p1, p2) = (&client, &key, &md5, &p1, &p2);
        async move {
            let id = client
                .create_multipart_upload()
                .bucket(BUCKET)
                .key(name)
                .sse_customer_algorithm("AES256")
                .sse_customer_key(key)
                .sse_customer_key_md5(md5)
                .send()
                .await
                .expect("create")
                .upload_id()
                .expect("id")
                .to_string();
            let mut parts = Vec::new();
            let bodies: &[&Vec<u8>] = if complete { &[p1, p2] } else { &[p1] };
            for (i, body) in bodies.iter().enumerate() {
                let n = i as i32 + 1;
                let out = client
                    .upload_part()
                    .bucket(BUCKET)
                    .key(name)
                    .upload_id(&id)
                    .part_number(n)
                    .sse_customer_algorithm("AES256")
                    .sse_customer_key(key)
                    .sse_customer_key_md5(md5)
                    .body(ByteStream::from(body.to_vec()))
                    .send()
                    .await
                    .expect("part");
                parts.push(
                    aws_sdk_s3::types::CompletedPart::builder()
                        .part_number(n)
                        .e_tag(out.e_tag().expect("etag"))
                        .build(),
                );
            }
            (id, parts)
        }
    };
    let complete = |name: &'static str, id: String, parts: Vec<aws_sdk_s3::types::CompletedPart>| {
        let client = &client;
        async move {
            client
                .complete_multipart_upload()
                .bucket(BUCKET)
                .key(name)
                .upload_id(id)
                .multipart_upload(
                    aws_sdk_s3::types::CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .unwrap_or_else(|e| panic!("complete {name}: {}", DisplayErrorContext(&e)));
        }
    };
    let (id, parts) = d.rt.block_on(upload("ssec/multi", true));
    d.rt.block_on(complete("ssec/multi", id, parts));
    let (pending, mut pending_parts) = d.rt.block_on(upload("ssec/pending", false));

    let (code, rotated) = api(&serve, "POST", "/admin/keys/rotate", None);
    assert_eq!((code, rotated["active"].as_u64()), (200, Some(2)), "{rotated}");
    let ran = d.admin(&serve, &["keys", "rewrap", "--wait"]).ok("rewrap");
    let job: Value = serde_json::from_str(&ran.stdout).expect("job JSON");
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(
        job["progress"]["rewrapped"], 6,
        "2 objects and 1 upload, in each store: {job}"
    );
    assert_eq!(mirror_kek(&mirror, "ssec/single"), "2");
    assert_eq!(mirror_kek(&mirror, "ssec/multi"), "2");
    let keys = census(&serve);
    assert_eq!(refs(&keys, 1).values().sum::<u64>(), 0, "{keys}");
    let (code, destroyed) = api(&serve, "POST", "/admin/keys/1/destroy", None);
    assert_eq!(code, 200, "{destroyed}");

    let get = |name: &'static str, with_key: bool| {
        let (client, key, md5) = (&client, &key, &md5);
        async move {
            let mut req = client.get_object().bucket(BUCKET).key(name);
            if with_key {
                req = req
                    .sse_customer_algorithm("AES256")
                    .sse_customer_key(key)
                    .sse_customer_key_md5(md5);
            }
            match req.send().await {
                Ok(out) => Ok(out.body.collect().await.expect("body").to_vec()),
                Err(e) => Err(e.raw_response().map(|r| r.status().as_u16()).unwrap_or(0)),
            }
        }
    };
    d.rt.block_on(async {
        assert!(get("ssec/single", true).await.expect("single after rewrap") == single);
        assert!(get("ssec/multi", true).await.expect("multi after rewrap") == [p1.clone(), p2.clone()].concat());
        assert_eq!(get("ssec/single", false).await.err(), Some(400), "no key after rewrap");
        // The upload started before the rewrap takes its last part and completes.
        let out = client
            .upload_part()
            .bucket(BUCKET)
            .key("ssec/pending")
            .upload_id(&pending)
            .part_number(2)
            .sse_customer_algorithm("AES256")
            .sse_customer_key(&key)
            .sse_customer_key_md5(&md5)
            .body(ByteStream::from(p2.clone()))
            .send()
            .await
            .expect("part after rewrap");
        pending_parts.push(
            aws_sdk_s3::types::CompletedPart::builder()
                .part_number(2)
                .e_tag(out.e_tag().expect("etag"))
                .build(),
        );
    });
    d.rt.block_on(complete("ssec/pending", pending, pending_parts));
    d.rt.block_on(async {
        assert!(get("ssec/pending", true).await.expect("pending") == [p1.clone(), p2.clone()].concat());
    });
    drop(serve);

    // Offline, from the mirror's object file, with the key in a private file.
    let key_file = d.dir.path().join("customer.key");
    fs::write(&key_file, format!("{key}\n")).expect("key file");
    fs::set_permissions(&key_file, fs::Permissions::from_mode(0o600)).expect("chmod");
    let out = d.dir.path().join("single.out");
    escrow(["decrypt", "--keyring"])
        .arg(&d.keyring)
        .arg("--root-key")
        .arg(&d.root_key)
        .args(["--bucket", BUCKET, "--key", "ssec/single", "--object"])
        .arg(fs_object_path(&mirror, BUCKET, "ssec/single"))
        .arg("--sse-c-key-file")
        .arg(&key_file)
        .arg("-o")
        .arg(&out)
        .run()
        .ok("offline decrypt of a rewrapped SSE-C object");
    assert!(fs::read(&out).expect("out") == single);
    assert!(!d.log("rewrap-ssec").contains(&key), "the customer key is never logged");
}
