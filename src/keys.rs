//! Key files at home: the root key, the sealed keyring, secret files.
//!
//! Secret files are refused when group- or world-readable. New secret files are written 0600,
//! atomically (temp file + rename), so a crash never leaves half a key.

use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::crypto::keyring::Keyring;
use crate::secret::Key256;

/// Errors of key files.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: io::Error,
    },
    /// A secret file can be read by others than its owner.
    #[error("{0}: secret file is group- or world-readable; chmod 600 it")]
    Permissions(String),
    /// A file's content is not what it should be.
    #[error("{path}: {what}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        what: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> KeyFileError + '_ {
    move |source| KeyFileError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Reads a secret file, refusing one that group or others may read.
pub fn read_secret_file(path: &Path) -> Result<String, KeyFileError> {
    let meta = std::fs::metadata(path).map_err(io_err(path))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(KeyFileError::Permissions(path.display().to_string()));
    }
    std::fs::read_to_string(path).map_err(io_err(path))
}

/// Writes `contents` to `path` with mode 0600, atomically (replacing any file there); creates
/// parent directories.
pub fn write_private_file(path: &Path, contents: &[u8]) -> Result<(), KeyFileError> {
    let tmp = write_temp(path, contents)?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// Creates `path` with mode 0600 holding `contents`, unless it exists: never replaces a file,
/// even one another process creates at the same moment. Returns whether this call created it.
fn create_private_file(path: &Path, contents: &[u8]) -> Result<bool, KeyFileError> {
    let tmp = write_temp(path, contents)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Writes a synced 0600 temp file beside `path`.
fn write_temp(path: &Path, contents: &[u8]) -> Result<std::path::PathBuf, KeyFileError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let tmp = path.with_extension(format!("tmp-{}-{}", std::process::id(), rand::random::<u32>()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    f.write_all(contents)
        .and_then(|()| f.sync_all())
        .map_err(io_err(&tmp))?;
    Ok(tmp)
}

/// Loads the root key (64 hexadecimal characters).
pub fn load_root_key(path: &Path) -> Result<Key256, KeyFileError> {
    let mut text = read_secret_file(path)?;
    let decoded = hex::decode(text.trim());
    zeroize::Zeroize::zeroize(&mut text);
    let mut bytes = decoded.map_err(|_| invalid(path, "root key must be 64 hex characters"))?;
    let key = Key256::from_slice(&bytes).ok_or_else(|| invalid(path, "root key must be 64 hex characters"));
    zeroize::Zeroize::zeroize(&mut bytes);
    key
}

/// Loads the sealed keyring.
pub fn load_keyring(path: &Path, root: &Key256) -> Result<Keyring, KeyFileError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    Keyring::open(root, &text).map_err(|e| invalid(path, &format!("cannot open the keyring with this root key ({e})")))
}

/// Loads the root key and keyring. On a first start, when NEITHER file exists, creates both
/// (returns `true`); when only one exists, refuses: a keyring without its root key (or the
/// reverse) is a missing mount or a wrong path, and new keys would strand existing objects.
/// Creation never replaces a file, so instances starting together agree on one pair.
pub fn load_or_init(root_path: &Path, keyring_path: &Path) -> Result<(Keyring, bool), KeyFileError> {
    match (root_path.exists(), keyring_path.exists()) {
        (true, true) => {
            let root = load_root_key(root_path)?;
            Ok((load_keyring(keyring_path, &root)?, false))
        }
        (false, false) => {
            let mut text = hex::encode(Key256::random().expose());
            text.push('\n');
            let created_root = create_private_file(root_path, text.as_bytes());
            zeroize::Zeroize::zeroize(&mut text);
            let created_root = created_root?;
            let root = load_root_key(root_path)?;
            let ring = Keyring::generate(&now_rfc3339());
            let created_ring = create_private_file(keyring_path, ring.seal(&root).as_bytes())?;
            let ring = if created_ring {
                ring
            } else {
                load_keyring(keyring_path, &root)?
            };
            Ok((ring, created_root || created_ring))
        }
        (false, true) => Err(invalid(
            root_path,
            "missing, but the keyring exists: refusing to create a new root key",
        )),
        (true, false) => Err(invalid(
            keyring_path,
            "missing, but the root key exists: refusing to create a new keyring",
        )),
    }
}

/// Seals and writes the keyring.
pub fn save_keyring(path: &Path, ring: &Keyring, root: &Key256) -> Result<(), KeyFileError> {
    write_private_file(path, ring.seal(root).as_bytes())
}

fn invalid(path: &Path, what: &str) -> KeyFileError {
    KeyFileError::Invalid {
        path: path.display().to_string(),
        what: what.to_string(),
    }
}

/// The current time as RFC 3339.
pub fn now_rfc3339() -> String {
    // Invariant: formatting the current UTC time as RFC 3339 cannot fail.
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("RFC 3339 formats now")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_start_creates_both_private_and_later_starts_reload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (root, ring) = (dir.path().join("sub/root.key"), dir.path().join("sub/keyring"));
        let (first, created) = load_or_init(&root, &ring).expect("create");
        assert!(created);
        for p in [&root, &ring] {
            assert_eq!(std::fs::metadata(p).expect("meta").permissions().mode() & 0o777, 0o600);
        }
        let (again, created) = load_or_init(&root, &ring).expect("load");
        assert!(!created);
        assert_eq!(again.active().1.expose(), first.active().1.expose());
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        assert!(matches!(load_or_init(&root, &ring), Err(KeyFileError::Permissions(_))));
    }

    #[test]
    fn half_a_key_pair_is_refused_not_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (root, ring) = (dir.path().join("root.key"), dir.path().join("keyring"));
        load_or_init(&root, &ring).expect("create");
        let sealed = std::fs::read(&ring).expect("read");
        std::fs::remove_file(&root).expect("rm");
        assert!(load_or_init(&root, &ring).is_err());
        assert!(!root.exists(), "no new root key was made");
        assert_eq!(std::fs::read(&ring).expect("read"), sealed, "the keyring is untouched");
        let dir2 = tempfile::tempdir().expect("tempdir");
        let (root2, ring2) = (dir2.path().join("root.key"), dir2.path().join("keyring"));
        load_or_init(&root2, &ring2).expect("create");
        std::fs::remove_file(&ring2).expect("rm");
        assert!(load_or_init(&root2, &ring2).is_err());
        assert!(!ring2.exists());
    }

    #[test]
    fn a_keyring_needs_its_root_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (root, ring) = (dir.path().join("root.key"), dir.path().join("keyring"));
        load_or_init(&root, &ring).expect("create");
        write_private_file(&root, format!("{}\n", hex::encode([7u8; 32])).as_bytes()).expect("write");
        assert!(load_or_init(&root, &ring).is_err());
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
}
