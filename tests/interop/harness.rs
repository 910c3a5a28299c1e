//! The proxy under test: the real `escrow-proxy` binary, started with `serve` on
//! `127.0.0.1:0` over TLS with certificates it generated itself, in a tempdir of its own.
//!
//! The primary store is either the proxy's own fs store or a real S3 server (s3s-fs, in
//! process on `127.0.0.1:0`). Either way [`Proxy::store_dir`] is the directory where the bytes
//! the proxy sent to the store end up, so a test can scan it for plaintext.
//!
//! The child process is killed (by its pid, via [`Child::kill`]) when the harness drops.

use std::fs;
use std::io::{BufRead, BufReader};
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
    child: Child,
    stderr_log: PathBuf,
    upstream: Option<tokio::runtime::Runtime>,
    dir: TempDir,
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
        let stderr = fs::File::create(&stderr_log).expect("create stderr log");
        let mut command = Command::new(BIN);
        command
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .current_dir(&root)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        // `ESCROW_<SECTION>__<KEY>` variables override the config: keep the test runner's
        // own (such as ESCROW_ALLOW_MISSING_CLIENTS) away from the proxy.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ESCROW_") {
                command.env_remove(&key);
            }
        }
        let mut child = command.spawn().expect("spawn escrow-proxy serve");

        let endpoint = match wait_for_endpoint(&mut child) {
            Ok(endpoint) => endpoint,
            Err(why) => {
                let _ = child.kill();
                let status = child.wait();
                panic!(
                    "escrow-proxy serve did not become ready: {why}; exit: {status:?}\n\
                     --- proxy stderr ---\n{}",
                    tail(&stderr_log, STDERR_TAIL_BYTES)
                );
            }
        };
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
            child,
            stderr_log,
            upstream,
            dir,
        }
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

/// Random bytes with [`MARKER`] planted every 64 KiB (and at both ends).
pub fn plaintext(size: usize) -> Vec<u8> {
    shared::random_with_marker(size, MARKER.as_bytes(), 64 * 1024)
}
