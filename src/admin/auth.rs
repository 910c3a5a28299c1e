//! The admin bearer token: read from a 0600 file, at least [`MIN_TOKEN_BYTES`] long, compared
//! in constant time; failed attempts are rate-limited for everyone (the listener is loopback
//! by default, so a guesser is a local process).

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;

use super::AdminError;
use crate::files::read_secret_file;
use crate::secret::SecretString;

/// Shortest token accepted, in bytes.
pub const MIN_TOKEN_BYTES: usize = 32;
/// Failed attempts allowed per [`FAILURE_WINDOW`] before every attempt is refused with 429
/// until the window ends.
const MAX_FAILURES: u32 = 10;
const FAILURE_WINDOW: Duration = Duration::from_secs(10);

/// The admin token and the failure counter.
pub struct TokenCheck {
    token: SecretString,
    failures: Mutex<Window>,
}

struct Window {
    started: Instant,
    count: u32,
}

/// The outcome of checking a request's `Authorization` header.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The token matches.
    Allowed,
    /// Missing or wrong token (401).
    Denied,
    /// Too many recent failures: refused without checking (429), for this many seconds.
    Throttled(u64),
}

impl std::fmt::Debug for TokenCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCheck(<redacted>)")
    }
}

impl TokenCheck {
    /// Reads the token from `path` (0600, trimmed, at least [`MIN_TOKEN_BYTES`]).
    pub fn from_file(path: &Path) -> Result<Self, AdminError> {
        let text = SecretString::new(read_secret_file(path)?);
        let token = text.expose().trim();
        if token.len() < MIN_TOKEN_BYTES {
            return Err(AdminError::Token(format!(
                "{}: the admin token must be at least {MIN_TOKEN_BYTES} bytes",
                path.display()
            )));
        }
        Ok(Self::new(SecretString::new(token.to_string())))
    }

    /// A check against `token`.
    pub fn new(token: SecretString) -> Self {
        Self {
            token,
            failures: Mutex::new(Window {
                started: Instant::now(),
                count: 0,
            }),
        }
    }

    /// Checks an `Authorization` header value (`Bearer <token>`).
    pub fn check(&self, authorization: Option<&[u8]>) -> Verdict {
        let mut window = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if window.started.elapsed() >= FAILURE_WINDOW {
            window.started = Instant::now();
            window.count = 0;
        }
        if window.count >= MAX_FAILURES {
            let left = FAILURE_WINDOW.saturating_sub(window.started.elapsed());
            return Verdict::Throttled(left.as_secs().max(1));
        }
        let presented = authorization
            .and_then(|h| h.strip_prefix(b"Bearer "))
            .unwrap_or_default();
        if bool::from(presented.ct_eq(self.token.expose().as_bytes())) {
            Verdict::Allowed
        } else {
            window.count += 1;
            Verdict::Denied
        }
    }

    /// A short, stable, non-secret name of the token for audit lines: the first 8 hex digits
    /// of its SHA-256.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        hex::encode(&sha2::Sha256::digest(self.token.expose().as_bytes())[..4])
    }
}

/// A fresh random token (64 hex digits) for the embedded default.
pub fn generate_token() -> SecretString {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    let token = SecretString::new(hex::encode(bytes));
    zeroize::Zeroize::zeroize(&mut bytes);
    token
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn only_the_exact_bearer_token_passes() {
        let check = TokenCheck::new(SecretString::new(TOKEN.into()));
        assert_eq!(
            check.check(Some(format!("Bearer {TOKEN}").as_bytes())),
            Verdict::Allowed
        );
        assert_eq!(check.check(None), Verdict::Denied);
        assert_eq!(check.check(Some(TOKEN.as_bytes())), Verdict::Denied);
        assert_eq!(
            check.check(Some(format!("Bearer {TOKEN}x").as_bytes())),
            Verdict::Denied
        );
        assert_eq!(
            check.check(Some(format!("Bearer {}", &TOKEN[..31]).as_bytes())),
            Verdict::Denied
        );
        assert_eq!(check.check(Some(b"Bearer ")), Verdict::Denied);
    }

    #[test]
    fn failures_are_throttled_even_for_the_right_token() {
        let check = TokenCheck::new(SecretString::new(TOKEN.into()));
        for _ in 0..MAX_FAILURES {
            assert_eq!(check.check(Some(b"Bearer wrong")), Verdict::Denied);
        }
        assert!(matches!(
            check.check(Some(format!("Bearer {TOKEN}").as_bytes())),
            Verdict::Throttled(_)
        ));
    }

    #[test]
    fn short_or_shared_token_files_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let short = dir.path().join("short");
        std::fs::write(&short, "too-short\n").expect("write");
        std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(TokenCheck::from_file(&short).is_err());
        let shared = dir.path().join("shared");
        std::fs::write(&shared, TOKEN).expect("write");
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(TokenCheck::from_file(&shared).is_err());
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let check = TokenCheck::from_file(&shared).expect("a 32-byte 0600 token");
        assert_eq!(
            check.check(Some(format!("Bearer {TOKEN}").as_bytes())),
            Verdict::Allowed
        );
        assert!(!format!("{check:?}").contains(TOKEN));
    }
}
