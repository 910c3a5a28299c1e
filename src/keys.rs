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

/// Writes `contents` to `path` with mode 0600, atomically; creates parent directories.
pub fn write_private_file(path: &Path, contents: &[u8]) -> Result<(), KeyFileError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    f.write_all(contents)
        .and_then(|()| f.sync_all())
        .map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// Loads the root key (64 hex characters), creating a random one if the file does not exist.
/// Returns the key and whether it was created.
pub fn load_or_create_root_key(path: &Path) -> Result<(Key256, bool), KeyFileError> {
    if !path.exists() {
        let key = Key256::random();
        let mut text = hex::encode(key.expose());
        text.push('\n');
        write_private_file(path, text.as_bytes())?;
        zeroize::Zeroize::zeroize(&mut text);
        return Ok((key, true));
    }
    let mut text = read_secret_file(path)?;
    let decoded = hex::decode(text.trim());
    zeroize::Zeroize::zeroize(&mut text);
    let mut bytes = decoded.map_err(|_| invalid(path, "root key must be 64 hex characters"))?;
    let key = Key256::from_slice(&bytes).ok_or_else(|| invalid(path, "root key must be 64 hex characters"));
    zeroize::Zeroize::zeroize(&mut bytes);
    Ok((key?, false))
}

/// Loads the sealed keyring, creating one with a single KEK if the file does not exist.
pub fn load_or_create_keyring(path: &Path, root: &Key256) -> Result<(Keyring, bool), KeyFileError> {
    if !path.exists() {
        let ring = Keyring::generate(&now_rfc3339());
        write_private_file(path, ring.seal(root).as_bytes())?;
        return Ok((ring, true));
    }
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    let ring = Keyring::open(root, &text)
        .map_err(|e| invalid(path, &format!("cannot open the keyring with this root key ({e})")))?;
    Ok((ring, false))
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
    fn root_key_is_created_private_and_reloaded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/root.key");
        let (k1, created) = load_or_create_root_key(&path).expect("create");
        assert!(created);
        assert_eq!(
            std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777,
            0o600
        );
        let (k2, created) = load_or_create_root_key(&path).expect("load");
        assert!(!created);
        assert_eq!(k1.expose(), k2.expose());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        assert!(matches!(
            load_or_create_root_key(&path),
            Err(KeyFileError::Permissions(_))
        ));
    }

    #[test]
    fn keyring_needs_its_root_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keyring");
        let root = Key256::random();
        let (ring, created) = load_or_create_keyring(&path, &root).expect("create");
        assert!(created);
        let (again, _) = load_or_create_keyring(&path, &root).expect("load");
        assert_eq!(again.active().1.expose(), ring.active().1.expose());
        assert!(load_or_create_keyring(&path, &Key256::random()).is_err());
    }
}
