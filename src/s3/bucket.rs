//! Bucket operations and listings. Listings come from the store in one request per page;
//! plaintext sizes follow from stored sizes by the format's arithmetic, and ETags come from the
//! ETag cache or, for objects this process has not seen, from each object's trailer.

use futures::StreamExt;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::Proxy;
use super::error;
use super::etags::Known;
use super::multipart::RESERVED_PREFIX;
use crate::backend::{ListEntry, ListQuery};
use crate::crypto::format::DEFAULT_SEGMENT_LOG2;
use crate::crypto::segment::Layout;

/// Largest page S3 returns.
const MAX_KEYS: i32 = 1000;
/// Trailer reads in flight at once while resolving a listing's ETags.
const LIST_RESOLVE_CONCURRENCY: usize = 16;

/// One listing page in plaintext terms.
pub(super) struct Page {
    pub objects: Vec<Object>,
    pub common_prefixes: Vec<String>,
    pub is_truncated: bool,
    pub next_token: Option<String>,
    /// The last key or common prefix of the store's page (before hiding reserved keys): where
    /// a ListObjects (v1) continues.
    pub resume_marker: Option<String>,
}

impl Proxy {
    pub(super) async fn list_buckets_op(
        &self,
        _req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let buckets = self.store.list_buckets().await.map_err(error::backend)?;
        let buckets = buckets
            .into_iter()
            .map(|b| Bucket {
                name: Some(b.name),
                creation_date: b.created.map(Timestamp::from),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(Owner {
                display_name: Some("escrow-proxy".into()),
                id: Some("escrow-proxy".into()),
            }),
            ..Default::default()
        }))
    }

    pub(super) async fn create_bucket_op(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let input = req.input;
        if input.object_lock_enabled_for_bucket == Some(true) {
            return Err(s3_error!(
                NotImplemented,
                "Object Lock is not supported through escrow-proxy."
            ));
        }
        self.store.create_bucket(&input.bucket).await.map_err(error::backend)?;
        Ok(S3Response::new(CreateBucketOutput {
            location: Some(format!("/{}", input.bucket)),
        }))
    }

    pub(super) async fn head_bucket_op(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.store
            .head_bucket(&req.input.bucket)
            .await
            .map_err(error::backend)?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    pub(super) async fn delete_bucket_op(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        self.store
            .delete_bucket(&req.input.bucket)
            .await
            .map_err(error::backend)?;
        Ok(S3Response::new(DeleteBucketOutput::default()))
    }

    pub(super) async fn get_bucket_location_op(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.store
            .head_bucket(&req.input.bucket)
            .await
            .map_err(error::backend)?;
        let region = Some(self.region.clone()).filter(|r| r != crate::limits::DEFAULT_REGION);
        Ok(S3Response::new(GetBucketLocationOutput {
            location_constraint: region.map(BucketLocationConstraint::from),
        }))
    }

    pub(super) async fn list_objects_op(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let input = req.input;
        let url = is_url(input.encoding_type.as_ref())?;
        let max_keys = max_keys(input.max_keys)?;
        let query = list_query(&input.prefix, &input.delimiter, &input.marker, &None, max_keys);
        let page = self.list_page(&input.bucket, query, max_keys).await?;
        let next_marker = page.resume_marker.clone().filter(|_| page.is_truncated);
        let enc = |s: Option<String>| s.map(|s| encode_if(url, &s));
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket),
            prefix: Some(encode_if(url, input.prefix.as_deref().unwrap_or(""))),
            marker: Some(encode_if(url, input.marker.as_deref().unwrap_or(""))),
            delimiter: enc(input.delimiter),
            max_keys: Some(max_keys),
            is_truncated: Some(page.is_truncated),
            next_marker: enc(next_marker),
            contents: Some(encode_objects(url, page.objects)),
            common_prefixes: Some(prefixes(url, page.common_prefixes)),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }

    pub(super) async fn list_objects_v2_op(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        let url = is_url(input.encoding_type.as_ref())?;
        let max_keys = max_keys(input.max_keys)?;
        let query = list_query(
            &input.prefix,
            &input.delimiter,
            &input.start_after,
            &input.continuation_token,
            max_keys,
        );
        let page = self.list_page(&input.bucket, query, max_keys).await?;
        let key_count = (page.objects.len() + page.common_prefixes.len()) as i32;
        let enc = |s: Option<String>| s.map(|s| encode_if(url, &s));
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(encode_if(url, input.prefix.as_deref().unwrap_or(""))),
            delimiter: enc(input.delimiter),
            max_keys: Some(max_keys),
            key_count: Some(key_count),
            continuation_token: input.continuation_token,
            next_continuation_token: page.next_token,
            start_after: enc(input.start_after),
            is_truncated: Some(page.is_truncated),
            contents: Some(encode_objects(url, page.objects)),
            common_prefixes: Some(prefixes(url, page.common_prefixes)),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }

    /// One page from the store, in plaintext terms.
    pub(super) async fn list_page(&self, bucket: &str, mut query: ListQuery, max_keys: i32) -> S3Result<Page> {
        if max_keys == 0 {
            self.store.head_bucket(bucket).await.map_err(error::backend)?;
            return Ok(Page {
                objects: Vec::new(),
                common_prefixes: Vec::new(),
                is_truncated: false,
                next_token: None,
                resume_marker: None,
            });
        }
        query.start_after = skip_rolled_up(query.start_after, query.prefix.as_deref(), query.delimiter.as_deref());
        let mut page = self.store.list_objects(bucket, &query).await.map_err(error::backend)?;
        let resume_marker = page
            .objects
            .last()
            .map(|o| o.key.clone())
            .max(page.common_prefixes.last().cloned());
        // The proxy's own multipart state is not the client's to see.
        page.objects.retain(|o| !o.key.starts_with(RESERVED_PREFIX));
        page.common_prefixes.retain(|p| !p.starts_with(RESERVED_PREFIX));
        let objects: Vec<Object> = futures::stream::iter(page.objects)
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
    async fn plaintext_entry(&self, bucket: &str, entry: ListEntry) -> Object {
        let known = match self.etags.get(bucket, &entry.key, &entry.etag) {
            Some(known) => Some(known),
            None => match self.open(bucket, &entry.key).await {
                Ok(opened) => Some(Known {
                    etag: opened.etag(),
                    size: opened.size(),
                }),
                Err(e) => {
                    tracing::warn!(bucket, code = %e.code().as_str(), "listed object could not be opened");
                    None
                }
            },
        };
        // An object that cannot be opened is listed with the size its stored length implies
        // (or the stored length) and no ETag: a GET of it fails with a clear error.
        let (size, etag) = match known {
            Some(k) => (k.size, Some(ETag::Strong(k.etag))),
            None => (
                Layout::new(DEFAULT_SEGMENT_LOG2)
                    .plain_len(entry.size)
                    .unwrap_or(entry.size),
                None,
            ),
        };
        Object {
            key: Some(entry.key),
            size: Some(size as i64),
            e_tag: etag,
            last_modified: entry.last_modified.map(Timestamp::from),
            storage_class: Some(ObjectStorageClass::from_static(ObjectStorageClass::STANDARD)),
            ..Default::default()
        }
    }
}

/// With a delimiter, a marker inside a rolled-up common prefix means that whole prefix was
/// already returned: continue after every key under it (as S3 does).
fn skip_rolled_up(start_after: Option<String>, prefix: Option<&str>, delimiter: Option<&str>) -> Option<String> {
    let (Some(after), Some(delim)) = (start_after.as_deref(), delimiter) else {
        return start_after;
    };
    let prefix = prefix.unwrap_or("");
    let Some(rest) = after.strip_prefix(prefix) else {
        return start_after;
    };
    match rest.find(delim) {
        Some(i) => Some(format!("{prefix}{}{}", &rest[..i + delim.len()], char::MAX)),
        None => start_after,
    }
}

/// A store listing query from a client's parameters; S3 treats an empty one as absent.
pub(super) fn list_query(
    prefix: &Option<String>,
    delimiter: &Option<String>,
    start_after: &Option<String>,
    continuation_token: &Option<String>,
    max_keys: i32,
) -> ListQuery {
    let given = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    ListQuery {
        prefix: given(prefix),
        delimiter: given(delimiter),
        start_after: given(start_after),
        continuation_token: given(continuation_token),
        max_keys,
    }
}

pub(super) fn max_keys(requested: Option<i32>) -> S3Result<i32> {
    match requested {
        None => Ok(MAX_KEYS),
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "max-keys must not be negative")),
        Some(n) => Ok(n.min(MAX_KEYS)),
    }
}

pub(super) fn is_url(encoding: Option<&EncodingType>) -> S3Result<bool> {
    match encoding.map(EncodingType::as_str) {
        None => Ok(false),
        Some(EncodingType::URL) => Ok(true),
        Some(_) => Err(s3_error!(
            InvalidArgument,
            "Invalid Encoding Method specified in Request"
        )),
    }
}

fn encode_objects(url: bool, mut objects: Vec<Object>) -> Vec<Object> {
    if url {
        for o in &mut objects {
            o.key = o.key.take().map(|k| url_encode(&k));
        }
    }
    objects
}

pub(super) fn prefixes(url: bool, list: Vec<String>) -> Vec<CommonPrefix> {
    list.into_iter()
        .map(|p| CommonPrefix {
            prefix: Some(encode_if(url, &p)),
        })
        .collect()
}

pub(super) fn encode_if(url: bool, s: &str) -> String {
    if url { url_encode(s) } else { s.to_string() }
}

/// Percent-encodes every byte but RFC 3986 unreserved characters and `/`, as S3 does for
/// `encoding-type=url`.
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_inside_common_prefixes_skip_them() {
        let s = |v: &str| Some(v.to_string());
        assert_eq!(
            skip_rolled_up(s("a/"), None, Some("/")),
            Some(format!("a/{}", char::MAX))
        );
        assert_eq!(
            skip_rolled_up(s("p/a/b"), Some("p/"), Some("/")),
            Some(format!("p/a/{}", char::MAX))
        );
        assert_eq!(skip_rolled_up(s("p/ab"), Some("p/"), Some("/")), s("p/ab"));
        assert_eq!(skip_rolled_up(s("a/"), None, None), s("a/"));
    }

    #[test]
    fn url_encoding_matches_s3() {
        assert_eq!(url_encode("a b/c+d%é"), "a%20b/c%2Bd%25%C3%A9");
    }
}
