//! Interoperability: real S3 client programs (AWS CLI v1 and v2, boto3, rclone, s3cmd, curl
//! with presigned URLs) against the real `escrow-proxy` binary over TLS.
//!
//! Each test starts its own proxy in its own tempdir ([`harness::Proxy`]), once with the fs
//! store as primary and once with a real S3 server (s3s-fs on loopback), so nextest can run
//! them in parallel. After the uploads, and again after the deletes, every file of the store
//! is scanned for a marker planted in the plaintext: the store must hold ciphertext only.
//!
//! The clients come from `scripts/install-test-deps.sh`. A missing client fails its test
//! unless `ESCROW_ALLOW_MISSING_CLIENTS=1`, which turns it into a printed SKIP. Multipart is
//! kept out of every client's way (thresholds of 5 GiB) until the proxy serves it.

#[path = "interop/client.rs"]
mod client;
#[path = "interop/harness.rs"]
mod harness;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use client::{Program, Ran, Tool, quoted_md5, require};
use harness::{ACCESS_KEY, MARKER, Proxy, REGION, SECRET_KEY, Store};

/// The boto3 driver script (see its docstring).
const BOTO3_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/boto3_client.py");
/// A size that is not a multiple of any segment size: ~3 MiB.
const AWSCLI_OBJECT_SIZE: usize = 3 * 1024 * 1024 + 12_345;
const BOTO3_OBJECT_SIZE: usize = 2 * 1024 * 1024 + 777;
const S3CMD_OBJECT_SIZE: usize = 1536 * 1024 + 3;
const CURL_OBJECT_SIZE: usize = 2 * 1024 * 1024 + 5;
/// The range the AWS CLI test asks for, as in `bytes=FIRST-LAST` (inclusive).
const RANGE: (usize, usize) = (100, 70_000);
/// rclone remotes (bucket roots, see [`rclone`]) for `copy`/`check`/`lsl` and for `sync`.
const RCLONE_COPY: &str = "escrow:rclone-copy";
const RCLONE_SYNC: &str = "escrow:rclone-sync";
/// Lifetime of presigned URLs.
const PRESIGN_EXPIRES_SECS: &str = "300";

/// Generates `mod $name { fs_store, s3_store }`, running `$body(Store)` against each store.
macro_rules! on_both_stores {
    ($name:ident => $body:ident) => {
        mod $name {
            #[test]
            fn fs_store() {
                super::$body(super::Store::Fs, concat!(stringify!($name), "::fs_store"));
            }

            #[test]
            fn s3_store() {
                super::$body(super::Store::S3, concat!(stringify!($name), "::s3_store"));
            }
        }
    };
}

on_both_stores!(awscli_v1 => awscli_v1);
on_both_stores!(awscli_v2 => awscli_v2);
on_both_stores!(boto3 => boto3);
on_both_stores!(rclone => rclone);
on_both_stores!(s3cmd => s3cmd);
on_both_stores!(curl_presigned => curl_presigned);

// === AWS CLI ===

fn awscli_v1(store: Store, test: &str) {
    awscli(Tool::AwsV1, store, test);
}

fn awscli_v2(store: Store, test: &str) {
    awscli(Tool::AwsV2, store, test);
}

/// `s3 mb`, `s3 cp` up and down, `s3 ls`, `s3api head-object`, a ranged `s3api get-object`,
/// `s3 presign` fetched by curl, `s3 rm`.
fn awscli(tool: Tool, store: Store, test: &str) {
    let Some(aws) = require(tool, test) else {
        return;
    };
    let Some(curl) = require(Tool::Curl, test) else {
        return;
    };
    let proxy = Proxy::start(store);
    let cli = AwsCli::new(aws, &proxy);
    let bucket = "awscli-bucket";
    let key = "dir/object.bin";
    let url = format!("s3://{bucket}/{key}");
    let (up, data) = proxy.plaintext("upload.bin", AWSCLI_OBJECT_SIZE);
    let size = data.len();

    let mb = cli.run(&["s3", "mb", &format!("s3://{bucket}")]).ok("aws s3 mb");
    assert!(
        mb.stdout.contains(&format!("make_bucket: {bucket}")),
        "s3 mb:\n{}",
        mb.describe()
    );

    cli.run(&["s3", "cp", path_str(&up), &url]).ok("aws s3 cp (upload)");
    let down = proxy.work.join("download.bin");
    cli.run(&["s3", "cp", &url, path_str(&down)]).ok("aws s3 cp (download)");
    assert_same_bytes(&down, &data, "aws s3 cp download");

    let ls = cli.run(&["s3", "ls", &format!("s3://{bucket}/dir/")]).ok("aws s3 ls");
    let listed: Vec<_> = ls
        .stdout
        .lines()
        .filter_map(|line| {
            // `2024-01-01 00:00:00    3158073 object.bin`
            let fields: Vec<_> = line.split_whitespace().collect();
            (fields.len() == 4).then(|| (fields[3].to_string(), fields[2].to_string()))
        })
        .collect();
    assert_eq!(
        listed,
        vec![("object.bin".to_string(), size.to_string())],
        "aws s3 ls must list exactly the object with its plaintext size\n{}",
        ls.describe()
    );

    let head = cli.json(
        &["s3api", "head-object", "--bucket", bucket, "--key", key],
        "head-object",
    );
    assert_eq!(
        head["ContentLength"],
        serde_json::json!(size),
        "head-object ContentLength: {head}"
    );
    assert_eq!(
        head["ETag"],
        serde_json::json!(quoted_md5(&data)),
        "head-object ETag: {head}"
    );

    let (first, last) = RANGE;
    let ranged = proxy.work.join("range.bin");
    let range = format!("bytes={first}-{last}");
    let get = cli.json(
        &[
            "s3api",
            "get-object",
            "--bucket",
            bucket,
            "--key",
            key,
            "--range",
            &range,
            path_str(&ranged),
        ],
        "get-object --range",
    );
    assert_same_bytes(&ranged, &data[first..=last], "s3api get-object --range");
    assert_eq!(
        get["ContentLength"],
        serde_json::json!(last - first + 1),
        "get-object: {get}"
    );
    assert_eq!(
        get["ContentRange"],
        serde_json::json!(format!("bytes {first}-{last}/{size}")),
        "get-object: {get}"
    );

    let presign = cli
        .run(&["s3", "presign", &url, "--expires-in", PRESIGN_EXPIRES_SECS])
        .ok("aws s3 presign");
    let presigned = presign.stdout.trim();
    assert!(presigned.starts_with(&proxy.endpoint), "presigned URL {presigned:?}");
    let fetched = proxy.work.join("presigned.bin");
    let ran = curl_get(&curl, &proxy, presigned, &fetched, &[]);
    assert_status(&ran, &fetched, "200", "curl GET of aws s3 presign URL");
    assert_same_bytes(&fetched, &data, "curl GET of aws s3 presign URL");

    proxy.assert_store_ciphertext_only(size as u64);

    cli.run(&["s3", "rm", &url]).ok("aws s3 rm");
    let gone = cli
        .run(&["s3api", "head-object", "--bucket", bucket, "--key", key])
        .failed("head after rm");
    assert!(
        gone.stderr.contains("404") || gone.stderr.contains("Not Found"),
        "head-object after rm must say 404\n{}",
        gone.describe()
    );
    let list = cli.json(
        &["s3api", "list-objects-v2", "--bucket", bucket, "--prefix", "dir/"],
        "list",
    );
    assert!(
        list.get("Contents")
            .is_none_or(|c| c.as_array().is_some_and(Vec::is_empty)),
        "list-objects-v2 after rm still lists: {list}"
    );

    proxy.assert_store_ciphertext_only(0);
}

/// An AWS CLI pointed at the proxy, isolated from the machine's AWS configuration.
struct AwsCli<'a> {
    program: Program,
    proxy: &'a Proxy,
    config: PathBuf,
    credentials: PathBuf,
}

impl<'a> AwsCli<'a> {
    /// Writes the CLI's config: path-style, single-part, and no retries (a retried 5xx would
    /// hide a proxy failure).
    fn new(program: Program, proxy: &'a Proxy) -> Self {
        let config = proxy.work.join("aws-config");
        let credentials = proxy.work.join("aws-credentials");
        fs::write(
            &config,
            format!(
                "[default]\nregion = {REGION}\noutput = json\nmax_attempts = 1\n\
                 s3 =\n    addressing_style = path\n    multipart_threshold = 5GB\n"
            ),
        )
        .expect("write AWS config");
        fs::write(&credentials, "").expect("write empty AWS credentials");
        AwsCli {
            program,
            proxy,
            config,
            credentials,
        }
    }

    fn run(&self, args: &[&str]) -> Ran {
        self.program
            .cmd()
            .args(args)
            .args(["--endpoint-url", &self.proxy.endpoint])
            .arg("--ca-bundle")
            .arg(&self.proxy.ca)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("AWS_DEFAULT_REGION", REGION)
            .env("AWS_CONFIG_FILE", &self.config)
            .env("AWS_SHARED_CREDENTIALS_FILE", &self.credentials)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_PAGER", "")
            .run()
    }

    /// Runs an `s3api` command and parses its JSON output (empty output is `{}`).
    fn json(&self, args: &[&str], what: &str) -> serde_json::Value {
        let ran = self.run(args).ok(what);
        if ran.stdout.trim().is_empty() {
            return serde_json::json!({});
        }
        serde_json::from_str(&ran.stdout)
            .unwrap_or_else(|e| panic!("{what}: output is not JSON ({e})\n{}", ran.describe()))
    }
}

// === boto3 ===

/// put/get/head/list/delete, ranges, metadata, upload_file/download_file, presigned GET by
/// urllib: see `tests/interop/boto3_client.py`.
fn boto3(store: Store, test: &str) {
    let Some(python) = require(Tool::Boto3, test) else {
        return;
    };
    let proxy = Proxy::start(store);
    let (up, data) = proxy.plaintext("boto3.bin", BOTO3_OBJECT_SIZE);
    let bucket = "boto3-bucket";

    let upload = boto3_script(&python, &proxy, &["upload", bucket, path_str(&up), MARKER]).ok("boto3 upload");
    assert!(
        upload.stdout.contains("boto3-ok upload"),
        "boto3 upload:\n{}",
        upload.describe()
    );
    // Two copies of the object are stored: put_object and upload_file.
    proxy.assert_store_ciphertext_only(2 * data.len() as u64);

    let delete = boto3_script(&python, &proxy, &["delete", bucket]).ok("boto3 delete");
    assert!(
        delete.stdout.contains("boto3-ok delete"),
        "boto3 delete:\n{}",
        delete.describe()
    );
    proxy.assert_store_ciphertext_only(0);
}

fn boto3_script(python: &Program, proxy: &Proxy, args: &[&str]) -> Ran {
    python
        .cmd()
        .arg(BOTO3_SCRIPT)
        .args(args)
        .env("ESCROW_ENDPOINT", &proxy.endpoint)
        .env("ESCROW_CA", &proxy.ca)
        .env("ESCROW_ACCESS_KEY", ACCESS_KEY)
        .env("ESCROW_SECRET_KEY", SECRET_KEY)
        .env("ESCROW_REGION", REGION)
        .env("AWS_CONFIG_FILE", proxy.work.join("boto3-no-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", proxy.work.join("boto3-no-credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .run()
}

// === rclone ===

/// `copy` a directory up and back, `check` (hashes and `--download`), `lsl` sizes, `sync`
/// twice where the second transfers nothing, `purge`.
///
/// Each rclone remote is a bucket root: under a sub-path rclone first HEADs the path itself
/// (`bucket/copy`), which s3s-fs answers with a 500 once `copy/` is a directory on its disk.
fn rclone(store: Store, test: &str) {
    let Some(rclone) = require(Tool::Rclone, test) else {
        return;
    };
    let proxy = Proxy::start(store);
    let src = proxy.work.join("rclone-src");
    let files = write_tree(&src);
    let total: u64 = files.values().map(|d| d.len() as u64).sum();
    let conf = proxy.work.join("rclone.conf");
    fs::write(&conf, "").expect("write empty rclone.conf");
    let run = |args: &[&str]| -> Ran {
        rclone
            .cmd()
            .args(args)
            .arg("--ca-cert")
            .arg(&proxy.ca)
            // Single part; no retries, so a proxy failure cannot hide behind a successful retry.
            .args(["--s3-upload-cutoff", "5G", "--retries", "1", "--low-level-retries", "1"])
            .args(["--contimeout", "10s", "--timeout", "60s"])
            .env("RCLONE_CONFIG", &conf)
            .env("RCLONE_CONFIG_ESCROW_TYPE", "s3")
            .env("RCLONE_CONFIG_ESCROW_PROVIDER", "Other")
            .env("RCLONE_CONFIG_ESCROW_ENV_AUTH", "false")
            .env("RCLONE_CONFIG_ESCROW_ENDPOINT", &proxy.endpoint)
            .env("RCLONE_CONFIG_ESCROW_ACCESS_KEY_ID", ACCESS_KEY)
            .env("RCLONE_CONFIG_ESCROW_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("RCLONE_CONFIG_ESCROW_REGION", REGION)
            .env("RCLONE_CONFIG_ESCROW_FORCE_PATH_STYLE", "true")
            // Debian's rclone 1.60 fails with LoadCustomCABundleError when this is set; the
            // scrub already drops it, this keeps it dropped should the scrub change.
            .env_remove("AWS_CA_BUNDLE")
            .run()
    };
    let src_arg = path_str(&src);

    run(&["mkdir", RCLONE_COPY]).ok("rclone mkdir (copy)");
    run(&["mkdir", RCLONE_SYNC]).ok("rclone mkdir (sync)");
    run(&["copy", src_arg, RCLONE_COPY]).ok("rclone copy (up)");
    let back = proxy.work.join("rclone-back");
    run(&["copy", RCLONE_COPY, path_str(&back)]).ok("rclone copy (down)");
    assert_eq!(
        read_tree(&back),
        files,
        "rclone copy down: files differ from the source tree"
    );

    let check = run(&["check", src_arg, RCLONE_COPY]).ok("rclone check");
    let n = files.len();
    for expected in ["0 differences found", &format!("{n} matching files")] {
        assert!(
            check.stderr.contains(expected),
            "rclone check: no {expected:?}\n{}",
            check.describe()
        );
    }
    // MD5 (from the ETag) must be usable: otherwise check silently falls back to sizes.
    for unexpected in ["hashes could not be checked", "no hashes in common"] {
        assert!(
            !check.stderr.contains(unexpected),
            "rclone check: {unexpected:?}\n{}",
            check.describe()
        );
    }
    let check = run(&["check", "--download", src_arg, RCLONE_COPY]).ok("rclone check --download");
    assert!(
        check.stderr.contains("0 differences found"),
        "rclone check --download\n{}",
        check.describe()
    );

    let lsl = run(&["lsl", RCLONE_COPY]).ok("rclone lsl");
    let listed: BTreeMap<String, u64> = lsl
        .stdout
        .lines()
        .filter_map(|line| {
            // `   65536 2024-01-01 00:00:00.000000000 dir/name`
            let mut fields = line.split_whitespace();
            let size = fields.next()?.parse().ok()?;
            let name = fields.nth(2)?;
            Some((name.to_string(), size))
        })
        .collect();
    let expected: BTreeMap<String, u64> = files.iter().map(|(k, v)| (k.clone(), v.len() as u64)).collect();
    assert_eq!(listed, expected, "rclone lsl sizes\n{}", lsl.describe());

    let first = run(&["sync", "-v", src_arg, RCLONE_SYNC]).ok("rclone sync (first)");
    let copied = first.stderr.matches("Copied (new)").count();
    assert_eq!(
        copied,
        n,
        "first rclone sync must copy all {n} files\n{}",
        first.describe()
    );
    let second = run(&["sync", "-v", src_arg, RCLONE_SYNC]).ok("rclone sync (second)");
    // Unchanged files match on size and modification time (rclone's X-Amz-Meta-Mtime user
    // metadata), so nothing is copied and no modification time needs fixing.
    for unexpected in ["Copied (", "Updated modification time"] {
        assert!(
            !second.stderr.contains(unexpected),
            "second rclone sync must transfer nothing, saw {unexpected:?}\n{}",
            second.describe()
        );
    }
    assert!(
        second
            .stderr
            .lines()
            .any(|l| l.contains("Checks:") && l.contains(&format!("{n} / {n}"))),
        "second rclone sync must check all {n} files\n{}",
        second.describe()
    );

    proxy.assert_store_ciphertext_only(2 * total);

    run(&["purge", RCLONE_COPY]).ok("rclone purge (copy)");
    run(&["purge", RCLONE_SYNC]).ok("rclone purge (sync)");
    proxy.assert_store_ciphertext_only(0);
}

/// A small tree for rclone: empty, tiny, exactly one 64 KiB segment, and odd sizes.
fn write_tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut small = MARKER.as_bytes().repeat(16);
    small.extend_from_slice(b"\nsmall text file\n");
    let files: BTreeMap<String, Vec<u8>> = [
        ("empty.bin".to_string(), Vec::new()),
        ("small.txt".to_string(), small),
        ("segment.bin".to_string(), harness::plaintext(64 * 1024)),
        ("big.bin".to_string(), harness::plaintext(1024 * 1024 + 3)),
        ("sub/nested.bin".to_string(), harness::plaintext(200_000)),
    ]
    .into_iter()
    .collect();
    for (name, data) in &files {
        let path = root.join(name);
        fs::create_dir_all(path.parent().expect("has parent")).expect("mkdir");
        fs::write(&path, data).expect("write tree file");
    }
    files
}

fn read_tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display())) {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let name = path
                    .strip_prefix(root)
                    .expect("under root")
                    .to_string_lossy()
                    .into_owned();
                out.insert(name, fs::read(&path).expect("read tree file"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

// === s3cmd ===

/// `mb`, `put` (single part), `get` (s3cmd checks the MD5 against the ETag), `ls`, `info`,
/// `del`. No retries (`max_retries = 0`): a retried failure would go unnoticed.
fn s3cmd(store: Store, test: &str) {
    let Some(s3cmd) = require(Tool::S3cmd, test) else {
        return;
    };
    let proxy = Proxy::start(store);
    let cfg = proxy.work.join("s3cmd.cfg");
    fs::write(
        &cfg,
        format!(
            "[default]\naccess_key = {ACCESS_KEY}\nsecret_key = {SECRET_KEY}\n\
             host_base = {hp}\nhost_bucket = {hp}\nbucket_location = {REGION}\n\
             use_https = True\nca_certs_file = {ca}\ncheck_ssl_certificate = True\n\
             check_ssl_hostname = True\nsignature_v2 = False\nsocket_timeout = 60\nmax_retries = 0\n\
             enable_multipart = False\n",
            hp = proxy.host_port,
            ca = proxy.ca.display(),
        ),
    )
    .expect("write s3cmd config");
    let run = |args: &[&str]| -> Ran { s3cmd.cmd().arg("-c").arg(&cfg).args(args).run() };
    let (up, data) = proxy.plaintext("s3cmd.bin", S3CMD_OBJECT_SIZE);
    let url = "s3://s3cmd-bucket/dir/object.bin";

    run(&["mb", "s3://s3cmd-bucket"]).ok("s3cmd mb");
    run(&["put", "--disable-multipart", path_str(&up), url]).ok("s3cmd put");
    let down = proxy.work.join("s3cmd-down.bin");
    let get = run(&["get", "--force", url, path_str(&down)]).ok("s3cmd get");
    assert!(
        !get.stderr.contains("MD5"),
        "s3cmd get complained about MD5\n{}",
        get.describe()
    );
    assert_same_bytes(&down, &data, "s3cmd get");

    let ls = run(&["ls", "s3://s3cmd-bucket/dir/"]).ok("s3cmd ls");
    let listed: Vec<_> = ls
        .stdout
        .lines()
        .filter_map(|line| {
            // `2024-01-01 00:00      1572867  s3://s3cmd-bucket/dir/object.bin`
            let fields: Vec<_> = line.split_whitespace().collect();
            (fields.len() == 4).then(|| (fields[3].to_string(), fields[2].to_string()))
        })
        .collect();
    assert_eq!(
        listed,
        vec![(url.to_string(), data.len().to_string())],
        "s3cmd ls\n{}",
        ls.describe()
    );

    let info = run(&["info", url]).ok("s3cmd info");
    let md5 = quoted_md5(&data);
    let md5 = md5.trim_matches('"');
    let field = |name: &str| {
        info.stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_string()))
            .unwrap_or_else(|| panic!("s3cmd info: no {name:?}\n{}", info.describe()))
    };
    assert_eq!(
        field("File size:"),
        data.len().to_string(),
        "s3cmd info\n{}",
        info.describe()
    );
    assert_eq!(field("MD5 sum:"), md5, "s3cmd info\n{}", info.describe());

    proxy.assert_store_ciphertext_only(data.len() as u64);

    run(&["del", url]).ok("s3cmd del");
    let ls = run(&["ls", "s3://s3cmd-bucket/dir/"]).ok("s3cmd ls after del");
    assert!(
        !ls.stdout.contains("object.bin"),
        "s3cmd ls after del\n{}",
        ls.describe()
    );
    proxy.assert_store_ciphertext_only(0);
}

// === curl with presigned URLs ===

/// Presigned PUT (from boto3) uploaded by curl, presigned GET (whole and ranged) and DELETE by
/// curl; a tampered signature is refused.
fn curl_presigned(store: Store, test: &str) {
    let Some(python) = require(Tool::Boto3, test) else {
        return;
    };
    let Some(curl) = require(Tool::Curl, test) else {
        return;
    };
    let proxy = Proxy::start(store);
    let (up, data) = proxy.plaintext("curl.bin", CURL_OBJECT_SIZE);
    let (bucket, key) = ("curl-bucket", "presigned/object.bin");
    let presign = |method: &str| -> String {
        let ran = boto3_script(&python, &proxy, &["presign", method, bucket, key]).ok("boto3 presign");
        ran.stdout.trim().to_string()
    };

    boto3_script(&python, &proxy, &["mkbucket", bucket]).ok("boto3 create_bucket");

    let put_url = presign("put_object");
    let headers = proxy.work.join("put-headers.txt");
    let put = curl
        .cmd()
        .args(["-sS", "--fail-with-body", "--max-time", "100", "--cacert"])
        .arg(&proxy.ca)
        .arg("-T")
        .arg(&up)
        .arg("-D")
        .arg(&headers)
        .arg(&put_url)
        .run()
        .ok("curl presigned PUT");
    let etag = fs::read_to_string(&headers)
        .expect("read PUT headers")
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("etag"))
                .map(|(_, v)| v.trim().to_string())
        });
    assert_eq!(
        etag,
        Some(quoted_md5(&data)),
        "presigned PUT response ETag\n{}",
        put.describe()
    );

    let get_url = presign("get_object");
    let down = proxy.work.join("curl-down.bin");
    let ran = curl_get(&curl, &proxy, &get_url, &down, &[]);
    assert_status(&ran, &down, "200", "curl presigned GET");
    assert_same_bytes(&down, &data, "curl presigned GET");

    let (first, last) = RANGE;
    let ranged = proxy.work.join("curl-range.bin");
    let range = format!("{first}-{last}");
    let ran = curl_get(&curl, &proxy, &get_url, &ranged, &["--range", &range]);
    assert_status(&ran, &ranged, "206", "curl presigned ranged GET");
    assert_same_bytes(&ranged, &data[first..=last], "curl presigned GET --range");

    let tampered = tamper_signature(&get_url);
    let refused = proxy.work.join("tampered.txt");
    let ran = curl_get(&curl, &proxy, &tampered, &refused, &[]);
    assert_status(&ran, &refused, "403", "presigned GET with a tampered signature");

    proxy.assert_store_ciphertext_only(data.len() as u64);

    let delete_url = presign("delete_object");
    let deleted = proxy.work.join("delete-response.txt");
    let ran = curl
        .cmd()
        .args([
            "-sS",
            "--max-time",
            "100",
            "-w",
            "%{http_code}",
            "-X",
            "DELETE",
            "--cacert",
        ])
        .arg(&proxy.ca)
        .arg("-o")
        .arg(&deleted)
        .arg(&delete_url)
        .run()
        .ok("curl presigned DELETE");
    assert_status(&ran, &deleted, "204", "curl presigned DELETE");
    let ran = curl_get(&curl, &proxy, &get_url, &refused, &[]);
    assert_status(&ran, &refused, "404", "presigned GET after DELETE");

    proxy.assert_store_ciphertext_only(0);
}

/// Flips one hex digit of `X-Amz-Signature`.
fn tamper_signature(url: &str) -> String {
    let at = url.find("X-Amz-Signature=").expect("presigned URL has X-Amz-Signature") + "X-Amz-Signature=".len();
    let mut bytes = url.as_bytes().to_vec();
    bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
    String::from_utf8(bytes).expect("ascii URL")
}

/// `curl` GET of `url` into `out`; stdout is the HTTP status code. Transport errors (and
/// time-outs) fail the test here; HTTP statuses are the caller's to check with
/// [`assert_status`].
fn curl_get(curl: &Program, proxy: &Proxy, url: &str, out: &Path, extra: &[&str]) -> Ran {
    curl.cmd()
        .args(["-sS", "--max-time", "100", "-w", "%{http_code}", "--cacert"])
        .arg(&proxy.ca)
        .args(extra)
        .arg("-o")
        .arg(out)
        .arg(url)
        .run()
        .ok("curl")
}

/// Asserts curl printed HTTP status `expected`; on failure quotes the response body in `body`.
#[track_caller]
fn assert_status(ran: &Ran, body: &Path, expected: &str, what: &str) {
    if ran.stdout.trim() != expected {
        let text = fs::read(body).map(|b| String::from_utf8_lossy(&b[..b.len().min(2048)]).into_owned());
        panic!(
            "{what}: HTTP status {} (expected {expected})\n  response body: {text:?}\n{}",
            ran.stdout.trim(),
            ran.describe()
        );
    }
}

// === helpers ===

#[track_caller]
fn assert_same_bytes(path: &Path, expected: &[u8], what: &str) {
    let got = fs::read(path).unwrap_or_else(|e| panic!("{what}: read {}: {e}", path.display()));
    assert_eq!(got.len(), expected.len(), "{what}: length differs");
    if let Some(at) = got.iter().zip(expected).position(|(a, b)| a != b) {
        panic!("{what}: bytes differ from offset {at} (of {})", expected.len());
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 tempdir path")
}
