//! `decrypt`: one object without a running proxy (the offline exit path). Plaintext goes to a
//! private file renamed into place only when every segment authenticated.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{CliError, KeySource};
use crate::config::Config;
use crate::crypto::keyring::Keyring;
use crate::files::PrivateFile;

/// Which configured store to fetch from.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum WhichStore {
    /// `[primary]`.
    Primary,
    /// `[mirror]`.
    Mirror,
}

/// What to decrypt and where to.
pub struct DecryptArgs {
    /// The keyring; its configuration file (if any) also names the stores.
    pub keys: KeySource,
    /// Bucket the object was written to (bound into the object's key wrapping).
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// A stored object file; without it, the object is fetched from `store`.
    pub object: Option<PathBuf>,
    /// The stored object's metadata as JSON (for a raw object file).
    pub metadata: Option<PathBuf>,
    /// Which configured store to fetch from when `object` is `None`.
    pub store: WhichStore,
    /// Where to write the plaintext (`-` for stdout).
    pub out: PathBuf,
    /// A file holding an SSE-C object's customer key (base64), never the key itself.
    pub sse_c_key_file: Option<PathBuf>,
}

/// Decrypts one object as `args` say.
pub async fn decrypt(args: &DecryptArgs, env: &BTreeMap<String, String>) -> Result<(), CliError> {
    let (ring, _, _) = args.keys.open(env)?;
    if args.out == Path::new("-") {
        let mut out = std::io::BufWriter::new(std::io::stdout());
        return decrypt_into(args, env, &ring, &mut out).await;
    }
    // A failed decryption drops the private file uncommitted: no partial plaintext is left.
    let mut out = std::io::BufWriter::new(PrivateFile::create(&args.out)?);
    decrypt_into(args, env, &ring, &mut out).await?;
    let file = out.into_inner().map_err(|e| CliError::Io(e.into_error()))?;
    Ok(file.commit()?)
}

async fn decrypt_into(
    args: &DecryptArgs,
    env: &BTreeMap<String, String>,
    ring: &Keyring,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let customer = args
        .sse_c_key_file
        .as_deref()
        .map(crate::decrypt::read_customer_key_file)
        .transpose()?;
    let customer = customer.as_ref();
    match &args.object {
        Some(object) => {
            let metadata = args
                .metadata
                .as_deref()
                .map(crate::decrypt::read_metadata_file)
                .transpose()?;
            crate::decrypt::decrypt_file_with_key(
                ring,
                &args.bucket,
                &args.key,
                metadata.as_ref(),
                object,
                customer,
                out,
            )
            .await?;
        }
        None => {
            let file = match &args.keys {
                KeySource::Config(file) => file.as_deref(),
                KeySource::Files { .. } => None,
            };
            let config = Config::load(file, env).map_err(|mut e| {
                e.0.insert(0, "fetching from a store needs --config (or give --object)".into());
                e
            })?;
            let store = match (args.store, &config.mirror) {
                (WhichStore::Primary, _) => crate::build_store("primary", &config.primary)?,
                (WhichStore::Mirror, Some(m)) => crate::build_store("mirror", &m.store)?,
                (WhichStore::Mirror, None) => return Err(CliError::Usage("the configuration has no [mirror]".into())),
            };
            crate::decrypt::decrypt_from_store_with_key(ring, store.as_ref(), &args.bucket, &args.key, customer, out)
                .await?;
        }
    }
    out.flush()?;
    Ok(())
}
