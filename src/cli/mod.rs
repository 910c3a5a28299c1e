//! The binary's commands as library functions: `serve` (with the embedded default), `keys
//! list|rotate`, `decrypt` and `certs generate`. `main.rs` parses arguments into these calls and
//! maps [`CliError`] to an exit code with [`CliError::exit_code`].

mod admin;
mod args;
mod decrypt;
mod embedded;
mod keys;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use self::admin::{AdminAction, AdminTarget, admin};
pub use self::args::{
    AdminArgs, AdminCommand, AdminKeysCommand, CertsCommand, Cli, Command, Decrypt, KeyFiles, KeysCommand,
};
pub use self::decrypt::{DecryptArgs, WhichStore, decrypt};
pub use self::keys::{KeySource, keys_list, keys_rotate};
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
        Command::Certs(CertsCommand::Generate { out, hosts }) => certs_generate(&out, &hosts),
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
            };
            decrypt(&args, env).await
        }
    }
}

/// `serve`: the configured proxy, or without a file and `ESCROW_*` variables the embedded
/// default under `./data`. Runs until SIGINT or SIGTERM, then drains.
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
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; finishing in-flight requests"),
        _ = terminate.recv() => tracing::info!("terminated; finishing in-flight requests"),
    }
    running.stop().await;
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
