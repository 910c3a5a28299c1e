//! `admin keys …` and `admin jobs …`: the admin API from the command line. The same routes as
//! `curl` reaches (README), over HTTP/1.1 (TLS when the URL is `https://`, trusting `--ca`),
//! with the bearer token read from a 0600 file. Where the URL and token file are not given, they
//! come from the configuration's `[admin]`.
//!
//! A change that meets a concurrent one (409 "being changed") is retried a few times; waiting
//! for a job shows a progress line (indicatif, on stderr, only when it is a terminal) and prints
//! the job as it ended.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use super::CliError;
use crate::config::Config;
use crate::files::read_secret_file;
use crate::secret::SecretString;

/// How long one API call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts at a keyring change that meets a concurrent one.
const BUSY_ATTEMPTS: u32 = 10;
/// How often a waiting command asks for a job's progress.
const POLL_EVERY: Duration = Duration::from_millis(500);
/// Largest answer read.
const MAX_ANSWER_BYTES: usize = 4 << 20;

/// Where the admin API is and how to sign in.
#[derive(Debug, Clone)]
pub struct AdminTarget {
    /// Base URL, `http://127.0.0.1:8444`.
    pub url: String,
    /// The bearer token.
    token: SecretString,
    /// The CA certificate (PEM) an `https://` URL is checked against.
    ca: Option<PathBuf>,
}

/// What `admin` was asked to do.
#[derive(Debug, Clone)]
pub enum AdminAction {
    /// `keys list`.
    KeysList,
    /// `keys rotate`.
    KeysRotate,
    /// `keys rewrap`.
    KeysRewrap {
        /// Request body (`bucket`, `prefix`, `from`, `dry_run`, `rate`).
        params: Value,
        /// Wait for the job and show its progress.
        wait: bool,
    },
    /// `keys census`.
    KeysCensus {
        /// One bucket, or all.
        bucket: Option<String>,
        /// Wait for the job.
        wait: bool,
    },
    /// `keys disable|enable|destroy VERSION`.
    KeysChange {
        /// `disable`, `enable` or `destroy`.
        change: &'static str,
        /// The version.
        version: u32,
        /// Destroy despite references.
        force: bool,
    },
    /// `jobs [ID] [--wait] [--cancel]`.
    Jobs {
        /// One job, or all.
        id: Option<String>,
        /// Wait until it ends.
        wait: bool,
        /// Ask it to stop.
        cancel: bool,
    },
}

impl AdminTarget {
    /// The target from `--url`/`--token-file`/`--ca`, filling what is missing from the
    /// configuration's `[admin]` (`--config`, or `ESCROW_*` variables).
    pub fn resolve(
        url: Option<String>,
        token_file: Option<PathBuf>,
        ca: Option<PathBuf>,
        config: Option<&Path>,
        env: &BTreeMap<String, String>,
    ) -> Result<Self, CliError> {
        let (url, token_file) = match (url, token_file) {
            (Some(url), Some(token_file)) => (url, token_file),
            (url, token_file) => {
                let loaded = Config::load(config, env)?;
                let admin = loaded.admin.ok_or_else(|| {
                    CliError::Usage("give --url and --token-file, or a configuration with [admin]".into())
                })?;
                let mut addr = admin.listen;
                if addr.ip().is_unspecified() {
                    addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                let scheme = if admin.tls.is_some() { "https" } else { "http" };
                (
                    url.unwrap_or_else(|| format!("{scheme}://{addr}")),
                    token_file.unwrap_or(admin.token_file),
                )
            }
        };
        let text = SecretString::new(read_secret_file(&token_file)?);
        let token = SecretString::new(text.expose().trim().to_string());
        if token.expose().is_empty() {
            return Err(CliError::Usage(format!(
                "{}: the token file is empty",
                token_file.display()
            )));
        }
        Ok(Self {
            url: url.trim_end_matches('/').to_string(),
            token,
            ca,
        })
    }

    /// One call: `method` `path` with an optional JSON body; returns the status and the JSON.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), CliError> {
        tokio::time::timeout(CALL_TIMEOUT, self.call_once(method, path, body))
            .await
            .map_err(|_| CliError::Usage(format!("{}: no answer within {CALL_TIMEOUT:?}", self.url)))?
    }

    async fn call_once(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), CliError> {
        let uri: http::Uri = format!("{}{path}", self.url)
            .parse()
            .map_err(|_| CliError::Usage(format!("{}: not a URL", self.url)))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => {
                return Err(CliError::Usage(format!(
                    "{}: the URL must be http:// or https://",
                    self.url
                )));
            }
        };
        let host = uri.host().unwrap_or("127.0.0.1").trim_matches(['[', ']']).to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| CliError::Usage(format!("{}: cannot connect: {e}", self.url)))?;
        let payload = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
        let request = Request::builder()
            .method(method)
            .uri(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
            .header(header::HOST, authority)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token.expose()))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(payload))
            .map_err(|e| CliError::Usage(format!("bad request: {e}")))?;
        let response = if https {
            let connector = tokio_rustls::TlsConnector::from(self.tls_config()?);
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|_| CliError::Usage(format!("{host}: not a TLS server name")))?;
            let tls = connector
                .connect(name, tcp)
                .await
                .map_err(|e| CliError::Usage(format!("{}: TLS failed: {e}", self.url)))?;
            send(TokioIo::new(tls), request).await?
        } else {
            send(TokioIo::new(tcp), request).await?
        };
        Ok(response)
    }

    fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>, CliError> {
        let ca = self
            .ca
            .as_ref()
            .ok_or_else(|| CliError::Usage("an https:// admin URL needs --ca (the CA certificate, PEM)".into()))?;
        let pem = std::fs::read(ca).map_err(|e| CliError::Usage(format!("{}: {e}", ca.display())))?;
        let mut roots = rustls::RootCertStore::empty();
        use rustls::pki_types::pem::PemObject as _;
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|_| CliError::Usage(format!("{}: not PEM certificates", ca.display())))?;
            roots
                .add(cert)
                .map_err(|e| CliError::Usage(format!("{}: {e}", ca.display())))?;
        }
        let config = rustls::ClientConfig::builder_with_provider(crate::server::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| CliError::Usage(format!("TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }

    /// A call that must succeed (2xx); 409 "being changed" is retried.
    async fn expect_ok(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, CliError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (status, answer) = self.call(method.clone(), path, body).await?;
            if status.is_success() {
                return Ok(answer);
            }
            let message = answer.get("error").and_then(Value::as_str).unwrap_or("").to_string();
            if status == StatusCode::CONFLICT && message.contains("being changed") && attempt < BUSY_ATTEMPTS {
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                continue;
            }
            return Err(CliError::Usage(format!("{method} {path}: {status}: {message}")));
        }
    }
}

async fn send<IO>(io: IO, request: Request<Full<Bytes>>) -> Result<(StatusCode, Value), CliError>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| CliError::Usage(format!("admin API: {e}")))?;
    let driver = tokio::spawn(conn);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| CliError::Usage(format!("admin API: {e}")))?;
    let status = response.status();
    let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER_BYTES)
        .collect()
        .await
        .map_err(|e| CliError::Usage(format!("admin API: reading the answer: {e}")))?
        .to_bytes();
    driver.abort();
    let value = serde_json::from_slice(&body).unwrap_or_else(|_| json!({ "error": String::from_utf8_lossy(&body) }));
    Ok((status, value))
}

/// Runs one `admin` command against `target`, printing JSON answers (pretty) to stdout.
pub async fn admin(target: &AdminTarget, action: AdminAction) -> Result<(), CliError> {
    match action {
        AdminAction::KeysList => print(&target.expect_ok(Method::GET, "/admin/keys", None).await?),
        AdminAction::KeysRotate => print(&target.expect_ok(Method::POST, "/admin/keys/rotate", None).await?),
        AdminAction::KeysChange { change, version, force } => {
            let body = json!({ "force": force });
            let path = format!("/admin/keys/{version}/{change}");
            print(&target.expect_ok(Method::POST, &path, Some(&body)).await?)
        }
        AdminAction::KeysRewrap { params, wait } => {
            let started = target
                .expect_ok(Method::POST, "/admin/keys/rewrap", Some(&params))
                .await?;
            follow(target, &started, wait).await
        }
        AdminAction::KeysCensus { bucket, wait } => {
            let body = json!({ "bucket": bucket });
            let started = target
                .expect_ok(Method::POST, "/admin/keys/census", Some(&body))
                .await?;
            follow(target, &started, wait).await
        }
        AdminAction::Jobs { id: None, .. } => print(&target.expect_ok(Method::GET, "/admin/jobs", None).await?),
        AdminAction::Jobs {
            id: Some(id),
            wait,
            cancel,
        } => {
            if cancel {
                target
                    .expect_ok(Method::POST, &format!("/admin/jobs/{id}/cancel"), None)
                    .await?;
            }
            if wait {
                wait_for(target, &id).await
            } else {
                print(
                    &target
                        .expect_ok(Method::GET, &format!("/admin/jobs/{id}"), None)
                        .await?,
                )
            }
        }
    }
}

/// After a job started: wait for it, or print its id.
async fn follow(target: &AdminTarget, started: &Value, wait: bool) -> Result<(), CliError> {
    let id = started
        .get("job")
        .and_then(Value::as_str)
        .ok_or_else(|| CliError::Usage("the admin API started no job".into()))?
        .to_string();
    if wait {
        wait_for(target, &id).await
    } else {
        print(started)
    }
}

/// Polls a job until it ends, with a progress bar (counts of what it has handled); fails unless
/// it ended `done`.
async fn wait_for(target: &AdminTarget, id: &str) -> Result<(), CliError> {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {elapsed:>4} {prefix} {wide_msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.set_prefix(id.to_string());
    let job = loop {
        let job = target
            .expect_ok(Method::GET, &format!("/admin/jobs/{id}"), None)
            .await?;
        let progress = job
            .get("progress")
            .and_then(Value::as_object)
            .map(|p| p.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "))
            .unwrap_or_default();
        bar.set_message(progress);
        bar.tick();
        if job.get("state").and_then(Value::as_str) != Some("running") {
            break job;
        }
        tokio::time::sleep(POLL_EVERY).await;
    };
    bar.finish_and_clear();
    print(&job)?;
    match job.get("state").and_then(Value::as_str) {
        Some("done") => Ok(()),
        state => Err(CliError::Usage(format!(
            "job {id} ended {}: {}",
            state.unwrap_or("?"),
            job.get("error").and_then(Value::as_str).unwrap_or("")
        ))),
    }
}

fn print(value: &Value) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value).map_err(std::io::Error::from)?;
    println!("{text}");
    Ok(())
}
