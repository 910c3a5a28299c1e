//! The offline exit path: decrypt an object without a running proxy, from the keyring and root
//! key alone, either fetched from a configured store or from a raw object file plus its stored
//! metadata (for example from `aws s3api get-object` and `head-object` run directly against any
//! store). Both use the proxy's own reader ([`crate::object::open`]).

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use futures::TryStreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::backend::{BackendError, BackendResult, ByteRange, GetObject, Metadata, ObjectHead, ObjectStore};
use crate::crypto::CryptoError;
use crate::crypto::envelope::{CustomerKey, ObjectRecord};
use crate::crypto::keyring::Keyring;
use crate::object::ObjectError;
use crate::object::open::{self, InStore, StoredObject};

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
    Store(#[from] BackendError),
}

impl From<ObjectError> for DecryptError {
    fn from(e: ObjectError) -> Self {
        match e {
            ObjectError::Store(e) => Self::Store(e),
            ObjectError::Crypto(e) => Self::Crypto(e),
            other => Self::Metadata(other.to_string()),
        }
    }
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
    decrypt_file_with_key(keyring, bucket, key, metadata, stored, None, out).await
}

/// [`decrypt_file`] for an object that may be SSE-C: `customer` is its customer key (`None`:
/// the object must not be SSE-C).
pub async fn decrypt_file_with_key(
    keyring: &Keyring,
    bucket: &str,
    key: &str,
    metadata: Option<&Metadata>,
    stored: &Path,
    customer: Option<&CustomerKey>,
    out: &mut (dyn Write + Send),
) -> Result<ObjectRecord, DecryptError> {
    let fs_object = crate::backend::fs::read_object_file(stored).await?;
    let file_len = tokio::fs::metadata(stored).await?.len();
    let (offset, len, own_meta) = match fs_object {
        Some(obj) => (obj.body_offset, obj.size, Some(obj.metadata)),
        None => (0, file_len, None),
    };
    // An object file's header claims its length: it must fit the file before any arithmetic
    // or read relies on it.
    if offset.checked_add(len).is_none_or(|end| end > file_len) {
        return Err(CryptoError::Format("object file shorter than its header says").into());
    }
    let metadata = metadata
        .or(own_meta.as_ref())
        .ok_or_else(|| DecryptError::Metadata("a raw object file needs its metadata (--metadata)".into()))?;
    let file = ObjectFile {
        path: stored.to_path_buf(),
        name: stored.display().to_string(),
        offset,
        len,
        metadata: metadata.clone(),
    };
    decrypt_object(&file, keyring, bucket, key, customer, out).await
}

/// Decrypts `bucket`/`key` fetched from `store` into `out`, streaming.
pub async fn decrypt_from_store(
    keyring: &Keyring,
    store: &dyn ObjectStore,
    bucket: &str,
    key: &str,
    out: &mut (dyn Write + Send),
) -> Result<ObjectRecord, DecryptError> {
    decrypt_from_store_with_key(keyring, store, bucket, key, None, out).await
}

/// [`decrypt_from_store`] for an object that may be SSE-C (`customer`: its customer key).
pub async fn decrypt_from_store_with_key(
    keyring: &Keyring,
    store: &dyn ObjectStore,
    bucket: &str,
    key: &str,
    customer: Option<&CustomerKey>,
    out: &mut (dyn Write + Send),
) -> Result<ObjectRecord, DecryptError> {
    decrypt_object(&InStore { store, bucket, key }, keyring, bucket, key, customer, out).await
}

/// Reads an SSE-C customer key from a file (never from the command line, where other users see
/// it): the key's base64, as the `x-amz-server-side-encryption-customer-key` header carries it
/// (for example from `openssl rand -base64 32`). The file must be private (0600).
pub fn read_customer_key_file(path: &Path) -> Result<CustomerKey, DecryptError> {
    use base64::Engine as _;
    let text = zeroize::Zeroizing::new(
        crate::files::read_secret_file(path).map_err(|e| DecryptError::Metadata(e.to_string()))?,
    );
    let raw = zeroize::Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .unwrap_or_default(),
    );
    CustomerKey::from_slice(&raw).ok_or_else(|| {
        DecryptError::Metadata(format!(
            "{}: not a customer key (base64 of exactly 32 bytes)",
            path.display()
        ))
    })
}

/// Opens `object` (an SSE-C object with `customer`, its key) and writes all of its plaintext to
/// `out`.
async fn decrypt_object(
    object: &dyn StoredObject,
    keyring: &Keyring,
    bucket: &str,
    key: &str,
    customer: Option<&CustomerKey>,
    out: &mut (dyn Write + Send),
) -> Result<ObjectRecord, DecryptError> {
    let mut opened = open::open(object, keyring, bucket, key).await.map_err(|e| match e {
        ObjectError::NotEscrow => DecryptError::Metadata(e.to_string()),
        other => other.into(),
    })?;
    opened.unlock(customer)?;
    let mut plain = open::plaintext(object, &opened, None).await?;
    while let Some(chunk) = plain.try_next().await? {
        out.write_all(&chunk)?;
    }
    out.flush()?;
    Ok(opened.record)
}

/// A stored object in a local file: `len` stored bytes from `offset`, with its metadata.
struct ObjectFile {
    path: PathBuf,
    name: String,
    offset: u64,
    len: u64,
    metadata: Metadata,
}

#[async_trait]
impl StoredObject for ObjectFile {
    fn source(&self) -> &str {
        &self.name
    }

    async fn get(&self, range: Option<ByteRange>, _if_match: Option<&str>) -> BackendResult<GetObject> {
        let range = match range {
            Some(r) => r.resolve(self.len)?,
            None => 0..self.len,
        };
        let mut file = tokio::fs::File::open(&self.path).await?;
        file.seek(std::io::SeekFrom::Start(self.offset + range.start)).await?;
        let body = tokio_util::io::ReaderStream::new(file.take(range.end - range.start));
        Ok(GetObject {
            head: ObjectHead {
                size: self.len,
                // A file is one version: nothing to pin.
                etag: String::new(),
                last_modified: None,
                metadata: self.metadata.clone(),
            },
            body: Box::pin(body),
        })
    }
}
