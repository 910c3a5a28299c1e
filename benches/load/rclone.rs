//! The rclone comparison: the same client (rclone) moving the same files either through
//! escrow-proxy (rclone encrypts nothing) or straight to the store with rclone's own `crypt`
//! remote (rclone encrypts), plus plain rclone straight to the store as the no-encryption
//! baseline. `benches/e2e.sh` writes the rclone configuration with three remotes:
//! `plain:` (s3, the store), `crypt:` (crypt over `plain:b-rclone-crypt`) and `escrow:` (s3,
//! the proxy).
//!
//! Both paths skip rclone's client-side MD5 (`--s3-disable-checksum`, `--ignore-checksum`):
//! rclone computes it only for unencrypted remotes, so leaving it on would charge the proxy path
//! with client work the crypt path never does.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use bytes::Bytes;

use crate::procfs;

/// One way rclone reaches the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Setup {
    /// rclone → s3s-fs, no encryption (plain HTTP).
    Plain,
    /// rclone crypt → s3s-fs (plain HTTP): rclone encrypts.
    Crypt,
    /// rclone → escrow-proxy (TLS) → s3s-fs: the proxy encrypts.
    Escrow,
}

impl Setup {
    pub const ALL: [Setup; 3] = [Setup::Plain, Setup::Crypt, Setup::Escrow];

    pub fn label(self) -> &'static str {
        match self {
            Setup::Plain => "rclone → s3s-fs (no encryption, HTTP)",
            Setup::Crypt => "rclone crypt → s3s-fs (HTTP)",
            Setup::Escrow => "rclone → escrow-proxy (TLS) → s3s-fs",
        }
    }

    /// Buckets the remotes need, on the direct endpoint or the proxy.
    pub fn bucket(self) -> &'static str {
        match self {
            Setup::Plain => "b-rclone-plain",
            Setup::Crypt => "b-rclone-crypt",
            Setup::Escrow => "b-rclone-escrow",
        }
    }

    /// Whole buckets, not prefixes: for `remote:bucket/prefix` rclone first HEADs `prefix` as a
    /// possible file, which s3s-fs answers with a 500 (the key is a directory on its disk) that
    /// rclone retries with back-off for over a minute.
    fn remote(self) -> String {
        match self {
            Setup::Plain | Setup::Escrow => format!("{}:{}", self.remote_name(), self.bucket()),
            Setup::Crypt => "crypt:".to_string(),
        }
    }

    fn remote_name(self) -> &'static str {
        match self {
            Setup::Plain => "plain",
            Setup::Crypt => "crypt",
            Setup::Escrow => "escrow",
        }
    }
}

/// One rclone transfer, measured.
#[derive(Debug)]
pub struct Transfer {
    pub secs: f64,
    pub bytes: u64,
    /// CPU seconds of the proxy process during the transfer (escrow only).
    pub hop_cpu: Option<f64>,
    /// CPU seconds of rclone itself.
    pub client_cpu: f64,
}

/// The files rclone moves, and where it works.
pub struct Rclone {
    config: PathBuf,
    ca: PathBuf,
    src: PathBuf,
    dst: PathBuf,
    files: Vec<Bytes>,
}

impl Rclone {
    /// Writes `count` files of `len` bytes (slices of `data`) under `work`.
    pub fn new(config: PathBuf, ca: PathBuf, work: &Path, data: &Bytes, count: usize, len: usize) -> Result<Self> {
        let (src, dst) = (work.join("rclone-src"), work.join("rclone-dst"));
        std::fs::create_dir_all(&src)?;
        let files: Vec<Bytes> = (0..count).map(|i| data.slice(i * len..(i + 1) * len)).collect();
        for (i, f) in files.iter().enumerate() {
            std::fs::write(src.join(format!("obj-{i}")), f)?;
        }
        Ok(Self {
            config,
            ca,
            src,
            dst,
            files,
        })
    }

    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.len() as u64).sum()
    }

    /// Uploads every file through `setup`, then downloads them back and checks them.
    pub fn round_trip(&self, setup: Setup, hop_pid: Option<u32>, clk_tck: f64) -> Result<(Transfer, Transfer)> {
        let remote = setup.remote();
        let src = self.src.display().to_string();
        let up = self.timed(&src, &remote, hop_pid, clk_tck)?;
        if self.dst.exists() {
            std::fs::remove_dir_all(&self.dst)?;
        }
        let dst = self.dst.display().to_string();
        let down = self.timed(&remote, &dst, hop_pid, clk_tck)?;
        for (i, f) in self.files.iter().enumerate() {
            let got = std::fs::read(self.dst.join(format!("obj-{i}")))?;
            ensure!(got[..] == f[..], "rclone via {setup:?}: obj-{i} came back different");
        }
        std::fs::remove_dir_all(&self.dst)?;
        Ok((up, down))
    }

    fn timed(&self, from: &str, to: &str, hop_pid: Option<u32>, clk_tck: f64) -> Result<Transfer> {
        let hop0 = hop_pid.map(procfs::cpu_ticks).transpose()?;
        let (_, child0) = procfs::self_and_children_ticks()?;
        let start = Instant::now();
        let status = Command::new("rclone")
            .env_remove("AWS_CA_BUNDLE") // rclone 1.60 cannot use it with its own transport
            .arg("copy")
            .args([from, to])
            .arg("--config")
            .arg(&self.config)
            .arg("--ca-cert")
            .arg(&self.ca)
            .args(["--transfers", "8", "--checkers", "8", "--ignore-times"])
            .args(["--s3-upload-cutoff", "5G", "--s3-disable-checksum", "--ignore-checksum"])
            .args(["--s3-no-check-bucket", "-q"])
            .status()
            .context("cannot run rclone")?;
        let secs = start.elapsed().as_secs_f64();
        ensure!(status.success(), "rclone copy {from} {to} failed: {status}");
        let (_, child1) = procfs::self_and_children_ticks()?;
        let hop_cpu = match (hop_pid, hop0) {
            (Some(pid), Some(t0)) => Some((procfs::cpu_ticks(pid)? - t0) as f64 / clk_tck),
            _ => None,
        };
        Ok(Transfer {
            secs,
            bytes: self.total_bytes(),
            hop_cpu,
            client_cpu: (child1 - child0) as f64 / clk_tck,
        })
    }
}
