//! Key files at home: the root key and the sealed keyring.
//!
//! Both are secret files ([`crate::files`]): refused when others can read them, written 0600
//! and atomically, so a crash never leaves half a key.

use std::path::Path;

use crate::files::{FileError, create_private_file, io_err, read_secret_file, write_private_file};

use crate::crypto::keyring::Keyring;
use crate::secret::Key256;

/// Errors of key files.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// A key file could not be read or written, or is readable by others.
    #[error(transparent)]
    File(#[from] FileError),
    /// A file's content is not what it should be.
    #[error("{path}: {what}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        what: String,
    },
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
    Ok(write_private_file(path, ring.seal(root).as_bytes())?)
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
    use std::os::unix::fs::PermissionsExt;

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
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(matches!(
            load_or_init(&root, &ring),
            Err(KeyFileError::File(FileError::Permissions(_)))
        ));
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
}
