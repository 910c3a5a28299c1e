//! Logging: one subscriber on stderr, as text or one JSON object per line ([`LogFormat`]),
//! filtered by `RUST_LOG` (default `info`; per module, e.g. `info,escrow_proxy::access=warn`).
//!
//! Whatever `RUST_LOG` says, targets that would log secrets or plaintext are capped (see
//! [`CAPS`]): s3s logs whole requests (with `Authorization` and `x-amz-meta-*`) at debug and the
//! signature it computed on a mismatch; h2 and the AWS SDK log headers at trace.

use std::sync::atomic::{AtomicU64, Ordering};

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

/// Panics seen since the process started (in any task: a connection's, a request's).
static PANICS: AtomicU64 = AtomicU64::new(0);

/// How many panics this process has seen; each was logged at error level.
pub fn panics() -> u64 {
    PANICS.load(Ordering::Relaxed)
}

/// Makes every panic one counted ERROR log line, then runs the previous hook. tokio contains a
/// panic to its task (one connection or request fails, the proxy keeps serving), so without this
/// a bug would show only as a dropped connection. The line names where the panic happened, and
/// its message only when that is a fixed string of ours: a formatted message could carry a
/// fragment of a key name or of data.
pub fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let count = PANICS.fetch_add(1, Ordering::Relaxed) + 1;
        let message = info
            .payload()
            .downcast_ref::<&'static str>()
            .copied()
            .unwrap_or("(withheld)");
        let location = info.location().map(|l| format!("{}:{}", l.file(), l.line()));
        tracing::error!(location = location.as_deref().unwrap_or("?"), message, count, "panic");
        previous(info);
    }));
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (colored on a terminal).
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields`), for log collectors.
    Json,
}

/// Installs the subscriber: `format` on stderr, `RUST_LOG` capped by [`CAPS`].
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| DEFAULT_FILTER.into());
    let caps = FilterFn::new(|meta| allowed(meta.target(), meta.level()));
    let layer = match format {
        LogFormat::Text => fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_filter(filter.and(caps))
            .boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_current_span(false)
            .with_span_list(false)
            .with_filter(filter.and(caps))
            .boxed(),
    };
    tracing_subscriber::registry().with(layer).init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_in_a_task_is_counted_and_the_runtime_goes_on() {
        install_panic_hook();
        let before = panics();
        let task = tokio::spawn(async { panic!("a fixed message") });
        assert!(task.await.is_err(), "the task failed");
        assert!(panics() > before, "the panic was counted");
        // The runtime still serves other tasks.
        assert_eq!(tokio::spawn(async { 7 }).await.expect("runs"), 7);
    }

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
