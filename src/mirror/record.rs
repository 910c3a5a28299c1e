//! Repair records: one small JSON object per write that one store took and the other missed,
//! kept in the store that has the change, under the reserved prefix
//! (`.escrow-mpu/r/<key hash>/<record id>`), so it outlives the proxy process and its disk. Any
//! instance lists them ([`scan`]) and drains them (`repair.rs`); a record is deleted only after
//! its repair is verified. Records are never overwritten: each missed write has its own id, so
//! draining an old record never removes a newer one.
//!
//! A record may live in the foreign store, which must not be able to make the proxy delete or
//! overwrite domestic data: each record carries a MAC under a key derived from the keyring
//! ([`Sealer`]), and a record that fails it is ignored. A genuine record can at most be
//! replayed, and repairs only ever move the newest sealed version (`repair.rs`).

use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::Sealer;
use crate::backend::{BackendError, BackendResult, ListQuery, Metadata, ObjectStore, read_small};
use crate::crypto::layout::{MAX_REPAIR_RECORD_LEN, REPAIR_RECORDS, repair_records_of};

/// Records read at once by a scan.
const RECORDS_READ_AT_ONCE: usize = 16;

/// Version of the record document.
const RECORD_VERSION: u32 = 1;

/// What the other store missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Op {
    /// The object was written (PUT, completion, copy, an upload's part or marker).
    Put,
    /// The object was deleted: a tombstone. The other store's copy is deleted only if it is
    /// older than `at_ms`.
    Delete,
    /// The bucket was created.
    CreateBucket,
}

/// Which store a record's change is missing from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The primary store.
    Primary,
    /// The mirror store.
    Mirror,
}

impl Side {
    /// The other store.
    pub fn other(self) -> Self {
        match self {
            Self::Primary => Self::Mirror,
            Self::Mirror => Self::Primary,
        }
    }

    /// The configured name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Mirror => "mirror",
        }
    }
}

/// One missed write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairRecord {
    /// Document version.
    pub v: u32,
    /// What happened.
    pub op: Op,
    /// The bucket.
    pub bucket: String,
    /// The object key (empty for bucket operations).
    pub key: String,
    /// The store that missed it; the record itself lives in the other one.
    pub missing_from: Side,
    /// When the proxy acknowledged (or attempted) the write, milliseconds since the epoch.
    pub at_ms: u64,
}

/// The stored form: the record's JSON, the key version of its MAC, the MAC (hex).
#[derive(Serialize, Deserialize)]
struct Stored {
    record: String,
    kv: u32,
    mac: String,
}

/// A record as found in a store: where it lives and what it says.
#[derive(Debug, Clone)]
pub struct Found {
    /// The record's own key in the store.
    pub record_key: String,
    /// Its content.
    pub record: RepairRecord,
}

impl RepairRecord {
    /// A record of `op` on `bucket`/`key`, missed by `missing_from`, now.
    pub fn new(op: Op, bucket: &str, key: &str, missing_from: Side) -> Self {
        Self {
            v: RECORD_VERSION,
            op,
            bucket: bucket.to_string(),
            key: key.to_string(),
            missing_from,
            at_ms: now_ms(),
        }
    }

    /// Where this record is stored: under its object's prefix, with a fresh unique id
    /// (time first, so records of one object list in the order they were written).
    fn fresh_key(&self) -> String {
        let mut id = [0u8; 8];
        rand::fill(&mut id);
        format!(
            "{}{:016x}-{}",
            repair_records_of(&self.key),
            self.at_ms,
            hex::encode(id)
        )
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Stores `record` durably in `store` (the one that has the change), MACed by `sealer`; returns
/// its key.
pub async fn write(store: &dyn ObjectStore, sealer: &dyn Sealer, record: &RepairRecord) -> BackendResult<String> {
    let json = |e: serde_json::Error| BackendError::Io(std::io::Error::other(e));
    let text = serde_json::to_string(record).map_err(json)?;
    let (kv, mac) = sealer.mac(text.as_bytes());
    let body = serde_json::to_vec(&Stored {
        record: text,
        kv,
        mac: hex::encode(mac),
    })
    .map_err(json)?;
    let key = record.fresh_key();
    let len = body.len() as u64;
    let stream: crate::backend::ByteStream = Box::pin(futures::stream::once(async move { Ok(Bytes::from(body)) }));
    store
        .put_object(&record.bucket, &key, stream, len, Metadata::new())
        .await?;
    Ok(key)
}

/// Every record in `bucket` of `store` (all pages). Records that do not parse are skipped with
/// a warning (a store's junk never stops draining).
pub async fn scan(store: &dyn ObjectStore, sealer: &dyn Sealer, bucket: &str) -> BackendResult<Vec<Found>> {
    scan_under(store, sealer, bucket, REPAIR_RECORDS).await
}

/// Every record of `bucket`/`key` in `store` (the tombstones `reconcile` consults).
pub async fn for_key(
    store: &dyn ObjectStore,
    sealer: &dyn Sealer,
    bucket: &str,
    key: &str,
) -> BackendResult<Vec<Found>> {
    scan_under(store, sealer, bucket, &repair_records_of(key)).await
}

async fn scan_under(
    store: &dyn ObjectStore,
    sealer: &dyn Sealer,
    bucket: &str,
    prefix: &str,
) -> BackendResult<Vec<Found>> {
    let mut found = Vec::new();
    let mut query = ListQuery {
        prefix: Some(prefix.to_string()),
        max_keys: 1000,
        ..ListQuery::default()
    };
    loop {
        let page = store.list_objects(bucket, &query).await?;
        // A few records read at once: a store holding thousands after a long outage is scanned
        // in a fraction of the time one-by-one reading would take.
        let reads: Vec<_> = page
            .objects
            .iter()
            .map(|entry| async move { (entry, read(store, sealer, bucket, &entry.key).await) })
            .collect();
        let mut reads = futures::stream::iter(reads).buffered(RECORDS_READ_AT_ONCE);
        while let Some((entry, result)) = reads.next().await {
            match result {
                Ok(Some(record)) => found.push(Found {
                    record_key: entry.key.clone(),
                    record,
                }),
                Ok(None) => {}
                Err(e) if !e.is_outage() => {
                    tracing::warn!(store = store.name(), bucket, error = %e, "unreadable repair record skipped");
                }
                Err(e) => return Err(e),
            }
        }
        match page.next_continuation_token {
            Some(token) if page.is_truncated => query.continuation_token = Some(token),
            _ => return Ok(found),
        }
    }
}

/// Whether `store` holds a record for `bucket`/`key` (one small listing).
pub async fn exists_for(store: &dyn ObjectStore, bucket: &str, key: &str) -> BackendResult<bool> {
    let query = ListQuery {
        prefix: Some(repair_records_of(key)),
        max_keys: 1,
        ..ListQuery::default()
    };
    Ok(!store.list_objects(bucket, &query).await?.objects.is_empty())
}

/// Reads one record; `None` if it vanished (drained by another instance), is not a record, or
/// fails its MAC (logged: a store that forges records is worth knowing about).
async fn read(
    store: &dyn ObjectStore,
    sealer: &dyn Sealer,
    bucket: &str,
    key: &str,
) -> BackendResult<Option<RepairRecord>> {
    let got = match store.get_object(bucket, key, None, None).await {
        Ok(got) => got,
        Err(BackendError::NoSuchKey) => return Ok(None),
        Err(e) => return Err(e),
    };
    let body = read_small(got.body, MAX_REPAIR_RECORD_LEN).await?;
    let Ok(stored) = serde_json::from_slice::<Stored>(&body) else {
        return Ok(None);
    };
    let authentic = hex::decode(&stored.mac).is_ok_and(|mac| sealer.verify(stored.kv, stored.record.as_bytes(), &mac));
    if !authentic {
        tracing::warn!(store = store.name(), bucket, "repair record fails its MAC; ignored");
        return Ok(None);
    }
    let record: Option<RepairRecord> = serde_json::from_str(&stored.record).ok();
    Ok(record
        .filter(|r| r.v == RECORD_VERSION && r.bucket == bucket && repair_records_of(&r.key) == record_prefix(key)))
}

/// The object-prefix part of a record key (`.escrow-mpu/r/<hash>/`).
fn record_prefix(record_key: &str) -> String {
    match record_key.rfind('/') {
        Some(i) => record_key[..=i].to_string(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::mirror::tests::TestSealer;

    #[tokio::test]
    async fn records_round_trip_and_never_overwrite() {
        let sealer = TestSealer;
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::backend::fs::FsStore::new("t", dir.path()).expect("fs store");
        store.create_bucket("bkt").await.expect("bucket");
        let first = RepairRecord::new(Op::Put, "bkt", "dir/key one", Side::Mirror);
        let second = RepairRecord::new(Op::Delete, "bkt", "dir/key one", Side::Mirror);
        let k1 = write(&store, &sealer, &first).await.expect("write");
        let k2 = write(&store, &sealer, &second).await.expect("write");
        assert_ne!(k1, k2);
        assert!(exists_for(&store, "bkt", "dir/key one").await.expect("list"));
        assert!(!exists_for(&store, "bkt", "other").await.expect("list"));
        let found = scan(&store, &sealer, "bkt").await.expect("scan");
        let records: Vec<_> = found.iter().map(|f| f.record.clone()).collect();
        assert_eq!(records.len(), 2);
        assert!(records.contains(&first) && records.contains(&second));
    }

    async fn put_raw(store: &dyn ObjectStore, key: &str, body: Vec<u8>) {
        let len = body.len() as u64;
        let stream: crate::backend::ByteStream = Box::pin(futures::stream::once(async move { Ok(Bytes::from(body)) }));
        store
            .put_object("bkt", key, stream, len, Metadata::new())
            .await
            .expect("put");
    }

    #[tokio::test]
    async fn forged_moved_or_tampered_records_are_not_believed() {
        let sealer = TestSealer;
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::backend::fs::FsStore::new("t", dir.path()).expect("fs store");
        store.create_bucket("bkt").await.expect("bucket");
        // A genuine record, copied under another object's prefix.
        let key = write(
            &store,
            &sealer,
            &RepairRecord::new(Op::Delete, "bkt", "victim", Side::Primary),
        )
        .await
        .expect("write");
        let genuine = {
            let got = store.get_object("bkt", &key, None, None).await.expect("get");
            read_small(got.body, MAX_REPAIR_RECORD_LEN).await.expect("read")
        };
        store.delete_object("bkt", &key).await.expect("delete");
        put_raw(
            &store,
            &format!("{}0-0", repair_records_of("innocent")),
            genuine.clone(),
        )
        .await;
        // The record's text changed, MAC kept.
        let mut stored: Stored = serde_json::from_slice(&genuine).expect("json");
        stored.record = stored.record.replace("victim", "other");
        put_raw(
            &store,
            &format!("{}0-1", repair_records_of("other")),
            serde_json::to_vec(&stored).expect("json"),
        )
        .await;
        // A record without a valid MAC (what a store could write on its own).
        let forged = RepairRecord::new(Op::Delete, "bkt", "forged", Side::Mirror);
        let unsigned = Stored {
            record: serde_json::to_string(&forged).expect("json"),
            kv: 1,
            mac: hex::encode([0u8; 32]),
        };
        put_raw(
            &store,
            &format!("{}0-2", repair_records_of("forged")),
            serde_json::to_vec(&unsigned).expect("json"),
        )
        .await;
        assert!(scan(&store, &sealer, "bkt").await.expect("scan").is_empty());
        // The twin: the same genuine record in its own place is believed.
        put_raw(&store, &format!("{}0-3", repair_records_of("victim")), genuine).await;
        assert_eq!(scan(&store, &sealer, "bkt").await.expect("scan").len(), 1);
    }
}
