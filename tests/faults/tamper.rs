//! Objects changed behind the proxy's back in one store: keys of their own (no workload client
//! touches them), written twice through the proxy; then, directly in the store directories, the
//! first version's files put back over the second (a rollback) in one store, and objects
//! deleted in one store. `escrow-proxy mirror reconcile` must restore agreement on the newest
//! version, in both directions, and copy deleted objects back (no tombstone proves a delete).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use aws_sdk_s3::primitives::ByteStream;

use crate::procs::PROXY_BIN;
use crate::verify::sidecar;
use crate::workload::{BUCKET, KeyState, Value, body};

/// Tampered keys.
const KEYS: usize = 12;

/// The tampered keys and what they must hold.
pub struct Tamper {
    /// Key -> its second (newest) version.
    newest: BTreeMap<String, Value>,
    /// Key -> the first version's files (object, sidecar), for the rollbacks.
    first: BTreeMap<String, (Vec<u8>, Vec<u8>)>,
}

fn key(i: usize) -> String {
    format!("static/s{i}")
}

fn object(root: &Path, key: &str) -> PathBuf {
    root.join(BUCKET).join(key)
}

/// Writes every key twice through `c`, keeping the first version's files of the primary.
pub async fn prepare(c: &aws_sdk_s3::Client, primary: &Path, _mirror: &Path) -> Tamper {
    let mut t = Tamper {
        newest: BTreeMap::new(),
        first: BTreeMap::new(),
    };
    for i in 0..KEYS {
        let k = key(i);
        for (n, seed) in [(0u64, 0x7a00 + i as u64), (1, 0x7b00 + i as u64)] {
            let len = 1000 + i * 3000 + n as usize * 500;
            c.put_object()
                .bucket(BUCKET)
                .key(&k)
                .body(ByteStream::from(body(seed, len)))
                .send()
                .await
                .unwrap_or_else(|e| panic!("put {k}: {e:?}"));
            if n == 0 {
                let files = (
                    fs::read(object(primary, &k)).expect("first version's object"),
                    fs::read(sidecar(primary, &k)).expect("first version's sidecar"),
                );
                t.first.insert(k.clone(), files);
            } else {
                t.newest.insert(k.clone(), Value::Data { seed, len });
            }
        }
    }
    t
}

impl Tamper {
    /// s0–s2: the primary rolled back to the first version; s3–s5: the mirror rolled back;
    /// s6–s8: deleted in the primary; s9–s11: deleted in the mirror.
    pub fn tamper(&self, primary: &Path, mirror: &Path) {
        for i in 0..KEYS {
            let k = key(i);
            let root = if i < 3 || (6..9).contains(&i) { primary } else { mirror };
            if i < 6 {
                let (obj, side) = &self.first[&k];
                fs::write(object(root, &k), obj).expect("roll back the object");
                fs::write(sidecar(root, &k), side).expect("roll back the sidecar");
            } else {
                fs::remove_file(object(root, &k)).expect("delete the object");
                fs::remove_file(sidecar(root, &k)).expect("delete the sidecar");
            }
        }
    }

    /// The tampered keys whose stored files differ between the stores.
    pub fn differing(&self, primary: &Path, mirror: &Path) -> Vec<String> {
        self.newest
            .keys()
            .filter(|k| fs::read(object(primary, k)).ok() != fs::read(object(mirror, k)).ok())
            .cloned()
            .collect()
    }

    /// What each tampered key must hold, as the ledger says it.
    pub fn expected(&self) -> BTreeMap<String, KeyState> {
        self.newest
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    KeyState {
                        acked: *v,
                        ever_acked: true,
                        unacked: Vec::new(),
                    },
                )
            })
            .collect()
    }
}

/// Runs `escrow-proxy mirror reconcile --config <config> --bucket faults`.
pub fn reconcile(config: &Path) -> Result<(), String> {
    let out = Command::new(PROXY_BIN)
        .args(["mirror", "reconcile", "--config"])
        .arg(config)
        .args(["--bucket", BUCKET])
        .env("NO_COLOR", "1")
        .output()
        .map_err(|e| format!("run mirror reconcile: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "mirror reconcile exited {}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
