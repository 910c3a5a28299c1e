//! The sidecar's lifecycle and operations, on the real `escrow-proxy` binary: graceful stop on
//! SIGTERM with an upload in flight (it completes, exit 0), a second SIGTERM or the grace
//! deadline ending it, the TLS certificate replaced on disk while a client is connected (the
//! next handshake gets the new one, the open connection keeps working; a bad replacement is
//! refused and the previous certificate kept), mTLS, and the JSON access log, including the
//! store(s) that served each request (in process, over the mirrored harness, during a primary
//! outage).
//!
//! Requests are written by hand over a socket (SigV4 with `UNSIGNED-PAYLOAD`), so a test
//! controls exactly when each body byte is sent: an upload asks `Expect: 100-continue`, and the
//! proxy's `100 Continue` proves the request is inside the proxy before the signal is sent.
//! Every wait is a bounded poll; each process is killed by its pid when its guard drops.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

#[path = "common/mod.rs"]
mod common;

const BIN: &str = env!("CARGO_BIN_EXE_escrow-proxy");
const ACCESS_KEY: &str = "lifecycle-app";
const SECRET_KEY: &str = "lifecycle-secret-key-0123456789";
const REGION: &str = "us-east-1";
/// Bound of every wait for the proxy (startup, a log line, exit).
const WAIT: Duration = Duration::from_secs(30);

// === the proxy process ===

/// A running `escrow-proxy --log-format json serve`, killed by its pid when dropped.
struct Proxy {
    child: Child,
    stderr: PathBuf,
    /// `host:port` of the S3 listener.
    addr: String,
    /// `host:port` of the admin listener (when `[admin]` is configured).
    admin: Option<String>,
}

impl Proxy {
    /// Starts the proxy in `dir` with `[server]` settings `server` (plus listen, clients, an fs
    /// primary and keys, all in `dir`).
    fn start(dir: &Path, server: &str) -> Self {
        Self::start_with(dir, server, "")
    }

    /// [`Proxy::start`] with more configuration after the rest (e.g. an `[admin]` section).
    fn start_with(dir: &Path, server: &str, tail: &str) -> Self {
        let secret = dir.join("client-secret");
        write_private(&secret, SECRET_KEY);
        let config = dir.join("escrow.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\n{server}\n\n[[clients]]\naccess_key = \"{ACCESS_KEY}\"\n\
                 secret_key_file = \"client-secret\"\n\n[primary]\ntype = \"fs\"\npath = \"primary\"\n\n\
                 [keys]\nkeyring = \"keyring\"\nroot_key_file = \"root.key\"\n{tail}\n"
            ),
        )
        .expect("write config");
        let stderr = dir.join("proxy.stderr");
        let mut command = Command::new(BIN);
        command
            .args(["--log-format", "json", "serve", "--config"])
            .arg(&config)
            .current_dir(dir)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ESCROW_") {
                command.env_remove(&key);
            }
        }
        let mut child = command.spawn().expect("spawn escrow-proxy");
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut proxy = Self {
            child,
            stderr,
            addr: String::new(),
            admin: None,
        };
        let want_admin = tail.contains("[admin]");
        let deadline = Instant::now() + WAIT;
        while proxy.addr.is_empty() || (want_admin && proxy.admin.is_none()) {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    let host = |url: &str| url.split("://").nth(1).expect("url").to_string();
                    if let Some(url) = line.strip_prefix("endpoint: ") {
                        proxy.addr = host(url);
                    } else if let Some(url) = line.strip_prefix("admin: ") {
                        proxy.admin = Some(host(url));
                    }
                }
                Err(_) => panic!("the proxy printed no endpoint (or admin); stderr:\n{}", proxy.log()),
            }
        }
        proxy
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits (bounded) until a log line contains `needle`; returns that line.
    #[track_caller]
    fn wait_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(line) = self.log().lines().find(|l| l.contains(needle)) {
                return line.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {needle:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` (TERM, HUP) to this child's pid.
    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {signal}");
    }

    /// Waits (bounded) for the process to exit.
    #[track_caller]
    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the proxy did not exit; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // `Child::kill` signals this child's own pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("write secret");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

// === requests by hand ===

/// The head of a SigV4-signed (`UNSIGNED-PAYLOAD`) request for `path` on `host`.
fn signed_head(method: &str, host: &str, path: &str, extra: &[(&str, String)]) -> String {
    let now = time::OffsetDateTime::now_utc();
    let ts = now
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .expect("format date");
    let date = &ts[..8];
    let canonical = format!(
        "{method}\n{path}\n\nhost:{host}\nx-amz-content-sha256:UNSIGNED-PAYLOAD\nx-amz-date:{ts}\n\n\
         host;x-amz-content-sha256;x-amz-date\nUNSIGNED-PAYLOAD"
    );
    let scope = format!("{date}/{REGION}/s3/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{ts}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let hmac = |key: &[u8], msg: &str| {
        ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key), msg.as_bytes())
            .as_ref()
            .to_vec()
    };
    let mut key = hmac(format!("AWS4{SECRET_KEY}").as_bytes(), date);
    for part in [REGION, "s3", "aws4_request"] {
        key = hmac(&key, part);
    }
    let signature = hex::encode(hmac(&key, &to_sign));
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {host}\r\nx-amz-content-sha256: UNSIGNED-PAYLOAD\r\nx-amz-date: {ts}\r\n\
         authorization: AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{scope}, \
         SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={signature}\r\n"
    );
    for (name, value) in extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// Reads one response head from `r`: its status and the lowercased header lines.
fn try_read_head(r: &mut impl BufRead) -> std::io::Result<(u16, Vec<String>)> {
    let mut status_line = String::new();
    r.read_line(&mut status_line)?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP status line: {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line)?;
        let line = line.trim_end().to_ascii_lowercase();
        if line.is_empty() {
            return Ok((status, headers));
        }
        headers.push(line);
    }
}

#[track_caller]
fn read_head(r: &mut impl BufRead) -> (u16, Vec<String>) {
    try_read_head(r).expect("read a response head")
}

/// Reads a whole response (head and a Content-Length body): status, headers, body.
fn try_read_response(r: &mut impl BufRead) -> std::io::Result<(u16, Vec<String>, Vec<u8>)> {
    let (status, headers) = try_read_head(r)?;
    let len = headers
        .iter()
        .find_map(|h| h.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse::<usize>().unwrap_or(0));
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok((status, headers, body))
}

#[track_caller]
fn read_response(r: &mut impl BufRead) -> (u16, Vec<String>, Vec<u8>) {
    try_read_response(r).expect("read a response")
}

/// A complete signed request without a body on a new connection: the status and body.
fn request(addr: &str, method: &str, path: &str) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    let head = signed_head(method, addr, path, &[("content-length", "0".into())]);
    stream.write_all(head.as_bytes()).expect("send");
    let (status, _, body) = read_response(&mut BufReader::new(stream));
    (status, body)
}

fn simple(addr: &str, method: &str, path: &str) -> u16 {
    request(addr, method, path).0
}

/// An upload started with `Expect: 100-continue`, its request inside the proxy: the proxy has
/// authenticated it and started reading the body (it sent `100 Continue`).
struct Upload {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    body: Vec<u8>,
    sent: usize,
}

impl Upload {
    fn start(addr: &str, path: &str, body: Vec<u8>) -> Self {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut writer = stream.try_clone().expect("clone");
        let head = signed_head(
            "PUT",
            addr,
            path,
            &[
                ("content-length", body.len().to_string()),
                ("expect", "100-continue".into()),
            ],
        );
        writer.write_all(head.as_bytes()).expect("send head");
        let mut reader = BufReader::new(stream);
        let (status, _) = read_head(&mut reader);
        assert_eq!(status, 100, "the proxy asks for the body");
        let mut upload = Self {
            reader,
            writer,
            body,
            sent: 0,
        };
        upload.send(upload.body.len() / 2);
        upload
    }

    fn send(&mut self, n: usize) {
        let end = (self.sent + n).min(self.body.len());
        self.writer.write_all(&self.body[self.sent..end]).expect("send body");
        self.sent = end;
    }

    /// Sends the rest of the body and reads the answer.
    fn finish(mut self) -> (u16, Vec<String>) {
        self.send(self.body.len());
        let (status, headers, _) = read_response(&mut self.reader);
        (status, headers)
    }
}

fn patterned(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

// === graceful stop ===

#[test]
fn sigterm_during_an_upload_lets_it_finish_then_exits_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A drain delay long enough to see the listener still accepting while draining; the
    // in-flight upload is what the test waits on, not the clock.
    let mut proxy = Proxy::start(dir.path(), "drain_delay_secs = 2\nshutdown_grace_secs = 60");
    assert_eq!(simple(&proxy.addr, "PUT", "/drain"), 200, "create bucket");
    let body = patterned(8 << 20);
    let upload = Upload::start(&proxy.addr, "/drain/big.bin", body.clone());

    proxy.signal("TERM");
    proxy.wait_log("terminated; draining");
    let (status, headers) = upload.finish();
    assert_eq!(status, 200, "the upload in flight at SIGTERM completes");
    assert!(headers.iter().any(|h| h.starts_with("x-amz-request-id:")));

    let status = proxy.wait_exit();
    assert_eq!(status.code(), Some(0), "a drained stop exits 0; log:\n{}", proxy.log());
    let log = proxy.log();
    assert!(log.contains("all connections finished"), "log:\n{log}");
    // The upload was stored whole: its access line says so, with the bytes received.
    let line = log
        .lines()
        .find(|l| l.contains("\"operation\":\"PutObject\"") && l.contains("big.bin"))
        .unwrap_or_else(|| panic!("no access line for the upload; log:\n{log}"));
    let v: serde_json::Value = serde_json::from_str(line).expect("json line");
    assert_eq!(v["fields"]["status"], 200);
    assert_eq!(v["fields"]["bytes_in"], body.len() as u64);
    // The object is whole: a new proxy on the same store reads it back.
    drop(proxy);
    let proxy = Proxy::start(dir.path(), "");
    let (status, read) = request(&proxy.addr, "GET", "/drain/big.bin");
    assert_eq!(status, 200);
    assert!(read == body, "the object reads back identical");
}

/// The status of an unauthenticated `GET path` to `addr` (the admin API's public routes).
fn get_status(addr: &str, path: &str) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(WAIT))?;
    stream.write_all(format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n").as_bytes())?;
    Ok(try_read_head(&mut BufReader::new(stream))?.0)
}

#[test]
fn on_sigterm_ready_fails_at_once_while_s3_still_accepts_for_the_drain_delay() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_private(&dir.path().join("admin-token"), &"t".repeat(40));
    // A drain delay far longer than the test: it ends with a second SIGTERM, not the clock.
    let mut proxy = Proxy::start_with(
        dir.path(),
        "drain_delay_secs = 600",
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin-token\"",
    );
    let admin = proxy.admin.clone().expect("admin listener");
    let deadline = Instant::now() + WAIT;
    while get_status(&admin, "/ready").ok() != Some(200) {
        assert!(Instant::now() < deadline, "never ready; log:\n{}", proxy.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    // The binary's own probe (the containers' health check) agrees.
    let probe = |path: &str| {
        Command::new(BIN)
            .args(["probe", "--url", &format!("http://{admin}{path}")])
            .output()
            .expect("run probe")
    };
    assert!(probe("/ready").status.success());

    proxy.signal("TERM");
    proxy.wait_log("terminated; draining");
    assert_eq!(
        get_status(&admin, "/ready").expect("ready"),
        503,
        "not ready once draining"
    );
    let failed = probe("/ready");
    assert_eq!(failed.status.code(), Some(1), "the probe fails on 503");
    assert!(String::from_utf8_lossy(&failed.stderr).contains("status 503"));
    assert!(probe("/live").status.success(), "still live while draining");
    // New connections and requests are still served during the drain delay.
    assert_eq!(
        simple(&proxy.addr, "PUT", "/late"),
        200,
        "S3 still accepts while draining"
    );

    proxy.signal("TERM");
    assert_eq!(proxy.wait_exit().code(), Some(0), "log:\n{}", proxy.log());
}

/// The status of `POST /shutdown` to the admin listener at `addr`.
fn post_shutdown(addr: &str) -> u16 {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    stream
        .write_all(
            format!("POST /shutdown HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .as_bytes(),
        )
        .expect("send");
    read_head(&mut BufReader::new(stream)).0
}

#[test]
fn post_shutdown_drains_and_exits_0_only_when_enabled() {
    let admin_section = "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin-token\"";
    // Off by default: 404, and the proxy keeps serving.
    let dir = tempfile::tempdir().expect("tempdir");
    write_private(&dir.path().join("admin-token"), &"t".repeat(40));
    let mut proxy = Proxy::start_with(dir.path(), "", admin_section);
    let admin = proxy.admin.clone().expect("admin");
    assert_eq!(post_shutdown(&admin), 404);
    assert_eq!(simple(&proxy.addr, "PUT", "/still"), 200, "still serving");
    assert!(proxy.child.try_wait().expect("try_wait").is_none(), "still running");

    // Enabled: 202, then the same drain as SIGTERM, exit 0.
    let dir = tempfile::tempdir().expect("tempdir");
    write_private(&dir.path().join("admin-token"), &"t".repeat(40));
    proxy = Proxy::start_with(dir.path(), "shutdown_endpoint = true", admin_section);
    let admin = proxy.admin.clone().expect("admin");
    assert_eq!(post_shutdown(&admin), 202);
    assert_eq!(proxy.wait_exit().code(), Some(0), "log:\n{}", proxy.log());
    proxy.wait_log("POST /shutdown; draining");
}

#[test]
fn a_second_sigterm_stops_at_once_and_the_unfinished_upload_is_not_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut proxy = Proxy::start(dir.path(), "drain_delay_secs = 0\nshutdown_grace_secs = 600");
    assert_eq!(simple(&proxy.addr, "PUT", "/twice"), 200, "create bucket");
    let mut upload = Upload::start(&proxy.addr, "/twice/partial.bin", patterned(1 << 20));

    proxy.signal("TERM");
    proxy.wait_log("finishing in-flight requests");
    proxy.signal("TERM");
    let status = proxy.wait_exit();
    assert_eq!(status.code(), Some(0), "log:\n{}", proxy.log());
    proxy.wait_log("second SIGTERM");
    // The connection is gone: no 200 comes for the unfinished upload.
    upload.writer.write_all(&upload.body[upload.sent..]).ok();
    let answer = try_read_response(&mut upload.reader);
    assert!(
        !matches!(answer, Ok((200, _, _))),
        "no success after a forced stop: {answer:?}"
    );
    // Nothing was stored: a new proxy on the same store does not find it.
    drop(proxy);
    let proxy = Proxy::start(dir.path(), "");
    assert_eq!(simple(&proxy.addr, "GET", "/twice/partial.bin"), 404);
}

#[test]
fn the_grace_deadline_ends_a_stalled_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut proxy = Proxy::start(dir.path(), "drain_delay_secs = 0\nshutdown_grace_secs = 1");
    assert_eq!(simple(&proxy.addr, "PUT", "/stall"), 200, "create bucket");
    let _upload = Upload::start(&proxy.addr, "/stall/stalled.bin", patterned(1 << 20));
    proxy.signal("TERM");
    let status = proxy.wait_exit();
    assert_eq!(status.code(), Some(0), "log:\n{}", proxy.log());
    proxy.wait_log("still open after the grace period");
}

// === TLS: reload, mTLS ===

/// A TLS client configuration trusting `ca_pem`, with a client certificate when given.
fn tls_client(ca_pem: &Path, client: Option<(&Path, &Path)>) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_pem).expect("ca") {
        roots.add(cert.expect("ca cert")).expect("add root");
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain: Vec<_> = CertificateDer::pem_file_iter(cert)
                .expect("client cert")
                .map(|c| c.expect("cert"))
                .collect();
            let key = PrivateKeyDer::from_pem_file(key).expect("client key");
            builder.with_client_auth_cert(chain, key).expect("client auth")
        }
    };
    Arc::new(config)
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS connection to `addr` for `localhost`, handshake done.
fn tls_connect(addr: &str, config: Arc<rustls::ClientConfig>) -> std::io::Result<Tls> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(WAIT))?;
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let conn = rustls::ClientConnection::new(config, name).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// One signed `GET /` (ListBuckets) on `tls`; its status. Keeps the connection open.
fn list_buckets(tls: &mut Tls, addr: &str) -> std::io::Result<u16> {
    let head = signed_head("GET", addr, "/", &[]);
    tls.write_all(head.as_bytes())?;
    let mut reader = BufReader::new(tls);
    Ok(try_read_response(&mut reader)?.0)
}

/// The DER of the leaf certificate the server presented.
fn peer_leaf(tls: &Tls) -> Vec<u8> {
    tls.conn.peer_certificates().expect("peer certs")[0].to_vec()
}

fn leaf_of(chain_pem: &Path) -> Vec<u8> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_file_iter(chain_pem)
        .expect("chain")
        .next()
        .expect("a certificate")
        .expect("pem")
        .to_vec()
}

fn certs_generate(out: &Path) {
    let status = Command::new(BIN)
        .args(["certs", "generate", "--out"])
        .arg(out)
        .stdout(Stdio::null())
        .status()
        .expect("certs generate");
    assert!(status.success());
}

#[test]
fn a_replaced_certificate_is_served_to_new_handshakes_and_open_connections_stay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join("certs");
    let next = dir.path().join("next");
    certs_generate(&live);
    certs_generate(&next);
    let proxy = Proxy::start(
        dir.path(),
        "tls_cert = \"certs/server.pem\"\ntls_key = \"certs/server-key.pem\"\ntls_reload_secs = 1",
    );
    // A fresh client configuration per connection: a shared one would resume the earlier TLS
    // session, and a resumed session presents no certificate at all.
    let old = || tls_client(&live.join("ca.pem"), None);
    let new = || tls_client(&next.join("ca.pem"), None);

    let mut open = tls_connect(&proxy.addr, old()).expect("handshake with the first certificate");
    assert_eq!(peer_leaf(&open), leaf_of(&live.join("server.pem")));
    assert_eq!(list_buckets(&mut open, &proxy.addr).expect("request"), 200);

    // Replace the pair on disk (key first, as a renewal that writes the files one by one may):
    // the watcher may see a mismatched pair in between and refuse it; the finished pair wins.
    std::fs::copy(next.join("server-key.pem"), live.join("server-key.pem")).expect("copy key");
    std::fs::copy(next.join("server.pem"), live.join("server.pem")).expect("copy cert");
    proxy.wait_log("tls certificate reloaded");

    let mut fresh = tls_connect(&proxy.addr, new()).expect("handshake with the new certificate");
    assert_eq!(peer_leaf(&fresh), leaf_of(&next.join("server.pem")));
    assert_eq!(list_buckets(&mut fresh, &proxy.addr).expect("request"), 200);
    assert!(
        tls_connect(&proxy.addr, old()).is_err(),
        "the old CA no longer verifies new handshakes"
    );
    // The connection made before the change still serves requests.
    assert_eq!(list_buckets(&mut open, &proxy.addr).expect("old connection"), 200);

    // A bad replacement (garbage certificate), pushed with SIGHUP: refused, the new pair kept.
    std::fs::write(live.join("server.pem"), "not a certificate").expect("write garbage");
    proxy.signal("HUP");
    proxy.wait_log("refused; still serving the previous one");
    let mut after = tls_connect(&proxy.addr, new()).expect("handshake after a refused reload");
    assert_eq!(peer_leaf(&after), leaf_of(&next.join("server.pem")));
    assert_eq!(list_buckets(&mut after, &proxy.addr).expect("request"), 200);
}

/// A CA (certificate PEM written to `dir/<name>-ca.pem`) and a client certificate it signs
/// (`dir/<name>.pem`, `dir/<name>-key.pem`).
fn client_ca_and_cert(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} CA"));
    let ca_key = KeyPair::generate().expect("key");
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} client"));
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &ca, &ca_key).expect("sign");
    let paths = (
        dir.join(format!("{name}-ca.pem")),
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}-key.pem")),
    );
    std::fs::write(&paths.0, ca.pem()).expect("write");
    std::fs::write(&paths.1, cert.pem()).expect("write");
    write_private(&paths.2, &key.serialize_pem());
    (paths.0, paths.1, paths.2)
}

/// Whether a request over a TLS connection made with `config` gets an answer (a handshake
/// refused for a missing or foreign client certificate fails here: in TLS 1.3 the client
/// learns it only on its first read).
fn answers(addr: &str, config: Arc<rustls::ClientConfig>) -> bool {
    match tls_connect(addr, config) {
        Ok(mut tls) => list_buckets(&mut tls, addr).is_ok_and(|s| s == 200),
        Err(_) => false,
    }
}

#[test]
fn mtls_admits_only_clients_with_a_certificate_from_the_client_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = dir.path().join("certs");
    certs_generate(&certs);
    let (client_ca, cert, key) = client_ca_and_cert(dir.path(), "apps");
    let (_, foreign_cert, foreign_key) = client_ca_and_cert(dir.path(), "strangers");
    let proxy = Proxy::start(
        dir.path(),
        &format!(
            "tls_cert = \"certs/server.pem\"\ntls_key = \"certs/server-key.pem\"\ntls_client_ca = \"{}\"",
            client_ca.display()
        ),
    );
    let ca = certs.join("ca.pem");
    assert!(
        answers(&proxy.addr, tls_client(&ca, Some((&cert, &key)))),
        "a client certificate from the client CA is admitted"
    );
    assert!(
        !answers(&proxy.addr, tls_client(&ca, None)),
        "no client certificate: refused"
    );
    assert!(
        !answers(&proxy.addr, tls_client(&ca, Some((&foreign_cert, &foreign_key)))),
        "a certificate from another CA: refused"
    );
}

#[test]
fn mtls_without_tls_is_a_configuration_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_private(&dir.path().join("client-secret"), SECRET_KEY);
    let config = dir.path().join("escrow.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ntls_client_ca = \"ca.pem\"\n[[clients]]\naccess_key = \"{ACCESS_KEY}\"\n\
             secret_key_file = \"client-secret\"\n[primary]\ntype = \"fs\"\npath = \"p\"\n[keys]\nkeyring = \"k\"\nroot_key_file = \"r\"\n"
        ),
    )
    .expect("write");
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tls_client_ca needs tls_cert"));
    assert!(!dir.path().join("k").exists(), "nothing was created");
}

// === logs ===

#[test]
fn json_logs_have_one_access_line_per_request_and_no_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut proxy = Proxy::start(dir.path(), "");
    assert_eq!(simple(&proxy.addr, "PUT", "/logs"), 200);
    let mut upload = Upload::start(&proxy.addr, "/logs/a%20key.txt", b"0123456789abcdef".to_vec());
    upload.send(16);
    let (status, headers, _) = read_response(&mut upload.reader);
    assert_eq!(status, 200);
    let ids: Vec<_> = headers
        .iter()
        .filter_map(|h| h.strip_prefix("x-amz-request-id:"))
        .map(|v| v.trim().to_ascii_uppercase())
        .collect();
    assert_eq!(ids.len(), 1, "exactly one x-amz-request-id: {headers:?}");
    // An unauthenticated request: logged at debug only (not at info), counted.
    let mut stranger = TcpStream::connect(&proxy.addr).expect("connect");
    stranger
        .write_all(b"GET /logs HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
        .expect("send");
    stranger.set_read_timeout(Some(WAIT)).expect("timeout");
    assert_eq!(read_response(&mut BufReader::new(stranger)).0, 403);
    proxy.signal("TERM");
    assert_eq!(proxy.wait_exit().code(), Some(0));

    let log = proxy.log();
    let mut access = Vec::new();
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string() && v["target"].is_string());
        if v["target"] == "escrow_proxy::access" {
            access.push(v);
        }
    }
    assert_eq!(
        access.len(),
        2,
        "one info access line per authenticated request:\n{log}"
    );
    let put = &access[1]["fields"];
    assert_eq!(put["operation"], "PutObject");
    assert_eq!(put["access_key"], ACCESS_KEY);
    assert_eq!(put["bucket"], "logs");
    assert_eq!(put["key"], "a key.txt");
    assert_eq!(put["status"], 200);
    assert_eq!(put["bytes_in"], 16);
    assert_eq!(put["request_id"].as_str(), Some(ids[0].as_str()));
    assert_eq!(put["stores"], "primary", "unmirrored: the primary serves everything");
    assert!(put["duration_ms"].is_u64());
    assert!(!log.contains(SECRET_KEY), "the secret key is never logged");
    assert!(!log.contains("0123456789abcdef"), "object bytes are never logged");
    assert!(
        !log.to_ascii_lowercase().contains("signature="),
        "signatures are never logged"
    );
}

/// A `MakeWriter` into a shared buffer (the test's own JSON log).
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    /// The `fields` of every access line so far.
    fn access_lines(&self) -> Vec<serde_json::Value> {
        let text = String::from_utf8(self.0.lock().expect("log buffer").clone()).expect("utf-8 log");
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["target"] == "escrow_proxy::access")
            .map(|v| v["fields"].clone())
            .collect()
    }

    /// The stores of the access line of the latest `operation` on `key`.
    fn stores_of(&self, operation: &str, key: &str) -> String {
        let lines = self.access_lines();
        let line = lines
            .iter()
            .rev()
            .find(|f| f["operation"] == operation && f["key"] == key)
            .unwrap_or_else(|| panic!("no {operation} access line for {key}: {lines:#?}"));
        line["stores"].as_str().expect("stores is a string").to_string()
    }
}

/// The access line names the store(s) that served each request: both for a mirrored write,
/// the read store for a read, and the mirror alone for a read (and a write) while the primary
/// is out. In process, on one thread, so this test's own subscriber sees every line.
#[tokio::test(flavor = "current_thread")]
async fn the_access_line_names_the_stores_that_served_the_request() {
    use escrow_proxy::mirror::{ReadMode, WriteMode};
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_env_filter("info")
        .with_writer(captured.clone())
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);

    let harness = common::Harness::mirrored(ReadMode::Primary, WriteMode::Sync).await;
    harness.create_bucket("served").await;
    harness.put("served", "both", b"written to both stores").await;
    assert_eq!(captured.stores_of("PutObject", "both"), "primary+mirror");
    assert_eq!(harness.get("served", "both").await, b"written to both stores");
    assert_eq!(
        captured.stores_of("GetObject", "both"),
        "primary",
        "reads go to the primary"
    );

    harness.primary_outage(true);
    assert_eq!(harness.get("served", "both").await, b"written to both stores");
    assert_eq!(
        captured.stores_of("GetObject", "both"),
        "mirror",
        "the primary is out: the mirror served the read"
    );
    harness.put("served", "during", b"written during the outage").await;
    assert_eq!(captured.stores_of("PutObject", "during"), "mirror");
    assert_eq!(harness.get("served", "during").await, b"written during the outage");
    assert_eq!(captured.stores_of("GetObject", "during"), "mirror");
    harness.primary_outage(false);
    harness.stop().await;
}
