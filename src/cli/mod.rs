//! The binary's commands as library functions: `serve` (with the embedded default, and its
//! signals: SIGTERM/SIGINT drain and stop, a second one or the deadline ends it, SIGHUP reloads
//! the TLS certificate), `keys list|rotate`, `decrypt`, `certs generate`, `probe` and `mirror
//! status|reconcile`. `main.rs` parses arguments into these calls and
//! maps [`CliError`] to an exit code with [`CliError::exit_code`].

mod admin;
mod args;
mod decrypt;
mod embedded;
mod keys;
mod mirror;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use self::admin::{AdminAction, AdminTarget, admin};
pub use self::args::{
    AdminArgs, AdminCommand, AdminKeysCommand, CertsCommand, Cli, Command, Decrypt, KeyFiles, KeysCommand,
    MirrorCommand,
};
pub use self::decrypt::{DecryptArgs, WhichStore, decrypt};
pub use self::keys::{KeySource, keys_list, keys_rotate};
pub use self::mirror::{mirror_reconcile, mirror_status, open_mirror};
use crate::config::{Config, ConfigError, env_has_config};

/// Exit code for a configuration the proxy refuses (EX_USAGE).
pub const EXIT_BAD_CONFIG: u8 = 64;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The proxy could not start.
    #[error(transparent)]
    Run(#[from] crate::RunError),
    /// A key file could not be used.
    #[error(transparent)]
    Keys(#[from] crate::keys::KeyFileError),
    /// A private or secret file could not be used.
    #[error(transparent)]
    File(#[from] crate::files::FileError),
    /// Certificates could not be generated.
    #[error(transparent)]
    Tls(#[from] crate::server::tls::TlsError),
    /// An object could not be decrypted.
    #[error(transparent)]
    Decrypt(#[from] crate::decrypt::DecryptError),
    /// The keyring cannot take the change (a damaged keyring with no next version).
    #[error("keyring: {0}")]
    Keyring(#[from] crate::crypto::CryptoError),
    /// Output or signals failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The arguments or files do not fit together.
    #[error("{0}")]
    Usage(String),
    /// The work ran but left failures (or was interrupted); running it again continues.
    #[error("{0}")]
    Incomplete(String),
}

impl CliError {
    /// The process exit code: [`EXIT_BAD_CONFIG`] for a refused configuration, else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) | Self::Run(crate::RunError::Config(_)) => EXIT_BAD_CONFIG,
            _ => 1,
        }
    }
}

/// Runs one command with the process environment `env`.
pub async fn run(command: Command, env: &BTreeMap<String, String>) -> Result<(), CliError> {
    match command {
        Command::Serve { config } => serve(config.as_deref(), env).await,
        Command::Probe { url, timeout_secs } => probe(&url, std::time::Duration::from_secs(timeout_secs)).await,
        Command::Certs(CertsCommand::Generate { out, hosts }) => certs_generate(&out, &hosts),
        Command::Keys(KeysCommand::Init { keyring, root_key }) => keys_init(&keyring, &root_key),
        Command::Keys(KeysCommand::List(files)) => keys_list(&files.source(), env),
        Command::Keys(KeysCommand::Rotate(files)) => keys_rotate(&files.source(), env),
        Command::Admin(a) => {
            let target = AdminTarget::resolve(a.url, a.token_file, a.ca, a.config.as_deref(), env)?;
            admin(&target, admin_action(a.command)).await
        }
        Command::Decrypt(d) => {
            let args = DecryptArgs {
                keys: d.keys.source(),
                bucket: d.bucket,
                key: d.key,
                object: d.object,
                metadata: d.metadata,
                store: d.store,
                out: d.out,
                sse_c_key_file: d.sse_c_key_file,
            };
            decrypt(&args, env).await
        }
        Command::Mirror(MirrorCommand::Status { config }) => mirror_status(config.as_deref(), env).await,
        Command::Mirror(MirrorCommand::Reconcile {
            config,
            bucket,
            dry_run,
            start_after,
        }) => {
            let options = crate::mirror::reconcile::Options {
                bucket,
                dry_run,
                start_after,
            };
            mirror_reconcile(config.as_deref(), env, options).await
        }
    }
}

/// `serve`: the configured proxy, or without a file and `ESCROW_*` variables the embedded
/// default under `./data`. Runs until SIGINT or SIGTERM, then drains: the S3 listener keeps
/// accepting for `drain_delay_secs`, in-flight requests get `shutdown_grace_secs`, and it
/// returns `Ok` (exit 0). A second SIGINT or SIGTERM while draining returns at once. SIGHUP
/// reloads the TLS certificate and key.
pub async fn serve(file: Option<&Path>, env: &BTreeMap<String, String>) -> Result<(), CliError> {
    let embedded = file.is_none() && !env_has_config(env);
    let data = Path::new(embedded::EMBEDDED_DATA);
    let config = if embedded {
        embedded::config(data)?
    } else {
        Config::load(file, env)?
    };
    let running = crate::start(&config).await?;
    println!("endpoint: {}", running.url());
    if let Some(admin) = running.admin_url() {
        println!("admin: {admin}");
    }
    if embedded {
        embedded::print_welcome(data, &config, &running.url(), running.admin_url().as_deref());
    }
    tracing::info!(endpoint = %running.url(), admin = running.admin_url().unwrap_or_default(), "serving");
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    if config.server.limits.shutdown_endpoint {
        crate::server::shutdown::enable();
    }
    loop {
        tokio::select! {
            _ = crate::server::shutdown::requested() => {
                tracing::info!("POST /shutdown; draining");
                break;
            }
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("interrupted; draining");
                break;
            }
            _ = terminate.recv() => {
                tracing::info!("terminated; draining");
                break;
            }
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reloading the tls certificate");
                running.reload_tls();
            }
        }
    }
    // /ready answers 503 from now on, so the endpoints drain while the listener still accepts.
    running.health().set_draining();
    let limits = &config.server.limits;
    tracing::info!(
        drain_delay_secs = limits.drain_delay.as_secs(),
        shutdown_grace_secs = limits.shutdown_grace.as_secs(),
        "draining: accepting for the drain delay, then finishing in-flight requests (a second signal stops at once)"
    );
    let stop = running.stop();
    tokio::pin!(stop);
    tokio::select! {
        _ = &mut stop => tracing::info!("stopped"),
        _ = terminate.recv() => tracing::warn!("second SIGTERM: stopping now, dropping open connections"),
        _ = tokio::signal::ctrl_c() => tracing::warn!("second interrupt: stopping now, dropping open connections"),
    }
    Ok(())
}

/// `probe`: GETs `url` (plain `http://host:port/path`) and succeeds on a 2xx status.
pub async fn probe(url: &str, timeout: std::time::Duration) -> Result<(), CliError> {
    let usage = || CliError::Usage(format!("probe: `{url}` is not a URL like http://127.0.0.1:9090/live"));
    let rest = url.strip_prefix("http://").ok_or_else(usage)?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(usage());
    }
    let exchange = async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(authority).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut head = Vec::new();
        // The status line is all that matters; a health answer is small.
        stream.take(4096).read_to_end(&mut head).await?;
        Ok::<_, std::io::Error>(head)
    };
    let head = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| CliError::Usage(format!("probe: {url}: no answer within {timeout:?}")))??;
    let status_line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let status = std::str::from_utf8(status_line)
        .ok()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|code| code.parse::<u16>().ok());
    match status {
        Some(code) if (200..300).contains(&code) => {
            println!("{url}: {code}");
            Ok(())
        }
        Some(code) => Err(CliError::Usage(format!("probe: {url}: status {code}"))),
        None => Err(CliError::Usage(format!("probe: {url}: not an HTTP answer"))),
    }
}

/// `keys init`: a new root key and keyring; refuses when either file exists (it would strand the
/// objects written under the existing one).
pub fn keys_init(keyring: &Path, root_key: &Path) -> Result<(), CliError> {
    for path in [keyring, root_key] {
        if path.exists() {
            return Err(CliError::Usage(format!(
                "{}: exists; keys init never replaces keys",
                path.display()
            )));
        }
    }
    let (ring, _) = crate::keys::load_or_init(root_key, keyring)?;
    println!(
        "created {} and {} (0600; key version {} active): back both up, they are the only way to read the data",
        root_key.display(),
        keyring.display(),
        ring.active().0
    );
    Ok(())
}

/// `certs generate`: a development CA and server certificate in `out`.
pub fn certs_generate(out: &Path, hosts: &[String]) -> Result<(), CliError> {
    let files = crate::server::tls::generate_dev_certs(out, hosts)?;
    println!(
        "wrote {}, {}, {}",
        files.ca.display(),
        files.chain.display(),
        files.key.display()
    );
    Ok(())
}

/// The API call an `admin` command makes.
fn admin_action(command: AdminCommand) -> AdminAction {
    match command {
        AdminCommand::Keys(AdminKeysCommand::List) => AdminAction::KeysList,
        AdminCommand::Keys(AdminKeysCommand::Rotate) => AdminAction::KeysRotate,
        AdminCommand::Keys(AdminKeysCommand::Rewrap {
            bucket,
            prefix,
            from,
            dry_run,
            rate,
            wait,
        }) => AdminAction::KeysRewrap {
            params: serde_json::json!({
                "bucket": bucket, "prefix": prefix, "from": from, "dry_run": dry_run, "rate": rate,
            }),
            wait,
        },
        AdminCommand::Keys(AdminKeysCommand::Census { bucket, wait }) => AdminAction::KeysCensus { bucket, wait },
        AdminCommand::Keys(AdminKeysCommand::Disable { version }) => AdminAction::KeysChange {
            change: "disable",
            version,
            force: false,
        },
        AdminCommand::Keys(AdminKeysCommand::Enable { version }) => AdminAction::KeysChange {
            change: "enable",
            version,
            force: false,
        },
        AdminCommand::Keys(AdminKeysCommand::Destroy { version, force }) => AdminAction::KeysChange {
            change: "destroy",
            version,
            force,
        },
        AdminCommand::Jobs { id, wait, cancel } => AdminAction::Jobs { id, wait, cancel },
    }
}

fn display(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}
