//! The proxy under test: the real `escrow-proxy` binary, started with `serve` on
//! `127.0.0.1:0` over TLS with certificates it generated itself, in a tempdir of its own.
//!
//! The primary store is either the proxy's own fs store or a real S3 server (s3s-fs, in
//! process on `127.0.0.1:0`). Either way [`Proxy::store_dir`] is the directory where the bytes
//! the proxy sent to the store end up, so a test can scan it for plaintext.
//!
//! The child process is killed (by its pid, via [`Child::kill`]) when the harness drops.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tempfile::TempDir;

use crate::client::Cmd;
use shared::{Vanished, tail, toml_str};

#[path = "../shared/mod.rs"]
#[allow(dead_code)] // The in-process harness and the command-line tests use more of it.
mod shared;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_escrow-proxy");
/// Credentials S3 clients sign with (a `[[clients]]` entry of the proxy's config).
pub const ACCESS_KEY: &str = "AKIAESCROWTEST0001";
/// Secret of [`ACCESS_KEY`].
pub const SECRET_KEY: &str = "escrow-test-secret-0001";
/// Region the proxy and the upstream S3 server use.
pub const REGION: &str = "us-east-1";
/// Credentials the proxy uses toward the s3s-fs upstream.
const UPSTREAM_ACCESS_KEY: &str = "UPSTREAMTESTKEY0001";
const UPSTREAM_SECRET_KEY: &str = "upstream-test-secret-0001";
/// Bound on `serve` printing its `endpoint:` line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// With this set to `1`, each test's tempdir (config, proxy log, stores) is kept for debugging.
const KEEP_TMP: &str = "ESCROW_INTEROP_KEEP_TMP";
/// How much of the proxy's stderr a failing test prints.
const STDERR_TAIL_BYTES: usize = 8 * 1024;

/// 64 distinctive bytes planted in every uploaded plaintext; the store must never hold them.
pub const MARKER: &str = "ESCROW-INTEROP-PLAINTEXT-MARKER/must-never-reach-the-store/0123456";

/// Which store the proxy's `[primary]` section points at.
#[derive(Clone, Copy, Debug)]
pub enum Store {
    /// `type = "fs"`: the proxy writes files itself.
    Fs,
    /// `type = "s3"`: a real S3 server (s3s-fs) on loopback.
    S3,
}

/// A running `escrow-proxy serve` and everything it needs.
pub struct Proxy {
    /// `https://127.0.0.1:PORT`, as printed by the proxy.
    pub endpoint: String,
    /// `127.0.0.1:PORT`.
    pub host_port: String,
    /// The CA certificate clients must trust.
    pub ca: PathBuf,
    /// Scratch space for the test's client files (configs, data, downloads).
    pub work: PathBuf,
    /// Where the primary store's bytes land on disk.
    pub store_dir: PathBuf,
    /// Which store that is.
    pub store: Store,
    child: Child,
    stderr_log: PathBuf,
    config_path: PathBuf,
    upstream: Option<tokio::runtime::Runtime>,
    dir: TempDir,
}

/// A second `escrow-proxy serve` process on the same config (so the same store and keyring),
/// listening on its own port: what a second instance behind a load balancer is.
pub struct Peer {
    /// `https://127.0.0.1:PORT` of this process.
    pub endpoint: String,
    child: Child,
}

impl Drop for Peer {
    fn drop(&mut self) {
        // `Child::kill` signals this child's own pid: never a process-name match.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// === impl Proxy ===

impl Proxy {
    /// Generates certificates, writes a config, starts `serve` and waits for its endpoint line.
    pub fn start(store: Store) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("escrow-interop-")
            .tempdir()
            .expect("create tempdir");
        let root = dir.path().to_path_buf();
        let certs = root.join("certs");
        let data = root.join("data");
        let work = root.join("work");
        fs::create_dir_all(&data).expect("mkdir data");
        fs::create_dir_all(&work).expect("mkdir work");

        Cmd::new(BIN)
            .arg("certs")
            .arg("generate")
            .arg("--out")
            .arg(&certs)
            .run()
            .ok("escrow-proxy certs generate");
        let ca = certs.join("ca.pem");
        for f in ["ca.pem", "server.pem", "server-key.pem"] {
            assert!(certs.join(f).is_file(), "certs generate did not write {f}");
        }

        let (primary, store_dir, upstream) = match store {
            Store::Fs => {
                let path = data.join("primary");
                let section = format!("type = \"fs\"\npath = {}\n", toml_str(&path));
                (section, path, None)
            }
            Store::S3 => {
                let path = root.join("s3s-fs");
                fs::create_dir_all(&path).expect("mkdir s3s-fs root");
                let (rt, port) = start_s3s_fs(&path);
                let section = format!(
                    "type = \"s3\"\nendpoint = \"http://127.0.0.1:{port}\"\nregion = \"{REGION}\"\n\
                     access_key = \"{UPSTREAM_ACCESS_KEY}\"\nsecret_key = \"{UPSTREAM_SECRET_KEY}\"\n\
                     path_style = true\n"
                );
                (section, path, Some(rt))
            }
        };

        let config = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ntls_cert = {cert}\ntls_key = {key}\nregion = \"{REGION}\"\n\n\
             [[clients]]\naccess_key = \"{ACCESS_KEY}\"\nsecret_key = \"{SECRET_KEY}\"\n\n\
             [primary]\n{primary}\n\
             [keys]\nkeyring = {keyring}\nroot_key_file = {root_key}\n",
            cert = toml_str(&certs.join("server.pem")),
            key = toml_str(&certs.join("server-key.pem")),
            keyring = toml_str(&data.join("keyring")),
            root_key = toml_str(&data.join("root.key")),
        );
        let config_path = root.join("escrow-proxy.toml");
        fs::write(&config_path, config).expect("write config");

        let stderr_log = root.join("proxy.stderr.log");
        let (child, endpoint) = serve(&root, &config_path, &stderr_log);
        let host_port = endpoint
            .strip_prefix("https://")
            .unwrap_or_else(|| panic!("endpoint {endpoint:?} is not https://"))
            .trim_end_matches('/')
            .to_string();

        Proxy {
            endpoint,
            host_port,
            ca,
            work,
            store_dir,
            store,
            child,
            stderr_log,
            config_path,
            upstream,
            dir,
        }
    }

    /// Starts a second proxy process on this one's config; it logs to `proxy-peer.stderr.log`.
    pub fn start_peer(&self) -> Peer {
        let root = self.dir.path();
        let (child, endpoint) = serve(root, &self.config_path, &root.join("proxy-peer.stderr.log"));
        Peer { endpoint, child }
    }

    /// Writes a ~`size`-byte random plaintext with [`MARKER`] planted throughout, returning
    /// its path and bytes.
    pub fn plaintext(&self, name: &str, size: usize) -> (PathBuf, Vec<u8>) {
        let data = plaintext(size);
        let path = self.work.join(name);
        fs::write(&path, &data).expect("write plaintext");
        (path, data)
    }

    /// Asserts the store holds no plaintext: no file under [`Proxy::store_dir`] contains
    /// [`MARKER`]. `at_least` bytes must be stored (so the scan is not vacuous while objects
    /// exist); pass 0 after deletes.
    pub fn assert_store_ciphertext_only(&self, at_least: u64) {
        // A file gone between listing and reading (e.g. a temp file renamed into place) is skipped.
        let scanned = shared::assert_files_lack(&self.store_dir, MARKER.as_bytes(), Vanished::Skip, |file| {
            format!("PLAINTEXT IN STORE: {} contains the plaintext marker", file.display())
        });
        assert!(
            scanned.bytes >= at_least,
            "store {} holds {} bytes in {} files, expected at least {at_least}: \
             did the objects reach the store at all?",
            self.store_dir.display(),
            scanned.bytes,
            scanned.files
        );
    }

    /// Asserts no file under [`Proxy::store_dir`] contains `needle` (`what` names it).
    pub fn assert_store_lacks(&self, needle: &[u8], what: &str) {
        shared::assert_files_lack(&self.store_dir, needle, Vanished::Skip, |file| {
            format!("{what} IN STORE: {}", file.display())
        });
    }

    /// The keys the store holds in `bucket`, sorted: those of client objects and the proxy's own
    /// (multipart state under `.escrow-mpu/`). Read from the store's files, not through the proxy.
    pub fn stored_keys(&self, bucket: &str) -> Vec<String> {
        let dir = self.store_dir.join(bucket);
        let mut keys: Vec<String> = shared::files_under(&dir)
            .iter()
            .map(|file| match self.store {
                Store::Fs => fs_object_key(file),
                // s3s-fs keeps object `k` of bucket `b` as the file `<root>/b/k`.
                Store::S3 => file
                    .strip_prefix(&dir)
                    .expect("under the bucket directory")
                    .to_str()
                    .expect("utf-8 key")
                    .to_string(),
            })
            .collect();
        keys.sort();
        keys
    }

    /// Asserts the store holds no object at all, in any bucket, and nothing half-written: no
    /// client object, no multipart state of the proxy (`.escrow-mpu/`), no temp file, and on
    /// s3s-fs no store-side multipart upload left open. Only s3s-fs's per-object attribute
    /// files (`.bucket-….object-….{metadata,internal}.json` in its root) are allowed to remain:
    /// s3s-fs never deletes them, even when it deletes the object.
    pub fn assert_store_holds_no_objects(&self) {
        let left: Vec<PathBuf> = shared::files_under(&self.store_dir)
            .into_iter()
            .filter(|file| match self.store {
                Store::Fs => true,
                Store::S3 => !is_s3s_fs_attribute_file(&self.store_dir, file),
            })
            .collect();
        assert!(
            left.is_empty(),
            "the store still holds files after everything was deleted: {left:#?}"
        );
    }

    /// The proxy's stderr so far (its last few KiB).
    pub fn stderr_tail(&self) -> String {
        tail(&self.stderr_log, STDERR_TAIL_BYTES)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // `Child::kill` signals this child's own pid: never a process-name match.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(rt) = self.upstream.take() {
            rt.shutdown_background();
        }
        if std::env::var(KEEP_TMP).as_deref() == Ok("1") {
            self.dir.disable_cleanup(true);
            eprintln!("{KEEP_TMP}=1: kept {}", self.dir.path().display());
        }
        if std::thread::panicking() {
            eprintln!(
                "--- escrow-proxy stderr ({}) ---\n{}",
                self.dir.path().display(),
                self.stderr_tail()
            );
        }
    }
}

// === helpers ===

/// Spawns `escrow-proxy serve --config CONFIG` in `root`, stderr to `stderr_log`, and waits for
/// its endpoint line.
fn serve(root: &Path, config_path: &Path, stderr_log: &Path) -> (Child, String) {
    let stderr = fs::File::create(stderr_log).expect("create stderr log");
    let mut command = Command::new(BIN);
    command
        .arg("serve")
        .arg("--config")
        .arg(config_path)
        .current_dir(root)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr);
    // `ESCROW_<SECTION>__<KEY>` variables override the config: keep the test runner's own (such
    // as ESCROW_ALLOW_MISSING_CLIENTS) away from the proxy.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ESCROW_") {
            command.env_remove(&key);
        }
    }
    let mut child = command.spawn().expect("spawn escrow-proxy serve");
    match wait_for_endpoint(&mut child) {
        Ok(endpoint) => (child, endpoint),
        Err(why) => {
            let _ = child.kill();
            let status = child.wait();
            panic!(
                "escrow-proxy serve did not become ready: {why}; exit: {status:?}\n\
                 --- proxy stderr ---\n{}",
                tail(stderr_log, STDERR_TAIL_BYTES)
            );
        }
    }
}

/// Reads the child's stdout until `endpoint: URL`, bounded by [`STARTUP_TIMEOUT`]; keeps
/// draining stdout afterwards so the child never blocks on a full pipe.
fn wait_for_endpoint(child: &mut Child) -> Result<String, String> {
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if !sent && let Some(url) = line.trim().strip_prefix("endpoint:") {
                let _ = tx.send(url.trim().to_string());
                sent = true;
            }
        }
    });
    match rx.recv_timeout(STARTUP_TIMEOUT) {
        Ok(url) => Ok(url),
        Err(mpsc::RecvTimeoutError::Timeout) => {
            Err(format!("no `endpoint:` line on stdout within {STARTUP_TIMEOUT:?}"))
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => Err("stdout closed before an `endpoint:` line".to_string()),
    }
}

/// Starts an s3s-fs server over `root` on `127.0.0.1:0` in its own runtime; returns the
/// runtime (dropping it stops the server) and the port.
fn start_s3s_fs(root: &Path) -> (tokio::runtime::Runtime, u16) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let fs = s3s_fs::FileSystem::new(root).expect("s3s-fs FileSystem::new");
    let (addr, accept) = rt.block_on(shared::bind_s3_server(fs, UPSTREAM_ACCESS_KEY, UPSTREAM_SECRET_KEY));
    rt.spawn(accept);
    (rt, addr.port())
}

/// The key recorded in one of the fs store's object files (FORMAT.md §4: `"EPFSOBJ1" ‖
/// u32be(L) ‖ JSON(L bytes) ‖ body`), reading only the header; a file of any other shape fails
/// the test.
fn fs_object_key(file: &Path) -> String {
    let read_header = || -> std::io::Result<Vec<u8>> {
        let mut f = fs::File::open(file)?;
        let mut preamble = [0u8; 12];
        f.read_exact(&mut preamble)?;
        if &preamble[..8] != b"EPFSOBJ1" {
            return Err(std::io::Error::other("no EPFSOBJ1 magic"));
        }
        let len = u32::from_be_bytes(preamble[8..].try_into().expect("4 bytes"));
        let mut json = vec![0u8; len as usize];
        f.read_exact(&mut json)?;
        Ok(json)
    };
    let json = read_header().unwrap_or_else(|e| panic!("{} is not an fs store object file: {e}", file.display()));
    let header: serde_json::Value =
        serde_json::from_slice(&json).unwrap_or_else(|e| panic!("{}: header is not JSON: {e}", file.display()));
    header["key"]
        .as_str()
        .unwrap_or_else(|| panic!("{}: header has no key: {header}", file.display()))
        .to_string()
}

/// s3s-fs's attribute files of an object, `<root>/.bucket-<b64>.object-<b64>.metadata.json`
/// and `….internal.json` (not those of a store-side multipart upload, `….upload-<id>.metadata.json`).
fn is_s3s_fs_attribute_file(root: &Path, file: &Path) -> bool {
    let Some(name) = file.strip_prefix(root).ok().and_then(Path::to_str) else {
        return false;
    };
    !name.contains('/')
        && name.starts_with(".bucket-")
        && !name.contains(".upload-")
        && (name.ends_with(".metadata.json") || name.ends_with(".internal.json"))
}

/// Random bytes with [`MARKER`] planted every 64 KiB (and at both ends).
pub fn plaintext(size: usize) -> Vec<u8> {
    shared::random_with_marker(size, MARKER.as_bytes(), 64 * 1024)
}
