//! Listings in plaintext terms. A store lists ciphertext sizes and its own ETags; plaintext sizes
//! follow from the ETag cache or the object's trailer, which this process reads (a few at a time)
//! for objects it has not seen. The proxy's own state under the reserved prefix is never listed.

use std::time::SystemTime;

use futures::StreamExt;

use super::etags::Known;
use super::{ObjectError, Objects};
use crate::backend::{ListEntry, ListQuery};
use crate::crypto::format::DEFAULT_SEGMENT_LOG2;
use crate::crypto::layout::is_reserved;
use crate::crypto::segment::Layout;

/// Trailer reads in flight at once while resolving a listing's ETags.
const LIST_RESOLVE_CONCURRENCY: usize = 16;

/// One listed object.
#[derive(Debug, Clone)]
pub struct Listed {
    /// Object key.
    pub key: String,
    /// Plaintext size.
    pub size: u64,
    /// The client ETag (no quotes); `None` when the object could not be opened.
    pub etag: Option<String>,
    /// When the object was written (as HEAD and GET show it).
    pub last_modified: Option<SystemTime>,
}

/// One listing page in plaintext terms.
#[derive(Debug, Default)]
pub struct Page {
    /// Objects, in key order.
    pub objects: Vec<Listed>,
    /// Common prefixes, in order.
    pub common_prefixes: Vec<String>,
    /// Whether another page follows.
    pub is_truncated: bool,
    /// The store's token for the next page.
    pub next_token: Option<String>,
    /// The last key or common prefix of the store's page (before hiding reserved keys): where
    /// a ListObjects (v1) continues.
    pub resume_marker: Option<String>,
}

impl Objects {
    /// One page of `bucket` from the store, in plaintext terms (`query.max_keys` of 0 only
    /// checks that the bucket exists).
    pub async fn list(&self, bucket: &str, mut query: ListQuery) -> Result<Page, ObjectError> {
        if query.max_keys == 0 {
            self.store.head_bucket(bucket).await?;
            return Ok(Page::default());
        }
        query = query.skipping_rolled_up();
        let mut page = self.store.list_objects(bucket, &query).await?;
        let resume_marker = page
            .objects
            .last()
            .map(|o| o.key.clone())
            .max(page.common_prefixes.last().cloned());
        // The proxy's own multipart state is not the client's to see; and a store that lists
        // keys outside what was asked (a broken or hostile one) is not believed.
        let prefix = query.prefix.as_deref().unwrap_or("");
        let after = query.start_after.as_deref();
        let asked = |k: &str| k.starts_with(prefix) && after.is_none_or(|a| k > a);
        let listed = page.objects.len() + page.common_prefixes.len();
        page.objects.retain(|o| !is_reserved(&o.key) && asked(&o.key));
        page.common_prefixes.retain(|p| !is_reserved(p) && asked(p));
        let foreign = listed - page.objects.len() - page.common_prefixes.len();
        if foreign > 0 {
            tracing::debug!(
                bucket,
                foreign,
                "listing: skipped reserved keys or keys outside the request"
            );
        }
        let objects: Vec<Listed> = futures::stream::iter(page.objects)
            .map(|entry| self.plaintext_entry(bucket, entry))
            .buffered(LIST_RESOLVE_CONCURRENCY)
            .collect()
            .await;
        Ok(Page {
            objects,
            common_prefixes: page.common_prefixes,
            is_truncated: page.is_truncated,
            next_token: page.next_continuation_token,
            resume_marker,
        })
    }

    /// A listed object with its plaintext size and ETag.
    async fn plaintext_entry(&self, bucket: &str, entry: ListEntry) -> Listed {
        let known = match self.etags.get(bucket, &entry.key, &entry.etag) {
            Some(known) => Some(known),
            None => match self.open(bucket, &entry.key).await {
                Ok(opened) => Some(Known {
                    etag: opened.etag(),
                    size: opened.size(),
                    modified: opened.record.written(),
                }),
                Err(e) => {
                    tracing::warn!(bucket, error = %e, "listed object could not be opened");
                    None
                }
            },
        };
        // An object that cannot be opened is listed with the size its stored length implies
        // (or the stored length) and no ETag: a GET of it fails with a clear error.
        let (size, etag, modified) = match known {
            Some(k) => (k.size, Some(k.etag), k.modified),
            None => (
                Layout::new(DEFAULT_SEGMENT_LOG2)
                    .plain_len(entry.size)
                    .unwrap_or(entry.size),
                None,
                None,
            ),
        };
        Listed {
            key: entry.key,
            size,
            etag,
            // The sealed write time, as HEAD and GET show it; the store's for older objects.
            last_modified: modified.or(entry.last_modified),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use async_trait::async_trait;
    use bytes::Bytes;

    use super::*;
    use crate::backend::fs::FsStore;
    use crate::backend::{
        BackendResult, BucketInfo, ByteRange, ByteStream, GetObject, ListPage, Metadata, ObjectHead, ObjectStore,
        Source,
    };
    use crate::crypto::keyring::Keyring;
    use crate::object::{Expectations, ObjectRecord};

    /// A real store that lies in its listings: every page also names keys outside the request.
    struct Liar(FsStore);

    #[async_trait]
    impl ObjectStore for Liar {
        fn name(&self) -> &str {
            "liar"
        }
        async fn list_buckets(&self) -> BackendResult<Vec<BucketInfo>> {
            self.0.list_buckets().await
        }
        async fn create_bucket(&self, bucket: &str) -> BackendResult<()> {
            self.0.create_bucket(bucket).await
        }
        async fn head_bucket(&self, bucket: &str) -> BackendResult<()> {
            self.0.head_bucket(bucket).await
        }
        async fn delete_bucket(&self, bucket: &str) -> BackendResult<()> {
            self.0.delete_bucket(bucket).await
        }
        async fn put_object(&self, b: &str, k: &str, body: ByteStream, len: u64, m: Metadata) -> BackendResult<String> {
            self.0.put_object(b, k, body, len, m).await
        }
        async fn get_object(
            &self,
            b: &str,
            k: &str,
            r: Option<ByteRange>,
            if_match: Option<&str>,
        ) -> BackendResult<GetObject> {
            self.0.get_object(b, k, r, if_match).await
        }
        async fn head_object(&self, b: &str, k: &str) -> BackendResult<ObjectHead> {
            self.0.head_object(b, k).await
        }
        async fn delete_object(&self, b: &str, k: &str) -> BackendResult<()> {
            self.0.delete_object(b, k).await
        }
        async fn list_objects(&self, b: &str, q: &ListQuery) -> BackendResult<ListPage> {
            let mut page = self.0.list_objects(b, q).await?;
            let template = page.objects.first().cloned();
            for key in ["outside/é", "a", "\u{10FFFF}", ".escrow-mpu/u/x"] {
                if let Some(mut entry) = template.clone() {
                    entry.key = key.to_string();
                    page.objects.push(entry);
                }
            }
            page.common_prefixes.push("elsewhere/".into());
            Ok(page)
        }
        async fn compose(&self, b: &str, k: &str, s: Vec<Source>, t: Bytes, m: Metadata) -> BackendResult<String> {
            self.0.compose(b, k, s, t, m).await
        }
    }

    #[tokio::test]
    async fn a_store_listing_keys_outside_the_request_is_not_believed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Liar(FsStore::new("liar", dir.path()).expect("store"));
        let objects = Objects::new(
            Arc::new(store),
            crate::keys::SharedKeyring::fixed(Keyring::generate("2026-11-29T00:00:00Z")),
        );
        objects.create_bucket("bkt").await.expect("bucket");
        for key in ["p/é1", "p/é2"] {
            let body = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"data"))]);
            objects
                .put(
                    "bkt",
                    key,
                    ObjectRecord::default(),
                    body,
                    4,
                    Expectations::default(),
                    None,
                )
                .await
                .expect("put");
        }
        let query = ListQuery {
            prefix: Some("p/".into()),
            start_after: Some("p/é1".into()),
            max_keys: 10,
            ..Default::default()
        };
        let page = objects.list("bkt", query).await.expect("list");
        let keys: Vec<&str> = page.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["p/é2"], "only keys under the prefix and after the marker");
        assert!(page.common_prefixes.is_empty(), "{:?}", page.common_prefixes);
        assert_eq!(page.objects[0].size, 4);
    }
}
