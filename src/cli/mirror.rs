//! `mirror status` and `mirror reconcile`: the mirror's offline commands. They need no running
//! proxy, only the configuration (both stores and the keyring), and are safe to run while
//! proxies serve.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::CliError;
use crate::backend::health::StoreHealth;
use crate::config::Config;
use crate::mirror::reconcile::{self, Counters, Finding, Observer, Options};
use crate::mirror::{Mirror, MirrorSettings, Side};
use crate::object::KeyringSealer;

/// How long `status` waits for each store's probe (a bucket listing).
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the progress bar is redrawn.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// The configured mirror, without a drainer or probes: both stores and the keyring's sealer.
fn open(file: Option<&Path>, env: &BTreeMap<String, String>) -> Result<Arc<Mirror>, CliError> {
    open_mirror(&Config::load(file, env)?)
}

/// `config`'s mirror pair as the offline commands use it: both stores, fresh breakers, the
/// keyring's sealer; no drainer, no probes. The keyring must exist.
pub fn open_mirror(config: &Config) -> Result<Arc<Mirror>, CliError> {
    let Some(m) = &config.mirror else {
        return Err(CliError::Usage("the configuration has no [mirror]".into()));
    };
    if !config.keys.keyring.exists() {
        return Err(CliError::Usage(format!(
            "{}: no keyring here",
            config.keys.keyring.display()
        )));
    }
    let root = crate::keys::load_root_key(&config.keys.root_key_file)?;
    let keyring = crate::keys::load_keyring(&config.keys.keyring, &root)?;
    let primary = crate::build_store("primary", &config.primary)?;
    let second = crate::build_store("mirror", &m.store)?;
    let mut settings = MirrorSettings::new(m.write, m.read);
    settings.first_byte_timeout = m.first_byte_timeout;
    Ok(Mirror::new(
        (primary, StoreHealth::new("primary")),
        (second, StoreHealth::new("mirror")),
        settings,
        Arc::new(KeyringSealer::new(crate::keys::SharedKeyring::fixed(keyring))),
    ))
}

/// `mirror status`: per store, whether it answers, how many repair records it holds (changes
/// the other store still lacks) and the oldest one's age; then the backlog in total.
pub async fn mirror_status(file: Option<&Path>, env: &BTreeMap<String, String>) -> Result<(), CliError> {
    let mirror = open(file, env)?;
    let now = crate::mirror::record::now_ms();
    println!(
        "{:<8}  {:<6}  {:>7}  {:>10}  note",
        "store", "health", "records", "oldest"
    );
    let (mut total, mut oldest_all, mut complete) = (0usize, None::<u64>, true);
    for side in [Side::Primary, Side::Mirror] {
        let store = mirror.store(side);
        let probe = tokio::time::timeout(PROBE_TIMEOUT, store.list_buckets()).await;
        let down = match probe {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!("no answer within {PROBE_TIMEOUT:?}")),
        };
        if let Some(why) = down {
            complete = false;
            println!(
                "{:<8}  {:<6}  {:>7}  {:>10}  {}",
                side.name(),
                "down",
                "?",
                "?",
                one_line(&why)
            );
            continue;
        }
        match crate::mirror::repair::scan_store(&mirror, side).await {
            Ok(found) => {
                let oldest = found.iter().map(|f| f.record.at_ms).min();
                total += found.len();
                oldest_all = match (oldest_all, oldest) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                let age = oldest.map_or("-".to_string(), |at| age(now.saturating_sub(at)));
                let note = if found.is_empty() {
                    String::new()
                } else {
                    format!("changes the {} lacks", side.other().name())
                };
                println!(
                    "{:<8}  {:<6}  {:>7}  {:>10}  {note}",
                    side.name(),
                    "up",
                    found.len(),
                    age
                );
            }
            Err(e) => {
                complete = false;
                println!(
                    "{:<8}  {:<6}  {:>7}  {:>10}  records: {}",
                    side.name(),
                    "up",
                    "?",
                    "?",
                    one_line(&e.to_string())
                );
            }
        }
    }
    let oldest = oldest_all.map_or("-".to_string(), |at| age(now.saturating_sub(at)));
    let caveat = if complete {
        ""
    } else {
        " (at least: a store could not be scanned)"
    };
    println!("backlog: {total} records{caveat}, oldest {oldest}");
    Ok(())
}

/// `mirror reconcile`: one pass (see [`crate::mirror::reconcile`]); each difference is a line
/// on stdout, a progress bar on stderr when it is a terminal, a summary table at the end. Fails
/// (exit 1) when errors remain or the pass was interrupted.
pub async fn mirror_reconcile(
    file: Option<&Path>,
    env: &BTreeMap<String, String>,
    options: Options,
) -> Result<(), CliError> {
    let mirror = open(file, env)?;
    let counters = Counters::default();
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(PROGRESS_EVERY);
        bar
    });
    let observer = Printer {
        bar: bar.clone(),
        stop: Arc::new(AtomicBool::new(false)),
    };
    let stop = Arc::clone(&observer.stop);
    let interrupt = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            stop.store(true, Ordering::Release);
        }
    });
    let progress = bar.clone().map(|bar| {
        let counters = counters.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PROGRESS_EVERY);
            loop {
                tick.tick().await;
                bar.set_message(line(&counters.summary()));
            }
        })
    });
    let result = reconcile::run(&mirror, &options, &counters, &observer).await;
    interrupt.abort();
    if let Some(p) = progress {
        p.abort();
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let summary = result.map_err(|e| CliError::Incomplete(format!("reconcile: cannot list the buckets: {e}")))?;
    let what = if options.dry_run {
        " (dry run: nothing changed)"
    } else {
        ""
    };
    println!("\nreconcile summary{what}");
    for (name, value) in summary.rows() {
        println!("  {name:<9} {value:>9}");
    }
    if observer.stop.load(Ordering::Acquire) {
        return Err(CliError::Incomplete(
            "reconcile interrupted; run it again to finish".into(),
        ));
    }
    if summary.errors > 0 {
        return Err(CliError::Incomplete(format!(
            "reconcile: {} errors remain (see above); run it again once the stores answer",
            summary.errors
        )));
    }
    Ok(())
}

/// Prints each finding (above the progress bar when there is one).
struct Printer {
    bar: Option<indicatif::ProgressBar>,
    stop: Arc<AtomicBool>,
}

impl Observer for Printer {
    fn finding(&self, f: &Finding) {
        let detail = match &f.action {
            reconcile::Action::Failed(why) => format!(" ({})", one_line(why)),
            _ => String::new(),
        };
        let text = format!(
            "{:<9}  {:<7}  {:<12}  {}/{}{detail}",
            f.kind.name(),
            f.store.name(),
            f.action.name(),
            printable(&f.bucket),
            printable(&f.key)
        );
        match &self.bar {
            Some(bar) => bar.suspend(|| println!("{text}")),
            None => println!("{text}"),
        }
    }

    fn cancelled(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

fn line(s: &reconcile::Summary) -> String {
    format!(
        "scanned {} · missing {} · stale {} (rollback {}) · extra {} · copied {} · deleted {} · errors {}",
        s.scanned, s.missing, s.stale, s.rollback, s.extra, s.copied, s.deleted, s.errors
    )
}

fn age(ms: u64) -> String {
    let secs = ms / 1000;
    match secs {
        0..120 => format!("{secs}s"),
        120..7200 => format!("{}m", secs / 60),
        _ => format!("{}h", secs / 3600),
    }
}

/// A key as one terminal-safe line: control characters escaped.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn one_line(s: &str) -> String {
    printable(s)
}
