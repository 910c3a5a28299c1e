//! Files only their owner may read: the one writer of private (0600) files and the reader of
//! secret files. Keys, generated credentials, the dev certificate's key and offline-decrypted
//! plaintext all go through [`PrivateFile`]; nothing else in the crate opens a file for secrets.
//!
//! A private file is written to a 0600 temp file beside its destination and renamed into place
//! only on [`PrivateFile::commit`]: a crash or a failed write never leaves half a key (or half a
//! plaintext) under the final name. Secret files are refused when others can read them (see
//! `private_enough` for the one group case allowed).

use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Errors of private and secret files.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: io::Error,
    },
    /// A secret file can be read by others than its owner.
    #[error("{0}: secret file is readable by others than its owner; chmod 600 it")]
    Permissions(String),
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> FileError + '_ {
    move |source| FileError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Reads a secret file, refusing one that others may read (see [`private_enough`]).
pub fn read_secret_file(path: &Path) -> Result<String, FileError> {
    let meta = std::fs::metadata(path).map_err(io_err(path))?;
    if !private_enough(meta.permissions().mode(), meta.uid()) {
        return Err(FileError::Permissions(path.display().to_string()));
    }
    std::fs::read_to_string(path).map_err(io_err(path))
}

/// Whether a secret file with `mode`, owned by `owner`, is private enough: only its owner may
/// read it (0600, 0400) — or, for a file owned by root, also its group, read-only (0640, 0440):
/// that is how Kubernetes mounts a Secret for a non-root container under `fsGroup`, and only
/// root (who can read everything anyway) chose that group.
fn private_enough(mode: u32, owner: u32) -> bool {
    let (group, others) = (mode & 0o070, mode & 0o007);
    others == 0 && (group == 0 || (owner == 0 && group & 0o020 == 0))
}

/// A 0600 file being written: a temp file beside `dest` until [`commit`](Self::commit); dropped
/// without a commit, the temp file is removed.
pub struct PrivateFile {
    dest: PathBuf,
    tmp: PathBuf,
    file: Option<std::fs::File>,
}

impl PrivateFile {
    /// Starts a private file for `dest`, creating parent directories.
    pub fn create(dest: &Path) -> Result<Self, FileError> {
        if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dest.with_file_name(format!(".{name}.tmp-{}-{}", std::process::id(), rand::random::<u32>()));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        Ok(Self {
            dest: dest.to_path_buf(),
            tmp,
            file: Some(file),
        })
    }

    /// Syncs the temp file and renames it to the destination (replacing any file there).
    pub fn commit(mut self) -> Result<(), FileError> {
        self.sync()?;
        std::fs::rename(&self.tmp, &self.dest).map_err(io_err(&self.dest))?;
        self.file = None;
        Ok(())
    }

    /// Syncs the temp file and links it to the destination unless a file is there already: never
    /// replaces one, even one another process creates at the same moment. Returns whether this
    /// call created it.
    pub fn commit_new(mut self) -> Result<bool, FileError> {
        self.sync()?;
        let linked = std::fs::hard_link(&self.tmp, &self.dest);
        match linked {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(io_err(&self.dest)(e)),
        }
        // Drop removes the temp name.
    }

    fn sync(&mut self) -> Result<(), FileError> {
        let tmp = self.tmp.clone();
        match self.file.as_mut() {
            Some(f) => f.flush().and_then(|()| f.sync_all()).map_err(io_err(&tmp)),
            None => Ok(()),
        }
    }
}

impl Write for PrivateFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.file.as_mut() {
            Some(f) => f.write(buf),
            None => Err(io::Error::other("private file already committed")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for PrivateFile {
    fn drop(&mut self) {
        if self.file.take().is_some() || self.tmp.exists() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes `contents` to `path` with mode 0600, atomically (replacing any file there); creates
/// parent directories.
pub fn write_private_file(path: &Path, contents: &[u8]) -> Result<(), FileError> {
    let mut file = PrivateFile::create(path)?;
    file.write_all(contents).map_err(io_err(path))?;
    file.commit()
}

/// Creates `path` with mode 0600 holding `contents`, unless it exists (see
/// [`PrivateFile::commit_new`]). Returns whether this call created it.
pub fn create_private_file(path: &Path, contents: &[u8]) -> Result<bool, FileError> {
    let mut file = PrivateFile::create(path)?;
    file.write_all(contents).map_err(io_err(path))?;
    file.commit_new()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).expect("meta").permissions().mode() & 0o777
    }

    #[test]
    fn committed_files_are_private_and_uncommitted_ones_vanish() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/secret");
        write_private_file(&path, b"one").expect("write");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(std::fs::read(&path).expect("read"), b"one");
        let mut partial = PrivateFile::create(&path).expect("create");
        partial.write_all(b"half").expect("write");
        drop(partial);
        assert_eq!(
            std::fs::read(&path).expect("read"),
            b"one",
            "an uncommitted file replaces nothing"
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("sub")).expect("ls").count(),
            1,
            "no temp left"
        );
    }

    #[test]
    fn creation_never_replaces() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        assert!(create_private_file(&path, b"one").expect("create"));
        assert!(!create_private_file(&path, b"two").expect("exists"));
        assert_eq!(std::fs::read(&path).expect("read"), b"one");
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("ls").count(),
            1,
            "no temp files left"
        );
    }

    #[test]
    fn readable_secrets_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s");
        write_private_file(&path, b"x").expect("write");
        assert_eq!(read_secret_file(&path).expect("read"), "x");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(matches!(read_secret_file(&path), Err(FileError::Permissions(_))));
    }
}

#[cfg(test)]
mod permission_tests {
    use super::private_enough;

    #[test]
    fn only_owner_or_roots_read_only_group_may_read_a_secret() {
        for mode in [0o600, 0o400] {
            assert!(private_enough(mode, 1000) && private_enough(mode, 0), "{mode:o}");
        }
        // A Kubernetes Secret under fsGroup: root-owned, group read-only.
        assert!(private_enough(0o440, 0) && private_enough(0o640, 0));
        // The same mode on a file a user owns: the user chose to share it.
        assert!(!private_enough(0o440, 1000) && !private_enough(0o640, 1000));
        // Group write, or anything for others: never.
        for (mode, owner) in [(0o660, 0), (0o604, 0), (0o644, 0), (0o444, 0), (0o606, 1000)] {
            assert!(!private_enough(mode, owner), "{mode:o} owned by {owner}");
        }
    }
}
