//! What the in-process harness (`tests/common`), the interop harness (`tests/interop/harness.rs`)
//! and the command-line tests (`tests/cli`) share, whatever proxy they run: an S3 server on
//! loopback, plaintexts with a marker planted in them, scans of a store's files for that marker,
//! and small file helpers.
//!
//! Included with `#[path]` by `tests/common/mod.rs` and `tests/interop/harness.rs`; the
//! command-line tests reach it through `common`.

use std::fs;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::S3;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

// === an S3 server ===

/// Binds `127.0.0.1:0` for `s3`, which accepts requests signed with `access_key`/`secret_key`.
/// Returns the bound address and the accept loop (one task per connection), which never ends:
/// spawn it on the runtime this was awaited in (the listener belongs to that runtime's reactor).
pub async fn bind_s3_server(
    s3: impl S3,
    access_key: &str,
    secret_key: &str,
) -> (SocketAddr, impl Future<Output = ()> + Send + 'static) {
    bind_s3_server_with_switch(s3, access_key, secret_key, Outage::default()).await
}

/// A switch that makes an S3 server unreachable: while it is on, new connections are closed at
/// once and requests on open connections fail at the connection level (as with a dead host).
#[derive(Clone, Default)]
pub struct Outage(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Outage {
    /// Turns the outage on or off.
    pub fn set(&self, down: bool) {
        self.0.store(down, std::sync::atomic::Ordering::SeqCst);
    }

    fn is_on(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// [`bind_s3_server`] whose reachability `outage` switches.
pub async fn bind_s3_server_with_switch(
    s3: impl S3,
    access_key: &str,
    secret_key: &str,
    outage: Outage,
) -> (SocketAddr, impl Future<Output = ()> + Send + 'static) {
    let service = {
        let mut b = S3ServiceBuilder::new(s3);
        b.set_auth(SimpleAuth::from_single(access_key, secret_key));
        b.build()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind s3s-fs listener");
    let addr = listener.local_addr().expect("s3s-fs local addr");
    let accept = async move {
        let http = ConnBuilder::new(TokioExecutor::new());
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                continue;
            };
            if outage.is_on() {
                drop(socket);
                continue;
            }
            let service = service.clone();
            let outage = outage.clone();
            let switched = hyper::service::service_fn(move |req| {
                let down = outage.is_on();
                let call = hyper::service::Service::call(&service, req);
                async move {
                    if down {
                        return Err(io::Error::other("outage"));
                    }
                    call.await.map_err(|e| io::Error::other(format!("{e:?}")))
                }
            });
            let conn = http.serve_connection(TokioIo::new(socket), switched).into_owned();
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
    };
    (addr, accept)
}

// === plaintexts and scans ===

/// `len` random bytes with `marker` planted at the start, every `every` bytes and at the end (as
/// far as it fits).
pub fn random_with_marker(len: usize, marker: &[u8], every: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    rand::fill(&mut data[..]);
    let mut at = 0;
    while at + marker.len() <= len {
        data[at..at + marker.len()].copy_from_slice(marker);
        at += every;
    }
    if len >= marker.len() {
        data[len - marker.len()..].copy_from_slice(marker);
    }
    data
}

/// Where `needle` first occurs in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let mut from = 0;
    while let Some(i) = haystack[from..].iter().position(|&b| b == first) {
        let at = from + i;
        if haystack.len() - at < needle.len() {
            return None;
        }
        if &haystack[at..at + needle.len()] == needle {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Every file under `dir`, recursively, sorted; none when `dir` does not exist.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.expect("read_dir entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.is_file() {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

/// What [`assert_files_lack`] does with a file that is gone by the time it is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vanished {
    /// Skip it: a server still runs, and may rename a temp file into place.
    Skip,
    /// Fail: nothing should touch the files during the scan.
    Fail,
}

/// What [`assert_files_lack`] scanned.
#[derive(Clone, Copy, Debug)]
pub struct Scanned {
    /// Files listed (including any skipped as [`Vanished::Skip`]).
    pub files: usize,
    /// Bytes read.
    pub bytes: u64,
}

/// Reads every file under `dir` and panics with `found(file)` at the first that contains
/// `needle`; any read error other than a [`Vanished::Skip`]ped file panics too.
pub fn assert_files_lack(dir: &Path, needle: &[u8], vanished: Vanished, found: impl Fn(&Path) -> String) -> Scanned {
    let files = files_under(dir);
    let mut bytes = 0;
    for file in &files {
        let content = match fs::read(file) {
            Ok(content) => content,
            Err(e) if vanished == Vanished::Skip && e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => panic!("read {}: {e}", file.display()),
        };
        bytes += content.len() as u64;
        assert!(find(&content, needle).is_none(), "{}", found(file));
    }
    Scanned {
        files: files.len(),
        bytes,
    }
}

// === files ===

/// The last `max` bytes of a file (a process's log), lossily as text; "" when it is unreadable.
pub fn tail(path: &Path, max: usize) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut f) = fs::File::open(path) {
        let _ = f.read_to_end(&mut bytes);
    }
    let start = bytes.len().saturating_sub(max);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// A TOML basic string holding `path`.
pub fn toml_str(path: &Path) -> String {
    let s = path.to_str().expect("utf-8 tempdir path");
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}
