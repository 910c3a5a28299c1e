//! Moving one stored object from one store to the other as it is: ciphertext and metadata,
//! streamed, never decrypted, then verified by the destination's own head.

use std::sync::Arc;

use crate::backend::{BackendError, BackendResult, Metadata, ObjectHead, ObjectStore};

/// The envelope's metadata names all start with this; they identify a sealed version.
const ENVELOPE_META_PREFIX: &str = "escrow-";

/// Copies `bucket`/`key` from `from` to `to` and checks that `to` then holds the same size and
/// envelope metadata. Returns the copied head.
pub(super) async fn copy_between(
    from: &Arc<dyn ObjectStore>,
    to: &Arc<dyn ObjectStore>,
    bucket: &str,
    key: &str,
) -> BackendResult<ObjectHead> {
    let got = from.get_object(bucket, key, None, None).await?;
    let (len, metadata) = (got.head.size, got.head.metadata.clone());
    to.put_object(bucket, key, got.body, len, metadata).await?;
    let copied = to.head_object(bucket, key).await?;
    if !same_version(&got.head, &copied) {
        return Err(BackendError::Upstream {
            store: to.name().to_string(),
            message: "a repaired object does not match its source after the copy".into(),
            retryable: true,
        });
    }
    Ok(copied)
}

/// Whether two heads describe the same sealed version: equal stored size and equal envelope
/// metadata (the wrapped data key alone is unique per write).
pub(super) fn same_version(a: &ObjectHead, b: &ObjectHead) -> bool {
    a.size == b.size && envelope(&a.metadata) == envelope(&b.metadata)
}

fn envelope(metadata: &Metadata) -> Vec<(&String, &String)> {
    metadata
        .iter()
        .filter(|(k, _)| k.starts_with(ENVELOPE_META_PREFIX))
        .collect()
}
