//! A bounded cache of what listings show of stored objects (client ETag, plaintext size, sealed
//! write time), keyed by the store's own ETag.
//!
//! The plaintext MD5 lives in the (encrypted) trailer, which a store's listing cannot show. A
//! listing therefore reads the trailer of each object it has not seen; this cache remembers
//! what this process wrote or read, so listings of objects it knows cost no extra request. The
//! store ETag changes with every write, so a hit is never stale.

use std::collections::HashMap;
use std::sync::Mutex;

/// Entries kept at most; the cache starts over when full.
const MAX_ENTRIES: usize = 100_000;

/// What a listing needs of an object.
#[derive(Debug, Clone)]
pub struct Known {
    /// Plaintext MD5, hex (the client ETag without quotes).
    pub etag: String,
    /// Plaintext size.
    pub size: u64,
    /// The sealed write time (the object's `Last-Modified`), when the record has one.
    pub modified: Option<std::time::SystemTime>,
}

/// `(bucket, key, store ETag) → Known`.
#[derive(Default)]
pub struct EtagCache(Mutex<HashMap<(String, String, String), Known>>);

impl EtagCache {
    /// Remembers an object.
    pub fn insert(&self, bucket: &str, key: &str, store_etag: &str, known: Known) {
        // A store that gives no ETag cannot key the cache safely.
        if store_etag.is_empty() {
            return;
        }
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert((bucket.to_string(), key.to_string(), store_etag.to_string()), known);
    }

    /// Looks an object up.
    pub fn get(&self, bucket: &str, key: &str, store_etag: &str) -> Option<Known> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&(bucket.to_string(), key.to_string(), store_etag.to_string()))
            .cloned()
    }
}
