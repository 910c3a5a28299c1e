//! Key files at home: the root key and the sealed keyring, and the keyring every request reads
//! ([`SharedKeyring`]).
//!
//! Both files are secret files ([`crate::files`]): refused when others can read them, written
//! 0600 and atomically, so a crash never leaves half a key.
//!
//! Several proxies may share one keyring file (a volume every sidecar mounts). A change is a
//! read-modify-write of the latest document under a lock file (`<keyring>.lock`, created
//! exclusively): two concurrent changes never lose each other's work — the second finds the
//! lock and is told to retry ([`UpdateError::Busy`]). Every instance polls the file (a few
//! seconds) and reloads at once when a request meets a key version it does not have, or one it
//! has as disabled. A reload only ever moves to a newer generation.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::files::{FileError, create_private_file, io_err, read_secret_file, write_private_file};

use crate::backend::{BackendError, Metadata, ObjectStore, PutCondition};
use crate::crypto::CryptoError;
use crate::crypto::keyring::{Keyring, LifecycleError};
use crate::crypto::layout::KEYRING_KEY;
use crate::secret::Key256;

/// How often running proxies look for a changed keyring.
pub const KEYRING_POLL: Duration = Duration::from_secs(2);
/// Least time between two reloads forced by requests (an unknown or disabled version): a
/// client naming made-up versions cannot turn every request into a file read.
const FORCED_RELOAD_GAP: Duration = Duration::from_millis(250);
/// Largest keyring document read from a store.
const MAX_KEYRING_BYTES: usize = 4 << 20;
/// A lock file older than this was left by a crashed change and is removed.
const STALE_LOCK: Duration = Duration::from_secs(30);

/// Errors of key files.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// A key file could not be read or written, or is readable by others.
    #[error(transparent)]
    File(#[from] FileError),
    /// The shared keyring in the mirror store could not be read, written or opened.
    #[error("shared keyring: {0}")]
    Store(String),
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

/// [`load_or_init`], as the keyring a running proxy shares with its peers (changes written
/// back to `keyring_path`). Returns it and whether the files were created.
pub fn open_shared(root_path: &Path, keyring_path: &Path) -> Result<(Arc<SharedKeyring>, bool), KeyFileError> {
    let (ring, created) = load_or_init(root_path, keyring_path)?;
    let root = load_root_key(root_path)?;
    Ok((SharedKeyring::at_home(ring, keyring_path, root), created))
}

/// Where a shared keyring lives in a store: `bucket`/[`KEYRING_KEY`] of the mirror store.
#[derive(Clone)]
pub struct StoreHome {
    /// The (domestic) mirror store, raw: not through the mirror pair, never in the primary.
    pub store: Arc<dyn ObjectStore>,
    /// The bucket holding it.
    pub bucket: String,
}

/// The keyring kept in `home` (a store), with the local files as its seed and copy: the root key
/// stays a local file; the keyring at `keyring_path` seeds the store's on a first start (or is
/// created with the root key when neither exists), and is rewritten with every newer keyring
/// seen, so the offline tools read what the proxies use (destroyed versions included). When two
/// instances seed at once, one conditional write wins and the other loads it.
pub async fn open_shared_in_store(
    root_path: &Path,
    keyring_path: &Path,
    home: StoreHome,
) -> Result<(Arc<SharedKeyring>, bool), KeyFileError> {
    let store_err = |e: BackendError| KeyFileError::Store(format!("{} {}: {e}", home.store.name(), home.bucket));
    match home.store.create_bucket(&home.bucket).await {
        Ok(()) | Err(BackendError::BucketAlreadyExists { .. }) => {}
        Err(e) => return Err(store_err(e)),
    }
    let (text, created) = match read_store_keyring(&home).await.map_err(store_err)? {
        Some((text, _)) => (text, false),
        None => {
            let (ring, created) = load_or_init(root_path, keyring_path)?;
            let root = load_root_key(root_path)?;
            let text = ring.seal(&root);
            let put = home
                .store
                .put_small_if(
                    &home.bucket,
                    KEYRING_KEY,
                    bytes::Bytes::from(text.clone()),
                    Metadata::new(),
                    PutCondition::Absent,
                )
                .await;
            match put {
                Ok(_) => {
                    tracing::info!(store = home.store.name(), bucket = %home.bucket, "the shared keyring now lives in the mirror store");
                    (text, created)
                }
                // Another instance seeded it first: use theirs.
                Err(BackendError::PreconditionFailed) => match read_store_keyring(&home).await.map_err(store_err)? {
                    Some((text, _)) => (text, false),
                    None => return Err(KeyFileError::Store("the shared keyring vanished while seeding".into())),
                },
                Err(e) => return Err(store_err(e)),
            }
        }
    };
    let root = load_root_key(root_path)?;
    let ring = Keyring::open(&root, &text).map_err(|e| {
        KeyFileError::Store(format!(
            "the shared keyring in {} {} does not open with {} ({e})",
            home.store.name(),
            home.bucket,
            root_path.display()
        ))
    })?;
    write_private_file(keyring_path, text.as_bytes())?;
    let shared = Arc::new(SharedKeyring {
        current: ArcSwap::from_pointee(ring),
        home: Some(Home {
            file: keyring_path.to_path_buf(),
            root,
            store: Some(home),
        }),
        last_forced: Mutex::new(None),
    });
    Ok((shared, created))
}

/// The shared keyring's text and ETag in its store, or `None` when there is none yet.
async fn read_store_keyring(home: &StoreHome) -> Result<Option<(String, String)>, BackendError> {
    let got = match home.store.get_object(&home.bucket, KEYRING_KEY, None, None).await {
        Ok(got) => got,
        Err(BackendError::NoSuchKey) => return Ok(None),
        Err(e) => return Err(e),
    };
    let etag = got.head.etag.clone();
    let bytes = crate::backend::read_small(got.body, MAX_KEYRING_BYTES)
        .await
        .map_err(BackendError::Body)?;
    let text = String::from_utf8(bytes).map_err(|_| BackendError::InvalidArgument("the shared keyring is not text"))?;
    Ok(Some((text, etag)))
}

/// Seals and writes the keyring.
pub fn save_keyring(path: &Path, ring: &Keyring, root: &Key256) -> Result<(), KeyFileError> {
    Ok(write_private_file(path, ring.seal(root).as_bytes())?)
}

/// Why a keyring change did not happen.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// Another change is being written right now; retry (the API answers 409).
    #[error("the keyring is being changed by another request or instance; retry")]
    Busy,
    /// The change itself was refused (the active version, a destroyed version, …).
    #[error(transparent)]
    Refused(#[from] LifecycleError),
    /// The keyring cannot take the change (no next version).
    #[error("keyring: {0}")]
    Crypto(#[from] CryptoError),
    /// This keyring has no home to write to (a fixed keyring in tests or offline tools).
    #[error("this keyring cannot be changed here")]
    ReadOnly,
    /// The keyring file could not be read or written.
    #[error(transparent)]
    File(#[from] KeyFileError),
}

/// The keyring the proxy works with: swapped in place when it changes, read per request.
pub struct SharedKeyring {
    current: ArcSwap<Keyring>,
    home: Option<Home>,
    last_forced: Mutex<Option<Instant>>,
}

/// Where a shared keyring is kept: the local file (the only place, or the copy of the store's).
struct Home {
    file: PathBuf,
    root: Key256,
    store: Option<StoreHome>,
}

impl std::fmt::Debug for SharedKeyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedKeyring")
            .field("generation", &self.current.load().generation())
            .finish_non_exhaustive()
    }
}

impl SharedKeyring {
    /// A keyring that never changes (tests, offline tools).
    pub fn fixed(ring: Keyring) -> Arc<Self> {
        Arc::new(Self {
            current: ArcSwap::from_pointee(ring),
            home: None,
            last_forced: Mutex::new(None),
        })
    }

    /// The keyring at `path`, sealed by `root`, as loaded.
    pub fn at_home(ring: Keyring, path: &Path, root: Key256) -> Arc<Self> {
        Arc::new(Self {
            current: ArcSwap::from_pointee(ring),
            home: Some(Home {
                file: path.to_path_buf(),
                root,
                store: None,
            }),
            last_forced: Mutex::new(None),
        })
    }

    /// The current keyring (cheap; hold it for one request).
    pub fn load(&self) -> Arc<Keyring> {
        self.current.load_full()
    }

    /// Installs `ring` if it is newer than the current one; returns whether it was.
    fn install(&self, ring: Keyring) -> bool {
        let current = self.current.load();
        if ring.generation() <= current.generation() {
            return false;
        }
        tracing::info!(
            generation = ring.generation(),
            active = ring.active().0,
            "keyring changed; now in use"
        );
        metrics::counter!("escrow_keyring_reloads_total").increment(1);
        metrics::gauge!("escrow_keyring_generation").set(ring.generation() as f64);
        self.current.store(Arc::new(ring));
        true
    }

    /// Reads the keyring at home and installs it if newer. Returns whether it changed.
    pub async fn reload(&self) -> Result<bool, KeyFileError> {
        let Some(home) = &self.home else {
            return Ok(false);
        };
        let path = &home.file;
        let text = match &home.store {
            None => tokio::fs::read_to_string(path).await.map_err(io_err(path))?,
            Some(store) => match read_store_keyring(store).await {
                Ok(Some((text, _))) => text,
                Ok(None) => {
                    return Err(KeyFileError::Store(
                        "the shared keyring is missing from the store".into(),
                    ));
                }
                Err(e) => return Err(KeyFileError::Store(e.to_string())),
            },
        };
        match Keyring::peek_generation(&text) {
            Some(g) if g <= self.current.load().generation() => return Ok(false),
            _ => {}
        }
        let ring =
            Keyring::open(&home.root, &text).map_err(|e| invalid(path, &format!("cannot open the keyring ({e})")))?;
        Ok(self.install_text(ring, &text).await)
    }

    /// [`SharedKeyring::install`], and for a keyring kept in a store, the local copy rewritten
    /// (best effort: the store's is the one that counts).
    async fn install_text(&self, ring: Keyring, text: &str) -> bool {
        let generation = ring.generation();
        if !self.install(ring) {
            return false;
        }
        if let Some(Home {
            file, store: Some(_), ..
        }) = &self.home
        {
            let (file, text) = (file.clone(), text.to_string());
            let written = tokio::task::spawn_blocking(move || write_private_file(&file, text.as_bytes())).await;
            if !matches!(written, Ok(Ok(()))) {
                tracing::warn!(generation, "could not refresh the local copy of the shared keyring");
            }
        }
        true
    }

    /// A reload a request asks for when it met a version the keyring does not have or has as
    /// disabled; at most one per [`FORCED_RELOAD_GAP`]. Returns whether the keyring changed.
    pub async fn reload_for(&self, version: u32) -> bool {
        {
            let mut last = self.last_forced.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed() < FORCED_RELOAD_GAP) {
                return false;
            }
            *last = Some(Instant::now());
        }
        match self.reload().await {
            Ok(changed) => changed,
            Err(e) => {
                tracing::warn!(version, error = %e, "keyring reload failed");
                false
            }
        }
    }

    /// Polls the keyring at home every `every` until the task is aborted.
    pub fn watch(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = this.reload().await {
                    tracing::warn!(error = %e, "keyring poll failed; keeping the current keyring");
                }
            }
        })
    }

    /// Changes the keyring: applies `change` to the latest document at home under its lock,
    /// writes it, installs it here, and returns the new keyring with `change`'s result.
    pub async fn update<T: Send + 'static>(
        self: &Arc<Self>,
        change: impl FnOnce(&mut Keyring) -> Result<T, UpdateError> + Send + 'static,
    ) -> Result<(Arc<Keyring>, T), UpdateError> {
        if let Some(Home {
            root,
            store: Some(store),
            ..
        }) = &self.home
        {
            let (ring, text, out) = update_in_store(store, root, change).await?;
            self.install_text(ring, &text).await;
            return Ok((self.load(), out));
        }
        let this = Arc::clone(self);
        let (ring, out) = tokio::task::spawn_blocking(move || this.update_blocking(change))
            .await
            .map_err(|_| UpdateError::Crypto(CryptoError::Format("keyring update task failed")))??;
        self.install(ring);
        Ok((self.load(), out))
    }

    fn update_blocking<T>(
        &self,
        change: impl FnOnce(&mut Keyring) -> Result<T, UpdateError>,
    ) -> Result<(Keyring, T), UpdateError> {
        let Some(home) = &self.home else {
            return Err(UpdateError::ReadOnly);
        };
        update_keyring_file(&home.file, &home.root, change)
    }
}

/// A change of the keyring kept in a store: read it with its ETag, change it, write it back
/// only if the ETag still holds ([`PutCondition::Matches`]); a concurrent change makes it
/// [`UpdateError::Busy`].
async fn update_in_store<T>(
    home: &StoreHome,
    root: &Key256,
    change: impl FnOnce(&mut Keyring) -> Result<T, UpdateError>,
) -> Result<(Keyring, String, T), UpdateError> {
    let store_err = |e: BackendError| UpdateError::File(KeyFileError::Store(e.to_string()));
    let (text, etag) = read_store_keyring(home).await.map_err(store_err)?.ok_or_else(|| {
        UpdateError::File(KeyFileError::Store(
            "the shared keyring is missing from the store".into(),
        ))
    })?;
    let mut ring = Keyring::open(root, &text)?;
    let out = change(&mut ring)?;
    let sealed = ring.seal(root);
    match home
        .store
        .put_small_if(
            &home.bucket,
            KEYRING_KEY,
            bytes::Bytes::from(sealed.clone()),
            Metadata::new(),
            PutCondition::Matches(etag),
        )
        .await
    {
        // Read back: a store whose conditional write is a check-then-write (not atomic, like
        // s3s-fs) can let a concurrent writer's document land after ours; that change was not
        // kept, so it is reported as busy rather than done.
        Ok(_) => match read_store_keyring(home).await.map_err(store_err)? {
            Some((now, _)) if now == sealed => Ok((ring, sealed, out)),
            _ => {
                tracing::warn!("a concurrent keyring write replaced this one; the change is refused");
                Err(UpdateError::Busy)
            }
        },
        Err(BackendError::PreconditionFailed) => Err(UpdateError::Busy),
        Err(e) => Err(store_err(e)),
    }
}

/// Applies `change` to the latest keyring at `path` under its lock file and writes it back;
/// [`UpdateError::Busy`] when another change holds the lock.
pub fn update_keyring_file<T>(
    path: &Path,
    root: &Key256,
    change: impl FnOnce(&mut Keyring) -> Result<T, UpdateError>,
) -> Result<(Keyring, T), UpdateError> {
    let _lock = LockFile::take(path)?;
    let mut ring = load_keyring(path, root)?;
    let out = change(&mut ring)?;
    save_keyring(path, &ring, root)?;
    Ok((ring, out))
}

/// `<keyring>.lock`, held while one change is written; removed on drop.
struct LockFile(PathBuf);

impl LockFile {
    fn take(keyring: &Path) -> Result<Self, UpdateError> {
        let path = PathBuf::from(format!("{}.lock", keyring.display()));
        for _ in 0..2 {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(_) => return Ok(Self(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let age = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok());
                    if age.is_some_and(|a| a > STALE_LOCK) {
                        tracing::warn!(lock = %path.display(), "removing a stale keyring lock");
                        let _ = std::fs::remove_file(&path);
                        continue;
                    }
                    return Err(UpdateError::Busy);
                }
                Err(e) => return Err(KeyFileError::File(io_err(&path)(e)).into()),
            }
        }
        Err(UpdateError::Busy)
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
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
