//! How a store really writes keys in listings. A client may ask for `encoding-type=url` (the
//! proxy does, so that keys XML cannot carry survive), and the store says whether it encoded —
//! but some stores say so and do not (s3s-fs 0.14.1), and decoding raw keys then turns
//! `pct%41x` into `pctAx` or fails on `b%ar`. So the store is asked once per bucket: an empty
//! probe object whose name tells the encodings apart is written, listed and deleted, and the
//! answer decides how every later listing of that bucket is asked for and read.

use std::sync::PoisonError;

use aws_sdk_s3::types::EncodingType;
use bytes::Bytes;

use super::{Missing, S3Store};
use crate::backend::{BackendError, BackendResult, ByteStream, Metadata, ObjectStore};
use crate::crypto::layout::LIST_ENCODING_PROBE;

/// How to ask a store for listings, and read its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ListEncoding {
    /// Ask for `encoding-type=url`; keys come URL-encoded.
    Url,
    /// Ask for nothing; keys come as they are (the store does not encode, whatever it says).
    Raw,
}

impl S3Store {
    /// How listings of `bucket` are asked for: learned on the first listing, then remembered.
    pub(super) async fn list_encoding(&self, bucket: &str) -> BackendResult<ListEncoding> {
        let known = self
            .encodings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(bucket)
            .copied();
        if let Some(encoding) = known {
            return Ok(encoding);
        }
        let learned = self.probe_list_encoding(bucket).await?;
        self.encodings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(bucket.to_string(), learned);
        Ok(learned)
    }

    /// Writes, lists (asking for URL encoding) and deletes [`LIST_ENCODING_PROBE`], in a bucket
    /// that exists: a store may create what a write names (s3s-fs makes the directories of a
    /// key, so a probe would create a missing bucket and its listing answer 200).
    async fn probe_list_encoding(&self, bucket: &str) -> BackendResult<ListEncoding> {
        self.head_bucket(bucket).await?;
        let empty: ByteStream = Box::pin(futures::stream::empty::<std::io::Result<Bytes>>());
        match self
            .put_object(bucket, LIST_ENCODING_PROBE, empty, 0, Metadata::new())
            .await
        {
            Ok(_) => {}
            Err(BackendError::NoSuchBucket) => return Err(BackendError::NoSuchBucket),
            // A bucket we may not write: list without asking for an encoding, which every store
            // gets right for all but keys XML cannot carry.
            Err(e) => {
                tracing::warn!(store = %self.name, error = %e, "cannot probe how the store encodes listed keys; asking for none");
                return Ok(ListEncoding::Raw);
            }
        }
        let listed = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(LIST_ENCODING_PROBE)
            .encoding_type(EncodingType::Url)
            .max_keys(1)
            .send()
            .await;
        if let Err(e) = self.delete_object(bucket, LIST_ENCODING_PROBE).await {
            tracing::warn!(store = %self.name, error = %e, "could not delete the listing probe");
        }
        let out = listed.map_err(|e| self.error("ListObjectsV2", Missing::Bucket, e))?;
        let key = out.contents().first().and_then(|o| o.key());
        Ok(classify(key))
    }

    /// A key (or common prefix) as listed, in clear; `None` (skipped, with a warning) when a
    /// store that encodes sent something that does not decode: one odd key never fails a listing.
    pub(super) fn listed_key(&self, encoding: ListEncoding, listed: &str) -> Option<String> {
        match encoding {
            ListEncoding::Raw => Some(listed.to_owned()),
            ListEncoding::Url => {
                let key = url_decode(listed);
                if key.is_none() {
                    tracing::warn!(store = %self.name, "listing: skipped a key that does not URL-decode");
                }
                key
            }
        }
    }
}

/// What the probe's listed name says about the store.
fn classify(listed: Option<&str>) -> ListEncoding {
    match listed {
        Some(k) if k == LIST_ENCODING_PROBE => ListEncoding::Raw,
        Some(k) if url_decode(k).as_deref() == Some(LIST_ENCODING_PROBE) => ListEncoding::Url,
        // Not listed, or mangled: asking for no encoding is right for every key XML can carry.
        _ => ListEncoding::Raw,
    }
}

/// Decodes S3's `encoding-type=url` form: `%XX` escapes, and `+` for a space.
pub(super) fn url_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        out.push(match b {
            b'+' => b' ',
            b'%' => {
                let hi = char::from(bytes.next()?).to_digit(16)?;
                let lo = char::from(bytes.next()?).to_digit(16)?;
                u8::try_from(hi * 16 + lo).ok()?
            }
            other => other,
        });
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_tells_encoding_stores_from_raw_ones() {
        assert_eq!(classify(Some(LIST_ENCODING_PROBE)), ListEncoding::Raw);
        let encoded = ".escrow-mpu/probe/list-encoding+%2541%2Bx";
        assert_eq!(classify(Some(encoded)), ListEncoding::Url);
        let with_20 = ".escrow-mpu/probe/list-encoding%20%2541%2Bx";
        assert_eq!(classify(Some(with_20)), ListEncoding::Url);
        // A lenient decoder would read the raw name as "…%41+x" → "…A x": not the probe.
        assert_eq!(classify(None), ListEncoding::Raw);
        assert_eq!(classify(Some("something else")), ListEncoding::Raw);
    }
}
