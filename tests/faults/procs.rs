//! The processes of a fault test: s3s-fs stores and `escrow-proxy serve`, each a real child
//! process on 127.0.0.1, behind guards that kill it by its own pid when dropped (also on panic).
//! Signals (`SIGKILL`, `SIGSTOP`, `SIGCONT`) go to one pid through kill(1), never by name.
//!
//! Readiness is polled with a bound, never slept for: a store is ready when its port accepts a
//! connection, a proxy when it has printed its `endpoint:` and `admin:` lines.

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::shared::toml_str;

/// The proxy binary under test.
pub const PROXY_BIN: &str = env!("CARGO_BIN_EXE_escrow-proxy");
/// Bound on a child becoming ready.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Credentials the stores accept (s3s-fs takes them on its command line: test-only values).
pub const STORE_ACCESS_KEY: &str = "faultstoreaccess";
/// Secret of [`STORE_ACCESS_KEY`].
pub const STORE_SECRET_KEY: &str = "faultstoresecret0123456789";
/// Credentials of the proxy's one client.
pub const CLIENT_ACCESS_KEY: &str = "AKIAFAULTCLIENT0001";
/// Secret of [`CLIENT_ACCESS_KEY`].
pub const CLIENT_SECRET_KEY: &str = "fault-client-secret-0001";
/// How much of a child's log a failing test prints.
const LOG_TAIL: usize = 6 * 1024;

/// The s3s-fs binary: `$S3S_FS`, else `$CARGO_HOME/bin/s3s-fs`, else `~/.cargo/bin/s3s-fs`,
/// else `s3s-fs` on `PATH`. scripts/install-test-deps.sh installs it.
pub fn s3s_fs_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("S3S_FS") {
        return PathBuf::from(p);
    }
    let home_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|c| c.join("bin").join("s3s-fs"));
    match home_bin {
        Some(p) if p.is_file() => p,
        _ => PathBuf::from("s3s-fs"),
    }
}

/// A port on 127.0.0.1 that was free a moment ago (a store must come back on the same port
/// after a restart, so it cannot bind port 0 itself).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// Sends `signal` (`KILL`, `STOP`, `CONT`) to the process `pid`.
pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill(1)");
    assert!(status.success(), "kill -{signal} {pid} failed: {status}");
}

/// The last `max` bytes of a log file, for a failing test's output.
pub fn tail(path: &Path, max: usize) -> String {
    let bytes = fs::read(path).unwrap_or_default();
    let start = bytes.len().saturating_sub(max);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// A child killed by its pid and reaped when dropped.
struct Guard {
    child: Option<Child>,
    log: PathBuf,
    what: String,
}

impl Guard {
    fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("the process is running")
    }

    /// SIGKILLs and reaps the child (its own pid; SIGCONT first so a stopped child dies too).
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = Command::new("kill").arg("-CONT").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let running = self.child.is_some();
        self.kill();
        if running && std::thread::panicking() {
            eprintln!("--- {} log (tail) ---\n{}", self.what, tail(&self.log, LOG_TAIL));
        }
    }
}

// === s3s-fs ===

/// One s3s-fs store process over a directory, restartable on the same port.
pub struct Store {
    /// `primary` or `mirror`.
    pub name: &'static str,
    /// The directory it serves.
    pub root: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
    guard: Guard,
    starts: u32,
}

impl Store {
    /// Starts s3s-fs over `root` (created) on a free port.
    pub fn start(name: &'static str, root: PathBuf, logs: &Path) -> Self {
        fs::create_dir_all(&root).expect("mkdir store root");
        let mut store = Store {
            name,
            root,
            port: free_port(),
            guard: Guard {
                child: None,
                log: logs.join(format!("{name}.log")),
                what: format!("s3s-fs {name}"),
            },
            starts: 0,
        };
        store.restart();
        store
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// SIGKILLs the store.
    pub fn kill(&mut self) {
        self.guard.kill();
    }

    /// Starts the store again (after [`Store::kill`]) on the same port and waits for it.
    pub fn restart(&mut self) {
        assert!(self.guard.child.is_none(), "{} is still running", self.name);
        self.starts += 1;
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.guard.log)
            .expect("open store log");
        let bin = s3s_fs_bin();
        let child = Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", STORE_ACCESS_KEY, "--secret-key", STORE_SECRET_KEY])
            .arg(&self.root)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "spawn {} ({e}); install it with scripts/install-test-deps.sh or set S3S_FS",
                    bin.display()
                )
            });
        self.guard.child = Some(child);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Some(Ok(Some(status))) = self.guard.child.as_mut().map(Child::try_wait) {
                panic!(
                    "s3s-fs {} exited at start ({status}) on port {}:\n{}",
                    self.name,
                    self.port,
                    tail(&self.guard.log, LOG_TAIL)
                );
            }
            assert!(
                Instant::now() < deadline,
                "s3s-fs {} not listening within {STARTUP_TIMEOUT:?}",
                self.name
            );
            std::thread::yield_now();
            std::thread::park_timeout(Duration::from_millis(20));
        }
    }
}

// === the proxy ===

/// The files of a proxy instance: its working directory with certificates, config, keyring,
/// root key and admin token.
pub struct ProxyDir {
    /// The working directory.
    pub dir: PathBuf,
    /// The config file.
    pub config: PathBuf,
    /// `[keys] keyring`.
    pub keyring: PathBuf,
    /// `[keys] root_key_file`.
    pub root_key: PathBuf,
    /// The CA the clients trust.
    pub ca_pem: Vec<u8>,
}

/// Where a store is reached: `(endpoint, extra lines for its section)`.
pub struct StoreAt {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl ProxyDir {
    /// Writes certificates (via `certs generate`) and a config to `dir`: TLS on 127.0.0.1:0, one
    /// client, both stores as S3 endpoints, `[mirror] write = "sync"`, the admin listener.
    pub fn create(dir: &Path, primary: &StoreAt, mirror: &StoreAt) -> Self {
        fs::create_dir_all(dir).expect("mkdir proxy dir");
        let certs = dir.join("certs");
        let out = Command::new(PROXY_BIN)
            .args(["certs", "generate", "--out"])
            .arg(&certs)
            .env("NO_COLOR", "1")
            .output()
            .expect("run certs generate");
        assert!(out.status.success(), "certs generate: {out:?}");
        let token = dir.join("admin-token");
        fs::write(&token, "fault-admin-token-0123456789abcdef\n").expect("write token");
        fs::set_permissions(&token, fs::Permissions::from_mode(0o600)).expect("chmod token");
        let keyring = dir.join("keyring");
        let root_key = dir.join("root.key");
        let store = |s: &StoreAt| {
            format!(
                "type = \"s3\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\npath_style = true\n\
                 access_key = \"{STORE_ACCESS_KEY}\"\nsecret_key = \"{STORE_SECRET_KEY}\"\n",
                s.endpoint
            )
        };
        let config = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ntls_cert = {cert}\ntls_key = {key}\n\n\
             [[clients]]\naccess_key = \"{CLIENT_ACCESS_KEY}\"\nsecret_key = \"{CLIENT_SECRET_KEY}\"\n\n\
             [primary]\n{primary}\n[mirror]\n{mirror}write = \"sync\"\nread = \"primary\"\n\n\
             [keys]\nkeyring = {keyring}\nroot_key_file = {root_key}\n\n\
             [admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = {token}\n",
            cert = toml_str(&certs.join("server.pem")),
            key = toml_str(&certs.join("server-key.pem")),
            keyring = toml_str(&keyring),
            root_key = toml_str(&root_key),
            token = toml_str(&token),
            primary = store(primary),
            mirror = store(mirror),
        );
        let config_path = dir.join("escrow-proxy.toml");
        fs::write(&config_path, config).expect("write config");
        let ca_pem = fs::read(certs.join("ca.pem")).expect("read ca.pem");
        ProxyDir {
            dir: dir.to_path_buf(),
            config: config_path,
            keyring,
            root_key,
            ca_pem,
        }
    }

    /// A second instance's directory: a copy of this one's files (certificates, keyring, root
    /// key, token) under `dir`, with a config naming the copies.
    pub fn copy_to(&self, dir: &Path) -> Self {
        copy_tree(&self.dir, dir);
        let config = fs::read_to_string(&self.config)
            .expect("read config")
            .replace(&self.dir.display().to_string(), &dir.display().to_string());
        let config_path = dir.join("escrow-proxy.toml");
        fs::write(&config_path, config).expect("write config copy");
        ProxyDir {
            dir: dir.to_path_buf(),
            config: config_path,
            keyring: dir.join("keyring"),
            root_key: dir.join("root.key"),
            ca_pem: self.ca_pem.clone(),
        }
    }
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir copy");
    for entry in fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else if entry.file_name().to_string_lossy().ends_with(".log") {
            continue;
        } else {
            fs::copy(entry.path(), &target).expect("copy file");
            let mode = fs::metadata(entry.path()).expect("stat").permissions().mode();
            fs::set_permissions(&target, fs::Permissions::from_mode(mode)).expect("chmod copy");
        }
    }
}

/// A running `escrow-proxy serve`.
pub struct Proxy {
    /// `https://127.0.0.1:PORT`.
    pub endpoint: String,
    /// `http://127.0.0.1:PORT` of the admin listener.
    pub admin: String,
    guard: Guard,
}

impl Proxy {
    /// Starts `serve --config` in `dir` (its log in `logs/<name>.log`) and waits for its lines.
    pub fn start(dir: &ProxyDir, logs: &Path, name: &str) -> Self {
        let log_path = logs.join(format!("{name}.log"));
        let log = fs::File::create(&log_path).expect("create proxy log");
        let mut command = Command::new(PROXY_BIN);
        command
            .arg("serve")
            .arg("--config")
            .arg(&dir.config)
            .current_dir(&dir.dir)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ESCROW_") {
                command.env_remove(&key);
            }
        }
        let mut child = command.spawn().expect("spawn escrow-proxy serve");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let guard = Guard {
            child: Some(child),
            log: log_path,
            what: format!("escrow-proxy {name}"),
        };
        let (mut endpoint, mut admin) = (None, None);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while endpoint.is_none() || admin.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("serve {name}: no endpoint/admin lines ({e})"));
            if let Some(v) = line.strip_prefix("endpoint:") {
                endpoint = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("admin:") {
                admin = Some(v.trim().to_string());
            }
        }
        Proxy {
            endpoint: endpoint.expect("endpoint"),
            admin: admin.expect("admin"),
            guard,
        }
    }

    /// SIGKILLs the proxy.
    pub fn kill(&mut self) {
        let pid = self.guard.pid();
        signal(pid, "KILL");
        self.guard.kill();
    }
}

/// A SIGSTOP/SIGCONT pair on one pid.
pub fn stop(pid: u32) {
    signal(pid, "STOP");
}

/// Resumes a stopped pid.
pub fn cont(pid: u32) {
    signal(pid, "CONT");
}
