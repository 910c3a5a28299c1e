//! What the command-line tests share: one-shot runs of the binary (bounded by `timeout(1)`, the
//! environment's `ESCROW_*` variables removed), `serve` processes behind a guard that kills them
//! by pid when it drops (also on panic), and a tempdir with certificates and a config.
//!
//! Readiness needs no sleeps: `serve` prints its `endpoint:` line only once it is bound, and the
//! guard reads stdout for it, bounded by [`STARTUP_TIMEOUT`].

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::client::{Cmd, Ran};
use crate::common::shared::tail;
pub use crate::common::shared::toml_str;
use crate::objects::S3;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_escrow-proxy");
/// Exit code of a refused configuration (EX_USAGE).
pub const EXIT_BAD_CONFIG: i32 = 64;
/// Bound on `serve` printing the lines a test waits for.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How much of a `serve` process's stderr a failing test prints.
const STDERR_TAIL_BYTES: usize = 8 * 1024;
/// Credentials of the config's `[[clients]]` entry.
pub const ACCESS_KEY: &str = "AKIAESCROWCLITEST01";
/// Secret of [`ACCESS_KEY`].
pub const SECRET_KEY: &str = "escrow-cli-test-secret-0001";
/// Prefix of the variables that configure the proxy; kept away from every child.
const ENV_PREFIX: &str = "ESCROW_";

/// `escrow-proxy ARGS…`, to run under `timeout(1)` without the runner's `ESCROW_*` variables.
pub fn escrow<I, S>(args: I) -> Cmd
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut cmd = Cmd::new(BIN).args(args).env("NO_COLOR", "1");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with(ENV_PREFIX) {
            cmd = cmd.env_remove(key);
        }
    }
    cmd
}

/// Asserts a run exited with `code`.
#[track_caller]
pub fn assert_exit(ran: &Ran, code: i32, what: &str) {
    assert_eq!(ran.status.code(), Some(code), "{what}\n{}", ran.describe());
}

// === serve ===

/// A running `escrow-proxy serve`, killed (by its pid) and reaped when dropped.
pub struct Serve {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr_log: PathBuf,
    /// `name: value` lines seen on stdout so far, by name.
    pub printed: BTreeMap<String, String>,
}

impl Serve {
    /// Starts `serve` in `cwd` (with `--config` when given) and waits until stdout has shown a
    /// line for each of `wait_for` (names before the colon). Stderr goes to `<cwd>/<name>.stderr`.
    pub fn start(cwd: &Path, config: Option<&Path>, name: &str, wait_for: &[&str]) -> Self {
        let stderr_log = cwd.join(format!("{name}.stderr"));
        let stderr = fs::File::create(&stderr_log).expect("create serve stderr log");
        let mut command = Command::new(BIN);
        command.arg("serve");
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        command
            .current_dir(cwd)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with(ENV_PREFIX) {
                command.env_remove(&key);
            }
        }
        let mut child = command.spawn().expect("spawn escrow-proxy serve");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        // Reads stdout to its end, so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut serve = Serve {
            child,
            lines,
            stderr_log,
            printed: BTreeMap::new(),
        };
        serve.wait_for(wait_for);
        serve
    }

    /// Collects stdout lines until every name in `names` was printed, or panics (the guard then
    /// kills the child and shows its stderr).
    fn wait_for(&mut self, names: &[&str]) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while let Some(missing) = names.iter().find(|n| !self.printed.contains_key(**n)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some((name, value)) = line.split_once(':') {
                        self.printed
                            .entry(name.trim().to_string())
                            .or_insert_with(|| value.trim().to_string());
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("serve printed no `{missing}:` line within {STARTUP_TIMEOUT:?}")
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait();
                    panic!("serve closed stdout before a `{missing}:` line; exit: {status:?}")
                }
            }
        }
    }

    /// A printed `name: value` line's value.
    #[track_caller]
    pub fn printed(&self, name: &str) -> &str {
        self.printed
            .get(name)
            .unwrap_or_else(|| panic!("no `{name}:` line in {:?}", self.printed))
    }

    /// `https://127.0.0.1:PORT`, as printed.
    pub fn endpoint(&self) -> &str {
        self.printed("endpoint")
    }

    /// Kills the process and waits for it (also what dropping does).
    pub fn stop(self) {}
}

impl Drop for Serve {
    fn drop(&mut self) {
        // `Child::kill` signals this child's own pid: never a process-name match.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- escrow-proxy serve stderr ---\n{}",
                tail(&self.stderr_log, STDERR_TAIL_BYTES)
            );
        }
    }
}

// === a proxy's files ===

/// A tempdir holding a dev certificate (`certs/`), a config (`escrow-proxy.toml`: TLS on
/// `127.0.0.1:0`, one client, an fs primary, optionally an fs mirror), the key files and the
/// stores under `data/`, and `work/` for the test's own files.
pub struct Setup {
    /// The config file.
    pub config: PathBuf,
    /// `certs/` as written by `certs generate`.
    pub certs: PathBuf,
    /// The primary fs store's root.
    pub primary: PathBuf,
    /// The mirror fs store's root, if configured.
    pub mirror: Option<PathBuf>,
    /// `[keys] keyring`.
    pub keyring: PathBuf,
    /// `[keys] root_key_file`.
    pub root_key: PathBuf,
    /// Scratch space.
    pub work: PathBuf,
    dir: TempDir,
}

impl Setup {
    /// Generates certificates (for `hosts` besides the defaults) and writes the config.
    pub fn new(with_mirror: bool, hosts: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("escrow-cli-")
            .tempdir()
            .expect("create tempdir");
        let root = dir.path();
        let certs = root.join("certs");
        let data = root.join("data");
        let work = root.join("work");
        fs::create_dir_all(&work).expect("mkdir work");
        let mut generate = escrow(["certs", "generate", "--out"]).arg(&certs);
        for host in hosts {
            generate = generate.args(["--host", host]);
        }
        generate.run().ok("escrow-proxy certs generate");

        let primary = data.join("primary");
        let mirror = with_mirror.then(|| data.join("mirror"));
        let mirror_section = mirror
            .as_ref()
            .map(|m| format!("[mirror]\ntype = \"fs\"\npath = {}\n\n", toml_str(m)))
            .unwrap_or_default();
        let keyring = data.join("keyring");
        let root_key = data.join("root.key");
        let config = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ntls_cert = {cert}\ntls_key = {key}\n\n\
             [[clients]]\naccess_key = \"{ACCESS_KEY}\"\nsecret_key = \"{SECRET_KEY}\"\n\n\
             [primary]\ntype = \"fs\"\npath = {primary}\n\n{mirror_section}\
             [keys]\nkeyring = {keyring}\nroot_key_file = {root_key}\n",
            cert = toml_str(&certs.join("server.pem")),
            key = toml_str(&certs.join("server-key.pem")),
            primary = toml_str(&primary),
            keyring = toml_str(&keyring),
            root_key = toml_str(&root_key),
        );
        let config_path = root.join("escrow-proxy.toml");
        fs::write(&config_path, config).expect("write config");
        Setup {
            config: config_path,
            certs,
            primary,
            mirror,
            keyring,
            root_key,
            work,
            dir,
        }
    }

    /// The tempdir.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Starts `serve --config` and waits for its endpoint.
    pub fn serve(&self, name: &str) -> Serve {
        Serve::start(self.root(), Some(&self.config), name, &["endpoint"])
    }

    /// An S3 client of `serve`, trusting this setup's CA.
    pub fn s3(&self, serve: &Serve) -> S3 {
        let ca = fs::read(self.certs.join("ca.pem")).expect("read ca.pem");
        S3::new(serve.endpoint(), &ca)
    }

    /// `--keyring F --root-key F`.
    pub fn key_args(&self) -> Vec<PathBuf> {
        vec![
            "--keyring".into(),
            self.keyring.clone(),
            "--root-key".into(),
            self.root_key.clone(),
        ]
    }
}

/// Permission bits of a file.
pub fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}
