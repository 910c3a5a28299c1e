//! The offline exit path: decrypt an object without a running proxy, from the keyring and root
//! key alone, either fetched from a configured store or from a raw object file plus its stored
//! metadata (for example from `aws s3api get-object` and `head-object` run directly against any
//! store).

use std::io::Write;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use futures::TryStreamExt;

use crate::backend::{Metadata, ObjectStore};
use crate::body::{DecryptBody, DecryptPlan};
use crate::crypto::CryptoError;
use crate::crypto::envelope::{ObjectRecord, open_record, unwrap_dek};
use crate::crypto::format::{FORMAT_VERSION, HEADER_LEN, SINGLE_PART, TRAILER_LEN, meta};
use crate::crypto::keyring::Keyring;
use crate::crypto::segment::{StreamHeader, open_trailer};

/// Why an offline decryption failed.
#[derive(Debug, thiserror::Error)]
pub enum DecryptError {
    /// The metadata lacks a field or is not of this format.
    #[error("metadata: {0}")]
    Metadata(String),
    /// Authentication failed or the key is missing.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// Reading or writing failed (including a segment that failed authentication mid-stream).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] crate::backend::BackendError),
}

/// Reads stored metadata from a JSON file: either `aws s3api head-object` output (with a
/// `Metadata` object) or a flat object of `escrow-*` names.
pub fn read_metadata_file(path: &Path) -> Result<Metadata, DecryptError> {
    let text = std::fs::read_to_string(path)?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| DecryptError::Metadata(e.to_string()))?;
    let map = value.get("Metadata").unwrap_or(&value);
    let obj = map
        .as_object()
        .ok_or_else(|| DecryptError::Metadata("expected a JSON object".into()))?;
    Ok(obj
        .iter()
        .filter_map(|(k, v)| {
            let k = k.to_lowercase();
            let k = k.strip_prefix("x-amz-meta-").unwrap_or(&k).to_string();
            v.as_str().map(|v| (k, v.to_string()))
        })
        .collect())
}

fn field<'a>(metadata: &'a Metadata, name: &str) -> Result<&'a str, DecryptError> {
    metadata
        .get(name)
        .map(String::as_str)
        .ok_or_else(|| DecryptError::Metadata(format!("missing {name}")))
}

/// Unwraps the DEK and the sealed record of `bucket`/`key` from its stored metadata.
pub fn unseal(
    keyring: &Keyring,
    bucket: &str,
    key: &str,
    metadata: &Metadata,
) -> Result<(crate::secret::Key256, ObjectRecord), DecryptError> {
    if field(metadata, meta::VERSION)? != FORMAT_VERSION.to_string() {
        return Err(DecryptError::Metadata("unknown format version".into()));
    }
    let version: u32 = field(metadata, meta::KEK)?
        .parse()
        .map_err(|_| DecryptError::Metadata("bad key version".into()))?;
    let wrapped = B64
        .decode(field(metadata, meta::DEK)?)
        .map_err(|_| DecryptError::Metadata("bad wrapped key".into()))?;
    let sealed = B64
        .decode(field(metadata, meta::RECORD)?)
        .map_err(|_| DecryptError::Metadata("bad record".into()))?;
    let dek = unwrap_dek(keyring.kek(version)?, version, &wrapped, bucket, key)?;
    let record = open_record(&dek, &sealed)?;
    Ok((dek, record))
}

/// Decrypts a whole stored object held in a file into `out`, streaming. The file is either the
/// raw stored object (as any S3 store returns it; `metadata` required) or an object file of the
/// fs store (metadata inside; `metadata` may be omitted).
pub async fn decrypt_file(
    keyring: &Keyring,
    bucket: &str,
    key: &str,
    metadata: Option<&Metadata>,
    stored: &Path,
    out: &mut (dyn Write + Send),
) -> Result<ObjectRecord, DecryptError> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let fs_object = crate::backend::fs::read_object_file(stored).await?;
    let (offset, len, own_meta) = match fs_object {
        Some(obj) => (obj.body_offset, obj.size, Some(obj.metadata)),
        None => (0, tokio::fs::metadata(stored).await?.len(), None),
    };
    let metadata = metadata
        .or(own_meta.as_ref())
        .ok_or_else(|| DecryptError::Metadata("a raw object file needs its metadata (--metadata)".into()))?;
    let (dek, record) = unseal(keyring, bucket, key, metadata)?;
    if len < (HEADER_LEN + TRAILER_LEN) as u64 {
        return Err(CryptoError::Format("object too short").into());
    }
    let mut file = tokio::fs::File::open(stored).await?;
    let mut tail = vec![0u8; TRAILER_LEN];
    file.seek(std::io::SeekFrom::Start(offset + len - TRAILER_LEN as u64))
        .await?;
    file.read_exact(&mut tail).await?;
    file.seek(std::io::SeekFrom::Start(offset)).await?;
    let body = tokio_util::io::ReaderStream::new(file.take(len - TRAILER_LEN as u64));
    decrypt_stream(&dek, &tail, len, Box::pin(body), out).await?;
    Ok(record)
}

/// Decrypts `bucket`/`key` fetched from `store` into `out`, streaming.
pub async fn decrypt_from_store(
    keyring: &Keyring,
    store: &dyn ObjectStore,
    bucket: &str,
    key: &str,
    out: &mut (dyn Write + Send),
) -> Result<ObjectRecord, DecryptError> {
    let got = store.get_object(bucket, key, None, None).await?;
    let (dek, record) = unseal(keyring, bucket, key, &got.head.metadata)?;
    let len = got.head.size;
    // The trailer comes last in the stream: read it first with a suffix range.
    let tail_obj = store
        .get_object(
            bucket,
            key,
            Some(crate::backend::ByteRange::Suffix(TRAILER_LEN as u64)),
            Some(&got.head.etag),
        )
        .await?;
    let tail = crate::backend::read_small(tail_obj.body, TRAILER_LEN).await?;
    let body = got.body.take_until_len(len - TRAILER_LEN as u64);
    decrypt_stream(&dek, &tail, len, body, out).await?;
    Ok(record)
}

async fn decrypt_stream(
    dek: &crate::secret::Key256,
    tail: &[u8],
    stored_len: u64,
    body: crate::backend::ByteStream,
    out: &mut (dyn Write + Send),
) -> Result<(), DecryptError> {
    let trailer = open_trailer(dek, SINGLE_PART, tail)?;
    let layout = trailer.header.layout();
    if layout.stored_len(trailer.plain_len) != stored_len {
        return Err(CryptoError::Decrypt.into());
    }
    let _: StreamHeader = trailer.header;
    let plan = DecryptPlan {
        plain_len: trailer.plain_len,
        first_segment: 0,
        last_segment: layout.segment_count(trailer.plain_len) - 1,
        skip: 0,
        len: trailer.plain_len,
        header_first: true,
    };
    let mut plain = DecryptBody::new(body, dek, SINGLE_PART, &trailer, &plan);
    while let Some(chunk) = plain.try_next().await? {
        out.write_all(&chunk)?;
    }
    out.flush()?;
    Ok(())
}

/// Stream helper: the first `len` bytes of a stream.
trait TakeLen {
    fn take_until_len(self, len: u64) -> crate::backend::ByteStream;
}

impl TakeLen for crate::backend::ByteStream {
    fn take_until_len(self, len: u64) -> crate::backend::ByteStream {
        let mut left = len;
        Box::pin(futures::StreamExt::filter_map(self, move |item| {
            let out = match item {
                Ok(mut chunk) => {
                    if left == 0 {
                        None
                    } else {
                        if chunk.len() as u64 > left {
                            chunk.truncate(left as usize);
                        }
                        left -= chunk.len() as u64;
                        Some(Ok(chunk))
                    }
                }
                Err(e) => Some(Err(e)),
            };
            futures::future::ready(out)
        }))
    }
}
