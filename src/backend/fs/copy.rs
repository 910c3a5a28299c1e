//! Server-side copies inside the directory store: a whole object under new metadata, its body
//! copied by the kernel (`copy_file_range` through `std::io::copy` between files), never through
//! this process's memory. What a key rewrap uses to replace an object's wrapped key, on the
//! condition that the object is still the one it read ([`FsStore::copy_whole`] with a
//! [`PutCondition`], committed under the key's lock like every conditional write).

use std::io::{self, Read, Seek, Write};
use std::path::PathBuf;
use std::time::SystemTime;

use super::{FsStore, HEADER_SLACK, Header, MAGIC, MAX_HEADER_LEN, TMP_DIR, TempFile, invalid_input};
use super::{object_file_name, padded, sync_dir, unix_nanos};
use crate::backend::{BackendError, BackendResult, Metadata, PutCondition, Source};

impl FsStore {
    /// Stores under `bucket`/`key` the whole object `src` with `metadata`; fails with
    /// `PreconditionFailed` when `src` no longer has the ETag it names. The ETag stays (the body
    /// is the same bytes). Returns it. With `condition`, the copy is committed only if the
    /// destination still meets it, checked under the key's lock ([`FsStore::commit_locked`]).
    pub(super) async fn copy_whole(
        &self,
        bucket: &str,
        key: &str,
        src: &Source,
        metadata: Metadata,
        condition: Option<PutCondition>,
    ) -> BackendResult<String> {
        let dir = self.existing_bucket(bucket).await?;
        let (file, header, body_offset) = self.open_object(&src.bucket, &src.key).await?;
        if src.etag.as_deref().is_some_and(|e| e.trim_matches('"') != header.etag) {
            return Err(BackendError::PreconditionFailed);
        }
        if src.range.start != 0 || src.range.end != header.size {
            return Err(BackendError::InvalidArgument("not a whole-object copy"));
        }
        let tmp = TempFile(self.root.join(TMP_DIR).join(format!("{:032x}", rand::random::<u128>())));
        let new = Header {
            key: key.to_owned(),
            metadata,
            etag: header.etag.clone(),
            last_modified_unix_nanos: unix_nanos(SystemTime::now()),
            size: header.size,
        };
        let mut source = file.into_std().await;
        let tmp_path = tmp.0.clone();
        tokio::task::spawn_blocking(move || -> io::Result<()> {
            let json = serde_json::to_vec(&new).map_err(io::Error::from)?;
            let reserved = json.len() + HEADER_SLACK;
            let reserved_u32 = u32::try_from(reserved)
                .ok()
                .filter(|n| *n <= MAX_HEADER_LEN)
                .ok_or_else(|| invalid_input("object metadata too large"))?;
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp_path)?;
            out.write_all(MAGIC)?;
            out.write_all(&reserved_u32.to_be_bytes())?;
            out.write_all(&padded(json, reserved)?)?;
            source.seek(io::SeekFrom::Start(body_offset))?;
            let copied = io::copy(&mut (&mut source).take(new.size), &mut out)?;
            if copied != new.size {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "object shrank while copied",
                ));
            }
            out.sync_all()
        })
        .await
        .map_err(|_| io::Error::other("copy task failed"))??;
        self.commit(&dir, bucket, key, &tmp, condition).await?;
        Ok(header.etag)
    }
}

/// A lock file older than this was left by a crash and is taken over.
const STALE_LOCK: std::time::Duration = std::time::Duration::from_secs(30);

/// `<root>/.tmp/<object file>.lock`, removed on drop.
struct Lock(PathBuf);

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl FsStore {
    /// [`ObjectStore::put_object_if`](crate::backend::ObjectStore::put_object_if) with a
    /// condition: the body is written to a temp file outside the lock; the check and the rename
    /// happen under one lock file, exclusive among every process sharing this directory, so the
    /// lock is held for a few system calls, never for an upload.
    pub(super) async fn put_locked(
        &self,
        bucket: &str,
        key: &str,
        body: crate::backend::ByteStream,
        len: u64,
        metadata: Metadata,
        condition: PutCondition,
    ) -> BackendResult<String> {
        let dir = self.existing_bucket(bucket).await?;
        let tmp = TempFile(self.root.join(TMP_DIR).join(format!("{:032x}", rand::random::<u128>())));
        let etag = self.write_temp(&tmp.0, key, body, len, metadata).await?;
        self.commit(&dir, bucket, key, &tmp, Some(condition)).await?;
        Ok(etag)
    }

    /// Renames the finished temp file `tmp` into place as `key`, under the key's lock file, so
    /// that a conditional write's check and rename see no other commit in between. With
    /// `condition`, only if it holds, and a lock still held by another writer after
    /// [`LOCK_WAIT`] answers `ConditionalConflict`; a plain write is never refused for the lock
    /// and commits without it after that wait (a lock left by a crash, until it is taken over).
    pub(super) async fn commit(
        &self,
        dir: &std::path::Path,
        bucket: &str,
        key: &str,
        tmp: &TempFile,
        condition: Option<PutCondition>,
    ) -> BackendResult<()> {
        use crate::backend::ObjectStore as _;
        let path = self
            .root
            .join(TMP_DIR)
            .join(format!("{}.{bucket}.lock", object_file_name(key)));
        let lock = take_lock(&path).await;
        let Some(condition) = condition else {
            if lock.is_err() {
                tracing::warn!(
                    bucket,
                    "fs store: a key's lock is held past the wait; committing a plain write without it"
                );
            }
            return self.rename_into(dir, tmp, key).await;
        };
        let _lock = lock?;
        let current = match self.head_object(bucket, key).await {
            Ok(head) => Some(head.etag),
            Err(BackendError::NoSuchKey) => None,
            Err(e) => return Err(e),
        };
        let holds = match (&condition, &current) {
            (PutCondition::Absent, None) => true,
            (PutCondition::Matches(want), Some(have)) => want.trim_matches('"') == have,
            _ => false,
        };
        if !holds {
            return Err(BackendError::PreconditionFailed);
        }
        self.rename_into(dir, tmp, key).await
    }

    /// Renames `tmp` to `key`'s object file in `dir` and syncs the directory.
    async fn rename_into(&self, dir: &std::path::Path, tmp: &TempFile, key: &str) -> BackendResult<()> {
        match tokio::fs::rename(&tmp.0, dir.join(object_file_name(key))).await {
            Ok(()) => {}
            // The bucket was deleted while we wrote.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(BackendError::NoSuchBucket),
            Err(e) => return Err(e.into()),
        }
        sync_dir(dir).await?;
        Ok(())
    }
}

/// How long a conditional write waits for another to release the key's lock (held for a check
/// and a rename, so normally microseconds) before answering `ConditionalConflict`.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// Pause between attempts to take a held lock.
const LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(2);

/// Takes the lock file at `path`, waiting up to [`LOCK_WAIT`] for another holder.
async fn take_lock(path: &std::path::Path) -> BackendResult<Lock> {
    let deadline = tokio::time::Instant::now() + LOCK_WAIT;
    loop {
        match try_lock(path) {
            Err(BackendError::ConditionalConflict) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(LOCK_RETRY).await;
            }
            other => return other,
        }
    }
}

fn try_lock(path: &std::path::Path) -> BackendResult<Lock> {
    for _ in 0..2 {
        match std::fs::OpenOptions::new().write(true).create_new(true).open(path) {
            Ok(_) => return Ok(Lock(path.to_path_buf())),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let age = std::fs::metadata(path)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok());
                if age.is_some_and(|a| a > STALE_LOCK) {
                    let _ = std::fs::remove_file(path);
                    continue;
                }
                // Another writer holds it.
                return Err(BackendError::ConditionalConflict);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(BackendError::ConditionalConflict)
}
