//! The command line: what `main.rs` parses with clap and hands to [`super::run`].

use std::path::PathBuf;

use super::{KeySource, WhichStore};

/// An encrypting, mirroring S3 gateway: point S3 clients at it; the store behind it only ever
/// sees ciphertext.
#[derive(clap::Parser)]
#[command(version, about)]
pub struct Cli {
    /// Log lines as text or as one JSON object per line (levels: RUST_LOG).
    #[arg(long, global = true, value_enum, default_value_t = crate::logging::LogFormat::Text)]
    pub log_format: crate::logging::LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Serve the S3 endpoint. Without --config (and no ESCROW_* variables) it runs the embedded
    /// default: https://127.0.0.1:8443, stores under ./data, a dev certificate, printed
    /// credentials.
    Serve {
        /// TOML configuration file; ESCROW_<SECTION>__<KEY> variables override it.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Development certificates.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Inspect or rotate the keyring (offline; restart proxies to pick up a rotation).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Decrypt one object without a running proxy (the offline exit path).
    Decrypt(Decrypt),
    /// Check an HTTP health endpoint (exit 0 on a 2xx answer, 1 otherwise): the container
    /// image's HEALTHCHECK, which has no shell or curl. Plain HTTP only.
    Probe {
        /// The URL to GET.
        #[arg(long, default_value = "http://127.0.0.1:9090/live")]
        url: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 5)]
        timeout_secs: u64,
    },
}

/// `certs` commands.
#[derive(clap::Subcommand)]
pub enum CertsCommand {
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

/// `keys` commands.
#[derive(clap::Subcommand)]
pub enum KeysCommand {
    /// Create a new root key and sealed keyring (0600), for deployments that mount them
    /// read-only (Kubernetes Secrets, systemd credentials). Refuses if either file exists.
    Init {
        /// Sealed keyring file to create.
        #[arg(long)]
        keyring: PathBuf,
        /// Root key file to create.
        #[arg(long)]
        root_key: PathBuf,
    },
    /// List key versions and their states (never key material).
    List(KeyFiles),
    /// Add a new key version and make it active for new writes; old versions keep decrypting.
    Rotate(KeyFiles),
}

/// Where the keyring is: a configuration file or the two files.
#[derive(clap::Args)]
pub struct KeyFiles {
    /// Configuration file naming [keys]; or give --keyring and --root-key.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Sealed keyring file.
    #[arg(long, conflicts_with = "config", requires = "root_key")]
    pub keyring: Option<PathBuf>,
    /// Root key file (0600).
    #[arg(long, conflicts_with = "config", requires = "keyring")]
    pub root_key: Option<PathBuf>,
}

impl KeyFiles {
    /// Where the keyring is, as the library's commands take it.
    pub fn source(self) -> KeySource {
        match (self.keyring, self.root_key) {
            (Some(keyring), Some(root_key)) => KeySource::Files { keyring, root_key },
            _ => KeySource::Config(self.config),
        }
    }
}

/// `decrypt` arguments.
#[derive(clap::Args)]
pub struct Decrypt {
    /// The keyring (and, with --config, the stores).
    #[command(flatten)]
    pub keys: KeyFiles,
    /// Bucket the object was written to (it is bound into the object's key wrapping).
    #[arg(long)]
    pub bucket: String,
    /// Object key.
    #[arg(long)]
    pub key: String,
    /// A stored object file: the raw object as any store returns it (`aws s3api get-object`
    /// run directly against the store; needs --metadata), or an object file of an fs store.
    /// Without it, the object is fetched from the configured store (see --store).
    #[arg(long)]
    pub object: Option<PathBuf>,
    /// The stored object's metadata as JSON (`aws s3api head-object` output, or a flat map).
    #[arg(long, requires = "object")]
    pub metadata: Option<PathBuf>,
    /// Which configured store to fetch from when --object is not given.
    #[arg(long, value_enum, default_value = "primary")]
    pub store: WhichStore,
    /// Where to write the plaintext ("-" for stdout).
    #[arg(long, short, default_value = "-")]
    pub out: PathBuf,
}
