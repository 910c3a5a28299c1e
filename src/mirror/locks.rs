//! Per-object locks of one instance: client writes of an object share its lock, a repair of it
//! holds it alone. So a repair's check-copy-verify never interleaves with a client's write or
//! delete of the same object through this instance (an acknowledged delete cannot be undone by
//! a copy that was already in flight), and the records of one object are repaired one at a
//! time. Across instances, repairs re-check the source after copying (`repair.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

/// An object: bucket and key.
type Object = (String, String);

/// The locks, created on demand and forgotten once nobody holds them.
#[derive(Default)]
pub(super) struct KeyLocks {
    map: Mutex<HashMap<Object, Weak<RwLock<()>>>>,
}

impl KeyLocks {
    fn lock_of(&self, bucket: &str, key: &str) -> Arc<RwLock<()>> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let id = (bucket.to_string(), key.to_string());
        if let Some(lock) = map.get(&id).and_then(Weak::upgrade) {
            return lock;
        }
        // Forget the locks nobody holds any more before the map grows.
        if map.len() >= 1024 && map.len().is_power_of_two() {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let lock = Arc::new(RwLock::new(()));
        map.insert(id, Arc::downgrade(&lock));
        lock
    }

    /// Shared: a client's write of `bucket`/`key`.
    pub(super) async fn write(&self, bucket: &str, key: &str) -> OwnedRwLockReadGuard<()> {
        self.lock_of(bucket, key).read_owned().await
    }

    /// Exclusive: a repair of `bucket`/`key`.
    pub(super) async fn repair(&self, bucket: &str, key: &str) -> OwnedRwLockWriteGuard<()> {
        self.lock_of(bucket, key).write_owned().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_repair_waits_for_writes_and_writes_wait_for_a_repair() {
        let locks = KeyLocks::default();
        let w1 = locks.write("b", "k").await;
        let _w2 = locks.write("b", "k").await;
        let _other = locks.repair("b", "other").await;
        let repair = locks.repair("b", "k");
        tokio::pin!(repair);
        assert!(futures::poll!(&mut repair).is_pending());
        drop((w1, _w2));
        let r = repair.await;
        let waiting = locks.write("b", "k");
        tokio::pin!(waiting);
        assert!(futures::poll!(&mut waiting).is_pending());
        drop(r);
        let _ = waiting.await;
    }
}
