//! A local directory store: the embedded default and a domestic mirror.
//!
//! This module owns the on-disk layout under one root directory:
//!
//! ```text
//! <root>/.tmp/<random>         objects being written (never listed; bucket names never start with '.')
//! <root>/<bucket>/             a bucket
//! <root>/<bucket>/<sha256hex>  one object: MAGIC ‖ u32 BE header length ‖ JSON header ‖ body
//! ```
//!
//! An object is one file named by the hex SHA-256 of its key (keys may hold '/' and be 1024 bytes
//! long), so a write becomes visible in one atomic rename. The JSON header records the key,
//! metadata, ETag (hex MD5 of the body), modification time and size; it is padded with spaces to
//! the length written before the body, since the ETag is only known after it.
//!
//! It must never: let a bucket name or key reach a path outside `root`, show a partially written
//! object, or hold a whole body in memory (writes and reads stream in bounded chunks).

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures::StreamExt;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::fs;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio_util::io::ReaderStream;

use crate::backend::{
    BackendError, BackendResult, BucketInfo, ByteRange, ByteStream, GetObject, ListEntry, ListPage, ListQuery,
    Metadata, ObjectHead, ObjectStore, Source,
};

mod copy;

/// Directory under the root for objects being written.
const TMP_DIR: &str = ".tmp";
/// First bytes of every object file; the trailing digit is the layout version.
const MAGIC: &[u8; 8] = b"EPFSOBJ1";
/// Bytes before the JSON header: magic and the header length.
const PREAMBLE_LEN: u64 = 12;
/// Largest header we accept when reading (metadata is capped far below this).
const MAX_HEADER_LEN: u32 = 1 << 20;
/// Room left in the header for the final version to be longer than the provisional one.
const HEADER_SLACK: usize = 64;
/// Chunk size for streaming reads.
const READ_CHUNK: usize = 64 * 1024;
/// Most entries one listing page returns (the S3 limit).
const MAX_LIST_KEYS: usize = 1000;
/// Temp files older than this are leftovers of a crash and are removed at start-up.
const STALE_TMP_AGE: Duration = Duration::from_secs(3600);

/// A store keeping each bucket as a directory and each object as one file under `root`.
#[derive(Debug)]
pub struct FsStore {
    name: String,
    root: PathBuf,
}

/// The JSON header at the start of every object file.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    key: String,
    metadata: Metadata,
    etag: String,
    last_modified_unix_nanos: u64,
    size: u64,
}

// === impl FsStore ===

impl FsStore {
    /// Opens (creating if missing) a store rooted at `root`; `name` is used in logs and errors.
    /// Removes temp files left behind by a crash.
    pub fn new(name: impl Into<String>, root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        let tmp = root.join(TMP_DIR);
        std::fs::create_dir_all(&tmp)?;
        for entry in std::fs::read_dir(&tmp)? {
            let entry = entry?;
            let age = entry.metadata()?.modified()?.elapsed().unwrap_or_default();
            if age > STALE_TMP_AGE {
                // Best effort: another process may have removed it already.
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(Self {
            name: name.into(),
            root,
        })
    }

    /// The bucket's directory, or `None` if the name is not a valid S3 bucket name (and so cannot
    /// name an existing bucket, nor escape the root).
    fn bucket_dir(&self, bucket: &str) -> Option<PathBuf> {
        valid_bucket_name(bucket).then(|| self.root.join(bucket))
    }

    /// The directory of an existing bucket.
    async fn existing_bucket(&self, bucket: &str) -> BackendResult<PathBuf> {
        let dir = self.bucket_dir(bucket).ok_or(BackendError::NoSuchBucket)?;
        match fs::metadata(&dir).await {
            Ok(m) if m.is_dir() => Ok(dir),
            Ok(_) => Err(BackendError::NoSuchBucket),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(BackendError::NoSuchBucket),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens an object file and reads its header; returns the file positioned after the header.
    async fn open_object(&self, bucket: &str, key: &str) -> BackendResult<(fs::File, Header, u64)> {
        let dir = self.existing_bucket(bucket).await?;
        let mut file = match fs::File::open(dir.join(object_file_name(key))).await {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(BackendError::NoSuchKey),
            Err(e) => return Err(e.into()),
        };
        let (header, body_offset) = read_header(&mut file).await?;
        let file_len = file.metadata().await?.len();
        if header.key != key || file_len != body_offset + header.size {
            return Err(invalid_data("object file does not match its header").into());
        }
        Ok((file, header, body_offset))
    }

    /// Writes the whole object to `tmp` and syncs it; returns the ETag.
    async fn write_temp(
        &self,
        tmp: &Path,
        key: &str,
        mut body: ByteStream,
        len: u64,
        metadata: Metadata,
    ) -> BackendResult<String> {
        let mut file = fs::OpenOptions::new().write(true).create_new(true).open(tmp).await?;
        let mut header = Header {
            key: key.to_owned(),
            metadata,
            etag: "0".repeat(32),
            last_modified_unix_nanos: unix_nanos(SystemTime::now()),
            size: len,
        };
        let provisional = serde_json::to_vec(&header).map_err(io::Error::from)?;
        let reserved = provisional.len() + HEADER_SLACK;
        let reserved_u32 = u32::try_from(reserved)
            .ok()
            .filter(|n| *n <= MAX_HEADER_LEN)
            .ok_or_else(|| invalid_input("object metadata too large"))?;
        let mut preamble = Vec::with_capacity(PREAMBLE_LEN as usize + reserved);
        preamble.extend_from_slice(MAGIC);
        preamble.extend_from_slice(&reserved_u32.to_be_bytes());
        file.write_all(&preamble).await?;
        file.write_all(&padded(provisional, reserved)?).await?;

        let mut md5 = Md5::new();
        let mut written: u64 = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(BackendError::Body)?;
            written += chunk.len() as u64;
            if written > len {
                return Err(BackendError::Body(invalid_data("body longer than its declared length")));
            }
            md5.update(&chunk);
            file.write_all(&chunk).await?;
        }
        if written != len {
            return Err(BackendError::Body(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "body shorter than its declared length",
            )));
        }

        header.etag = hex::encode(md5.finalize());
        header.last_modified_unix_nanos = unix_nanos(SystemTime::now());
        let fin = padded(serde_json::to_vec(&header).map_err(io::Error::from)?, reserved)?;
        // tokio's File refuses to seek while a write is still in flight: flush first.
        file.flush().await?;
        file.seek(io::SeekFrom::Start(PREAMBLE_LEN)).await?;
        file.write_all(&fin).await?;
        file.flush().await?;
        file.sync_all().await?;
        Ok(header.etag)
    }

    /// Reads the headers of every object in a bucket, sorted by key.
    async fn all_headers(&self, bucket: &str) -> BackendResult<Vec<Header>> {
        let dir = self.existing_bucket(bucket).await?;
        let mut entries = fs::read_dir(&dir).await?;
        let mut headers = Vec::new();
        while let Some(entry) = entries.next_entry().await? {
            let name = entry.file_name();
            if !name.to_str().is_some_and(is_object_file_name) {
                continue;
            }
            let mut file = match fs::File::open(entry.path()).await {
                Ok(f) => f,
                // Deleted between read_dir and open.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            headers.push(read_header(&mut file).await?.0);
        }
        headers.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(headers)
    }
}

#[async_trait]
impl ObjectStore for FsStore {
    fn name(&self) -> &str {
        &self.name
    }

    async fn list_buckets(&self) -> BackendResult<Vec<BucketInfo>> {
        let mut entries = fs::read_dir(&self.root).await?;
        let mut buckets = Vec::new();
        while let Some(entry) = entries.next_entry().await? {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if !valid_bucket_name(&name) {
                continue;
            }
            let meta = entry.metadata().await?;
            if meta.is_dir() {
                let created = meta.created().or_else(|_| meta.modified()).ok();
                buckets.push(BucketInfo { name, created });
            }
        }
        buckets.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(buckets)
    }

    async fn create_bucket(&self, bucket: &str) -> BackendResult<()> {
        let dir = self
            .bucket_dir(bucket)
            .ok_or(BackendError::InvalidArgument("invalid bucket name"))?;
        match fs::create_dir(&dir).await {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(BackendError::BucketAlreadyExists { owned: true });
            }
            Err(e) => return Err(e.into()),
        }
        sync_dir(&self.root).await?;
        Ok(())
    }

    async fn head_bucket(&self, bucket: &str) -> BackendResult<()> {
        self.existing_bucket(bucket).await.map(drop)
    }

    async fn delete_bucket(&self, bucket: &str) -> BackendResult<()> {
        let dir = self.bucket_dir(bucket).ok_or(BackendError::NoSuchBucket)?;
        match fs::remove_dir(&dir).await {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(BackendError::NoSuchBucket);
            }
            Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => {
                return Err(BackendError::BucketNotEmpty);
            }
            Err(e) => return Err(e.into()),
        }
        sync_dir(&self.root).await?;
        Ok(())
    }

    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: ByteStream,
        len: u64,
        metadata: Metadata,
    ) -> BackendResult<String> {
        let dir = self.existing_bucket(bucket).await?;
        let tmp = TempFile(self.root.join(TMP_DIR).join(format!("{:032x}", rand::random::<u128>())));
        let etag = self.write_temp(&tmp.0, key, body, len, metadata).await?;
        self.commit(&dir, bucket, key, &tmp, None).await?;
        Ok(etag)
    }

    async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        range: Option<ByteRange>,
        if_match: Option<&str>,
    ) -> BackendResult<GetObject> {
        let (mut file, header, body_offset) = self.open_object(bucket, key).await?;
        if let Some(expected) = if_match
            && expected.trim_matches('"') != header.etag
        {
            return Err(BackendError::PreconditionFailed);
        }
        let range = match range {
            None => 0..header.size,
            Some(r) => r.resolve(header.size)?,
        };
        file.seek(io::SeekFrom::Start(body_offset + range.start)).await?;
        let reader = file.take(range.end - range.start);
        let body: ByteStream = Box::pin(ReaderStream::with_capacity(reader, READ_CHUNK));
        Ok(GetObject {
            head: header.into_head(),
            body,
        })
    }

    async fn head_object(&self, bucket: &str, key: &str) -> BackendResult<ObjectHead> {
        let (_, header, _) = self.open_object(bucket, key).await?;
        Ok(header.into_head())
    }

    async fn delete_object(&self, bucket: &str, key: &str) -> BackendResult<()> {
        let dir = self.existing_bucket(bucket).await?;
        match fs::remove_file(dir.join(object_file_name(key))).await {
            Ok(()) => sync_dir(&dir).await.map_err(Into::into),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn list_objects(&self, bucket: &str, query: &ListQuery) -> BackendResult<ListPage> {
        let headers = self.all_headers(bucket).await?;
        let resume = query.continuation_token.as_deref().map(Resume::decode).transpose()?;
        Ok(paginate(headers, query, resume.as_ref()))
    }

    fn conditional_writes(&self) -> bool {
        true
    }

    /// The body goes to a temp file first; then, under a lock file (`.tmp/<object file>.lock`,
    /// created exclusively; one left by a crash is taken over after 30 s), the condition is
    /// checked and the temp file renamed into place. Processes sharing the directory thus commit
    /// conditional writes to one key one at a time, and the check sees every earlier commit.
    async fn put_object_if(
        &self,
        bucket: &str,
        key: &str,
        body: ByteStream,
        len: u64,
        metadata: Metadata,
        condition: Option<crate::backend::PutCondition>,
    ) -> BackendResult<String> {
        match condition {
            None => self.put_object(bucket, key, body, len, metadata).await,
            Some(c) => self.put_locked(bucket, key, body, len, metadata, c).await,
        }
    }

    /// A whole object under new metadata is copied by the kernel ([`copy`]); anything else
    /// streams.
    async fn compose(
        &self,
        bucket: &str,
        key: &str,
        sources: Vec<Source>,
        tail: bytes::Bytes,
        metadata: Metadata,
    ) -> BackendResult<String> {
        if let [src] = sources.as_slice()
            && tail.is_empty()
            && src.range.start == 0
        {
            match self.copy_whole(bucket, key, src, metadata.clone(), None).await {
                Err(BackendError::InvalidArgument(_)) => {}
                done => return done,
            }
        }
        crate::backend::compose_by_streaming(self, bucket, key, sources, tail, metadata).await
    }

    /// As [`FsStore::compose`], a whole object copied by the kernel and committed under the
    /// key's lock when `condition` holds; anything else streams into one conditional write.
    async fn compose_if(
        &self,
        bucket: &str,
        key: &str,
        sources: Vec<Source>,
        tail: bytes::Bytes,
        metadata: Metadata,
        condition: Option<crate::backend::PutCondition>,
    ) -> BackendResult<String> {
        let Some(condition) = condition else {
            return self.compose(bucket, key, sources, tail, metadata).await;
        };
        if let [src] = sources.as_slice()
            && tail.is_empty()
            && src.range.start == 0
        {
            match self
                .copy_whole(bucket, key, src, metadata.clone(), Some(condition.clone()))
                .await
            {
                Err(BackendError::InvalidArgument(_)) => {}
                done => return done,
            }
        }
        crate::backend::compose_by_streaming_if(self, bucket, key, sources, tail, metadata, Some(condition)).await
    }
}

// === listing ===

/// Where a continuation token says the previous page stopped.
#[derive(Debug, PartialEq)]
enum Resume {
    /// After this key.
    Key(String),
    /// After every key under this common prefix.
    Prefix(String),
}

impl Resume {
    /// Token format: `k` or `p`, then the hex of the key or common prefix.
    fn encode(&self) -> String {
        match self {
            Resume::Key(k) => format!("k{}", hex::encode(k)),
            Resume::Prefix(p) => format!("p{}", hex::encode(p)),
        }
    }

    fn decode(token: &str) -> BackendResult<Self> {
        let bad = || BackendError::InvalidArgument("invalid continuation token");
        let (tag, rest) = token.split_at_checked(1).ok_or_else(bad)?;
        let value = String::from_utf8(hex::decode(rest).map_err(|_| bad())?).map_err(|_| bad())?;
        match tag {
            "k" => Ok(Resume::Key(value)),
            "p" => Ok(Resume::Prefix(value)),
            _ => Err(bad()),
        }
    }

    /// Whether `key` was already covered by an earlier page.
    fn covers(&self, key: &str) -> bool {
        match self {
            Resume::Key(k) => key <= k.as_str(),
            Resume::Prefix(p) => key <= p.as_str() || key.starts_with(p.as_str()),
        }
    }
}

/// One ListObjectsV2 page over all keys of a bucket, sorted by key. A common prefix counts as
/// one entry toward `max_keys`, and the next page resumes after all keys under it.
fn paginate(headers: Vec<Header>, query: &ListQuery, resume: Option<&Resume>) -> ListPage {
    let prefix = query.prefix.as_deref().unwrap_or("");
    let delimiter = query.delimiter.as_deref().filter(|d| !d.is_empty());
    let max_keys = usize::try_from(query.max_keys).unwrap_or(0).min(MAX_LIST_KEYS);
    let mut page = ListPage::default();
    let mut count = 0;
    let mut last: Option<Resume> = None;

    for header in headers {
        let key = header.key.as_str();
        if !key.starts_with(prefix)
            || query.start_after.as_deref().is_some_and(|s| key <= s)
            || resume.is_some_and(|r| r.covers(key))
        {
            continue;
        }
        let rolled_up = delimiter.and_then(|d| {
            let at = key[prefix.len()..].find(d)?;
            Some(&key[..prefix.len() + at + d.len()])
        });
        if let Some(common) = rolled_up
            && page.common_prefixes.last().is_some_and(|p| p == common)
        {
            continue;
        }
        if count == max_keys {
            page.is_truncated = count > 0;
            break;
        }
        count += 1;
        if let Some(common) = rolled_up {
            page.common_prefixes.push(common.to_owned());
            last = Some(Resume::Prefix(common.to_owned()));
        } else {
            last = Some(Resume::Key(header.key.clone()));
            page.objects.push(header.into_entry());
        }
    }
    if page.is_truncated {
        page.next_continuation_token = last.map(|r| r.encode());
    }
    page
}

// === helpers ===

impl Header {
    fn into_head(self) -> ObjectHead {
        ObjectHead {
            size: self.size,
            etag: self.etag,
            last_modified: Some(system_time(self.last_modified_unix_nanos)),
            metadata: self.metadata,
        }
    }

    fn into_entry(self) -> ListEntry {
        ListEntry {
            last_modified: Some(system_time(self.last_modified_unix_nanos)),
            key: self.key,
            size: self.size,
            etag: self.etag,
            metadata: Some(self.metadata),
        }
    }
}

/// Deletes the temp file unless it was renamed away, also when the write is cancelled.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        // After a successful rename the path no longer exists: NotFound is the normal case.
        let _ = std::fs::remove_file(&self.0);
    }
}

/// One object file of this store, read on its own (the offline exit path).
#[derive(Debug, Clone)]
pub struct ObjectFile {
    /// The object's key.
    pub key: String,
    /// Its stored metadata.
    pub metadata: Metadata,
    /// Where the stored bytes start in the file.
    pub body_offset: u64,
    /// How many stored bytes follow.
    pub size: u64,
}

/// Reads an object file's header; `Ok(None)` if `path` is not an object file of this store.
pub async fn read_object_file(path: &Path) -> io::Result<Option<ObjectFile>> {
    let mut file = fs::File::open(path).await?;
    let mut magic = [0u8; MAGIC.len()];
    if file.read_exact(&mut magic).await.is_err() || &magic != MAGIC {
        return Ok(None);
    }
    file.seek(io::SeekFrom::Start(0)).await?;
    let (header, body_offset) = read_header(&mut file).await?;
    Ok(Some(ObjectFile {
        key: header.key,
        metadata: header.metadata,
        body_offset,
        size: header.size,
    }))
}

/// Reads the preamble and JSON header; returns it with the body's offset in the file.
async fn read_header(file: &mut fs::File) -> io::Result<(Header, u64)> {
    let mut preamble = [0u8; PREAMBLE_LEN as usize];
    file.read_exact(&mut preamble).await?;
    let (magic, len) = preamble.split_at(MAGIC.len());
    if magic != MAGIC {
        return Err(invalid_data("not an object file"));
    }
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]);
    if len > MAX_HEADER_LEN {
        return Err(invalid_data("object header too long"));
    }
    let mut json = vec![0u8; len as usize];
    file.read_exact(&mut json).await?;
    let header = serde_json::from_slice(&json)?;
    Ok((header, PREAMBLE_LEN + u64::from(len)))
}

/// JSON padded with spaces (valid trailing JSON whitespace) to exactly `len` bytes.
fn padded(mut json: Vec<u8>, len: usize) -> io::Result<Vec<u8>> {
    if json.len() > len {
        return Err(invalid_data("object header outgrew its reserved space"));
    }
    json.resize(len, b' ');
    Ok(json)
}

/// S3 bucket naming rules: 3–63 of `a-z 0-9 . -`, starting and ending with a letter or digit,
/// no `..`. This also keeps names from escaping the root or clashing with `.tmp`.
fn valid_bucket_name(name: &str) -> bool {
    let b = name.as_bytes();
    let edge_ok = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    (3..=63).contains(&b.len())
        && b.iter().all(|c| edge_ok(c) || *c == b'.' || *c == b'-')
        && b.first().is_some_and(edge_ok)
        && b.last().is_some_and(edge_ok)
        && !name.contains("..")
}

fn object_file_name(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn is_object_file_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

async fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir).await?.sync_all().await
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn system_time(unix_nanos: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(unix_nanos)
}

fn invalid_data(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn invalid_input(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

#[cfg(test)]
mod tests;
