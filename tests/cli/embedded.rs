//! `escrow-proxy serve` with no arguments: the embedded default on `127.0.0.1:8443` with
//! everything under `./data`, driven by the AWS CLI v1 exactly as its printed `try:` line says,
//! and started again over the same directory.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use crate::client::{ALLOW_MISSING, Cmd, Ran};
use crate::common::{MARKER, data_with_marker};
use crate::objects::{assert_no_file_contains, fs_object_path};
use crate::support::{Serve, mode};

/// The embedded default's fixed address.
const EMBEDDED_ADDR: &str = "127.0.0.1:8443";
/// The embedded default's admin listener.
const EMBEDDED_ADMIN_ADDR: &str = "127.0.0.1:8444";
/// The lines `serve` prints for the embedded default.
const PRINTED: &[&str] = &[
    "endpoint",
    "admin",
    "access_key",
    "secret_key",
    "ca_bundle",
    "aws_config",
    "admin_token",
    "try",
];
/// The bucket the printed `try:` command creates.
const TRY_BUCKET: &str = "demo";
const KEY: &str = "notes/hello.bin";
/// Above the AWS CLI's default multipart threshold (8 MiB): the printed `aws_config` keeps it
/// single-part.
const OBJECT_SIZE: usize = 12 * 1024 * 1024 + 7;

#[test]
fn embedded_default_serves_and_keeps_its_data() {
    for addr in [EMBEDDED_ADDR, EMBEDDED_ADMIN_ADDR] {
        if let Err(e) = TcpListener::bind(addr) {
            panic!(
                "{addr} is busy on this machine ({e}); the embedded-default test needs it. \
                 Stop whatever listens there (another `escrow-proxy serve`?) and rerun."
            );
        }
    }
    let aws_dir = match aws_v1_dir() {
        Ok(dir) => dir,
        Err(why) if std::env::var(ALLOW_MISSING).as_deref() == Ok("1") => {
            println!("SKIP: embedded default: {why}; {ALLOW_MISSING}=1");
            return;
        }
        Err(why) => panic!("{why}; run `bash scripts/install-test-deps.sh`, or set {ALLOW_MISSING}=1 to skip"),
    };
    let dir = tempfile::Builder::new()
        .prefix("escrow-cli-embedded-")
        .tempdir()
        .expect("tempdir");
    let cwd = dir.path();
    let data_dir = cwd.join("data");

    let first = Serve::start(cwd, None, "serve-first", PRINTED);
    assert_eq!(first.endpoint(), format!("https://{EMBEDDED_ADDR}"));
    let ca = PathBuf::from(first.printed("ca_bundle"));
    assert_eq!(
        ca,
        fs::canonicalize(data_dir.join("certs/ca.pem")).expect("data/certs/ca.pem exists"),
        "ca_bundle is the absolute path of data/certs/ca.pem"
    );
    assert_eq!(first.printed("admin"), format!("http://{EMBEDDED_ADMIN_ADDR}"));
    let token_file = PathBuf::from(first.printed("admin_token"));
    assert_eq!(
        token_file,
        fs::canonicalize(data_dir.join("admin-token")).expect("data/admin-token exists")
    );
    let token = fs::read_to_string(&token_file).expect("read the admin token");
    assert!(
        token.trim().len() >= 32,
        "the generated admin token is at least 32 bytes"
    );
    let keys = Cmd::new("curl")
        .args(["-sS", "--fail-with-body", "-H"])
        .arg(format!("Authorization: Bearer {}", token.trim()))
        .arg(format!("http://{EMBEDDED_ADMIN_ADDR}/admin/keys"))
        .run()
        .ok("curl the embedded admin API with the generated token");
    assert!(keys.stdout.contains("\"active\":1"), "{}", keys.describe());
    for secret in [
        "root.key",
        "keyring",
        "client-credentials",
        "certs/server-key.pem",
        "admin-token",
    ] {
        let path = data_dir.join(secret);
        assert!(path.is_file(), "data/{secret} was not created");
        assert_eq!(mode(&path), 0o600, "data/{secret} must be 0600");
    }
    let (access_key, secret_key) = (first.printed("access_key"), first.printed("secret_key"));
    let try_line = first.printed("try");
    for part in [
        access_key,
        secret_key,
        first.endpoint(),
        first.printed("ca_bundle"),
        first.printed("aws_config"),
    ] {
        assert!(try_line.contains(part), "try: line lacks {part:?}: {try_line}");
    }
    assert!(
        try_line.ends_with(&format!("s3 mb s3://{TRY_BUCKET}")),
        "try: line: {try_line}"
    );

    // The printed command, pasted into a shell.
    let aws = AwsCli::new(&aws_dir, cwd);
    let made = aws.shell(try_line).ok("the printed try: command");
    assert!(
        made.stdout.contains(&format!("make_bucket: {TRY_BUCKET}")),
        "{}",
        made.describe()
    );

    let data = data_with_marker(OBJECT_SIZE);
    let upload = cwd.join("upload.bin");
    fs::write(&upload, &data).expect("write upload");
    let url = format!("s3://{TRY_BUCKET}/{KEY}");
    let creds = (access_key.to_string(), secret_key.to_string());
    aws.cp(&first, &creds, path_str(&upload), &url).ok("aws s3 cp (upload)");
    let down = cwd.join("download-1.bin");
    aws.cp(&first, &creds, &url, path_str(&down)).ok("aws s3 cp (download)");
    assert!(
        fs::read(&down).expect("read download") == data,
        "downloaded bytes differ"
    );

    let ca_pem = fs::read(&ca).expect("read ca.pem");
    let server_pem = fs::read(data_dir.join("certs/server.pem")).expect("read server.pem");
    first.stop();

    let second = Serve::start(cwd, None, "serve-second", PRINTED);
    assert_eq!(second.printed("access_key"), creds.0, "the access key is reused");
    assert_eq!(second.printed("secret_key"), creds.1, "the secret key is reused");
    assert_eq!(fs::read(&ca).expect("read ca.pem"), ca_pem, "the CA is reused");
    assert_eq!(
        fs::read(data_dir.join("certs/server.pem")).expect("read server.pem"),
        server_pem,
        "the server certificate is reused"
    );
    let down = cwd.join("download-2.bin");
    aws.cp(&second, &creds, &url, path_str(&down))
        .ok("aws s3 cp (download after restart)");
    assert!(
        fs::read(&down).expect("read download") == data,
        "bytes differ after restart"
    );
    second.stop();

    for store in ["primary", "mirror"] {
        let root = data_dir.join(store);
        let file = fs_object_path(&root, TRY_BUCKET, KEY);
        assert!(file.is_file(), "data/{store} lacks the object file {}", file.display());
        assert_no_file_contains(&root, MARKER, &format!("data/{store}"));
    }
}

/// The AWS CLI v1, isolated from the machine's AWS configuration.
struct AwsCli {
    /// PATH with the v1 `aws` first.
    path: String,
    config: PathBuf,
    credentials: PathBuf,
}

impl AwsCli {
    fn new(aws_dir: &Path, cwd: &Path) -> Self {
        let config = cwd.join("aws-config");
        let credentials = cwd.join("aws-credentials");
        // No retries: a retried 5xx would hide a proxy failure.
        fs::write(&config, "[default]\nmax_attempts = 1\n").expect("write AWS config");
        fs::write(&credentials, "").expect("write AWS credentials");
        let path = std::env::join_paths(
            std::iter::once(aws_dir.to_path_buf())
                .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
        )
        .expect("PATH");
        AwsCli {
            path: path.into_string().expect("utf-8 PATH"),
            config,
            credentials,
        }
    }

    fn isolated(&self, cmd: Cmd) -> Cmd {
        cmd.env("PATH", &self.path)
            .env("AWS_CONFIG_FILE", &self.config)
            .env("AWS_SHARED_CREDENTIALS_FILE", &self.credentials)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_PAGER", "")
    }

    /// `sh -c LINE`.
    fn shell(&self, line: &str) -> Ran {
        self.isolated(Cmd::new("sh").args(["-c", line])).run()
    }

    /// `aws s3 cp FROM TO` against `serve` with the printed credentials and CA bundle.
    fn cp(&self, serve: &Serve, creds: &(String, String), from: &str, to: &str) -> Ran {
        let cmd = Cmd::new("aws")
            .args([
                "--endpoint-url",
                serve.endpoint(),
                "--ca-bundle",
                serve.printed("ca_bundle"),
            ])
            .args(["s3", "cp", from, to]);
        self.isolated(cmd)
            .env("AWS_CONFIG_FILE", serve.printed("aws_config"))
            .env("AWS_ACCESS_KEY_ID", &creds.0)
            .env("AWS_SECRET_ACCESS_KEY", &creds.1)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .run()
    }
}

/// The first PATH directory whose `aws` is the AWS CLI v1 (what the `try:` line runs).
fn aws_v1_dir() -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut tried = Vec::new();
    for dir in std::env::split_paths(&path) {
        let aws = dir.join("aws");
        if !aws.is_file() {
            continue;
        }
        let ran = Cmd::new(&aws).arg("--version").run();
        let version = format!("{}{}", ran.stdout, ran.stderr);
        if ran.status.success() && version.starts_with("aws-cli/1.") {
            return Ok(dir);
        }
        tried.push(format!("{}: {}", aws.display(), version.trim()));
    }
    Err(format!("no AWS CLI v1 `aws` on PATH (tried: {tried:?})"))
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 tempdir path")
}
