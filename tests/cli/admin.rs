//! The admin listener of a real `serve` process, driven with curl: the public health and
//! metrics routes, the token rules (missing, wrong, short, shared file), throttling of failed
//! attempts, JSON errors for unknown routes and methods, and audit lines that never carry the
//! token.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::client::Cmd;
use crate::support::{EXIT_BAD_CONFIG, Serve, Setup, assert_exit, escrow, toml_str};

const TOKEN: &str = "admin-token-for-tests-0123456789abcdef";

/// `setup`'s config with an `[admin]` section on `127.0.0.1:0` and a token file holding `token`
/// with `mode`.
fn with_admin(setup: &Setup, token: &str, mode: u32) {
    let token_file = setup.root().join("admin-token");
    fs::write(&token_file, format!("{token}\n")).expect("write token");
    fs::set_permissions(&token_file, fs::Permissions::from_mode(mode)).expect("chmod token");
    let mut config = fs::read_to_string(&setup.config).expect("read config");
    config.push_str(&format!(
        "\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = {}\n",
        toml_str(&token_file)
    ));
    fs::write(&setup.config, config).expect("write config");
}

/// `curl -sS` with `args`, printing the status code on the last line.
fn curl(args: &[&str]) -> (u16, String, String) {
    let ran = Cmd::new("curl")
        .args(["-sS", "-w", "\n%{http_code}"])
        .args(args)
        .run()
        .ok("curl");
    let (body, code) = ran.stdout.rsplit_once('\n').expect("status line");
    let code = code.trim().parse().expect("numeric status");
    (code, body.to_string(), ran.stdout.clone())
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

#[test]
fn admin_listener_health_metrics_and_token() {
    let setup = Setup::new(true, &[]);
    with_admin(&setup, TOKEN, 0o600);
    let serve = Serve::start(setup.root(), Some(&setup.config), "serve-admin", &["endpoint", "admin"]);
    let admin = serve.printed("admin").to_string();
    assert!(admin.starts_with("http://127.0.0.1:"), "{admin}");

    let (code, body, _) = curl(&[&format!("{admin}/live")]);
    assert_eq!((code, body.as_str()), (200, "{\"live\":true}\n"));
    let (code, body, _) = curl(&[&format!("{admin}/ready")]);
    assert_eq!(code, 200, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).expect("ready is JSON");
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["stores"].as_array().map(Vec::len), Some(2), "{body}");
    let (code, body, _) = curl(&["-X", "POST", &format!("{admin}/ready")]);
    assert_eq!(code, 405, "{body}");

    // Everything under /admin/ needs the token: missing, wrong, prefix-only, without "Bearer".
    let keys = format!("{admin}/admin/keys");
    for header in [
        None,
        Some(bearer("wrong")),
        Some(bearer(&TOKEN[..TOKEN.len() - 1])),
        Some(format!("Authorization: {TOKEN}")),
    ] {
        let mut args = vec![keys.clone()];
        if let Some(h) = header {
            args = vec!["-H".into(), h, keys.clone()];
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, body, _) = curl(&args);
        assert_eq!(code, 401, "{args:?}: {body}");
        assert!(body.contains("\"error\""), "{body}");
    }
    let (code, body, _) = curl(&["-H", &bearer(TOKEN), &keys]);
    assert_eq!(code, 200, "{body}");
    let listed: serde_json::Value = serde_json::from_str(&body).expect("keys is JSON");
    assert_eq!(listed["active"], 1);
    assert_eq!(listed["versions"][0]["state"], "active");
    assert!(
        listed["versions"][0].get("key").is_none() && !body.contains("sealed"),
        "{body}"
    );

    let (code, body, _) = curl(&["-H", &bearer(TOKEN), &format!("{admin}/admin/no-such-thing")]);
    assert_eq!(code, 404, "{body}");
    let (code, body, _) = curl(&["-H", &bearer(TOKEN), "-X", "DELETE", &keys]);
    assert_eq!(code, 405, "{body}");
    let (code, body, _) = curl(&["-H", &bearer(TOKEN), &format!("{admin}/admin/jobs")]);
    assert_eq!((code, body.as_str()), (200, "{\"jobs\":[]}\n"));
    let (code, _, _) = curl(&["-H", &bearer(TOKEN), &format!("{admin}/admin/jobs/nope")]);
    assert_eq!(code, 404);

    // Prometheus text, counting what happened above.
    let (code, metrics, _) = curl(&[&format!("{admin}/metrics")]);
    assert_eq!(code, 200);
    assert!(
        metrics.contains("escrow_admin_auth_failures_total 4"),
        "four refused attempts so far:\n{metrics}"
    );

    // Guessing is throttled: after ten failures in a window even the right token waits.
    for _ in 0..10 {
        curl(&["-H", &bearer("guess"), &keys]);
    }
    let (code, body, stdout) = curl(&["-i", "-H", &bearer(TOKEN), &keys]);
    assert_eq!(code, 429, "{body}");
    assert!(stdout.to_ascii_lowercase().contains("retry-after:"), "{stdout}");

    let log_path = setup.root().join("serve-admin.stderr");
    drop(serve);
    let log = fs::read_to_string(log_path).expect("read serve log");
    assert!(log.contains("admin request"), "audit lines are logged:\n{log}");
    assert!(!log.contains(TOKEN), "the token must never be logged");
}

#[test]
fn admin_token_files_that_are_short_or_shared_are_refused() {
    for (token, mode, why) in [
        ("short-token", 0o600, "at least 32 bytes"),
        (TOKEN, 0o644, "readable by others than its owner"),
    ] {
        let setup = Setup::new(false, &[]);
        with_admin(&setup, token, mode);
        let ran = escrow(["serve", "--config"]).arg(&setup.config).run();
        assert_eq!(ran.status.code(), Some(1), "{}", ran.describe());
        assert!(ran.stderr.contains(why), "{why}: {}", ran.describe());
        assert!(!ran.stderr.contains(TOKEN), "{}", ran.describe());
    }
}

#[test]
fn admin_off_loopback_needs_tls() {
    let setup = Setup::new(false, &[]);
    with_admin(&setup, TOKEN, 0o600);
    let config = fs::read_to_string(&setup.config).expect("read config").replace(
        "listen = \"127.0.0.1:0\"\ntoken_file",
        "listen = \"0.0.0.0:0\"\ntoken_file",
    );
    fs::write(&setup.config, config).expect("write config");
    let ran = escrow(["serve", "--config"]).arg(&setup.config).run();
    assert_exit(
        &ran,
        EXIT_BAD_CONFIG,
        "a plain-HTTP admin listener off loopback is refused",
    );
    assert!(ran.stderr.contains("admin.listen"), "{}", ran.describe());
}

/// A CA (`dir/<name>-ca.pem`) and a client certificate it signs (`dir/<name>.pem`,
/// `dir/<name>-key.pem`).
fn client_ca_and_cert(dir: &std::path::Path, name: &str) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} CA"));
    let ca_key = KeyPair::generate().expect("key");
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} operator"));
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &ca, &ca_key).expect("sign");
    let path = |suffix: &str| dir.join(format!("{name}{suffix}.pem"));
    fs::write(path("-ca"), ca.pem()).expect("write");
    fs::write(path(""), cert.pem()).expect("write");
    fs::write(path("-key"), key.serialize_pem()).expect("write");
    fs::set_permissions(path("-key"), fs::Permissions::from_mode(0o600)).expect("chmod");
    let s = |p: std::path::PathBuf| p.to_str().expect("utf-8").to_string();
    (s(path("-ca")), s(path("")), s(path("-key")))
}

/// `curl -sS` with `args`: the status code, or curl's failure (a refused handshake).
fn try_curl(args: &[&str]) -> Result<(u16, String), String> {
    let ran = Cmd::new("curl").args(["-sS", "-w", "\n%{http_code}"]).args(args).run();
    if !ran.status.success() {
        return Err(ran.describe());
    }
    let (body, code) = ran.stdout.rsplit_once('\n').expect("status line");
    Ok((code.trim().parse().expect("numeric status"), body.to_string()))
}

#[test]
fn admin_mtls_needs_a_client_certificate_from_its_ca_and_still_the_token() {
    let setup = Setup::new(false, &[]);
    with_admin(&setup, TOKEN, 0o600);
    let (client_ca, cert, key) = client_ca_and_cert(setup.root(), "operators");
    let (_, foreign_cert, foreign_key) = client_ca_and_cert(setup.root(), "strangers");
    let config = fs::read_to_string(&setup.config).expect("read config");
    let config = format!(
        "{config}tls_cert = {}\ntls_key = {}\ntls_client_ca = {}\n",
        toml_str(&setup.certs.join("server.pem")),
        toml_str(&setup.certs.join("server-key.pem")),
        toml_str(std::path::Path::new(&client_ca)),
    );
    fs::write(&setup.config, config).expect("write config");
    let serve = Serve::start(
        setup.root(),
        Some(&setup.config),
        "serve-admin-mtls",
        &["endpoint", "admin"],
    );
    let admin = serve.printed("admin").to_string();
    assert!(admin.starts_with("https://127.0.0.1:"), "{admin}");
    let ca = setup.certs.join("ca.pem");
    let ca = ca.to_str().expect("utf-8");
    let keys = format!("{admin}/admin/keys");
    let live = format!("{admin}/live");

    // No client certificate: the handshake is refused, even for the public /live.
    let refused = try_curl(&["--cacert", ca, &live]);
    assert!(refused.is_err(), "no client certificate: {refused:?}");
    let refused = try_curl(&["--cacert", ca, "-H", &bearer(TOKEN), &keys]);
    assert!(refused.is_err(), "no client certificate, with the token: {refused:?}");
    // A certificate from another CA: refused.
    let refused = try_curl(&[
        "--cacert",
        ca,
        "--cert",
        &foreign_cert,
        "--key",
        &foreign_key,
        "-H",
        &bearer(TOKEN),
        &keys,
    ]);
    assert!(refused.is_err(), "a certificate from another CA: {refused:?}");
    // The right certificate without the token: 401; with it: 200.
    let with_cert = ["--cacert", ca, "--cert", &cert, "--key", &key];
    let (code, body) = try_curl(&[&with_cert[..], &[keys.as_str()]].concat()).expect("handshake");
    assert_eq!(code, 401, "the token is still required: {body}");
    let auth = bearer(TOKEN);
    let (code, body) = try_curl(&[&with_cert[..], &["-H", &auth, &keys]].concat()).expect("handshake");
    assert_eq!(code, 200, "certificate and token: {body}");
    let (code, _) = try_curl(&[&with_cert[..], &[live.as_str()]].concat()).expect("handshake");
    assert_eq!(code, 200, "/live needs only the certificate");
}

#[test]
fn admin_mtls_without_tls_is_a_configuration_error() {
    let setup = Setup::new(false, &[]);
    with_admin(&setup, TOKEN, 0o600);
    let mut config = fs::read_to_string(&setup.config).expect("read config");
    config.push_str("tls_client_ca = \"operators-ca.pem\"\n");
    fs::write(&setup.config, config).expect("write config");
    let ran = escrow(["serve", "--config"]).arg(&setup.config).run();
    assert_exit(&ran, EXIT_BAD_CONFIG, "admin mTLS without admin TLS is refused");
    assert!(
        ran.stderr.contains("admin.tls_client_ca needs tls_cert"),
        "{}",
        ran.describe()
    );
}
