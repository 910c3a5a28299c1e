//! Running real client programs: locating them, bounding them in time, keeping the
//! machine's own settings out of them, and reporting what they said when they fail.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};

use md5::{Digest, Md5};

/// Every client call is killed after this long (`timeout(1)`), then SIGKILLed
/// [`KILL_AFTER_SECS`] later if it ignored SIGTERM.
pub const CLIENT_TIMEOUT_SECS: u32 = 120;
const KILL_AFTER_SECS: u32 = 10;
/// `timeout(1)`'s exit code when the time ran out.
const TIMED_OUT: i32 = 124;
/// With this set to `1`, a missing client program skips its test instead of failing it.
pub const ALLOW_MISSING: &str = "ESCROW_ALLOW_MISSING_CLIENTS";
/// How much of a client's output a failure message quotes.
const OUTPUT_QUOTE_BYTES: usize = 6 * 1024;

/// Prefixes of environment variables that would let the machine's own configuration leak into
/// a client (credentials, CA bundles, profiles, endpoints, proxies).
const SCRUBBED_ENV_PREFIXES: &[&str] = &["AWS_", "RCLONE_", "BOTO_", "S3CMD"];
const SCRUBBED_ENV_NAMES: &[&str] = &[
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "REQUESTS_CA_BUNDLE",
    "SSL_CERT_FILE",
    "CURL_CA_BUNDLE",
];

/// The client programs the interop tests drive.
#[derive(Clone, Copy, Debug)]
pub enum Tool {
    /// AWS CLI v1 from PyPI (the `aws` that pyenv puts on PATH).
    AwsV1,
    /// AWS CLI v2 from Debian's `awscli` package, `/usr/bin/aws`.
    AwsV2,
    /// `python3` with boto3 importable.
    Boto3,
    Rclone,
    S3cmd,
    Curl,
}

/// A located program: the argv prefix that runs it.
#[derive(Clone, Debug)]
pub struct Program(Vec<OsString>);

/// A command line to run under `timeout`, with a scrubbed environment.
pub struct Cmd {
    argv: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    removed: Vec<OsString>,
}

/// What a finished command did.
pub struct Ran {
    pub cmdline: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

// === impl Tool ===

impl Tool {
    /// Finds the program, or explains why it is missing.
    fn locate(self) -> Result<Program, String> {
        match self {
            Tool::AwsV1 => {
                let mut tried = Vec::new();
                for candidate in path_candidates("aws") {
                    let program = Program(vec![candidate.into_os_string()]);
                    match aws_version(&program) {
                        Some(v) if v.starts_with("aws-cli/1.") => return Ok(program),
                        v => tried.push(format!("{program:?}: {v:?}")),
                    }
                }
                // The pyenv shim runs this same module; use it directly if PATH has no v1.
                let module = Program(vec!["python3".into(), "-m".into(), "awscli".into()]);
                match aws_version(&module) {
                    Some(v) if v.starts_with("aws-cli/1.") => Ok(module),
                    v => {
                        tried.push(format!("python3 -m awscli: {v:?}"));
                        Err(format!("no AWS CLI v1 (tried {})", tried.join("; ")))
                    }
                }
            }
            Tool::AwsV2 => {
                let program = Program(vec!["/usr/bin/aws".into()]);
                match aws_version(&program) {
                    Some(v) if v.starts_with("aws-cli/2.") => Ok(program),
                    v => Err(format!("/usr/bin/aws is not AWS CLI v2 (version: {v:?})")),
                }
            }
            Tool::Boto3 => {
                let ran = Cmd::new("python3").args(["-c", "import boto3"]).run();
                if ran.status.success() {
                    Ok(Program(vec!["python3".into()]))
                } else {
                    Err(format!("python3 cannot import boto3: {}", ran.stderr.trim()))
                }
            }
            Tool::Rclone => probe("rclone", &["version"]),
            Tool::S3cmd => probe("s3cmd", &["--version"]),
            Tool::Curl => probe("curl", &["--version"]),
        }
    }
}

/// Locates `tool` for `test`. A missing tool fails the test, unless [`ALLOW_MISSING`]`=1`,
/// in which case this prints a SKIP line and returns `None`.
pub fn require(tool: Tool, test: &str) -> Option<Program> {
    match tool.locate() {
        Ok(program) => Some(program),
        Err(why) if std::env::var(ALLOW_MISSING).as_deref() == Ok("1") => {
            println!("SKIP: {test}: client {tool:?} is missing ({why}); {ALLOW_MISSING}=1");
            None
        }
        Err(why) => panic!(
            "{test}: client {tool:?} is missing: {why}. Run `bash scripts/install-test-deps.sh`, \
             or set {ALLOW_MISSING}=1 to skip."
        ),
    }
}

fn probe(name: &str, version_args: &[&str]) -> Result<Program, String> {
    let ran = Cmd::new(name).args(version_args).run();
    if ran.status.success() {
        Ok(Program(vec![name.into()]))
    } else {
        Err(format!(
            "`{name} {}` failed: {} {}",
            version_args.join(" "),
            ran.status,
            ran.stderr.trim()
        ))
    }
}

/// `aws --version`'s first word (v1 printed it on stderr, later versions on stdout).
fn aws_version(program: &Program) -> Option<String> {
    let ran = program.cmd().arg("--version").run();
    if !ran.status.success() {
        return None;
    }
    let text = format!("{}{}", ran.stdout, ran.stderr);
    text.split_whitespace().next().map(str::to_string)
}

/// Every file named `name` in a PATH directory, in PATH order.
fn path_candidates(name: &str) -> Vec<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .filter(|p| p.is_file())
        .collect()
}

// === impl Program ===

impl Program {
    /// A command running this program.
    pub fn cmd(&self) -> Cmd {
        let mut cmd = Cmd::new(&self.0[0]);
        cmd.argv.extend(self.0[1..].iter().cloned());
        cmd
    }
}

// === impl Cmd ===

impl Cmd {
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Cmd {
            argv: vec![program.as_ref().to_owned()],
            envs: Vec::new(),
            removed: Vec::new(),
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.argv.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.argv.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.envs.push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Removes a variable that the caller would otherwise pass on (scrubbed ones are already
    /// gone).
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.removed.push(key.as_ref().to_owned());
        self
    }

    /// Runs to completion, bounded by [`CLIENT_TIMEOUT_SECS`].
    pub fn run(self) -> Ran {
        let cmdline = self
            .argv
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        let mut command = Command::new("timeout");
        command
            .arg(format!("--kill-after={KILL_AFTER_SECS}s"))
            .arg(format!("{CLIENT_TIMEOUT_SECS}s"))
            .args(&self.argv)
            .stdin(Stdio::null());
        for (key, _) in std::env::vars_os() {
            let name = key.to_string_lossy();
            if SCRUBBED_ENV_PREFIXES.iter().any(|p| name.starts_with(p)) || SCRUBBED_ENV_NAMES.contains(&name.as_ref())
            {
                command.env_remove(&key);
            }
        }
        for key in &self.removed {
            command.env_remove(key);
        }
        command.envs(self.envs.iter().map(|(k, v)| (k, v)));
        let output = command
            .output()
            .unwrap_or_else(|e| panic!("cannot run `timeout {cmdline}`: {e}"));
        Ran {
            cmdline,
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

// === impl Ran ===

impl Ran {
    /// Asserts the command succeeded; `what` names the step in the failure message.
    #[track_caller]
    pub fn ok(self, what: &str) -> Self {
        assert!(self.status.success(), "{what}: command failed\n{}", self.describe());
        self
    }

    /// Asserts the command failed (but did not time out).
    #[track_caller]
    pub fn failed(self, what: &str) -> Self {
        assert!(
            !self.status.success() && self.status.code() != Some(TIMED_OUT),
            "{what}: expected the command to fail\n{}",
            self.describe()
        );
        self
    }

    /// The command line, how it ended and what it printed, for failure messages.
    pub fn describe(&self) -> String {
        let ended = if self.status.code() == Some(TIMED_OUT) {
            format!("TIMED OUT after {CLIENT_TIMEOUT_SECS}s")
        } else {
            self.status.to_string()
        };
        format!(
            "  command: {}\n  ended: {ended}\n  --- stdout ---\n{}\n  --- stderr ---\n{}",
            self.cmdline,
            quote(&self.stdout),
            quote(&self.stderr)
        )
    }
}

fn quote(text: &str) -> &str {
    if text.len() <= OUTPUT_QUOTE_BYTES {
        return text;
    }
    let mut start = text.len() - OUTPUT_QUOTE_BYTES;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// `"md5hex"`: the ETag S3 gives a single-part object.
pub fn quoted_md5(data: &[u8]) -> String {
    format!("\"{}\"", hex::encode(Md5::digest(data)))
}

/// `"md5hex-N"`: the ETag S3 gives an object uploaded in parts of `part_size` bytes (the last
/// may be shorter).
pub fn multipart_etag(data: &[u8], part_size: usize) -> String {
    parts_etag(data.chunks(part_size))
}

/// `"md5hex-N"`: the ETag S3 gives an object completed from these `N` parts: the MD5 of the
/// parts' binary MD5s, then the number of parts.
pub fn parts_etag<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut digests = Md5::new();
    let mut count = 0;
    for part in parts {
        digests.update(Md5::digest(part));
        count += 1;
    }
    format!("\"{}-{count}\"", hex::encode(digests.finalize()))
}
