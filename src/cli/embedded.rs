//! The embedded default: everything under `./data`, a dev certificate and client credentials
//! generated on first start and reused afterwards.

use std::path::Path;

use base64::Engine as _;

use super::CliError;
use crate::config::{ClientConfig, Config};
use crate::files::{read_secret_file, write_private_file};
use crate::secret::SecretString;
use crate::server::tls::{DevCertFiles, generate_dev_certs};

/// Where the embedded default keeps everything, relative to the working directory.
pub(super) const EMBEDDED_DATA: &str = "data";
/// An AWS CLI configuration for the embedded default: path-style addressing.
const AWS_CLI_CONFIG: &str = "aws-cli.conf";
const AWS_CLI_CONFIG_TEXT: &str =
    "[default]\nregion = us-east-1\ns3 =\n  addressing_style = path\n  signature_version = s3v4\n";
/// The generated client credentials: access key line, secret key line (0600).
const CREDENTIALS: &str = "client-credentials";

/// The embedded default's configuration under `data`, creating what is missing.
pub(super) fn config(data: &Path) -> Result<Config, CliError> {
    let certs = DevCertFiles::in_dir(&data.join("certs"));
    if !certs.chain.exists() || !certs.key.exists() {
        generate_dev_certs(&data.join("certs"), &[])?;
    }
    let aws_config = data.join(AWS_CLI_CONFIG);
    if !aws_config.exists() {
        std::fs::write(&aws_config, AWS_CLI_CONFIG_TEXT)?;
    }
    let config = Config::embedded_default(data, client_credentials(&data.join(CREDENTIALS))?);
    if let Some(admin) = &config.admin
        && !admin.token_file.exists()
    {
        let token = crate::admin::auth::generate_token();
        write_private_file(&admin.token_file, format!("{}\n", token.expose()).as_bytes())?;
    }
    Ok(config)
}

/// The client credentials in `path`, generated (random, 0600) if the file does not exist.
fn client_credentials(path: &Path) -> Result<ClientConfig, CliError> {
    if !path.exists() {
        let mut access = [0u8; 8];
        rand::fill(&mut access);
        let mut secret = [0u8; 30];
        rand::fill(&mut secret);
        let mut text = format!(
            "escrow{}\n{}\n",
            hex::encode(access),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
        );
        let written = write_private_file(path, text.as_bytes());
        zeroize::Zeroize::zeroize(&mut text);
        zeroize::Zeroize::zeroize(&mut secret);
        written?;
    }
    let mut text = read_secret_file(path)?;
    let mut lines = text.lines();
    let parsed = match (lines.next(), lines.next()) {
        (Some(access_key), Some(secret)) => Ok(ClientConfig {
            access_key: access_key.to_string(),
            secret_key: SecretString::new(secret.to_string()),
        }),
        _ => Err(CliError::Usage(format!(
            "{}: expected an access key line and a secret key line",
            path.display()
        ))),
    };
    zeroize::Zeroize::zeroize(&mut text);
    parsed
}

/// What a first-time user needs: credentials, CA bundle, an AWS CLI line to try, and where the
/// admin API and its token are.
pub(super) fn print_welcome(data: &Path, config: &Config, url: &str, admin_url: Option<&str>) {
    let client = &config.clients[0];
    let (ca, aws_config) = (
        super::display(&data.join("certs/ca.pem")),
        super::display(&data.join(AWS_CLI_CONFIG)),
    );
    println!("access_key: {}", client.access_key);
    println!("secret_key: {}", client.secret_key.expose());
    println!("ca_bundle: {}", ca.display());
    println!("aws_config: {}", aws_config.display());
    println!(
        "try: AWS_CONFIG_FILE={} AWS_ACCESS_KEY_ID={} AWS_SECRET_ACCESS_KEY={} aws --endpoint-url {url} --ca-bundle {} s3 mb s3://demo",
        aws_config.display(),
        client.access_key,
        client.secret_key.expose(),
        ca.display()
    );
    if let (Some(admin), Some(admin_url)) = (&config.admin, admin_url) {
        let token = super::display(&admin.token_file);
        println!("admin_token: {}", token.display());
        println!(
            "try: curl -H \"Authorization: Bearer $(cat {})\" {admin_url}/admin/keys",
            token.display()
        );
    }
}
