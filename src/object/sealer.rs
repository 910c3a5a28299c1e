//! The mirror's [`Sealer`](crate::mirror::Sealer) over the keyring: repair records are MACed
//! with HMAC-SHA256 under a key derived from the active KEK, and a stored object's write time is
//! the one sealed into its record (read by opening the object in one store).

use std::sync::Arc;

use futures::future::BoxFuture;

use super::ObjectError;
use super::open::{InStore, open};
use crate::backend::{BackendError, BackendResult, ObjectStore};
use crate::crypto::envelope::repair_mac_key;
use crate::crypto::layout::is_reserved;
use crate::keys::SharedKeyring;

/// Repair-record MACs and sealed write times from `keyring` (the current one at each call).
pub struct KeyringSealer {
    keyring: Arc<SharedKeyring>,
}

impl KeyringSealer {
    /// A sealer over `keyring`.
    pub fn new(keyring: Arc<SharedKeyring>) -> Self {
        Self { keyring }
    }
}

fn hmac_key(kek: &crate::secret::Key256) -> ring::hmac::Key {
    ring::hmac::Key::new(ring::hmac::HMAC_SHA256, repair_mac_key(kek).expose())
}

impl crate::mirror::Sealer for KeyringSealer {
    fn mac(&self, message: &[u8]) -> (u32, [u8; 32]) {
        let ring = self.keyring.load();
        let (version, kek) = ring.active();
        let mut tag = [0u8; 32];
        tag.copy_from_slice(ring::hmac::sign(&hmac_key(kek), message).as_ref());
        (version, tag)
    }

    fn verify(&self, version: u32, message: &[u8], tag: &[u8]) -> bool {
        match self.keyring.load().kek(version) {
            Ok(kek) => ring::hmac::verify(&hmac_key(kek), message, tag).is_ok(),
            Err(_) => false,
        }
    }

    fn written_ms<'a>(
        &'a self,
        store: &'a Arc<dyn ObjectStore>,
        bucket: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, BackendResult<Option<u64>>> {
        Box::pin(async move {
            if is_reserved(key) {
                // Upload state carries no record of its own.
                return match store.head_object(bucket, key).await {
                    Ok(_) => Ok(Some(0)),
                    Err(BackendError::NoSuchKey) => Ok(None),
                    Err(e) => Err(e),
                };
            }
            let at = InStore {
                store: store.as_ref(),
                bucket,
                key,
            };
            match open(&at, &self.keyring.load(), bucket, key).await {
                Ok(opened) => Ok(Some(opened.record.written_ms.unwrap_or(0))),
                Err(ObjectError::Store(BackendError::NoSuchKey)) => Ok(None),
                Err(ObjectError::Store(e)) => Err(e),
                // Exists but cannot be read (damaged, foreign, or an older format): it has no
                // write time this proxy believes, so any sealed version is newer.
                Err(_) => Ok(Some(0)),
            }
        })
    }
}
