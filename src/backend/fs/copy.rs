//! Server-side copies inside the directory store: a whole object under new metadata, its body
//! copied by the kernel (`copy_file_range` through `std::io::copy` between files), never through
//! this process's memory. What a key rewrap uses to replace an object's wrapped key.

use std::io::{self, Read, Seek, Write};
use std::path::PathBuf;
use std::time::SystemTime;

use super::{FsStore, HEADER_SLACK, Header, MAGIC, MAX_HEADER_LEN, TMP_DIR, TempFile, invalid_input};
use super::{object_file_name, padded, sync_dir, unix_nanos};
use crate::backend::{BackendError, BackendResult, Metadata, Source};

impl FsStore {
    /// Stores under `bucket`/`key` the whole object `src` with `metadata`; fails with
    /// `PreconditionFailed` when `src` no longer has the ETag it names. The ETag stays (the body
    /// is the same bytes). Returns it.
    pub(super) async fn copy_whole(
        &self,
        bucket: &str,
        key: &str,
        src: &Source,
        metadata: Metadata,
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
        let dest: PathBuf = dir.join(object_file_name(key));
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
        std::fs::rename(&tmp.0, &dest)?;
        sync_dir(&dir).await?;
        Ok(header.etag)
    }
}
