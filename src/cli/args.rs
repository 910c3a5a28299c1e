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
    /// Inspect or rotate the keyring file directly (offline: bootstrap and recovery; running
    /// proxies sharing the file pick a rotation up within seconds).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Operate running proxies through the admin API (keys, jobs).
    Admin(AdminArgs),
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
    /// The mirror's backlog and health, and reconciling its two stores (offline, from the
    /// configuration; safe while proxies serve).
    #[command(subcommand)]
    Mirror(MirrorCommand),
}

/// `mirror` commands.
#[derive(clap::Subcommand)]
pub enum MirrorCommand {
    /// Each store's health (a probe) and the repair records it holds: backlog size and the
    /// oldest record's age.
    Status {
        /// TOML configuration file naming [primary], [mirror] and [keys].
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Walk both stores, copy what is missing or stale toward the newest sealed version, delete
    /// only what a tombstone proves deleted; report rollbacks. Exit code 1 when errors remain.
    Reconcile {
        /// TOML configuration file naming [primary], [mirror] and [keys].
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Only this bucket (default: every bucket either store has).
        #[arg(long)]
        bucket: Option<String>,
        /// Report the differences; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Only keys after this one (resume an interrupted pass over --bucket).
        #[arg(long, requires = "bucket")]
        start_after: Option<String>,
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
    /// For an SSE-C object: a private (0600) file holding its customer key, base64 (as in the
    /// `x-amz-server-side-encryption-customer-key` header). Never on the command line.
    #[arg(long)]
    pub sse_c_key_file: Option<PathBuf>,
}

/// `admin` arguments: where the admin API is, and the command.
#[derive(clap::Args)]
pub struct AdminArgs {
    /// The admin API's base URL (default: from the configuration's [admin] listen).
    #[arg(long, global = true)]
    pub url: Option<String>,
    /// File holding the admin token (default: the configuration's [admin] token_file).
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
    /// CA certificate (PEM) to trust for an https:// admin URL.
    #[arg(long, global = true)]
    pub ca: Option<PathBuf>,
    /// Configuration file naming [admin] (for what --url and --token-file do not give).
    #[arg(long, short, global = true)]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: AdminCommand,
}

/// `admin` commands.
#[derive(clap::Subcommand)]
pub enum AdminCommand {
    /// Key versions and their lifecycle.
    #[command(subcommand)]
    Keys(AdminKeysCommand),
    /// Background jobs: list them, show or wait for one, cancel one.
    Jobs {
        /// A job id; without it, every job.
        id: Option<String>,
        /// Wait until the job ends, showing its progress.
        #[arg(long, requires = "id")]
        wait: bool,
        /// Ask the job to stop.
        #[arg(long, requires = "id")]
        cancel: bool,
    },
}

/// `admin keys` commands.
#[derive(clap::Subcommand)]
pub enum AdminKeysCommand {
    /// Versions, states, creation times, the active version and the latest census (never key
    /// material).
    List,
    /// A new version becomes active for new writes on every instance; older ones keep
    /// decrypting.
    Rotate,
    /// Move objects' wrapped keys to the active version in both stores, without moving bodies.
    Rewrap {
        /// Only this bucket (default: every bucket).
        #[arg(long)]
        bucket: Option<String>,
        /// Only keys under this prefix.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Only objects under this version (repeatable; default: every version but the active).
        #[arg(long = "from")]
        from: Vec<u32>,
        /// Count what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Objects per second.
        #[arg(long)]
        rate: Option<u32>,
        /// Wait for the job, showing its progress.
        #[arg(long)]
        wait: bool,
    },
    /// Count objects and uploads per key version in each store.
    Census {
        /// Only this bucket (a destroy needs a census of every bucket).
        #[arg(long)]
        bucket: Option<String>,
        /// Wait for the job, showing its progress.
        #[arg(long)]
        wait: bool,
    },
    /// Refuse unwraps under a version (reversible).
    Disable {
        /// The version.
        version: u32,
    },
    /// Allow unwraps under a disabled version again.
    Enable {
        /// The version.
        version: u32,
    },
    /// Erase a version's key material everywhere (crypto-shredding; irreversible).
    Destroy {
        /// The version.
        version: u32,
        /// Destroy even though the latest census shows references (or there is none).
        #[arg(long)]
        force: bool,
    },
}
