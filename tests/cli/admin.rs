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
