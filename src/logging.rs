//! Logging: one subscriber on stderr, filtered by `RUST_LOG` (default `info`).
//!
//! Whatever `RUST_LOG` says, targets that would log secrets or plaintext are capped (see
//! [`CAPS`]): s3s logs whole requests (with `Authorization` and `x-amz-meta-*`) at debug and the
//! signature it computed on a mismatch; h2 and the AWS SDK log headers at trace.

use tracing::Level;
use tracing_subscriber::filter::{EnvFilter, FilterExt, FilterFn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

/// Most verbose level allowed per target prefix, whatever `RUST_LOG` says; `None` silences the
/// target entirely.
pub const CAPS: &[(&str, Option<Level>)] = &[
    // Logs requests, responses and signatures at debug, and every failed request at ERROR
    // (including unauthenticated garbage); the front end logs outcomes itself.
    ("s3s", None),
    ("h2", Some(Level::INFO)),
    ("hyper", Some(Level::INFO)),
    ("hyper_util", Some(Level::INFO)),
    ("aws_smithy", Some(Level::INFO)),
    ("aws_sdk", Some(Level::INFO)),
    ("aws_config", Some(Level::INFO)),
    ("aws_sigv4", Some(Level::INFO)),
    ("aws_runtime", Some(Level::INFO)),
    ("rustls", Some(Level::INFO)),
    ("reqwest", Some(Level::INFO)),
];

/// The default filter when `RUST_LOG` is unset or invalid.
const DEFAULT_FILTER: &str = "info,aws=warn,hyper=warn";

/// Whether an event or span of `target` at `level` passes the caps.
pub fn allowed(target: &str, level: &Level) -> bool {
    for (prefix, cap) in CAPS {
        let matches = target
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::") || rest.starts_with('_'));
        if matches {
            // In tracing, a more verbose level compares greater.
            return cap.is_some_and(|cap| *level <= cap);
        }
    }
    true
}

/// Installs the subscriber: text on stderr, `RUST_LOG` capped by [`CAPS`].
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| DEFAULT_FILTER.into());
    let caps = FilterFn::new(|meta| allowed(meta.target(), meta.level()));
    let layer = fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(filter.and(caps));
    tracing_subscriber::registry().with(layer).init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_targets_stay_capped() {
        assert!(!allowed("s3s::ops::signature", &Level::ERROR));
        assert!(!allowed("s3s", &Level::DEBUG));
        assert!(!allowed("h2::frame", &Level::TRACE));
        assert!(allowed("h2::proto", &Level::INFO));
        assert!(!allowed("aws_smithy_runtime::client", &Level::DEBUG));
        assert!(allowed("escrow_proxy::server", &Level::TRACE));
        assert!(
            !allowed("s3s_fs", &Level::TRACE),
            "prefixes cover the crates named after them"
        );
        assert!(allowed("s3sx", &Level::TRACE));
    }
}
