//! The offline exit path: decrypt an object without a running proxy, from the keyring and root
//! key alone, either fetched from a configured store or from a raw object file plus its stored
//! metadata (for example from `aws s3api get-object` and `head-object` run directly against any
//! store).

use std::io::Write;
use std::path::Path;

use futures::TryStreamExt;

use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::backend::{ByteRange, Metadata, ObjectStore};
use crate::body::{DecryptBody, Piece};
use crate::crypto::CryptoError;
use crate::crypto::envelope::ObjectRecord;
use crate::crypto::format::{HEADER_LEN, TRAILER_LEN, meta};
use crate::crypto::keyring::Keyring;
use crate::crypto::manifest::{LEN_SUFFIX, Manifest};
use crate::stored::{self, EnvelopeError, Opened, Shape};

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
    let fs_object = crate::backend::fs::read_object_file(stored).await?;
    let (offset, len, own_meta) = match fs_object {
        Some(obj) => (obj.body_offset, obj.size, Some(obj.metadata)),
        None => (0, tokio::fs::metadata(stored).await?.len(), None),
    };
    let metadata = metadata
        .or(own_meta.as_ref())
        .ok_or_else(|| DecryptError::Metadata("a raw object file needs its metadata (--metadata)".into()))?;
    if len < (HEADER_LEN + TRAILER_LEN) as u64 {
        return Err(CryptoError::Format("object too short").into());
    }
    let mut file = tokio::fs::File::open(stored).await?;
    let unwrapped = stored::unwrap(keyring, bucket, key, metadata).map_err(envelope)?;
    let (record, shape) = if metadata.contains_key(meta::PARTS) {
        let last = read_at(&mut file, offset + len - LEN_SUFFIX as u64, LEN_SUFFIX).await?;
        let need = Manifest::tail_len(&last)?;
        if need as u64 > len {
            return Err(CryptoError::Format("object too short").into());
        }
        let tail = read_at(&mut file, offset + len - need as u64, need).await?;
        let manifest = unwrapped.open_manifest(metadata, &tail, len)?;
        (manifest.record.clone(), Shape::Multipart(manifest))
    } else {
        let tail = read_at(&mut file, offset + len - TRAILER_LEN as u64, TRAILER_LEN).await?;
        let trailer = unwrapped.open_trailer(&tail, len)?;
        let extension = match trailer.header.extension_len() {
            0 => None,
            n => Some(read_at(&mut file, offset + HEADER_LEN as u64, n).await?),
        };
        (
            unwrapped.open_record(&trailer, extension.as_deref())?,
            Shape::Single(trailer),
        )
    };
    let opened = Opened {
        dek: unwrapped.dek,
        record,
        shape,
        store_etag: String::new(),
        last_modified: None,
    };
    let (range, pieces) = opened.read(None);
    file.seek(std::io::SeekFrom::Start(offset + range.start)).await?;
    let body = tokio_util::io::ReaderStream::new(file.take(range.end - range.start));
    decrypt_stream(&opened.dek, pieces, Box::pin(body), out).await?;
    Ok(opened.record)
}

async fn read_at(file: &mut tokio::fs::File, at: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    file.seek(std::io::SeekFrom::Start(at)).await?;
    file.read_exact(&mut buf).await?;
    Ok(buf)
}

/// Decrypts `bucket`/`key` fetched from `store` into `out`, streaming.
pub async fn decrypt_from_store(
    keyring: &Keyring,
    store: &dyn ObjectStore,
    bucket: &str,
    key: &str,
    out: &mut (dyn Write + Send),
) -> Result<ObjectRecord, DecryptError> {
    let opened = stored::open(store, keyring, bucket, key).await.map_err(|e| match e {
        stored::OpenError::Store(e) => DecryptError::Store(e),
        stored::OpenError::Envelope(e) => envelope(e),
    })?;
    let (range, pieces) = opened.read(None);
    let got = store
        .get_object(bucket, key, Some(ByteRange::Bounded(range)), Some(&opened.store_etag))
        .await?;
    decrypt_stream(&opened.dek, pieces, got.body, out).await?;
    Ok(opened.record)
}

fn envelope(e: EnvelopeError) -> DecryptError {
    match e {
        EnvelopeError::NotEscrow => DecryptError::Metadata(e.to_string()),
        EnvelopeError::Crypto(c) => DecryptError::Crypto(c),
    }
}

async fn decrypt_stream(
    dek: &crate::secret::Key256,
    pieces: Vec<Piece>,
    body: crate::backend::ByteStream,
    out: &mut (dyn Write + Send),
) -> Result<(), DecryptError> {
    let mut plain = DecryptBody::new(body, dek, pieces);
    while let Some(chunk) = plain.try_next().await? {
        out.write_all(&chunk)?;
    }
    out.flush()?;
    Ok(())
}
