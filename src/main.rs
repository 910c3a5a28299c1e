//! `escrow-proxy`: parse the command line, set up logging, call the library.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use escrow_proxy::config::{ClientConfig, Config, env_has_config};
use escrow_proxy::secret::SecretString;

/// An AWS CLI configuration for the embedded default: path-style addressing.
const AWS_CLI_CONFIG: &str = "aws-cli.conf";
/// Where the embedded default keeps everything, relative to the working directory.
const EMBEDDED_DATA: &str = "data";
const AWS_CLI_CONFIG_TEXT: &str = "[default]\nregion = us-east-1\ns3 =\n  addressing_style = path\n";

/// Exit code for a configuration the proxy refuses (EX_USAGE).
const EXIT_BAD_CONFIG: u8 = 64;

/// An encrypting, mirroring S3 gateway: point S3 clients at it; the store behind it only ever
/// sees ciphertext.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the S3 endpoint. Without --config (and no ESCROW_* variables) it runs the embedded
    /// default: https://127.0.0.1:8443, stores under ./data, a dev certificate, printed
    /// credentials.
    Serve {
        /// TOML configuration file; ESCROW_<SECTION>__<KEY> variables override it.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Development certificates.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Inspect or rotate the keyring (offline; restart proxies to pick up a rotation).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Decrypt one object without a running proxy (the offline exit path).
    Decrypt(DecryptArgs),
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Generate a development CA (ca.pem) and a server certificate (server.pem, server-key.pem)
    /// for localhost, 127.0.0.1, ::1 and any --host.
    Generate {
        /// Output directory.
        #[arg(long, default_value = "certs")]
        out: PathBuf,
        /// Extra DNS names or IP addresses for the certificate.
        #[arg(long = "host")]
        hosts: Vec<String>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// List key versions and their states (never key material).
    List(KeyFiles),
    /// Add a new key version and make it active for new writes; old versions keep decrypting.
    Rotate(KeyFiles),
}

#[derive(clap::Args)]
struct KeyFiles {
    /// Configuration file naming [keys]; or give --keyring and --root-key.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Sealed keyring file.
    #[arg(long, conflicts_with = "config", requires = "root_key")]
    keyring: Option<PathBuf>,
    /// Root key file (0600).
    #[arg(long, conflicts_with = "config", requires = "keyring")]
    root_key: Option<PathBuf>,
}

#[derive(clap::Args)]
struct DecryptArgs {
    #[command(flatten)]
    keys: KeyFiles,
    /// Bucket the object was written to (it is bound into the object's key wrapping).
    #[arg(long)]
    bucket: String,
    /// Object key.
    #[arg(long)]
    key: String,
    /// A stored object file: the raw object as any store returns it (`aws s3api get-object`
    /// run directly against the store; needs --metadata), or an object file of an fs store.
    /// Without it, the object is fetched from the configured store (see --store).
    #[arg(long)]
    object: Option<PathBuf>,
    /// The stored object's metadata as JSON (`aws s3api head-object` output, or a flat map).
    #[arg(long, requires = "object")]
    metadata: Option<PathBuf>,
    /// Which configured store to fetch from when --object is not given.
    #[arg(long, value_enum, default_value = "primary")]
    store: WhichStore,
    /// Where to write the plaintext ("-" for stdout).
    #[arg(long, short, default_value = "-")]
    out: PathBuf,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum WhichStore {
    Primary,
    Mirror,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,aws=warn,hyper=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            let bad_config = e.chain().any(|c| {
                c.downcast_ref::<escrow_proxy::config::ConfigError>().is_some()
                    || matches!(
                        c.downcast_ref::<escrow_proxy::RunError>(),
                        Some(escrow_proxy::RunError::Config(_))
                    )
            });
            ExitCode::from(if bad_config { EXIT_BAD_CONFIG } else { 1 })
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    let env: BTreeMap<String, String> = std::env::vars().collect();
    match command {
        Command::Serve { config } => serve(config.as_deref(), &env).await,
        Command::Certs {
            command: CertsCommand::Generate { out, hosts },
        } => {
            let files = escrow_proxy::tls::generate_dev_certs(&out, &hosts)?;
            println!(
                "wrote {}, {}, {}",
                files.ca.display(),
                files.chain.display(),
                files.key.display()
            );
            Ok(())
        }
        Command::Keys {
            command: KeysCommand::List(files),
        } => {
            let (ring, _, _) = open_keys(&files, &env)?;
            for v in ring.versions() {
                let active = if v.version == ring.active().0 { " (active)" } else { "" };
                println!("{}\t{:?}\t{}{active}", v.version, v.state, v.created);
            }
            Ok(())
        }
        Command::Keys {
            command: KeysCommand::Rotate(files),
        } => {
            let (mut ring, keyring_path, root) = open_keys(&files, &env)?;
            let version = ring.rotate(&escrow_proxy::keys::now_rfc3339());
            escrow_proxy::keys::save_keyring(&keyring_path, &ring, &root)?;
            println!("key version {version} is now active; restart running proxies to use it");
            Ok(())
        }
        Command::Decrypt(args) => decrypt(args, &env).await,
    }
}

async fn serve(file: Option<&Path>, env: &BTreeMap<String, String>) -> anyhow::Result<()> {
    let embedded = file.is_none() && !env_has_config(env);
    let data = Path::new(EMBEDDED_DATA);
    let config = if embedded {
        embedded_default(data)?
    } else {
        Config::load(file, env)?
    };
    let running = escrow_proxy::start(&config).await?;
    println!("endpoint: {}", running.url());
    if embedded {
        let client = &config.clients[0];
        let absolute = |p: PathBuf| std::fs::canonicalize(&p).unwrap_or(p);
        let (ca, aws_config) = (absolute(data.join("certs/ca.pem")), absolute(data.join(AWS_CLI_CONFIG)));
        println!("access_key: {}", client.access_key);
        println!("secret_key: {}", client.secret_key.expose());
        println!("ca_bundle: {}", ca.display());
        println!("aws_config: {}", aws_config.display());
        println!(
            "try: AWS_CONFIG_FILE={} AWS_ACCESS_KEY_ID={} AWS_SECRET_ACCESS_KEY={} aws --endpoint-url {} --ca-bundle {} s3 mb s3://demo",
            aws_config.display(),
            client.access_key,
            client.secret_key.expose(),
            running.url(),
            ca.display()
        );
    }
    tracing::info!(endpoint = %running.url(), "serving");
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; finishing in-flight requests"),
        _ = terminate.recv() => tracing::info!("terminated; finishing in-flight requests"),
    }
    running.stop().await;
    Ok(())
}

/// The embedded default under `data`: dev certificate and client credentials are generated on
/// first start and reused afterwards.
fn embedded_default(data: &Path) -> anyhow::Result<Config> {
    let certs = escrow_proxy::tls::DevCertFiles::in_dir(&data.join("certs"));
    if !certs.chain.exists() || !certs.key.exists() {
        escrow_proxy::tls::generate_dev_certs(&data.join("certs"), &[]).context("generating the dev certificate")?;
    }
    let aws_config = data.join(AWS_CLI_CONFIG);
    if !aws_config.exists() {
        std::fs::write(&aws_config, AWS_CLI_CONFIG_TEXT).with_context(|| aws_config.display().to_string())?;
    }
    let creds = data.join("client-credentials");
    if !creds.exists() {
        let mut access = [0u8; 8];
        rand::fill(&mut access);
        let mut secret = [0u8; 30];
        rand::fill(&mut secret);
        use base64::Engine as _;
        let text = format!(
            "{}\n{}\n",
            format_args!("escrow{}", hex::encode(access)),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
        );
        escrow_proxy::keys::write_private_file(&creds, text.as_bytes())?;
    }
    let text = escrow_proxy::keys::read_secret_file(&creds)?;
    let mut lines = text.lines();
    let (Some(access_key), Some(secret)) = (lines.next(), lines.next()) else {
        bail!("{}: expected an access key line and a secret key line", creds.display());
    };
    let client = ClientConfig {
        access_key: access_key.to_string(),
        secret_key: SecretString::new(secret.to_string()),
    };
    Ok(Config::embedded_default(data, client))
}

fn open_keys(
    files: &KeyFiles,
    env: &BTreeMap<String, String>,
) -> anyhow::Result<(
    escrow_proxy::crypto::keyring::Keyring,
    PathBuf,
    escrow_proxy::secret::Key256,
)> {
    let (keyring, root) = match (&files.keyring, &files.root_key) {
        (Some(k), Some(r)) => (k.clone(), r.clone()),
        _ => {
            let config = Config::load(files.config.as_deref(), env)?;
            (config.keys.keyring, config.keys.root_key_file)
        }
    };
    if !keyring.exists() {
        bail!("{}: no keyring here", keyring.display());
    }
    let root_key = escrow_proxy::keys::load_root_key(&root)?;
    let ring = escrow_proxy::keys::load_keyring(&keyring, &root_key)?;
    Ok((ring, keyring, root_key))
}

async fn decrypt(args: DecryptArgs, env: &BTreeMap<String, String>) -> anyhow::Result<()> {
    let (ring, _, _) = open_keys(&args.keys, env)?;
    if args.out == Path::new("-") {
        let mut out = std::io::BufWriter::new(std::io::stdout());
        return decrypt_into(&args, env, &ring, &mut out).await;
    }
    // Plaintext goes to a private temp file, renamed into place only when every segment
    // authenticated: a failed decryption leaves no partial plaintext behind.
    let tmp = args.out.with_extension("partial");
    let file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
    }
    .with_context(|| tmp.display().to_string())?;
    let mut out = std::io::BufWriter::new(file);
    let result = decrypt_into(&args, env, &ring, &mut out).await;
    drop(out);
    match result {
        Ok(()) => std::fs::rename(&tmp, &args.out).with_context(|| args.out.display().to_string()),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

async fn decrypt_into(
    args: &DecryptArgs,
    env: &BTreeMap<String, String>,
    ring: &escrow_proxy::crypto::keyring::Keyring,
    out: &mut (dyn std::io::Write + Send),
) -> anyhow::Result<()> {
    match &args.object {
        Some(object) => {
            let metadata = args
                .metadata
                .as_deref()
                .map(escrow_proxy::decrypt::read_metadata_file)
                .transpose()?;
            escrow_proxy::decrypt::decrypt_file(ring, &args.bucket, &args.key, metadata.as_ref(), object, out).await?;
        }
        None => {
            let config = Config::load(args.keys.config.as_deref(), env)
                .context("fetching from a store needs --config (or give --object)")?;
            let store = match (args.store, &config.mirror) {
                (WhichStore::Primary, _) => escrow_proxy::build_store("primary", &config.primary)?,
                (WhichStore::Mirror, Some(m)) => escrow_proxy::build_store("mirror", &m.store)?,
                (WhichStore::Mirror, None) => bail!("the configuration has no [mirror]"),
            };
            escrow_proxy::decrypt::decrypt_from_store(ring, store.as_ref(), &args.bucket, &args.key, out).await?;
        }
    }
    out.flush()?;
    Ok(())
}
